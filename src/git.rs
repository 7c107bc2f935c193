//! The two ways pinstack touches git: libgit2 for all local work, and the `git` program only for
//! network fetches (so credential helpers, proxies and `--depth` behave as the user configured).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use git2::{ObjectType, Oid, Repository, Tree};

/// A failed git operation, naming the repo it was for.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{repo}: `{command}` failed ({status}): {stderr}")]
    Command {
        repo: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{repo}: could not run git: {source}; install git (apt-get install git)")]
    Spawn {
        repo: String,
        source: std::io::Error,
    },
    #[error("{repo}: {context}: {source}")]
    Local {
        repo: String,
        context: String,
        source: git2::Error,
    },
    #[error(
        "{repo}: commit {commit} is not in {url} after fetching; check the url and the commit in pins.yaml"
    )]
    MissingCommit {
        repo: String,
        url: String,
        commit: String,
    },
}

/// Wraps a libgit2 error with the repo and what was being done.
pub fn local(repo: &str, context: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let repo = repo.to_owned();
    let context = context.into();
    move |source| GitError::Local {
        repo,
        context,
        source,
    }
}

/// Runs the `git` program; a run that finds a lock file of another git (one a killed pinstack
/// left running, say) is retried for a while before it fails.
pub fn run(repo: &str, cwd: &Path, args: &[&str]) -> Result<(), GitError> {
    let mut tries = 0;
    loop {
        match run_once(repo, cwd, args) {
            Err(GitError::Command { stderr, .. })
                if tries < 20 && stderr.contains(".lock") && stderr.contains("exists") =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Runs the `git` program once; its errors go into the returned error.
fn run_once(repo: &str, cwd: &Path, args: &[&str]) -> Result<(), GitError> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // A prompt nobody can answer would hang a CI job for hours.
        cmd.env("GIT_TERMINAL_PROMPT", "0");
    }
    let out = cmd.output().map_err(|source| GitError::Spawn {
        repo: repo.to_owned(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(GitError::Command {
        repo: repo.to_owned(),
        command: format!("git {}", args.join(" ")),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// How a commit was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The commit was already present: no network was used.
    Present,
    /// Fetched by commit id with `--depth 1`.
    Shallow,
    /// The server refused a fetch by commit id; everything was fetched.
    Full,
    /// Fetched by commit id with its history, into a checkout that is not shallow.
    WithHistory,
}

/// Makes sure `commit` is in the repository at `git_dir`, fetching from `url` if needed.
pub fn ensure_commit(
    repo: &Repository,
    name: &str,
    url: &str,
    commit: &str,
) -> Result<Fetched, GitError> {
    let oid = Oid::from_str(commit).map_err(local(name, "commit id"))?;
    if has_commit(repo, oid) {
        return Ok(Fetched::Present);
    }
    let dir = repo_dir(repo);
    // `--depth 1` in a repository with full history (a person's own clone) would make it
    // shallow and hide its history: there the commit is fetched with its history instead.
    let full_history = !repo.is_shallow() && repo.head().is_ok();
    let depth: &[&str] = if full_history { &[] } else { &["--depth", "1"] };
    let args = [
        &["fetch", "--quiet", "--no-tags"][..],
        depth,
        &[url, commit],
    ]
    .concat();
    let shallow = run(name, &dir, &args);
    let how = match shallow {
        Ok(()) if has_commit(repo, oid) && full_history => Fetched::WithHistory,
        Ok(()) if has_commit(repo, oid) => Fetched::Shallow,
        _ => {
            // Servers that refuse fetching by id (or a shallow fetch) still serve a full fetch.
            run(
                name,
                &dir,
                &[
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    url,
                    "+refs/heads/*:refs/pinstack/remote/heads/*",
                    "+refs/tags/*:refs/pinstack/remote/tags/*",
                ],
            )?;
            Fetched::Full
        }
    };
    if !has_commit(repo, oid) {
        return Err(GitError::MissingCommit {
            repo: name.to_owned(),
            url: url.to_owned(),
            commit: commit.to_owned(),
        });
    }
    Ok(how)
}

/// Whether the commit's object is present.
pub fn has_commit(repo: &Repository, oid: Oid) -> bool {
    repo.find_commit(oid).is_ok()
}

fn repo_dir(repo: &Repository) -> PathBuf {
    repo.workdir().unwrap_or_else(|| repo.path()).to_path_buf()
}

/// The tree of a pinned commit.
pub fn commit_tree<'r>(
    repo: &'r Repository,
    name: &str,
    commit: &str,
) -> Result<Tree<'r>, GitError> {
    let oid = Oid::from_str(commit).map_err(local(name, "commit id"))?;
    let c = repo
        .find_commit(oid)
        .map_err(local(name, format!("reading commit {commit}")))?;
    c.tree()
        .map_err(local(name, format!("reading the tree of {commit}")))
}

/// The bytes of the file at `path` in `tree`.
pub fn read_blob(repo: &Repository, tree: &Tree<'_>, path: &str) -> Option<Vec<u8>> {
    let entry = tree.get_path(Path::new(path)).ok()?;
    if entry.kind() != Some(ObjectType::Blob) {
        return None;
    }
    repo.find_blob(entry.id())
        .ok()
        .map(|b| b.content().to_vec())
}

/// Adds an in-memory object store in front of the repository's own, so objects written while
/// applying bundles in memory never reach the disk.
pub fn in_memory_writes(repo: &Repository, name: &str) -> Result<(), GitError> {
    let odb = repo
        .odb()
        .map_err(local(name, "opening the object store"))?;
    odb.add_new_mempack_backend(1000)
        .map_err(local(name, "adding an in-memory object store"))?;
    Ok(())
}

/// A libgit2 diff as `git diff` text.
pub fn print_patch(diff: &git2::Diff<'_>) -> Result<Vec<u8>, git2::Error> {
    let mut out = Vec::new();
    diff.print(git2::DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            out.push(line.origin() as u8);
        }
        out.extend_from_slice(line.content());
        true
    })?;
    Ok(out)
}
