//! Explaining a source tree as pin + bundles + residual, without a network and without changing
//! the tree, its index or its HEAD; and turning the residual into a bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use git2::{Oid, Repository, RepositoryOpenFlags, Status, Tree};

use crate::diff::{Change, FilePatch, Patch};
use crate::git::{self, local};
use crate::pins::{Pins, Repo};
use crate::source::{self, PathClass, PathState, SourceError, Workspace};
use crate::{bundle, fsutil};

/// Where HEAD stands relative to the pinned commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadState {
    AtPin,
    Ahead,
    Behind,
    Diverged,
    Unrelated,
    /// The pinned commit's objects are not in the repository.
    Unknown,
    /// The repository has no commit yet.
    Unborn,
    /// There is no checkout at the path.
    Missing,
}

impl HeadState {
    /// Stable name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            HeadState::AtPin => "at_pin",
            HeadState::Ahead => "ahead",
            HeadState::Behind => "behind",
            HeadState::Diverged => "diverged",
            HeadState::Unrelated => "unrelated",
            HeadState::Unknown => "unknown",
            HeadState::Unborn => "unborn",
            HeadState::Missing => "missing",
        }
    }
}

/// How much of a bundle the tree holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleState {
    /// Every file holds the bundle's post-image.
    Applied,
    /// Every file holds the bundle's pre-image.
    NotApplied,
    /// Some files hold the post-image, others do not.
    PartiallyApplied,
    /// Every file holds the pre-image, but HEAD or the index records the post-image: the bundle
    /// was applied (committed or staged) and then undone in the work tree.
    Reverted,
}

impl BundleState {
    /// Stable name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            BundleState::Applied => "applied",
            BundleState::NotApplied => "not_applied",
            BundleState::PartiallyApplied => "partially_applied",
            BundleState::Reverted => "reverted",
        }
    }
}

/// How the reference was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The pinned commit's objects: pin + bundles built in memory.
    Full,
    /// The pinned commit is absent: only the blob ids on the bundles' `index` lines were used.
    IndexLines,
}

/// One bundle's state, with each of its files.
#[derive(Debug, Clone)]
pub struct BundleAudit {
    pub bundle: String,
    pub state: BundleState,
    pub files: Vec<PathState>,
}

/// The residual written as a bundle.
#[derive(Debug, Clone)]
pub struct Residual {
    pub path: PathBuf,
    pub sha256: String,
    pub diff_sha256: String,
    pub files: usize,
}

/// The audit of one tree.
#[derive(Debug, Clone)]
pub struct RepoAudit {
    pub name: String,
    pub path: PathBuf,
    pub head: Option<String>,
    pub pinned_commit: String,
    pub pinned_commit_present: bool,
    pub head_state: HeadState,
    pub mode: Mode,
    pub bundles: Vec<BundleAudit>,
    /// Every path that differs from the pin, `patched` ones included.
    pub files: Vec<PathState>,
    /// Ignored entries (build outputs) that were not examined.
    pub ignored: usize,
    /// Paths whose work-tree file is as pinned while the index holds other content (staged,
    /// then taken back in the file): a commit would record what no file shows.
    pub staged_apart: Vec<String>,
    pub residual: Option<Residual>,
}

impl RepoAudit {
    /// HEAD at the pin, every bundle applied, and nothing else changed.
    pub fn clean_as_pinned(&self) -> bool {
        self.head_state == HeadState::AtPin
            && self.bundles.iter().all(|b| b.state == BundleState::Applied)
            && self.files.iter().all(|f| f.class == PathClass::Patched)
            && self.staged_apart.is_empty()
    }
}

/// Audits the tree at `path` against `repo`'s pin; with `export`, also writes the residual.
pub fn audit(
    ws: &Workspace,
    pins: &Pins,
    repo: &Repo,
    path: &Path,
    export: Option<&Path>,
) -> Result<RepoAudit, SourceError> {
    let mut report = RepoAudit {
        name: repo.name.clone(),
        path: path.to_owned(),
        head: None,
        pinned_commit: repo.commit.clone(),
        pinned_commit_present: false,
        head_state: HeadState::Missing,
        mode: Mode::Full,
        bundles: Vec::new(),
        files: Vec::new(),
        ignored: 0,
        staged_apart: Vec::new(),
        residual: None,
    };
    let Ok(r) = Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&str>(),
    ) else {
        if export.is_some() {
            return Err(SourceError::NotACheckout {
                repo: repo.name.clone(),
                path: path.to_owned(),
            });
        }
        return Ok(report);
    };
    if r.workdir().is_none() {
        return Err(SourceError::NotACheckout {
            repo: repo.name.clone(),
            path: path.to_owned(),
        });
    }
    git::in_memory_writes(&r, &repo.name)?;
    let pin = Oid::from_str(&repo.commit).map_err(local(&repo.name, "commit id"))?;
    let head = r.head().ok().and_then(|h| h.target());
    report.head = head.map(|h| h.to_string());
    report.pinned_commit_present = git::has_commit(&r, pin);
    report.head_state = head_state(&r, head, pin, report.pinned_commit_present);
    let loaded = load_bundles(ws, pins, repo)?;
    if report.pinned_commit_present {
        full(&r, repo, pin, head, &loaded, &mut report, export)?;
    } else {
        report.mode = Mode::IndexLines;
        if export.is_some() {
            return Err(SourceError::Unavailable {
                repo: repo.name.clone(),
                message: format!(
                    "exporting the residual needs the pinned commit {}, which is not in {}; \
                     fetch it into that repository first (git fetch origin {})",
                    repo.commit,
                    path.display(),
                    repo.commit
                ),
            });
        }
        index_lines(&r, repo, &loaded, &mut report)?;
    }
    Ok(report)
}

fn head_state(r: &Repository, head: Option<Oid>, pin: Oid, present: bool) -> HeadState {
    let Some(head) = head else {
        return HeadState::Unborn;
    };
    if head == pin {
        return HeadState::AtPin;
    }
    if !present {
        return HeadState::Unknown;
    }
    if r.merge_base(head, pin).is_err() {
        return HeadState::Unrelated;
    }
    match r.graph_ahead_behind(head, pin) {
        Ok((_, 0)) => HeadState::Ahead,
        Ok((0, _)) => HeadState::Behind,
        Ok(_) => HeadState::Diverged,
        Err(_) => HeadState::Unrelated,
    }
}

fn load_bundles(
    ws: &Workspace,
    pins: &Pins,
    repo: &Repo,
) -> Result<Vec<source::LoadedBundle>, SourceError> {
    repo.patches
        .iter()
        .map(|patch| {
            let bytes = source::read_bundle_bytes(pins, &repo.name, patch, &mut |other, file| {
                read_pinned_offline(ws, pins, other, file)
            })?;
            Ok(source::load_bundle(&repo.name, patch, &bytes)?)
        })
        .collect()
}

/// Reads a file of another pinned repo at its pinned commit from the workspace checkout or the
/// object cache, never the network.
fn read_pinned_offline(ws: &Workspace, pins: &Pins, other: &str, file: &str) -> Option<Vec<u8>> {
    let other = pins.repo(other).ok()?;
    let candidates = [
        Repository::open_ext(
            ws.checkout(&other.dir),
            RepositoryOpenFlags::NO_SEARCH,
            std::iter::empty::<&str>(),
        ),
        Repository::open_bare(ws.cache_repo(&other.name, &other.url)),
    ];
    candidates.into_iter().flatten().find_map(|r| {
        let tree = git::commit_tree(&r, &other.name, &other.commit).ok()?;
        git::read_blob(&r, &tree, file)
    })
}

fn full(
    r: &Repository,
    repo: &Repo,
    pin: Oid,
    head: Option<Oid>,
    loaded: &[source::LoadedBundle],
    report: &mut RepoAudit,
    export: Option<&Path>,
) -> Result<(), SourceError> {
    let name = &repo.name;
    // One walk of the work tree gives both the changed paths and the ignored count.
    let (changed, ignored) = source::changed_and_ignored(r, name)?;
    report.ignored = ignored;
    let pin_tree = git::commit_tree(r, name, &repo.commit)?;
    // One engine across the bundles (each bundle's tree is written to the in-memory store, for
    // telling which bundle made which change).
    let mut patched = source::PatchedTree::new(r, pin_tree.id())
        .map_err(local(name, "reading the pinned tree"))?;
    let mut trees = vec![pin_tree.id()];
    for b in loaded {
        patched
            .apply(&b.patch)
            .map_err(|f| SourceError::NotAsPinned {
                repo: name.clone(),
                message: format!(
                    "bundle {} does not apply to its pin ({}); run `pinstack check {name}`",
                    b.label, f.detail
                ),
            })?;
        let next = patched
            .write()
            .map_err(local(name, "building the patched tree"))?;
        trees.push(next.id());
    }
    let expected_id = *trees.last().unwrap_or(&pin);
    let expected = r
        .find_tree(expected_id)
        .map_err(local(name, "reading a tree"))?;
    let head_tree = head
        .and_then(|h| r.find_commit(h).ok())
        .and_then(|c| c.tree().ok());
    let extra = match &head_tree {
        Some(t) if t.id() != pin_tree.id() => source::tree_changes(r, name, t, &pin_tree)?,
        _ => BTreeSet::new(),
    };
    // Git status names an untracked repository inside the tree by its folder (`dir/`).
    let nested: Vec<String> = changed
        .keys()
        .filter(|p| p.ends_with('/'))
        .cloned()
        .collect();
    let mut candidates = extra;
    candidates.extend(changed.keys().cloned());
    let changed_by_bundles = patched.changed_paths();
    report.files = source::classify_changed(
        r,
        name,
        &pin_tree,
        &expected,
        &changed_by_bundles,
        candidates,
    )?;
    report.files.extend(nested.iter().map(|path| PathState {
        path: path.clone(),
        class: PathClass::Untracked,
    }));
    report.files.sort_by(|a, b| a.path.cmp(&b.path));
    report.staged_apart = staged_apart(&changed, &report.files);
    let work = source::WorkFiles::new(r, name)?;
    // Read only when a bundle has paths to look up.
    let mut index = None;
    for (k, b) in loaded.iter().enumerate() {
        let pre = r
            .find_tree(trees[k])
            .map_err(local(name, "reading a tree"))?;
        let post = r
            .find_tree(trees[k + 1])
            .map_err(local(name, "reading a tree"))?;
        let mut files = Vec::new();
        let mut recorded = false;
        for path in bundle_paths(&b.patch) {
            let disk = work.entry(&path);
            let (before, after) = (source::entry(&pre, &path), source::entry(&post, &path));
            let class = if disk == after || disk == source::entry(&expected, &path) {
                PathClass::Patched
            } else if disk == before || disk == source::entry(&pin_tree, &path) {
                // The pin's content is unpatched for every bundle, also for one whose pre-image
                // is an earlier bundle's result.
                PathClass::Unpatched
            } else if disk.is_none() {
                PathClass::Deleted
            } else {
                PathClass::Drifted
            };
            let in_head = head_tree.as_ref().map(|t| source::entry(t, &path));
            if index.is_none() {
                index = Some(source::IndexEntries::read(r, name)?);
            }
            let in_index = index.as_ref().and_then(|i| i.get(&path));
            recorded |= before != after
                && (in_head == Some(after) || (after.is_some() && in_index == after));
            files.push(PathState { path, class });
        }
        let state = bundle_state(&files, recorded);
        report.bundles.push(BundleAudit {
            bundle: b.label.clone(),
            state,
            files,
        });
    }
    if let Some(out) = export {
        if !nested.is_empty() {
            return Err(SourceError::Refused {
                repo: name.clone(),
                message: format!(
                    "a bundle cannot carry another repository, so nothing was written; move \
                     these away first: {}",
                    nested.join(", ")
                ),
            });
        }
        report.residual = export_residual(r, name, &pin_tree, &expected, out)?;
    }
    Ok(())
}

fn bundle_state(files: &[PathState], recorded: bool) -> BundleState {
    let all = |c| files.iter().all(|f| f.class == c);
    if all(PathClass::Patched) {
        BundleState::Applied
    } else if all(PathClass::Unpatched) {
        if recorded {
            BundleState::Reverted
        } else {
            BundleState::NotApplied
        }
    } else {
        BundleState::PartiallyApplied
    }
}

/// The paths a bundle touches (both sides of a rename).
fn bundle_paths(patch: &Patch) -> BTreeSet<String> {
    patch
        .files
        .iter()
        .flat_map(|f| [f.old_path.clone(), f.new_path.clone()])
        .flatten()
        .collect()
}

/// What a bundle says a path holds before or after it: no file, or a file whose blob id (a
/// prefix, from the `index` line) and mode are known when the diff names them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Image {
    Absent,
    File {
        id: Option<String>,
        mode: Option<u32>,
    },
}

impl Image {
    fn matches(&self, disk: Option<(Oid, i32)>) -> bool {
        match (self, disk) {
            (Image::Absent, None) => true,
            (Image::File { id, mode }, Some((d, m))) => {
                id.as_deref().is_none_or(|w| d.to_string().starts_with(w))
                    && mode.is_none_or(|w| i64::from(w) == i64::from(m))
            }
            _ => false,
        }
    }
}

/// The pre- and post-image of each path a file section touches.
fn images(f: &FilePatch) -> Vec<(String, Image, Image)> {
    let known = |id: &Option<String>| id.clone().filter(|i| !i.bytes().all(|c| c == b'0'));
    let file = |id: &Option<String>, mode| Image::File {
        id: known(id),
        mode,
    };
    match (&f.old_path, &f.new_path) {
        (Some(old), Some(new)) if old == new => vec![(
            new.clone(),
            file(&f.old_id, f.old_mode),
            file(&f.new_id, f.new_mode),
        )],
        (Some(old), Some(new)) => {
            // A rename or copy; without an index line (100% similar) the content is the old one.
            let before = file(&f.old_id, f.old_mode);
            let after = Image::File {
                id: known(&f.new_id).or_else(|| known(&f.old_id)),
                mode: f.new_mode.or(f.old_mode),
            };
            let old_after = if f.change == Change::Copied {
                before.clone()
            } else {
                Image::Absent
            };
            vec![
                (old.clone(), before, old_after),
                (new.clone(), Image::Absent, after),
            ]
        }
        (None, Some(new)) => vec![(new.clone(), Image::Absent, file(&f.new_id, f.new_mode))],
        (Some(old), None) => vec![(old.clone(), file(&f.old_id, f.old_mode), Image::Absent)],
        (None, None) => Vec::new(),
    }
}

/// Without the pin's objects: each bundle file's blob is compared with the pre- and post-image
/// ids (and modes) its diff names; other changes are read from git status against HEAD.
fn index_lines(
    r: &Repository,
    repo: &Repo,
    loaded: &[source::LoadedBundle],
    report: &mut RepoAudit,
) -> Result<(), SourceError> {
    let workdir = r.workdir().unwrap_or(Path::new(".")).to_path_buf();
    let work = source::WorkFiles::new(r, &repo.name)?;
    // Where bundles stack on one path, the first pre-image is the pin's content and the last
    // post-image the bundles' result.
    let mut first_pre: BTreeMap<String, Image> = BTreeMap::new();
    let mut last_post: BTreeMap<String, Image> = BTreeMap::new();
    for b in loaded {
        for (path, pre, post) in b.patch.files.iter().flat_map(images) {
            first_pre.entry(path.clone()).or_insert(pre);
            last_post.insert(path, post);
        }
    }
    let class = |disk: Option<(Oid, i32)>, patched: bool, unpatched: bool| {
        if patched {
            PathClass::Patched
        } else if unpatched {
            PathClass::Unpatched
        } else if disk.is_none() {
            PathClass::Deleted
        } else {
            PathClass::Drifted
        }
    };
    for b in loaded {
        let mut files = Vec::new();
        for (path, pre, post) in b.patch.files.iter().flat_map(images) {
            let disk = work.entry(&path);
            let class = class(
                disk,
                post.matches(disk) || last_post[&path].matches(disk),
                pre.matches(disk) || first_pre[&path].matches(disk),
            );
            files.push(PathState { path, class });
        }
        report.bundles.push(BundleAudit {
            bundle: b.label.clone(),
            state: bundle_state(&files, false),
            files,
        });
    }
    for (path, post) in &last_post {
        let disk = work.entry(path);
        report.files.push(PathState {
            path: path.clone(),
            class: class(disk, post.matches(disk), first_pre[path].matches(disk)),
        });
    }
    let opts = source::ScanOptions {
        submodules: false,
        ignored: true,
    };
    let scan = source::scan(r, &repo.name, opts)?;
    report.ignored += scan.ignored;
    for (path, st) in &scan.changed {
        if last_post.contains_key(path) {
            continue;
        }
        let class = if st.contains(Status::WT_NEW) {
            PathClass::Untracked
        } else if st.intersects(Status::WT_DELETED | Status::INDEX_DELETED)
            && !workdir.join(path).exists()
        {
            PathClass::Deleted
        } else {
            PathClass::Residual
        };
        report.files.push(PathState {
            path: path.clone(),
            class,
        });
    }
    report.files.sort_by(|a, b| a.path.cmp(&b.path));
    report.staged_apart = staged_apart(&scan.changed, &report.files);
    Ok(())
}

/// The paths the status shows staged apart from their file ([`source::staged_apart`]) whose
/// file is as pinned (unnamed in the report, or `patched`): the index is what is wrong there.
fn staged_apart(
    changed: &std::collections::BTreeMap<String, Status>,
    files: &[PathState],
) -> Vec<String> {
    changed
        .iter()
        .filter(|(path, st)| {
            let file_as_pinned = match files.binary_search_by(|f| f.path.cmp(path)) {
                Ok(i) => files[i].class == PathClass::Patched,
                Err(_) => true,
            };
            source::staged_apart(**st) && file_as_pinned
        })
        .map(|(path, _)| path.clone())
        .collect()
}

/// Writes everything the bundles do not explain as a bundle, after proving that pin + bundles +
/// it reproduces the work tree.
fn export_residual(
    r: &Repository,
    name: &str,
    pin_tree: &Tree<'_>,
    expected: &Tree<'_>,
    out: &Path,
) -> Result<Option<Residual>, SourceError> {
    let Some(patch) = source::capture(r, name, expected, pin_tree, "the residual")? else {
        return Ok(None);
    };
    let text = patch.as_bytes();
    let encoded = bundle::encode(text);
    fsutil::write_atomic(out, &encoded).map_err(|e| SourceError::Io {
        path: out.to_owned(),
        source: e,
    })?;
    Ok(Some(Residual {
        path: out.to_owned(),
        sha256: bundle::sha256_hex(&encoded),
        diff_sha256: bundle::sha256_hex(text),
        files: patch.files.len(),
    }))
}
