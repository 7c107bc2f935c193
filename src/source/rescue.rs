//! Saving a checkout's local changes as a rescue bundle before anything resets it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{Repository, RepositoryState, ResetType};

use super::{SourceError, Workspace, capture, worktree, write};
use crate::diff::{Change, Patch};
use crate::git::local;
use crate::{bundle, fsutil};

/// Saves everything in the work tree that differs from HEAD (untracked files included, binary
/// safe) as a bundle under `<workspace>/rescue/`, proves that HEAD + the bundle reproduces the
/// work tree, keeps HEAD (and staged changes the work tree does not hold) reachable under
/// `refs/pinstack/rescue/`, and only then resets the checkout to HEAD and removes the untracked
/// files the bundle holds. Files git ignores are in no bundle, so none is removed: a checkout
/// where one stands in the way of a tracked file, or where a git operation (am, rebase, merge)
/// is in progress, is refused with nothing written.
pub fn save_and_reset(
    ws: &Workspace,
    name: &str,
    r: &Repository,
) -> Result<Option<PathBuf>, SourceError> {
    let refused = |message: String| SourceError::Refused {
        repo: name.to_owned(),
        message,
    };
    if r.state() != RepositoryState::Clean {
        return Err(refused(format!(
            "a git operation is in progress in the checkout ({:?}): its state (patches not yet \
             applied, a merge) is in no bundle, so nothing was written; finish or abort it \
             (git am --abort, git rebase --abort, git merge --abort) and run apply again",
            r.state()
        )));
    }
    let workdir = r
        .workdir()
        .ok_or_else(|| refused("the checkout has no work tree".to_owned()))?
        .to_owned();
    let head = r
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(local(name, "reading HEAD"))?;
    let head_tree = head.tree().map_err(local(name, "reading HEAD's tree"))?;
    let captured = capture::capture(r, name, &head_tree, &head_tree, "the rescue bundle")?;
    let untracked = captured.as_ref().map(added_files).unwrap_or_default();
    refuse_ignored_in_the_way(&workdir, captured.as_ref(), &untracked).map_err(refused)?;
    // Staged content the work tree no longer holds is in no diff of the work tree: it is kept as
    // a commit of the index (as `git stash` keeps it).
    let index_commit = index_commit(r, name, &head)?;
    let dir = ws.rescue_dir();
    let stamp = unique_stamp(r, &dir, name);
    let base = format!("{name}-{stamp}");
    let note_path = dir.join(format!("{base}.txt"));
    let index_line = index_commit
        .map(|id| format!("staged changes: commit {id} (refs/pinstack/rescue/{stamp}-index)\n"))
        .unwrap_or_default();
    let rescue = match &captured {
        Some(patch) => {
            let diff_text = patch.as_bytes();
            let bundle_path = dir.join(format!("{base}.patch.gz.b64"));
            let encoded = bundle::encode(diff_text);
            fsutil::write_atomic(&bundle_path, &encoded).map_err(SourceError::io(&bundle_path))?;
            let note = format!(
                "repo: {name}\nbase commit: {head}\nsha256: {}\ndiff_sha256: {}\n{index_line}\
                 restore, in the checkout (the reset discards what it holds then; pinstack apply \
                 makes pin + bundles again; if git apply finds a file already there, the bundles \
                 made it: move it away and run the last part again):\n  \
                 git reset --hard {head} && base64 -d {bundle} | gzip -dc | git apply\n",
                bundle::sha256_hex(&encoded),
                bundle::sha256_hex(diff_text),
                bundle = std::path::absolute(&bundle_path)
                    .unwrap_or_else(|_| bundle_path.clone())
                    .display(),
                head = head.id()
            );
            fsutil::write_atomic(&note_path, note.as_bytes())
                .map_err(SourceError::io(&note_path))?;
            Some(bundle_path)
        }
        // Only staged changes (the work tree is HEAD's): the note says where they are.
        None if index_commit.is_some() => {
            let note = format!(
                "repo: {name}\nbase commit: {head}\n{index_line}\
                 restore, in the checkout: git read-tree refs/pinstack/rescue/{stamp}-index \
                 (the index), or git checkout refs/pinstack/rescue/{stamp}-index -- . (the files)\n",
                head = head.id()
            );
            fsutil::write_atomic(&note_path, note.as_bytes())
                .map_err(SourceError::io(&note_path))?;
            Some(note_path)
        }
        None => None,
    };
    r.reference(
        &format!("refs/pinstack/rescue/{stamp}"),
        head.id(),
        false,
        "pinstack: HEAD before a forced apply",
    )
    .map_err(local(name, "keeping HEAD reachable"))?;
    if let Some(id) = index_commit {
        r.reference(
            &format!("refs/pinstack/rescue/{stamp}-index"),
            id,
            false,
            "pinstack: the index before a forced apply",
        )
        .map_err(local(name, "keeping the staged changes"))?;
    }
    // The untracked files the bundle holds go first, so that none stands where the reset
    // writes a tracked file.
    for path in &untracked {
        let file = workdir.join(path);
        fsutil::remove_file_if_present(&file).map_err(SourceError::io(&file))?;
        write::remove_empty_parents(&workdir, &file);
    }
    let mut co = CheckoutBuilder::new();
    co.force();
    r.reset(head.as_object(), ResetType::Hard, Some(&mut co))
        .map_err(local(name, "resetting the checkout"))?;
    Ok(rescue)
}

/// The files a captured diff adds: the untracked files it saved.
fn added_files(patch: &Patch) -> BTreeSet<String> {
    patch
        .files
        .iter()
        .filter(|f| f.change == Change::Added)
        .filter_map(|f| f.new_path.clone())
        .collect()
}

/// Where the reset must write a tracked file that is now a folder, everything in the folder
/// must be in the bundle: a file git ignores there would be removed with the folder.
fn refuse_ignored_in_the_way(
    workdir: &Path,
    captured: Option<&Patch>,
    untracked: &BTreeSet<String>,
) -> Result<(), String> {
    let Some(patch) = captured else {
        return Ok(());
    };
    for file in patch.files.iter().filter(|f| f.change == Change::Deleted) {
        let Some(path) = &file.old_path else { continue };
        let folder = workdir.join(path);
        let kept: Vec<String> = worktree::files_below(&folder, workdir)
            .map_err(|e| format!("{}: {e}", folder.display()))?
            .into_iter()
            .filter(|f| !untracked.contains(f))
            .collect();
        if !kept.is_empty() {
            return Err(format!(
                "{path} is a file at HEAD but a folder in the checkout, holding files git ignores \
                 ({}); a reset would remove them and no bundle holds them, so nothing was \
                 written: move them away and run apply again",
                kept.join(", ")
            ));
        }
    }
    Ok(())
}

/// A commit of the index when it holds something that neither HEAD nor the work tree does
/// (content staged, then changed or removed in the work tree); `None` when the index is HEAD's
/// or the work tree's.
fn index_commit(
    r: &Repository,
    name: &str,
    head: &git2::Commit<'_>,
) -> Result<Option<git2::Oid>, SourceError> {
    // Written to the object store on disk, whatever `r` writes to: a handle of its own.
    let r = &Repository::open(r.path()).map_err(local(name, "opening the repository"))?;
    let head = &r
        .find_commit(head.id())
        .map_err(local(name, "reading HEAD"))?;
    let mut index = r.index().map_err(local(name, "reading the index"))?;
    if index.has_conflicts() {
        return Err(SourceError::Refused {
            repo: name.to_owned(),
            message: "the index holds unresolved conflicts (after a git stash pop, say): the \
                      sides of a conflict are in no bundle, so nothing was written; resolve them \
                      (git add) or drop them (git reset) and run apply again"
                .to_owned(),
        });
    }
    let staged = r
        .diff_tree_to_index(
            Some(&head.tree().map_err(local(name, "reading HEAD's tree"))?),
            Some(&index),
            None,
        )
        .map_err(local(name, "comparing the index with HEAD"))?;
    if staged.deltas().len() == 0 {
        return Ok(None);
    }
    let mut opts = git2::DiffOptions::new();
    opts.ignore_submodules(true);
    let unstaged = r
        .diff_index_to_workdir(Some(&index), Some(&mut opts))
        .map_err(local(name, "comparing the work tree with the index"))?;
    let staged_paths: BTreeSet<_> = staged
        .deltas()
        .filter_map(|d| {
            d.new_file()
                .path()
                .or(d.old_file().path())
                .map(Path::to_owned)
        })
        .collect();
    let overwritten = unstaged.deltas().any(|d| {
        d.new_file()
            .path()
            .or(d.old_file().path())
            .is_some_and(|p| staged_paths.contains(p))
    });
    if !overwritten {
        return Ok(None);
    }
    let tree = index
        .write_tree()
        .and_then(|id| r.find_tree(id))
        .map_err(local(name, "saving the staged changes"))?;
    let sig = git2::Signature::now("pinstack", "pinstack@localhost")
        .map_err(local(name, "saving the staged changes"))?;
    let id = r
        .commit(
            None,
            &sig,
            &sig,
            "pinstack rescue: the index before a forced apply",
            &tree,
            &[head],
        )
        .map_err(local(name, "saving the staged changes"))?;
    Ok(Some(id))
}

/// A time stamp no earlier rescue of this repo used (two in one second get `-2`, `-3`, ...).
fn unique_stamp(r: &Repository, dir: &Path, name: &str) -> String {
    let stamp = fsutil::utc_stamp();
    (1..)
        .map(|n| {
            if n == 1 {
                stamp.clone()
            } else {
                format!("{stamp}-{n}")
            }
        })
        .find(|s| {
            !dir.join(format!("{name}-{s}.patch.gz.b64")).exists()
                && !dir.join(format!("{name}-{s}.txt")).exists()
                && r.find_reference(&format!("refs/pinstack/rescue/{s}"))
                    .is_err()
        })
        .unwrap_or(stamp)
}
