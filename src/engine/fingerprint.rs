//! A step's fingerprint: everything that can change its result, as named components, so that
//! "why does this rerun?" can be answered component by component.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{Repository, RepositoryOpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundle::sha256_hex;
use crate::pins::{BundleSource, Pins};
use crate::recipe::{Action, Step};

/// The parts of a fingerprint, kept in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Components {
    /// The step's definition after interpolation (action, folder, privilege, reboot).
    pub definition: String,
    /// Environment values; secrets as a salted hash, never in plain text.
    pub env: BTreeMap<String, String>,
    /// A digest of each input's content.
    pub inputs: BTreeMap<String, String>,
    /// For `uses: sources`: each repo's pin and bundle hashes.
    pub pins: BTreeMap<String, String>,
}

impl Components {
    /// The fingerprint of these components.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("components serialize");
        sha256_hex(&json)
    }
}

/// Computes a step's components. `salt` keys the hashes of secret values.
pub fn components(step: &Step, pins: Option<&Pins>, salt: &[u8]) -> Components {
    // A secret pasted into an argument enters the definition only as its salted hash.
    let hide = |text: &str| {
        let mut out = text.to_owned();
        for s in step.secrets.iter().filter(|s| s.len() >= 3) {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), &format!("secret:{}", salted(salt, s)));
            }
        }
        out
    };
    let definition = serde_json::json!({
        "action": match &step.action {
            Action::Run(script) => serde_json::json!({"run": hide(script)}),
            Action::Argv(argv) => {
                serde_json::json!({"argv": argv.iter().map(|a| hide(a)).collect::<Vec<_>>()})
            }
            Action::Sources(repos) => serde_json::json!({"uses": "sources", "repos": repos}),
        },
        "cwd": step.cwd.display().to_string(),
        "cleanup": step.cleanup.as_deref().map(hide),
        "privileged": step.privileged,
        "reboot": step.reboot,
    });
    let env = step
        .env
        .iter()
        .map(|e| {
            let value = if e.secret {
                format!("secret:{}", salted(salt, &e.value))
            } else {
                e.value.clone()
            };
            (e.name.clone(), value)
        })
        .collect();
    let inputs = step
        .inputs
        .iter()
        .map(|p| (p.display().to_string(), digest_path(p)))
        .collect();
    let pins = match (&step.action, pins) {
        (Action::Sources(only), Some(pins)) => pins
            .repos
            .iter()
            .filter(|r| only.is_empty() || only.contains(&r.name))
            .map(|r| {
                let bundles: Vec<String> = r
                    .patches
                    .iter()
                    .map(|p| {
                        let source = match &p.source {
                            BundleSource::File(f) => f.display().to_string(),
                            BundleSource::InRepo { repo, path } => format!("{repo}:{path}"),
                        };
                        format!(
                            "{source} {} {} {}",
                            p.sha256,
                            p.diff_sha256,
                            p.base_dir.as_deref().unwrap_or("")
                        )
                    })
                    .collect();
                let text = format!(
                    "{} {} {} {} {:?} [{}]",
                    r.url,
                    r.commit,
                    r.dir,
                    r.submodules,
                    r.tree,
                    bundles.join(", ")
                );
                (r.name.clone(), text)
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    Components {
        definition: sha256_hex(definition.to_string().as_bytes()),
        env,
        inputs,
        pins,
    }
}

fn salted(salt: &[u8], value: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(value.as_bytes());
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest of a file or folder's content. A git work tree is read through git (HEAD's tree
/// plus the content of every path `git status` reports, ignored files excluded), so build outputs
/// inside a source tree do not change its digest and the cost follows what changed, not the
/// size of the tree. Other folders are hashed file by file.
pub fn digest_path(path: &Path) -> String {
    // Several steps often name the same tree: it is read once until a step runs.
    let cache = DIGESTS.get_or_init(Default::default);
    if let Some(d) = cache.lock().ok().and_then(|c| c.get(path).cloned()) {
        return d;
    }
    let d = compute_digest(path);
    if let Ok(mut c) = cache.lock() {
        c.insert(path.to_owned(), d.clone());
    }
    d
}

static DIGESTS: std::sync::OnceLock<
    std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, String>>,
> = std::sync::OnceLock::new();

/// Forgets the digests read so far: a step has run and may have changed its inputs.
pub fn forget_digests() {
    if let Some(c) = DIGESTS.get()
        && let Ok(mut c) = c.lock()
    {
        c.clear();
    }
}

fn compute_digest(path: &Path) -> String {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return "absent".to_owned();
    };
    if meta.is_file() {
        return match std::fs::read(path) {
            Ok(bytes) => format!("file:{}", sha256_hex(&bytes)),
            Err(e) => format!("unreadable:{}", e.kind()),
        };
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).unwrap_or_default();
        return format!("link:{}", target.display());
    }
    if path.join(".git").exists()
        && let Some(d) = git_digest(path)
    {
        return d;
    }
    let mut h = Sha256::new();
    hash_dir(path, Path::new(""), &mut h);
    format!(
        "dir:{}",
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn git_digest(path: &Path) -> Option<String> {
    let repo = Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&str>(),
    )
    .ok()?;
    let head = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_tree().ok())
        .map(|t| t.id().to_string())
        .unwrap_or_else(|| "unborn".to_owned());
    // Submodules count: a submodule at another commit, or with changes, changes what a step
    // builds from this tree.
    let opts = crate::source::ScanOptions {
        submodules: true,
        ignored: false,
    };
    let scan = crate::source::scan(&repo, "", opts).ok()?;
    let mut changed: Vec<(String, String)> = scan
        .changed
        .into_keys()
        .map(|p| {
            let content = crate::source::on_disk(&path.join(&p)).map_or_else(
                || "deleted".to_owned(),
                |(id, mode)| format!("{id} {mode:o}"),
            );
            (p, content)
        })
        .collect();
    changed.sort();
    let mut h = Sha256::new();
    h.update(head.as_bytes());
    for (p, c) in &changed {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(c.as_bytes());
        h.update([0]);
    }
    Some(format!(
        "git:{head}+{}:{}",
        changed.len(),
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

fn hash_dir(root: &Path, rel: &Path, h: &mut Sha256) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        if name == ".git" {
            continue;
        }
        let rel_path = rel.join(&name);
        let full = root.join(&rel_path);
        let Ok(meta) = std::fs::symlink_metadata(&full) else {
            continue;
        };
        h.update(rel_path.as_os_str().as_encoded_bytes());
        h.update([0]);
        if meta.is_dir() {
            h.update(b"d");
            hash_dir(root, &rel_path, h);
        } else if meta.file_type().is_symlink() {
            h.update(b"l");
            h.update(
                std::fs::read_link(&full)
                    .unwrap_or_default()
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else if let Ok(bytes) = std::fs::read(&full) {
            h.update(if is_exec(&meta) { b"x" } else { b"f" });
            h.update(Sha256::digest(&bytes));
        }
        h.update([0]);
    }
}

#[cfg(unix)]
fn is_exec(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_exec(_: &std::fs::Metadata) -> bool {
    false
}
