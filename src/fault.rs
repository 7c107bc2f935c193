//! Fault injection for the crash tests, compiled into debug (test) builds only: with
//! `PINSTACK_FAULT=NAME:N`, the Nth pass of point NAME kills pinstack outright (SIGKILL), as a
//! power cut or an OOM kill would. Release builds have no such point.

/// A place where a test can kill pinstack.
#[cfg(debug_assertions)]
pub fn point(name: &str, n: usize) {
    if let Ok(spec) = std::env::var("PINSTACK_FAULT")
        && spec == format!("{name}:{n}")
    {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Release builds: no fault points.
#[cfg(not(debug_assertions))]
pub fn point(_name: &str, _n: usize) {}

/// Test builds only: with `PINSTACK_FAULT_DISK_FULL=TEXT`, writing a file whose path contains
/// TEXT fails as a full disk does (ENOSPC).
#[cfg(debug_assertions)]
pub fn disk_full(path: &std::path::Path) -> std::io::Result<()> {
    match std::env::var("PINSTACK_FAULT_DISK_FULL") {
        Ok(text) if !text.is_empty() && path.to_string_lossy().contains(&text) => {
            Err(std::io::Error::from_raw_os_error(28))
        }
        _ => Ok(()),
    }
}

/// Release builds: the disk is what it is.
#[cfg(not(debug_assertions))]
pub fn disk_full(_path: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}
