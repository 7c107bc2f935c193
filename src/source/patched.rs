//! A tree as bundles leave it, computed in memory: the base tree plus the files the bundles
//! change, with the tree id git would give it, and nothing written to any object store until a
//! caller asks for real objects.
//!
//! Text hunks are applied here as libgit2 applies them, and as `git apply` does when nothing
//! moved (pinstack allows no offset and no fuzz): each hunk at exactly the line its header
//! names (counted in the file as the earlier hunks left it), its context and removed lines
//! compared byte for byte, line endings included; binary patches too ([`super::binary`]), each
//! only to the very file it was made from, and submodule moves (`Subproject commit`), each only
//! from the commit the tree has. Beyond libgit2, as git does: paths a bundle deletes or renames
//! away make way first, and a path renamed away is gone for the sections after the rename; a
//! new file, rename or copy must not land on an existing file, link or submodule; a deleted file
//! must be empty once its hunks are taken out; a link is not taken for a file; a file keeps its
//! mode unless the bundle changes it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use git2::{ObjectType, Oid, Repository, Tree};

use super::tree::{self, Diagnosis, Failure};
use crate::diff::{Change, FilePatch, Patch};

/// A file's entry: blob id and mode (`0o100644`, `0o100755` or `0o120000`).
pub type Entry = (Oid, i32);

const TREE_MODE: i32 = 0o040000;
const SUBMODULE: i32 = 0o160000;

/// A base tree with changed files laid over it.
pub struct PatchedTree<'r> {
    repo: &'r Repository,
    base: Folders<'r>,
    /// Every path a bundle touched: its entry now, `None` when removed.
    changes: BTreeMap<String, Option<Entry>>,
    /// The bytes of every blob the bundles made.
    blobs: HashMap<Oid, Vec<u8>>,
}

/// A folder as git stores it: entries `<octal mode> <name>\0<20-byte id>`, in git's order.
struct RawFolder(Vec<u8>);

/// One entry of a [`RawFolder`].
type RawEntry<'a> = (&'a [u8], i32, Oid);

impl RawFolder {
    fn entries(&self) -> impl Iterator<Item = RawEntry<'_>> {
        let mut rest = self.0.as_slice();
        std::iter::from_fn(move || {
            let space = rest.iter().position(|&b| b == b' ')?;
            let nul = space + rest[space..].iter().position(|&b| b == 0)?;
            let id = Oid::from_bytes(rest.get(nul + 1..nul + 21)?).ok()?;
            let mode = rest[..space].iter().try_fold(0i32, |m, &d| {
                (b'0'..=b'7')
                    .contains(&d)
                    .then(|| m * 8 + i32::from(d - b'0'))
            })?;
            let name = &rest[space + 1..nul];
            rest = &rest[nul + 21..];
            // Old git wrote group-writable files as 100664; git and libgit2 read them as 100644.
            let mode = if mode == 0o100664 { 0o100644 } else { mode };
            Some((name, mode, id))
        })
    }
}

/// A tree's folders, each read once and kept as git stores it: libgit2 keeps no tree larger
/// than 4 KiB in its object cache, so looking up paths one by one would inflate the top
/// folders again for every path. Folders read on other threads are handed back and kept too.
struct Folders<'r> {
    odb: git2::Odb<'r>,
    root: Oid,
    read: RefCell<HashMap<String, Option<Arc<RawFolder>>>>,
}

impl<'r> Folders<'r> {
    fn new(repo: &'r Repository, root: Oid) -> Result<Self, git2::Error> {
        Ok(Folders {
            odb: repo.odb()?,
            root,
            read: RefCell::default(),
        })
    }

    /// The folder at `path` (`""` for the root), `None` when there is no folder there.
    fn folder(&self, path: &str) -> Option<Arc<RawFolder>> {
        if let Some(known) = self.read.borrow().get(path) {
            return known.clone();
        }
        let id = if path.is_empty() {
            Some(self.root)
        } else {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
            let parent = self.folder(parent)?;
            parent
                .entries()
                .find(|(n, mode, _)| *n == name.as_bytes() && *mode == TREE_MODE)
                .map(|(_, _, id)| id)
        };
        let folder = id
            .and_then(|id| self.odb.read(id).ok())
            .filter(|o| o.kind() == ObjectType::Tree)
            .map(|o| Arc::new(RawFolder(o.data().to_vec())));
        self.read
            .borrow_mut()
            .insert(path.to_owned(), folder.clone());
        folder
    }

    /// The entry (id and mode) at `path` whose mode `wanted` accepts.
    fn find(&self, path: &str, wanted: impl Fn(i32) -> bool) -> Option<Entry> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        self.folder(parent)?
            .entries()
            .find(|(n, mode, _)| *n == name.as_bytes() && wanted(*mode))
            .map(|(_, mode, id)| (id, mode))
    }

    /// The entry of the file at `path`, `None` when there is no file there.
    fn entry(&self, path: &str) -> Option<Entry> {
        self.find(path, is_file_mode)
    }

    /// The commit of the submodule at `path`, if there is one.
    fn submodule(&self, path: &str) -> Option<Oid> {
        self.find(path, |mode| mode == SUBMODULE).map(|(id, _)| id)
    }

    /// Whether `path` holds a file, a link or a submodule.
    fn occupied(&self, path: &str) -> bool {
        self.find(path, |mode| mode != TREE_MODE).is_some()
    }

    /// The folders read so far, to be kept by another [`Folders`] of the same tree.
    fn into_read(self) -> HashMap<String, Option<Arc<RawFolder>>> {
        self.read.into_inner()
    }

    fn keep(&self, read: HashMap<String, Option<Arc<RawFolder>>>) {
        self.read.borrow_mut().extend(read);
    }
}

/// Reading an object from a pack makes zlib allocate about 40 KiB and free it again. glibc
/// gives freed memory at the top of a heap back to the kernel, so every object read paid for
/// growing the heap and faulting its pages in again (a fifth of a large `check`). glibc raises
/// its trim threshold to twice the largest block it has mapped and freed; one large block,
/// allocated and freed once, keeps up to 32 MiB of freed memory for reuse. Elsewhere it costs
/// one allocation.
fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(16 << 20))));
}

/// A blob's mode: a file, an executable or a symbolic link.
fn is_file_mode(mode: i32) -> bool {
    matches!(mode, 0o100644 | 0o100755 | 0o120000)
}

/// Where the objects of a built tree go.
type WriteObject<'a> = dyn FnMut(ObjectType, &[u8]) -> Result<(), git2::Error> + 'a;

/// The entries of one folder being rebuilt, by name.
#[derive(Default)]
struct Folder<'p> {
    files: BTreeMap<&'p str, Option<Entry>>,
    folders: BTreeMap<&'p str, Folder<'p>>,
}

impl<'r> PatchedTree<'r> {
    /// `base` with nothing changed.
    pub fn new(repo: &'r Repository, base: Oid) -> Result<Self, git2::Error> {
        keep_freed_memory();
        Ok(PatchedTree {
            repo,
            base: Folders::new(repo, base)?,
            changes: BTreeMap::new(),
            blobs: HashMap::new(),
        })
    }

    /// The id of the tree the changes are laid over.
    pub fn base_id(&self) -> Oid {
        self.base.root
    }

    /// The entry of the file at `path` now; `None` when there is no file there.
    pub fn entry(&self, path: &str) -> Option<Entry> {
        match self.changes.get(path) {
            Some(e) => e.filter(|(_, mode)| is_file_mode(*mode)),
            None => self.base.entry(path),
        }
    }

    /// The paths whose entry the bundles changed (a file, link or submodule added, removed or
    /// changed): what a comparison of the base tree with the result lists, without one.
    pub fn changed_paths(&self) -> BTreeSet<String> {
        self.changes
            .iter()
            .filter(|(path, now)| **now != self.base.find(path, |mode| mode != TREE_MODE))
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// The commit of the submodule at `path` now, if there is one.
    fn submodule(&self, path: &str) -> Option<Oid> {
        match self.changes.get(path) {
            Some(Some((id, SUBMODULE))) => Some(*id),
            Some(_) => None,
            None => self.base.submodule(path),
        }
    }

    /// Whether something other than a folder is at `path` now: a file, a link or a submodule.
    fn occupied(&self, path: &str) -> bool {
        match self.changes.get(path) {
            Some(e) => e.is_some(),
            None => self.base.occupied(path),
        }
    }

    /// Applies one bundle's diff and returns the tree id it leaves. On failure nothing changes,
    /// and the failure says why, down to the file and hunk.
    pub fn apply(&mut self, patch: &Patch) -> Result<Oid, Failure> {
        tree::check_symlinks(
            &|p| self.entry(p).is_some_and(|(_, m)| m == 0o120000),
            patch,
        )?;
        let read = self.read_sources(patch).map_err(other)?;
        let mut step = Step::new(self, patch, read);
        if let Err((section, reason)) = patch
            .files
            .iter()
            .enumerate()
            .try_for_each(|(i, file)| step.file(patch, i, file).map_err(|e| (i, e)))
        {
            return Err(match reason {
                Refusal::AtThePin(reason) => self.diagnose(patch, section, &reason),
                Refusal::Known(diagnosis, detail) => Failure {
                    diagnosis,
                    file: Some(patch.files[section].path().to_owned()),
                    hunk: None,
                    detail,
                },
            });
        }
        let (changes, contents, made, links) = step.finish();
        // Each new file's blob id, hashed on every core; then each checked against the
        // post-image the bundle's `index` line names.
        let ids = crate::par::in_parallel(&contents, |chunk| {
            chunk
                .iter()
                .map(|c| Oid::hash_object(ObjectType::Blob, c))
                .collect::<Result<Vec<Oid>, git2::Error>>()
        })
        .map_err(|e| other(e.message().to_owned()))?;
        for &(section, content) in &made {
            let file = &patch.files[section];
            if let Some(want) = &file.new_id
                && !ids[content].to_string().starts_with(want.as_str())
            {
                return Err(tree::postimage_failure(
                    file.path(),
                    &ids[content].to_string(),
                    want,
                ));
            }
        }
        let before = self.changes.clone();
        let written_now: HashSet<String> = changes
            .iter()
            .filter(|(_, change)| change.is_some())
            .map(|(path, _)| path.clone())
            .collect();
        for (path, change) in changes {
            let entry = change.map(|(made, mode)| match mode {
                SUBMODULE => (links[made], mode),
                _ => (ids[made], mode),
            });
            self.changes.insert(path, entry);
        }
        match self.tree_id() {
            Ok(id) => {
                self.blobs.extend(ids.into_iter().zip(contents));
                Ok(id)
            }
            // A file where a folder is (or the reverse) shows only when the tree is built; the
            // side this bundle wrote is the one named.
            Err(BuildError::Conflict { at, below }) => {
                self.changes = before;
                let (file, detail) = match below {
                    Some(below) if !written_now.contains(&at) => {
                        let detail = format!("{below} is written below {at}, which is a file");
                        (below, detail)
                    }
                    _ => {
                        let detail = format!("{at} is written as a file where {at}/ is a folder");
                        (at, detail)
                    }
                };
                Err(Failure {
                    diagnosis: Diagnosis::Exists,
                    file: Some(file),
                    hunk: None,
                    detail: format!("the bundle does not apply: {detail}"),
                })
            }
            Err(e) => {
                self.changes = before;
                Err(other(format!("the bundle does not apply: {e}")))
            }
        }
    }

    /// The entries and contents of the files a bundle reads (what its sections change, rename
    /// or copy), as they are before it; read on every core when there are many.
    fn read_sources(&self, patch: &Patch) -> Result<HashMap<String, Source>, String> {
        let mut paths: Vec<&str> = patch
            .files
            .iter()
            .filter_map(|f| f.old_path.as_deref())
            .collect();
        paths.sort_unstable();
        paths.dedup();
        let (known, unread): (Vec<&str>, Vec<&str>) = paths
            .into_iter()
            .partition(|p| self.changes.contains_key(*p));
        let mut sources: HashMap<String, Source> = known
            .into_iter()
            .map(|p| {
                let entry = self.changes[p];
                let content = entry.and_then(|(id, _)| self.blobs.get(&id).cloned());
                (p.to_owned(), (entry, content))
            })
            .collect();
        let read_one =
            |repo: &Repository, folders: &Folders<'_>, path: &str| -> Result<Source, String> {
                let Some((id, mode)) = folders.entry(path) else {
                    return Ok((None, None));
                };
                let blob = repo
                    .find_blob(id)
                    .map_err(|e| format!("reading {path} ({id}): {}", e.message()))?;
                Ok((Some((id, mode)), Some(blob.content().to_vec())))
            };
        let read = if unread.len() < 2 * crate::par::AT_LEAST_PER_THREAD {
            unread
                .iter()
                .map(|p| read_one(self.repo, &self.base, p))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            // A repository handle is not shared between threads: each opens its own, and
            // hands back the folders it read.
            let (git_dir, base) = (self.repo.path(), self.base.root);
            let learned = std::sync::Mutex::new(Vec::new());
            let read = crate::par::in_parallel(&unread, |chunk| {
                let reading = |e: git2::Error| format!("reading the pinned tree: {}", e.message());
                let repo = Repository::open(git_dir).map_err(reading)?;
                let folders = Folders::new(&repo, base).map_err(reading)?;
                // The base must be on disk, where this thread's handle reads; an unreadable
                // root would otherwise look like an empty tree.
                if folders.folder("").is_none() {
                    return Err(format!(
                        "tree {base} is not in the repository's object store"
                    ));
                }
                let read = chunk
                    .iter()
                    .map(|p| read_one(&repo, &folders, p))
                    .collect::<Result<Vec<_>, _>>();
                if let Ok(mut learned) = learned.lock() {
                    learned.push(folders.into_read());
                }
                read
            })?;
            for folders in learned.into_inner().unwrap_or_default() {
                self.base.keep(folders);
            }
            read
        };
        sources.extend(unread.into_iter().map(str::to_owned).zip(read));
        Ok(sources)
    }

    /// The id of the tree as it is now, computed without writing anything.
    fn tree_id(&self) -> Result<Oid, BuildError> {
        self.build(&mut |_, _| Ok(()))
    }

    /// Writes the bundles' blobs and every folder they changed into the repository's object
    /// store (its in-memory one, when there is one), and returns the tree.
    pub fn write(&self) -> Result<Tree<'r>, git2::Error> {
        let odb = self.repo.odb()?;
        let mut written = std::collections::HashSet::new();
        for (id, _) in self.changes.values().flatten() {
            if let Some(bytes) = self.blobs.get(id)
                && written.insert(*id)
            {
                odb.write(ObjectType::Blob, bytes)?;
            }
        }
        self.write_folders()
    }

    /// Writes only the folders the bundles changed, and returns the tree: enough to look up
    /// every path's entry; the bundles' blobs stay here ([`PatchedTree::blob`]).
    pub fn write_folders(&self) -> Result<Tree<'r>, git2::Error> {
        let odb = self.repo.odb()?;
        let id = self
            .build(&mut |kind, bytes| odb.write(kind, bytes).map(|_| ()))
            .map_err(|e| git2::Error::from_str(&e.to_string()))?;
        self.repo.find_tree(id)
    }

    /// The content of a blob a bundle made.
    pub fn blob(&self, id: Oid) -> Option<&[u8]> {
        self.blobs.get(&id).map(Vec::as_slice)
    }

    /// Hashes every changed folder from the bottom up, handing each new tree to `write`.
    fn build(&self, write: &mut WriteObject<'_>) -> Result<Oid, BuildError> {
        let mut root = Folder::default();
        for (path, entry) in &self.changes {
            let mut folder = &mut root;
            let mut parts = path.split('/').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    folder.files.insert(part, *entry);
                } else {
                    folder = folder.folders.entry(part).or_default();
                }
            }
        }
        let base = self.base.folder("");
        let id = self.build_folder("", base.as_deref(), &root, write)?;
        match id {
            Some(id) => Ok(id),
            None => {
                let empty = tree_bytes(&mut Vec::new());
                write(ObjectType::Tree, &empty).map_err(BuildError::from)?;
                Oid::hash_object(ObjectType::Tree, &empty).map_err(BuildError::from)
            }
        }
    }

    /// A file and a folder with something in it, both at `at`.
    fn conflict(&self, at: String) -> BuildError {
        let prefix = format!("{at}/");
        let below = self
            .changes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .find(|(_, e)| e.is_some())
            .map(|(p, _)| p.clone());
        BuildError::Conflict { at, below }
    }

    /// Builds one folder: `base`'s entries, with `folder`'s changes. Entries keep their place
    /// (git's order) unless one is added or turns from file to folder.
    fn build_folder(
        &self,
        prefix: &str,
        base: Option<&RawFolder>,
        folder: &Folder<'_>,
        write: &mut WriteObject<'_>,
    ) -> Result<Option<Oid>, BuildError> {
        let mut entries: Vec<RawEntry<'_>> =
            base.map(|b| b.entries().collect()).unwrap_or_default();
        // Entries keep their names and kinds (their sort keys) so that lookups stay valid;
        // removal is marked apart.
        let mut removed = vec![false; entries.len()];
        let find = |entries: &[RawEntry<'_>], name: &str| {
            [false, true].into_iter().find_map(|tree| {
                entries
                    .binary_search_by(|e| {
                        git_order((e.0, e.1 == TREE_MODE), (name.as_bytes(), tree))
                    })
                    .ok()
            })
        };
        let mut added: Vec<RawEntry<'_>> = Vec::new();
        for (name, sub) in &folder.folders {
            let path = format!("{prefix}{name}");
            let at = find(&entries, name).filter(|&i| !removed[i]);
            let below = match at.map(|i| entries[i].1) {
                Some(TREE_MODE) => Some(
                    self.base
                        .folder(&path)
                        .ok_or_else(|| BuildError::Other(format!("reading folder {path}")))?,
                ),
                _ => None,
            };
            // Built first: a folder the bundles empty again is no folder at all.
            let built = self.build_folder(&format!("{path}/"), below.as_deref(), sub, write)?;
            match (built, at) {
                (Some(id), Some(i)) if entries[i].1 == TREE_MODE => entries[i].2 = id,
                // A file stays at this name (the base's, or one written again) where the
                // bundles leave a folder with something in it.
                (Some(_), Some(_)) if folder.files.get(name) != Some(&None) => {
                    return Err(self.conflict(path));
                }
                (Some(id), at) => {
                    // A file the bundle removes gives way to a folder of the same name.
                    if let Some(i) = at {
                        removed[i] = true;
                    }
                    added.push((name.as_bytes(), TREE_MODE, id));
                }
                (None, Some(i)) if entries[i].1 == TREE_MODE => removed[i] = true,
                (None, _) => {}
            }
        }
        for (name, entry) in &folder.files {
            let at = find(&entries, name).filter(|&i| !removed[i]);
            let is_folder = at.is_some_and(|i| entries[i].1 == TREE_MODE)
                || added.iter().any(|a| a.0 == name.as_bytes());
            match (entry, at) {
                (Some(_), _) if is_folder => return Err(self.conflict(format!("{prefix}{name}"))),
                (Some((id, mode)), Some(i)) => {
                    entries[i].1 = *mode;
                    entries[i].2 = *id;
                }
                (Some((id, mode)), None) => added.push((name.as_bytes(), *mode, *id)),
                (None, Some(i)) if !is_folder => removed[i] = true,
                (None, _) => {}
            }
        }
        let mut kept = removed.iter();
        entries.retain(|_| !kept.next().copied().unwrap_or(false));
        entries.append(&mut added);
        if entries.is_empty() {
            return Ok(None);
        }
        let bytes = tree_bytes(&mut entries);
        write(ObjectType::Tree, &bytes)?;
        Ok(Some(Oid::hash_object(ObjectType::Tree, &bytes)?))
    }

    /// Explains a failed bundle against the tree as it was before it.
    fn diagnose(&self, patch: &Patch, section: usize, reason: &str) -> Failure {
        match self.write() {
            Ok(before) => tree::diagnose(self.repo, &before, patch, section, reason),
            Err(e) => other(format!("{reason} ({})", e.message())),
        }
    }
}

/// A file as a bundle finds it: its entry, and its content when it is a file.
type Source = (Option<Entry>, Option<Vec<u8>>);

/// One bundle being applied: its changes are kept apart until every file of it applies.
struct Step<'t, 'r> {
    tree: &'t PatchedTree<'r>,
    /// The files the bundle reads, as they were before it.
    read: HashMap<String, Source>,
    /// Every path the bundle changed so far: its new content (an index into `contents`) and
    /// mode, or `None` when removed.
    changes: BTreeMap<String, Option<(usize, i32)>>,
    contents: Vec<Vec<u8>>,
    /// Which section made which content.
    made: Vec<(usize, usize)>,
    /// The paths the bundle deletes or renames away: as in git, they make way before
    /// anything is written, so a rename may take a path another section vacates.
    vacated: BTreeSet<String>,
    /// The paths earlier sections renamed away: gone for the sections after them.
    renamed_away: HashSet<String>,
    /// The commits submodules are moved to; a change with mode `SUBMODULE` indexes these.
    links: Vec<Oid>,
}

/// What a bundle leaves: its changes (content or submodule commit index and mode, or
/// removed), the contents, which section made which content, and the submodule commits.
type StepResult = (
    BTreeMap<String, Option<(usize, i32)>>,
    Vec<Vec<u8>>,
    Vec<(usize, usize)>,
    Vec<Oid>,
);

/// A file in the middle of a bundle: as it was before the bundle, or as an earlier section of
/// the bundle left it.
enum Now<'s> {
    Before(Entry, &'s [u8]),
    Changed(usize, i32),
}

impl Now<'_> {
    fn mode(&self) -> i32 {
        match self {
            Now::Before((_, mode), _) | Now::Changed(_, mode) => *mode,
        }
    }
}

impl<'t, 'r> Step<'t, 'r> {
    fn new(tree: &'t PatchedTree<'r>, patch: &Patch, read: HashMap<String, Source>) -> Self {
        let vacated = patch
            .files
            .iter()
            .filter(|f| matches!(f.change, Change::Deleted | Change::Renamed))
            .filter_map(|f| f.old_path.clone())
            .collect();
        Step {
            tree,
            read,
            changes: BTreeMap::new(),
            contents: Vec::new(),
            made: Vec::new(),
            vacated,
            renamed_away: HashSet::new(),
            links: Vec::new(),
        }
    }

    /// The file at `path` before the bundle.
    fn before(&self, path: &str) -> Result<Option<Now<'_>>, String> {
        match self.read.get(path) {
            Some((Some(entry), Some(content))) => Ok(Some(Now::Before(*entry, content))),
            Some(_) => Ok(None),
            // Every path a section reads is read ahead (`read_sources`).
            None => Err(format!("{path} was not read before the bundle was applied")),
        }
    }

    /// The file at `path` now.
    fn now(&self, path: &str) -> Result<Option<Now<'_>>, String> {
        match self.changes.get(path) {
            Some(Some((_, SUBMODULE))) => Err(format!("{path} is a submodule, not a file")),
            Some(Some((content, mode))) => Ok(Some(Now::Changed(*content, *mode))),
            Some(None) => Ok(None),
            None => self.before(path),
        }
    }

    /// Refuses to create `path` where something is: a file, link or submodule the bundle
    /// does not delete or rename away (a folder shows when the tree is built).
    fn free(&self, path: &str) -> Result<(), String> {
        let taken = match self.changes.get(path) {
            Some(change) => change.is_some(),
            None => !self.vacated.contains(path) && self.tree.occupied(path),
        };
        if taken {
            return Err(format!("{path} already exists"));
        }
        Ok(())
    }

    /// Whether an earlier section of the bundle wrote `path` (made, changed or moved something
    /// there).
    fn written(&self, path: &str) -> bool {
        matches!(self.changes.get(path), Some(Some(_)))
    }

    /// The commit of the submodule at `path` now, if there is one.
    fn submodule_now(&self, path: &str) -> Option<Oid> {
        match self.changes.get(path) {
            Some(Some((i, SUBMODULE))) => Some(self.links[*i]),
            Some(_) => None,
            None => self.tree.submodule(path),
        }
    }

    /// A section that adds, moves or removes a submodule: one line, `Subproject commit <id>`,
    /// on each side it has.
    fn submodule(&mut self, patch: &Patch, file: &FilePatch) -> Result<(), Refusal> {
        let path = file.path();
        let commit = |lines: Vec<&[u8]>| -> Result<Option<Oid>, String> {
            let bad = || format!("{path}: a submodule section names one `Subproject commit`");
            match lines.as_slice() {
                [] => Ok(None),
                [line] => std::str::from_utf8(line)
                    .ok()
                    .and_then(|l| l.strip_prefix("Subproject commit "))
                    .and_then(|id| Oid::from_str(id.trim()).ok())
                    .map(Some)
                    .ok_or_else(bad),
                _ => Err(bad()),
            }
        };
        let (old, new) = match file.hunks.as_slice() {
            [] => (None, None),
            [hunk] => (
                commit(hunk.preimage(patch, file))?,
                commit(hunk.postimage(patch, file))?,
            ),
            _ => {
                return Err(Refusal::AtThePin(format!(
                    "{path}: a submodule section has one hunk"
                )));
            }
        };
        match file.change {
            Change::Added => self.free(path)?,
            Change::Deleted if self.written(path) => return Err(deleting_what_was_written(path)),
            Change::Modified | Change::Deleted => {
                let now = self.submodule_now(path);
                if now.is_none() || now != old {
                    let at =
                        now.map_or("no submodule".to_owned(), |id| format!("submodule at {id}"));
                    let want = old.map_or("none".to_owned(), |id| id.to_string());
                    return Err(Refusal::Known(
                        Diagnosis::Context,
                        format!("{path}: the pin has {at}, the bundle moves it from {want}"),
                    ));
                }
            }
            Change::Renamed | Change::Copied => {
                return Err(Refusal::AtThePin(format!(
                    "{path}: a bundle cannot rename or copy a submodule"
                )));
            }
        }
        match (file.change, new) {
            (Change::Deleted, _) => {
                self.changes.insert(path.to_owned(), None);
            }
            (_, Some(id)) => {
                self.links.push(id);
                let i = self.links.len() - 1;
                self.changes.insert(path.to_owned(), Some((i, SUBMODULE)));
            }
            (_, None) => {
                return Err(Refusal::AtThePin(format!(
                    "{path}: the section names no commit"
                )));
            }
        }
        Ok(())
    }

    /// Applies section number `section`; the error is a short reason for [`tree::diagnose`].
    fn file(&mut self, patch: &Patch, section: usize, file: &FilePatch) -> Result<(), Refusal> {
        let submodule = Some(SUBMODULE as u32);
        if file.old_mode == submodule || file.new_mode == submodule {
            return self.submodule(patch, file);
        }
        let path = file.path();
        let missing = |old: &str| format!("{old} does not exist");
        let old = match (file.change, &file.old_path) {
            (Change::Added, _) => {
                self.free(path)?;
                None
            }
            // A rename or copy takes its source as it was before the bundle, even when an
            // earlier section changed it (as git does: `git diff -C` lists a copy of a file
            // after the file's own change).
            (Change::Renamed | Change::Copied, Some(old)) => {
                self.free(path)?;
                Some(self.before(old)?.ok_or_else(|| missing(old))?)
            }
            // As git: a path an earlier section renamed away is gone for the sections after it
            // (unless one of them made it again).
            (_, Some(old))
                if self.renamed_away.contains(old) && !self.changes.contains_key(old) =>
            {
                return Err(contradicts_itself(format!(
                    "{old} has been renamed away by an earlier section"
                )));
            }
            (Change::Deleted, Some(old)) if self.changes.get(old) == Some(&None) => {
                return Err(contradicts_itself(format!(
                    "{old} has been deleted by an earlier section"
                )));
            }
            (Change::Deleted, Some(old)) if self.written(old) => {
                return Err(deleting_what_was_written(old));
            }
            (_, Some(old)) => Some(self.now(old)?.ok_or_else(|| missing(old))?),
            (_, None) => {
                return Err(Refusal::AtThePin(format!(
                    "{path}: the section names no old path"
                )));
            }
        };
        // As git: the file must be of the type the bundle expects (a link is not a file).
        if let (Some(now), Some(expected)) = (&old, file.old_mode) {
            let kind = |mode: i32| {
                if mode == 0o120000 {
                    "symbolic link"
                } else {
                    "file"
                }
            };
            if kind(now.mode()) != kind(expected as i32) {
                return Err(Refusal::AtThePin(format!(
                    "{path} is a {} at the pin, but the bundle changes a {}",
                    kind(now.mode()),
                    kind(expected as i32)
                )));
            }
        }
        let (before, old_mode): (&[u8], Option<i32>) = match &old {
            Some(Now::Before((_, mode), content)) => (content, Some(*mode)),
            Some(Now::Changed(content, mode)) => (&self.contents[*content], Some(*mode)),
            None => (&[], None),
        };
        let after = if file.binary {
            // As git: a binary patch applies only to the very file it was made from.
            if let (Some(want), Some(now)) = (&file.old_id, &old) {
                let have = match now {
                    Now::Before((id, _), _) => *id,
                    Now::Changed(..) => Oid::hash_object(ObjectType::Blob, before)
                        .map_err(|e| e.message().to_owned())?,
                }
                .to_string();
                if !have.starts_with(want.as_str()) {
                    return Err(Refusal::AtThePin(format!(
                        "binary file {path} is not the bundle's pre-image"
                    )));
                }
            }
            super::binary::apply(file.binary_body(patch), before)
                .map_err(|e| format!("{path}: {e}"))?
        } else {
            apply_hunks(before, patch, file)
                .map_err(|n| format!("hunk {n} of {path} does not apply"))?
        };
        if file.change == Change::Deleted {
            if !after.is_empty() {
                return Err(Refusal::AtThePin(format!(
                    "removing {path} leaves content behind"
                )));
            }
            self.changes.insert(path.to_owned(), None);
            return Ok(());
        }
        // As git: a new mode only where the bundle changes it (the mode on an `index` line
        // describes the file the bundle was made from), else the file keeps its own.
        let set = file.change == Change::Added || file.old_mode != file.new_mode;
        let mode = match (set, file.new_mode, old_mode) {
            (true, Some(m), _) => m as i32,
            (_, _, Some(m)) => m,
            (_, m, None) => m.map_or(0o100644, |m| m as i32),
        };
        if let (Change::Renamed, Some(old)) = (file.change, &file.old_path) {
            self.renamed_away.insert(old.clone());
        }
        self.contents.push(after);
        let content = self.contents.len() - 1;
        self.made.push((section, content));
        self.changes.insert(path.to_owned(), Some((content, mode)));
        Ok(())
    }

    /// What the bundle leaves: every path it renamed away and did not write again is removed.
    fn finish(mut self) -> StepResult {
        for path in std::mem::take(&mut self.vacated) {
            self.changes.entry(path).or_insert(None);
        }
        (self.changes, self.contents, self.made, self.links)
    }
}

/// Why a section does not apply.
enum Refusal {
    /// Something in the tree is not as the section expects: [`tree::diagnose`] finds out what.
    AtThePin(String),
    /// Already known, and said as it is: a submodule at another commit, or a bundle that
    /// contradicts itself (a later section reads or deletes what an earlier one moved, wrote
    /// or deleted, which `git diff` never writes).
    Known(Diagnosis, String),
}

/// A refusal for a bundle that contradicts itself.
fn contradicts_itself(detail: String) -> Refusal {
    Refusal::Known(
        Diagnosis::Other,
        format!("the bundle contradicts itself: {detail}"),
    )
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal::AtThePin(reason)
    }
}

/// Why a section may not delete what an earlier one wrote: git removes every deleted or
/// replaced file before it writes any, so it would keep the earlier section's file, which
/// is not what the bundle reads as.
fn deleting_what_was_written(path: &str) -> Refusal {
    contradicts_itself(format!(
        "{path} is deleted by a section after one that writes it (git removes files before it \
         writes any, so it does not give the tree the bundle reads as); make the bundle from a \
         single diff"
    ))
}

/// Applies a file section's hunks to `content`; the error is the 1-based number of the hunk
/// that does not apply.
fn apply_hunks(content: &[u8], patch: &Patch, file: &FilePatch) -> Result<Vec<u8>, usize> {
    if file.hunks.is_empty() {
        return Ok(content.to_vec());
    }
    let mut input: Vec<&[u8]> = content.split_inclusive(|&b| b == b'\n').collect();
    let mut at = 0;
    let mut out: Vec<&[u8]> = Vec::with_capacity(input.len() + 8);
    for (n, hunk) in file.hunks.iter().enumerate() {
        let (pre, post) = hunk.exact_images(patch, file);
        let size = out.len() + input.len() - at;
        // Where the hunk's lines start in the file as the earlier hunks left it. A hunk that
        // leaves no lines (a deletion made with -U0) names the line before it.
        let line = if hunk.new_lines == 0 {
            hunk.new_start
        } else {
            hunk.new_start.saturating_sub(1)
        }
        .min(size);
        if line < out.len() {
            // A hunk before the end of the last one (only a hand-made diff does this): go on
            // from the image as it is now.
            let mut image = std::mem::take(&mut out);
            image.extend_from_slice(&input[at..]);
            input = image;
            at = 0;
        }
        let skip = line - out.len();
        out.extend_from_slice(&input[at..at + skip]);
        at += skip;
        if input.len() - at < pre.len() || input[at..at + pre.len()] != pre[..] {
            return Err(n + 1);
        }
        at += pre.len();
        out.extend_from_slice(&post);
    }
    out.extend_from_slice(&input[at..]);
    Ok(out.concat())
}

/// Git's order of tree entries: by name, a folder's name compared as if it ended in `/`.
fn git_order(a: (&[u8], bool), b: (&[u8], bool)) -> std::cmp::Ordering {
    fn key((name, tree): (&[u8], bool)) -> impl Iterator<Item = u8> + '_ {
        name.iter().copied().chain(tree.then_some(b'/'))
    }
    key(a).cmp(key(b))
}

/// A tree object's bytes, its entries in git's order.
fn tree_bytes(entries: &mut [RawEntry<'_>]) -> Vec<u8> {
    entries.sort_by(|a, b| git_order((a.0, a.1 == TREE_MODE), (b.0, b.1 == TREE_MODE)));
    let mut bytes = Vec::with_capacity(entries.len() * 48);
    for (name, mode, id) in entries.iter() {
        match *mode {
            0o100644 => bytes.extend_from_slice(b"100644"),
            0o100755 => bytes.extend_from_slice(b"100755"),
            TREE_MODE => bytes.extend_from_slice(b"40000"),
            other => bytes.extend_from_slice(format!("{other:o}").as_bytes()),
        }
        bytes.push(b' ');
        bytes.extend_from_slice(name);
        bytes.push(0);
        bytes.extend_from_slice(id.as_bytes());
    }
    bytes
}

/// Why the tree the bundles leave cannot be built.
#[derive(Debug)]
enum BuildError {
    /// `at` would be a file and a folder at once; `below` is a path written into the folder.
    Conflict { at: String, below: Option<String> },
    /// Anything else: a folder that cannot be read, an object that cannot be stored.
    Other(String),
}

impl From<git2::Error> for BuildError {
    fn from(e: git2::Error) -> Self {
        BuildError::Other(e.message().to_owned())
    }
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Conflict { at, .. } => write!(f, "{at} would be both a file and a folder"),
            BuildError::Other(detail) => f.write_str(detail),
        }
    }
}

fn other(detail: String) -> Failure {
    Failure {
        diagnosis: Diagnosis::Other,
        file: None,
        hunk: None,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder sorts as if its name ended in `/`: `a.txt` and `a-b` before folder `a`, `a0`
    /// after it. libgit2's tree builder is the oracle.
    #[test]
    fn tree_bytes_orders_entries_as_git_does() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let blob = repo.blob(b"x\n").unwrap();
        let sub = {
            let mut b = repo.treebuilder(None).unwrap();
            b.insert("f", blob, 0o100644).unwrap();
            b.write().unwrap()
        };
        let names: [(&str, Oid, i32); 5] = [
            ("a", sub, TREE_MODE),
            ("a.txt", blob, 0o100644),
            ("a-b", blob, 0o100755),
            ("a0", blob, 0o120000),
            ("b", sub, TREE_MODE),
        ];
        let mut oracle = repo.treebuilder(None).unwrap();
        let mut entries = Vec::new();
        for (name, id, mode) in names {
            oracle.insert(name, id, mode).unwrap();
            entries.push((name.as_bytes(), mode, id));
        }
        let want = oracle.write().unwrap();
        let got = Oid::hash_object(ObjectType::Tree, &tree_bytes(&mut entries)).unwrap();
        // Read back, the folder gives the same entries in the same order.
        let raw = RawFolder(tree_bytes(&mut entries));
        assert_eq!(raw.entries().collect::<Vec<_>>(), entries);
        assert_eq!(got, want);
    }
}
