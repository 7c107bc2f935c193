//! Capturing a work tree's changes as a diff that provably reproduces it: the rescue bundle
//! before a forced reset, and the residual an audit exports.

use git2::{DiffOptions, Repository, Tree};

use super::{SourceError, tree, worktree};
use crate::diff::Patch;
use crate::git::{self, local};

/// The work tree's changes against `base` as `git diff` text (untracked files included, binary
/// safe, ignored files not), or `None` when there are none. Before returning, it proves in
/// memory that `base` + the diff gives exactly the work tree (`head` is the tree HEAD is at);
/// otherwise it refuses, and the caller writes nothing. `what` names the diff in messages.
pub fn capture(
    r: &Repository,
    name: &str,
    base: &Tree<'_>,
    head: &Tree<'_>,
    what: &str,
) -> Result<Option<Patch>, SourceError> {
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .show_untracked_content(true)
        .show_binary(true)
        .include_typechange(true)
        .ignore_submodules(true);
    let diff = r
        .diff_tree_to_workdir(Some(base), Some(&mut opts))
        .map_err(local(name, "diffing the work tree"))?;
    let text = git::print_patch(&diff).map_err(local(name, format!("writing {what}")))?;
    if text.is_empty() {
        return Ok(None);
    }
    let refused = |message: String| SourceError::Refused {
        repo: name.to_owned(),
        message,
    };
    let patch = Patch::parse(text).map_err(|e| {
        refused(format!(
            "{what} is not a readable diff ({e}); nothing was written"
        ))
    })?;
    git::in_memory_writes(r, name)?;
    let rebuilt = tree::apply_patch(r, base, &patch).map_err(|f| {
        refused(format!(
            "{what} would not reproduce the work tree ({}); nothing was written",
            f.detail
        ))
    })?;
    let rebuilt = r
        .find_tree(rebuilt)
        .map_err(local(name, "reading a tree"))?;
    let left = worktree::compare(r, name, head, &rebuilt)?;
    if !left.is_empty() {
        return Err(refused(format!(
            "{what} would not reproduce these paths, so nothing was written:{}",
            left.listing(10)
        )));
    }
    Ok(Some(patch))
}
