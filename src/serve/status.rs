//! `status`: the profile pinstack last switched to, whether its server runs and is healthy, and
//! whether what runs is what the profile renders today (command line and environment, read
//! from `/proc`).

use std::path::PathBuf;
use std::time::Duration;

use super::Profile;
use super::procfs;
use super::ready::{self, Expect, Probe};
use super::state::{State, StateError};
use super::supervisor::{self, Kind, Presence, Supervision, SupervisorError};
use crate::exit::ExitStatus;
use crate::recipe::looks_secret;

/// How long the health request may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Variables systemd gives every service itself; a unit's server having them is no difference
/// from the profile (unless the profile sets them).
const SYSTEMD_VARS: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "USER",
    "LOGNAME",
    "HOME",
    "SHELL",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "SYSTEMD_EXEC_PID",
    "MANAGERPID",
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "RUNTIME_DIRECTORY",
    "STATE_DIRECTORY",
    "CACHE_DIRECTORY",
    "LOGS_DIRECTORY",
    "CONFIGURATION_DIRECTORY",
    "CREDENTIALS_DIRECTORY",
    "MEMORY_PRESSURE_WATCH",
    "MEMORY_PRESSURE_WRITE",
];

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
}

impl StatusError {
    /// Where this error sits in the exit-code table.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            StatusError::State(e) => super::switch::state_status(e),
            StatusError::Supervisor(e) => super::switch::supervisor_status(e),
        }
    }
}

/// What `status` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub profile: Option<String>,
    pub supervisor: Option<String>,
    pub running: bool,
    /// Why it is not running (or "running").
    pub presence: String,
    pub healthy: bool,
    /// What the health check saw.
    pub health: String,
    pub matches: bool,
    pub differences: Vec<String>,
    pub uptime_s: Option<u64>,
    pub pid: Option<u32>,
    pub unit: Option<String>,
    pub log: Option<PathBuf>,
    pub base_url: Option<String>,
    /// The state file as recorded, when there is one.
    pub state: Option<State>,
}

impl Report {
    /// Running, healthy and as the profile renders it.
    pub fn ok(&self) -> bool {
        self.running && self.healthy && self.matches
    }
}

/// Looks at the server pinstack owns.
pub fn status(sup: &Supervision, profiles: &[Profile]) -> Result<Report, StatusError> {
    let Some(state) = sup.serve.load()? else {
        return Ok(Report {
            presence: format!(
                "nothing is running: no switch is recorded in {}",
                sup.serve.state_path().display()
            ),
            health: "nothing to ask".to_owned(),
            ..Report::default()
        });
    };
    let mut report = Report {
        profile: Some(state.profile.clone()),
        supervisor: Some(state.supervisor.clone()),
        unit: state.unit.clone(),
        log: state.log.clone(),
        base_url: Some(state.base_url.clone()),
        pid: state.pid,
        ..Report::default()
    };
    let profile = profiles.iter().find(|p| p.name == state.profile);
    match supervisor::presence(&state)? {
        Presence::NotRunning(why) => {
            report.presence = format!("not running: {why}");
            report.health = "not running".to_owned();
            report.state = Some(state);
            return Ok(report);
        }
        Presence::Running(pid) => {
            report.running = true;
            report.presence = "running".to_owned();
            report.pid = pid.or(state.pid);
            report.uptime_s = Some(supervisor::unix_now().saturating_sub(state.started_at));
        }
    }

    // Health: what the profile expects today, else what the server answered when it was ready.
    let expect = match (profile, &state.ready) {
        (Some(p), _) => Some(Expect::of(p)),
        (None, Some(r)) => Some(Expect {
            base_url: state.base_url.clone(),
            model_id: r.model_id.clone(),
            max_model_len: r.max_model_len,
            smoke: super::Smoke {
                prompt: String::new(),
                expect: String::new(),
                max_tokens: 1,
            },
            api_key: None,
        }),
        (None, None) => None,
    };
    match expect.map(|e| (ready::probe(&e, HEALTH_TIMEOUT), e)) {
        Some((Probe::Serving { max_model_len }, e)) => {
            match supervisor::foreign_listeners(&state, report.pid, &e.base_url) {
                Some(pids) => {
                    report.health = format!(
                        "{} answers, but {} listens there too, not the server pinstack \
                         started: its answers cannot be told from the server's",
                        e.base_url,
                        supervisor::describe_listeners(&pids)
                    );
                }
                None => {
                    report.healthy = true;
                    report.health = format!(
                        "{}/v1/models serves {} with max_model_len {max_model_len}",
                        e.base_url, e.model_id
                    );
                }
            }
        }
        Some((Probe::NotListening(m) | Probe::Starting(m), _)) => {
            report.health = format!("not serving yet: {m}");
        }
        Some((Probe::Wrong(e), _)) => report.health = e.to_string(),
        None => report.health = "nothing recorded to check it against".to_owned(),
    }

    // Match: the running process against the profile as the recipe renders it now.
    let systemd = Kind::parse(&state.supervisor) == Some(Kind::Systemd);
    let mut diffs = Vec::new();
    if systemd {
        let file = supervisor::unit_file(&sup.prefix, &sup.recipe);
        if !file.is_file() {
            diffs.push(format!("the unit file {} is missing", file.display()));
        }
    }
    match profile {
        None => diffs.push(format!(
            "the profile {} is no longer in the recipe",
            state.profile
        )),
        Some(p) => {
            if p.base_url() != state.base_url {
                diffs.push(format!(
                    "the profile now serves at {}; the server was started for {}",
                    p.base_url(),
                    state.base_url
                ));
            }
            match report.pid {
                Some(pid) => diffs.extend(compare_process(pid, p, systemd)),
                None => diffs.push("cannot compare: the server's pid is unknown".to_owned()),
            }
        }
    }
    report.matches = diffs.is_empty();
    report.differences = diffs;
    report.state = Some(state);
    Ok(report)
}

/// The differences between a running process and a profile's command line and environment.
pub fn compare_process(pid: u32, profile: &Profile, systemd: bool) -> Vec<String> {
    let rendered = profile.command();
    // A launcher that did not `exec` the server has it as a child.
    let pid = std::iter::once(pid)
        .chain(procfs::children(pid))
        .find(|p| procfs::cmdline(*p).is_ok_and(|c| command_offset(&c, &rendered).is_some()))
        .unwrap_or(pid);
    let mut diffs = Vec::new();
    match procfs::cmdline(pid) {
        Err(e) => diffs.push(format!("cannot read the server's command line: {e}")),
        Ok(running) => {
            if command_offset(&running, &rendered).is_none() {
                diffs.extend(command_differences(&running, &rendered));
            }
        }
    }
    match procfs::environ(pid) {
        Err(e) => diffs.push(format!("cannot read the server's environment: {e}")),
        Ok(running) => diffs.extend(env_differences(&running, &profile.env, systemd)),
    }
    diffs
}

/// Where the rendered command starts in a running one: at 0, or after an interpreter the
/// kernel put in front of a script (`python3 /venv/bin/vllm serve ...`).
fn command_offset(running: &[String], rendered: &[String]) -> Option<usize> {
    (0..=2).find(|k| running.get(*k..) == Some(rendered))
}

fn command_differences(running: &[String], rendered: &[String]) -> Vec<String> {
    let show = |v: &[String]| crate::engine::runner_shell_words(&supervisor::masked_command(v));
    let start = (0..=2)
        .find(|k| running.get(*k) == rendered.first())
        .unwrap_or(0);
    let run = &running[start.min(running.len())..];
    if run.len() == rendered.len() {
        let (run_m, ren_m) = (
            supervisor::masked_command(run),
            supervisor::masked_command(rendered),
        );
        return run_m
            .iter()
            .zip(&ren_m)
            .enumerate()
            .filter(|(i, _)| run[*i] != rendered[*i])
            .map(|(i, (a, b))| {
                format!("command argument {i}: the server runs {a:?}, the profile renders {b:?}")
            })
            .collect();
    }
    vec![format!(
        "command line: the server runs `{}`; the profile renders `{}`",
        show(run),
        show(rendered)
    )]
}

fn env_differences(
    running: &[(String, String)],
    profile: &[(String, String)],
    systemd: bool,
) -> Vec<String> {
    let shown = |k: &str, v: &str| {
        if looks_secret(k) {
            "***".to_owned()
        } else {
            format!("{v:?}")
        }
    };
    let mut diffs = Vec::new();
    for (k, want) in profile {
        match running.iter().find(|(n, _)| n == k) {
            None => diffs.push(format!(
                "{k}: the profile sets {}; the server has none",
                shown(k, want)
            )),
            Some((_, have)) if have != want => diffs.push(format!(
                "{k}: the server has {}; the profile sets {}",
                shown(k, have),
                shown(k, want)
            )),
            Some(_) => {}
        }
    }
    for (k, have) in running {
        if profile.iter().any(|(n, _)| n == k) {
            continue;
        }
        if systemd && (SYSTEMD_VARS.contains(&k.as_str()) || k.starts_with("LC_")) {
            continue;
        }
        diffs.push(format!(
            "{k}: the server has {}; the profile does not set it",
            shown(k, have)
        ));
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_interpreter_in_front_is_no_difference() {
        let rendered = v(&["/v/bin/vllm", "serve", "m", "--port", "1"]);
        assert_eq!(command_offset(&rendered, &rendered), Some(0));
        let running = v(&[
            "/usr/bin/python3",
            "/v/bin/vllm",
            "serve",
            "m",
            "--port",
            "1",
        ]);
        assert_eq!(command_offset(&running, &rendered), Some(1));
        let other = v(&[
            "/usr/bin/python3",
            "/v/bin/vllm",
            "serve",
            "m",
            "--port",
            "2",
        ]);
        assert_eq!(command_offset(&other, &rendered), None);
        assert_eq!(
            command_differences(&other, &rendered),
            ["command argument 4: the server runs \"2\", the profile renders \"1\""]
        );
    }

    #[test]
    fn environments() {
        let profile = vec![
            ("A".to_owned(), "1".to_owned()),
            ("HF_TOKEN".to_owned(), "x".to_owned()),
        ];
        let running = vec![
            ("A".to_owned(), "2".to_owned()),
            ("HF_TOKEN".to_owned(), "y".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let d = env_differences(&running, &profile, false);
        assert_eq!(
            d,
            [
                "A: the server has \"2\"; the profile sets \"1\"",
                "HF_TOKEN: the server has ***; the profile sets ***",
                "PATH: the server has \"/bin\"; the profile does not set it",
            ]
        );
        assert_eq!(env_differences(&running, &profile, true).len(), 2);
    }
}
