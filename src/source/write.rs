//! Writing the bundles' paths of a checkout straight from the expected tree.
//!
//! libgit2's checkout reads the whole index before it writes a single file, which on a large
//! tree costs more than everything else `apply` does for a small bundle. When the paths need
//! nothing a checkout knows better (a smudge filter, a folder where a file goes, a submodule),
//! pinstack writes them itself: each file completely under a temporary name beside it, the old
//! file removed, the new one renamed into its place. A kill leaves every path at its old
//! content, its new content, or missing with its new content complete under the temporary
//! name; the journal's recovery (`record::undo_own_work`) accepts all three as pinstack's own.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Tree};

use super::SourceError;
use super::worktree::WorkFiles;
use crate::fsutil::remove_file_if_present;
use crate::git::local;

/// Writes `expected`'s blob at each of `paths` (its content from `made` when the bundles made
/// it, else from the object store) and removes the paths it lacks, calling
/// `progress` with the number of paths done after each. Returns `false`, having written
/// nothing, when a path needs libgit2's checkout instead.
pub fn write_paths<'m>(
    repo: &Repository,
    name: &str,
    files: &WorkFiles<'_>,
    expected: &Tree<'_>,
    made: &dyn Fn(Oid) -> Option<&'m [u8]>,
    paths: &BTreeSet<String>,
    mut progress: impl FnMut(usize),
) -> Result<bool, SourceError> {
    let Some(workdir) = repo.workdir() else {
        return Ok(false);
    };
    let mut plan = Vec::with_capacity(paths.len());
    for p in paths {
        // A bundle that changes the attributes changes how every file is written.
        if p == ".gitattributes" || p.ends_with("/.gitattributes") {
            return Ok(false);
        }
        let target = workdir.join(p);
        let on_disk = std::fs::symlink_metadata(&target).ok();
        if on_disk.as_ref().is_some_and(|m| m.is_dir()) || files.may_filter(p) {
            return Ok(false);
        }
        let blob = match expected.get_path(Path::new(p)) {
            Ok(e) if e.kind() == Some(ObjectType::Blob) => Some((e.id(), e.filemode())),
            Ok(_) => return Ok(false),
            Err(_) => None,
        };
        plan.push((p, target, blob, on_disk.is_some()));
    }
    // Removals first: a file may give way to a folder of the same name.
    let mut done = 0;
    for (_, target, _, _) in plan.iter().filter(|(_, _, b, _)| b.is_none()) {
        remove_file_if_present(target).map_err(SourceError::io(target))?;
        remove_empty_parents(workdir, target);
        done += 1;
        progress(done);
    }
    for (p, target, blob, existed) in &plan {
        let Some((id, mode)) = blob else { continue };
        let stored;
        let content = match made(*id) {
            Some(bytes) => bytes,
            None => {
                stored = repo
                    .find_blob(*id)
                    .map_err(local(name, format!("reading the blob of {p}")))?;
                stored.content()
            }
        };
        // A file that was there keeps its folder (it is not empty), so only new files may
        // need folders made.
        write_one(target, content, *mode, !existed, done + 1).map_err(SourceError::io(target))?;
        done += 1;
        progress(done);
    }
    Ok(true)
}

/// The temporary name a file is written under before it takes its place.
pub fn temp_name(target: &Path) -> PathBuf {
    let dir = target.parent().unwrap_or(Path::new("."));
    let file_name = target.file_name().unwrap_or_default().to_string_lossy();
    dir.join(format!(".{file_name}{TEMP_SUFFIX}"))
}

/// What a temporary name ends with.
pub const TEMP_SUFFIX: &str = ".pinstack-new";

/// Writes one file (or symbolic link) through a temporary name in the same folder. The old
/// file is removed just before the rename: renaming over it would make the file system flush
/// the new file's data first (ext4 does, to make such renames crash-safe), which costs more
/// than the rest of the write. A kill between the two leaves the path missing and the
/// temporary file complete; the journal's recovery accepts both as pinstack's own.
fn write_one(
    target: &Path,
    content: &[u8],
    mode: i32,
    make_folders: bool,
    n: usize,
) -> std::io::Result<()> {
    if make_folders {
        std::fs::create_dir_all(target.parent().unwrap_or(Path::new(".")))?;
    }
    let temp = temp_name(target);
    let create = || -> std::io::Result<()> {
        if mode == 0o120000 {
            symlink(content, &temp)
        } else {
            open_new(&temp, mode == 0o100755)?.write_all(content)
        }
    };
    // A temporary file a killed run left behind is removed when it is in the way.
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&temp)?;
            create()?;
        }
        other => other?,
    }
    remove_file_if_present(target)?;
    crate::fault::point("apply-replace", n);
    std::fs::rename(&temp, target).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

#[cfg(unix)]
fn open_new(path: &Path, executable: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // As git does: the umask decides the rest.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o777 } else { 0o666 })
        .open(path)
}

#[cfg(not(unix))]
fn open_new(path: &Path, _executable: bool) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn symlink(target: &[u8], at: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), at)
}

#[cfg(not(unix))]
fn symlink(target: &[u8], at: &Path) -> std::io::Result<()> {
    std::fs::write(at, target)
}

/// Removes the folders a removal left empty, up to the work tree, as git does.
pub fn remove_empty_parents(workdir: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == workdir || !d.starts_with(workdir) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}
