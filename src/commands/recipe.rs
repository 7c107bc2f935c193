//! `pinstack plan|up|why|logs|reset`: the recipe engine's commands.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::engine::{self, Outcome, Status, Store, UpEvent, UpOptions, UpResult};
use crate::exit::{ExitStatus, UsageError};
use crate::output::{Printer, StepProgress};
use crate::pins::Pins;
use crate::recipe::{LoadOptions, Recipe};
use crate::run::Globals;
use crate::source::Workspace;

/// A loaded recipe with everything its commands need.
struct Loaded {
    recipe: Recipe,
    pins: Option<Pins>,
    ws: Workspace,
    store: Store,
}

/// Loads the recipe `--recipe` names, with the caller's environment for `${env:...}`.
pub fn load_recipe(globals: &Globals) -> Result<Recipe> {
    let opts = LoadOptions {
        workspace: globals.workspace.clone(),
        caller_env: std::env::vars().collect::<HashMap<_, _>>(),
    };
    Ok(Recipe::load(&globals.recipe, &opts)?)
}

fn load(globals: &Globals) -> Result<Loaded> {
    let recipe = load_recipe(globals)?;
    let pins_path = recipe
        .pins
        .clone()
        .or_else(|| globals.pins.exists().then(|| globals.pins.clone()));
    let pins = pins_path.map(|p| Pins::load(&p)).transpose()?;
    let ws = Workspace {
        root: recipe.workspace.clone(),
        cache: globals.cache.clone(),
    };
    let store = Store::new(&recipe.workspace, &recipe.name);
    Ok(Loaded {
        recipe,
        pins,
        ws,
        store,
    })
}

/// `plan [RECIPE]`
pub fn plan(p: &Printer, globals: &Globals) -> Result<ExitStatus> {
    let l = load(globals)?;
    let plans = engine::plan(&l.recipe, l.pins.as_ref(), &l.store);
    if p.json() {
        let steps: Vec<_> = plans
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "title": s.title,
                    "status": s.status.as_str(),
                    "reason": s.reason,
                    "changes": s.changes,
                    "fingerprint": s.fingerprint,
                    "waits_for_reboot": s.waits_for_reboot,
                    "last_duration_ms": s.last_duration_ms,
                })
            })
            .collect();
        p.value(&json!({
            "recipe": l.recipe.name,
            "workspace": l.recipe.workspace.display().to_string(),
            "steps": steps,
        }))?;
        return Ok(ExitStatus::Success);
    }
    let width = plans.iter().map(|s| s.id.len()).max().unwrap_or(0);
    let mut text = format!(
        "recipe {} ({})\nworkspace {}\n",
        l.recipe.name,
        l.recipe.path.display(),
        l.recipe.workspace.display()
    );
    for s in &plans {
        text.push_str(&format!(
            "  {:<8} {:<width$}  {}\n",
            s.status.as_str(),
            s.id,
            s.reason
        ));
    }
    let count = |st: Status| plans.iter().filter(|s| s.status == st).count();
    text.push_str(&format!(
        "{} steps: {} done, {} pending, {} stale, {} failed",
        plans.len(),
        count(Status::Done),
        count(Status::Pending),
        count(Status::Stale),
        count(Status::Failed)
    ));
    p.out(&text)?;
    Ok(ExitStatus::Success)
}

/// `up [RECIPE] [--from ID] [--only ID] [--dry-run]`
pub fn up(p: &Printer, globals: &Globals, opts: &UpOptions) -> Result<ExitStatus> {
    let l = load(globals)?;
    for id in opts.from.iter().chain(opts.only.iter()) {
        if l.recipe.step(id).is_none() {
            bail!(UsageError(format!(
                "unknown step {id:?}; `pinstack plan` lists the steps"
            )));
        }
    }
    let interrupt = engine::Interrupt::install().context("installing the Ctrl-C handler")?;
    let total = l.recipe.steps.len();
    let mut progress: Option<StepProgress> = None;
    let mut dry_run_text = String::new();
    let result = engine::up(
        &l.recipe,
        l.pins.as_ref(),
        &l.ws,
        &l.store,
        opts,
        &interrupt,
        &mut |event| match event {
            UpEvent::Skip { plan } => {
                p.note(&format!(
                    "    done     {}: nothing changed, skipped",
                    plan.id
                ));
            }
            UpEvent::Start {
                index, step, plan, ..
            } => {
                let estimate = plan
                    .last_duration_ms
                    .map(|d| format!(" (last run took {})", engine::human_duration(d)))
                    .unwrap_or_default();
                let why = if plan.reason.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", plan.reason)
                };
                progress = Some(p.step(&format!(
                    "[{}/{total}] {}: {}{estimate}{why}",
                    index + 1,
                    step.id,
                    step.title
                )));
            }
            UpEvent::Line { line } => {
                if let Some(pr) = progress.as_mut() {
                    pr.line(line);
                }
            }
            UpEvent::Finish {
                step,
                outcome,
                elapsed,
            } => {
                let took = engine::human_duration(elapsed.as_millis() as u64);
                let summary = match outcome {
                    Outcome::Success => format!("ok in {took}"),
                    Outcome::Failed(d) => format!("FAILED after {took}: {d}"),
                    Outcome::TimedOut => format!("TIMED OUT after {took}"),
                    Outcome::Interrupted => format!("INTERRUPTED after {took}"),
                };
                if let Some(pr) = progress.take() {
                    pr.finish(&summary);
                }
                if *outcome != Outcome::Success {
                    let log = l.store.log_path(&step.id);
                    p.note(&format!("    last lines of {}:", log.display()));
                    for line in tail(&log, 20) {
                        p.note(&format!("    | {line}"));
                    }
                }
            }
            UpEvent::WouldRun {
                step,
                plan,
                argv,
                sudo,
            } => {
                dry_run_text.push_str(&format!(
                    "would run {}: {} [{}]\n  folder: {}\n  command: {}{}\n",
                    step.id,
                    step.title,
                    plan.reason,
                    step.cwd.display(),
                    crate::engine::runner_shell_words(&argv),
                    if sudo { "  (through sudo)" } else { "" }
                ));
                for e in &step.env {
                    let value = if e.secret { "***" } else { e.value.as_str() };
                    dry_run_text.push_str(&format!("  env {}={}\n", e.name, value));
                }
            }
            UpEvent::CleanedUp { step, ok } => {
                p.note(&format!(
                    "    ran the cleanup of step {}, left behind by a killed run: {}",
                    step.id,
                    if ok { "ok" } else { "FAILED (see its log)" }
                ));
            }
            UpEvent::StoppedLeftover { step, group } => {
                p.note(&format!(
                    "    stopped process group {group} left running by an interrupted run of step {}",
                    step.id
                ));
            }
        },
    )?;
    match result {
        UpResult::DryRun => {
            if dry_run_text.is_empty() {
                dry_run_text.push_str("nothing to run: every step is done\n");
            }
            p.out(dry_run_text.trim_end())?;
            Ok(ExitStatus::Success)
        }
        UpResult::AllDone { ran } => {
            p.out(&format!(
                "all {total} steps done ({} ran, {} were already done)",
                ran.len(),
                total - ran.len()
            ))?;
            Ok(ExitStatus::Success)
        }
        UpResult::WaitsForReboot { step, .. } => {
            p.out(&format!(
                "step {step} needs the machine to reboot before the next steps; reboot, then run \
                 `pinstack up` again"
            ))?;
            Ok(ExitStatus::Success)
        }
        UpResult::Failed { step, detail } => {
            p.out(&format!(
                "step {step} failed ({detail}); fix it and run `pinstack up` again: the steps \
                 before it stay done (full log: `pinstack logs {step}`)"
            ))?;
            Ok(ExitStatus::Failed)
        }
        UpResult::Interrupted {
            step: Some(step),
            cleanup_stopped: true,
        } => {
            p.out(&format!(
                "interrupted again: the cleanup of step {step} was stopped; the next \
                 `pinstack up` runs that cleanup first, then step {step} again"
            ))?;
            Ok(ExitStatus::Interrupted)
        }
        UpResult::Interrupted { step, .. } => {
            let which = step
                .map(|s| format!(" during step {s}"))
                .unwrap_or_default();
            p.out(&format!(
                "interrupted{which}; `pinstack up` resumes from there (a second Ctrl-C stops \
                 a step's cleanup too)"
            ))?;
            Ok(ExitStatus::Interrupted)
        }
    }
}

/// `why ID`
pub fn why(p: &Printer, globals: &Globals, id: &str) -> Result<ExitStatus> {
    let l = load(globals)?;
    if l.recipe.step(id).is_none() {
        bail!(UsageError(format!(
            "unknown step {id:?} in {}; `pinstack plan` lists the steps",
            l.recipe.path.display()
        )));
    }
    let plans = engine::plan(&l.recipe, l.pins.as_ref(), &l.store);
    let s = plans
        .iter()
        .find(|s| s.id == id)
        .expect("every step has a plan");
    let will_run = s.status != Status::Done;
    let verdict = if let Some(r) = &s.waits_for_reboot
        && will_run
    {
        format!("it will run after the machine reboots (step {r} asked for a reboot)")
    } else if will_run {
        "it will run on the next `pinstack up`".to_owned()
    } else {
        "it will not run: nothing it depends on changed since its last successful run".to_owned()
    };
    if p.json() {
        p.value(&json!({
            "id": s.id,
            "status": s.status.as_str(),
            "reason": s.reason,
            "changes": s.changes,
            "will_run": will_run,
        }))?;
        return Ok(ExitStatus::Success);
    }
    let mut text = format!("{} ({}): {}\n", s.id, s.title, s.status.as_str());
    if s.changes.is_empty() || s.status == Status::Failed {
        text.push_str(&format!("  {}\n", s.reason));
    }
    if !s.changes.is_empty() {
        text.push_str("  since its last successful run:\n");
        for c in &s.changes {
            text.push_str(&format!("    - {c}\n"));
        }
    }
    text.push_str(&format!("  {verdict}"));
    p.out(&text)?;
    Ok(ExitStatus::Success)
}

/// `logs ID [--follow]`
pub fn logs(p: &Printer, globals: &Globals, id: &str, follow: bool) -> Result<ExitStatus> {
    let l = load(globals)?;
    if l.recipe.step(id).is_none() {
        bail!(UsageError(format!("unknown step {id:?}")));
    }
    let path = l.store.log_path(id);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => bail!(UsageError(format!(
            "step {id} has no log yet ({} does not exist)",
            path.display()
        ))),
    };
    let mut pos = 0u64;
    loop {
        let mut chunk = Vec::new();
        file.seek(SeekFrom::Start(pos))?;
        file.read_to_end(&mut chunk)?;
        pos += chunk.len() as u64;
        if !chunk.is_empty() {
            p.bytes(&chunk)?;
        }
        let running = l.store.attempt(id).is_some_and(|a| {
            a.status == engine::AttemptStatus::Running && engine::process_alive(a.pid)
        });
        if !follow || !running {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(ExitStatus::Success)
}

/// `reset ID... | --all`
pub fn reset(p: &Printer, globals: &Globals, ids: &[String], all: bool) -> Result<ExitStatus> {
    let l = load(globals)?;
    let ids: Vec<String> = if all {
        l.recipe.steps.iter().map(|s| s.id.clone()).collect()
    } else {
        for id in ids {
            if l.recipe.step(id).is_none() {
                bail!(UsageError(format!(
                    "unknown step {id:?}; nothing was reset"
                )));
            }
        }
        ids.to_vec()
    };
    // Not while an `up` runs: a checkpoint it writes after the reset would undo it. (A
    // workspace with no state has nothing to reset, and is not made.)
    let _lock = if l.ws.root.join(".pinstack").is_dir() {
        Some(crate::lock::acquire(&l.ws.root, "pinstack reset")?)
    } else {
        None
    };
    for id in &ids {
        let had = l.store.reset(id)?;
        p.out(&format!(
            "{id}: {}",
            if had {
                "forgotten: it runs again on the next `pinstack up`"
            } else {
                "had no checkpoint"
            }
        ))?;
    }
    Ok(ExitStatus::Success)
}

fn tail(path: &std::path::Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("# ")).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
