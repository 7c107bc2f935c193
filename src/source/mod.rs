//! The source layer: pinned checkouts, bundles applied in memory and on disk, CI checks, locks.

mod apply;
mod binary;
mod bundles;
mod capture;
mod check;
mod fetch;
mod index_file;
mod patched;
mod record;
mod rescue;
mod scan;
mod tree;
mod worktree;
mod write;

use std::path::{Path, PathBuf};

pub use apply::{ApplyOptions, ApplyOutcome, ApplyReport, apply};
pub use bundles::{BundleLoadError, LoadedBundle, load_bundle, read_bundle_bytes};
pub use check::{BundleResult, BundleStatus, CheckOptions, RepoCheck, check, lock};
pub use fetch::{FetchReport, fetch};
pub use tree::{Diagnosis, Failure};
pub use worktree::{PathClass, PathState, WorktreeDiff};

pub(crate) use capture::capture;
pub(crate) use patched::PatchedTree;
pub(crate) use scan::{ScanOptions, scan};
pub(crate) use worktree::{
    IndexEntries, WorkFiles, changed_and_ignored, classify_changed, entry, on_disk, staged_apart,
    tree_changes,
};

use crate::git::GitError;

/// Where checkouts, rescues and the object cache live.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The workspace root; checkouts go to `<root>/src/<dir>`.
    pub root: PathBuf,
    /// The object cache used by `check` and `lock`; never a checkout.
    pub cache: PathBuf,
}

impl Workspace {
    /// The checkout folder of a repo.
    pub fn checkout(&self, dir: &str) -> PathBuf {
        self.root.join("src").join(dir)
    }

    /// The folder rescue bundles are saved in.
    pub fn rescue_dir(&self) -> PathBuf {
        self.root.join("rescue")
    }

    /// The bare repository that caches a URL's objects for `check`.
    pub fn cache_repo(&self, name: &str, url: &str) -> PathBuf {
        let key = &crate::bundle::sha256_hex(url.as_bytes())[..16];
        self.cache.join("git").join(format!("{name}-{key}.git"))
    }
}

/// Why the source layer could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Bundle(#[from] BundleLoadError),
    #[error(transparent)]
    Pins(#[from] crate::pins::PinsError),
    #[error(
        "{repo}: {path} is not a git checkout; move it away or choose another dir in pins.yaml"
    )]
    NotACheckout { repo: String, path: PathBuf },
    #[error(
        "{repo}: the checkout at {path} fetches from {found}, but pins.yaml says {expected}; \
         move the checkout away or fix the url"
    )]
    OtherOrigin {
        repo: String,
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{repo}: {message}")]
    Refused { repo: String, message: String },
    #[error("{repo}: {message}")]
    NotAsPinned { repo: String, message: String },
    #[error("{repo}: {message}")]
    Unavailable { repo: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SourceError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
        move |source| SourceError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
