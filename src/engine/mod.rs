//! The recipe engine: which steps are done, which must run and why; running them with
//! checkpoints written atomically after success only.

pub mod fingerprint;
mod runner;
pub mod store;
mod up;

use std::collections::{BTreeSet, HashMap};

pub use fingerprint::Components;
pub use runner::{Interrupt, Outcome, process_alive, shell_words as runner_shell_words};
pub use store::{Attempt, AttemptStatus, Checkpoint, Store, StoreError};
pub use up::{UpEvent, UpOptions, UpResult, up};

use crate::pins::Pins;
use crate::recipe::{Recipe, Step};

/// A step's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its last successful run has the current fingerprint, and its needs are done.
    Done,
    /// Never run successfully.
    Pending,
    /// Done before, but something it depends on changed since.
    Stale,
    /// Its last attempt failed, was interrupted, or timed out.
    Failed,
}

impl Status {
    /// Stable name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Pending => "pending",
            Status::Stale => "stale",
            Status::Failed => "failed",
        }
    }
}

/// The engine's view of one step.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub id: String,
    pub title: String,
    pub status: Status,
    /// One line.
    pub reason: String,
    /// What changed since the last successful run, in plain words.
    pub changes: Vec<String>,
    pub components: Components,
    pub fingerprint: String,
    /// The run id of the last successful run, when the step is done.
    pub run_id: Option<String>,
    pub last_duration_ms: Option<u64>,
    /// The step (this one or one it needs) that needs a reboot before this step can run.
    pub waits_for_reboot: Option<String>,
}

/// Computes every step's status in run order. Reads only: nothing is written.
pub fn plan(recipe: &Recipe, pins: Option<&Pins>, store: &Store) -> Vec<StepPlan> {
    let salt = store.salt_if_any();
    let boot = store::boot_id();
    let mut plans: HashMap<String, StepPlan> = HashMap::new();
    let mut out = Vec::with_capacity(recipe.steps.len());
    for step in &recipe.steps {
        let step = with_exports(recipe, step, store);
        let components = fingerprint::components(&step, pins, &salt);
        let p = evaluate(&step, components, store, &plans, &boot);
        plans.insert(step.id.clone(), p.clone());
        out.push(p);
    }
    out
}

/// The step with the values that the steps it needs (directly or through others) exported,
/// taken from their last successful runs; an exported value overrides the recipe's env.
pub fn with_exports(recipe: &Recipe, step: &Step, store: &Store) -> Step {
    let mut upstream: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = step.needs.iter().map(String::as_str).collect();
    while let Some(id) = todo.pop() {
        if upstream.insert(id)
            && let Some(s) = recipe.step(id)
        {
            todo.extend(s.needs.iter().map(String::as_str));
        }
    }
    let mut out = step.clone();
    for s in recipe
        .steps
        .iter()
        .filter(|s| upstream.contains(s.id.as_str()))
    {
        let Some(cp) = store.checkpoint(&s.id) else {
            continue;
        };
        for (name, value) in cp.exports {
            out.env.retain(|e| e.name != name);
            out.env.push(crate::recipe::EnvVar {
                name,
                value,
                secret: false,
            });
        }
    }
    out
}

/// A step's status given its current components and the plans of the steps before it.
pub(crate) fn evaluate(
    step: &Step,
    components: Components,
    store: &Store,
    earlier: &HashMap<String, StepPlan>,
    boot: &str,
) -> StepPlan {
    let fingerprint = components.fingerprint();
    let cp = store.checkpoint(&step.id);
    let mut upstream = Vec::new();
    let mut waits_for_reboot = None;
    for need in &step.needs {
        let Some(np) = earlier.get(need) else {
            continue;
        };
        if let Some(r) = &np.waits_for_reboot {
            waits_for_reboot.get_or_insert_with(|| r.clone());
        }
        if np.status != Status::Done {
            upstream.push(format!(
                "step {need} is {} and runs first",
                np.status.as_str()
            ));
        } else if let Some(cp) = &cp
            && cp.needs.get(need) != np.run_id.as_ref()
        {
            upstream.push(format!("step {need} ran again since"));
        }
    }
    // A reboot holds every later step, as it does within one `up`, not only the steps that need
    // the step that asked for it (`earlier` holds exactly the steps before this one).
    if waits_for_reboot.is_none() {
        waits_for_reboot = earlier
            .values()
            .filter_map(|p| p.waits_for_reboot.clone())
            .min();
    }
    let mut plan = StepPlan {
        id: step.id.clone(),
        title: step.title.clone(),
        status: Status::Pending,
        reason: String::new(),
        changes: Vec::new(),
        components,
        fingerprint,
        run_id: None,
        last_duration_ms: cp.as_ref().map(|c| c.duration_ms),
        waits_for_reboot,
    };
    // An attempt record outlives a checkpoint only when a later run of the step (a forced
    // rerun, say) failed or was killed: the step's work is then half redone, so it is not done.
    let attempt = store.attempt(&step.id);
    match &cp {
        Some(cp)
            if cp.fingerprint == plan.fingerprint && upstream.is_empty() && attempt.is_none() =>
        {
            plan.status = Status::Done;
            plan.run_id = Some(cp.run_id.clone());
            let ago = store::now().saturating_sub(cp.finished_at);
            let when = if ago == 0 {
                "just now".to_owned()
            } else {
                format!("{} ago", human_duration(ago * 1000))
            };
            plan.reason = format!(
                "done {when} in {}, nothing changed since",
                human_duration(cp.duration_ms)
            );
            if step.reboot && cp.boot_id == boot && plan.waits_for_reboot.is_none() {
                plan.waits_for_reboot = Some(step.id.clone());
            }
            return plan;
        }
        Some(cp) => {
            plan.changes = describe_changes(&cp.components, &plan.components);
            plan.changes.extend(upstream.iter().cloned());
            plan.status = Status::Stale;
        }
        None => {
            plan.changes = upstream.clone();
        }
    }
    if let Some(a) = attempt {
        let alive = a.status == AttemptStatus::Running && runner::process_alive(a.pid);
        if !alive {
            plan.status = Status::Failed;
            let what = match a.status {
                AttemptStatus::Running if step.cleanup.is_some() => {
                    "was interrupted (pinstack stopped before it and its cleanup finished; \
                     the next `up` runs the cleanup first)"
                        .to_owned()
                }
                AttemptStatus::Running => {
                    "was interrupted (pinstack stopped while it ran)".to_owned()
                }
                AttemptStatus::Interrupted => "was interrupted".to_owned(),
                AttemptStatus::TimedOut => format!("timed out ({})", a.detail),
                AttemptStatus::Failed => format!("failed ({})", a.detail),
            };
            plan.reason = format!("last attempt {what}; see `pinstack logs {}`", step.id);
            return plan;
        }
        plan.reason = format!("running now (pid {})", a.pid);
        return plan;
    }
    plan.reason = match plan.status {
        Status::Stale if plan.changes.is_empty() => "changed since its last run".to_owned(),
        Status::Stale => format!("changed: {}", plan.changes.join("; ")),
        _ if upstream.is_empty() => "never run".to_owned(),
        _ => format!("never run; {}", upstream.join("; ")),
    };
    if let Some(r) = &plan.waits_for_reboot {
        plan.reason = format!("{}; waits for a reboot after step {r}", plan.reason);
    }
    plan
}

/// What differs between two sets of components, in plain words.
pub fn describe_changes(old: &Components, new: &Components) -> Vec<String> {
    let mut out = Vec::new();
    if old.definition != new.definition {
        out.push("its definition changed (command, folder, privilege or reboot)".to_owned());
    }
    let names: BTreeSet<&String> = old.env.keys().chain(new.env.keys()).collect();
    for name in names {
        match (old.env.get(name), new.env.get(name)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) if a.starts_with("secret:") || b.starts_with("secret:") => {
                out.push(format!("env {name} changed (a secret: value not shown)"));
            }
            (Some(a), Some(b)) => out.push(format!("env {name} changed from {a:?} to {b:?}")),
            (None, Some(_)) => out.push(format!("env {name} was added")),
            (Some(_), None) => out.push(format!("env {name} was removed")),
            (None, None) => {}
        }
    }
    let paths: BTreeSet<&String> = old.inputs.keys().chain(new.inputs.keys()).collect();
    for path in paths {
        match (old.inputs.get(path), new.inputs.get(path)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(b)) if b == "absent" => out.push(format!("input {path} is gone")),
            (Some(a), Some(_)) if a == "absent" => out.push(format!("input {path} appeared")),
            (Some(a), Some(b)) => out.push(describe_input(path, a, b)),
            (None, Some(_)) => out.push(format!("input {path} was added")),
            (Some(_), None) => out.push(format!("input {path} was removed")),
            (None, None) => {}
        }
    }
    let repos: BTreeSet<&String> = old.pins.keys().chain(new.pins.keys()).collect();
    for repo in repos {
        if old.pins.get(repo) != new.pins.get(repo) {
            out.push(format!("the pin or bundle hashes of repo {repo} changed"));
        }
    }
    out
}

fn describe_input(path: &str, old: &str, new: &str) -> String {
    let head = |d: &str| {
        d.strip_prefix("git:")
            .and_then(|r| r.split('+').next())
            .map(str::to_owned)
    };
    match (head(old), head(new)) {
        (Some(a), Some(b)) if a != b => format!("input {path}: its git HEAD tree moved"),
        (Some(_), Some(_)) => format!("input {path}: its uncommitted files changed"),
        _ => format!("input {path}: its content changed"),
    }
}

/// `1h02m`, `3m04s`, `12s`, `850ms`.
pub fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s >= 1 {
        format!("{s}s")
    } else {
        format!("{ms}ms")
    }
}
