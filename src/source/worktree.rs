//! Comparing a work tree with the tree it should hold (pin + bundles), path by path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use git2::{AttrCheckFlags, ObjectType, Oid, Repository, Status, StatusOptions, Statuses, Tree};

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

/// One walk of the work tree, as `git status --ignored` shows it: staged and unstaged changes,
/// untracked files (folders entered), and ignored entries (ignored folders not entered).
pub fn status<'r>(repo: &'r Repository, name: &str) -> Result<Statuses<'r>, GitError> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(true)
        .recurse_ignored_dirs(false)
        .renames_head_to_index(false)
        .exclude_submodules(true);
    repo.statuses(Some(&mut opts))
        .map_err(local(name, "reading the work tree status"))
}

/// Paths changed in the work tree or index relative to HEAD, untracked included, ignored not.
pub fn changed_paths(repo: &Repository, name: &str) -> Result<BTreeSet<String>, GitError> {
    Ok(changed_and_ignored(repo, name)?.0)
}

/// [`changed_paths`] and the number of ignored entries, from one walk of the work tree.
pub fn changed_and_ignored(
    repo: &Repository,
    name: &str,
) -> Result<(BTreeSet<String>, usize), GitError> {
    let mut changed = BTreeSet::new();
    let mut ignored = 0;
    for s in status(repo, name)?.iter() {
        if s.status().contains(Status::IGNORED) {
            ignored += 1;
        } else if s.status() != Status::CURRENT
            && let Some(p) = s.path()
        {
            changed.insert(p.to_owned());
        }
    }
    Ok((changed, ignored))
}

/// Paths whose entries differ between two trees.
pub fn tree_changes(
    repo: &Repository,
    name: &str,
    from: &Tree<'_>,
    to: &Tree<'_>,
) -> Result<BTreeSet<String>, GitError> {
    let diff = repo
        .diff_tree_to_tree(Some(from), Some(to), None)
        .map_err(local(name, "comparing trees"))?;
    let mut paths = BTreeSet::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(p) = file.path().and_then(Path::to_str) {
                paths.insert(p.to_owned());
            }
        }
    }
    Ok(paths)
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
    compare_changed(repo, name, pin, expected, &changed)
}

/// [`compare`], with the work tree's status already read (`changed_paths`): each status is a
/// walk of the whole work tree.
pub fn compare_changed(
    repo: &Repository,
    name: &str,
    pin: &Tree<'_>,
    expected: &Tree<'_>,
    changed: &BTreeSet<String>,
) -> Result<WorktreeDiff, GitError> {
    let mut paths = classify_changed(repo, name, pin, expected, changed.clone())?;
    paths.retain(|p| p.class != PathClass::Patched);
    Ok(WorktreeDiff { paths })
}

/// Classifies every path that differs from the pin, in the work tree or in the bundles: the
/// paths git status reports (staged and unstaged alike, untracked included, ignored not), the
/// paths the bundles change, and any extra paths (such as those a moved HEAD changed).
/// `candidates` is the status already read (`changed_paths`) plus any extra paths.
pub fn classify_changed(
    repo: &Repository,
    name: &str,
    pin: &Tree<'_>,
    expected: &Tree<'_>,
    mut candidates: BTreeSet<String>,
) -> Result<Vec<PathState>, GitError> {
    let files = WorkFiles::new(repo, name)?;
    let bundle_paths = tree_changes(repo, name, pin, expected)?;
    candidates.extend(bundle_paths.iter().cloned());
    let index = repo.index().map_err(local(name, "reading the index"))?;
    let mut paths = Vec::new();
    for path in candidates {
        let want = entry(expected, &path);
        let have = files.entry(&path);
        let bundle = bundle_paths.contains(&path);
        let class = if want == have {
            if !bundle {
                continue;
            }
            PathClass::Patched
        } else if bundle && have == entry(pin, &path) {
            PathClass::Unpatched
        } else if have.is_none() {
            PathClass::Deleted
        } else if bundle {
            PathClass::Drifted
        } else if entry(pin, &path).is_none() && index.get_path(Path::new(&path), 0).is_none() {
            PathClass::Untracked
        } else {
            PathClass::Residual
        };
        paths.push(PathState { path, class });
    }
    Ok(paths)
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
        let autocrlf = repo
            .config()
            .ok()
            .and_then(|c| c.get_string("core.autocrlf").ok())
            .is_some_and(|v| {
                !matches!(
                    v.to_ascii_lowercase().as_str(),
                    "false" | "no" | "off" | "0" | ""
                )
            });
        Ok(WorkFiles {
            repo,
            workdir,
            autocrlf,
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
        if mode == 0o120000 || !self.filtered(rel) {
            return Some((id, mode));
        }
        self.repo.blob_path(&path).ok().map(|id| (id, mode))
    }

    fn filtered(&self, rel: &str) -> bool {
        self.autocrlf
            || ["text", "eol", "crlf", "ident"].iter().any(|attr| {
                matches!(
                    self.repo
                        .get_attr(Path::new(rel), attr, AttrCheckFlags::default()),
                    Ok(Some(_))
                )
            })
    }
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

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}
