//! `pinstack switch` and `pinstack status`.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use crate::engine::{human_duration, runner_shell_words};
use crate::exit::{ExitStatus, UsageError};
use crate::output::{Printer, Task};
use crate::recipe::Recipe;
use crate::run::{Globals, StatusOptions, Supervisor, SwitchOptions};
use crate::serve::state::{ServeDir, State};
use crate::serve::status::{self, Report};
use crate::serve::supervisor::{self, Kind, Stopped, Supervision};
use crate::serve::switch::{self as core, SwitchEvent, SwitchRequest};

/// The variable that shortens the stop grace period (seconds, or a duration such as `90s`).
const STOP_GRACE_VAR: &str = "PINSTACK_STOP_GRACE";
/// The reference unit's `TimeoutStopSec=180`.
const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(180);

fn stop_grace() -> Result<Duration> {
    let Ok(text) = std::env::var(STOP_GRACE_VAR) else {
        return Ok(DEFAULT_STOP_GRACE);
    };
    let parsed = match text.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => crate::recipe::parse_duration(&text),
    };
    parsed.map_err(|e| UsageError(format!("{STOP_GRACE_VAR}={text:?}: {e}")).into())
}

fn supervision(recipe: &Recipe, prefix: &Path) -> Result<Supervision> {
    Ok(Supervision {
        recipe: recipe.name.clone(),
        prefix: prefix.to_owned(),
        stop_grace: stop_grace()?,
        workdir: recipe.workspace.clone(),
        serve: ServeDir::new(&recipe.workspace),
    })
}

/// Stops the server pinstack owns in the recipe's workspace, if any (the demo's last step).
pub fn stop_owned_server(globals: &Globals, prefix: &Path) -> Result<()> {
    let recipe = super::recipe::load_recipe(globals)?;
    let sup = supervision(&recipe, prefix)?;
    if let Some(state) = sup.serve.load()? {
        supervisor::stop(&sup, &state)?;
        sup.serve.clear()?;
    }
    Ok(())
}

/// `switch PROFILE [--supervisor systemd|process] [--allow-experimental] [--timeout D]`
pub fn switch(p: &Printer, globals: &Globals, opts: &SwitchOptions) -> Result<ExitStatus> {
    let recipe = super::recipe::load_recipe(globals)?;
    let sup = supervision(&recipe, &opts.prefix)?;
    let req = SwitchRequest {
        profiles: &recipe.profiles,
        target: &opts.profile,
        kind: match opts.supervisor {
            Supervisor::Systemd => Kind::Systemd,
            Supervisor::Process => Kind::Process,
        },
        allow_experimental: opts.allow_experimental,
        timeout: opts.timeout,
    };
    let mut task: Option<Task> = None;
    let result = core::switch(&sup, &req, &mut |event| render_event(p, event, &mut task));
    drop(task);
    let state = result?;
    if p.json() {
        p.value(&state_json(&state))?;
    } else {
        p.out(&format!(
            "switched to {} ({}, {}); log: {}",
            state.profile,
            where_it_runs(&state),
            state.base_url,
            supervisor::log_place(&state)
        ))?;
    }
    Ok(ExitStatus::Success)
}

fn where_it_runs(state: &State) -> String {
    match (&state.unit, state.pid) {
        (Some(unit), Some(pid)) => format!("unit {unit}, pid {pid}"),
        (Some(unit), None) => format!("unit {unit}"),
        (None, Some(pid)) => format!("process group {pid}"),
        (None, None) => state.supervisor.clone(),
    }
}

fn render_event(p: &Printer, event: SwitchEvent<'_>, task: &mut Option<Task>) {
    match event {
        SwitchEvent::Stopping { state, grace } => {
            let how = match &state.unit {
                Some(unit) => format!("systemctl stop {unit}"),
                None => format!(
                    "SIGINT to process group {}, SIGKILL after {}",
                    state.pgid.map_or("?".to_owned(), |g| g.to_string()),
                    human_duration(grace.as_millis() as u64)
                ),
            };
            p.note(&format!("stopping {} ({how})", state.profile));
        }
        SwitchEvent::Stopped { profile, how } => p.note(&match how {
            Stopped::WasNotRunning => format!("{profile} was not running any more"),
            Stopped::Stopped => format!("stopped {profile}"),
            Stopped::Killed => {
                format!("{profile} ignored SIGINT for the whole grace period: killed")
            }
        }),
        SwitchEvent::Started { state } => {
            p.note(&format!(
                "started {} ({}); log: {}",
                state.profile,
                where_it_runs(state),
                supervisor::log_place(state)
            ));
        }
        SwitchEvent::Waiting { profile, within } => {
            *task = Some(p.task(&format!(
                "waiting for {profile} to be ready (up to {})",
                human_duration(within.as_millis() as u64)
            )));
        }
        SwitchEvent::Ready { state, took } => {
            *task = None;
            let (model, len, text) = state.ready.as_ref().map_or(("?", 0, ""), |r| {
                (r.model_id.as_str(), r.max_model_len, r.smoke_text.as_str())
            });
            p.note(&format!(
                "{} is ready after {}: {model} with max_model_len {len}; the smoke completion answered {:?}",
                state.profile,
                human_duration(took.as_millis() as u64),
                text.trim()
            ));
        }
        SwitchEvent::NotReady {
            profile,
            error,
            log,
            tail,
        } => {
            *task = None;
            let mut text = format!("{profile} is not ready: {error}\n");
            if tail.is_empty() {
                text.push_str(&format!("(nothing in its log, {log})"));
            } else {
                text.push_str(&format!("last {} lines of {log}:", tail.len()));
                for line in tail {
                    text.push_str(&format!("\n  | {line}"));
                }
            }
            p.note(&text);
        }
        SwitchEvent::LeftRunning { state } => p.note(&format!(
            "leaving {} running ({}) although it is not ready: it is better than no server",
            state.profile,
            where_it_runs(state)
        )),
        SwitchEvent::RollingBack { profile } => {
            p.note(&format!("rolling back to {profile}"));
        }
        SwitchEvent::Warning(text) => p.note(&format!("warning: {text}")),
    }
}

fn state_json(state: &State) -> Value {
    json!({
        "profile": state.profile,
        "supervisor": state.supervisor,
        "started_at": state.started_at,
        "pid": state.pid,
        "pgid": state.pgid,
        "unit": state.unit,
        "log": state.log,
        "base_url": state.base_url,
        "command": state.command,
        "env": state.env,
        "ready": state.ready,
    })
}

/// `status [--json] [--tail N]`
pub fn status(p: &Printer, globals: &Globals, opts: &StatusOptions) -> Result<ExitStatus> {
    let recipe = super::recipe::load_recipe(globals)?;
    let sup = supervision(&recipe, &opts.prefix)?;
    let report = status::status(&sup, &recipe.profiles)?;
    let tail = match (&report.state, opts.tail) {
        (Some(state), Some(n)) => Some(supervisor::log_tail(state, n)),
        _ => None,
    };
    if p.json() {
        let mut v = report_json(&report);
        if let Some(t) = &tail {
            v["tail"] = json!(t);
        }
        p.value(&v)?;
    } else {
        p.out(&report_text(&report, tail.as_deref()))?;
    }
    Ok(if report.ok() {
        ExitStatus::Success
    } else {
        ExitStatus::NotAsPinned
    })
}

fn report_json(r: &Report) -> Value {
    json!({
        "profile": r.profile,
        "supervisor": r.supervisor,
        "running": r.running,
        "healthy": r.healthy,
        "health": r.health,
        "matches": r.matches,
        "differences": r.differences,
        "uptime_s": r.uptime_s,
        "pid": r.pid,
        "unit": r.unit,
        "log": r.log,
        "base_url": r.base_url,
    })
}

fn report_text(r: &Report, tail: Option<&[String]>) -> String {
    let Some(profile) = &r.profile else {
        return r.presence.clone();
    };
    let mut text = format!(
        "profile   {profile} ({} supervisor)\n",
        r.supervisor.as_deref().unwrap_or("?")
    );
    if !r.running {
        text.push_str(&format!("server    {}\n", r.presence));
    } else {
        let mut what = Vec::new();
        if let Some(unit) = &r.unit {
            what.push(format!("unit {unit}"));
        }
        if let Some(pid) = r.pid {
            what.push(format!("pid {pid}"));
        }
        if let Some(up) = r.uptime_s {
            what.push(format!("up {}", human_duration(up * 1000)));
        }
        text.push_str(&format!("server    running ({})\n", what.join(", ")));
        text.push_str(&format!(
            "health    {}: {}\n",
            if r.healthy { "healthy" } else { "UNHEALTHY" },
            r.health
        ));
        if r.matches {
            text.push_str("matches   what runs matches the profile\n");
        } else {
            text.push_str("matches   NO: what runs DIFFERS from the profile:\n");
            for d in &r.differences {
                text.push_str(&format!("  - {d}\n"));
            }
        }
    }
    if let Some(state) = &r.state {
        text.push_str(&format!("log       {}\n", supervisor::log_place(state)));
        if let Some(lines) = tail {
            text.push_str(&format!("last {} lines:\n", lines.len()));
            for line in lines {
                text.push_str(&format!("  | {line}\n"));
            }
        }
        if !state.command.is_empty() && !r.running {
            text.push_str(&format!(
                "command   {}\n",
                runner_shell_words(&state.command)
            ));
        }
    }
    text.trim_end().to_owned()
}
