//! What pinstack last wrote into each checkout. With it, pinstack recognises its own work when
//! the bundles or the pin change, and replaces it without `--force`, while anything a person
//! changed on top still makes it refuse.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{Oid, Repository};
use serde::{Deserialize, Serialize};

use super::{SourceError, Workspace, worktree, write};
use crate::git::local;

/// The files an apply left different from the commit it applied to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Applied {
    pub commit: String,
    /// Path -> (blob id, mode), or `None` where the bundles delete the file.
    pub entries: BTreeMap<String, Option<(String, i32)>>,
    /// Written before the files are: an apply that was killed half way leaves each of these
    /// paths either at HEAD's content or at the new one, and is recognised as its own.
    #[serde(default)]
    pub in_progress: bool,
}

fn record_path(ws: &Workspace, name: &str) -> PathBuf {
    ws.root
        .join(".pinstack")
        .join("applied")
        .join(format!("{name}.json"))
}

/// Records what an apply is about to write (`in_progress`, the journal) or wrote.
pub fn save(
    ws: &Workspace,
    name: &str,
    commit: &str,
    entries: &BTreeMap<String, Option<(Oid, i32)>>,
    in_progress: bool,
) -> Result<(), SourceError> {
    let path = record_path(ws, name);
    if entries.is_empty() {
        return remove(&path);
    }
    let record = Applied {
        in_progress,
        commit: commit.to_owned(),
        entries: entries
            .iter()
            .map(|(p, e)| (p.clone(), e.map(|(id, mode)| (id.to_string(), mode))))
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&record).expect("record serializes");
    crate::fsutil::write_atomic(&path, &json).map_err(SourceError::io(&path))
}

fn remove(path: &Path) -> Result<(), SourceError> {
    crate::fsutil::remove_file_if_present(path).map_err(SourceError::io(path))
}

/// When the checkout holds exactly what pinstack last wrote on top of HEAD, and nothing else,
/// puts HEAD's files back and removes the files the bundles created. Returns whether it did.
pub fn undo_own_work(ws: &Workspace, name: &str, r: &Repository) -> Result<bool, SourceError> {
    let path = record_path(ws, name);
    let Some(record) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Applied>(&b).ok())
    else {
        return Ok(false);
    };
    let head = r
        .head()
        .ok()
        .and_then(|h| h.target())
        .map(|id| id.to_string());
    if head.as_deref() != Some(record.commit.as_str()) {
        return Ok(false);
    }
    crate::git::in_memory_writes(r, name)?;
    let head_tree = r
        .head()
        .and_then(|h| h.peel_to_tree())
        .map_err(local(name, "reading HEAD's tree"))?;
    let files = worktree::WorkFiles::new(r, name)?;
    let workdir = r.workdir().unwrap_or(Path::new(".")).to_path_buf();
    let mut paths: BTreeSet<String> = worktree::changed_paths(r, name)?;
    paths.extend(record.entries.keys().cloned());
    let mut temps = Vec::new();
    for p in &paths {
        let Some(want) = record.entries.get(p) else {
            // A file an unfinished apply was writing, under its temporary name.
            let ours = record.in_progress
                && p.ends_with(write::TEMP_SUFFIX)
                && record
                    .entries
                    .keys()
                    .any(|e| write::temp_name(&workdir.join(e)) == workdir.join(p));
            if !ours {
                return Ok(false);
            }
            temps.push(workdir.join(p));
            continue;
        };
        let want = want
            .as_ref()
            .and_then(|(id, mode)| Oid::from_str(id).ok().map(|id| (id, *mode)));
        let have = files.entry(p);
        // A finished apply left every path at its new content; an unfinished one may have left
        // some at HEAD's, and one missing (removed to make way for its new content, which
        // the journal names). Anything else is a person's change.
        let unwritten =
            record.in_progress && (have == worktree::entry(&head_tree, p) || have.is_none());
        if have != want && !unwritten {
            return Ok(false);
        }
    }
    for t in &temps {
        std::fs::remove_file(t).map_err(SourceError::io(t))?;
    }
    let mut co = CheckoutBuilder::new();
    co.force().update_index(false);
    let mut restore = false;
    for p in record.entries.keys() {
        if worktree::entry(&head_tree, p).is_some() {
            co.path(p.as_str());
            restore = true;
        } else {
            let file = workdir.join(p);
            remove(&file)?;
            write::remove_empty_parents(&workdir, &file);
        }
    }
    if restore {
        r.checkout_tree(head_tree.as_object(), Some(&mut co))
            .map_err(local(name, "putting HEAD's files back"))?;
    }
    remove(&path)?;
    Ok(true)
}
