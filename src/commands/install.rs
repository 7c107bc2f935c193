//! `pinstack install-service` and `pinstack verify-install`.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::exit::ExitStatus;
use crate::output::Printer;
use crate::run::Globals;
use crate::serve::install::{self, FileState, InstallError, Layout, Service, Source};

/// `install-service [--prefix DIR] [--user NAME]`
pub fn install_service(
    p: &Printer,
    globals: &Globals,
    prefix: &Path,
    user: Option<&str>,
) -> Result<ExitStatus> {
    // Refused before anything is read: the host's units are root's.
    if install::is_host_root(prefix) && !rustix::process::geteuid().is_root() {
        return Err(InstallError::NotRoot {
            prefix: prefix.to_owned(),
        }
        .into());
    }
    let prefix =
        std::path::absolute(prefix).with_context(|| format!("the prefix {}", prefix.display()))?;
    let recipe = super::recipe::load_recipe(globals)?;
    let layout = Layout::new(&prefix, &recipe.name)?;
    let sudo_user = std::env::var("SUDO_USER").ok();
    let user = install::service_user(user, sudo_user.as_deref())?;
    let pins = recipe
        .pins
        .clone()
        .or_else(|| globals.pins.exists().then(|| globals.pins.clone()));
    let workspace = std::path::absolute(&recipe.workspace)
        .with_context(|| format!("the workspace {}", recipe.workspace.display()))?;
    // Not while an `up` rebuilds the venv it hashes, or another install writes the same files
    // (a workspace no run has used yet is not made for it).
    let _lock = if workspace.join(".pinstack").is_dir() {
        Some(crate::lock::acquire(
            &workspace,
            "pinstack install-service",
        )?)
    } else {
        None
    };
    let service = Service {
        recipe: Source::read(&recipe.path)?,
        pins: pins.as_deref().map(Source::read).transpose()?,
        profiles: &recipe.profiles,
        workspace,
        user,
    };
    let files = install::render(&layout, &service)?;
    let inventory = {
        let _task = p.task("hashing the venv and the native libraries the server loads");
        install::inventory(&recipe.profiles, &service.workspace)?
    };
    let installed = install::install(
        &layout,
        &service,
        &files,
        inventory,
        crate::fsutil::utc_stamp(),
    )?;
    let host = layout.is_host_root();
    let reload = host.then(install::daemon_reload);
    let reloaded = reload.as_ref().map(Result::is_ok);
    let manifest_path = layout.on_disk(&layout.manifest());
    let m = &installed.manifest;

    if p.json() {
        let files: Vec<_> = installed
            .files
            .iter()
            .map(|(target, state)| {
                json!({
                    "path": target,
                    "on_disk": layout.on_disk(target),
                    "state": state.as_str(),
                })
            })
            .collect();
        p.value(&json!({
            "recipe": layout.recipe(),
            "prefix": layout.prefix(),
            "user": m.user,
            "unit": m.unit,
            "profiles": recipe.profiles.iter().map(|x| layout.unit(&x.name)).collect::<Vec<_>>(),
            "files": files,
            "manifest": manifest_path,
            "venv_files": m.venv_files.len(),
            "native_libraries": m.native.len(),
            "daemon_reload": reloaded,
            "saved": installed.saved.iter().map(|(t, c)| json!({"path": t.display().to_string(), "saved_as": c.display().to_string()})).collect::<Vec<_>>(),
        }))?;
    } else {
        let mut text = format!(
            "recipe {} rendered under {} (the server runs as {}):\n",
            layout.recipe(),
            layout.prefix().display(),
            m.user
        );
        for (target, state) in &installed.files {
            text.push_str(&format!(
                "  {:<9}  {}\n",
                state.as_str(),
                layout.on_disk(target).display()
            ));
        }
        let count = |s: FileState| installed.files.iter().filter(|(_, x)| *x == s).count();
        text.push_str(&format!(
            "{} created, {} changed, {} unchanged{}\n",
            count(FileState::Created),
            count(FileState::Changed),
            count(FileState::Unchanged),
            match count(FileState::Removed) {
                0 => String::new(),
                n => format!(", {n} removed"),
            }
        ));
        text.push_str(&format!(
            "manifest {}: {} generated files, {} venv files, {} native libraries under {} folders",
            manifest_path.display(),
            m.generated.len(),
            m.venv_files.len(),
            m.native.len(),
            m.native_roots.len()
        ));
        p.out(&text)?;
    }

    for (target, copy) in &installed.saved {
        p.note(&format!(
            "{} had been edited since the last install: your version is saved as {}",
            layout.on_disk(target).display(),
            copy.display()
        ));
    }
    for (target, state) in &installed.files {
        if *state == FileState::Kept {
            p.note(&format!(
                "{} is no longer rendered but was edited since the last install: left in place",
                layout.on_disk(target).display()
            ));
        }
    }
    if m.venvs.is_empty() {
        p.note("no profile runs <venv>/bin/vllm: no venv recorded in the manifest");
    }
    for v in &m.venvs {
        if !v.is_dir() {
            p.note(&format!(
                "the venv {} does not exist yet: nothing of it recorded (run install-service again after `pinstack up`)",
                v.display()
            ));
        }
    }
    let first = recipe
        .profiles
        .iter()
        .find(|x| x.status == crate::serve::ProfileStatus::Production)
        .unwrap_or(&recipe.profiles[0]);
    match reload {
        Some(Ok(())) => p.note(&format!(
            "systemd reloaded. Start a profile with `pinstack switch {}`, or by hand: \
             `systemctl enable --now {}`",
            first.name,
            layout.unit(&first.name)
        )),
        Some(Err(e)) => return Err(e.into()),
        None => p.note(&format!(
            "{} is not the host's root: systemd was not told. Paths inside the files are the \
             host's ({}, {}): use the folder as an image root, or copy its tree to /",
            layout.prefix().display(),
            layout.config_dir().display(),
            layout.launcher().display()
        )),
    }
    Ok(ExitStatus::Success)
}

/// `verify-install [--prefix DIR]`
pub fn verify_install(p: &Printer, globals: &Globals, prefix: &Path) -> Result<ExitStatus> {
    let prefix =
        std::path::absolute(prefix).with_context(|| format!("the prefix {}", prefix.display()))?;
    let recipe = super::recipe::load_recipe(globals)?;
    let layout = Layout::new(&prefix, &recipe.name)?;
    let v = {
        let _task = p.task("hashing the install, the venv and the native libraries");
        install::verify(&layout)?
    };
    let m = &v.manifest;
    if p.json() {
        let changed: Vec<_> = v
            .changes
            .iter()
            .map(|c| json!({"path": c.path, "kind": c.kind.as_str(), "state": c.state.as_str()}))
            .collect();
        p.value(&json!({
            "ok": v.changes.is_empty(),
            "manifest": v.manifest_path,
            "changed": changed,
        }))?;
    } else if v.changes.is_empty() {
        p.out(&format!(
            "the install of recipe {} matches {}: {} generated files, {} venv files, {} native libraries",
            m.recipe_name,
            v.manifest_path.display(),
            m.generated.len(),
            m.venv_files.len(),
            m.native.len()
        ))?;
    } else {
        let mut text = format!(
            "the install of recipe {} ({}, for {}) changed since {}:\n",
            m.recipe_name,
            m.installed_at,
            m.user,
            v.manifest_path.display()
        );
        for c in &v.changes {
            text.push_str(&format!(
                "  {:<8}  {:<9}  {}\n",
                c.state.as_str(),
                c.kind.as_str(),
                c.path.display()
            ));
        }
        text.push_str(&format!("{} changes", v.changes.len()));
        p.out(&text)?;
    }
    // The install may be stale even when nothing on disk moved.
    let stale = |what: &str, recorded: Option<&Source>, path: Option<&Path>| match (recorded, path)
    {
        (Some(r), Some(path)) if Source::read(path).is_ok_and(|now| now.sha256 != r.sha256) => {
            p.note(&format!(
                "{what} {} changed since the install: run install-service again",
                path.display()
            ));
        }
        _ => {}
    };
    stale("the recipe", Some(&m.recipe), Some(&m.recipe.path));
    stale(
        "the pins file",
        m.pins.as_ref(),
        m.pins.as_ref().map(|s| s.path.as_path()),
    );
    Ok(if v.changes.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::NotAsPinned
    })
}
