//! The work tree's status, at the cost of one `lstat` per tracked file.
//!
//! libgit2's status reads the whole index through a hash map, checks its SHA-1, inflates every
//! tree of HEAD to compare with it, and stats every file by its absolute path: about twice the
//! time of `git status`. This walk does what git does instead. It reads the index file directly
//! ([`IndexFile`]); compares HEAD with the index through the index's cache tree, opening only
//! the trees whose cached id is gone or differs; and walks the work tree through directory
//! handles, stating each entry by its name alone and comparing with the stat data the index
//! recorded. It only finds candidates: every path whose stat data differs, which is racily
//! clean, is special (a conflict, skip-worktree, intent-to-add), is not in the index or is gone
//! from the disk goes to libgit2's own status, limited to those paths, which then decides with
//! the usual rules (content, filters, ignore files, nested repositories). When the walk cannot
//! be used (no index, an index format it does not read, a case-insensitive or SHA-256
//! repository) or finds too many candidates, libgit2's status of the whole tree answers.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use git2::{Repository, Status, StatusOptions, Tree};

use super::index_file::{CacheNode, Entry, IndexFile};
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

/// Above this many candidates, one status of the whole tree is cheaper than a status of each.
const MAX_CANDIDATES: usize = 4096;

/// The status of `repo`'s work tree.
pub fn scan(repo: &Repository, name: &str, opts: ScanOptions) -> Result<Scan, GitError> {
    match candidates(repo, opts.submodules) {
        Some(paths) if paths.len() <= MAX_CANDIDATES => {
            if paths.is_empty() {
                return Ok(Scan::default());
            }
            libgit2_status(repo, name, opts, Some(&paths))
        }
        _ => libgit2_status(repo, name, opts, None),
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

/// Every path whose status the stat data cannot settle; `None` when the walk cannot be used.
fn candidates(repo: &Repository, submodules: bool) -> Option<BTreeSet<Vec<u8>>> {
    let config = repo.config().ok()?;
    let flag = |key: &str| config.get_bool(key).ok();
    // Paths compared case-insensitively, or stored without symbolic links, or ids that are not
    // SHA-1: the index's bytes would not mean what the walk assumes.
    if flag("core.ignorecase") == Some(true)
        || flag("core.symlinks") == Some(false)
        || config
            .get_string("extensions.objectformat")
            .is_ok_and(|f| !f.eq_ignore_ascii_case("sha1"))
    {
        return None;
    }
    let workdir = repo.workdir()?;
    let index = IndexFile::read(repo.path())?;
    let head = repo.head().ok()?.peel_to_tree().ok()?;
    let mut out = BTreeSet::new();
    staged(
        repo,
        &index,
        b"",
        &head,
        index.tree.as_ref(),
        &index.entries,
        &mut out,
    )?;
    walk::work_tree(workdir, &index, submodules, &mut out)?;
    Some(out)
}

/// Adds the paths where the index differs from HEAD's `tree` at folder `prefix` (empty, or
/// ending in `/`); `entries` are the index entries under `prefix`. A folder whose cache-tree id
/// equals HEAD's is skipped unread.
fn staged(
    repo: &Repository,
    index: &IndexFile,
    prefix: &[u8],
    tree: &Tree<'_>,
    cache: Option<&CacheNode>,
    entries: &[Entry],
    out: &mut BTreeSet<Vec<u8>>,
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
                seen.insert(rest);
                let same = head.as_ref().is_some_and(|h| {
                    h.id().as_bytes() == e.id && u32::try_from(h.filemode()).ok() == Some(e.mode)
                });
                if !same {
                    out.insert(index.path(e).to_vec());
                }
                i += 1;
            }
            Some(slash) => {
                let dir = &rest[..slash];
                let start = i;
                while i < entries.len() && in_folder(&index.path(&entries[i])[prefix.len()..], dir)
                {
                    i += 1;
                }
                seen.insert(dir);
                let sub = head
                    .as_ref()
                    .filter(|h| h.kind() == Some(git2::ObjectType::Tree))
                    .and_then(|h| repo.find_tree(h.id()).ok());
                match sub {
                    Some(sub) => {
                        let child = cache
                            .and_then(|c| c.children.iter().find(|n| n.name.as_slice() == dir));
                        let sub_prefix = [prefix, dir, b"/"].concat();
                        let under = &entries[start..i];
                        staged(repo, index, &sub_prefix, &sub, child, under, out)?;
                    }
                    // A folder that is new, or was a file in HEAD.
                    None => {
                        out.insert(join(dir));
                    }
                }
            }
        }
    }
    // What HEAD has and the index lacks (a folder path covers the files in it).
    for h in tree.iter() {
        if !seen.contains(h.name_bytes()) {
            out.insert(join(h.name_bytes()));
        }
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

    use std::collections::BTreeSet;
    use std::ops::Range;
    use std::os::fd::OwnedFd;
    use std::path::Path;
    use std::sync::{Condvar, Mutex};

    use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, openat, statat};

    use super::super::index_file::{Entry, IndexFile, Stamp};

    const GITLINK: u32 = 0o160000;

    /// A folder to read: its path (empty, or ending in `/`), a handle, and the range of index
    /// entries under it.
    struct Folder {
        prefix: Vec<u8>,
        fd: OwnedFd,
        range: Range<usize>,
    }

    /// What one thread found: candidate paths, and the index entries it saw on disk.
    #[derive(Default)]
    struct Found {
        candidates: Vec<Vec<u8>>,
        seen: Vec<usize>,
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

    /// Adds every path whose status the stat data cannot settle: tracked files whose stat data
    /// differs from the index (or is racily clean, or special), tracked files gone, and every
    /// entry the index does not know (untracked or ignored: libgit2 tells which). Folders are
    /// read by as many threads as there are cores (at most four), as git's preloading does.
    pub fn work_tree(
        workdir: &Path,
        index: &IndexFile,
        submodules: bool,
        out: &mut BTreeSet<Vec<u8>>,
    ) -> Option<()> {
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
                            read_folder(folder, index, submodules, &mut found, &queue);
                            queue.done();
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
        let mut seen = vec![false; index.entries.len()];
        for f in found {
            out.extend(f.candidates);
            for i in f.seen {
                seen[i] = true;
            }
        }
        for (e, seen) in index.entries.iter().zip(seen) {
            if !seen && (submodules || e.mode != GITLINK) {
                out.insert(index.path(e).to_vec());
            }
        }
        Some(())
    }

    /// Reads one folder: compares its tracked files with the index, queues its tracked
    /// subfolders, and records everything else as a candidate.
    fn read_folder(
        folder: Folder,
        index: &IndexFile,
        submodules: bool,
        found: &mut Found,
        queue: &Queue,
    ) {
        let Folder { prefix, fd, range } = folder;
        let entries = &index.entries;
        // The first entry in `range` at or after `key` (entries are sorted by path).
        let lower = |range: &Range<usize>, key: &[u8]| {
            range.start + entries[range.clone()].partition_point(|e| index.path(e) < key)
        };
        // The names first, then the stats: the directory stream holds its own handle.
        let mut names: Vec<u8> = Vec::new();
        let mut spans: Vec<(usize, usize, FileType)> = Vec::new();
        if let Ok(mut dir) = Dir::read_from(&fd) {
            while let Some(Ok(entry)) = dir.read() {
                let name = entry.file_name().to_bytes();
                if name != b"." && name != b".." && name != b".git" {
                    let at = names.len();
                    names.extend_from_slice(name);
                    spans.push((at, names.len(), entry.file_type()));
                }
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
                if e.mode == GITLINK {
                    if submodules {
                        found.candidates.push(rel.clone());
                    }
                    continue;
                }
                let stat = statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW).ok();
                if e.special || !stat.is_some_and(|s| clean(e, &s, index.written)) {
                    found.candidates.push(rel.clone());
                }
                continue;
            }
            let is_dir = match kind {
                FileType::Directory => true,
                FileType::Unknown => statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|s| FileType::from_raw_mode(s.st_mode as _).is_dir()),
                _ => false,
            };
            // A folder of the index: the entries under `rel/`.
            rel.push(b'/');
            let start = lower(&range, &rel);
            let end = start
                + entries[start..range.end].partition_point(|e| index.path(e).starts_with(&rel));
            let child = (is_dir && start < end)
                .then(|| {
                    let flags =
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    openat(&fd, name, flags, Mode::empty()).ok()
                })
                .flatten();
            match child {
                Some(child) => queue.push(Folder {
                    prefix: rel.clone(),
                    fd: child,
                    range: start..end,
                }),
                // Untracked or ignored (libgit2 applies the ignore rules), or a tracked folder
                // that cannot be read (its files stay unseen: candidates too).
                None => {
                    rel.pop();
                    found.candidates.push(rel.clone());
                }
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
            && e.mtime < written
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
        }
    }
}

#[cfg(not(unix))]
mod walk {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::super::index_file::IndexFile;

    /// Not available: libgit2's status answers.
    pub fn work_tree(_: &Path, _: &IndexFile, _: bool, _: &mut BTreeSet<Vec<u8>>) -> Option<()> {
        None
    }
}
