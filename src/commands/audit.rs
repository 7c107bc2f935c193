//! `pinstack audit`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::audit::{self, Mode, RepoAudit};
use crate::exit::{ExitStatus, UsageError};
use crate::output::Printer;
use crate::pins::Pins;
use crate::run::Globals;
use crate::source::PathClass;

/// Which trees to audit.
#[derive(Debug, Clone)]
pub enum Target {
    /// Workspace checkouts of these repos (all when empty).
    Workspace(Vec<String>),
    /// Any folder, against a named pin.
    Path { path: PathBuf, repo: String },
}

/// `audit [REPO...] [--path DIR --repo NAME] [--export-residual FILE]`
pub fn audit(
    p: &Printer,
    globals: &Globals,
    target: &Target,
    export: Option<&Path>,
) -> Result<ExitStatus> {
    let pins = Pins::load(&globals.pins)?;
    let ws = globals.workspace();
    let targets: Vec<(&crate::pins::Repo, PathBuf)> = match target {
        Target::Workspace(names) => pins
            .select(names)?
            .into_iter()
            .map(|r| (r, ws.checkout(&r.dir)))
            .collect(),
        Target::Path { path, repo } => vec![(pins.repo(repo)?, path.clone())],
    };
    if export.is_some() && targets.len() != 1 {
        bail!(UsageError(
            "--export-residual needs exactly one repo: name it, or use --path DIR --repo NAME"
                .to_owned()
        ));
    }
    let mut audits = Vec::new();
    for (repo, path) in targets {
        let _task = p.task(&format!("audit {}", repo.name));
        audits.push(audit::audit(&ws, &pins, repo, &path, export)?);
    }
    if p.json() {
        p.value(&json!({ "repos": audits.iter().map(to_json).collect::<Vec<_>>() }))?;
    } else {
        for a in &audits {
            p.out(&text(a))?;
        }
    }
    for a in &audits {
        if let Some(res) = &a.residual {
            let entry = format!(
                "{}: residual of {} file(s) written to {}; to adopt it, add to repo {} in {}:\n      - bundle: {}\n        sha256: {}\n        diff_sha256: {}",
                a.name,
                res.files,
                res.path.display(),
                a.name,
                pins.path.display(),
                bundle_entry_path(&pins, &res.path),
                res.sha256,
                res.diff_sha256
            );
            // The entry is a result; with --json the report's `residual` carries it.
            if p.json() {
                p.note(&entry);
            } else {
                p.out(&entry)?;
            }
        } else if export.is_some() {
            p.note(&format!(
                "{}: no residual: pin + bundles explain the whole tree; nothing written",
                a.name
            ));
        }
    }
    Ok(if audits.iter().all(RepoAudit::clean_as_pinned) {
        ExitStatus::Success
    } else {
        ExitStatus::NotAsPinned
    })
}

/// The written bundle as pins.yaml names it: relative to pins.yaml's folder (where relative
/// bundle paths are read from) when it lies below it, else absolute.
fn bundle_entry_path(pins: &Pins, written: &Path) -> String {
    match (written.canonicalize(), pins.dir.canonicalize()) {
        (Ok(file), Ok(dir)) => file
            .strip_prefix(&dir)
            .map_or(file.clone(), Path::to_path_buf)
            .display()
            .to_string(),
        _ => written.display().to_string(),
    }
}

const ORDER: [PathClass; 6] = [
    PathClass::Unpatched,
    PathClass::Drifted,
    PathClass::Residual,
    PathClass::Untracked,
    PathClass::Deleted,
    PathClass::Patched,
];

fn to_json(a: &RepoAudit) -> Value {
    let counts: serde_json::Map<String, Value> = ORDER
        .iter()
        .map(|c| {
            let n = a.files.iter().filter(|f| f.class == *c).count();
            (c.as_str().to_owned(), json!(n))
        })
        .collect();
    json!({
        "name": a.name,
        "path": a.path.display().to_string(),
        "head": a.head,
        "pinned_commit": a.pinned_commit,
        "pinned_commit_present": a.pinned_commit_present,
        "head_state": a.head_state.as_str(),
        "mode": match a.mode { Mode::Full => "full", Mode::IndexLines => "index_lines" },
        "clean_as_pinned": a.clean_as_pinned(),
        "bundles": a.bundles.iter().map(|b| json!({
            "bundle": b.bundle,
            "state": b.state.as_str(),
            "files": b.files.iter().map(|f| json!({"path": f.path, "state": f.class.as_str()})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "files": a.files.iter().map(|f| json!({"path": f.path, "class": f.class.as_str()})).collect::<Vec<_>>(),
        "counts": counts,
        "staged_apart": a.staged_apart,
        "ignored_skipped": a.ignored,
        "residual": a.residual.as_ref().map(|r| json!({
            "bundle": r.path.display().to_string(),
            "sha256": r.sha256,
            "diff_sha256": r.diff_sha256,
            "files": r.files,
        })),
    })
}

fn text(a: &RepoAudit) -> String {
    let mut out = format!("{}  {}\n", a.name, a.path.display());
    let head = a.head.as_deref().map_or("none", |h| &h[..h.len().min(12)]);
    let state = match a.head_state {
        audit::HeadState::AtPin => "at the pin".to_owned(),
        audit::HeadState::Missing => "no checkout here".to_owned(),
        s => format!(
            "{} (pin {})",
            s.as_str().replace('_', " "),
            &a.pinned_commit[..12]
        ),
    };
    out.push_str(&format!("  HEAD {head}: {state}\n"));
    if a.mode == Mode::IndexLines {
        out.push_str(
            "  the pinned commit is not in this repository: judged from the bundles' index lines \
             only (weaker: other changes are read against HEAD)\n",
        );
    }
    for b in &a.bundles {
        out.push_str(&format!(
            "  bundle {}: {}\n",
            b.bundle,
            b.state.as_str().replace('_', " ")
        ));
        if b.state == audit::BundleState::PartiallyApplied {
            for f in &b.files {
                out.push_str(&format!("    {:<9} {}\n", f.class.as_str(), f.path));
            }
        }
    }
    let counts: Vec<String> = ORDER
        .iter()
        .filter_map(|c| {
            let n = a.files.iter().filter(|f| f.class == *c).count();
            (n > 0).then(|| format!("{n} {}", c.as_str()))
        })
        .collect();
    let counts = if counts.is_empty() {
        "no changed paths".to_owned()
    } else {
        counts.join(", ")
    };
    out.push_str(&format!(
        "  {counts}; {} ignored entries skipped\n",
        a.ignored
    ));
    if !a.staged_apart.is_empty() {
        out.push_str(&format!(
            "  staged apart from the work tree ({} path(s)): the index holds content no file \
             shows, which a commit would record (`git diff --cached` shows it)\n",
            a.staged_apart.len()
        ));
        for path in &a.staged_apart {
            out.push_str(&format!("    {path}\n"));
        }
    }
    out.push_str(if a.clean_as_pinned() {
        "  clean as pinned\n"
    } else {
        "  NOT clean as pinned\n"
    });
    for c in ORDER {
        let paths: Vec<&str> = a
            .files
            .iter()
            .filter(|f| f.class == c)
            .map(|f| f.path.as_str())
            .collect();
        if paths.is_empty() {
            continue;
        }
        out.push_str(&format!("  {} ({})\n", c.as_str(), paths.len()));
        for path in paths {
            out.push_str(&format!("    {path}\n"));
        }
    }
    out.trim_end().to_owned()
}
