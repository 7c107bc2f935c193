//! The command line: clap types, turned once into plain domain values.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::UpOptions;
use crate::exit::EXIT_CODES;
use crate::run::{AuditTarget, Command, Globals, StatusOptions, Supervisor, SwitchOptions};

/// Bring up a pinned, patched LLM serving stack reproducibly, and keep it honest afterwards.
#[derive(Parser, Debug)]
#[command(name = "pinstack", version, after_help = EXIT_CODES, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Args, Debug)]
struct GlobalArgs {
    /// The pins file.
    #[arg(long, global = true, value_name = "FILE", default_value = "pins.yaml")]
    pins: PathBuf,
    /// The workspace root: checkouts go to <DIR>/src, rescue bundles to <DIR>/rescue.
    #[arg(long, global = true, value_name = "DIR", env = "PINSTACK_WORKSPACE")]
    workspace: Option<PathBuf>,
    /// The recipe of plan, up, why, logs, reset, profile, switch, status and install-service.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "PINSTACK_RECIPE",
        default_value = "recipes/minimax-m27-b70.yaml"
    )]
    recipe: PathBuf,
    /// The object cache of `check` and `lock` [default: $XDG_CACHE_HOME/pinstack].
    #[arg(long, global = true, value_name = "DIR", env = "PINSTACK_CACHE")]
    cache: Option<PathBuf>,
    /// Report results as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Print no progress on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum CliCommand {
    /// Pack, unpack, show and import patch bundles (base64 of gzip of a git diff).
    #[command(subcommand, after_help = EXIT_CODES)]
    Bundle(BundleCommand),
    /// Check out each repo at its pinned commit (detached), fetching only what is needed.
    #[command(after_help = EXIT_CODES)]
    Fetch {
        /// Repos to fetch [default: all].
        repos: Vec<String>,
    },
    /// Fetch, then apply each repo's bundles: every file or none; idempotent.
    #[command(after_help = EXIT_CODES)]
    Apply {
        /// Repos to apply [default: all].
        repos: Vec<String>,
        /// Save local changes as a rescue bundle under <workspace>/rescue, then reset and apply.
        #[arg(long)]
        force: bool,
    },
    /// Prove, without touching any checkout, that every bundle applies to its pin.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// Repos to check [default: all].
        repos: Vec<String>,
        /// Use only objects already in the cache or the workspace: no network.
        #[arg(long)]
        offline: bool,
        /// Also write a JUnit XML report to FILE.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Record each repo's tree after all bundles as `tree:` in pins.yaml.
    #[command(after_help = EXIT_CODES)]
    Lock {
        /// Use only objects already in the cache or the workspace: no network.
        #[arg(long)]
        offline: bool,
    },
    /// Explain a tree as pin + bundles + residual, without network; never changes the tree.
    #[command(after_help = EXIT_CODES)]
    Audit {
        /// Workspace repos to audit [default: all].
        #[arg(conflicts_with = "path")]
        repos: Vec<String>,
        /// Audit this folder instead of a workspace checkout (with --repo).
        #[arg(long, value_name = "DIR", requires = "repo")]
        path: Option<PathBuf>,
        /// The pinned repo the --path folder is a checkout of.
        #[arg(long, value_name = "NAME", requires = "path")]
        repo: Option<String>,
        /// Write everything no bundle explains as a bundle to FILE.
        #[arg(long, value_name = "FILE")]
        export_residual: Option<PathBuf>,
    },
    /// Is this host ready for the B70 stack? Each check: pass, warn or fail, with the fix.
    #[command(after_help = EXIT_CODES)]
    Doctor {
        /// Read /etc, /proc, /sys, /var/lib/dpkg and /opt under DIR (a mounted image, a test root).
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// The serving context length to check for (32768 needs the display off the B70s).
        #[arg(long, value_name = "TOKENS", default_value_t = 32768)]
        context: u32,
    },
    /// The recipe's serving profiles: the resolved command line and environment of each.
    #[command(subcommand, after_help = EXIT_CODES)]
    Profile(ProfileCommand),
    /// Stop the server pinstack owns, start a profile, wait until it is ready; roll back on failure.
    #[command(after_help = EXIT_CODES)]
    Switch {
        profile: String,
        /// Who keeps the server running.
        #[arg(long, value_enum, default_value = "systemd")]
        supervisor: SupervisorArg,
        /// Allow a profile marked experimental.
        #[arg(long)]
        allow_experimental: bool,
        /// Readiness deadline (90s, 30m) [default: the profile's ready_timeout].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<std::time::Duration>,
        /// The install prefix of the systemd units.
        #[arg(long, value_name = "DIR", default_value = "/")]
        prefix: PathBuf,
    },
    /// The current profile, its health, and whether what runs matches it.
    #[command(after_help = EXIT_CODES)]
    Status {
        /// Also print the server log's last N lines.
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "40")]
        tail: Option<usize>,
        /// The install prefix of the systemd units.
        #[arg(long, value_name = "DIR", default_value = "/")]
        prefix: PathBuf,
    },
    /// Render the launcher, one env file per profile and the systemd unit, with a manifest.
    #[command(after_help = EXIT_CODES)]
    InstallService {
        /// Where to render (a root folder: etc/, usr/, var/ go under it).
        #[arg(long, value_name = "DIR", default_value = "/")]
        prefix: PathBuf,
        /// The user the server runs as [default: the user who called sudo].
        #[arg(long)]
        user: Option<String>,
    },
    /// Report every generated file, venv file or native library changed since install-service.
    #[command(after_help = EXIT_CODES)]
    VerifyInstall {
        #[arg(long, value_name = "DIR", default_value = "/")]
        prefix: PathBuf,
    },
    /// Every step of the recipe with its status (done, pending, stale, failed) and the reason.
    #[command(after_help = EXIT_CODES)]
    Plan {
        /// The recipe [default: --recipe].
        recipe: Option<PathBuf>,
    },
    /// Run every step that is not done, in order; a rerun does only what changed.
    #[command(after_help = EXIT_CODES)]
    Up {
        /// The recipe [default: --recipe].
        recipe: Option<PathBuf>,
        /// Run this step and every step after it, done or not.
        #[arg(long, value_name = "ID", conflicts_with = "only")]
        from: Option<String>,
        /// Run only this step, done or not (the steps it needs must be done).
        #[arg(long, value_name = "ID")]
        only: Option<String>,
        /// Print each command with its resolved environment; run nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Say in plain words what changed since a step's last successful run, and whether it runs.
    #[command(after_help = EXIT_CODES)]
    Why { id: String },
    /// Print a step's full output from its last run.
    #[command(after_help = EXIT_CODES)]
    Logs {
        id: String,
        /// Keep printing while the step runs.
        #[arg(long, short)]
        follow: bool,
    },
    /// Forget steps' checkpoints, so they run again.
    #[command(after_help = EXIT_CODES)]
    Reset {
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Forget every step of the recipe.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Walk the whole pipeline (sources, recipe engine, serving) on made-up repositories: no hardware, no network.
    #[command(after_help = EXIT_CODES)]
    Demo {
        /// Keep the demo in DIR (created, must be empty) instead of a temporary folder.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SupervisorArg {
    Systemd,
    Process,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::recipe::parse_duration(s)
}

#[derive(Subcommand, Debug)]
enum ProfileCommand {
    /// Every profile with its status, context length and source state.
    List,
    /// One profile: its command line, environment and readiness checks.
    Show {
        name: String,
        /// Check every flag against the installed vLLM's `vllm serve --help` (exit 1 if any is unknown).
        #[arg(long)]
        check_flags: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BundleCommand {
    /// Encode a git diff as a bundle (deterministic: gzip mtime 0, base64 wrapped at 76).
    Pack {
        /// The diff, or - for stdin.
        diff: PathBuf,
        /// Where to write the bundle, or - for stdout [default: DIFF.gz.b64].
        #[arg(short, long, value_name = "OUT")]
        out: Option<PathBuf>,
    },
    /// Decode a bundle back to its diff.
    Unpack {
        bundle: PathBuf,
        /// Where to write the diff [default: stdout].
        #[arg(short, long, value_name = "OUT")]
        out: Option<PathBuf>,
    },
    /// Show a bundle's files, hunks, line counts and both hashes.
    Show { bundle: PathBuf },
    /// Pack a diff into patches/<name>.patch.gz.b64 and add it to a repo in pins.yaml.
    Import {
        /// The diff, or - for stdin.
        diff: PathBuf,
        /// The pinned repo the diff applies to.
        #[arg(long)]
        repo: String,
        /// The folder of the repo the diff's paths are relative to.
        #[arg(long, value_name = "DIR")]
        base_dir: Option<String>,
        /// The bundle's name [default: the diff's file name without .patch/.diff].
        #[arg(long)]
        name: Option<String>,
    },
}

/// Parses the process arguments (exits with 2 and a usage message on bad usage).
pub fn parse() -> (Globals, Command) {
    let cli = Cli::parse();
    let g = cli.globals;
    let cache = g.cache.unwrap_or_else(default_cache);
    let mut globals = Globals {
        pins: g.pins,
        workspace: g.workspace,
        recipe: g.recipe,
        cache,
        json: g.json,
        quiet: g.quiet,
    };
    let mut recipe_arg = None;
    let command = match cli.command {
        CliCommand::Bundle(b) => match b {
            BundleCommand::Pack { diff, out } => Command::BundlePack { diff, out },
            BundleCommand::Unpack { bundle, out } => Command::BundleUnpack { bundle, out },
            BundleCommand::Show { bundle } => Command::BundleShow { bundle },
            BundleCommand::Import {
                diff,
                repo,
                base_dir,
                name,
            } => Command::BundleImport {
                diff,
                repo,
                base_dir,
                name,
            },
        },
        CliCommand::Fetch { repos } => Command::Fetch { repos },
        CliCommand::Apply { repos, force } => Command::Apply { repos, force },
        CliCommand::Check {
            repos,
            offline,
            junit,
        } => Command::Check {
            repos,
            offline,
            junit,
        },
        CliCommand::Lock { offline } => Command::Lock { offline },
        CliCommand::Demo { dir } => Command::Demo { dir },
        CliCommand::Doctor { root, context } => Command::Doctor { root, context },
        CliCommand::Switch {
            profile,
            supervisor,
            allow_experimental,
            timeout,
            prefix,
        } => Command::Switch(SwitchOptions {
            profile,
            supervisor: match supervisor {
                SupervisorArg::Systemd => Supervisor::Systemd,
                SupervisorArg::Process => Supervisor::Process,
            },
            allow_experimental,
            timeout,
            prefix,
        }),
        CliCommand::Status { tail, prefix } => Command::Status(StatusOptions { tail, prefix }),
        CliCommand::InstallService { prefix, user } => Command::InstallService { prefix, user },
        CliCommand::VerifyInstall { prefix } => Command::VerifyInstall { prefix },
        CliCommand::Profile(ProfileCommand::List) => Command::ProfileList,
        CliCommand::Profile(ProfileCommand::Show { name, check_flags }) => {
            Command::ProfileShow { name, check_flags }
        }
        CliCommand::Plan { recipe } => {
            recipe_arg = recipe;
            Command::Plan
        }
        CliCommand::Up {
            recipe,
            from,
            only,
            dry_run,
        } => {
            recipe_arg = recipe;
            Command::Up(UpOptions {
                from,
                only,
                dry_run,
            })
        }
        CliCommand::Why { id } => Command::Why { id },
        CliCommand::Logs { id, follow } => Command::Logs { id, follow },
        CliCommand::Reset { ids, all } => Command::Reset { ids, all },
        CliCommand::Audit {
            repos,
            path,
            repo,
            export_residual,
        } => Command::Audit {
            target: match (path, repo) {
                (Some(path), Some(repo)) => AuditTarget::Path { path, repo },
                _ => AuditTarget::Workspace(repos),
            },
            export_residual,
        },
    };
    if let Some(recipe) = recipe_arg {
        globals.recipe = recipe;
    }
    (globals, command)
}

fn default_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("pinstack")
}
