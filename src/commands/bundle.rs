//! `pinstack bundle pack|unpack|show|import`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::bundle;
use crate::diff::{Change, Patch};
use crate::exit::{ExitStatus, UsageError};
use crate::fsutil::write_atomic;
use crate::output::Printer;
use crate::pins::{self, NewPatch, Pins};
use crate::run::Globals;

/// Reads a file argument, `-` meaning stdin.
fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| UsageError(format!("{}: {e}", path.display())).into())
}

/// Reads and validates a diff: it must be a git diff that changes something, with safe paths.
fn read_diff(path: &Path) -> Result<Patch> {
    let bytes = read_input(path)?;
    let patch = Patch::parse(bytes).with_context(|| format!("{}", path.display()))?;
    patch
        .check_paths()
        .with_context(|| format!("{}", path.display()))?;
    Ok(patch)
}

fn read_bundle(path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let encoded = read_input(path)?;
    let diff = bundle::decode(&encoded).with_context(|| format!("{}", path.display()))?;
    Ok((encoded, diff))
}

/// `bundle pack DIFF [-o OUT]`
pub fn pack(p: &Printer, diff: &Path, out: Option<&Path>) -> Result<ExitStatus> {
    let patch = read_diff(diff)?;
    let encoded = bundle::encode(patch.as_bytes());
    let out = match out {
        Some(o) => o.to_owned(),
        None if diff == Path::new("-") => PathBuf::from("-"),
        None => {
            let mut name = diff.as_os_str().to_owned();
            name.push(".gz.b64");
            PathBuf::from(name)
        }
    };
    let sha = bundle::sha256_hex(&encoded);
    let diff_sha = bundle::sha256_hex(patch.as_bytes());
    if out == Path::new("-") {
        p.bytes(&encoded)?;
        p.note(&format!("sha256: {sha}\ndiff_sha256: {diff_sha}"));
        return Ok(ExitStatus::Success);
    }
    write_atomic(&out, &encoded).with_context(|| format!("writing {}", out.display()))?;
    if p.json() {
        p.value(&json!({
            "bundle": out.display().to_string(),
            "sha256": sha,
            "diff_sha256": diff_sha,
            "files": patch.files.len(),
        }))?;
    } else {
        p.out(&format!(
            "{}\nsha256: {sha}\ndiff_sha256: {diff_sha}",
            out.display()
        ))?;
    }
    Ok(ExitStatus::Success)
}

/// `bundle unpack BUNDLE [-o OUT]`
pub fn unpack(p: &Printer, path: &Path, out: Option<&Path>) -> Result<ExitStatus> {
    let (_, diff) = read_bundle(path)?;
    match out {
        Some(o) if o != Path::new("-") => {
            write_atomic(o, &diff).with_context(|| format!("writing {}", o.display()))?;
            p.note(&format!("wrote {}", o.display()));
        }
        _ => p.bytes(&diff)?,
    }
    Ok(ExitStatus::Success)
}

/// `bundle show BUNDLE`
pub fn show(p: &Printer, path: &Path) -> Result<ExitStatus> {
    let encoded = read_input(path)?;
    let (diff, sha) = bundle::decode_hashed(&encoded);
    let diff = diff.with_context(|| format!("{}", path.display()))?;
    let (patch, diff_sha) = Patch::parse_alongside(diff, bundle::sha256_hex);
    let patch = patch.with_context(|| format!("{}", path.display()))?;
    let (added, removed) = patch.stats();
    let hunks: usize = patch.files.iter().map(|f| f.hunks.len()).sum();
    if p.json() {
        let files: Vec<_> = patch
            .files
            .iter()
            .map(|f| {
                let (a, r) = f.stats();
                json!({
                    "path": f.path(),
                    "old_path": f.old_path,
                    "change": change_name(f.change),
                    "binary": f.binary,
                    "old_mode": f.old_mode.map(|m| format!("{m:o}")),
                    "new_mode": f.new_mode.map(|m| format!("{m:o}")),
                    "index": f.old_id.as_ref().zip(f.new_id.as_ref()).map(|(a, b)| format!("{a}..{b}")),
                    "hunks": f.hunks.len(),
                    "added": a,
                    "removed": r,
                })
            })
            .collect();
        p.value(&json!({
            "bundle": path.display().to_string(),
            "sha256": sha,
            "diff_sha256": diff_sha,
            "files": files,
            "hunks": hunks,
            "added": added,
            "removed": removed,
        }))?;
        return Ok(ExitStatus::Success);
    }
    let mut text = format!(
        "{}\nsha256:      {sha}\ndiff_sha256: {diff_sha}\n",
        path.display()
    );
    for f in &patch.files {
        let (a, r) = f.stats();
        let name = match (f.change, &f.old_path) {
            (Change::Renamed | Change::Copied, Some(old)) => format!("{old} -> {}", f.path()),
            _ => f.path().to_owned(),
        };
        let detail = if f.binary {
            "binary".to_owned()
        } else {
            format!("{} hunks, +{a} -{r}", f.hunks.len())
        };
        let mode = match (f.old_mode, f.new_mode) {
            (Some(o), Some(n)) if o != n => format!(", mode {o:o} -> {n:o}"),
            _ => String::new(),
        };
        text.push_str(&format!(
            "  {} {name}  ({detail}{mode})\n",
            f.change.letter()
        ));
    }
    text.push_str(&format!(
        "{} files, {hunks} hunks, +{added} -{removed}",
        patch.files.len()
    ));
    p.out(&text)?;
    Ok(ExitStatus::Success)
}

fn change_name(c: Change) -> &'static str {
    match c {
        Change::Added => "added",
        Change::Deleted => "deleted",
        Change::Modified => "modified",
        Change::Renamed => "renamed",
        Change::Copied => "copied",
    }
}

/// `bundle import DIFF --repo NAME [--base-dir DIR] [--name NAME]`
pub fn import(
    p: &Printer,
    globals: &Globals,
    diff: &Path,
    repo: &str,
    base_dir: Option<&str>,
    name: Option<&str>,
) -> Result<ExitStatus> {
    let pins_file = Pins::load(&globals.pins)?;
    pins_file.repo(repo)?;
    let patch = read_diff(diff)?;
    if let Some(base) = base_dir {
        crate::diff::check_path(base.trim_matches('/')).context("--base-dir")?;
    }
    let name = match name {
        Some(n) => n.to_owned(),
        None => stem(diff)?,
    };
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        bail!(UsageError(format!(
            "bundle name {name:?} is not a plain file name; choose one with --name"
        )));
    }
    let encoded = bundle::encode(patch.as_bytes());
    let sha = bundle::sha256_hex(&encoded);
    let diff_sha = bundle::sha256_hex(patch.as_bytes());
    let relative = format!("patches/{name}.patch.gz.b64");
    let target = pins_file.dir.join(&relative);
    if let Ok(existing) = std::fs::read(&target)
        && existing != encoded
    {
        bail!(UsageError(format!(
            "{} already exists with other content; choose another name with --name",
            target.display()
        )));
    }
    let pinned = pins_file.repo(repo)?;
    if pinned.patches.iter().any(|pp| pp.diff_sha256 == diff_sha) {
        p.note(&format!(
            "{repo} already has this diff (diff_sha256 {diff_sha}); nothing to do"
        ));
        return Ok(ExitStatus::Success);
    }
    let text = std::fs::read_to_string(&globals.pins)
        .with_context(|| format!("reading {}", globals.pins.display()))?;
    let base_dir = base_dir.map(|b| b.trim_matches('/'));
    let edited = pins::add_patch(
        &text,
        &globals.pins,
        repo,
        &NewPatch {
            bundle: &relative,
            sha256: &sha,
            diff_sha256: &diff_sha,
            base_dir,
        },
    )?;
    let reloaded = Pins::parse(&globals.pins, edited.as_bytes())
        .context("the edited pins.yaml does not read back; nothing was written")?;
    let added = reloaded
        .repo(repo)?
        .patches
        .last()
        .map(|pp| pp.diff_sha256.clone());
    if added.as_deref() != Some(diff_sha.as_str()) {
        bail!("the edited pins.yaml does not hold the new bundle; nothing was written");
    }
    write_atomic(&target, &encoded).with_context(|| format!("writing {}", target.display()))?;
    crate::fsutil::write_atomic_keeping_link(&globals.pins, edited.as_bytes())
        .with_context(|| format!("writing {}", globals.pins.display()))?;
    if p.json() {
        p.value(&json!({
            "repo": repo,
            "bundle": relative,
            "sha256": sha,
            "diff_sha256": diff_sha,
            "base_dir": base_dir,
        }))?;
    } else {
        p.out(&format!(
            "{repo}: added {relative}\nsha256: {sha}\ndiff_sha256: {diff_sha}"
        ))?;
    }
    Ok(ExitStatus::Success)
}

fn stem(diff: &Path) -> Result<String> {
    if diff == Path::new("-") {
        bail!(UsageError(
            "a diff read from stdin needs a name: pass --name".to_owned()
        ));
    }
    let file = diff
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    let stem = [".patch", ".diff"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(file);
    Ok(stem.to_owned())
}
