//! Comparing a work tree with the tree it should hold (pin + bundles), path by path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use git2::{AttrCheckFlags, ObjectType, Oid, Repository, Tree};

use super::index_file::IndexFile;
use super::scan::{ScanOptions, scan};
use crate::git::{GitError, local};

/// How a path of the work tree differs from pin + bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathClass {
    /// Holds the bundles' result.
    Patched,
    /// Still the pin's content where a bundle changes it.
    Unpatched,
    /// A bundle's file with content that is neither the pin's nor the bundle's.
    Drifted,
    /// A change to a tracked file that no bundle explains.
    Residual,
    /// A file that is neither in the pin nor made by a bundle.
    Untracked,
    /// A file of the pin that is gone (a file a bundle creates, gone, is still the pin's
    /// content there: unpatched).
    Deleted,
}

impl PathClass {
    /// Stable name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            PathClass::Patched => "patched",
            PathClass::Unpatched => "unpatched",
            PathClass::Drifted => "drifted",
            PathClass::Residual => "residual",
            PathClass::Untracked => "untracked",
            PathClass::Deleted => "deleted",
        }
    }
}

/// One path that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathState {
    pub path: String,
    pub class: PathClass,
}

/// Every path where the work tree differs from the expected tree.
#[derive(Debug, Clone, Default)]
pub struct WorktreeDiff {
    pub paths: Vec<PathState>,
}

impl WorktreeDiff {
    /// Whether the work tree holds exactly the expected tree.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// A short multi-line listing for messages.
    pub fn listing(&self, limit: usize) -> String {
        let mut out = String::new();
        for p in self.paths.iter().take(limit) {
            out.push_str(&format!("\n  {:<9} {}", p.class.as_str(), p.path));
        }
        if self.paths.len() > limit {
            out.push_str(&format!("\n  ... and {} more", self.paths.len() - limit));
        }
        out
    }
}

/// Paths changed in the work tree or index relative to HEAD, untracked included, ignored not.
pub fn changed_paths(repo: &Repository, name: &str) -> Result<BTreeSet<String>, GitError> {
    let opts = ScanOptions {
        submodules: false,
        ignored: false,
    };
    Ok(scan(repo, name, opts)?.changed.into_keys().collect())
}

/// [`changed_paths`] and the number of ignored entries, from one walk of the work tree.
pub fn changed_and_ignored(
    repo: &Repository,
    name: &str,
) -> Result<(std::collections::BTreeMap<String, git2::Status>, usize), GitError> {
    let opts = ScanOptions {
        submodules: false,
        ignored: true,
    };
    let s = scan(repo, name, opts)?;
    Ok((s.changed, s.ignored))
}

/// Whether a status says the index holds content that is neither HEAD's nor the work tree's: a
/// change staged and then taken back (or changed again) in the file, which a commit would
/// record although no file shows it.
pub fn staged_apart(status: git2::Status) -> bool {
    use git2::Status as S;
    let index = S::INDEX_NEW | S::INDEX_MODIFIED | S::INDEX_DELETED | S::INDEX_TYPECHANGE;
    let work = S::WT_MODIFIED | S::WT_DELETED | S::WT_TYPECHANGE;
    status.intersects(index) && status.intersects(work)
}

/// Paths whose entries differ between two trees: every file (or submodule) added, removed or
/// changed, as the deltas of a tree-to-tree diff name them. Subtrees with the same id on both
/// sides are skipped unread, so the cost follows the change, not the size of the trees.
pub fn tree_changes(
    repo: &Repository,
    name: &str,
    from: &Tree<'_>,
    to: &Tree<'_>,
) -> Result<BTreeSet<String>, GitError> {
    let mut paths = BTreeSet::new();
    diff_trees(repo, "", Some(from), Some(to), &mut paths)
        .map_err(local(name, "comparing trees"))?;
    Ok(paths)
}

fn diff_trees(
    repo: &Repository,
    prefix: &str,
    from: Option<&Tree<'_>>,
    to: Option<&Tree<'_>>,
    out: &mut BTreeSet<String>,
) -> Result<(), git2::Error> {
    if let (Some(a), Some(b)) = (from, to)
        && a.id() == b.id()
    {
        return Ok(());
    }
    // Each name with its entry on either side: (id, mode, is a tree).
    type Side = Option<(Oid, i32, bool)>;
    let mut names: std::collections::BTreeMap<String, (Side, Side)> = Default::default();
    for (k, tree) in [from, to].into_iter().enumerate() {
        for e in tree.into_iter().flat_map(|t| t.iter()) {
            let slot = names
                .entry(String::from_utf8_lossy(e.name_bytes()).into_owned())
                .or_default();
            let side = Some((e.id(), e.filemode(), e.kind() == Some(ObjectType::Tree)));
            if k == 0 { slot.0 = side } else { slot.1 = side }
        }
    }
    for (name, (a, b)) in names {
        if a == b {
            continue;
        }
        let path = format!("{prefix}{name}");
        let sub = |side: Side| -> Result<Option<Tree<'_>>, git2::Error> {
            match side {
                Some((id, _, true)) => repo.find_tree(id).map(Some),
                _ => Ok(None),
            }
        };
        let (ta, tb) = (sub(a)?, sub(b)?);
        if ta.is_some() || tb.is_some() {
            diff_trees(repo, &format!("{path}/"), ta.as_ref(), tb.as_ref(), out)?;
        }
        // A file (or submodule) on either side is a change of its own.
        if a.is_some_and(|s| !s.2) || b.is_some_and(|s| !s.2) {
            out.insert(path);
        }
    }
    Ok(())
}

/// The files (and links) below `dir`, if it is a folder, as paths relative to `root`; nothing
/// when `dir` is not a folder. A folder that cannot be read is an error, not an empty one.
pub fn files_below(dir: &Path, root: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(out);
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let p = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Compares the work tree with `expected`, where `pin` is the tree HEAD is at; lists only the
/// paths that differ.
pub fn compare(
    repo: &Repository,
    name: &str,
    pin: &Tree<'_>,
    expected: &Tree<'_>,
) -> Result<WorktreeDiff, GitError> {
    let changed = changed_paths(repo, name)?;
    let bundle_paths = tree_changes(repo, name, pin, expected)?;
    compare_changed(repo, name, pin, expected, &bundle_paths, &changed)
}

/// [`compare`], with the work tree's status already read (`changed_paths`): each status is a
/// walk of the whole work tree. `bundle_paths` are the paths where `expected` differs from
/// `pin`.
pub fn compare_changed(
    repo: &Repository,
    name: &str,
    pin: &Tree<'_>,
    expected: &Tree<'_>,
    bundle_paths: &BTreeSet<String>,
    changed: &BTreeSet<String>,
) -> Result<WorktreeDiff, GitError> {
    let mut paths = classify_changed(repo, name, pin, expected, bundle_paths, changed.clone())?;
    paths.retain(|p| p.class != PathClass::Patched);
    Ok(WorktreeDiff { paths })
}

/// Classifies every path that differs from the pin, in the work tree or in the bundles: the
/// paths git status reports (staged and unstaged alike, untracked included, ignored not), the
/// paths the bundles change, and any extra paths (such as those a moved HEAD changed).
/// `candidates` is the status already read (`changed_paths`) plus every path where HEAD
/// differs from the pin: a file the pin tracks that is not among them holds the pin's content,
/// and is not read again. `bundle_paths` are the paths where `expected` differs from `pin`
/// (the engine knows them: [`super::PatchedTree::changed_paths`]).
pub fn classify_changed(
    repo: &Repository,
    name: &str,
    pin: &Tree<'_>,
    expected: &Tree<'_>,
    bundle_paths: &BTreeSet<String>,
    mut candidates: BTreeSet<String>,
) -> Result<Vec<PathState>, GitError> {
    let files = WorkFiles::new(repo, name)?;
    let nested: Vec<&str> = candidates
        .iter()
        .filter(|p| p.ends_with('/'))
        .map(String::as_str)
        .collect();
    let unchanged: BTreeSet<&str> = bundle_paths
        .iter()
        .filter(|p| !candidates.contains(*p) && !nested.iter().any(|n| p.starts_with(n)))
        .map(String::as_str)
        .collect();
    candidates.extend(bundle_paths.iter().cloned());
    // Read only if a path needs it: reading a large index costs more than the rest here.
    let index = std::cell::OnceCell::new();
    let in_index = |path: &str| -> Result<bool, GitError> {
        if index.get().is_none() {
            let _ = index.set(IndexEntries::read(repo, name)?);
        }
        Ok(index.get().is_some_and(|i| i.get(path).is_some()))
    };
    let mut paths = Vec::new();
    for path in candidates {
        let want = entry(expected, &path);
        let at_pin = entry(pin, &path);
        // An ignored file is not in the status: only a tracked file is known from it.
        let have = match at_pin {
            Some(_) if unchanged.contains(path.as_str()) => at_pin,
            _ => files.entry(&path),
        };
        let bundle = bundle_paths.contains(&path);
        let class = if want == have {
            if !bundle {
                continue;
            }
            PathClass::Patched
        } else if bundle && have == at_pin {
            PathClass::Unpatched
        } else if have.is_none() {
            PathClass::Deleted
        } else if bundle {
            PathClass::Drifted
        } else if at_pin.is_none() && !in_index(&path)? {
            PathClass::Untracked
        } else {
            PathClass::Residual
        };
        paths.push(PathState { path, class });
    }
    Ok(paths)
}

/// The index's entries, for lookups by path: read straight from the file, or through libgit2
/// when the file's format is one [`IndexFile`] does not read.
pub enum IndexEntries {
    File(IndexFile),
    Libgit2(git2::Index),
}

impl IndexEntries {
    /// Reads `repo`'s index.
    pub fn read(repo: &Repository, name: &str) -> Result<IndexEntries, GitError> {
        match IndexFile::read(repo.path()) {
            Some(file) => Ok(IndexEntries::File(file)),
            None => repo
                .index()
                .map(IndexEntries::Libgit2)
                .map_err(local(name, "reading the index")),
        }
    }

    /// The blob id and mode staged at `path` (stage 0).
    pub fn get(&self, path: &str) -> Option<(Oid, i32)> {
        match self {
            IndexEntries::File(f) => f
                .get(path.as_bytes())
                .and_then(|e| Some((Oid::from_bytes(&e.id).ok()?, e.mode as i32))),
            IndexEntries::Libgit2(i) => i
                .get_path(Path::new(path), 0)
                .map(|e| (e.id, e.mode as i32)),
        }
    }
}

/// The blob id and mode of a tree entry, `None` when absent or not a file.
pub fn entry(tree: &Tree<'_>, path: &str) -> Option<(Oid, i32)> {
    let e = tree.get_path(Path::new(path)).ok()?;
    (e.kind() == Some(ObjectType::Blob)).then(|| (e.id(), e.filemode()))
}

/// The files of a work tree, hashed the way `git add` records them.
pub struct WorkFiles<'r> {
    repo: &'r Repository,
    workdir: PathBuf,
    autocrlf: bool,
    /// An attributes file that applies to every path exists (`info/attributes`, the global or
    /// the system one).
    global_attributes: bool,
    head: Option<Tree<'r>>,
    /// Folders already looked at: whether a `.gitattributes` is in the folder or above it.
    attributes_above: std::cell::RefCell<std::collections::HashMap<PathBuf, bool>>,
}

impl<'r> WorkFiles<'r> {
    /// The work tree of `repo`.
    pub fn new(repo: &'r Repository, name: &str) -> Result<WorkFiles<'r>, GitError> {
        let workdir = repo
            .workdir()
            .ok_or_else(|| GitError::Local {
                repo: name.to_owned(),
                context: "reading the work tree".to_owned(),
                source: git2::Error::from_str("the repository has no work tree"),
            })?
            .to_path_buf();
        Ok(WorkFiles {
            repo,
            workdir,
            autocrlf: autocrlf(repo),
            global_attributes: global_attributes(repo),
            head: repo.head().ok().and_then(|h| h.peel_to_tree().ok()),
            attributes_above: Default::default(),
        })
    }

    /// The blob id and mode of the file at `rel` (relative to the work tree), `None` when it is
    /// absent or not a file.
    ///
    /// Where a clean filter may apply (`text`, `eol`, `crlf` or `ident` attributes,
    /// `core.autocrlf`), the file goes through it, as `git add` does: a checkout written with CRLF
    /// line endings holds the pin's LF blobs. The blob is then written to the object store, which
    /// every caller has put in memory (`git::in_memory_writes`).
    pub fn entry(&self, rel: &str) -> Option<(Oid, i32)> {
        let path = self.workdir.join(rel);
        let (id, mode) = on_disk(&path)?;
        if mode == 0o120000 || !self.may_filter(rel) {
            return Some((id, mode));
        }
        self.repo.blob_path(&path).ok().map(|id| (id, mode))
    }

    /// Whether a clean filter may apply to `rel`.
    pub fn may_filter(&self, rel: &str) -> bool {
        self.autocrlf
            || (self.attributes_may_apply(rel)
                && ["text", "eol", "crlf", "ident"].iter().any(|attr| {
                    matches!(
                        self.repo
                            .get_attr(Path::new(rel), attr, AttrCheckFlags::default()),
                        Ok(Some(_))
                    )
                }))
    }

    /// Whether any attributes file can name `rel`: one that applies everywhere, or a
    /// `.gitattributes` in one of its folders, on disk or in HEAD. libgit2's lookup reads the
    /// whole index to find the latter, which on a large tree costs more than the rest of a
    /// command; most trees have no attributes file on most paths.
    fn attributes_may_apply(&self, rel: &str) -> bool {
        self.global_attributes
            || Path::new(rel)
                .parent()
                .is_some_and(|dir| self.attributes_in_or_above(dir))
    }

    /// Whether folder `dir` (relative, empty for the root) or one above it has a
    /// `.gitattributes`, on disk or in HEAD; each folder is looked at once.
    fn attributes_in_or_above(&self, dir: &Path) -> bool {
        if let Some(&known) = self.attributes_above.borrow().get(dir) {
            return known;
        }
        let file = dir.join(".gitattributes");
        let here = self.workdir.join(&file).exists()
            || self
                .head
                .as_ref()
                .is_some_and(|t| t.get_path(&file).is_ok());
        let found = here || dir.parent().is_some_and(|p| self.attributes_in_or_above(p));
        self.attributes_above
            .borrow_mut()
            .insert(dir.to_path_buf(), found);
        found
    }
}

/// Whether `core.autocrlf` asks for line-ending conversion.
fn autocrlf(repo: &Repository) -> bool {
    repo.config()
        .ok()
        .and_then(|c| c.get_string("core.autocrlf").ok())
        .is_some_and(|v| {
            !matches!(
                v.to_ascii_lowercase().as_str(),
                "false" | "no" | "off" | "0" | ""
            )
        })
}

/// Whether an attributes file that applies to every path exists: `info/attributes`,
/// `core.attributesFile` (or the per-user default), or the system one.
fn global_attributes(repo: &Repository) -> bool {
    let config_file = repo
        .config()
        .ok()
        .and_then(|c| c.get_path("core.attributesFile").ok());
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".config")));
    [
        Some(repo.path().join("info/attributes")),
        config_file,
        xdg.map(|x| x.join("git/attributes")),
        Some(PathBuf::from("/etc/gitattributes")),
    ]
    .into_iter()
    .flatten()
    .any(|p| p.exists())
}

/// Whether no filter can apply to any file of `tree` when it is written into an empty work
/// tree: no `core.autocrlf`, no attributes file that applies everywhere, and no
/// `.gitattributes` anywhere in the tree. Attributes are all that turn a filter on (`text`,
/// `eol`, `crlf`, `ident`, `filter`), so such a tree is written byte for byte as its blobs.
pub fn no_filters_apply(repo: &Repository, tree: &Tree<'_>) -> bool {
    if autocrlf(repo) || global_attributes(repo) {
        return false;
    }
    let mut found = false;
    let walked = tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
        if entry.name_bytes() == b".gitattributes" {
            found = true;
            return git2::TreeWalkResult::Abort;
        }
        git2::TreeWalkResult::Ok
    });
    walked.is_ok() && !found
}

/// The blob id and mode of a file on disk, as `git add` would record them when no filter
/// applies (see [`WorkFiles::entry`]).
pub fn on_disk(path: &Path) -> Option<(Oid, i32)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).ok()?;
        let id = Oid::hash_object(ObjectType::Blob, target.as_os_str().as_encoded_bytes()).ok()?;
        return Some((id, 0o120000));
    }
    if !meta.is_file() {
        return None;
    }
    let id = Oid::hash_file(ObjectType::Blob, path).ok()?;
    Some((
        id,
        if is_executable(&meta) {
            0o100755
        } else {
            0o100644
        },
    ))
}

/// Git records a file as executable when its owner may execute it (`S_IXUSR`).
#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o100 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}
