//! `pinstack fetch|apply|check|lock`.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::exit::ExitStatus;
use crate::git::Fetched;
use crate::output::Printer;
use crate::pins::Pins;
use crate::report;
use crate::run::Globals;
use crate::source::{self, ApplyOptions, ApplyOutcome, CheckOptions};

/// `fetch [REPO...]`
pub fn fetch(p: &Printer, globals: &Globals, names: &[String]) -> Result<ExitStatus> {
    let pins = Pins::load(&globals.pins)?;
    let ws = globals.workspace();
    let mut rows = Vec::new();
    // Names are checked before the lock is taken: bad input writes nothing.
    let selected = pins.select(names)?;
    let _lock = crate::lock::acquire(&ws.root, "pinstack fetch")?;
    for repo in selected {
        let report = {
            let _task = p.task(&format!("fetch {} @ {}", repo.name, short(&repo.commit)));
            source::fetch(&ws, repo)?
        };
        let how = match report.fetched {
            None => "already at the pin (no network)",
            Some(Fetched::Present) => "checked out (commit already present)",
            Some(Fetched::Shallow) => "fetched (shallow, by commit)",
            Some(Fetched::Full) => "fetched (full: the server refused a fetch by commit)",
            Some(Fetched::WithHistory) => "fetched (by commit, with its history)",
        };
        let subs = if report.submodules_updated {
            ", submodules updated"
        } else {
            ""
        };
        if !p.json() {
            p.out(&format!(
                "{:<18} {} {how}{subs}",
                report.repo,
                short(&report.commit)
            ))?;
        }
        rows.push(json!({
            "name": report.repo,
            "path": report.path.display().to_string(),
            "commit": report.commit,
            "fetched": report.fetched.map(|f| format!("{f:?}").to_lowercase()),
            "submodules_updated": report.submodules_updated,
        }));
    }
    if p.json() {
        p.value(&json!({ "repos": rows }))?;
    }
    Ok(ExitStatus::Success)
}

/// `apply [REPO...] [--force]`
pub fn apply(p: &Printer, globals: &Globals, names: &[String], force: bool) -> Result<ExitStatus> {
    let pins = Pins::load(&globals.pins)?;
    let ws = globals.workspace();
    let mut rows = Vec::new();
    let selected = pins.select(names)?;
    let _lock = crate::lock::acquire(&ws.root, "pinstack apply")?;
    for repo in selected {
        let report = {
            let _task = p.task(&format!("apply {}", repo.name));
            source::apply(&ws, &pins, repo, ApplyOptions { force })?
        };
        if let Some(rescue) = &report.rescue {
            p.note(&format!(
                "{}: local changes saved to {} (see the .txt beside it to restore them)",
                repo.name,
                rescue.display()
            ));
        }
        let what = match &report.outcome {
            ApplyOutcome::Applied { paths } => format!(
                "applied {} bundle(s), {paths} path(s) changed{}",
                report.bundles.len(),
                if report.replaced_previous {
                    " (replacing its own earlier bundles)"
                } else {
                    ""
                }
            ),
            ApplyOutcome::AlreadyApplied => "already applied, left alone".to_owned(),
            ApplyOutcome::NoBundles => "no bundles, at the pin".to_owned(),
        };
        if !p.json() {
            p.out(&format!(
                "{:<18} {} {what}; tree {}",
                report.repo,
                short(&repo.commit),
                short(&report.tree)
            ))?;
        }
        rows.push(json!({
            "name": report.repo,
            "path": report.path.display().to_string(),
            "commit": repo.commit,
            "tree": report.tree,
            "bundles": report.bundles,
            "outcome": match report.outcome {
                ApplyOutcome::Applied { .. } => "applied",
                ApplyOutcome::AlreadyApplied => "already_applied",
                ApplyOutcome::NoBundles => "no_bundles",
            },
            "rescue": report.rescue.map(|r| r.display().to_string()),
            "replaced_previous": report.replaced_previous,
        }));
    }
    if p.json() {
        p.value(&json!({ "repos": rows }))?;
    }
    Ok(ExitStatus::Success)
}

/// `check [REPO...] [--offline] [--junit FILE]`
pub fn check(
    p: &Printer,
    globals: &Globals,
    names: &[String],
    offline: bool,
    junit: Option<&Path>,
) -> Result<ExitStatus> {
    let pins = Pins::load(&globals.pins)?;
    let ws = globals.workspace();
    let results = {
        let _task = p.task("check bundles against their pins");
        source::check(&ws, &pins, names, CheckOptions { offline })?
    };
    if let Some(path) = junit {
        crate::fsutil::write_atomic(path, report::junit(&results).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if p.json() {
        p.value(&report::check_json(&results))?;
    } else {
        p.out(&report::check_text(&results))?;
    }
    Ok(report::check_status(&results))
}

/// `lock [--offline]`
pub fn lock(p: &Printer, globals: &Globals, offline: bool) -> Result<ExitStatus> {
    let pins = Pins::load(&globals.pins)?;
    let ws = globals.workspace();
    let (results, written) = {
        let _task = p.task("compute the tree of every repo");
        source::lock(&ws, &pins, CheckOptions { offline })?
    };
    let applies = results.iter().all(|r| {
        r.bundles
            .iter()
            .all(|b| b.status == source::BundleStatus::Ok)
    });
    if !applies {
        if p.json() {
            p.value(&report::check_json(&results))?;
        } else {
            p.out(&report::check_text(&results))?;
            p.note("nothing was locked: fix the bundles above first");
        }
        return Ok(report::check_status(&results));
    }
    if p.json() {
        let rows: Vec<_> = results
            .iter()
            .map(|r| json!({"name": r.name, "commit": r.commit, "tree": r.tree, "previous": r.locked_tree}))
            .collect();
        p.value(&json!({ "written": written, "repos": rows }))?;
    } else {
        for r in &results {
            let tree = r.tree.as_deref().unwrap_or_default();
            let change = match r.locked_tree.as_deref() {
                Some(old) if old == tree => "unchanged".to_owned(),
                Some(old) => format!("was {}", short(old)),
                None => "new".to_owned(),
            };
            p.out(&format!("{:<18} tree {tree} ({change})", r.name))?;
        }
        if written {
            p.note(&format!("updated {}", globals.pins.display()));
        }
    }
    Ok(ExitStatus::Success)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
