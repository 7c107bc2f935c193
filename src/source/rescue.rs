//! Saving a checkout's local changes as a rescue bundle before anything resets it.

use std::path::PathBuf;

use git2::build::CheckoutBuilder;
use git2::{Repository, ResetType};

use super::{SourceError, Workspace, capture};
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
    let captured = capture::capture(r, name, &head_tree, &head_tree, "the rescue bundle")?;
    let stamp = fsutil::utc_stamp();
    let rescue = if let Some(patch) = captured {
        let diff_text = patch.as_bytes();
        let dir = ws.rescue_dir();
        let base = format!("{name}-{stamp}");
        let bundle_path = dir.join(format!("{base}.patch.gz.b64"));
        let note_path = dir.join(format!("{base}.txt"));
        let encoded = bundle::encode(diff_text);
        fsutil::write_atomic(&bundle_path, &encoded).map_err(SourceError::io(&bundle_path))?;
        let note = format!(
            "repo: {name}\nbase commit: {head}\nsha256: {}\ndiff_sha256: {}\n\
             restore: git -C <checkout> checkout --detach {head} && \
             pinstack bundle unpack {} | git -C <checkout> apply\n",
            bundle::sha256_hex(&encoded),
            bundle::sha256_hex(diff_text),
            bundle_path.display(),
            head = head.id()
        );
        fsutil::write_atomic(&note_path, note.as_bytes()).map_err(SourceError::io(&note_path))?;
        Some(bundle_path)
    } else {
        None
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
