//! `switch`: validate a profile and its flags, stop the server pinstack owns, start the profile,
//! wait until it is ready; on failure show the server's log, stop it, and bring the previous
//! profile back so a failed switch never leaves the host without the server it had.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::ready::{self, Expect, ReadyError};
use super::state::{State, StateError};
use super::supervisor::{self, Kind, Presence, Stopped, Supervision, SupervisorError};
use super::{Profile, ProfileStatus};
use crate::exit::ExitStatus;

/// How many lines of a failed server's log are shown.
pub const LOG_LINES: usize = 40;

/// What to switch to.
#[derive(Debug, Clone)]
pub struct SwitchRequest<'a> {
    pub profiles: &'a [Profile],
    pub target: &'a str,
    pub kind: Kind,
    pub allow_experimental: bool,
    /// The readiness deadline; the profile's `ready_timeout` when `None`.
    pub timeout: Option<Duration>,
}

/// What happens during a switch, for the command layer to show.
#[derive(Debug)]
pub enum SwitchEvent<'a> {
    /// The owned server is being stopped.
    Stopping {
        state: &'a State,
        grace: Duration,
    },
    Stopped {
        profile: &'a str,
        how: Stopped,
    },
    /// A server was started; it is not ready yet.
    Started {
        state: &'a State,
    },
    Waiting {
        profile: &'a str,
        within: Duration,
    },
    Ready {
        state: &'a State,
        took: Duration,
    },
    /// A server did not become ready; the last lines of its log.
    NotReady {
        profile: &'a str,
        error: &'a ReadyError,
        log: String,
        tail: &'a [String],
    },
    /// A server that did not become ready is left running (a rollback: better than nothing).
    LeftRunning {
        state: &'a State,
    },
    RollingBack {
        profile: &'a str,
    },
    Warning(String),
}

/// Why a profile's server is not serving.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Start(#[from] SupervisorError),
    #[error(transparent)]
    NotReady(#[from] ReadyError),
    #[error("the profile {0:?} is no longer in the recipe")]
    Gone(String),
}

impl Failure {
    fn status(&self) -> ExitStatus {
        match self {
            Failure::NotReady(_) => ExitStatus::NotAsPinned,
            Failure::Start(_) | Failure::Gone(_) => ExitStatus::Failed,
        }
    }
}

/// Why a switch did not happen, or did not stick.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("unknown profile {name:?}; the recipe has: {}", known.join(", "))]
    UnknownProfile { name: String, known: Vec<String> },
    #[error("profile {name} is experimental; pass --allow-experimental to switch to it")]
    Experimental { name: String },
    #[error(
        "profile {name}: {vllm} serve --help does not know {}; nothing was stopped",
        flags.join(", "), vllm = vllm.display()
    )]
    UnknownFlags {
        name: String,
        vllm: PathBuf,
        flags: Vec<String>,
    },
    #[error("profile {name}: cannot check its flags: {detail}; nothing was stopped")]
    FlagCheck { name: String, detail: String },
    #[error(
        "profile {name}: the installed unit would not run what the recipe says: {detail}; \
         nothing was stopped: run `pinstack install-service --prefix {}` first",
        prefix.display()
    )]
    StaleInstall {
        name: String,
        detail: String,
        prefix: PathBuf,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("cannot stop {profile}, the server pinstack owns: {source}; nothing was started")]
    Stop {
        profile: String,
        source: SupervisorError,
    },
    #[error("switch to {profile} failed: {failure}; no server was running before, so none is now")]
    NothingServing {
        profile: String,
        failure: Box<Failure>,
    },
    #[error(
        "switch to {profile} failed: {failure}; rolled back to {previous}, which is healthy again"
    )]
    RolledBack {
        profile: String,
        failure: Box<Failure>,
        previous: String,
    },
    #[error(
        "switch to {profile} failed: {failure}; its server could not be stopped and is still \
         recorded, so {} was not started beside it; stop it (`pinstack status` names it), then \
         switch again",
        previous.as_deref().unwrap_or("no earlier profile")
    )]
    StillRunning {
        profile: String,
        failure: Box<Failure>,
        previous: Option<String>,
    },
    #[error(
        "{host}:{port} already answers, and no server pinstack recorded is there (a unit started \
         by hand, say): {profile} would start beside it on the same cards; nothing was stopped: \
         stop what listens there, then switch again"
    )]
    PortTaken {
        profile: String,
        host: String,
        port: u16,
    },
    #[error(
        "{host}:{port} still answers after the recorded server {} was stopped: another server \
         holds the port; {profile} was not started: stop what listens there, then switch again",
        stopped.as_deref().map_or("(not running)".to_owned(), |s| format!("({s})"))
    )]
    PortStillTaken {
        profile: String,
        host: String,
        port: u16,
        stopped: Option<String>,
    },
    #[error(
        "{url} is shared: {others} listens there too, beside (or instead of) the server \
         pinstack recorded; {profile} would share it as well; nothing was stopped: stop the \
         other, then switch again"
    )]
    PortShared {
        profile: String,
        url: String,
        others: String,
    },
    #[error(
        "switch to {profile} failed: {failure}; AND THE ROLLBACK FAILED: {previous} is not \
         healthy again: {rollback}; see `pinstack status`"
    )]
    RollbackFailed {
        profile: String,
        failure: Box<Failure>,
        previous: String,
        rollback: Box<Failure>,
    },
}

impl SwitchError {
    /// Where this error sits in the exit-code table.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            SwitchError::UnknownProfile { .. }
            | SwitchError::Experimental { .. }
            | SwitchError::UnknownFlags { .. }
            | SwitchError::StaleInstall { .. } => ExitStatus::Invalid,
            SwitchError::State(e) => state_status(e),
            SwitchError::Supervisor(e) => supervisor_status(e),
            SwitchError::FlagCheck { .. }
            | SwitchError::Stop { .. }
            | SwitchError::StillRunning { .. }
            | SwitchError::PortTaken { .. }
            | SwitchError::PortStillTaken { .. }
            | SwitchError::PortShared { .. }
            | SwitchError::RollbackFailed { .. } => ExitStatus::Failed,
            SwitchError::NothingServing { failure, .. }
            | SwitchError::RolledBack { failure, .. } => failure.status(),
        }
    }
}

/// Where a state-folder error sits in the exit-code table.
pub fn state_status(e: &StateError) -> ExitStatus {
    match e {
        StateError::Corrupt { .. } => ExitStatus::Invalid,
        StateError::Io { .. } | StateError::Locked(_) => ExitStatus::Failed,
    }
}

/// Where a supervisor error sits in the exit-code table.
pub fn supervisor_status(e: &SupervisorError) -> ExitStatus {
    match e {
        SupervisorError::NotInstalled { .. }
        | SupervisorError::UnknownKind(_)
        | SupervisorError::NotOurUnit(_) => ExitStatus::Invalid,
        SupervisorError::State(s) => state_status(s),
        _ => ExitStatus::Failed,
    }
}

/// Switches the host to a profile; returns the recorded state of its ready server.
pub fn switch(
    sup: &Supervision,
    req: &SwitchRequest<'_>,
    on: &mut dyn FnMut(SwitchEvent<'_>),
) -> Result<State, SwitchError> {
    let profile = find(req.profiles, req.target)?;
    if profile.status == ProfileStatus::Experimental && !req.allow_experimental {
        return Err(SwitchError::Experimental {
            name: profile.name.clone(),
        });
    }
    if req.kind == Kind::Systemd {
        supervisor::check_installed(sup)?;
        // The unit runs the installed files, not the recipe: a profile added or changed since
        // install-service would be checked here and run as it was installed.
        let layout = super::install::Layout::new(&sup.prefix, &sup.recipe).map_err(|e| {
            SwitchError::StaleInstall {
                name: profile.name.clone(),
                detail: e.to_string(),
                prefix: sup.prefix.clone(),
            }
        })?;
        let unread = super::install::installed_matches(&layout, profile).map_err(|detail| {
            SwitchError::StaleInstall {
                name: profile.name.clone(),
                detail,
                prefix: sup.prefix.clone(),
            }
        })?;
        for path in unread {
            on(SwitchEvent::Warning(format!(
                "{} is closed to this user: not compared with the recipe (the unit runs it as \
                 installed)",
                path.display()
            )));
        }
    }
    let unknown = super::unknown_flags(profile).map_err(|detail| SwitchError::FlagCheck {
        name: profile.name.clone(),
        detail,
    })?;
    if !unknown.is_empty() {
        return Err(SwitchError::UnknownFlags {
            name: profile.name.clone(),
            vllm: profile.vllm.clone(),
            flags: unknown,
        });
    }
    let _lock = sup.serve.lock(&format!("switch {}", profile.name))?;

    let recorded = sup.serve.load()?;
    // A server on the profile's address that no state names (a unit enabled by hand, one from
    // before a lost state) would answer the readiness checks for the new one, which would
    // then fail to bind and retry beside it on the same cards.
    // By port: the recorded server on 127.0.0.1 answers a profile that now says 0.0.0.0 too.
    let ours_there = recorded.as_ref().is_some_and(|old| {
        old.base_url
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            == Some(profile.port)
    });
    if !ours_there && listening(&profile.host, profile.port) {
        return Err(SwitchError::PortTaken {
            profile: profile.name.clone(),
            host: profile.host.clone(),
            port: profile.port,
        });
    }

    // Our recorded server on that port, and another beside it (vLLM binds with SO_REUSEPORT):
    // refused while ours still serves, not after it was stopped.
    // (Only a server whose process is known can be told from another: a unit's main pid is
    // asked of systemd.)
    let recorded_pid = recorded
        .as_ref()
        .and_then(|old| match supervisor::presence(old) {
            Ok(Presence::Running(pid)) => pid.or(old.pid),
            _ => old.pid,
        });
    if let Some(old) = recorded.as_ref().filter(|_| ours_there)
        && (recorded_pid.is_some() || old.pgid.is_some())
        && let Some(pids) = supervisor::foreign_listeners(old, recorded_pid, &old.base_url)
    {
        return Err(SwitchError::PortShared {
            profile: profile.name.clone(),
            url: old.base_url.clone(),
            others: supervisor::describe_listeners(&pids),
        });
    }

    let mut previous = None;
    if let Some(old) = recorded {
        // A rollback starts the previous profile as it ran when the record allows (the process
        // supervisor, every masked secret still in the recipe), else as the recipe says now:
        // said before anything stops, when that is not what runs.
        if let Some(prev) = req.profiles.iter().find(|p| p.name == old.profile)
            && !runs_as_rendered(&old, prev)
            && rollback_target(&old, prev).is_none()
        {
            on(SwitchEvent::Warning(format!(
                "profile {} changed in the recipe since its server started: if this switch \
                 fails, the rollback starts it as the recipe says now",
                old.profile
            )));
        }
        on(SwitchEvent::Stopping {
            state: &old,
            grace: sup.stop_grace,
        });
        let how = supervisor::stop(sup, &old).map_err(|source| SwitchError::Stop {
            profile: old.profile.clone(),
            source,
        })?;
        on(SwitchEvent::Stopped {
            profile: &old.profile,
            how,
        });
        sup.serve.clear()?;
        // Only a server that was running is brought back.
        if how != Stopped::WasNotRunning {
            previous = Some(old);
        }
        // The recorded server is gone; something still answering there is another's (the
        // record was stale, or a server was started by hand beside it).
        if ours_there && listening(&profile.host, profile.port) {
            return Err(SwitchError::PortStillTaken {
                profile: profile.name.clone(),
                host: profile.host.clone(),
                port: profile.port,
                stopped: previous.map(|old| old.profile),
            });
        }
    }

    let within = req.timeout.unwrap_or(profile.ready_timeout);
    let failure = match bring_up(sup, req.kind, profile, within, false, on) {
        Ok(state) => return Ok(state),
        Err(f) => f,
    };
    // The failed server is still recorded when it could not be stopped (or its state could not
    // be written once ready): it may run, so nothing is started beside it.
    if sup.serve.load().ok().flatten().is_some() {
        return Err(SwitchError::StillRunning {
            profile: profile.name.clone(),
            failure,
            previous: previous.map(|old| old.profile),
        });
    }
    let Some(old) = previous else {
        return Err(SwitchError::NothingServing {
            profile: profile.name.clone(),
            failure,
        });
    };
    on(SwitchEvent::RollingBack {
        profile: &old.profile,
    });
    let rollback = match req.profiles.iter().find(|p| p.name == old.profile) {
        None => Err(Box::new(Failure::Gone(old.profile.clone()))),
        Some(prev) => {
            let kind = Kind::parse(&old.supervisor).unwrap_or(req.kind);
            let ran = rollback_target(&old, prev);
            bring_up(
                sup,
                kind,
                ran.as_ref().unwrap_or(prev),
                prev.ready_timeout,
                true,
                on,
            )
        }
    };
    match rollback {
        Ok(_) => Err(SwitchError::RolledBack {
            profile: profile.name.clone(),
            failure,
            previous: old.profile,
        }),
        Err(rollback) => Err(SwitchError::RollbackFailed {
            profile: profile.name.clone(),
            failure,
            previous: old.profile,
            rollback,
        }),
    }
}

/// The previous profile as its server ran, for a rollback: the recorded command line and
/// environment, with the secrets the record masks taken from the recipe's rendering now (by
/// name). The process supervisor starts exactly that; a systemd unit runs its installed files,
/// which are what ran unless installed again since, and the readiness checks expect what the
/// record says. `None` when the record is not a `vllm serve` command line, or when a masked
/// value has no counterpart in the rendering.
fn rollback_target(state: &State, now: &Profile) -> Option<Profile> {
    let argv = &state.command;
    if argv.len() < 3 || argv[1] != "serve" {
        return None;
    }
    let value_of = |name: &str| super::flag_value(&now.flags, name);
    let mut flags: Vec<String> = Vec::new();
    for arg in &argv[3..] {
        let arg = if arg == "***" {
            value_of(flags.last()?)?
        } else if let Some(name) = arg.strip_suffix("=***") {
            format!("{name}={}", value_of(name)?)
        } else {
            arg.clone()
        };
        flags.push(arg);
    }
    let mut env = Vec::new();
    for e in &state.env {
        let value = if e.value == "***" {
            now.env.iter().find(|(k, _)| *k == e.name)?.1.clone()
        } else {
            e.value.clone()
        };
        env.push((e.name.clone(), value));
    }
    let flag = |name: &str| super::flag_value(&flags, name);
    let mut ran = now.clone();
    ran.vllm = PathBuf::from(&argv[0]);
    ran.model = argv[2].clone();
    ran.model_id = flag("--served-model-name").unwrap_or_else(|| argv[2].clone());
    ran.host = flag("--host")?;
    ran.port = flag("--port")?.parse().ok()?;
    ran.max_model_len = flag("--max-model-len")?.parse().ok()?;
    ran.flags = flags;
    ran.env = env;
    Some(ran)
}

/// Whether a recorded server's command line and environment are the profile's rendering now
/// (both as recorded: secrets masked).
fn runs_as_rendered(state: &State, profile: &Profile) -> bool {
    let env = State::masked_env(&profile.env);
    let command = supervisor::masked_command(&profile.command());
    // A value the record masked matches any (an older pinstack masked more than it does now).
    let same = |recorded: &str, now: &str| {
        recorded == now
            || recorded == "***"
            || recorded
                .strip_suffix("=***")
                .is_some_and(|flag| now.starts_with(&format!("{flag}=")))
    };
    state.command.len() == command.len()
        && state.command.iter().zip(&command).all(|(r, n)| same(r, n))
        && state.env.len() == env.len()
        && state
            .env
            .iter()
            .zip(&env)
            .all(|(a, b)| a.name == b.name && a.value == b.value)
}

/// Whether something accepts connections on `host:port` (within a second).
fn listening(host: &str, port: u16) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

fn find<'a>(profiles: &'a [Profile], name: &str) -> Result<&'a Profile, SwitchError> {
    profiles
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| SwitchError::UnknownProfile {
            name: name.to_owned(),
            known: profiles.iter().map(|p| p.name.clone()).collect(),
        })
}

/// Starts a profile and waits for it. A server that does not become ready is stopped, unless
/// `keep_unready` (a rollback) and it still runs: a slow server beats none.
fn bring_up(
    sup: &Supervision,
    kind: Kind,
    profile: &Profile,
    within: Duration,
    keep_unready: bool,
    on: &mut dyn FnMut(SwitchEvent<'_>),
) -> Result<State, Box<Failure>> {
    let mut running = supervisor::start(sup, kind, profile).map_err(|e| Box::new(e.into()))?;
    crate::fault::point("switch-spawned", 1);
    // Recorded before waiting: a pinstack killed while it waits leaves a server the next
    // switch can still find and stop.
    sup.serve
        .save(&running.state)
        .map_err(|e| Box::new(SupervisorError::from(e).into()))?;
    // Only now may the server run: the state that names it is on disk.
    if let Err(e) = running.release() {
        let _ = running.stop(sup);
        let _ = sup.serve.clear();
        return Err(Box::new(
            SupervisorError::Spawn {
                program: profile.vllm.clone(),
                source: e,
            }
            .into(),
        ));
    }
    on(SwitchEvent::Started {
        state: &running.state,
    });
    on(SwitchEvent::Waiting {
        profile: &profile.name,
        within,
    });
    let started = Instant::now();
    let result = ready::wait_ready(&Expect::of(profile), within, &mut || running.check()).and_then(
        |ready| {
            running.refresh_pid();
            // The answers must come from this server, not from another process on the port.
            let url = running.state.base_url.clone();
            match supervisor::foreign_listeners(&running.state, running.state.pid, &url) {
                Some(pids) => Err(ReadyError::Foreign {
                    url: running.state.base_url.clone(),
                    pids,
                }),
                None => Ok(ready),
            }
        },
    );
    match result {
        Ok(ready) => {
            running.state.ready = Some(ready);
            sup.serve
                .save(&running.state)
                .map_err(|e| Box::new(SupervisorError::from(e).into()))?;
            on(SwitchEvent::Ready {
                state: &running.state,
                took: started.elapsed(),
            });
            Ok(running.state)
        }
        Err(error) => {
            let tail = supervisor::log_tail(&running.state, LOG_LINES);
            on(SwitchEvent::NotReady {
                profile: &profile.name,
                error: &error,
                log: supervisor::log_place(&running.state),
                tail: &tail,
            });
            let died = matches!(error, ReadyError::Died { .. });
            if keep_unready && !died {
                on(SwitchEvent::LeftRunning {
                    state: &running.state,
                });
                return Err(Box::new(error.into()));
            }
            let state = running.state.clone();
            on(SwitchEvent::Stopping {
                state: &state,
                grace: sup.stop_grace,
            });
            match running.stop(sup) {
                Ok(how) => on(SwitchEvent::Stopped {
                    profile: &profile.name,
                    how,
                }),
                Err(e) => {
                    on(SwitchEvent::Warning(format!(
                        "cannot stop the {} server that failed: {e}",
                        profile.name
                    )));
                    // Still recorded, so the next switch tries again.
                    let _ = sup.serve.save(&state);
                    return Err(Box::new(error.into()));
                }
            }
            if let Err(e) = sup.serve.clear() {
                on(SwitchEvent::Warning(e.to_string()));
            }
            Err(Box::new(error.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::{ProfileStatus, Smoke};

    fn profile(batched: &str) -> Profile {
        Profile {
            name: "c1".to_owned(),
            status: ProfileStatus::Production,
            description: String::new(),
            source_state: None,
            vllm: PathBuf::from("/v/bin/vllm"),
            model: "/m".to_owned(),
            model_id: "/m".to_owned(),
            host: "127.0.0.1".to_owned(),
            port: 18080,
            max_model_len: 32768,
            flags: vec!["--max-num-batched-tokens".to_owned(), batched.to_owned()],
            env: vec![("HF_TOKEN".to_owned(), "t".to_owned())],
            smoke: Smoke {
                prompt: String::new(),
                expect: String::new(),
                max_tokens: 1,
            },
            ready_timeout: Duration::from_secs(1),
        }
    }

    fn recorded(command: &[&str]) -> State {
        State {
            profile: "c1".to_owned(),
            supervisor: "process".to_owned(),
            started_at: 0,
            pid: None,
            pgid: None,
            pid_start: None,
            boot_id: None,
            unit: None,
            log: None,
            base_url: "http://127.0.0.1:18080".to_owned(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: State::masked_env(&[("HF_TOKEN".to_owned(), "t".to_owned())]),
            ready: None,
        }
    }

    #[test]
    fn a_recorded_server_runs_as_rendered_when_only_masking_differs() {
        let argv = ["/v/bin/vllm", "serve", "/m", "--max-num-batched-tokens"];
        // As this pinstack records it, and as an older one did (it masked the count).
        let now = recorded(&[&argv[..], &["512"]].concat());
        let older = recorded(&[&argv[..], &["***"]].concat());
        assert!(runs_as_rendered(&now, &profile("512")));
        assert!(runs_as_rendered(&older, &profile("512")));
        // A real change is one.
        assert!(!runs_as_rendered(&now, &profile("1024")));
        let shorter = recorded(&argv);
        assert!(!runs_as_rendered(&shorter, &profile("512")));
    }
}
