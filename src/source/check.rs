//! The CI verification: every bundle applied in memory onto its pinned tree, from an object cache
//! that is never a checkout; and `lock`, which records the resulting trees.

use std::collections::HashMap;
use std::path::Path;

use git2::{Oid, Repository};

use super::patched::PatchedTree;
use super::{SourceError, Workspace, bundles};
use crate::git::{self, local};
use crate::pins::{self, Pins, Repo};
use crate::source::Diagnosis;

/// Choices for `check` and `lock`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Use only objects already in the cache or the workspace checkouts: no network.
    pub offline: bool,
}

/// The verdict on one bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleStatus {
    Ok,
    HashMismatch,
    /// Unreadable, undecodable, not a diff, or unsafe paths.
    Invalid,
    DoesNotApply,
    /// Not tried because an earlier bundle of the repo failed.
    Skipped,
}

impl BundleStatus {
    /// Stable name used in JSON and JUnit output.
    pub fn as_str(self) -> &'static str {
        match self {
            BundleStatus::Ok => "ok",
            BundleStatus::HashMismatch => "hash_mismatch",
            BundleStatus::Invalid => "invalid",
            BundleStatus::DoesNotApply => "does_not_apply",
            BundleStatus::Skipped => "skipped",
        }
    }
}

/// One bundle's result.
#[derive(Debug, Clone)]
pub struct BundleResult {
    pub bundle: String,
    pub status: BundleStatus,
    pub diagnosis: Option<Diagnosis>,
    pub file: Option<String>,
    pub hunk: Option<usize>,
    pub detail: String,
}

/// One repo's result.
#[derive(Debug, Clone)]
pub struct RepoCheck {
    pub name: String,
    pub commit: String,
    /// The tree pin + bundles give, when every bundle applied.
    pub tree: Option<String>,
    /// The `tree:` lock from pins.yaml.
    pub locked_tree: Option<String>,
    pub bundles: Vec<BundleResult>,
}

impl RepoCheck {
    /// Every bundle applied and the tree equals its lock (when there is one).
    pub fn ok(&self) -> bool {
        self.bundles.iter().all(|b| b.status == BundleStatus::Ok) && self.tree_matches_lock()
    }

    /// The computed tree equals the lock, or there is no lock.
    pub fn tree_matches_lock(&self) -> bool {
        match (&self.locked_tree, &self.tree) {
            (Some(lock), Some(tree)) => lock == tree,
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    /// Some bundle could not even be read as a bundle.
    pub fn has_invalid(&self) -> bool {
        self.bundles
            .iter()
            .any(|b| b.status == BundleStatus::Invalid)
    }
}

/// Checks the named repos (all when empty).
pub fn check(
    ws: &Workspace,
    pins: &Pins,
    names: &[String],
    opts: CheckOptions,
) -> Result<Vec<RepoCheck>, SourceError> {
    let selected = pins.select(names)?;
    let mut objects = Objects::new(ws, pins, opts);
    selected
        .into_iter()
        .map(|repo| check_repo(&mut objects, pins, repo))
        .collect()
}

/// Computes every repo's tree and records it as `tree:` in pins.yaml; writes nothing unless every
/// repo checks clean apart from its lock.
pub fn lock(
    ws: &Workspace,
    pins: &Pins,
    opts: CheckOptions,
) -> Result<(Vec<RepoCheck>, bool), SourceError> {
    let results = check(ws, pins, &[], opts)?;
    let applies = |r: &RepoCheck| r.bundles.iter().all(|b| b.status == BundleStatus::Ok);
    if !results.iter().all(applies) {
        return Ok((results, false));
    }
    let mut text = std::fs::read_to_string(&pins.path).map_err(SourceError::io(&pins.path))?;
    // Read again after the checks (which may have fetched for minutes): a file edited meanwhile
    // gets no tree worked out for other pins.
    let now = Pins::parse(&pins.path, text.as_bytes())?;
    let pinned = |p: &Repo| {
        (
            p.name.clone(),
            p.url.clone(),
            p.commit.clone(),
            p.patches.clone(),
        )
    };
    if now
        .repos
        .iter()
        .map(pinned)
        .ne(pins.repos.iter().map(pinned))
    {
        return Err(SourceError::Refused {
            repo: "pins.yaml".to_owned(),
            message: "pins.yaml changed while lock ran; nothing was written: run lock again"
                .to_owned(),
        });
    }
    let mut changed = false;
    for r in &results {
        let tree = r.tree.as_deref().unwrap_or_default();
        if r.locked_tree.as_deref() != Some(tree) {
            text = pins::set_tree(&text, &pins.path, &r.name, tree)?;
            changed = true;
        }
    }
    if changed {
        let reloaded = Pins::parse(&pins.path, text.as_bytes())?;
        let same = reloaded
            .repos
            .iter()
            .zip(&results)
            .all(|(p, r)| p.tree == r.tree);
        if !same || reloaded.repos.len() != results.len() {
            return Err(SourceError::Refused {
                repo: "pins.yaml".to_owned(),
                message: "the edited file does not read back as intended; nothing was written"
                    .to_owned(),
            });
        }
        crate::fsutil::write_atomic_keeping_link(&pins.path, text.as_bytes())
            .map_err(SourceError::io(&pins.path))?;
    }
    Ok((results, changed))
}

fn check_repo(
    objects: &mut Objects<'_>,
    pins: &Pins,
    repo: &Repo,
) -> Result<RepoCheck, SourceError> {
    let mut result = RepoCheck {
        name: repo.name.clone(),
        commit: repo.commit.clone(),
        tree: None,
        locked_tree: repo.tree.clone(),
        bundles: Vec::new(),
    };
    for other in super::apply::references(repo) {
        if let Ok(other) = pins.repo(other) {
            objects.open(other)?;
        }
    }
    objects.open(repo)?;
    let objects = &*objects;
    let r = &objects.repos[&repo.name];
    let pin_tree = objects.pin_tree(repo)?.id();
    let mut patched =
        PatchedTree::new(r, pin_tree).map_err(local(&repo.name, "reading the pinned tree"))?;
    let mut current = None;
    let mut failed = false;
    for patch in &repo.patches {
        let label = patch.label();
        if failed {
            result.bundles.push(BundleResult {
                bundle: label,
                status: BundleStatus::Skipped,
                diagnosis: None,
                file: None,
                hunk: None,
                detail: "not checked: an earlier bundle of this repo failed".to_owned(),
            });
            continue;
        }
        let outcome = objects.apply(pins, repo, patch, &mut patched);
        match outcome {
            Ok(tree) => {
                current = Some(tree);
                result.bundles.push(BundleResult {
                    bundle: label,
                    status: BundleStatus::Ok,
                    diagnosis: None,
                    file: None,
                    hunk: None,
                    detail: String::new(),
                });
            }
            Err(b) => {
                failed = true;
                result.bundles.push(BundleResult { bundle: label, ..b });
            }
        }
    }
    if !failed {
        let tree = current.unwrap_or_else(|| patched.base_id());
        result.tree = Some(tree.to_string());
    }
    Ok(result)
}

/// Where each repo's objects come from: the cache, or (offline) a workspace checkout, read only.
struct Objects<'a> {
    ws: &'a Workspace,
    pins: &'a Pins,
    opts: CheckOptions,
    repos: HashMap<String, Repository>,
}

impl<'a> Objects<'a> {
    fn new(ws: &'a Workspace, pins: &'a Pins, opts: CheckOptions) -> Self {
        Objects {
            ws,
            pins,
            opts,
            repos: HashMap::new(),
        }
    }

    fn open(&mut self, repo: &Repo) -> Result<&Repository, SourceError> {
        if !self.repos.contains_key(&repo.name) {
            let r = self.locate(repo)?;
            git::in_memory_writes(&r, &repo.name)?;
            self.repos.insert(repo.name.clone(), r);
        }
        Ok(&self.repos[&repo.name])
    }

    fn locate(&self, repo: &Repo) -> Result<Repository, SourceError> {
        let pin = Oid::from_str(&repo.commit).map_err(local(&repo.name, "commit id"))?;
        let cache_path = self.ws.cache_repo(&repo.name, &repo.url);
        let cached = open_bare(&cache_path).filter(|r| git::has_commit(r, pin));
        if let Some(r) = cached {
            return Ok(r);
        }
        if self.opts.offline {
            let checkout = self.ws.checkout(&repo.dir);
            let local_repo = Repository::open_ext(
                &checkout,
                git2::RepositoryOpenFlags::NO_SEARCH,
                std::iter::empty::<&str>(),
            )
            .ok()
            .filter(|r| git::has_commit(r, pin));
            return local_repo.ok_or_else(|| SourceError::Unavailable {
                repo: repo.name.clone(),
                message: format!(
                    "commit {} is neither in the object cache ({}) nor in the workspace checkout, \
                     and --offline forbids fetching; run `pinstack check` once with network, or \
                     `pinstack fetch {}`",
                    repo.commit,
                    cache_path.display(),
                    repo.name
                ),
            });
        }
        let r = match open_bare(&cache_path) {
            Some(r) => r,
            None => {
                std::fs::create_dir_all(&cache_path).map_err(SourceError::io(&cache_path))?;
                Repository::init_bare(&cache_path)
                    .map_err(local(&repo.name, "creating the object cache"))?
            }
        };
        git::ensure_commit(&r, &repo.name, &repo.url, &repo.commit)?;
        Ok(r)
    }

    fn pin_tree(&self, repo: &Repo) -> Result<git2::Tree<'_>, SourceError> {
        let r = &self.repos[&repo.name];
        Ok(git::commit_tree(r, &repo.name, &repo.commit)?)
    }

    /// Applies one bundle onto the tree the earlier ones left; returns the new tree's id.
    fn apply(
        &self,
        pins: &Pins,
        repo: &Repo,
        patch: &pins::PatchRef,
        patched: &mut PatchedTree<'_>,
    ) -> Result<Oid, BundleResult> {
        let failed = |status, diagnosis, detail: String| BundleResult {
            bundle: String::new(),
            status,
            diagnosis,
            file: None,
            hunk: None,
            detail,
        };
        let bytes = bundles::read_bundle_bytes(pins, &repo.name, patch, &mut |other, path| {
            self.read_pinned(other, path)
        })
        .map_err(|e| failed(BundleStatus::Invalid, None, e.to_string()))?;
        let loaded = bundles::load_bundle(&repo.name, patch, &bytes).map_err(|e| {
            let status = if e.is_mismatch() {
                BundleStatus::HashMismatch
            } else {
                BundleStatus::Invalid
            };
            failed(status, None, e.to_string())
        })?;
        patched.apply(&loaded.patch).map_err(|f| BundleResult {
            bundle: String::new(),
            status: BundleStatus::DoesNotApply,
            diagnosis: Some(f.diagnosis),
            file: f.file,
            hunk: f.hunk,
            detail: f.detail,
        })
    }

    fn read_pinned(&self, other: &str, path: &str) -> Option<Vec<u8>> {
        let repo = self.pins.repo(other).ok()?;
        let r = self.repos.get(other)?;
        let tree = git::commit_tree(r, other, &repo.commit).ok()?;
        git::read_blob(r, &tree, path)
    }
}

fn open_bare(path: &Path) -> Option<Repository> {
    Repository::open_bare(path).ok()
}
