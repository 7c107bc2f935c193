//! `${NAME}` interpolation: recipe variables, `${env:NAME}` (with `${env:NAME:-default}`), and the
//! predefined `${workspace}` and `${recipe_dir}`. `$${` is a literal `${`.
//!
//! A value that comes from the caller's environment is data, never code: in a `run` script it is
//! not pasted into the text, it becomes a quoted reference to an environment variable that
//! carries it (`"${PINSTACK_ENV_NAME}"`). So a value holding `; rm -rf /` stays a string, and a
//! token never appears in the script, its fingerprint or a log.

use std::collections::HashMap;
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

/// The variables visible to a recipe.
pub struct Scope<'a> {
    caller: &'a HashMap<String, String>,
    vars: HashMap<String, Resolved>,
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
        Scope { caller, vars }
    }

    /// Defines a recipe variable; its value may use variables defined before it.
    pub fn define(&mut self, name: &str, value: &Spanned<String>) -> Result<(), String> {
        let mut resolved = self.resolve(value)?;
        resolved.secret |= looks_secret(name);
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

    /// Interpolates a bash script: values from the caller's environment become quoted references
    /// to environment variables, returned beside the script.
    pub fn script(&self, value: &Spanned<String>) -> Result<(String, Vec<EnvVar>), String> {
        let mut script = String::with_capacity(value.value.len());
        let mut carried: Vec<EnvVar> = Vec::new();
        for piece in self.pieces(&value.value)? {
            match piece {
                Piece::Text(t) => script.push_str(&t),
                Piece::Value { value, .. } if !value.tainted => script.push_str(&value.text),
                Piece::Value { placeholder, value } => {
                    script.push_str(&format!("\"${{{placeholder}}}\""));
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
            let value = match (self.caller.get(name), default) {
                (Some(v), _) => v.clone(),
                (None, Some(d)) => d.to_owned(),
                (None, None) => {
                    return Err(format!(
                        "undefined variable ${{env:{name}}}: it is not set in the caller's \
                         environment (give a default with ${{env:{name}:-VALUE}})"
                    ));
                }
            };
            return Ok(Piece::Value {
                placeholder: format!("PINSTACK_ENV_{}", env_name(name)),
                value: Resolved {
                    text: value,
                    tainted: true,
                    secret: looks_secret(name),
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
