//! Where the engine keeps its state under the workspace: checkpoints of successful runs,
//! records of the last attempt, logs, the salt for secret hashes, and the workspace lock.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::fingerprint::Components;
use crate::fsutil::write_atomic;

/// The record of a step's last successful run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub id: String,
    pub fingerprint: String,
    pub components: Components,
    /// The run id of each needed step when this step ran.
    pub needs: BTreeMap<String, String>,
    /// Unique per successful run; dependents record it.
    pub run_id: String,
    /// Unix seconds.
    pub finished_at: u64,
    pub duration_ms: u64,
    /// The boot this run happened in (for steps that need a reboot afterwards).
    pub boot_id: String,
    /// What the step exported (through `$PINSTACK_EXPORT`) for the steps that need it.
    #[serde(default)]
    pub exports: Vec<(String, String)>,
}

/// How the last attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    Running,
    Failed,
    Interrupted,
    TimedOut,
}

/// The record of a step's last attempt that did not succeed (or is still running).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub status: AttemptStatus,
    /// The pinstack process that ran it.
    pub pid: u32,
    /// The step's process group, once started.
    #[serde(default)]
    pub group: Option<u32>,
    pub started_at: u64,
    pub fingerprint: String,
    pub detail: String,
}

/// The engine's state folder for one recipe in one workspace.
#[derive(Debug, Clone)]
pub struct Store {
    state: PathBuf,
    steps: PathBuf,
    logs: PathBuf,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Locked(#[from] crate::lock::LockError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Store {
    /// The store of `recipe` (by name) in `workspace`.
    pub fn new(workspace: &Path, recipe: &str) -> Self {
        let state = workspace.join(".pinstack");
        let safe: String = recipe
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>();
        // A name the folder cannot hold as it is ("lab one", "..") gets a hash of itself, so
        // that no two recipes share a folder and none lands outside `steps/`.
        let safe = if safe == recipe && safe != "." && safe != ".." && !safe.is_empty() {
            safe
        } else {
            format!(
                "{safe}-{}",
                &crate::bundle::sha256_hex(recipe.as_bytes())[..12]
            )
        };
        // Logs per recipe too: two recipes of one workspace may name a step alike.
        Store {
            steps: state.join("steps").join(&safe),
            state,
            logs: workspace.join("logs").join(safe),
        }
    }

    /// The full log of a step's last run.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.logs.join(format!("{id}.log"))
    }

    /// The log of the run before it.
    pub fn previous_log_path(&self, id: &str) -> PathBuf {
        self.logs.join(format!("{id}.previous.log"))
    }

    /// The file a step writes `NAME=VALUE` lines into, for the steps that need it.
    pub fn export_path(&self, id: &str) -> PathBuf {
        self.steps.join(format!("{id}.export"))
    }

    /// The last successful run of a step.
    pub fn checkpoint(&self, id: &str) -> Option<Checkpoint> {
        read_json(&self.steps.join(format!("{id}.done.json")))
    }

    /// Records a successful run; written atomically, so a kill leaves the old record or the new.
    pub fn save_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        let path = self.steps.join(format!("{}.done.json", cp.id));
        let json = serde_json::to_vec_pretty(cp).expect("checkpoint serializes");
        write_atomic(&path, &json).map_err(io(&path))
    }

    /// The last attempt that did not succeed, if any.
    pub fn attempt(&self, id: &str) -> Option<Attempt> {
        read_json(&self.steps.join(format!("{id}.attempt.json")))
    }

    /// Records an attempt (before a step starts, and when it fails).
    pub fn save_attempt(&self, id: &str, attempt: &Attempt) -> Result<(), StoreError> {
        let path = self.steps.join(format!("{id}.attempt.json"));
        let json = serde_json::to_vec_pretty(attempt).expect("attempt serializes");
        write_atomic(&path, &json).map_err(io(&path))
    }

    /// Forgets the last attempt.
    pub fn clear_attempt(&self, id: &str) -> Result<(), StoreError> {
        remove(&self.steps.join(format!("{id}.attempt.json")))
    }

    /// Forgets everything about a step; returns whether there was anything.
    pub fn reset(&self, id: &str) -> Result<bool, StoreError> {
        let had = self.checkpoint(id).is_some() || self.attempt(id).is_some();
        remove(&self.steps.join(format!("{id}.done.json")))?;
        self.clear_attempt(id)?;
        Ok(had)
    }

    /// A random salt, made once per workspace, that keys the hashes of secret values.
    pub fn salt(&self) -> Result<Vec<u8>, StoreError> {
        let path = self.state.join("salt");
        if let Ok(bytes) = std::fs::read(&path)
            && bytes.len() >= 16
        {
            return Ok(bytes);
        }
        let bytes = random_bytes(32).map_err(io(&path))?;
        write_atomic(&path, &bytes).map_err(io(&path))?;
        Ok(bytes)
    }

    /// The salt when the workspace has one; a throw-away one otherwise (nothing is written, and
    /// no checkpoint can hold a hash made with a salt that does not exist yet).
    pub fn salt_if_any(&self) -> Vec<u8> {
        std::fs::read(self.state.join("salt"))
            .ok()
            .filter(|b| b.len() >= 16)
            .unwrap_or_else(|| random_bytes(32).unwrap_or_default())
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn remove(path: &Path) -> Result<(), StoreError> {
    crate::fsutil::remove_file_if_present(path).map_err(io(path))
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Random bytes from the kernel.
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// A fresh run id.
pub fn run_id() -> String {
    let bytes = random_bytes(8).unwrap_or_else(|_| now().to_le_bytes().to_vec());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of the current boot; `PINSTACK_BOOT_ID` stands in for it in tests.
pub fn boot_id() -> String {
    if let Ok(id) = std::env::var("PINSTACK_BOOT_ID") {
        return id;
    }
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
