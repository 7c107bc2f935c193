//! Applying the pinned bundles to a checkout: all bundles are applied in memory first, so a
//! checkout gets every file or none; a tree that already holds pin + bundles is left alone; a
//! tree holding anything else is refused, or with `--force` saved as a rescue bundle first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use git2::Repository;
use git2::build::CheckoutBuilder;

use super::patched::PatchedTree;
use super::{SourceError, Workspace, bundles, fetch, record, rescue, worktree, write};
use crate::git::{self, local};
use crate::pins::{BundleSource, Pins, Repo};

/// Choices for `apply`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Save local changes as a rescue bundle, then reset and apply.
    pub force: bool,
}

/// What `apply` did to one checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The bundles were written; so many paths changed.
    Applied { paths: usize },
    /// The tree already held pin + bundles; nothing was written.
    AlreadyApplied,
    /// The repo has no bundles; the checkout is at its pin.
    NoBundles,
}

/// The result for one repo.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub repo: String,
    pub path: PathBuf,
    pub tree: String,
    pub bundles: Vec<String>,
    pub outcome: ApplyOutcome,
    pub rescue: Option<PathBuf>,
    /// pinstack's own earlier bundles (for an older pin or older bundles) were replaced.
    pub replaced_previous: bool,
}

/// Fetches the repo and applies its bundles to its checkout.
pub fn apply(
    ws: &Workspace,
    pins: &Pins,
    repo: &Repo,
    opts: ApplyOptions,
) -> Result<ApplyReport, SourceError> {
    let path = ws.checkout(&repo.dir);
    let mut rescued = None;
    let mut undone = false;
    if path.join(".git").exists() {
        let r = fetch::open_or_init(repo, &path)?;
        if !at_pin(&r, repo) {
            // Whatever can refuse (a commit that is not there, a bundle with other hashes or
            // one that does not apply, a lock that differs) refuses before anything changes.
            git::ensure_commit(&r, &repo.name, &repo.url, &repo.commit)?;
            fetch_references(ws, pins, repo)?;
            expected_tree(ws, pins, repo, &r)?;
            if !worktree::changed_paths(&r, &repo.name)?.is_empty() {
                // The pin moved: pinstack's own earlier work makes way by itself; anything
                // else needs --force, which saves it first.
                undone = record::undo_own_work(ws, &repo.name, &r)?;
                if !undone && opts.force {
                    rescued = rescue::save_and_reset(ws, &repo.name, &r)?;
                }
            }
        }
    }
    fetch::fetch(ws, repo)?;
    fetch_references(ws, pins, repo)?;
    let r = fetch::open_checkout(repo, &path)?;
    git::in_memory_writes(&r, &repo.name)?;
    let pin_tree = git::commit_tree(&r, &repo.name, &repo.commit)?;
    let (patched, tree_id, labels) = expected_tree(ws, pins, repo, &r)?;
    // The folders are written (to the in-memory store) for looking up paths; the files'
    // contents stay in `patched` until they are written to the checkout.
    let expected = patched
        .write_folders()
        .map_err(local(&repo.name, "building the patched tree"))?;
    // The work tree's status is read once here, and again only after undoing something.
    let changes = patched.changed_paths();
    let mut changed = worktree::changed_paths(&r, &repo.name)?;
    let state =
        worktree::compare_changed(&r, &repo.name, &pin_tree, &expected, &changes, &changed)?;
    let report = |outcome, rescue, replaced_previous| ApplyReport {
        repo: repo.name.clone(),
        replaced_previous,
        path: path.clone(),
        tree: tree_id.to_string(),
        bundles: labels.clone(),
        outcome,
        rescue,
    };
    let written: BTreeMap<String, Option<(git2::Oid, i32)>> = changes
        .iter()
        .map(|p| (p.clone(), patched.entry(p)))
        .collect();
    if state.is_empty() {
        record::save(ws, &repo.name, &repo.commit, &written, false)?;
        let outcome = if repo.patches.is_empty() {
            ApplyOutcome::NoBundles
        } else {
            ApplyOutcome::AlreadyApplied
        };
        return Ok(report(outcome, rescued, undone));
    }
    // A file git ignores where a bundle writes is in no status: only the comparison sees it.
    let hidden = |state: &worktree::WorktreeDiff, changed: &BTreeSet<String>| -> Vec<String> {
        state
            .paths
            .iter()
            .filter(|p| p.class != worktree::PathClass::Unpatched && !changed.contains(&p.path))
            .map(|p| p.path.clone())
            .collect()
    };
    // A folder where a bundle writes a file goes with everything in it: what the status lists
    // there is rescued, and what the bundles remove is theirs; anything else is ignored.
    let in_folders = |changed: &BTreeSet<String>| -> Result<Vec<String>, SourceError> {
        let removed = |p: &str| changes.contains(p) && patched.entry(p).is_none();
        let mut found = Vec::new();
        for p in changes.iter().filter(|p| patched.entry(p).is_some()) {
            let folder = path.join(p);
            let below = worktree::files_below(&folder, &path).map_err(SourceError::io(&folder))?;
            found.extend(
                below
                    .into_iter()
                    .filter(|f| !changed.contains(f) && !removed(f)),
            );
        }
        Ok(found)
    };
    let mut ignored = hidden(&state, &changed);
    ignored.extend(in_folders(&changed)?);
    if !changed.is_empty() || !ignored.is_empty() {
        undone = record::undo_own_work(ws, &repo.name, &r)?;
        if undone {
            changed = worktree::changed_paths(&r, &repo.name)?;
            let state = worktree::compare_changed(
                &r, &repo.name, &pin_tree, &expected, &changes, &changed,
            )?;
            ignored = hidden(&state, &changed);
            ignored.extend(in_folders(&changed)?);
        }
    }
    if !ignored.is_empty() {
        // A rescue bundle is made from git's view of the tree and would not hold them.
        return Err(SourceError::Refused {
            repo: repo.name.clone(),
            message: format!(
                "the bundles write {}, where the checkout holds files git ignores (not pin + \
                 bundles, and not something a rescue bundle keeps); nothing was written: move \
                 them away and run apply again",
                ignored.join(", ")
            ),
        });
    }
    if !changed.is_empty() {
        if !opts.force {
            return Err(SourceError::NotAsPinned {
                repo: repo.name.clone(),
                message: format!(
                    "the checkout holds changes that are not pin + bundles, so nothing was written:{}\n\
                     save or move them, or run `pinstack apply --force {}` to keep them as a rescue \
                     bundle and reset",
                    state.listing(20),
                    repo.name
                ),
            });
        }
        rescued = rescue::save_and_reset(ws, &repo.name, &r)?.or(rescued);
    }
    // A link the bundles replace with a folder is removed before anything is written in it.
    let replaced_link = |p: &str| changes.contains(p) && patched.entry(p).is_none();
    refuse_symlinked_parents(
        &path,
        &repo.name,
        changes.iter().map(String::as_str),
        &replaced_link,
    )?;
    // The journal goes first: a kill while files are written leaves work pinstack recognises.
    crate::fault::disk_full(&path).map_err(SourceError::io(&path))?;
    record::save(ws, &repo.name, &repo.commit, &written, true)?;
    let files = worktree::WorkFiles::new(&r, &repo.name)?;
    // The tree holds exactly the pin now: only the bundles' paths are written.
    let progress = |done| crate::fault::point("apply-write", done);
    let content = |id| patched.blob(id);
    if !write::write_paths(
        &r, &repo.name, &files, &expected, &content, &changes, progress,
    )? {
        // libgit2's checkout reads every blob from the object store.
        patched
            .write()
            .map_err(local(&repo.name, "writing the patched files"))?;
        let mut co = CheckoutBuilder::new();
        co.safe()
            .overwrite_ignored(false)
            .update_index(false)
            .recreate_missing(true)
            .disable_pathspec_match(true);
        for p in &changes {
            co.path(p.as_str());
        }
        co.progress(|_, done, _| progress(done));
        r.checkout_tree(expected.as_object(), Some(&mut co))
            .map_err(local(&repo.name, "writing the patched files"))?;
    }
    // Every other path held the pin before and was not touched: proving the bundles' paths
    // proves the tree.
    let wrong: Vec<&str> = changes
        .iter()
        .filter(|p| files.entry(p) != patched.entry(p))
        .map(String::as_str)
        .collect();
    if !wrong.is_empty() {
        return Err(SourceError::NotAsPinned {
            repo: repo.name.clone(),
            message: format!(
                "after applying, these paths do not hold pin + bundles: {}",
                wrong.join(", ")
            ),
        });
    }
    record::save(ws, &repo.name, &repo.commit, &written, false)?;
    Ok(report(
        ApplyOutcome::Applied {
            paths: changes.len(),
        },
        rescued,
        undone,
    ))
}

/// Fetches the pinned repos that hold some of this repo's bundles.
fn fetch_references(ws: &Workspace, pins: &Pins, repo: &Repo) -> Result<(), SourceError> {
    for other in references(repo) {
        if let Ok(other) = pins.repo(other)
            && other.name != repo.name
        {
            fetch::fetch(ws, other)?;
        }
    }
    Ok(())
}

/// Pin + bundles, in memory: the engine holding the result, its tree id and the bundles'
/// labels. Refuses a bundle that cannot be read, has other hashes or does not apply, and a
/// result that differs from the locked tree.
fn expected_tree<'r>(
    ws: &Workspace,
    pins: &Pins,
    repo: &Repo,
    r: &'r Repository,
) -> Result<(PatchedTree<'r>, git2::Oid, Vec<String>), SourceError> {
    let pin_tree = git::commit_tree(r, &repo.name, &repo.commit)?;
    let mut patched =
        PatchedTree::new(r, pin_tree.id()).map_err(local(&repo.name, "reading the pinned tree"))?;
    let mut tree_id = pin_tree.id();
    let mut labels = Vec::new();
    for patch in &repo.patches {
        let bytes = bundles::read_bundle_bytes(pins, &repo.name, patch, &mut |other, file| {
            read_from_pinned(ws, pins, other, file)
        })?;
        let loaded = bundles::load_bundle(&repo.name, patch, &bytes)?;
        tree_id = patched
            .apply(&loaded.patch)
            .map_err(|f| SourceError::NotAsPinned {
                repo: repo.name.clone(),
                message: format!("bundle {} does not apply: {}", loaded.label, f.detail),
            })?;
        labels.push(loaded.label);
    }
    if let Some(lock) = &repo.tree
        && *lock != tree_id.to_string()
    {
        return Err(SourceError::NotAsPinned {
            repo: repo.name.clone(),
            message: format!(
                "pin + bundles give tree {tree_id}, but pins.yaml locks tree {lock}; nothing was \
                 written (run `pinstack lock` if the change is intended)"
            ),
        });
    }
    Ok((patched, tree_id, labels))
}

fn at_pin(r: &Repository, repo: &Repo) -> bool {
    r.head()
        .ok()
        .and_then(|h| h.target())
        .is_some_and(|id| id.to_string() == repo.commit)
}

/// Reads a file from another pinned repo's checkout, at its pinned commit.
pub(super) fn read_from_pinned(
    ws: &Workspace,
    pins: &Pins,
    other: &str,
    file: &str,
) -> Option<Vec<u8>> {
    let other = pins.repo(other).ok()?;
    let r = fetch::open_checkout(other, &ws.checkout(&other.dir)).ok()?;
    let tree = git::commit_tree(&r, &other.name, &other.commit).ok()?;
    git::read_blob(&r, &tree, file)
}

/// Refuses to write a path whose parent folder in the work tree is a symbolic link, unless the
/// bundles remove that link first (`replaced`: a link that becomes a folder).
fn refuse_symlinked_parents<'a>(
    root: &Path,
    name: &str,
    paths: impl Iterator<Item = &'a str>,
    replaced: &dyn Fn(&str) -> bool,
) -> Result<(), SourceError> {
    for path in paths {
        for (i, _) in path.match_indices('/') {
            let parent = root.join(&path[..i]);
            if std::fs::symlink_metadata(&parent).is_ok_and(|m| m.file_type().is_symlink())
                && !replaced(&path[..i])
            {
                return Err(SourceError::Refused {
                    repo: name.to_owned(),
                    message: format!(
                        "{path} would be written through the symbolic link {}; nothing was written",
                        &path[..i]
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The pinned repos that hold some of this repo's bundles.
pub(super) fn references(repo: &Repo) -> impl Iterator<Item = &str> {
    repo.patches.iter().filter_map(|p| match &p.source {
        BundleSource::InRepo { repo, .. } => Some(repo.as_str()),
        BundleSource::File(_) => None,
    })
}
