//! The workspace lock: one pinstack at a time changes a workspace (`up`, `apply`, `fetch`,
//! `switch`); the others fail at once, naming the holder.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the workspace {} is in use by another pinstack ({holder}); wait for it to finish",
        workspace.display()
    )]
    Held { workspace: PathBuf, holder: String },
}

/// Held while a command works on a workspace; released when dropped, or when the process dies.
#[derive(Debug)]
pub struct WorkspaceLock {
    _file: std::fs::File,
}

/// Takes the lock of `workspace` (`<workspace>/.pinstack/lock`) for `what` (`pinstack up`,
/// `switch c1`), or fails at once naming the process that holds it.
pub fn acquire(workspace: &Path, what: &str) -> Result<WorkspaceLock, LockError> {
    let dir = workspace.join(".pinstack");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| LockError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join("lock");
    // Never through a symbolic link someone put in the workspace: root would write where it
    // points.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(io(&path))?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        return Err(LockError::Held {
            workspace: workspace.to_owned(),
            holder: if holder.is_empty() {
                "an unknown process".to_owned()
            } else {
                holder.to_owned()
            },
        });
    }
    file.set_len(0).map_err(io(&path))?;
    write!(
        file,
        "pid {} ({what}, since {})",
        std::process::id(),
        crate::fsutil::utc_stamp()
    )
    .map_err(io(&path))?;
    Ok(WorkspaceLock { _file: file })
}
