//! A reader for git's index file (`.git/index`, versions 2 to 4), for the fast status walk.
//!
//! libgit2 reads the index by building a hash map of every entry and checking the file's SHA-1
//! with collision detection, which costs more than the rest of a status on a clean tree. The
//! status walk needs only each entry's path, stat data, mode, id and flags, and the cache tree
//! (the `TREE` extension), read straight from the bytes. Anything this reader does not know
//! (another hash than SHA-1, a split or sparse index, an extension git itself marks as
//! required) makes it answer `None`, and the caller uses libgit2's status instead.

use std::path::Path;

/// Length of an object id in a SHA-1 repository.
const OID_LEN: usize = 20;
/// The fixed part of a version 2 entry: ten 32-bit stat fields, the id and the flags.
const ENTRY_FIXED: usize = 40 + OID_LEN + 2;

/// `flags`: the entry has a second, extended flags field (version 3 and later).
const FLAG_EXTENDED: u16 = 0x4000;
/// `flags`: the entry's stage (0 unless a merge left a conflict).
const FLAG_STAGE: u16 = 0x3000;
/// `flags`: `git update-index --assume-unchanged`.
const FLAG_ASSUME_VALID: u16 = 0x8000;
/// Extended flags: `--skip-worktree` and `git add --intent-to-add`.
const EXT_SKIP_WORKTREE: u16 = 0x4000;
const EXT_INTENT_TO_ADD: u16 = 0x2000;

/// Seconds and nanoseconds, as the index stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    pub sec: u32,
    pub nsec: u32,
}

/// One entry of the index.
#[derive(Debug, Clone)]
pub struct Entry {
    pub ctime: Stamp,
    pub mtime: Stamp,
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The file's size on disk when it was staged, truncated to 32 bits.
    pub size: u32,
    pub id: [u8; OID_LEN],
    /// Where the path lies in [`IndexFile::paths`]; see [`IndexFile::path`].
    pub(super) path: (u32, u32),
    /// 0, or 1 to 3 for the sides of a conflict.
    pub stage: u8,
    /// Stage other than 0, skip-worktree, intent-to-add or assume-unchanged: the stat data
    /// alone cannot say the entry is clean.
    pub special: bool,
}

/// One folder of the cache tree: the tree id of the folder's index entries, when still valid.
#[derive(Debug, Clone)]
pub struct CacheNode {
    pub name: Vec<u8>,
    /// `None` when an index change since the tree was computed invalidated it.
    pub id: Option<[u8; OID_LEN]>,
    pub children: Vec<CacheNode>,
}

/// The parts of the index the status walk uses.
#[derive(Debug, Clone)]
pub struct IndexFile {
    /// Sorted by path, as git keeps them.
    pub entries: Vec<Entry>,
    /// Every entry's path, one after the other (one allocation, not one per entry).
    paths: Vec<u8>,
    /// The root of the cache tree, if the index has one.
    pub tree: Option<CacheNode>,
    /// When the index file was last written: entries modified at or after this instant are
    /// "racily clean" and need their content compared.
    pub written: Stamp,
}

impl IndexFile {
    /// Reads `<git dir>/index`; `None` when it is missing or holds anything this reader does not
    /// handle (the caller falls back to libgit2).
    pub fn read(git_dir: &Path) -> Option<IndexFile> {
        let path = git_dir.join("index");
        let meta = std::fs::metadata(&path).ok()?;
        let bytes = std::fs::read(&path).ok()?;
        let written = stamp_of(&meta);
        parse(&bytes, written)
    }

    /// The path of `e`.
    pub fn path(&self, e: &Entry) -> &[u8] {
        &self.paths[e.path.0 as usize..e.path.1 as usize]
    }

    /// The entry at `path` in stage 0 (not a conflict).
    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        let at = self
            .entries
            .partition_point(|e| (self.path(e), e.stage) < (path, 0));
        self.entries
            .get(at)
            .filter(|e| self.path(e) == path && e.stage == 0)
    }
}

#[cfg(unix)]
fn stamp_of(meta: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp {
        sec: meta.mtime() as u32,
        nsec: meta.mtime_nsec() as u32,
    }
}

#[cfg(not(unix))]
fn stamp_of(_: &std::fs::Metadata) -> Stamp {
    Stamp { sec: 0, nsec: 0 }
}

/// Parses the bytes of an index file.
pub fn parse(bytes: &[u8], written: Stamp) -> Option<IndexFile> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != b"DIRC" {
        return None;
    }
    let version = r.u32()?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = r.u32()? as usize;
    // Every entry needs at least its fixed part: a count beyond that is a corrupt header.
    if count > bytes.len() / ENTRY_FIXED {
        return None;
    }
    let mut entries = Vec::with_capacity(count);
    let mut paths: Vec<u8> = Vec::with_capacity(bytes.len() / 2);
    let mut previous = 0..0;
    for _ in 0..count {
        let start = r.at;
        let ctime = Stamp {
            sec: r.u32()?,
            nsec: r.u32()?,
        };
        let mtime = Stamp {
            sec: r.u32()?,
            nsec: r.u32()?,
        };
        let _dev = r.u32()?;
        let ino = r.u32()?;
        let mode = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let size = r.u32()?;
        let id: [u8; OID_LEN] = r.take(OID_LEN)?.try_into().ok()?;
        let flags = r.u16()?;
        let extended = if flags & FLAG_EXTENDED != 0 {
            if version < 3 {
                return None;
            }
            r.u16()?
        } else {
            0
        };
        let begin = paths.len();
        if version == 4 {
            // The previous path, less `strip` bytes, then this entry's suffix.
            let strip = r.varint()?;
            let keep = previous.len().checked_sub(strip)?;
            paths.extend_from_within(previous.start..previous.start + keep);
            paths.extend_from_slice(r.until_nul()?);
        } else {
            paths.extend_from_slice(r.until_nul()?);
            // Entries are padded with 1 to 8 NULs to a multiple of 8 bytes.
            let len = r.at - start;
            let padded = (len + 7) & !7;
            r.take(padded - len)?;
        }
        previous = begin..paths.len();
        let path = (u32::try_from(begin).ok()?, u32::try_from(paths.len()).ok()?);
        let special = flags & (FLAG_STAGE | FLAG_ASSUME_VALID) != 0
            || extended & (EXT_SKIP_WORKTREE | EXT_INTENT_TO_ADD) != 0;
        entries.push(Entry {
            ctime,
            mtime,
            ino,
            mode,
            uid,
            gid,
            size,
            id,
            path,
            stage: ((flags & FLAG_STAGE) >> 12) as u8,
            special,
        });
    }
    // Extensions, up to the trailing checksum.
    let end = bytes.len().checked_sub(OID_LEN)?;
    let mut tree = None;
    while r.at < end {
        let sig: [u8; 4] = r.take(4)?.try_into().ok()?;
        let len = r.u32()? as usize;
        if r.at + len > end {
            return None;
        }
        let data = r.take(len)?;
        match &sig {
            b"TREE" => tree = Some(parse_tree(data)?),
            // Git marks the extensions a reader must understand with a lowercase first letter
            // (the split index's `link`, the sparse index's `sdir`).
            [first, ..] if first.is_ascii_lowercase() => return None,
            _ => {}
        }
    }
    let index = IndexFile {
        entries,
        paths,
        tree,
        written,
    };
    // Entries must be in git's order (by path, then stage) for lookups to find them.
    let sorted = index
        .entries
        .windows(2)
        .all(|w| (index.path(&w[0]), w[0].stage) <= (index.path(&w[1]), w[1].stage));
    (r.at == end && sorted).then_some(index)
}

/// The `TREE` extension: folders in pre-order, each with its entry count (-1 when invalid),
/// its number of subfolders and, when valid, its tree id.
fn parse_tree(data: &[u8]) -> Option<CacheNode> {
    let mut r = Reader { bytes: data, at: 0 };
    let root = tree_node(&mut r)?;
    (r.at == data.len()).then_some(root)
}

fn tree_node(r: &mut Reader<'_>) -> Option<CacheNode> {
    let name = r.until_nul()?.to_vec();
    let count = r.until(b' ')?;
    let subtrees = r.until(b'\n')?;
    let count: i64 = std::str::from_utf8(count).ok()?.parse().ok()?;
    let subtrees: usize = std::str::from_utf8(subtrees).ok()?.parse().ok()?;
    let id = if count >= 0 {
        Some(r.take(OID_LEN)?.try_into().ok()?)
    } else {
        None
    };
    if subtrees > r.bytes.len() {
        return None;
    }
    let mut children = Vec::with_capacity(subtrees);
    for _ in 0..subtrees {
        children.push(tree_node(r)?);
    }
    Some(CacheNode { name, id, children })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    /// The bytes up to `stop`, which is consumed.
    fn until(&mut self, stop: u8) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.at..)?;
        let n = rest.iter().position(|&b| b == stop)?;
        self.at += n + 1;
        Some(&rest[..n])
    }

    fn until_nul(&mut self) -> Option<&'a [u8]> {
        self.until(0)
    }

    /// Git's offset encoding of version 4 path prefixes (as in `varint.c`).
    fn varint(&mut self) -> Option<usize> {
        let mut c = self.take(1)?[0];
        let mut val = usize::from(c & 0x7f);
        while c & 0x80 != 0 {
            c = self.take(1)?[0];
            val = val.checked_add(1)?.checked_mul(128)? + usize::from(c & 0x7f);
        }
        Some(val)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    /// Index files git writes, of every version, read as libgit2 reads them.
    #[test]
    fn reads_what_git_writes_as_libgit2_does() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "-q", "."]);
        for (i, p) in [
            "a/b/c.txt",
            "a/b.txt",
            "a.b",
            "z",
            "a/b/c/d/e/f/deep name.txt",
        ]
        .iter()
        .enumerate()
        {
            let path = d.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("{i}\n")).unwrap();
        }
        git(d, &["add", "-A"]);
        git(d, &["commit", "-q", "-m", "one"]);
        // After a commit, the cache tree holds HEAD's tree and each folder's.
        let repo = git2::Repository::open(d).unwrap();
        let head = repo.head().unwrap().peel_to_tree().unwrap();
        let cache = IndexFile::read(&d.join(".git")).unwrap().tree.unwrap();
        assert_eq!(
            cache.id.map(|id| id.to_vec()),
            Some(head.id().as_bytes().to_vec())
        );
        let a = cache.children.iter().find(|c| c.name == b"a").unwrap();
        let a_tree = head.get_name("a").unwrap().id();
        assert_eq!(a.id.map(|id| id.to_vec()), Some(a_tree.as_bytes().to_vec()));
        std::fs::write(d.join("new.txt"), "new\n").unwrap();
        git(d, &["add", "-N", "new.txt"]);
        for version in ["2", "3", "4"] {
            if version == "2" {
                git(d, &["rm", "-q", "--cached", "new.txt"]);
            } else if version == "3" {
                git(d, &["add", "-N", "new.txt"]);
            }
            git(d, &["update-index", "--index-version", version]);
            let ours = IndexFile::read(&d.join(".git")).expect("an index git wrote");
            let repo = git2::Repository::open(d).unwrap();
            let theirs = repo.index().unwrap();
            let ours_list: Vec<_> = ours
                .entries
                .iter()
                .map(|e| {
                    (
                        ours.path(e).to_vec(),
                        e.id.to_vec(),
                        e.mode,
                        e.stage,
                        e.size,
                    )
                })
                .collect();
            let theirs_list: Vec<_> = theirs
                .iter()
                .map(|e| {
                    let stage = ((e.flags >> 12) & 3) as u8;
                    (e.path, e.id.as_bytes().to_vec(), e.mode, stage, e.file_size)
                })
                .collect();
            assert_eq!(ours_list, theirs_list, "index version {version}");
            let ita = ours.get(b"new.txt").map(|e| e.special);
            assert_eq!(ita, (version != "2").then_some(true), "version {version}");
            assert!(!ours.get(b"a/b.txt").unwrap().special);
        }
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let stamp = Stamp { sec: 0, nsec: 0 };
        assert!(parse(b"", stamp).is_none());
        assert!(parse(b"DIRC\0\0\0\x05\0\0\0\0", stamp).is_none());
        // A version 2 index with no entries and a split-index extension.
        let mut bytes = b"DIRC\0\0\0\x02\0\0\0\0link\0\0\0\0".to_vec();
        bytes.extend([0u8; OID_LEN]);
        assert!(parse(&bytes, stamp).is_none());
        let mut bytes = b"DIRC\0\0\0\x02\0\0\0\0UNTR\0\0\0\0".to_vec();
        bytes.extend([0u8; OID_LEN]);
        assert!(parse(&bytes, stamp).is_some());
    }
}
