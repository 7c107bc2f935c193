//! `up`: runs what is not done, in order, one step at a time; a step is recorded done only
//! after it succeeded, atomically.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::runner::{self, Interrupt, Outcome};
use super::store::{self, Attempt, AttemptStatus, Checkpoint, Store, StoreError};
use super::{Status, StepPlan, evaluate, fingerprint};
use crate::pins::Pins;
use crate::recipe::{Action, Recipe, Step};
use crate::source::{self, ApplyOptions, Workspace};

/// Choices for `up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Run this step and every step after it, done or not.
    pub from: Option<String>,
    /// Run only this step, done or not (the steps it needs must be done).
    pub only: Option<String>,
    /// Print what would run, with its environment; run nothing, write nothing.
    pub dry_run: bool,
}

/// What happened, as it happens.
pub enum UpEvent<'a> {
    /// A step that is done and is skipped.
    Skip { plan: &'a StepPlan },
    /// A step starts.
    Start {
        index: usize,
        total: usize,
        step: &'a Step,
        plan: &'a StepPlan,
    },
    /// A line of its output (secrets already redacted).
    Line { line: &'a str },
    /// A step ended.
    Finish {
        step: &'a Step,
        outcome: &'a Outcome,
        elapsed: Duration,
    },
    /// `--dry-run`: what would run.
    WouldRun {
        step: &'a Step,
        plan: &'a StepPlan,
        argv: Vec<String>,
        sudo: bool,
    },
    /// A still-running group of an earlier, killed pinstack is stopped first.
    StoppedLeftover { step: &'a Step, group: u32 },
    /// The cleanup of a step that a killed pinstack left behind ran.
    CleanedUp { step: &'a Step, ok: bool },
}

/// How `up` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpResult {
    /// Every step is done.
    AllDone { ran: Vec<String> },
    /// `--dry-run` finished.
    DryRun,
    /// A step failed or timed out.
    Failed { step: String, detail: String },
    /// Ctrl-C or SIGTERM. `cleanup_stopped`: a second one stopped the cleanup of `step`,
    /// which the next `up` runs first.
    Interrupted {
        step: Option<String>,
        cleanup_stopped: bool,
    },
    /// A step needs the machine rebooted before the steps after it.
    WaitsForReboot { step: String, ran: Vec<String> },
}

/// Why `up` could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown step {0:?}; `pinstack plan` lists the steps")]
    UnknownStep(String),
    #[error(
        "step {step} needs step {need}, which is not done; run `pinstack up` without --only/--from first"
    )]
    NeedsNotDone { step: String, need: String },
    #[error("{0}")]
    Privilege(String),
    #[error("{}: {source}", path.display())]
    Log {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Runs the recipe.
pub fn up(
    recipe: &Recipe,
    pins: Option<&Pins>,
    ws: &Workspace,
    store: &Store,
    opts: &UpOptions,
    interrupt: &Interrupt,
    events: &mut dyn FnMut(UpEvent<'_>),
) -> Result<UpResult, UpError> {
    for id in opts.from.iter().chain(opts.only.iter()) {
        if recipe.step(id).is_none() {
            return Err(UpError::UnknownStep(id.clone()));
        }
    }
    let _lock = if opts.dry_run {
        None
    } else {
        Some(crate::lock::acquire(&ws.root, "pinstack up").map_err(StoreError::from)?)
    };
    let salt = if opts.dry_run {
        store.salt_if_any()
    } else {
        store.salt()?
    };
    let boot = store::boot_id();
    if !opts.dry_run
        && let Some(step) = recover_crashed(recipe, store, interrupt, events)?
    {
        return Ok(UpResult::Interrupted {
            step: Some(step),
            cleanup_stopped: true,
        });
    }
    let forced: HashSet<&str> = match (&opts.only, &opts.from) {
        (Some(only), _) => [only.as_str()].into(),
        (None, Some(from)) => recipe
            .steps
            .iter()
            .skip_while(|s| s.id != *from)
            .map(|s| s.id.as_str())
            .collect(),
        (None, None) => HashSet::new(),
    };
    let root = rustix::process::geteuid().is_root();
    // Ask for sudo once, before the first step, never in the middle of a long run: the plan
    // already knows which steps will run (a step after one that runs is stale in it).
    let _sudo = if !root && !opts.dry_run {
        let initial = super::plan(recipe, pins, store);
        let privileged_runs = recipe.steps.iter().zip(&initial).any(|(s, p)| {
            s.privileged
                && if opts.only.is_some() {
                    forced.contains(s.id.as_str())
                } else {
                    p.status != Status::Done || forced.contains(s.id.as_str())
                }
        });
        privileged_runs
            .then(|| SudoKeeper::start(recipe))
            .transpose()?
    } else {
        None
    };
    let mut plans: HashMap<String, StepPlan> = HashMap::new();
    let mut ran = Vec::new();
    let total = recipe.steps.len();
    for (index, step) in recipe.steps.iter().enumerate() {
        if interrupt.raised() {
            return Ok(UpResult::Interrupted {
                step: None,
                cleanup_stopped: false,
            });
        }
        let with_exports = super::with_exports(recipe, step, store);
        let step = &with_exports;
        let components = fingerprint::components(step, pins, &salt);
        let mut plan = evaluate(step, components, store, &plans, &boot);
        let wanted = if opts.only.is_some() {
            forced.contains(step.id.as_str())
        } else {
            plan.status != Status::Done || forced.contains(step.id.as_str())
        };
        if !wanted {
            if plan.status == Status::Done {
                events(UpEvent::Skip { plan: &plan });
            }
            plans.insert(step.id.clone(), plan);
            continue;
        }
        for need in &step.needs {
            let done = plans.get(need).is_some_and(|p| p.status == Status::Done);
            if !done && !opts.dry_run {
                return Err(UpError::NeedsNotDone {
                    step: step.id.clone(),
                    need: need.clone(),
                });
            }
        }
        if let Some(r) = plan.waits_for_reboot.clone().filter(|r| *r != step.id) {
            return Ok(UpResult::WaitsForReboot { step: r, ran });
        }
        let use_sudo = step.privileged && !root;
        if opts.dry_run {
            events(UpEvent::WouldRun {
                step,
                plan: &plan,
                argv: runner::command_line(step, use_sudo)
                    .iter()
                    .map(|a| runner::redact(a, &step.secrets))
                    .collect(),
                sudo: use_sudo,
            });
            plan.status = Status::Pending;
            plan.run_id = None;
            plans.insert(step.id.clone(), plan);
            continue;
        }
        events(UpEvent::Start {
            index,
            total,
            step,
            plan: &plan,
        });
        let started = Instant::now();
        let outcome = match run_step(step, use_sudo, pins, ws, store, &plan, interrupt, events)? {
            Ran::Finished(outcome) => outcome,
            // The attempt stays "running", as if pinstack had been killed: the next `up` runs
            // the cleanup first, then the step again.
            Ran::CleanupStopped => {
                events(UpEvent::Finish {
                    step,
                    outcome: &Outcome::Interrupted,
                    elapsed: started.elapsed(),
                });
                return Ok(UpResult::Interrupted {
                    step: Some(step.id.clone()),
                    cleanup_stopped: true,
                });
            }
        };
        fingerprint::forget_digests();
        let elapsed = started.elapsed();
        events(UpEvent::Finish {
            step,
            outcome: &outcome,
            elapsed,
        });
        let exports = match outcome {
            Outcome::Success => read_exports(&store.export_path(&step.id)),
            _ => Ok(Vec::new()),
        };
        let (outcome, exports) = match exports {
            Ok(e) => (outcome, e),
            Err(detail) => (Outcome::Failed(detail), Vec::new()),
        };
        match outcome {
            Outcome::Success => {
                let needs = step
                    .needs
                    .iter()
                    .filter_map(|n| Some((n.clone(), plans.get(n)?.run_id.clone()?)))
                    .collect();
                let cp = Checkpoint {
                    id: step.id.clone(),
                    fingerprint: plan.fingerprint.clone(),
                    components: plan.components.clone(),
                    needs,
                    run_id: store::run_id(),
                    finished_at: store::now(),
                    duration_ms: elapsed.as_millis() as u64,
                    boot_id: boot.clone(),
                    exports,
                };
                crate::fault::point("checkpoint", index + 1);
                if let Err(e) = store.save_checkpoint(&cp) {
                    // The step ran, but is not recorded done: the next `up` runs it again.
                    let _ = store.save_attempt(
                        &step.id,
                        &Attempt {
                            status: AttemptStatus::Failed,
                            pid: std::process::id(),
                            group: None,
                            started_at: store::now(),
                            fingerprint: plan.fingerprint.clone(),
                            detail: format!("it ran, but could not be recorded done: {e}"),
                        },
                    );
                    return Err(e.into());
                }
                store.clear_attempt(&step.id)?;
                plan.status = Status::Done;
                plan.run_id = Some(cp.run_id);
                ran.push(step.id.clone());
                plans.insert(step.id.clone(), plan);
                if step.reboot {
                    return Ok(UpResult::WaitsForReboot {
                        step: step.id.clone(),
                        ran,
                    });
                }
            }
            other => {
                let (status, detail) = match &other {
                    Outcome::Failed(d) => (AttemptStatus::Failed, d.clone()),
                    Outcome::TimedOut => (
                        AttemptStatus::TimedOut,
                        format!(
                            "after {}",
                            super::human_duration(elapsed.as_millis() as u64)
                        ),
                    ),
                    _ => (AttemptStatus::Interrupted, "Ctrl-C or SIGTERM".to_owned()),
                };
                store.save_attempt(
                    &step.id,
                    &Attempt {
                        status,
                        pid: std::process::id(),
                        group: None,
                        started_at: store::now().saturating_sub(elapsed.as_secs()),
                        fingerprint: plan.fingerprint.clone(),
                        detail: detail.clone(),
                    },
                )?;
                return Ok(match other {
                    Outcome::Interrupted => UpResult::Interrupted {
                        step: Some(step.id.clone()),
                        cleanup_stopped: false,
                    },
                    Outcome::TimedOut => UpResult::Failed {
                        step: step.id.clone(),
                        detail: format!("timed out {detail}"),
                    },
                    _ => UpResult::Failed {
                        step: step.id.clone(),
                        detail,
                    },
                });
            }
        }
    }
    Ok(if opts.dry_run {
        UpResult::DryRun
    } else {
        UpResult::AllDone { ran }
    })
}

/// How a step and its cleanup ended.
enum Ran {
    /// Both ran to their end (the cleanup's failure shows in the outcome).
    Finished(Outcome),
    /// A second Ctrl-C stopped the cleanup.
    CleanupStopped,
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    step: &Step,
    use_sudo: bool,
    pins: Option<&Pins>,
    ws: &Workspace,
    store: &Store,
    plan: &StepPlan,
    interrupt: &Interrupt,
    events: &mut dyn FnMut(UpEvent<'_>),
) -> Result<Ran, UpError> {
    let export = store.export_path(&step.id);
    if let Some(dir) = export.parent() {
        std::fs::create_dir_all(dir).map_err(|source| UpError::Log {
            path: dir.to_owned(),
            source,
        })?;
    }
    // Made anew (a link in its place is removed, not written through).
    crate::fsutil::remove_file_if_present(&export)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&export)
                .map(drop)
        })
        .map_err(|source| UpError::Log {
            path: export.clone(),
            source,
        })?;
    let mut with_export = step.clone();
    with_export.env.push(crate::recipe::EnvVar {
        name: "PINSTACK_EXPORT".to_owned(),
        value: export.display().to_string(),
        secret: false,
    });
    let step = &with_export;
    let log_path = store.log_path(&step.id);
    if log_path.exists() {
        let _ = std::fs::rename(&log_path, store.previous_log_path(&step.id));
    }
    let log_err = |source| UpError::Log {
        path: log_path.clone(),
        source,
    };
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).map_err(log_err)?;
    }
    crate::fault::disk_full(&log_path).map_err(log_err)?;
    let mut log = std::io::BufWriter::new(std::fs::File::create(&log_path).map_err(log_err)?);
    let secrets = &step.secrets;
    let argv = runner::command_line(step, use_sudo);
    runner::log_header(&mut log, step, &argv, secrets).map_err(log_err)?;
    log.flush().map_err(log_err)?;
    // The attempt names the process group running now (the step's, then its cleanup's), so
    // that a run after a kill can stop what is left of it.
    let started_at = store::now();
    let running = |group: Option<u32>| Attempt {
        status: AttemptStatus::Running,
        pid: std::process::id(),
        group,
        started_at,
        fingerprint: plan.fingerprint.clone(),
        detail: String::new(),
    };
    store.save_attempt(&step.id, &running(None))?;
    let mut record_group = |group: u32| {
        let _ = store.save_attempt(&step.id, &running(Some(group)));
    };
    let outcome = match &step.action {
        Action::Sources(only) => run_sources(pins, only, ws, interrupt, &mut log, &mut |line| {
            events(UpEvent::Line { line })
        }),
        _ => {
            let mut on_line = |line: &str| events(UpEvent::Line { line });
            runner::run(
                step,
                use_sudo,
                &mut log,
                secrets,
                interrupt,
                &mut on_line,
                &mut record_group,
            )
            .map_err(log_err)?
        }
    };
    writeln!(log, "# outcome: {outcome:?}").map_err(log_err)?;
    let stop_now = interrupt.second();
    if step.cleanup.is_some() {
        if stop_now.raised() {
            // Asked twice to stop before the cleanup began: it is not begun, only to be cut
            // short; the next `up` runs it first.
            writeln!(
                log,
                "# cleanup not started: stopped twice; the next `up` runs it"
            )
            .map_err(log_err)?;
            log.flush().map_err(log_err)?;
            store.save_attempt(&step.id, &running(None))?;
            return Ok(Ran::CleanupStopped);
        }
        if outcome == Outcome::Interrupted {
            events(UpEvent::Line {
                line: "interrupted: running the step's cleanup (Ctrl-C again stops it)",
            });
        }
    }
    let cleanup = run_cleanup(
        step,
        use_sudo,
        &mut log,
        &stop_now,
        &mut |line| events(UpEvent::Line { line }),
        &mut record_group,
    )
    .map_err(log_err)?;
    let outcome = match cleanup {
        Some(Outcome::Interrupted) => {
            log.flush().map_err(log_err)?;
            // The cleanup's group is stopped: nothing is left for the next `up` to stop.
            store.save_attempt(&step.id, &running(None))?;
            return Ok(Ran::CleanupStopped);
        }
        Some(Outcome::Success) | None => outcome,
        Some(failed) if outcome == Outcome::Success => Outcome::Failed(format!(
            "its cleanup failed ({})",
            match failed {
                Outcome::Failed(d) => d,
                other => format!("{other:?}"),
            }
        )),
        Some(_) => outcome,
    };
    log.flush().map_err(log_err)?;
    Ok(Ran::Finished(outcome))
}

/// Runs a step's `cleanup:` script, whatever became of the step; its output goes to the step's
/// log. The Ctrl-C that stopped the step does not stop its cleanup, which has ten minutes;
/// `interrupt` (a second Ctrl-C) does.
fn run_cleanup(
    step: &Step,
    use_sudo: bool,
    log: &mut dyn Write,
    interrupt: &Interrupt,
    on_line: &mut dyn FnMut(&str),
    on_group: &mut dyn FnMut(u32),
) -> std::io::Result<Option<Outcome>> {
    let Some(script) = &step.cleanup else {
        return Ok(None);
    };
    let cleanup = Step {
        action: Action::Run(script.clone()),
        timeout: Some(Duration::from_secs(600)),
        ..step.clone()
    };
    writeln!(log, "# cleanup")?;
    let outcome = runner::run(
        &cleanup,
        use_sudo,
        log,
        &step.secrets,
        interrupt,
        on_line,
        on_group,
    )?;
    writeln!(log, "# cleanup outcome: {outcome:?}")?;
    Ok(Some(outcome))
}

/// After pinstack was killed (or stopped by a second Ctrl-C) while steps ran: stops what they
/// left running and runs their cleanups, before anything else. Returns the step whose cleanup
/// a second Ctrl-C stopped again, if one did; its attempt is left for the next `up`.
fn recover_crashed(
    recipe: &Recipe,
    store: &Store,
    interrupt: &Interrupt,
    events: &mut dyn FnMut(UpEvent<'_>),
) -> Result<Option<String>, UpError> {
    let root = rustix::process::geteuid().is_root();
    for step in &recipe.steps {
        let Some(a) = store.attempt(&step.id) else {
            continue;
        };
        if a.status != AttemptStatus::Running || runner::process_alive(a.pid) {
            continue;
        }
        if let Some(group) = a.group
            && runner::stop_leftover_group(group)
        {
            events(UpEvent::StoppedLeftover { step, group });
        }
        // While the cleanup runs, the attempt names this run and the cleanup's group.
        let running = |group: Option<u32>| Attempt {
            pid: std::process::id(),
            group,
            ..a.clone()
        };
        let stop_now = interrupt.second();
        if step.cleanup.is_some() && stop_now.raised() {
            store.save_attempt(&step.id, &running(None))?;
            return Ok(Some(step.id.clone()));
        }
        if step.cleanup.is_some() {
            let log_path = store.log_path(&step.id);
            let log_err = |source| UpError::Log {
                path: log_path.clone(),
                source,
            };
            if let Some(dir) = log_path.parent() {
                std::fs::create_dir_all(dir).map_err(log_err)?;
            }
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(log_err)?;
            writeln!(
                log,
                "# pinstack stopped before this step and its cleanup finished; cleaning up"
            )
            .map_err(log_err)?;
            let use_sudo = step.privileged && !root;
            let mut record_group = |group: u32| {
                let _ = store.save_attempt(&step.id, &running(Some(group)));
            };
            let outcome = run_cleanup(
                step,
                use_sudo,
                &mut log,
                &stop_now,
                &mut |_| {},
                &mut record_group,
            )
            .map_err(log_err)?;
            if outcome == Some(Outcome::Interrupted) {
                store.save_attempt(&step.id, &running(None))?;
                return Ok(Some(step.id.clone()));
            }
            events(UpEvent::CleanedUp {
                step,
                ok: outcome == Some(Outcome::Success),
            });
        }
        store.save_attempt(
            &step.id,
            &Attempt {
                status: AttemptStatus::Interrupted,
                detail: "pinstack stopped before it and its cleanup finished".to_owned(),
                ..a
            },
        )?;
    }
    Ok(None)
}

/// The built-in `uses: sources`: fetch and apply every pinned repo.
/// A stop is seen between repos (each fetch and apply is safe to stop between, and `apply`
/// finishes what it began); a repo that failed while a stop was asked for (its `git fetch`
/// got the Ctrl-C too) counts as interrupted, not failed.
fn run_sources(
    pins: Option<&Pins>,
    only: &[String],
    ws: &Workspace,
    interrupt: &Interrupt,
    log: &mut dyn Write,
    on_line: &mut dyn FnMut(&str),
) -> Outcome {
    let Some(pins) = pins else {
        return Outcome::Failed("the recipe names no pins file (pins:)".to_owned());
    };
    let mut say = |line: String, log: &mut dyn Write| {
        let _ = writeln!(log, "{line}");
        on_line(&line);
    };
    if let Some(unknown) = only.iter().find(|n| pins.repo(n).is_err()) {
        return Outcome::Failed(format!(
            "repos: names {unknown:?}, which pins.yaml does not pin"
        ));
    }
    for repo in pins
        .repos
        .iter()
        .filter(|r| only.is_empty() || only.contains(&r.name))
    {
        if interrupt.raised() {
            return Outcome::Interrupted;
        }
        match source::apply(ws, pins, repo, ApplyOptions::default()) {
            Ok(report) => say(
                format!(
                    "{}: {:?} at {}, tree {}",
                    repo.name, report.outcome, repo.commit, report.tree
                ),
                log,
            ),
            Err(e) => {
                say(format!("{}: {e}", repo.name), log);
                if interrupt.raised() {
                    return Outcome::Interrupted;
                }
                return Outcome::Failed(format!("{}: {e}", repo.name));
            }
        }
    }
    Outcome::Success
}

/// Asks for sudo once, up front, and keeps the credential fresh while steps run.
struct SudoKeeper {
    stop: Arc<AtomicBool>,
}

impl SudoKeeper {
    fn start(recipe: &Recipe) -> Result<SudoKeeper, UpError> {
        let names: Vec<&str> = recipe
            .steps
            .iter()
            .filter(|s| s.privileged)
            .map(|s| s.id.as_str())
            .collect();
        eprintln!(
            "pinstack: steps {} need root; sudo asks for your password once, now",
            names.join(", ")
        );
        let status = std::process::Command::new("sudo")
            .arg("-v")
            .status()
            .map_err(|e| {
                UpError::Privilege(format!("cannot run sudo ({e}); run pinstack as root"))
            })?;
        if !status.success() {
            return Err(UpError::Privilege(
                "sudo refused; run pinstack as root or fix sudo, nothing was run".to_owned(),
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(60));
                let _ = std::process::Command::new("sudo")
                    .args(["-n", "-v"])
                    .stdin(std::process::Stdio::null())
                    .status();
            }
        });
        Ok(SudoKeeper { stop })
    }
}

impl Drop for SudoKeeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads the `NAME=VALUE` lines a step wrote to `$PINSTACK_EXPORT`.
fn read_exports(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!(
                "line {} of its $PINSTACK_EXPORT is not NAME=VALUE",
                n + 1
            ));
        };
        let valid = !name.is_empty()
            && !name.as_bytes()[0].is_ascii_digit()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(format!("it exported an invalid name {name:?}"));
        }
        if crate::recipe::looks_secret(name) {
            return Err(format!(
                "it exported {name}, whose name says it is a secret: secrets are never stored"
            ));
        }
        out.retain(|(n, _)| n != name);
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}
