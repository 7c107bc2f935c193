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
