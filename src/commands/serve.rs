//! `pinstack profile list|show`: the serving profiles of a recipe.

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::exit::{ExitStatus, UsageError};
use crate::output::Printer;
use crate::recipe::looks_secret;
use crate::run::Globals;
use crate::serve::{self, Profile};

fn to_json(p: &Profile) -> Value {
    json!({
        "name": p.name,
        "status": p.status.as_str(),
        "description": p.description,
        "source_state": p.source_state,
        "model": p.model,
        "model_id": p.model_id,
        "base_url": p.base_url(),
        "max_model_len": p.max_model_len,
        "command": crate::serve::supervisor::masked_command(&p.command()),
        "env": p.env.iter().map(|(k, v)| json!({"name": k, "value": shown(k, v)})).collect::<Vec<_>>(),
        "smoke": {"prompt": p.smoke.prompt, "expect": p.smoke.expect, "max_tokens": p.smoke.max_tokens},
        "ready_timeout_s": p.ready_timeout.as_secs(),
    })
}

fn shown<'a>(name: &str, value: &'a str) -> &'a str {
    if looks_secret(name) { "***" } else { value }
}

/// `profile list`
pub fn list(p: &Printer, globals: &Globals) -> Result<ExitStatus> {
    let recipe = super::recipe::load_recipe(globals)?;
    if p.json() {
        p.value(&json!({"profiles": recipe.profiles.iter().map(to_json).collect::<Vec<_>>()}))?;
        return Ok(ExitStatus::Success);
    }
    if recipe.profiles.is_empty() {
        p.out(&format!(
            "{} has no serving profiles",
            recipe.path.display()
        ))?;
        return Ok(ExitStatus::Success);
    }
    let width = recipe
        .profiles
        .iter()
        .map(|x| x.name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for x in &recipe.profiles {
        text.push_str(&format!(
            "{:<width$}  {:<12} {:>6} tokens  {}  {}\n",
            x.name,
            x.status.as_str(),
            x.max_model_len,
            x.source_state.as_deref().unwrap_or("-"),
            x.description
        ));
    }
    p.out(text.trim_end())?;
    Ok(ExitStatus::Success)
}

/// `profile show NAME [--check-flags]`
pub fn show(p: &Printer, globals: &Globals, name: &str, check_flags: bool) -> Result<ExitStatus> {
    let recipe = super::recipe::load_recipe(globals)?;
    let Some(profile) = recipe.profiles.iter().find(|x| x.name == name) else {
        let known: Vec<&str> = recipe.profiles.iter().map(|x| x.name.as_str()).collect();
        bail!(UsageError(format!(
            "unknown profile {name:?}; {} has: {}",
            recipe.path.display(),
            known.join(", ")
        )));
    };
    let unknown = if check_flags {
        Some(serve::unknown_flags(profile).map_err(UsageError)?)
    } else {
        None
    };
    if p.json() {
        let mut v = to_json(profile);
        if let Some(u) = &unknown {
            v["unknown_flags"] = json!(u);
        }
        p.value(&v)?;
    } else {
        let mut text = format!(
            "profile {} ({}){}\n",
            profile.name,
            profile.status.as_str(),
            if profile.description.is_empty() {
                String::new()
            } else {
                format!(": {}", profile.description)
            }
        );
        if let Some(s) = &profile.source_state {
            text.push_str(&format!("source state: {s}\n"));
        }
        text.push_str(&format!(
            "ready when {}/v1/models reports {} with max_model_len {} and a completion of {:?} contains {:?} (within {}s)\n",
            profile.base_url(),
            profile.model_id,
            profile.max_model_len,
            profile.smoke.prompt,
            profile.smoke.expect,
            profile.ready_timeout.as_secs()
        ));
        text.push_str("environment (nothing else is inherited):\n");
        for (k, v) in &profile.env {
            text.push_str(&format!("  {k}={}\n", shown(k, v)));
        }
        text.push_str(&format!(
            "command:\n  {}",
            crate::engine::runner_shell_words(&crate::serve::supervisor::masked_command(
                &profile.command()
            ))
        ));
        p.out(&text)?;
    }
    if let Some(u) = unknown {
        if !u.is_empty() {
            p.note(&format!(
                "{} serve --help does not know: {}; fix the profile before switching to it",
                profile.vllm.display(),
                u.join(", ")
            ));
            return Ok(ExitStatus::NotAsPinned);
        }
        p.note("every flag is known to the installed vLLM");
    }
    Ok(ExitStatus::Success)
}
