//! The command layer: domain commands in, an exit status out.

use std::path::PathBuf;

use anyhow::Result;

use crate::commands;
pub use crate::commands::audit::Target as AuditTarget;
use crate::exit::ExitStatus;
use crate::output::Printer;
use crate::source::Workspace;

/// Options every command shares.
#[derive(Debug, Clone)]
pub struct Globals {
    pub pins: PathBuf,
    /// `--workspace` when given (a recipe's `workspace:` applies otherwise).
    pub workspace: Option<PathBuf>,
    /// The recipe of plan, up, why, logs and reset.
    pub recipe: PathBuf,
    pub cache: PathBuf,
    pub json: bool,
    pub quiet: bool,
}

impl Globals {
    /// The workspace these options name.
    pub fn workspace(&self) -> Workspace {
        Workspace {
            root: self
                .workspace
                .clone()
                .unwrap_or_else(|| PathBuf::from("workspace")),
            cache: self.cache.clone(),
        }
    }
}

/// Choices for `switch`.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    pub profile: String,
    /// `systemd` (the installed unit) or `process` (a pidfile and a process group).
    pub supervisor: Supervisor,
    pub allow_experimental: bool,
    /// Readiness deadline; the profile's `ready_timeout` when `None`.
    pub timeout: Option<std::time::Duration>,
    /// The install prefix the systemd supervisor's units were rendered for.
    pub prefix: PathBuf,
}

/// Who keeps the server running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervisor {
    Systemd,
    Process,
}

/// Choices for `status`.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// Print the server log's last lines.
    pub tail: Option<usize>,
    pub prefix: PathBuf,
}

/// A command, as plain values.
#[derive(Debug, Clone)]
pub enum Command {
    BundlePack {
        diff: PathBuf,
        out: Option<PathBuf>,
    },
    BundleUnpack {
        bundle: PathBuf,
        out: Option<PathBuf>,
    },
    BundleShow {
        bundle: PathBuf,
    },
    BundleImport {
        diff: PathBuf,
        repo: String,
        base_dir: Option<String>,
        name: Option<String>,
    },
    Fetch {
        repos: Vec<String>,
    },
    Apply {
        repos: Vec<String>,
        force: bool,
    },
    Check {
        repos: Vec<String>,
        offline: bool,
        junit: Option<PathBuf>,
    },
    Lock {
        offline: bool,
    },
    Demo {
        dir: Option<PathBuf>,
    },
    Audit {
        target: commands::audit::Target,
        export_residual: Option<PathBuf>,
    },
    Doctor {
        root: PathBuf,
        context: u32,
    },
    Switch(SwitchOptions),
    Status(StatusOptions),
    InstallService {
        prefix: PathBuf,
        user: Option<String>,
    },
    VerifyInstall {
        prefix: PathBuf,
    },
    ProfileList,
    ProfileShow {
        name: String,
        check_flags: bool,
    },
    Plan,
    Up(crate::engine::UpOptions),
    Why {
        id: String,
    },
    Logs {
        id: String,
        follow: bool,
    },
    Reset {
        ids: Vec<String>,
        all: bool,
    },
}

/// Runs one command.
pub fn run(globals: &Globals, command: Command) -> Result<ExitStatus> {
    // Objects are read as git reads them: git hashed each one when it fetched it (index-pack),
    // and zlib checks each object's stream as it is inflated. Hashing every object again on
    // every read is libgit2's default, not git's; it costs a tenth of a `check` and most of the
    // user time of a fresh checkout.
    git2::opts::strict_hash_verification(false);
    let printer = Printer::new(globals.json, globals.quiet);
    let p = &printer;
    match command {
        Command::BundlePack { diff, out } => commands::bundle::pack(p, &diff, out.as_deref()),
        Command::BundleUnpack { bundle, out } => {
            commands::bundle::unpack(p, &bundle, out.as_deref())
        }
        Command::BundleShow { bundle } => commands::bundle::show(p, &bundle),
        Command::BundleImport {
            diff,
            repo,
            base_dir,
            name,
        } => commands::bundle::import(
            p,
            globals,
            &diff,
            &repo,
            base_dir.as_deref(),
            name.as_deref(),
        ),
        Command::Fetch { repos } => commands::source::fetch(p, globals, &repos),
        Command::Apply { repos, force } => commands::source::apply(p, globals, &repos, force),
        Command::Check {
            repos,
            offline,
            junit,
        } => commands::source::check(p, globals, &repos, offline, junit.as_deref()),
        Command::Lock { offline } => commands::source::lock(p, globals, offline),
        Command::Demo { dir } => crate::demo::run(p, dir.as_deref()),
        Command::Audit {
            target,
            export_residual,
        } => commands::audit::audit(p, globals, &target, export_residual.as_deref()),
        Command::Doctor { root, context } => commands::doctor::doctor(
            p,
            &crate::doctor::DoctorOptions {
                root,
                workspace: globals.workspace().root,
                context,
            },
        ),
        Command::Switch(opts) => commands::switch::switch(p, globals, &opts),
        Command::Status(opts) => commands::switch::status(p, globals, &opts),
        Command::InstallService { prefix, user } => {
            commands::install::install_service(p, globals, &prefix, user.as_deref())
        }
        Command::VerifyInstall { prefix } => commands::install::verify_install(p, globals, &prefix),
        Command::ProfileList => commands::serve::list(p, globals),
        Command::ProfileShow { name, check_flags } => {
            commands::serve::show(p, globals, &name, check_flags)
        }
        Command::Plan => commands::recipe::plan(p, globals),
        Command::Up(opts) => commands::recipe::up(p, globals, &opts),
        Command::Why { id } => commands::recipe::why(p, globals, &id),
        Command::Logs { id, follow } => commands::recipe::logs(p, globals, &id, follow),
        Command::Reset { ids, all } => commands::recipe::reset(p, globals, &ids, all),
    }
}
