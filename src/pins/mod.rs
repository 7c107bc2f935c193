//! `pins.yaml`: every repository at an exact commit, and every bundle with its two hashes.

mod edit;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::yaml::{self, YamlError};
pub use edit::{NewPatch, add_patch, set_tree};

/// Why pins.yaml could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("unknown repo {name:?}: {path} pins {known}")]
    UnknownRepo {
        name: String,
        path: PathBuf,
        known: String,
    },
    #[error("{path}: cannot edit: {reason}")]
    Edit { path: PathBuf, reason: String },
}

/// The loaded, validated pins.
#[derive(Debug, Clone)]
pub struct Pins {
    /// The pins file itself.
    pub path: PathBuf,
    /// The folder relative bundle paths are read from.
    pub dir: PathBuf,
    /// The repositories, in file order.
    pub repos: Vec<Repo>,
}

/// One pinned repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub name: String,
    pub url: String,
    /// Full 40-hex commit id, lower case.
    pub commit: String,
    /// Checkout folder under `<workspace>/src`.
    pub dir: String,
    pub submodules: bool,
    pub patches: Vec<PatchRef>,
    /// The locked tree id after all patches.
    pub tree: Option<String>,
    /// 1-based line of the repo's key in pins.yaml.
    pub line: usize,
}

/// One bundle applied to a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchRef {
    pub source: BundleSource,
    pub sha256: String,
    pub diff_sha256: String,
    pub base_dir: Option<String>,
}

/// Where a bundle's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSource {
    /// A file on disk (relative paths are resolved against pins.yaml's folder).
    File(PathBuf),
    /// A file inside another pinned repository, read from its pinned commit.
    InRepo { repo: String, path: String },
}

impl PatchRef {
    /// How the bundle is named in messages and reports: as written in pins.yaml.
    pub fn label(&self) -> String {
        match &self.source {
            BundleSource::File(p) => p.display().to_string(),
            BundleSource::InRepo { repo, path } => format!("{repo}:{path}"),
        }
    }

    /// The bundle's file name, without folders.
    pub fn file_name(&self) -> String {
        let label = self.label();
        label.rsplit(['/', ':']).next().unwrap_or(&label).to_owned()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPins {
    repos: yaml::Ordered<RawRepo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    // Optional here so that a missing one is reported at the repo's key, not wherever the
    // YAML parser happened to be when the repo's mapping ended.
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    commit: Option<Spanned<String>>,
    #[serde(default)]
    dir: Option<Spanned<String>>,
    #[serde(default)]
    submodules: bool,
    #[serde(default)]
    patches: Vec<RawPatch>,
    #[serde(default)]
    tree: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPatch {
    bundle: Spanned<String>,
    sha256: Spanned<String>,
    diff_sha256: Spanned<String>,
    #[serde(default)]
    base_dir: Option<Spanned<String>>,
}

impl Pins {
    /// Reads and validates a pins file.
    pub fn load(path: &Path) -> Result<Pins, PinsError> {
        let text = std::fs::read(path).map_err(|source| PinsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates pins text that claims to come from `path`.
    pub fn parse(path: &Path, text: &[u8]) -> Result<Pins, PinsError> {
        let raw: RawPins = yaml::from_slice(path, text)?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let names: Vec<String> = raw.repos.0.iter().map(|(k, _)| k.value.clone()).collect();
        let err = |at: &serde_saphyr::Location, message: String| {
            PinsError::Yaml(YamlError::at(path, at, message))
        };
        let mut repos: Vec<Repo> = Vec::with_capacity(names.len());
        for (key, r) in raw.repos.0 {
            let name = key.value;
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            {
                return Err(err(
                    &key.referenced,
                    format!("repo name {name:?} must match [a-z0-9._-]+"),
                ));
            }
            let required = |field: Option<&Spanned<String>>, what: &str| {
                field.cloned().ok_or_else(|| {
                    err(
                        &key.referenced,
                        format!("repo {name}: missing field `{what}` (it is required)"),
                    )
                })
            };
            let r_url = required(r.url.as_ref(), "url")?;
            let r_commit = required(r.commit.as_ref(), "commit")?;
            let url = r_url.value.trim().to_owned();
            if url.is_empty() {
                return Err(err(&r_url.referenced, format!("repo {name}: url is empty")));
            }
            let commit = full_hex(&r_commit, 40).map_err(|m| {
                err(
                    &r_commit.referenced,
                    format!("repo {name}: commit {m}; abbreviations are refused: write the full id (`git rev-parse <commit>`)"),
                )
            })?;
            let dir = match &r.dir {
                Some(d) => {
                    let value = d.value.trim_end_matches('/').to_owned();
                    crate::diff::check_path(&value)
                        .map_err(|e| err(&d.referenced, format!("repo {name}: dir {e}")))?;
                    value
                }
                None => name.clone(),
            };
            if let Some(other) = repos.iter().find(|o| o.dir == dir) {
                let at = r.dir.as_ref().map_or(&key.referenced, |d| &d.referenced);
                return Err(err(
                    at,
                    format!(
                        "repo {name}: dir {dir:?} is already used by repo {}",
                        other.name
                    ),
                ));
            }
            let tree = match &r.tree {
                Some(t) => Some(
                    full_hex(t, 40)
                        .map_err(|m| err(&t.referenced, format!("repo {name}: tree {m}")))?,
                ),
                None => None,
            };
            let mut patches = Vec::with_capacity(r.patches.len());
            for p in &r.patches {
                let b = p.bundle.value.trim();
                if b.is_empty() {
                    return Err(err(
                        &p.bundle.referenced,
                        format!("repo {name}: bundle is empty"),
                    ));
                }
                let source = match b.split_once(':') {
                    Some((repo, inner)) if names.iter().any(|n| n == repo) => {
                        crate::diff::check_path(inner).map_err(|e| {
                            err(&p.bundle.referenced, format!("repo {name}: bundle {e}"))
                        })?;
                        BundleSource::InRepo {
                            repo: repo.to_owned(),
                            path: inner.to_owned(),
                        }
                    }
                    _ => BundleSource::File(PathBuf::from(b)),
                };
                let sha256 = full_hex(&p.sha256, 64)
                    .map_err(|m| err(&p.sha256.referenced, format!("repo {name}: sha256 {m}")))?;
                let diff_sha256 = full_hex(&p.diff_sha256, 64).map_err(|m| {
                    err(
                        &p.diff_sha256.referenced,
                        format!("repo {name}: diff_sha256 {m}"),
                    )
                })?;
                let base_dir = match &p.base_dir {
                    Some(d) => {
                        let value = d.value.trim_matches('/').to_owned();
                        crate::diff::check_path(&value).map_err(|e| {
                            err(&d.referenced, format!("repo {name}: base_dir {e}"))
                        })?;
                        Some(value)
                    }
                    None => None,
                };
                patches.push(PatchRef {
                    source,
                    sha256,
                    diff_sha256,
                    base_dir,
                });
            }
            repos.push(Repo {
                name,
                url,
                commit,
                dir,
                submodules: r.submodules,
                patches,
                tree,
                line: key.referenced.line() as usize,
            });
        }
        Ok(Pins {
            path: path.to_owned(),
            dir,
            repos,
        })
    }

    /// The repo with this name.
    pub fn repo(&self, name: &str) -> Result<&Repo, PinsError> {
        self.repos
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| PinsError::UnknownRepo {
                name: name.to_owned(),
                path: self.path.clone(),
                known: self.known(),
            })
    }

    /// The named repos in pins order, or all of them when no name is given.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Repo>, PinsError> {
        for n in names {
            self.repo(n)?;
        }
        Ok(self
            .repos
            .iter()
            .filter(|r| names.is_empty() || names.contains(&r.name))
            .collect())
    }

    /// The file a bundle on disk is read from.
    pub fn bundle_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.dir.join(path)
        }
    }

    fn known(&self) -> String {
        if self.repos.is_empty() {
            return "no repos".to_owned();
        }
        let names: Vec<&str> = self.repos.iter().map(|r| r.name.as_str()).collect();
        names.join(", ")
    }
}

fn full_hex(value: &Spanned<String>, len: usize) -> Result<String, String> {
    let v = value.value.trim();
    if !v.bytes().all(|b| b.is_ascii_hexdigit()) || v.is_empty() {
        return Err(format!("{v:?} is not hexadecimal"));
    }
    if v.len() != len {
        return Err(format!(
            "{v:?} has {} hex digits, {len} are required",
            v.len()
        ));
    }
    Ok(v.to_ascii_lowercase())
}
