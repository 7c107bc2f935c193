//! Serving profiles: a base (model, `vllm serve` flags, environment) and named profiles that
//! override parts of it, resolved from the recipe alone: the caller's environment never leaks
//! into what a server runs with.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::recipe::{Scope, parse_duration};
use crate::yaml::Ordered;

pub mod http;
pub mod install;
pub mod procfs;
pub mod ready;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod switch;

/// How far a profile can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileStatus {
    Production,
    KnownGood,
    /// Needs `--allow-experimental` to switch to.
    Experimental,
}

impl ProfileStatus {
    /// Stable name used in recipes and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileStatus::Production => "production",
            ProfileStatus::KnownGood => "known-good",
            ProfileStatus::Experimental => "experimental",
        }
    }

    fn parse(s: &str) -> Option<ProfileStatus> {
        match s {
            "production" => Some(ProfileStatus::Production),
            "known-good" => Some(ProfileStatus::KnownGood),
            "experimental" => Some(ProfileStatus::Experimental),
            _ => None,
        }
    }
}

/// The smoke completion a profile must pass to count as ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smoke {
    pub prompt: String,
    pub expect: String,
    pub max_tokens: u32,
}

/// A resolved serving profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub status: ProfileStatus,
    pub description: String,
    /// The source state the profile needs (informational: `promoted`, `live-20260525`, ...).
    pub source_state: Option<String>,
    /// The `vllm` program.
    pub vllm: PathBuf,
    pub model: String,
    /// The id clients send: the served name, else the model path.
    pub model_id: String,
    pub host: String,
    pub port: u16,
    pub max_model_len: u32,
    /// `vllm serve` flags after the model, in order.
    pub flags: Vec<String>,
    /// The server's whole environment (nothing else is inherited).
    pub env: Vec<(String, String)>,
    pub smoke: Smoke,
    pub ready_timeout: Duration,
}

/// The value a command line gives flag `name`: the argument after it, or what follows
/// `name=` in one argument.
pub fn flag_value(flags: &[String], name: &str) -> Option<String> {
    flags
        .iter()
        .position(|f| f == name)
        .and_then(|i| flags.get(i + 1).cloned())
        .or_else(|| {
            flags
                .iter()
                .find_map(|f| f.strip_prefix(&format!("{name}=")).map(str::to_owned))
        })
}

impl Profile {
    /// The full command line.
    pub fn command(&self) -> Vec<String> {
        let mut argv = vec![
            self.vllm.display().to_string(),
            "serve".to_owned(),
            self.model.clone(),
        ];
        argv.extend(self.flags.iter().cloned());
        argv
    }

    /// The base URL of the server.
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

/// A flag's value in a recipe: `true` (present, no value), `false` or null (removed), or a value.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawFlag {
    Switch(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Null,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServe {
    #[serde(default)]
    model: Option<Spanned<String>>,
    #[serde(default)]
    served_model_name: Option<Spanned<String>>,
    #[serde(default)]
    venv: Option<Spanned<String>>,
    #[serde(default)]
    host: Option<Spanned<String>>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    max_model_len: Option<u32>,
    #[serde(default)]
    env_files: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    env: Option<Ordered<Spanned<String>>>,
    #[serde(default)]
    flags: Option<Ordered<RawFlag>>,
    #[serde(default)]
    smoke: Option<RawSmoke>,
    #[serde(default)]
    ready_timeout: Option<Spanned<String>>,
    #[serde(default)]
    status: Option<Spanned<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    source_state: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawSmoke {
    prompt: String,
    expect: String,
    #[serde(default = "default_max_tokens")]
    max_tokens: u32,
}

fn default_max_tokens() -> u32 {
    16
}

/// The recipe's `serve:` and `profiles:` sections.
#[derive(Deserialize, Default)]
pub(crate) struct RawServing {
    pub serve: Option<RawServe>,
    pub profiles: Option<Ordered<RawServe>>,
}

/// A problem in a serving section, with where it is.
pub(crate) struct ServeError {
    pub at: Option<serde_saphyr::Location>,
    pub message: String,
}

fn fail<T>(at: Option<serde_saphyr::Location>, message: String) -> Result<T, ServeError> {
    Err(ServeError { at, message })
}

/// Resolves every profile over the base. Values may use recipe variables, but none that comes
/// from the caller's environment.
pub(crate) fn resolve(
    raw: &RawServing,
    scope: &Scope<'_>,
    recipe_dir: &Path,
) -> Result<Vec<Profile>, ServeError> {
    let Some(profiles) = &raw.profiles else {
        return Ok(Vec::new());
    };
    let empty = RawServe::default();
    let base = raw.serve.as_ref().unwrap_or(&empty);
    let text = |v: &Spanned<String>, what: &str| -> Result<String, ServeError> {
        let r = scope.resolve(v).map_err(|m| ServeError {
            at: Some(v.referenced),
            message: m,
        })?;
        if r.tainted {
            return fail(
                Some(v.referenced),
                format!(
                    "{what} depends on the caller's environment; a serving profile takes its \
                     values from the recipe only"
                ),
            );
        }
        Ok(r.text)
    };
    let mut out = Vec::new();
    for (key, p) in &profiles.0 {
        let name = key.value.clone();
        let pick = |a: &Option<Spanned<String>>,
                    b: &Option<Spanned<String>>|
         -> Option<Spanned<String>> { a.clone().or_else(|| b.clone()) };
        let status = match &p.status {
            Some(s) => ProfileStatus::parse(&s.value).ok_or_else(|| ServeError {
                at: Some(s.referenced),
                message: format!(
                    "profile {name}: status {:?} is not production, known-good or experimental",
                    s.value
                ),
            })?,
            None => {
                return fail(
                    Some(key.referenced),
                    format!(
                        "profile {name}: give a status (production, known-good or experimental)"
                    ),
                );
            }
        };
        let Some(model) = pick(&p.model, &base.model) else {
            return fail(
                Some(key.referenced),
                format!("profile {name}: no model (serve.model)"),
            );
        };
        let model = text(&model, "model")?;
        let served = match pick(&p.served_model_name, &base.served_model_name) {
            Some(s) => Some(text(&s, "served_model_name")?),
            None => None,
        };
        let vllm = match pick(&p.venv, &base.venv) {
            Some(v) => PathBuf::from(text(&v, "venv")?).join("bin/vllm"),
            None => PathBuf::from("vllm"),
        };
        let host = match pick(&p.host, &base.host) {
            Some(h) => text(&h, "host")?,
            None => "127.0.0.1".to_owned(),
        };
        let port = p.port.or(base.port).unwrap_or(8000);
        let Some(max_model_len) = p.max_model_len.or(base.max_model_len) else {
            return fail(
                Some(key.referenced),
                format!("profile {name}: no max_model_len (the value /v1/models must report)"),
            );
        };
        // Environment: env files, then the base env, then the profile's.
        let mut env: Vec<(String, String)> = Vec::new();
        // A later value replaces an earlier one in place.
        let mut set = |k: String, v: String| match env.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k, v)),
        };
        for file in base
            .env_files
            .iter()
            .flatten()
            .chain(p.env_files.iter().flatten())
        {
            let path = text(file, "env_files")?;
            let path = recipe_dir.join(path);
            for (k, v) in read_env_file(&path).map_err(|m| ServeError {
                at: Some(file.referenced),
                message: m,
            })? {
                set(k, v);
            }
        }
        for map in [&base.env, &p.env].into_iter().flatten() {
            for (k, v) in &map.0 {
                set(k.value.clone(), text(v, "env")?);
            }
        }
        // Flags: the base's, with the profile's replacing or removing them by name.
        let mut flags: Vec<(String, Option<String>)> = vec![
            ("--host".to_owned(), Some(host.clone())),
            ("--port".to_owned(), Some(port.to_string())),
            (
                "--max-model-len".to_owned(),
                Some(max_model_len.to_string()),
            ),
        ];
        if let Some(s) = &served {
            flags.push(("--served-model-name".to_owned(), Some(s.clone())));
        }
        for map in [&base.flags, &p.flags].into_iter().flatten() {
            for (k, v) in &map.0 {
                let flag = k.value.clone();
                if !flag.starts_with("--") {
                    return fail(
                        Some(k.referenced),
                        format!("profile {name}: flag {flag:?} must start with --"),
                    );
                }
                // vLLM reads `_` and `-` alike in a flag's name.
                let spelled = flag.replace('_', "-");
                if spelled == "--api-key" || spelled.starts_with("--api-key=") {
                    return fail(
                        Some(k.referenced),
                        format!(
                            "profile {name}: --api-key puts the key on the server's command \
                             line, which every local user can read (ps), and in a \
                             world-readable args file; set VLLM_API_KEY under env: instead \
                             (vLLM reads it; the readiness checks send it; it is masked \
                             everywhere pinstack shows it)"
                        ),
                    );
                }
                if ["--host", "--port", "--max-model-len", "--served-model-name"]
                    .contains(&flag.as_str())
                {
                    return fail(
                        Some(k.referenced),
                        format!(
                            "profile {name}: set {flag} with host:, port:, max_model_len: or served_model_name:"
                        ),
                    );
                }
                let value = match v {
                    RawFlag::Switch(true) => Some(None),
                    RawFlag::Switch(false) | RawFlag::Null => None,
                    RawFlag::Int(i) => Some(Some(i.to_string())),
                    RawFlag::Float(f) => Some(Some(f.to_string())),
                    RawFlag::Text(t) => Some(Some(text(
                        &Spanned::new(t.clone(), k.referenced, k.defined),
                        "flag value",
                    )?)),
                };
                flags.retain(|(n, _)| *n != flag);
                if let Some(value) = value {
                    flags.push((flag, value));
                }
            }
        }
        let flags = flags
            .into_iter()
            .flat_map(|(f, v)| std::iter::once(f).chain(v))
            .collect();
        let smoke = p
            .smoke
            .clone()
            .or_else(|| base.smoke.clone())
            .map(|s| Smoke {
                prompt: s.prompt,
                expect: s.expect,
                max_tokens: s.max_tokens,
            })
            .unwrap_or(Smoke {
                prompt: "Return only the number 42:".to_owned(),
                expect: "42".to_owned(),
                max_tokens: 16,
            });
        let ready_timeout = match pick(&p.ready_timeout, &base.ready_timeout) {
            Some(t) => parse_duration(&t.value).map_err(|m| ServeError {
                at: Some(t.referenced),
                message: m,
            })?,
            None => Duration::from_secs(1800),
        };
        out.push(Profile {
            model_id: served.clone().unwrap_or_else(|| model.clone()),
            name,
            status,
            description: p
                .description
                .clone()
                .or_else(|| base.description.clone())
                .unwrap_or_default(),
            source_state: p.source_state.clone().or_else(|| base.source_state.clone()),
            vllm,
            model,
            host,
            port,
            max_model_len,
            flags,
            env,
            smoke,
            ready_timeout,
        });
    }
    Ok(out)
}

/// Reads a `NAME=VALUE` file: comments and blank lines skipped, no shell, no expansion.
fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("{}:{}: not NAME=VALUE", path.display(), n + 1));
        };
        out.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(out)
}

/// The flags of a profile that the installed vLLM does not know, read from its own help:
/// `vllm serve --help=all` (a current vLLM's plain `--help` lists only the groups of flags),
/// else `vllm serve --help` (a vLLM from before grouped help, which refuses `--help=all`).
/// vLLM takes `_` and `-` alike in a flag's name.
pub fn unknown_flags(profile: &Profile) -> Result<Vec<String>, String> {
    let help = |arg: &str| -> Result<Option<std::collections::HashSet<String>>, String> {
        let out = Command::new(&profile.vllm)
            .args(["serve", arg])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .env_clear()
            .envs(profile.env.iter().map(|(k, v)| (k, v)))
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .map_err(|e| format!("cannot run {} serve {arg}: {e}", profile.vllm.display()))?;
        if !out.status.success() {
            return Ok(None);
        }
        let flags: std::collections::HashSet<String> = String::from_utf8_lossy(&out.stdout)
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .filter(|w| w.starts_with("--") && *w != "--help")
            .map(|w| w.replace('_', "-"))
            .collect();
        Ok((!flags.is_empty()).then_some(flags))
    };
    let known = match help("--help=all")? {
        Some(known) => known,
        None => help("--help")?.ok_or_else(|| {
            format!(
                "{} serve --help=all and --help list no flags (or failed)",
                profile.vllm.display()
            )
        })?,
    };
    Ok(profile
        .flags
        .iter()
        .filter(|f| f.starts_with("--"))
        .map(|f| f.split('=').next().unwrap_or(f))
        .filter(|f| !known.contains(&f.replace('_', "-")))
        .map(str::to_owned)
        .collect())
}
