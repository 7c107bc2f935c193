//! Applying a bundle to a tree in memory, and explaining why a bundle does not apply.

use std::collections::HashSet;
use std::path::Path;

use git2::{ObjectType, Oid, Repository, Tree, TreeWalkMode, TreeWalkResult};

use super::patched::PatchedTree;
use crate::diff::{Change, FilePatch, Hunk, Patch};

/// What kind of problem a failed bundle has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diagnosis {
    /// The hunk's context is found elsewhere in the file.
    Offset,
    /// The change is already there: the bundle applies in reverse.
    AlreadyApplied,
    /// A file the bundle changes does not exist.
    MissingFile,
    /// The file exists under another folder: base_dir is wrong.
    BaseDir,
    /// The hunk's context is nowhere in the file.
    Context,
    /// A file the bundle creates already exists, or a file or folder is in the way of one.
    Exists,
    /// A binary file is not the bundle's pre-image.
    Binary,
    /// The blob after applying is not the one the bundle's `index` line names.
    Postimage,
    /// The bundle writes through a symbolic link.
    Symlink,
    /// It does not apply for a reason the analysis above did not find.
    Other,
}

impl Diagnosis {
    /// Stable name used in JSON and JUnit output.
    pub fn as_str(self) -> &'static str {
        match self {
            Diagnosis::Offset => "offset",
            Diagnosis::AlreadyApplied => "already_applied",
            Diagnosis::MissingFile => "missing_file",
            Diagnosis::BaseDir => "base_dir",
            Diagnosis::Context => "context",
            Diagnosis::Exists => "exists",
            Diagnosis::Binary => "binary",
            Diagnosis::Postimage => "postimage",
            Diagnosis::Symlink => "symlink",
            Diagnosis::Other => "other",
        }
    }
}

/// Why a bundle does not apply, down to the file and hunk.
#[derive(Debug, Clone)]
pub struct Failure {
    pub diagnosis: Diagnosis,
    pub file: Option<String>,
    /// 1-based hunk number within the file.
    pub hunk: Option<usize>,
    pub detail: String,
}

/// Applies a diff onto `base` in memory; returns the resulting tree, written to the
/// repository's object store (its in-memory one, when there is one).
pub fn apply_patch(repo: &Repository, base: &Tree<'_>, patch: &Patch) -> Result<Oid, Failure> {
    let mut patched = PatchedTree::new(repo, base.id()).map_err(|e| Failure {
        diagnosis: Diagnosis::Other,
        file: None,
        hunk: None,
        detail: e.message().to_owned(),
    })?;
    patched.apply(patch)?;
    patched.write().map(|t| t.id()).map_err(|e| Failure {
        diagnosis: Diagnosis::Other,
        file: None,
        hunk: None,
        detail: e.message().to_owned(),
    })
}

/// The failure of a file whose blob after applying is `got`, not the bundle's `want`.
pub(super) fn postimage_failure(path: &str, got: &str, want: &str) -> Failure {
    Failure {
        diagnosis: Diagnosis::Postimage,
        file: Some(path.to_owned()),
        hunk: None,
        detail: format!(
            "after applying, {path} is blob {} but the bundle's index line says {want}: the file \
             at the pin is not the one the bundle was made from",
            short(got)
        ),
    }
}

/// Refuses writes through a symbolic link, whether the link is in the tree (`is_link`) or made
/// by the diff.
pub(super) fn check_symlinks(is_link: &dyn Fn(&str) -> bool, patch: &Patch) -> Result<(), Failure> {
    let created: HashSet<&str> = patch
        .files
        .iter()
        .filter(|f| f.creates_symlink())
        .filter_map(|f| f.new_path.as_deref())
        .collect();
    // As git: a bundle removes before it writes, so a link it deletes is gone before anything
    // is written below it, and a file it deletes is gone before a link it creates is there.
    let deleted: HashSet<&str> = patch
        .files
        .iter()
        .filter(|f| f.change == Change::Deleted)
        .filter_map(|f| f.old_path.as_deref())
        .collect();
    for file in &patch.files {
        let deletes = file.change == Change::Deleted;
        for path in [&file.old_path, &file.new_path].into_iter().flatten() {
            for (i, _) in path.match_indices('/') {
                let parent = &path[..i];
                // A deletion is checked against the links there now; a write, against the
                // links left once deletions are done and the links the bundle makes.
                let link_there = if deletes {
                    is_link(parent)
                } else {
                    (is_link(parent) && !deleted.contains(parent)) || created.contains(parent)
                };
                if link_there {
                    return Err(Failure {
                        diagnosis: Diagnosis::Symlink,
                        file: Some(path.clone()),
                        hunk: None,
                        detail: format!(
                            "{path} would be written through the symbolic link {parent}; refused"
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Why `patch` does not apply to `base`, looking at the section numbered `section` (the one
/// the apply stopped at); `reason` is what the apply said, used when nothing more precise is
/// found.
pub(super) fn diagnose(
    repo: &Repository,
    base: &Tree<'_>,
    patch: &Patch,
    section: usize,
    reason: &str,
) -> Failure {
    let fail = |diagnosis, file: &FilePatch, hunk, detail| Failure {
        diagnosis,
        file: Some(file.path().to_owned()),
        hunk,
        detail,
    };
    for file in patch.files.iter().skip(section).take(1) {
        if file.change == Change::Added {
            let path = file.path();
            if let Some(content) = blob(repo, base, path) {
                let already = !file.binary
                    && file
                        .hunks
                        .iter()
                        .all(|h| find(&lines(&content), &h.postimage(patch, file), 0).is_some());
                return if already {
                    fail(
                        Diagnosis::AlreadyApplied,
                        file,
                        None,
                        format!(
                            "{path} already exists with the bundle's content: the change is already \
                             there (it applies in reverse: the pin moved past this bundle)"
                        ),
                    )
                } else {
                    fail(
                        Diagnosis::Exists,
                        file,
                        None,
                        format!("the bundle creates {path}, but it already exists at the pin"),
                    )
                };
            }
            continue;
        }
        let Some(old) = file.old_path.as_deref() else {
            continue;
        };
        let Some(content) = blob(repo, base, old) else {
            return missing(base, file, old);
        };
        if file.binary {
            let actual = blob_id(base, old);
            if let Some(want) = &file.old_id
                && !actual.starts_with(want.as_str())
            {
                return fail(
                    Diagnosis::Binary,
                    file,
                    None,
                    format!(
                        "binary file {old} is blob {} at the pin, not the bundle's pre-image {want}",
                        short(&actual)
                    ),
                );
            }
            continue;
        }
        if file.change == Change::Deleted {
            return diagnose_deletion(patch, file, &content);
        }
        if let Some(failure) = diagnose_hunks(patch, file, &content) {
            return failure;
        }
    }
    Failure {
        diagnosis: Diagnosis::Other,
        file: patch.files.get(section).map(|f| f.path().to_owned()),
        hunk: None,
        detail: format!("the bundle does not apply: {reason}"),
    }
}

/// A deletion that does not apply to a file that is there: the file is not exactly what the
/// bundle removes. (A deletion is never "already applied" while its file exists.)
fn diagnose_deletion(patch: &Patch, file: &FilePatch, content: &[u8]) -> Failure {
    let path = file.path();
    let removed: Vec<&[u8]> = file
        .hunks
        .iter()
        .flat_map(|h| h.preimage(patch, file))
        .collect();
    let have = lines(content);
    let detail = if have == removed {
        format!(
            "{path} at the pin holds the lines the bundle removes, but not byte for byte (line \
             endings or the final newline differ)"
        )
    } else if have.len() > removed.len() && find(&have, &removed, 0).is_some() {
        format!(
            "{path} at the pin holds more than the bundle removes ({} lines, the bundle removes \
             {}): it changed at the pin",
            have.len(),
            removed.len()
        )
    } else {
        format!("{path} at the pin is not the file the bundle deletes: it changed at the pin")
    };
    Failure {
        diagnosis: Diagnosis::Context,
        file: Some(path.to_owned()),
        hunk: None,
        detail,
    }
}

fn diagnose_hunks(patch: &Patch, file: &FilePatch, content: &[u8]) -> Option<Failure> {
    let have = lines(content);
    let all_reversed = file
        .hunks
        .iter()
        .all(|h| find(&have, &h.postimage(patch, file), 0).is_some());
    for (n, hunk) in file.hunks.iter().enumerate() {
        let number = n + 1;
        let pre = hunk.preimage(patch, file);
        let expected = expected_index(hunk);
        if matches_at(&have, &pre, expected) {
            continue;
        }
        let path = file.path();
        let at = format!("hunk {number} of {path} ({})", hunk.header);
        let failure = |diagnosis, detail| Failure {
            diagnosis,
            file: Some(path.to_owned()),
            hunk: Some(number),
            detail,
        };
        if all_reversed {
            return Some(failure(
                Diagnosis::AlreadyApplied,
                format!(
                    "{at}: the change is already there (the bundle applies in reverse: the pin \
                     moved past it); drop the bundle or regenerate it"
                ),
            ));
        }
        if let Some(found) = find(&have, &pre, expected) {
            let offset = found as isize - expected as isize;
            let direction = if offset > 0 { "later" } else { "earlier" };
            return Some(failure(
                Diagnosis::Offset,
                format!(
                    "{at}: its context is found {} lines {direction}, at line {} \
                     (offset: regenerate the bundle against the pin)",
                    offset.unsigned_abs(),
                    found + 1
                ),
            ));
        }
        if find(&have, &hunk.postimage(patch, file), expected).is_some() {
            return Some(failure(
                Diagnosis::AlreadyApplied,
                format!("{at}: this hunk's change is already there (it applies in reverse)"),
            ));
        }
        return Some(failure(
            Diagnosis::Context,
            context_detail(&at, &have, &pre, expected),
        ));
    }
    None
}

fn context_detail(at: &str, have: &[&[u8]], pre: &[&[u8]], expected: usize) -> String {
    for (i, want) in pre.iter().enumerate() {
        let line = expected + i;
        match have.get(line) {
            Some(got) if got == want => continue,
            Some(got) => {
                return format!(
                    "{at}: its context is not in the file; line {} is {:?}, the bundle expects {:?}",
                    line + 1,
                    shorten(got),
                    shorten(want)
                );
            }
            None => {
                return format!(
                    "{at}: its context is not in the file; the file ends at line {}, the bundle \
                     expects {:?} at line {}",
                    have.len(),
                    shorten(want),
                    line + 1
                );
            }
        }
    }
    format!("{at}: its context is not in the file")
}

fn missing(base: &Tree<'_>, file: &FilePatch, path: &str) -> Failure {
    let mut suffix_hits = Vec::new();
    let wanted = format!("/{path}");
    let _ = base.walk(TreeWalkMode::PreOrder, |root, entry| {
        if entry.kind() == Some(ObjectType::Blob)
            && let Some(name) = entry.name()
        {
            let full = format!("{root}{name}");
            if full.ends_with(&wanted) {
                suffix_hits.push(full[..full.len() - wanted.len()].to_owned());
                if suffix_hits.len() > 3 {
                    return TreeWalkResult::Abort;
                }
            }
        }
        TreeWalkResult::Ok
    });
    let hint = if let Some(prefix) = suffix_hits.first() {
        Some((
            Diagnosis::BaseDir,
            format!(
                "{path} does not exist at the pin, but {prefix}/{path} does: base_dir looks wrong \
                 (set base_dir: {prefix})"
            ),
        ))
    } else {
        // With a wrong base_dir, the file may exist at a shorter path.
        path.match_indices('/').find_map(|(i, _)| {
            let shorter = &path[i + 1..];
            base.get_path(Path::new(shorter)).ok().map(|_| {
                (
                    Diagnosis::BaseDir,
                    format!(
                        "{path} does not exist at the pin, but {shorter} does: base_dir looks \
                         wrong (the diff's paths are already relative to the repo root)"
                    ),
                )
            })
        })
    };
    let (diagnosis, detail) = hint.unwrap_or((
        Diagnosis::MissingFile,
        format!("{path} does not exist at the pin; the bundle changes it"),
    ));
    Failure {
        diagnosis,
        file: Some(file.path().to_owned()),
        hunk: None,
        detail,
    }
}

/// Index of the first pre-image line in the file, from the hunk header.
fn expected_index(hunk: &Hunk) -> usize {
    if hunk.old_lines == 0 {
        hunk.old_start
    } else {
        hunk.old_start.saturating_sub(1)
    }
}

fn matches_at(have: &[&[u8]], want: &[&[u8]], at: usize) -> bool {
    have.get(at..at + want.len()).is_some_and(|s| s == want)
}

/// The match of `want` nearest to line `near`.
fn find(have: &[&[u8]], want: &[&[u8]], near: usize) -> Option<usize> {
    if want.is_empty() {
        return Some(near.min(have.len()));
    }
    let last = have.len().checked_sub(want.len())?;
    (0..=last)
        .filter(|&i| matches_at(have, want, i))
        .min_by_key(|&i| i.abs_diff(near))
}

fn lines(content: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = content
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    if content.ends_with(b"\n") {
        v.pop();
    }
    v
}

fn blob(repo: &Repository, tree: &Tree<'_>, path: &str) -> Option<Vec<u8>> {
    crate::git::read_blob(repo, tree, path)
}

fn blob_id(tree: &Tree<'_>, path: &str) -> String {
    tree.get_path(Path::new(path))
        .map(|e| e.id().to_string())
        .unwrap_or_default()
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn shorten(line: &[u8]) -> String {
    String::from_utf8_lossy(line).chars().take(60).collect()
}
