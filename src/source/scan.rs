//! The work tree's status, at the cost of one `lstat` per tracked file.
//!
//! libgit2's status reads the whole index through a hash map, checks its SHA-1, inflates every
//! tree of HEAD to compare with it, and stats every file by its absolute path: about twice the
//! time of `git status`. This status does what git does instead. It reads the index file
//! directly ([`IndexFile`]); compares HEAD with the index through the index's cache tree,
//! opening only the trees whose cached id is gone or differs; walks the work tree through
//! directory handles on every core, stating each entry by its name alone and comparing with the
//! stat data the index recorded (git's racy-clean rule included); hashes only the files whose
//! stat data differs; and asks libgit2's ignore rules about the entries the index does not
//! know. libgit2's own status decides, for those paths only, what this one leaves to it: files
//! a filter may rewrite, conflicts, skip-worktree and intent-to-add entries, submodules. When
//! the walk cannot be used at all (an index format it does not read, a case-insensitive or
//! SHA-256 repository, an unborn HEAD), libgit2's status of the whole tree answers.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use git2::{ObjectType, Repository, Status, StatusOptions, Tree};

use super::index_file::{CacheNode, Entry, IndexFile};
use super::worktree::{WorkFiles, on_disk};
use crate::git::{GitError, local};

/// What a status of the work tree reports, as `git status --ignored` would list it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Paths changed in the index or the work tree relative to HEAD, with how, untracked files
    /// included (folders entered; an untracked repository is one `dir/` entry).
    pub changed: BTreeMap<String, Status>,
    /// Ignored files, and ignored folders (not entered).
    pub ignored: usize,
}

/// What a status looks at.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// Report submodules whose commit or content changed.
    pub submodules: bool,
    /// Count ignored entries.
    pub ignored: bool,
}

const GITLINK: u32 = 0o160000;

/// Above this many paths for libgit2 to decide (a tree under `core.autocrlf` with every file
/// touched, say), one libgit2 status of the whole tree answers instead.
const MAX_DEFERRED: usize = 4096;

/// The status of `repo`'s work tree.
pub fn scan(repo: &Repository, name: &str, opts: ScanOptions) -> Result<Scan, GitError> {
    match fast(repo, name, opts)? {
        Some(scan) => Ok(scan),
        None => libgit2_status(repo, name, opts, None),
    }
}

/// libgit2's status, of the whole tree or of the given paths only (a folder covers what is in
/// it).
fn libgit2_status(
    repo: &Repository,
    name: &str,
    opts: ScanOptions,
    paths: Option<&BTreeSet<Vec<u8>>>,
) -> Result<Scan, GitError> {
    let mut o = StatusOptions::new();
    o.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(opts.ignored)
        .recurse_ignored_dirs(false)
        .renames_head_to_index(false)
        .exclude_submodules(!opts.submodules);
    if let Some(paths) = paths {
        o.disable_pathspec_match(true);
        for p in paths {
            o.pathspec(bytes_to_path(p));
        }
    }
    let statuses = repo
        .statuses(Some(&mut o))
        .map_err(local(name, "reading the work tree status"))?;
    let mut scan = Scan::default();
    for s in statuses.iter() {
        if s.status().contains(Status::IGNORED) {
            scan.ignored += 1;
        } else if s.status() != Status::CURRENT
            && let Some(p) = s.path()
        {
            scan.changed.insert(p.to_owned(), s.status());
        }
    }
    Ok(scan)
}

#[cfg(unix)]
fn bytes_to_path(p: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(p).into()
}

#[cfg(not(unix))]
fn bytes_to_path(p: &[u8]) -> std::path::PathBuf {
    String::from_utf8_lossy(p).into_owned().into()
}

/// The status without libgit2's whole-tree walk; `Ok(None)` when it cannot be used.
fn fast(repo: &Repository, name: &str, opts: ScanOptions) -> Result<Option<Scan>, GitError> {
    let Some(config) = repo.config().ok() else {
        return Ok(None);
    };
    let flag = |key: &str| config.get_bool(key).ok();
    // Paths compared case-insensitively, or stored without symbolic links, or ids that are not
    // SHA-1: the index's bytes would not mean what the walk assumes.
    if flag("core.ignorecase") == Some(true)
        || flag("core.symlinks") == Some(false)
        || config
            .get_string("extensions.objectformat")
            .is_ok_and(|f| !f.eq_ignore_ascii_case("sha1"))
    {
        return Ok(None);
    }
    let filemode = flag("core.filemode") != Some(false);
    let (Some(workdir), Some(index), Some(head)) = (
        repo.workdir(),
        IndexFile::read(repo.path()),
        repo.head().ok().and_then(|h| h.peel_to_tree().ok()),
    ) else {
        return Ok(None);
    };
    let mut st = Statuses::default();
    let cache = index.tree.as_ref();
    let staged_ok = staged(repo, &index, b"", &head, cache, &index.entries, &mut st);
    let (Some(()), Some(found)) = (staged_ok, walk::work_tree(workdir, &index)) else {
        return Ok(None);
    };
    let files = WorkFiles::new(repo, name)?;
    // A submodule is left out unless asked for, but one that is no longer a folder (a file or
    // a link took its place, or it is gone) is a change of the tree itself.
    let gitlink_kept = |path: &[u8]| {
        std::fs::symlink_metadata(workdir.join(bytes_to_path(path))).is_ok_and(|m| m.is_dir())
    };
    for &i in &found.changed {
        let e = &index.entries[i];
        let path = index.path(e);
        if e.mode == GITLINK {
            if opts.submodules || !gitlink_kept(path) {
                st.defer.insert(path.to_vec());
            }
            continue;
        }
        let rel = String::from_utf8_lossy(path);
        if e.special || files.may_filter(&rel) {
            st.defer.insert(path.to_vec());
            continue;
        }
        let full = workdir.join(bytes_to_path(path));
        let meta = std::fs::symlink_metadata(&full).ok();
        if meta.as_ref().is_some_and(|m| m.is_dir()) {
            // A folder where the index has a file: the file is gone, the folder is new.
            st.add(path, Status::WT_DELETED);
            untracked(repo, workdir, path, true, &mut st);
            continue;
        }
        match on_disk(&full) {
            None => st.add(path, Status::WT_DELETED),
            Some((id, mode)) => {
                let same_kind = (mode == 0o120000) == (e.mode == 0o120000);
                let same_mode = !filemode || mode as u32 == e.mode;
                if !same_kind {
                    st.add(path, Status::WT_TYPECHANGE);
                } else if id.as_bytes() != e.id || !same_mode {
                    st.add(path, Status::WT_MODIFIED);
                }
            }
        }
    }
    for (i, e) in index.entries.iter().enumerate() {
        if found.seen[i] {
            continue;
        }
        let path = index.path(e);
        if e.mode == GITLINK {
            if opts.submodules || !gitlink_kept(path) {
                st.defer.insert(path.to_vec());
            }
        } else if e.special || found.unreadable.iter().any(|d| path.starts_with(d)) {
            st.defer.insert(path.to_vec());
        } else {
            st.add(path, Status::WT_DELETED);
        }
    }
    for (path, is_dir) in &found.unknown {
        untracked(repo, workdir, path, *is_dir, &mut st);
    }
    st.defer.extend(found.unreadable.iter().cloned());
    if st.defer.len() > MAX_DEFERRED {
        // One status of the whole tree costs less than one per path by then.
        return Ok(None);
    }
    // libgit2 decides the deferred paths and everything under them, alone.
    let deferred = |p: &[u8]| {
        let listed = |q: &[u8]| st.defer.contains(q) || st.defer.contains(&[q, b"/"].concat());
        listed(p) || (0..p.len()).any(|i| p[i] == b'/' && listed(&p[..i]))
    };
    let mut scan = Scan {
        changed: BTreeMap::new(),
        ignored: if opts.ignored {
            st.ignored.iter().filter(|p| !deferred(p)).count()
        } else {
            0
        },
    };
    for (path, status) in &st.changed {
        // As libgit2 reports them: paths that are not UTF-8 are left out.
        if !deferred(path)
            && let Ok(p) = std::str::from_utf8(path)
        {
            scan.changed.insert(p.to_owned(), *status);
        }
    }
    if !st.defer.is_empty() {
        let rest = libgit2_status(repo, name, opts, Some(&st.defer))?;
        scan.changed.extend(rest.changed);
        scan.ignored += rest.ignored;
    }
    Ok(Some(scan))
}

/// Statuses as they are found, by path.
#[derive(Default)]
struct Statuses {
    changed: BTreeMap<Vec<u8>, Status>,
    /// Ignored files, and ignored folders (not entered).
    ignored: Vec<Vec<u8>>,
    /// Paths libgit2's status decides.
    defer: BTreeSet<Vec<u8>>,
}

impl Statuses {
    fn add(&mut self, path: &[u8], status: Status) {
        *self.changed.entry(path.to_vec()).or_insert(Status::empty()) |= status;
    }
}

/// An entry the index does not know: ignored (counted, not entered), a file (untracked), a
/// repository of its own (one `dir/` entry), or a folder, whose entries are looked at in turn.
fn untracked(repo: &Repository, workdir: &Path, rel: &[u8], is_dir: bool, st: &mut Statuses) {
    let path = bytes_to_path(rel);
    if repo.is_path_ignored(&path).unwrap_or(false) {
        st.ignored.push(rel.to_vec());
        return;
    }
    if !is_dir {
        st.add(rel, Status::WT_NEW);
        return;
    }
    let full = workdir.join(&path);
    if std::fs::symlink_metadata(full.join(".git")).is_ok() {
        st.add(&[rel, b"/"].concat(), Status::WT_NEW);
        return;
    }
    let Ok(entries) = std::fs::read_dir(&full) else {
        st.defer.insert(rel.to_vec());
        return;
    };
    // Git sees files, symbolic links and folders only (not pipes, sockets or devices).
    let mut children: Vec<(Vec<u8>, bool)> = entries
        .flatten()
        .filter_map(|e| {
            let kind = e.file_type().ok()?;
            let seen = kind.is_file() || kind.is_symlink() || kind.is_dir();
            let name = e.file_name();
            seen.then(|| ([rel, b"/", name.as_encoded_bytes()].concat(), kind.is_dir()))
        })
        .collect();
    children.sort();
    for (child, is_dir) in children {
        untracked(repo, workdir, &child, is_dir, st);
    }
}

/// Records how the index differs from HEAD's `tree` at folder `prefix` (empty, or ending in
/// `/`); `entries` are the index entries under `prefix`. A folder whose cache-tree id equals
/// HEAD's is skipped unread. `None` when a tree cannot be read.
fn staged(
    repo: &Repository,
    index: &IndexFile,
    prefix: &[u8],
    tree: &Tree<'_>,
    cache: Option<&CacheNode>,
    entries: &[Entry],
    st: &mut Statuses,
) -> Option<()> {
    if cache.and_then(|c| c.id) == Some(oid_bytes(tree.id())) {
        return Some(());
    }
    let join = |name: &[u8]| [prefix, name].concat();
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let mut i = 0;
    while i < entries.len() {
        let rest = &index.path(&entries[i])[prefix.len()..];
        let head = tree.get_name_bytes(rest.split(|&b| b == b'/').next()?);
        match rest.iter().position(|&b| b == b'/') {
            None => {
                let e = &entries[i];
                let path = index.path(e);
                seen.insert(rest);
                i += 1;
                if e.special
                    || e.mode == GITLINK
                    || head.as_ref().is_some_and(|h| h.filemode() == 0o160000)
                {
                    // Conflicts, intent-to-add, submodules: libgit2 decides.
                    st.defer.insert(path.to_vec());
                    continue;
                }
                match head {
                    None => st.add(path, Status::INDEX_NEW),
                    Some(h) if h.kind() == Some(ObjectType::Tree) => {
                        // A folder of HEAD became a file.
                        st.add(path, Status::INDEX_NEW);
                        deleted(repo, prefix, &h, st)?;
                    }
                    Some(h) => {
                        let mode = u32::try_from(h.filemode()).ok()?;
                        if (mode == 0o120000) != (e.mode == 0o120000) {
                            st.add(path, Status::INDEX_TYPECHANGE);
                        } else if h.id().as_bytes() != e.id || mode != e.mode {
                            st.add(path, Status::INDEX_MODIFIED);
                        }
                    }
                }
            }
            Some(slash) => {
                let dir = &rest[..slash];
                let start = i;
                while i < entries.len() && in_folder(&index.path(&entries[i])[prefix.len()..], dir)
                {
                    i += 1;
                }
                seen.insert(dir);
                let under = &entries[start..i];
                match head.as_ref().map(|h| (h.kind(), h.id(), h.filemode())) {
                    Some((Some(ObjectType::Tree), id, _)) => {
                        let sub = repo.find_tree(id).ok()?;
                        let child = cache
                            .and_then(|c| c.children.iter().find(|n| n.name.as_slice() == dir));
                        let sub_prefix = [prefix, dir, b"/"].concat();
                        staged(repo, index, &sub_prefix, &sub, child, under, st)?;
                    }
                    // A new folder, or one where HEAD has a file (or a submodule).
                    other => {
                        if let Some((_, _, mode)) = other {
                            if mode == 0o160000 {
                                st.defer.insert(join(dir));
                            } else {
                                st.add(&join(dir), Status::INDEX_DELETED);
                            }
                        }
                        for e in under {
                            if e.special || e.mode == GITLINK {
                                st.defer.insert(index.path(e).to_vec());
                            } else {
                                st.add(index.path(e), Status::INDEX_NEW);
                            }
                        }
                    }
                }
            }
        }
    }
    // What HEAD has and the index lacks.
    for h in tree.iter() {
        if !seen.contains(h.name_bytes()) {
            deleted(repo, prefix, &h, st)?;
        }
    }
    Some(())
}

/// HEAD's entry `h` in folder `prefix`, which the index no longer has: deleted from the index
/// (every file of it, for a folder; libgit2 decides a submodule).
fn deleted(
    repo: &Repository,
    prefix: &[u8],
    h: &git2::TreeEntry<'_>,
    st: &mut Statuses,
) -> Option<()> {
    let path = [prefix, h.name_bytes()].concat();
    match h.kind() {
        Some(ObjectType::Tree) => {
            let sub = repo.find_tree(h.id()).ok()?;
            let sub_prefix = [path.as_slice(), b"/"].concat();
            for child in sub.iter() {
                deleted(repo, &sub_prefix, &child, st)?;
            }
        }
        Some(ObjectType::Commit) => {
            st.defer.insert(path);
        }
        _ => st.add(&path, Status::INDEX_DELETED),
    }
    Some(())
}

/// Whether `rest` (a path relative to some folder) lies in its subfolder `dir`.
fn in_folder(rest: &[u8], dir: &[u8]) -> bool {
    rest.len() > dir.len() && rest.starts_with(dir) && rest[dir.len()] == b'/'
}

fn oid_bytes(id: git2::Oid) -> [u8; 20] {
    let mut out = [0; 20];
    out.copy_from_slice(&id.as_bytes()[..20]);
    out
}

#[cfg(unix)]
mod walk {
    //! The work tree walk, through directory handles (an `lstat` by name, not by full path).

    use std::ops::Range;
    use std::os::fd::OwnedFd;
    use std::path::Path;
    use std::sync::{Condvar, Mutex};

    use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, openat, statat};

    use super::super::index_file::{Entry, IndexFile, Stamp};
    use super::GITLINK;

    /// What the walk found.
    #[derive(Default)]
    pub struct Walked {
        /// Index entries the stat data does not prove unchanged (or special, or submodules).
        pub changed: Vec<usize>,
        /// Whether each index entry was found on disk.
        pub seen: Vec<bool>,
        /// Entries the index does not know, and whether each is a folder.
        pub unknown: Vec<(Vec<u8>, bool)>,
        /// Tracked folders that could not be read (with a trailing `/`).
        pub unreadable: Vec<Vec<u8>>,
    }

    /// A folder to read: its path (empty, or ending in `/`), a handle, and the range of index
    /// entries under it.
    struct Folder {
        prefix: Vec<u8>,
        fd: OwnedFd,
        range: Range<usize>,
    }

    /// What one thread found.
    #[derive(Default)]
    struct Found {
        changed: Vec<usize>,
        seen: Vec<usize>,
        unknown: Vec<(Vec<u8>, bool)>,
        unreadable: Vec<Vec<u8>>,
    }

    /// Folders waiting to be read, and how many are being read now.
    struct Queue {
        folders: Mutex<(Vec<Folder>, usize)>,
        changed: Condvar,
    }

    impl Queue {
        /// The next folder, or `None` once every folder is read.
        fn next(&self) -> Option<Folder> {
            let mut q = self.folders.lock().ok()?;
            loop {
                if let Some(f) = q.0.pop() {
                    q.1 += 1;
                    return Some(f);
                }
                if q.1 == 0 {
                    return None;
                }
                q = self.changed.wait(q).ok()?;
            }
        }

        fn push(&self, f: Folder) {
            if let Ok(mut q) = self.folders.lock() {
                q.0.push(f);
                self.changed.notify_one();
            }
        }

        fn done(&self) {
            if let Ok(mut q) = self.folders.lock() {
                q.1 -= 1;
                if q.1 == 0 && q.0.is_empty() {
                    self.changed.notify_all();
                }
            }
        }
    }

    /// Marks a folder read when dropped.
    struct Done<'a>(&'a Queue);

    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.done();
        }
    }

    /// Walks the work tree: compares every tracked file's stat data with the index, and lists
    /// what the index does not know. Folders are read by as many threads as there are cores
    /// (at most four), as git's index preloading does.
    pub fn work_tree(workdir: &Path, index: &IndexFile) -> Option<Walked> {
        let root = openat(
            rustix::fs::CWD,
            workdir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let queue = Queue {
            folders: Mutex::new((
                vec![Folder {
                    prefix: Vec::new(),
                    fd: root,
                    range: 0..index.entries.len(),
                }],
                0,
            )),
            changed: Condvar::new(),
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let found: Vec<Found> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut found = Found::default();
                        while let Some(folder) = queue.next() {
                            // Counted done even if reading it panics, so no thread waits forever.
                            let _done = Done(&queue);
                            read_folder(folder, index, &mut found, &queue);
                        }
                        found
                    })
                })
                .collect();
            workers.into_iter().filter_map(|w| w.join().ok()).collect()
        });
        if found.len() != threads {
            return None;
        }
        let mut walked = Walked {
            seen: vec![false; index.entries.len()],
            ..Walked::default()
        };
        for f in found {
            walked.changed.extend(f.changed);
            walked.unknown.extend(f.unknown);
            walked.unreadable.extend(f.unreadable);
            for i in f.seen {
                walked.seen[i] = true;
            }
        }
        walked.changed.sort_unstable();
        walked.unknown.sort();
        Some(walked)
    }

    /// Reads one folder: compares its tracked files with the index, queues its tracked
    /// subfolders, and records everything else.
    fn read_folder(folder: Folder, index: &IndexFile, found: &mut Found, queue: &Queue) {
        let Folder { prefix, fd, range } = folder;
        let entries = &index.entries;
        // The first entry in `range` at or after `key` (entries are sorted by path).
        let lower = |range: &Range<usize>, key: &[u8]| {
            range.start + entries[range.clone()].partition_point(|e| index.path(e) < key)
        };
        // The names first, then the stats: the directory stream holds its own handle.
        let mut names: Vec<u8> = Vec::new();
        let mut spans: Vec<(usize, usize, FileType)> = Vec::new();
        match Dir::read_from(&fd) {
            Ok(mut dir) => {
                while let Some(Ok(entry)) = dir.read() {
                    let name = entry.file_name().to_bytes();
                    if name != b"." && name != b".." && name != b".git" {
                        let at = names.len();
                        names.extend_from_slice(name);
                        spans.push((at, names.len(), entry.file_type()));
                    }
                }
            }
            Err(_) => {
                found.unreadable.push(prefix);
                return;
            }
        }
        let mut rel: Vec<u8> = Vec::new();
        for &(a, b, kind) in &spans {
            let name = &names[a..b];
            rel.clear();
            rel.extend_from_slice(&prefix);
            rel.extend_from_slice(name);
            let at = lower(&range, &rel);
            if at < range.end && index.path(&entries[at]) == rel.as_slice() {
                found.seen.push(at);
                let e = &entries[at];
                if e.mode == GITLINK || e.special {
                    found.changed.push(at);
                    continue;
                }
                let stat = statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW).ok();
                if !stat.is_some_and(|s| clean(e, &s, index.written)) {
                    found.changed.push(at);
                }
                // The other stages of a conflicted path are found with it.
                let mut next = at + 1;
                while next < range.end && index.path(&entries[next]) == rel.as_slice() {
                    found.seen.push(next);
                    found.changed.push(next);
                    next += 1;
                }
                continue;
            }
            let kind = match kind {
                FileType::Unknown => match statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(s) => FileType::from_raw_mode(s.st_mode as _),
                    Err(_) => continue,
                },
                kind => kind,
            };
            // Git sees files, symbolic links and folders only (not pipes, sockets or devices).
            if !matches!(
                kind,
                FileType::Directory | FileType::RegularFile | FileType::Symlink
            ) {
                continue;
            }
            let is_dir = kind == FileType::Directory;
            // A folder of the index: the entries under `rel/`.
            rel.push(b'/');
            let start = lower(&range, &rel);
            let end = start
                + entries[start..range.end].partition_point(|e| index.path(e).starts_with(&rel));
            if is_dir && start < end {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                match openat(&fd, name, flags, Mode::empty()) {
                    Ok(child) => queue.push(Folder {
                        prefix: rel.clone(),
                        fd: child,
                        range: start..end,
                    }),
                    Err(_) => found.unreadable.push(rel.clone()),
                }
            } else {
                rel.pop();
                found.unknown.push((rel.clone(), is_dir));
            }
        }
    }

    /// Whether the stat data proves the file unchanged since the index recorded it: git's own
    /// test (`ie_match_stat`), a little stricter. A file changed at or after the moment the
    /// index was written may have changed again within the same clock tick: racily clean, so
    /// not proven.
    #[allow(clippy::unnecessary_cast)]
    fn clean(e: &Entry, s: &Stat, written: Stamp) -> bool {
        let kind = FileType::from_raw_mode(s.st_mode as _);
        let mode = match kind {
            FileType::Symlink => 0o120000,
            FileType::RegularFile if s.st_mode as u32 & 0o100 != 0 => 0o100755,
            FileType::RegularFile => 0o100644,
            _ => return false,
        };
        let mtime = Stamp {
            sec: s.st_mtime as u32,
            nsec: s.st_mtime_nsec as u32,
        };
        let ctime = Stamp {
            sec: s.st_ctime as u32,
            nsec: s.st_ctime_nsec as u32,
        };
        // An index written without nanoseconds records 0: compare the seconds alone then.
        let same = |recorded: Stamp, now: Stamp| {
            recorded.sec == now.sec && (recorded.nsec == 0 || recorded.nsec == now.nsec)
        };
        e.mode == mode
            && e.size == s.st_size as u32
            && same(e.mtime, mtime)
            && same(e.ctime, ctime)
            && e.ino == s.st_ino as u32
            && e.uid == s.st_uid as u32
            && e.gid == s.st_gid as u32
            && before(e.mtime, written)
    }

    /// Whether the file's recorded change came before the index was written. An index that
    /// recorded whole seconds (no nanoseconds) is compared by seconds, as git then does.
    fn before(mtime: Stamp, written: Stamp) -> bool {
        if mtime.nsec == 0 {
            mtime.sec < written.sec
        } else {
            mtime < written
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn only_matching_stat_data_written_before_the_index_proves_a_file_clean() {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("f");
            std::fs::write(&file, "x\n").unwrap();
            let s = statat(rustix::fs::CWD, &file, AtFlags::SYMLINK_NOFOLLOW).unwrap();
            #[allow(clippy::unnecessary_cast)]
            let e = Entry {
                ctime: Stamp {
                    sec: s.st_ctime as u32,
                    nsec: s.st_ctime_nsec as u32,
                },
                mtime: Stamp {
                    sec: s.st_mtime as u32,
                    nsec: s.st_mtime_nsec as u32,
                },
                ino: s.st_ino as u32,
                mode: 0o100644,
                uid: s.st_uid as u32,
                gid: s.st_gid as u32,
                size: 2,
                id: [0; 20],
                path: (0, 0),
                stage: 0,
                special: false,
            };
            let later = Stamp {
                sec: e.mtime.sec + 1,
                nsec: 0,
            };
            assert!(clean(&e, &s, later));
            // The index written in the same tick as the file: racily clean, not proven.
            assert!(!clean(&e, &s, e.mtime));
            let changed = [
                Entry {
                    size: 3,
                    ..e.clone()
                },
                Entry {
                    mode: 0o100755,
                    ..e.clone()
                },
                Entry {
                    mode: 0o120000,
                    ..e.clone()
                },
                Entry {
                    ino: e.ino ^ 1,
                    ..e.clone()
                },
                Entry {
                    mtime: Stamp {
                        sec: e.mtime.sec - 1,
                        ..e.mtime
                    },
                    ..e.clone()
                },
            ];
            for c in &changed {
                assert!(!clean(c, &s, later), "{c:?}");
            }
            // An index that recorded no nanoseconds: the seconds decide.
            let coarse = Entry {
                mtime: Stamp { nsec: 0, ..e.mtime },
                ctime: Stamp { nsec: 0, ..e.ctime },
                ..e.clone()
            };
            assert!(clean(&coarse, &s, later));
            // ... so an index written later in the same second does not prove it clean.
            let same_second = Stamp {
                sec: e.mtime.sec,
                nsec: 999_999_999,
            };
            assert!(!clean(&coarse, &s, same_second));
        }
    }
}

#[cfg(not(unix))]
mod walk {
    use std::path::Path;

    use super::super::index_file::IndexFile;

    /// What the walk found (never, here).
    pub struct Walked {
        pub changed: Vec<usize>,
        pub seen: Vec<bool>,
        pub unknown: Vec<(Vec<u8>, bool)>,
        pub unreadable: Vec<Vec<u8>>,
    }

    /// Not available: libgit2's status answers.
    pub fn work_tree(_: &Path, _: &IndexFile) -> Option<Walked> {
        None
    }
}
