//! What pinstack records about the server it owns, under `<workspace>/serve/`: `state.json`
//! (the profile, how it is supervised, its pid or unit, its log and its readiness answer),
//! `logs/`, and the `lock` a switch holds.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;
use crate::recipe::looks_secret;

/// A problem with the serve folder.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a state file pinstack wrote ({source}); move it away", path = path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Locked(#[from] crate::lock::LockError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One variable of the server's environment, as recorded (secrets masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvEntry {
    pub name: String,
    pub value: String,
}

/// What the server answered when it was found ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyRecord {
    pub model_id: String,
    pub max_model_len: u64,
    pub smoke_text: String,
}

/// The server pinstack owns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub profile: String,
    /// `process` or `systemd`.
    pub supervisor: String,
    /// Unix seconds.
    pub started_at: u64,
    /// The server's pid (the process supervisor's group leader, or the unit's main pid).
    pub pid: Option<u32>,
    /// The process group (process supervisor).
    pub pgid: Option<u32>,
    /// When the group leader started, in clock ticks after boot (with `boot_id`, this tells
    /// the server from a process that reused its pid).
    #[serde(default)]
    pub pid_start: Option<u64>,
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The systemd unit (systemd supervisor).
    pub unit: Option<String>,
    /// The server's log file (process supervisor; systemd logs to the journal).
    pub log: Option<PathBuf>,
    pub base_url: String,
    pub command: Vec<String>,
    pub env: Vec<EnvEntry>,
    /// `None` while the server is still starting (or never became ready).
    pub ready: Option<ReadyRecord>,
}

impl State {
    /// The environment as recorded: values of secret-looking names masked.
    pub fn masked_env(env: &[(String, String)]) -> Vec<EnvEntry> {
        env.iter()
            .map(|(k, v)| EnvEntry {
                name: k.clone(),
                value: if looks_secret(k) {
                    "***".to_owned()
                } else {
                    v.clone()
                },
            })
            .collect()
    }
}

/// The serve folder of a workspace.
#[derive(Debug, Clone)]
pub struct ServeDir {
    pub dir: PathBuf,
}

impl ServeDir {
    /// `<workspace>/serve`.
    pub fn new(workspace: &Path) -> ServeDir {
        ServeDir {
            dir: workspace.join("serve"),
        }
    }

    /// `state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The recorded state, if any.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        let path = self.state_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path, source })
    }

    /// Records the state (atomically: a reader sees the old file or the new one).
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let path = self.state_path();
        let mut bytes = serde_json::to_vec_pretty(state).expect("the state serializes");
        bytes.push(b'\n');
        write_atomic(&path, &bytes).map_err(io(&path))
    }

    /// Forgets the state: nothing is running.
    pub fn clear(&self) -> Result<(), StateError> {
        let path = self.state_path();
        crate::fsutil::remove_file_if_present(&path).map_err(io(&path))
    }

    /// A fresh log file for a profile: `logs/<profile>-<utc stamp>.log`.
    pub fn new_log(&self, profile: &str) -> Result<PathBuf, StateError> {
        let logs = self.dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(io(&logs))?;
        let stamp = crate::fsutil::utc_stamp();
        let mut path = logs.join(format!("{profile}-{stamp}.log"));
        // A rollback within the same second gets its own file.
        let mut n = 2;
        while path.exists() {
            path = logs.join(format!("{profile}-{stamp}-{n}.log"));
            n += 1;
        }
        Ok(path)
    }

    /// Takes the workspace lock (shared with `up`, `apply` and `fetch`), or fails at once
    /// naming the holder.
    pub fn lock(&self, what: &str) -> Result<crate::lock::WorkspaceLock, StateError> {
        let workspace = self.dir.parent().unwrap_or(&self.dir);
        Ok(crate::lock::acquire(workspace, what)?)
    }
}
