//! Recipes: declarative bring-up steps, loaded strictly and resolved before anything runs.

mod interp;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::yaml::{self, Ordered, YamlError};
pub use interp::{Resolved, Scope, looks_secret, redact};

/// Why a recipe cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("{path}: {source}; pass the recipe as the first argument", path = path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Yaml(#[from] YamlError),
}

/// A loaded, validated recipe with every value interpolated.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub name: String,
    pub description: String,
    /// The pins file, resolved against the recipe's folder.
    pub pins: Option<PathBuf>,
    pub workspace: PathBuf,
    /// The recipe-wide environment of every step.
    pub env: Vec<EnvVar>,
    /// Steps in run order (every step after the steps it needs).
    pub steps: Vec<Step>,
    /// Serving profiles, resolved over the recipe's `serve:` base.
    pub profiles: Vec<crate::serve::Profile>,
}

/// One environment variable of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
    /// Never shown, logged or stored in plain text.
    pub secret: bool,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A bash script, run with `bash -euo pipefail`. Values from the caller's environment are
    /// not pasted into it: they reach it as environment variables (see `interp`).
    Run(String),
    /// A program and its arguments, no shell.
    Argv(Vec<String>),
    /// Built in: fetch and apply the pins (these repos, or all when empty).
    Sources(Vec<String>),
}

/// One step of a recipe.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub title: String,
    pub needs: Vec<String>,
    pub action: Action,
    /// The recipe env, then the step env, then the variables that carry caller values into a
    /// `run` script.
    pub env: Vec<EnvVar>,
    pub inputs: Vec<PathBuf>,
    pub privileged: bool,
    pub timeout: Option<Duration>,
    /// The machine must reboot after this step before later steps run.
    pub reboot: bool,
    pub cwd: PathBuf,
    pub line: usize,
    /// Every secret value of the recipe, longest first: redacted from its logs and output, and
    /// hashed with the salt in its fingerprint.
    pub secrets: Vec<String>,
    /// A bash script run after the step ends, whatever the outcome (success, failure, timeout,
    /// interrupt), and by the next `up` when pinstack was killed while the step ran.
    pub cleanup: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    pins: Option<Spanned<String>>,
    #[serde(default)]
    workspace: Option<Spanned<String>>,
    #[serde(default)]
    vars: Option<Ordered<Spanned<String>>>,
    #[serde(default)]
    env: Option<Ordered<Spanned<String>>>,
    steps: Vec<Spanned<RawStep>>,
    #[serde(default)]
    serve: Option<crate::serve::RawServe>,
    #[serde(default)]
    profiles: Option<Ordered<crate::serve::RawServe>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Spanned<String>,
    #[serde(default)]
    title: Option<Spanned<String>>,
    #[serde(default)]
    needs: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    run: Option<Spanned<String>>,
    #[serde(default)]
    argv: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    uses: Option<Spanned<String>>,
    #[serde(default)]
    env: Option<Ordered<Spanned<String>>>,
    #[serde(default)]
    inputs: Vec<Spanned<String>>,
    #[serde(default)]
    privileged: bool,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    reboot: bool,
    #[serde(default)]
    cwd: Option<Spanned<String>>,
    #[serde(default)]
    cleanup: Option<Spanned<String>>,
    #[serde(default)]
    repos: Option<Vec<Spanned<String>>>,
}

/// Inputs a recipe is loaded with.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `--workspace`, which wins over the recipe's `workspace:`.
    pub workspace: Option<PathBuf>,
    /// The caller's environment, read by `${env:NAME}`.
    pub caller_env: HashMap<String, String>,
}

impl Recipe {
    /// Reads, validates and resolves a recipe.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Recipe, RecipeError> {
        let text = std::fs::read(path).map_err(|source| RecipeError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, opts)
    }

    /// Validates recipe text that claims to come from `path`.
    pub fn parse(path: &Path, text: &[u8], opts: &LoadOptions) -> Result<Recipe, RecipeError> {
        let raw: RawRecipe = yaml::from_slice(path, text)?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let err = |at: &serde_saphyr::Location, message: String| {
            RecipeError::Yaml(YamlError::at(path, at, message))
        };
        let recipe_dir = absolute(&dir);
        let workspace = match (&opts.workspace, &raw.workspace) {
            (Some(w), _) => absolute(w),
            (None, Some(w)) => {
                let scope = Scope::new(&opts.caller_env, &recipe_dir, &recipe_dir);
                let value = scope.plain(w).map_err(|m| err(&w.referenced, m))?;
                resolve_path(&recipe_dir, &value)
            }
            (None, None) => absolute(Path::new("workspace")),
        };
        let mut scope = Scope::new(&opts.caller_env, &workspace, &recipe_dir);
        if let Some(vars) = &raw.vars {
            for (key, value) in &vars.0 {
                check_name(&key.value).map_err(|m| err(&key.referenced, m))?;
                scope
                    .define(&key.value, value)
                    .map_err(|m| err(&value.referenced, m))?;
            }
        }
        let env = resolve_env(&scope, raw.env.as_ref()).map_err(|(at, m)| err(&at, m))?;
        let pins = match &raw.pins {
            Some(p) => {
                let value = scope.plain(p).map_err(|m| err(&p.referenced, m))?;
                Some(resolve_path(&recipe_dir, &value))
            }
            None => None,
        };
        let mut steps: Vec<Step> = Vec::with_capacity(raw.steps.len());
        let mut ids: BTreeMap<String, serde_saphyr::Location> = BTreeMap::new();
        for raw_step in &raw.steps {
            let s = &raw_step.value;
            let id = s.id.value.clone();
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(err(
                    &s.id.referenced,
                    format!("step id {id:?} must match [a-z0-9-]+"),
                ));
            }
            if let Some(first) = ids.get(&id) {
                return Err(err(
                    &s.id.referenced,
                    format!(
                        "duplicate step id {id:?} (first defined at line {})",
                        first.line()
                    ),
                ));
            }
            ids.insert(id.clone(), s.id.referenced);
            let needs = match &s.needs {
                Some(list) => list.iter().map(|n| n.value.clone()).collect(),
                None => steps.last().map(|p| vec![p.id.clone()]).unwrap_or_default(),
            };
            let mut step_env = env.clone();
            for var in resolve_env(&scope, s.env.as_ref()).map_err(|(at, m)| err(&at, m))? {
                step_env.retain(|e| e.name != var.name);
                step_env.push(var);
            }
            let action = match (&s.run, &s.argv, &s.uses) {
                (Some(run), None, None) => {
                    let (script, carried) =
                        scope.script(run).map_err(|m| err(&run.referenced, m))?;
                    for var in carried {
                        step_env.retain(|e| e.name != var.name);
                        step_env.push(var);
                    }
                    Action::Run(script)
                }
                (None, Some(argv), None) => {
                    if argv.is_empty() {
                        return Err(err(
                            &raw_step.referenced,
                            format!("step {id}: argv is empty"),
                        ));
                    }
                    let mut items = Vec::with_capacity(argv.len());
                    for a in argv {
                        items.push(scope.plain(a).map_err(|m| err(&a.referenced, m))?);
                    }
                    Action::Argv(items)
                }
                (None, None, Some(uses)) => match uses.value.as_str() {
                    "sources" => {
                        Action::Sources(s.repos.iter().flatten().map(|r| r.value.clone()).collect())
                    }
                    other => {
                        return Err(err(
                            &uses.referenced,
                            format!(
                                "step {id}: unknown `uses: {other}`; the built-in kind is `sources`"
                            ),
                        ));
                    }
                },
                _ => {
                    return Err(err(
                        &raw_step.referenced,
                        format!("step {id}: give exactly one of run, argv or uses"),
                    ));
                }
            };
            if let Some(repos) = &s.repos
                && !matches!(action, Action::Sources(_))
            {
                let at = repos.first().map_or(raw_step.referenced, |r| r.referenced);
                return Err(err(
                    &at,
                    format!("step {id}: repos: goes with `uses: sources`"),
                ));
            }
            let mut inputs = Vec::with_capacity(s.inputs.len());
            for i in &s.inputs {
                let value = scope.plain(i).map_err(|m| err(&i.referenced, m))?;
                inputs.push(resolve_path(&recipe_dir, &value));
            }
            let timeout = match &s.timeout {
                Some(t) => Some(parse_duration(&t.value).map_err(|m| err(&t.referenced, m))?),
                None => None,
            };
            let cwd = match &s.cwd {
                Some(c) => {
                    let value = scope.plain(c).map_err(|m| err(&c.referenced, m))?;
                    resolve_path(&workspace, &value)
                }
                None => workspace.clone(),
            };
            let cleanup = match &s.cleanup {
                Some(c) => {
                    let (script, carried) = scope.script(c).map_err(|m| err(&c.referenced, m))?;
                    for var in carried {
                        step_env.retain(|e| e.name != var.name);
                        step_env.push(var);
                    }
                    Some(script)
                }
                None => None,
            };
            let title = match &s.title {
                Some(t) => scope.plain(t).map_err(|m| err(&t.referenced, m))?,
                None => id.clone(),
            };
            steps.push(Step {
                id,
                title,
                needs,
                action,
                env: step_env,
                inputs,
                privileged: s.privileged,
                timeout,
                reboot: s.reboot,
                cwd,
                line: raw_step.referenced.line() as usize,
                secrets: Vec::new(),
                cleanup,
            });
        }
        // Every `needs` names a step, and there is no cycle.
        for (raw_step, step) in raw.steps.iter().zip(&steps) {
            if let Some(list) = &raw_step.value.needs {
                for need in list {
                    if !ids.contains_key(&need.value) {
                        return Err(err(
                            &need.referenced,
                            format!("step {}: needs unknown step {:?}", step.id, need.value),
                        ));
                    }
                    if need.value == step.id {
                        return Err(err(
                            &need.referenced,
                            format!("step {}: needs itself", step.id),
                        ));
                    }
                }
            }
        }
        let mut steps = order(steps)
            .map_err(|(cycle, id)| err(&ids[&id], format!("needs form a cycle: {cycle}")))?;
        // A secret pasted as plain text (an `argv` item, a title) is known only once every
        // value is resolved.
        let secrets = scope.secrets();
        for step in &mut steps {
            step.title = redact(&step.title, &secrets);
            step.secrets = secrets.clone();
        }
        let serving = crate::serve::RawServing {
            serve: raw.serve,
            profiles: raw.profiles,
        };
        let profiles = crate::serve::resolve(&serving, &scope, &recipe_dir).map_err(|e| {
            let at = e.at.unwrap_or(serde_saphyr::Location::UNKNOWN);
            err(&at, e.message)
        })?;
        Ok(Recipe {
            profiles,
            path: path.to_owned(),
            dir: recipe_dir,
            name: raw.name.value.clone(),
            description: raw.description,
            pins,
            workspace,
            env,
            steps,
        })
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

fn resolve_env(
    scope: &Scope<'_>,
    raw: Option<&Ordered<Spanned<String>>>,
) -> Result<Vec<EnvVar>, (serde_saphyr::Location, String)> {
    let mut out: Vec<EnvVar> = Vec::new();
    if let Some(map) = raw {
        for (key, value) in &map.0 {
            check_env_name(&key.value).map_err(|m| (key.referenced, m))?;
            let resolved = scope.resolve(value).map_err(|m| (value.referenced, m))?;
            let secret = resolved.secret || looks_secret(&key.value);
            if secret {
                scope.note_secret(&resolved.text);
            }
            out.retain(|e| e.name != key.value);
            out.push(EnvVar {
                name: key.value.clone(),
                value: resolved.text,
                secret,
            });
        }
    }
    Ok(out)
}

/// Orders steps so each comes after the steps it needs, keeping file order otherwise.
fn order(steps: Vec<Step>) -> Result<Vec<Step>, (String, String)> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut state = vec![0u8; steps.len()]; // 0 new, 1 on the stack, 2 done
    let mut out = Vec::with_capacity(steps.len());
    fn visit(
        i: usize,
        steps: &[Step],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> Result<(), (String, String)> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let start = stack.iter().position(|&s| s == i).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[start..]
                    .iter()
                    .map(|&s| steps[s].id.as_str())
                    .collect();
                cycle.push(&steps[i].id);
                return Err((cycle.join(" -> "), steps[i].id.clone()));
            }
            _ => {}
        }
        state[i] = 1;
        stack.push(i);
        for need in &steps[i].needs {
            if let Some(&j) = index.get(need.as_str()) {
                visit(j, steps, index, state, stack, out)?;
            }
        }
        stack.pop();
        state[i] = 2;
        out.push(i);
        Ok(())
    }
    let mut stack = Vec::new();
    for i in 0..steps.len() {
        visit(i, &steps, &index, &mut state, &mut stack, &mut out)?;
    }
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    Ok(out.into_iter().filter_map(|i| slots[i].take()).collect())
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !matches!(name, "workspace" | "recipe_dir");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "variable name {name:?} must be letters, digits, `_` or `-`, and not a predefined name"
        ))
    }
}

fn check_env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "environment variable name {name:?} must be letters, digits and `_`"
        ))
    }
}

/// Parses `90m`, `2h`, `1h30m`, `45s`, `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("timeout {text:?} is not a duration such as 90m, 2h, 1h30m or 45s");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let secs = match &rest[..unit] {
            "ms" => {
                total += Duration::from_millis(n);
                rest = &rest[unit..];
                continue;
            }
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86_400,
            _ => return Err(bad()),
        };
        total += Duration::from_secs(secs);
        rest = &rest[unit..];
    }
    Ok(total)
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        clean(p)
    } else {
        clean(&std::env::current_dir().map_or_else(|_| p.to_owned(), |d| d.join(p)))
    }
}

fn resolve_path(base: &Path, value: &str) -> PathBuf {
    let p = Path::new(value);
    clean(&if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    })
}

/// Drops `.` components (`..` stays: it may cross a symbolic link).
fn clean(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}
