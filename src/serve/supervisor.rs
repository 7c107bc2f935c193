//! Who keeps the server running: the `process` supervisor (pinstack spawns the server in its own
//! process group and records it) or `systemd` (the unit `install-service` rendered). Either way
//! pinstack stops only what it recorded: never a process found by name.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::Profile;
use super::procfs;
use super::state::{ServeDir, State, StateError};

/// The two supervisors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A process group pinstack spawned, recorded in `state.json`.
    Process,
    /// The systemd unit `pinstack-<recipe>@<profile>.service`.
    Systemd,
}

impl Kind {
    /// The name used in the state file and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Process => "process",
            Kind::Systemd => "systemd",
        }
    }

    /// The kind a state file names.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "process" => Some(Kind::Process),
            "systemd" => Some(Kind::Systemd),
            _ => None,
        }
    }
}

/// Where and how servers are supervised.
#[derive(Debug, Clone)]
pub struct Supervision {
    /// The recipe's name (part of the unit name).
    pub recipe: String,
    /// The install prefix the systemd unit was rendered under.
    pub prefix: PathBuf,
    /// How long a stopping server gets after SIGINT before SIGKILL (process supervisor).
    pub stop_grace: Duration,
    /// The folder a spawned server runs in.
    pub workdir: PathBuf,
    pub serve: ServeDir,
}

/// A supervisor could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot start {program}: {source}", program = program.display())]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}", path = path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the systemd unit {path} is not installed; run `pinstack install-service --prefix {prefix}` first",
        path = path.display(), prefix = prefix.display()
    )]
    NotInstalled { path: PathBuf, prefix: PathBuf },
    #[error("`systemctl {args}` failed: {detail}")]
    Systemctl { args: String, detail: String },
    #[error("process group {pgid} is still there after SIGKILL")]
    Unkillable { pgid: u32 },
    #[error("the state file names supervisor {0:?}, which pinstack does not know")]
    UnknownKind(String),
    #[error(
        "the state file names the unit {0:?}, which is not one pinstack installs \
         (pinstack-<recipe>@<profile>.service): nothing was stopped; check serve/state.json"
    )]
    NotOurUnit(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing of it was running any more.
    WasNotRunning,
    /// It stopped on SIGINT (or `systemctl stop`).
    Stopped,
    /// It ignored SIGINT for the whole grace period and was killed.
    Killed,
}

/// Whether a server that is starting still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead(String),
}

/// A server just started, with what is needed to notice it die while it starts.
pub struct Running {
    /// Its state, not yet ready.
    pub state: State,
    child: Option<Child>,
    main_pid: Option<u32>,
}

impl Running {
    /// Opens the gate the server waits behind (see [`run_gate`]): call once its state is saved.
    pub fn release(&mut self) -> std::io::Result<()> {
        use std::io::Write;
        match self.child.as_mut().and_then(|c| c.stdin.take()) {
            Some(mut gate) => gate.write_all(b"go\n"),
            None => Ok(()),
        }
    }

    /// Whether it still runs (and has not been restarted by systemd behind pinstack's back).
    pub fn check(&mut self) -> Liveness {
        if let Some(child) = &mut self.child {
            return match child.try_wait() {
                Ok(Some(status)) => Liveness::Dead(format!("the server exited ({status})")),
                Ok(None) => Liveness::Alive,
                Err(e) => Liveness::Dead(format!("cannot wait for the server: {e}")),
            };
        }
        let Some(unit) = self.state.unit.clone() else {
            return Liveness::Alive;
        };
        match unit_active(&unit) {
            Ok(state) if is_up(&state) => {}
            Ok(state) => return Liveness::Dead(format!("the unit {unit} is {state}")),
            Err(e) => return Liveness::Dead(e.to_string()),
        }
        let now = main_pid(&unit).ok().flatten();
        match (self.main_pid, now) {
            (None, Some(p)) => self.main_pid = Some(p),
            (Some(before), now) if now != Some(before) => {
                return Liveness::Dead(format!(
                    "the unit {unit}'s main process {before} exited{}",
                    match now {
                        Some(p) => format!(" and systemd started another ({p})"),
                        None => " and systemd is restarting it".to_owned(),
                    }
                ));
            }
            _ => {}
        }
        Liveness::Alive
    }

    /// Refreshes the recorded pid (systemd knows the main pid only once it has started).
    pub fn refresh_pid(&mut self) {
        if let Some(unit) = &self.state.unit
            && let Ok(Some(pid)) = main_pid(unit)
        {
            self.state.pid = Some(pid);
        }
    }

    /// Stops it (a failed start), and reaps it when pinstack spawned it.
    pub fn stop(mut self, sup: &Supervision) -> Result<Stopped, SupervisorError> {
        let r = stop(sup, &self.state);
        if let Some(child) = &mut self.child {
            let _ = child.try_wait();
        }
        r
    }
}

/// `pinstack-<recipe>@<profile>.service`.
/// Whether `unit` is named as pinstack names its units ([`unit_name`]).
fn is_our_unit(unit: &str) -> bool {
    unit.strip_prefix("pinstack-")
        .and_then(|u| u.strip_suffix(".service"))
        .and_then(|u| u.split_once('@'))
        .is_some_and(|(recipe, profile)| {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            };
            ok(recipe) && ok(profile)
        })
}

pub fn unit_name(recipe: &str, profile: &str) -> String {
    format!("pinstack-{recipe}@{profile}.service")
}

/// `<prefix>/etc/systemd/system/pinstack-<recipe>@.service`, the template unit.
pub fn unit_file(prefix: &Path, recipe: &str) -> PathBuf {
    prefix
        .join("etc/systemd/system")
        .join(format!("pinstack-{recipe}@.service"))
}

/// Refuses when the systemd unit has not been installed under the prefix.
pub fn check_installed(sup: &Supervision) -> Result<(), SupervisorError> {
    let path = unit_file(&sup.prefix, &sup.recipe);
    if path.is_file() {
        Ok(())
    } else {
        Err(SupervisorError::NotInstalled {
            path,
            prefix: sup.prefix.clone(),
        })
    }
}

/// Starts a profile under a supervisor. The state it returns is not ready yet.
pub fn start(sup: &Supervision, kind: Kind, profile: &Profile) -> Result<Running, SupervisorError> {
    let mut state = State {
        profile: profile.name.clone(),
        supervisor: kind.as_str().to_owned(),
        started_at: unix_now(),
        pid: None,
        pgid: None,
        pid_start: None,
        boot_id: None,
        unit: None,
        log: None,
        base_url: profile.base_url(),
        command: masked_command(&profile.command()),
        env: State::masked_env(&profile.env),
        ready: None,
    };
    match kind {
        Kind::Process => {
            let log = sup.serve.new_log(&profile.name)?;
            let child = spawn(sup, profile, &log)?;
            let pid = child.id();
            state.pid = Some(pid);
            state.pgid = Some(pid);
            state.pid_start = procfs::stat(pid).map(|s| s.start_ticks);
            state.boot_id = Some(procfs::boot_id());
            state.log = Some(log);
            Ok(Running {
                state,
                child: Some(child),
                main_pid: None,
            })
        }
        Kind::Systemd => {
            check_installed(sup)?;
            let unit = unit_name(&sup.recipe, &profile.name);
            // Recorded before the unit starts (systemd starts it, no gate can hold it): a
            // pinstack killed in between leaves a state naming the unit, which the next switch
            // stops.
            state.unit = Some(unit.clone());
            sup.serve.save(&state)?;
            if let Err(e) = systemctl(&["start", &unit]) {
                // A unit that failed to start may be waiting to restart: leave it stopped. One
                // that is down after all (never came up, or stopped) is forgotten; one that may
                // still come up (the stop failed, and systemd says it is up, or cannot say)
                // stays recorded, so nothing is started beside it.
                let stopped = run_systemctl(&["stop", &unit]).is_ok_and(|o| o.status.success());
                if stopped || unit_active(&unit).is_ok_and(|a| !is_up(&a)) {
                    let _ = sup.serve.clear();
                }
                return Err(e);
            }
            let pid = main_pid(&unit).ok().flatten();
            state.pid = pid;
            Ok(Running {
                state,
                child: None,
                main_pid: pid,
            })
        }
    }
}

/// Spawns the server: exactly the profile's environment, stdin closed, output appended to the
/// log, in a process group of its own so it outlives pinstack and can be stopped as a whole.
fn spawn(sup: &Supervision, profile: &Profile, log: &Path) -> Result<Child, SupervisorError> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let log_err = |source| SupervisorError::Log {
        path: log.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(log_err)?;
    writeln!(
        file,
        "{HEADER} profile {} started {} by pid {}",
        profile.name,
        crate::fsutil::utc_stamp(),
        std::process::id()
    )
    .map_err(log_err)?;
    let err = file.try_clone().map_err(log_err)?;
    let argv = profile.command();
    // The server starts behind a gate (pinstack itself, see [`run_gate`]) that opens only once
    // the state naming its process is saved: a switch killed in between leaves no server
    // that no state records.
    let gate = std::env::current_exe().map_err(|source| SupervisorError::Spawn {
        program: PathBuf::from("pinstack"),
        source,
    })?;
    Command::new(gate)
        .arg(GATE)
        .args(&argv)
        .env_clear()
        .envs(profile.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&sup.workdir)
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| SupervisorError::Spawn {
            program: profile.vllm.clone(),
            source,
        })
}

/// The first argument that makes pinstack the gate in front of a server it starts.
pub const GATE: &str = "__serve-gate";

/// `pinstack __serve-gate PROGRAM ARGS...`, with the server's environment, folder, output and
/// process group already set: waits for `go` on standard input, then becomes the server (same
/// process). When the switch that started it dies before it saved the server's state, the
/// pipe closes without `go`, and the gate exits instead. Returns only on failure.
pub fn run_gate(args: &[std::ffi::OsString]) -> u8 {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut line = String::new();
    let go = std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim_end() == "go";
    let Some((program, rest)) = args.split_first() else {
        return 2;
    };
    if !go {
        return 125;
    }
    let err = Command::new(program).args(rest).stdin(Stdio::null()).exec();
    eprintln!(
        "pinstack: cannot start {}: {err}",
        program.to_string_lossy()
    );
    127
}

/// The first words of the line pinstack writes into a server log before the server's own.
const HEADER: &str = "# pinstack:";

/// Stops the server a state records: SIGINT to its process group, SIGKILL after the grace
/// period; or `systemctl stop` on its unit.
pub fn stop(sup: &Supervision, state: &State) -> Result<Stopped, SupervisorError> {
    match Kind::parse(&state.supervisor) {
        Some(Kind::Process) => stop_group(state, sup.stop_grace),
        Some(Kind::Systemd) => {
            let Some(unit) = &state.unit else {
                return Ok(Stopped::WasNotRunning);
            };
            // Nothing is stopped by a name the state file alone vouches for.
            if !is_our_unit(unit) {
                return Err(SupervisorError::NotOurUnit(unit.clone()));
            }
            let was = unit_active(unit).map(|s| is_up(&s)).unwrap_or(true);
            systemctl(&["stop", unit])?;
            Ok(if was {
                Stopped::Stopped
            } else {
                Stopped::WasNotRunning
            })
        }
        None => Err(SupervisorError::UnknownKind(state.supervisor.clone())),
    }
}

/// Whether the server a state records runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    NotRunning(String),
    /// It runs; its pid when known.
    Running(Option<u32>),
}

/// Whether the server a state records runs, and its pid.
pub fn presence(state: &State) -> Result<Presence, SupervisorError> {
    match Kind::parse(&state.supervisor) {
        Some(Kind::Process) => Ok(if owned_group_alive(state) {
            Presence::Running(state.pid)
        } else {
            Presence::NotRunning(format!(
                "its process group {} is gone",
                state.pgid.map_or("?".to_owned(), |p| p.to_string())
            ))
        }),
        Some(Kind::Systemd) => {
            let Some(unit) = &state.unit else {
                return Ok(Presence::NotRunning("no unit recorded".to_owned()));
            };
            let active = unit_active(unit)?;
            if !is_up(&active) {
                return Ok(Presence::NotRunning(format!("the unit {unit} is {active}")));
            }
            Ok(Presence::Running(main_pid(unit)?.or(state.pid)))
        }
        None => Err(SupervisorError::UnknownKind(state.supervisor.clone())),
    }
}

/// Whether the process group a state records is still the server pinstack started: same boot,
/// and either its leader with the recorded start time, or (the leader gone) members started
/// after it. A pid that was reused by another process does not count.
fn owned_group_alive(state: &State) -> bool {
    let (Some(pgid), Some(start)) = (state.pgid, state.pid_start) else {
        return false;
    };
    if state.boot_id.as_deref() != Some(procfs::boot_id().as_str()) {
        return false;
    }
    let members = procfs::group_members(pgid);
    if members.is_empty() {
        return false;
    }
    match members.iter().find(|(pid, _)| *pid == pgid) {
        Some((_, s)) => s.start_ticks == start,
        None => members.iter().all(|(_, s)| s.start_ticks >= start),
    }
}

fn stop_group(state: &State, grace: Duration) -> Result<Stopped, SupervisorError> {
    let Some(pgid) = state.pgid else {
        return Ok(Stopped::WasNotRunning);
    };
    if !owned_group_alive(state) {
        return Ok(Stopped::WasNotRunning);
    }
    let Some(group) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return Ok(Stopped::WasNotRunning);
    };
    // The reference unit's KillSignal=SIGINT: vLLM shuts its workers down cleanly on it.
    let _ = rustix::process::kill_process_group(group, Signal::INT);
    if wait_group_gone(pgid, grace) {
        return Ok(Stopped::Stopped);
    }
    let _ = rustix::process::kill_process_group(group, Signal::KILL);
    if wait_group_gone(pgid, Duration::from_secs(10)) {
        Ok(Stopped::Killed)
    } else {
        Err(SupervisorError::Unkillable { pgid })
    }
}

fn wait_group_gone(pgid: u32, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        if procfs::group_members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_up(active: &str) -> bool {
    matches!(active, "active" | "activating" | "reloading")
}

/// `systemctl is-active UNIT` (which exits non-zero for anything but active: its word counts).
fn unit_active(unit: &str) -> Result<String, SupervisorError> {
    let out = run_systemctl(&["is-active", unit])?;
    let word = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if word.is_empty() {
        return Err(SupervisorError::Systemctl {
            args: format!("is-active {unit}"),
            detail: failure_detail(&out),
        });
    }
    Ok(word)
}

/// `systemctl show -p MainPID --value UNIT`; `None` when it has no main process.
fn main_pid(unit: &str) -> Result<Option<u32>, SupervisorError> {
    let out = systemctl(&["show", "-p", "MainPID", "--value", unit])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p != 0))
}

fn run_systemctl(args: &[&str]) -> Result<std::process::Output, SupervisorError> {
    Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SupervisorError::Systemctl {
            args: args.join(" "),
            detail: format!("cannot run systemctl: {e}"),
        })
}

/// Runs `systemctl` from PATH; a non-zero exit is an error with its stderr.
fn systemctl(args: &[&str]) -> Result<std::process::Output, SupervisorError> {
    let out = run_systemctl(args)?;
    if !out.status.success() {
        return Err(SupervisorError::Systemctl {
            args: args.join(" "),
            detail: failure_detail(&out),
        });
    }
    Ok(out)
}

fn failure_detail(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if err.is_empty() {
        out.status.to_string()
    } else {
        format!("{} ({})", err, out.status)
    }
}

/// The last lines of a server's log: its log file, or the unit's journal since it started.
pub fn log_tail(state: &State, n: usize) -> Vec<String> {
    if let Some(log) = &state.log {
        let text = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(HEADER)).collect();
        return lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.to_string())
            .collect();
    }
    let Some(unit) = &state.unit else {
        return Vec::new();
    };
    let out = Command::new("journalctl")
        .args([
            "--unit",
            unit,
            "--since",
            &format!("@{}", state.started_at),
            "--lines",
            &n.to_string(),
            "--no-pager",
            "--output",
            "cat",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Where a server's log can be read, for messages.
pub fn log_place(state: &State) -> String {
    match (&state.log, &state.unit) {
        (Some(log), _) => log.display().to_string(),
        (None, Some(unit)) => format!("journalctl --unit {unit}"),
        (None, None) => "nowhere".to_owned(),
    }
}

/// Who else listens on the port of `base_url`, beside the server a state records (its process,
/// a descendant of it, or a member of its process group): the processes holding a listening
/// socket there that is not the server's. vLLM binds with `SO_REUSEPORT`, so a second server
/// on the same port shares its connections: every listening socket must be the server's. A
/// socket whose holder this user cannot see counts as another's once the server's own are
/// seen (its pid is then 0 in the list). `None` when only the server listens, or when no
/// holder at all can be seen (another user's processes, to a non-root caller).
pub fn foreign_listeners(state: &State, pid: Option<u32>, base_url: &str) -> Option<Vec<u32>> {
    let (host, port) = base_url.strip_prefix("http://")?.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    // Only sockets that take connections made to the server's address: the same address, or a
    // wildcard (`::` takes IPv4 too, unless bound v6-only: counted, to be safe).
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let served: Vec<std::net::IpAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(a) => vec![a],
        Err(_) => {
            use std::net::ToSocketAddrs;
            (host, port)
                .to_socket_addrs()
                .ok()?
                .map(|a| a.ip())
                .collect()
        }
    };
    let overlaps = |a: &std::net::IpAddr| {
        a.is_unspecified() || served.iter().any(|s| s.is_unspecified() || s == a)
    };
    let sockets: Vec<_> = procfs::listeners(port)?
        .into_iter()
        .filter(|(_, address, _)| overlaps(address))
        .collect();
    if sockets.iter().all(|(_, _, holders)| holders.is_empty()) {
        return None;
    }
    let ours = |l: &u32| {
        pid.is_some_and(|p| procfs::descends_from(*l, p))
            || state
                .pgid
                .is_some_and(|g| procfs::stat(*l).is_some_and(|s| s.pgrp == g))
    };
    let mut others: Vec<u32> = Vec::new();
    for (_, _, holders) in &sockets {
        if holders.iter().any(ours) {
            continue;
        }
        if holders.is_empty() {
            others.push(0);
        }
        others.extend(holders.iter().copied());
    }
    others.dedup();
    (!others.is_empty()).then_some(others)
}

/// [`foreign_listeners`]' list in words: `pid 4242, a process this user cannot see`.
pub fn describe_listeners(pids: &[u32]) -> String {
    pids.iter()
        .map(|p| match p {
            0 => "a process this user cannot see".to_owned(),
            p => format!("pid {p}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a flag's value is a secret: a word of its name is `token`, `secret`, `password`,
/// `passwd` or `credential(s)`, or its last word is `key` (`--api-key`, `--hf-token`). Whole
/// words only: `--max-num-batched-tokens` counts tokens and is shown.
fn flag_looks_secret(name: &str) -> bool {
    let words: Vec<String> = name
        .split(['-', '_'])
        .map(str::to_ascii_lowercase)
        .collect();
    words.iter().any(|w| {
        [
            "token",
            "secret",
            "password",
            "passwd",
            "credential",
            "credentials",
        ]
        .contains(&w.as_str())
    }) || words.last().is_some_and(|w| w == "key")
}

/// A command line with the values of secret-looking flags (`--api-key X`) masked.
pub fn masked_command(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut hide_next = false;
    for a in argv {
        if hide_next {
            out.push("***".to_owned());
            hide_next = false;
            continue;
        }
        if let Some(flag) = a.strip_prefix("--") {
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (flag, None),
            };
            if flag_looks_secret(name) {
                match value {
                    Some(_) => out.push(format!("--{name}=***")),
                    None => {
                        out.push(a.clone());
                        hide_next = true;
                    }
                }
                continue;
            }
        }
        out.push(a.clone());
    }
    out
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `switch` stops a systemd unit only when it is named as pinstack names its units.
    #[test]
    fn only_pinstacks_own_unit_names_are_ours() {
        assert!(is_our_unit(&unit_name("lab", "c2")));
        assert!(is_our_unit("pinstack-minimax-m27-b70@c1.service"));
        for other in [
            "sshd.service",
            "pinstack-lab.service",
            "pinstack-@c2.service",
            "pinstack-lab@.service",
            "pinstack-lab@c2.service.d",
            "pinstack-lab@../x.service",
            "xpinstack-lab@c2.service",
        ] {
            assert!(!is_our_unit(other), "{other}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(unit_name("lab", "c1"), "pinstack-lab@c1.service");
        assert_eq!(
            unit_file(Path::new("/p"), "lab"),
            Path::new("/p/etc/systemd/system/pinstack-lab@.service")
        );
    }

    #[test]
    fn secret_flags_are_masked() {
        let argv: Vec<String> = ["vllm", "serve", "m", "--api-key", "s3cret", "--x", "1"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            masked_command(&argv),
            ["vllm", "serve", "m", "--api-key", "***", "--x", "1"]
        );
        let argv = vec!["--api-key=s3cret".to_owned()];
        assert_eq!(masked_command(&argv), ["--api-key=***"]);
        let argv: Vec<String> = ["--hf-token", "t", "--max-num-batched-tokens", "512"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            masked_command(&argv),
            ["--hf-token", "***", "--max-num-batched-tokens", "512"]
        );
    }
}
