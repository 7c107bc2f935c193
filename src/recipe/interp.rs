//! `${NAME}` interpolation: recipe variables, `${env:NAME}` (with `${env:NAME:-default}`), and the
//! predefined `${workspace}` and `${recipe_dir}`. `$${` is a literal `${`.
//!
//! A value that comes from the caller's environment (or holds a secret) is data, never code: in
//! a `run` script it is not pasted into the text, it becomes a quoted reference to an environment
//! variable that carries it (`"${PINSTACK_ENV_NAME}"`; inside a double-quoted string just
//! `${PINSTACK_ENV_NAME}`, inside a single-quoted one `'"${PINSTACK_ENV_NAME}"'`, so the shell
//! neither splits nor globs it). So a value holding `; rm -rf /` stays a string, and a token never
//! appears in the script, its fingerprint or a log.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_saphyr::Spanned;

use super::EnvVar;

/// An interpolated value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub text: String,
    /// Holds a value from the caller's environment.
    pub tainted: bool,
    /// Holds a secret (by the name it came from).
    pub secret: bool,
}

/// Whether an environment variable's name says it holds a secret.
pub fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|w| n.contains(w))
        || n.ends_with("_KEY")
        || n == "KEY"
}

/// Replaces every secret value in a text with `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if s.len() >= 3 && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// The variables visible to a recipe.
pub struct Scope<'a> {
    caller: &'a HashMap<String, String>,
    vars: HashMap<String, Resolved>,
    /// Every secret value looked up so far, to redact wherever it is pasted as plain text (an
    /// `argv` item, a title).
    secrets: RefCell<BTreeSet<String>>,
}

/// Where a point of a bash script is, as far as quoting goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Bare,
    Single,
    Double,
    Comment,
}

/// Follows the quoting of a bash script as it is written (heredocs and nested `$(...)` are not
/// modelled: a value there is quoted as if bare).
struct ShellQuoting {
    at: Quoting,
    escaped: bool,
    word_start: bool,
}

impl ShellQuoting {
    fn new() -> Self {
        ShellQuoting {
            at: Quoting::Bare,
            escaped: false,
            word_start: true,
        }
    }

    fn feed(&mut self, text: &str) {
        for c in text.chars() {
            if self.escaped {
                self.escaped = false;
                self.word_start = false;
                continue;
            }
            self.at = match (self.at, c) {
                (Quoting::Bare | Quoting::Double, '\\') => {
                    self.escaped = true;
                    self.at
                }
                (Quoting::Bare, '\'') => Quoting::Single,
                (Quoting::Bare, '"') => Quoting::Double,
                (Quoting::Bare, '#') if self.word_start => Quoting::Comment,
                (Quoting::Single, '\'') | (Quoting::Double, '"') => Quoting::Bare,
                (Quoting::Comment, '\n') => Quoting::Bare,
                (at, _) => at,
            };
            self.word_start = self.at == Quoting::Bare
                && !self.escaped
                && (c.is_whitespace() || ";&|()".contains(c));
        }
    }

    /// A reference to the environment variable `name`, quoted for where the script is now.
    fn reference(&mut self, name: &str) -> String {
        self.escaped = false;
        self.word_start = false;
        match self.at {
            Quoting::Bare => format!("\"${{{name}}}\""),
            Quoting::Double | Quoting::Comment => format!("${{{name}}}"),
            Quoting::Single => format!("'\"${{{name}}}\"'"),
        }
    }
}

enum Piece {
    Text(String),
    Value {
        placeholder: String,
        value: Resolved,
    },
}

impl<'a> Scope<'a> {
    /// A scope with the predefined variables.
    pub fn new(caller: &'a HashMap<String, String>, workspace: &Path, recipe_dir: &Path) -> Self {
        let mut vars = HashMap::new();
        for (name, path) in [("workspace", workspace), ("recipe_dir", recipe_dir)] {
            vars.insert(
                name.to_owned(),
                Resolved {
                    text: path.display().to_string(),
                    tainted: false,
                    secret: false,
                },
            );
        }
        Scope {
            caller,
            vars,
            secrets: RefCell::new(BTreeSet::new()),
        }
    }

    /// Every secret value the recipe used so far, longest first (so a secret that holds another
    /// is redacted whole).
    pub fn secrets(&self) -> Vec<String> {
        let mut all: Vec<String> = self.secrets.borrow().iter().cloned().collect();
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all
    }

    /// Records a secret value for redaction.
    pub fn note_secret(&self, value: &str) {
        if !value.is_empty() {
            self.secrets.borrow_mut().insert(value.to_owned());
        }
    }

    /// Defines a recipe variable; its value may use variables defined before it.
    pub fn define(&mut self, name: &str, value: &Spanned<String>) -> Result<(), String> {
        let mut resolved = self.resolve(value)?;
        resolved.secret |= looks_secret(name);
        if resolved.secret {
            self.note_secret(&resolved.text);
        }
        self.vars.insert(name.to_owned(), resolved);
        Ok(())
    }

    /// Interpolates a value.
    pub fn resolve(&self, value: &Spanned<String>) -> Result<Resolved, String> {
        let mut out = Resolved {
            text: String::new(),
            tainted: false,
            secret: false,
        };
        for piece in self.pieces(&value.value)? {
            match piece {
                Piece::Text(t) => out.text.push_str(&t),
                Piece::Value { value, .. } => {
                    out.text.push_str(&value.text);
                    out.tainted |= value.tainted;
                    out.secret |= value.secret;
                }
            }
        }
        Ok(out)
    }

    /// Interpolates a value used as plain text (a path, an argument, a title).
    pub fn plain(&self, value: &Spanned<String>) -> Result<String, String> {
        Ok(self.resolve(value)?.text)
    }

    /// Interpolates a bash script: values from the caller's environment, and secrets, become
    /// quoted references to environment variables, returned beside the script.
    pub fn script(&self, value: &Spanned<String>) -> Result<(String, Vec<EnvVar>), String> {
        let mut script = String::with_capacity(value.value.len());
        let mut carried: Vec<EnvVar> = Vec::new();
        let mut quoting = ShellQuoting::new();
        for piece in self.pieces(&value.value)? {
            match piece {
                Piece::Text(t) => {
                    quoting.feed(&t);
                    script.push_str(&t);
                }
                Piece::Value { value, .. } if !value.tainted && !value.secret => {
                    quoting.feed(&value.text);
                    script.push_str(&value.text);
                }
                Piece::Value { placeholder, value } => {
                    script.push_str(&quoting.reference(&placeholder));
                    if !carried.iter().any(|c| c.name == placeholder) {
                        carried.push(EnvVar {
                            name: placeholder,
                            value: value.text,
                            secret: value.secret,
                        });
                    }
                }
            }
        }
        Ok((script, carried))
    }

    fn pieces(&self, text: &str) -> Result<Vec<Piece>, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            literal.push_str(&rest[..pos]);
            let after = &rest[pos..];
            if let Some(tail) = after.strip_prefix("$${") {
                literal.push_str("${");
                rest = tail;
                continue;
            }
            let Some(body_start) = after.strip_prefix("${") else {
                literal.push('$');
                rest = &after[1..];
                continue;
            };
            let end = body_start.find('}').ok_or_else(|| {
                format!("unterminated `${{` in {text:?} (write `$${{` for a literal)")
            })?;
            let body = &body_start[..end];
            rest = &body_start[end + 1..];
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(self.lookup(body)?);
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(pieces)
    }

    fn lookup(&self, body: &str) -> Result<Piece, String> {
        if let Some(env) = body.strip_prefix("env:") {
            let (name, default) = match env.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (env, None),
            };
            // A default is recipe text, not the caller's: only a value the caller set is data.
            let (value, from_caller) = match (self.caller.get(name), default) {
                (Some(v), _) => (v.clone(), true),
                (None, Some(d)) => (d.to_owned(), false),
                (None, None) => {
                    return Err(format!(
                        "undefined variable ${{env:{name}}}: it is not set in the caller's \
                         environment (give a default with ${{env:{name}:-VALUE}})"
                    ));
                }
            };
            let secret = looks_secret(name);
            if secret {
                self.note_secret(&value);
            }
            return Ok(Piece::Value {
                placeholder: format!("PINSTACK_ENV_{}", env_name(name)),
                value: Resolved {
                    text: value,
                    tainted: from_caller || secret,
                    secret,
                },
            });
        }
        match self.vars.get(body) {
            Some(v) => Ok(Piece::Value {
                placeholder: format!("PINSTACK_VAR_{}", env_name(body)),
                value: v.clone(),
            }),
            None => Err(format!(
                "undefined variable ${{{body}}}; define it under vars:, or write $${{{body}}} \
                 (or ${body}) for a shell variable"
            )),
        }
    }
}

fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
