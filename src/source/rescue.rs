//! Saving a checkout's local changes as a rescue bundle before anything resets it.

use std::path::PathBuf;

use git2::build::CheckoutBuilder;
use git2::{DiffOptions, Repository, ResetType};

use super::{SourceError, Workspace, tree, worktree};
use crate::diff::Patch;
use crate::git::local;
use crate::{bundle, fsutil};

/// Saves everything in the work tree that differs from HEAD (untracked files included, binary
/// safe) as a bundle under `<workspace>/rescue/`, proves that HEAD + the bundle reproduces the
/// work tree, keeps HEAD reachable under `refs/pinstack/rescue/`, and only then resets the
/// checkout to HEAD and removes untracked files (ignored files such as build outputs stay).
pub fn save_and_reset(
    ws: &Workspace,
    name: &str,
    r: &Repository,
) -> Result<Option<PathBuf>, SourceError> {
    let head = r
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(local(name, "reading HEAD"))?;
    let head_tree = head.tree().map_err(local(name, "reading HEAD's tree"))?;
    let diff_text = workdir_diff(r, name, &head_tree)?;
    let stamp = fsutil::utc_stamp();
    let rescue = if diff_text.is_empty() {
        None
    } else {
        let patch = Patch::parse(diff_text.clone()).map_err(|e| SourceError::Refused {
            repo: name.to_owned(),
            message: format!(
                "cannot save the local changes as a bundle ({e}); nothing was changed"
            ),
        })?;
        crate::git::in_memory_writes(r, name)?;
        let rebuilt = tree::apply_patch(r, &head_tree, &patch).map_err(|f| SourceError::Refused {
            repo: name.to_owned(),
            message: format!(
                "the rescue bundle would not reproduce the local changes ({}); nothing was changed",
                f.detail
            ),
        })?;
        let rebuilt = r
            .find_tree(rebuilt)
            .map_err(local(name, "reading the rescue tree"))?;
        let left = worktree::compare(r, name, &head_tree, &rebuilt)?;
        if !left.is_empty() {
            return Err(SourceError::Refused {
                repo: name.to_owned(),
                message: format!(
                    "the rescue bundle would not reproduce these local changes, so nothing was \
                     changed:{}",
                    left.listing(10)
                ),
            });
        }
        let dir = ws.rescue_dir();
        let base = format!("{name}-{stamp}");
        let bundle_path = dir.join(format!("{base}.patch.gz.b64"));
        let note_path = dir.join(format!("{base}.txt"));
        let encoded = bundle::encode(&diff_text);
        fsutil::write_atomic(&bundle_path, &encoded).map_err(SourceError::io(&bundle_path))?;
        let note = format!(
            "repo: {name}\nbase commit: {head}\nsha256: {}\ndiff_sha256: {}\n\
             restore: git -C <checkout> checkout --detach {head} && \
             pinstack bundle unpack {} | git -C <checkout> apply\n",
            bundle::sha256_hex(&encoded),
            bundle::sha256_hex(&diff_text),
            bundle_path.display(),
            head = head.id()
        );
        fsutil::write_atomic(&note_path, note.as_bytes()).map_err(SourceError::io(&note_path))?;
        Some(bundle_path)
    };
    r.reference(
        &format!("refs/pinstack/rescue/{stamp}"),
        head.id(),
        true,
        "pinstack: HEAD before a forced apply",
    )
    .map_err(local(name, "keeping HEAD reachable"))?;
    let mut co = CheckoutBuilder::new();
    co.force().remove_untracked(true);
    r.reset(head.as_object(), ResetType::Hard, Some(&mut co))
        .map_err(local(name, "resetting the checkout"))?;
    // libgit2's hard reset checks out with GIT_CHECKOUT_FORCE alone and so keeps untracked
    // files; they are in the rescue bundle, so clean them now.
    let mut clean = CheckoutBuilder::new();
    clean.force().remove_untracked(true);
    r.checkout_head(Some(&mut clean))
        .map_err(local(name, "removing untracked files"))?;
    Ok(rescue)
}

/// `git diff HEAD` of the work tree, untracked files included, binary safe.
fn workdir_diff(
    r: &Repository,
    name: &str,
    head_tree: &git2::Tree<'_>,
) -> Result<Vec<u8>, SourceError> {
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .show_untracked_content(true)
        .show_binary(true)
        .include_typechange(true)
        .ignore_submodules(true);
    let diff = r
        .diff_tree_to_workdir(Some(head_tree), Some(&mut opts))
        .map_err(local(name, "diffing the work tree"))?;
    Ok(crate::git::print_patch(&diff).map_err(local(name, "writing the rescue diff"))?)
}
