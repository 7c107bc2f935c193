//! Reading a pinned bundle: its bytes, both hashes, the decoded diff and its placed paths.

use std::path::PathBuf;

use crate::bundle::{self, BundleError};
use crate::diff::{DiffError, Patch};
use crate::pins::{BundleSource, PatchRef, Pins};

/// Why a pinned bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BundleLoadError {
    #[error("{repo}: bundle {bundle}: cannot read {}: {source}", path.display())]
    Read {
        repo: String,
        bundle: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{repo}: bundle {bundle}: {path} does not exist in repo {in_repo} at its pinned commit"
    )]
    NotInRepo {
        repo: String,
        bundle: String,
        in_repo: String,
        path: String,
    },
    #[error(
        "{repo}: bundle {bundle}: {which} mismatch: pins.yaml says {expected}, the bundle has {actual}; \
         if the new bundle is intended, update {which} in pins.yaml"
    )]
    HashMismatch {
        repo: String,
        bundle: String,
        which: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{repo}: bundle {bundle}: {source}")]
    Decode {
        repo: String,
        bundle: String,
        source: BundleError,
    },
    #[error("{repo}: bundle {bundle}: {source}")]
    Diff {
        repo: String,
        bundle: String,
        source: DiffError,
    },
}

impl BundleLoadError {
    /// Whether the bundle was read but is not the one pinned (as opposed to unreadable).
    pub fn is_mismatch(&self) -> bool {
        matches!(self, BundleLoadError::HashMismatch { .. })
    }
}

/// A verified, decoded bundle with its paths placed under its base_dir.
#[derive(Debug, Clone)]
pub struct LoadedBundle {
    pub label: String,
    pub patch: Patch,
}

/// The bytes of a pinned bundle; `in_repo` reads a file from another repo's pinned commit.
pub fn read_bundle_bytes(
    pins: &Pins,
    repo: &str,
    patch: &PatchRef,
    in_repo: &mut dyn FnMut(&str, &str) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, BundleLoadError> {
    match &patch.source {
        BundleSource::File(path) => {
            let path = pins.bundle_path(path);
            std::fs::read(&path).map_err(|source| BundleLoadError::Read {
                repo: repo.to_owned(),
                bundle: patch.label(),
                path,
                source,
            })
        }
        BundleSource::InRepo { repo: other, path } => {
            in_repo(other, path).ok_or_else(|| BundleLoadError::NotInRepo {
                repo: repo.to_owned(),
                bundle: patch.label(),
                in_repo: other.clone(),
                path: path.clone(),
            })
        }
    }
}

/// Verifies both hashes, decodes, parses and places a bundle's diff.
pub fn load_bundle(
    repo: &str,
    patch: &PatchRef,
    bytes: &[u8],
) -> Result<LoadedBundle, BundleLoadError> {
    let label = patch.label();
    let mismatch = |which, expected: &str, actual: String| BundleLoadError::HashMismatch {
        repo: repo.to_owned(),
        bundle: label.clone(),
        which,
        expected: expected.to_owned(),
        actual,
    };
    // Each hash is computed alongside the next step, whose result is used only once the hash
    // matches.
    let (decoded, sha) = bundle::decode_hashed(bytes);
    if sha != patch.sha256 {
        return Err(mismatch("sha256", &patch.sha256, sha));
    }
    let diff = decoded.map_err(|source| BundleLoadError::Decode {
        repo: repo.to_owned(),
        bundle: label.clone(),
        source,
    })?;
    let (parsed, diff_sha) = Patch::parse_alongside(diff, bundle::sha256_hex);
    if diff_sha != patch.diff_sha256 {
        return Err(mismatch("diff_sha256", &patch.diff_sha256, diff_sha));
    }
    let diff_error = |source| BundleLoadError::Diff {
        repo: repo.to_owned(),
        bundle: label.clone(),
        source,
    };
    let mut parsed = parsed.map_err(diff_error)?;
    parsed.check_paths().map_err(diff_error)?;
    if let Some(base) = &patch.base_dir {
        parsed = parsed.place_under(base).map_err(diff_error)?;
    }
    Ok(LoadedBundle {
        label: label.clone(),
        patch: parsed,
    })
}
