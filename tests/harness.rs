//! The fixture harness: a temporary folder holding upstream git repositories with real commits,
//! bundles packed by the real binary, a pins.yaml, and a `pinstack()` command that runs there.
//!
//! Git is the oracle: `oracle_tree` applies the same diffs with `git apply` onto a fresh clone,
//! and `worktree_tree` records a checkout's files the way `git add -A && git write-tree` would.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::SystemTime;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// Environment that makes every `git` run reproducible and blind to the user's configuration.
const GIT_ENV: &[(&str, &str)] = &[
    ("GIT_AUTHOR_NAME", "Pin Stack"),
    ("GIT_AUTHOR_EMAIL", "pinstack@example.invalid"),
    ("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z"),
    ("GIT_COMMITTER_NAME", "Pin Stack"),
    ("GIT_COMMITTER_EMAIL", "pinstack@example.invalid"),
    ("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z"),
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_TERMINAL_PROMPT", "0"),
    ("LC_ALL", "C"),
];

/// Variables that would point git at some other repository (set inside a git hook, say).
const GIT_ENV_REMOVED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG_COUNT",
];

/// The environment that lets `git submodule update` clone from local paths.
pub const ALLOW_FILE_PROTOCOL: &[(&str, &str)] = &[
    ("GIT_CONFIG_COUNT", "1"),
    ("GIT_CONFIG_KEY_0", "protocol.file.allow"),
    ("GIT_CONFIG_VALUE_0", "always"),
];

/// A `git` command with the reproducible environment.
fn git_command(cwd: &Path) -> StdCommand {
    let mut cmd = StdCommand::new("git");
    cmd.current_dir(cwd).stdin(Stdio::null());
    for k in GIT_ENV_REMOVED {
        cmd.env_remove(k);
    }
    for (k, v) in GIT_ENV {
        cmd.env(k, v);
    }
    cmd
}

/// Runs git and returns its stdout; panics with its stderr when it fails.
pub fn git_bytes(cwd: &Path, args: &[&str]) -> Vec<u8> {
    run_git(git_command(cwd).args(args), args)
}

/// Runs git and returns its stdout as trimmed text.
pub fn git(cwd: &Path, args: &[&str]) -> String {
    String::from_utf8(git_bytes(cwd, args))
        .expect("git output is UTF-8")
        .trim()
        .to_owned()
}

/// Whether a git command succeeds (for questions such as "is HEAD detached?").
pub fn git_ok(cwd: &Path, args: &[&str]) -> bool {
    git_command(cwd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("git runs")
        .success()
}

fn run_git(cmd: &mut StdCommand, args: &[&str]) -> Vec<u8> {
    let out = cmd.output().expect("git is installed");
    assert!(
        out.status.success(),
        "git {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Lower-case hex sha256, computed by coreutils rather than by the code under test.
pub fn sha256(bytes: &[u8]) -> String {
    let out = pipe("sha256sum", &[], bytes);
    String::from_utf8(out).unwrap()[..64].to_owned()
}

/// Runs a program with `input` on stdin and returns its stdout; panics when it fails.
pub fn pipe(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = StdCommand::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Numbered text lines, `prefix 1` .. `prefix n`, each ending in a newline.
pub fn numbered(prefix: &str, n: usize) -> String {
    (1..=n).map(|i| format!("{prefix} {i}\n")).collect()
}

/// An upstream repository the tests commit to; pins point at it by its path.
pub struct Upstream {
    pub name: String,
    pub path: PathBuf,
}

impl Upstream {
    /// Adds `other` as a submodule at `path` (staged, not committed).
    pub fn add_submodule(&self, other: &Upstream, path: &str) -> &Self {
        git(
            &self.path,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                &other.url(),
                path,
            ],
        );
        self
    }

    /// The URL pins.yaml names (a local path).
    pub fn url(&self) -> String {
        self.path.display().to_string()
    }

    /// Runs git inside the repository.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.path, args)
    }

    /// Writes a file (creating folders).
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> &Self {
        let path = self.path.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        self
    }

    /// Removes a file.
    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.path.join(rel)).unwrap();
        self
    }

    /// Sets a file's permission bits.
    pub fn chmod(&self, rel: &str, mode: u32) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.path.join(rel), std::fs::Permissions::from_mode(mode))
            .unwrap();
        self
    }

    /// Moves a file.
    pub fn rename(&self, from: &str, to: &str) -> &Self {
        let to_path = self.path.join(to);
        std::fs::create_dir_all(to_path.parent().unwrap()).unwrap();
        std::fs::rename(self.path.join(from), to_path).unwrap();
        self
    }

    /// Commits everything in the work tree; returns the full commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }

    /// The full id of HEAD.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    /// Puts the work tree back at a commit (files only; HEAD stays on the branch).
    pub fn restore(&self, commit: &str) -> &Self {
        self.git(&["rm", "-r", "-q", "--cached", "--ignore-unmatch", "."]);
        for entry in std::fs::read_dir(&self.path).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != ".git" {
                let p = entry.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(p).unwrap();
                } else {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
        self.git(&["checkout", "-q", commit, "--", "."]);
        self
    }

    /// `git diff --binary -M FROM TO`: the input of a bundle.
    pub fn diff(&self, from: &str, to: &str) -> Vec<u8> {
        git_bytes(&self.path, &["diff", "--binary", "-M", from, to])
    }

    /// The same diff made inside a subfolder with `--relative`: its paths start below `dir`.
    pub fn diff_relative(&self, dir: &str, from: &str, to: &str) -> Vec<u8> {
        git_bytes(
            &self.path.join(dir),
            &["diff", "--binary", "-M", "--relative", from, to],
        )
    }

    /// The tree id of a commit.
    pub fn tree(&self, commit: &str) -> String {
        self.git(&["rev-parse", &format!("{commit}^{{tree}}")])
    }
}

/// A bundle packed by `pinstack bundle pack`, with the hashes coreutils computes for it.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The path pins.yaml names (relative to the fixture root).
    pub path: String,
    pub sha256: String,
    pub diff_sha256: String,
}

impl Bundle {
    /// This bundle as a `patches:` entry.
    pub fn entry(&self) -> PatchEntry {
        PatchEntry {
            bundle: self.path.clone(),
            sha256: self.sha256.clone(),
            diff_sha256: self.diff_sha256.clone(),
            base_dir: None,
        }
    }
}

/// One `patches:` entry of pins.yaml.
#[derive(Debug, Clone)]
pub struct PatchEntry {
    pub bundle: String,
    pub sha256: String,
    pub diff_sha256: String,
    pub base_dir: Option<String>,
}

impl PatchEntry {
    /// Sets `base_dir:`.
    pub fn base_dir(mut self, dir: &str) -> Self {
        self.base_dir = Some(dir.to_owned());
        self
    }

    /// Names the bundle as a file inside another pinned repo (`REPO:PATH`).
    pub fn in_repo(mut self, repo: &str, path: &str) -> Self {
        self.bundle = format!("{repo}:{path}");
        self
    }
}

/// One repo of pins.yaml.
#[derive(Debug, Clone)]
pub struct Pin {
    pub name: String,
    pub url: String,
    pub commit: String,
    pub dir: Option<String>,
    pub submodules: bool,
    pub patches: Vec<PatchEntry>,
    pub tree: Option<String>,
}

impl Pin {
    /// A repo pinned at `commit` of `upstream`.
    pub fn new(name: &str, upstream: &Upstream, commit: &str) -> Pin {
        Pin {
            name: name.to_owned(),
            url: upstream.url(),
            commit: commit.to_owned(),
            dir: None,
            submodules: false,
            patches: Vec::new(),
            tree: None,
        }
    }

    /// Appends a bundle.
    pub fn patch(mut self, entry: PatchEntry) -> Pin {
        self.patches.push(entry);
        self
    }

    /// Sets `submodules: true`.
    pub fn submodules(mut self) -> Pin {
        self.submodules = true;
        self
    }

    /// Sets the `tree:` lock.
    pub fn tree(mut self, tree: &str) -> Pin {
        self.tree = Some(tree.to_owned());
        self
    }

    /// Sets `dir:`, the checkout folder under `<workspace>/src`.
    pub fn dir(mut self, dir: &str) -> Pin {
        self.dir = Some(dir.to_owned());
        self
    }

    /// Sets the `url:`.
    pub fn url(mut self, url: &str) -> Pin {
        self.url = url.to_owned();
        self
    }

    fn yaml(&self, out: &mut String) {
        let _ = writeln!(out, "  {}:", self.name);
        let _ = writeln!(out, "    url: {}", self.url);
        let _ = writeln!(out, "    commit: {}", self.commit);
        if let Some(dir) = &self.dir {
            let _ = writeln!(out, "    dir: {dir}");
        }
        if self.submodules {
            out.push_str("    submodules: true\n");
        }
        if !self.patches.is_empty() {
            out.push_str("    patches:\n");
        }
        for p in &self.patches {
            let _ = writeln!(out, "      - bundle: '{}'", p.bundle.replace('\'', "''"));
            let _ = writeln!(out, "        sha256: {}", p.sha256);
            let _ = writeln!(out, "        diff_sha256: {}", p.diff_sha256);
            if let Some(b) = &p.base_dir {
                let _ = writeln!(out, "        base_dir: {b}");
            }
        }
        if let Some(t) = &self.tree {
            let _ = writeln!(out, "    tree: {t}");
        }
    }
}

/// pins.yaml text for these repos.
pub fn pins_yaml(pins: &[Pin]) -> String {
    let mut out = String::from("# written by the test harness\nrepos:\n");
    for p in pins {
        p.yaml(&mut out);
    }
    out
}

/// A test's temporary world: upstreams, bundles, pins.yaml, a workspace and a cache.
pub struct Fixture {
    dir: TempDir,
    counter: Cell<usize>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// An empty fixture.
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("pinstack-test-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Fixture {
            dir,
            counter: Cell::new(0),
        }
    }

    /// The fixture's root folder (pinstack's working directory).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A path under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn unique(&self, what: &str) -> PathBuf {
        let n = self.counter.get();
        self.counter.set(n + 1);
        self.path(&format!("scratch/{what}-{n}"))
    }

    /// Writes a file under the root; returns its path.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Reads a file under the root.
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// A new upstream repository at `<root>/upstream/<name>` on branch main.
    pub fn upstream(&self, name: &str) -> Upstream {
        let path = self.path(&format!("upstream/{name}"));
        std::fs::create_dir_all(&path).unwrap();
        git(&path, &["-c", "init.defaultBranch=main", "init", "-q", "."]);
        Upstream {
            name: name.to_owned(),
            path,
        }
    }

    /// Runs a shell script in the root; returns its stdout.
    pub fn sh(&self, script: &str) -> Vec<u8> {
        let out = StdCommand::new("sh")
            .args(["-c", script])
            .current_dir(self.root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sh -c {script:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Packs a diff with `pinstack bundle pack` into `patches/<name>.patch.gz.b64`.
    pub fn bundle(&self, name: &str, diff: &[u8]) -> Bundle {
        let diff_rel = format!("patches/{name}.patch");
        let bundle_rel = format!("{diff_rel}.gz.b64");
        self.write(&diff_rel, diff);
        self.pinstack()
            .args(["bundle", "pack", &diff_rel, "-o", &bundle_rel])
            .assert()
            .code(0);
        let encoded = self.read(&bundle_rel);
        Bundle {
            path: bundle_rel,
            sha256: sha256(&encoded),
            diff_sha256: sha256(diff),
        }
    }

    /// Writes arbitrary bundle bytes (valid or not); `diff_sha256` is the hash of `diff` when
    /// known, else a well-formed hash of nothing in particular.
    pub fn raw_bundle(&self, name: &str, encoded: &[u8], diff: Option<&[u8]>) -> Bundle {
        let rel = format!("patches/{name}.patch.gz.b64");
        self.write(&rel, encoded);
        Bundle {
            path: rel,
            sha256: sha256(encoded),
            diff_sha256: diff.map_or_else(|| "ab".repeat(32), sha256),
        }
    }

    /// Writes pins.yaml.
    pub fn pins(&self, pins: &[Pin]) -> PathBuf {
        self.write("pins.yaml", pins_yaml(pins))
    }

    /// The real binary, run in the root with a cache and home of its own.
    pub fn pinstack(&self) -> Command {
        let mut cmd = Command::cargo_bin("pinstack").expect("the pinstack binary is built");
        cmd.current_dir(self.root())
            .env("PINSTACK_CACHE", self.path("cache"))
            .env_remove("PINSTACK_WORKSPACE")
            .env_remove("CI")
            .env("HOME", self.path("home"))
            .env("XDG_CACHE_HOME", self.path("home/.cache"))
            .env("NO_COLOR", "1");
        for k in GIT_ENV_REMOVED {
            cmd.env_remove(k);
        }
        for (k, v) in GIT_ENV {
            cmd.env(k, v);
        }
        cmd
    }

    /// The same as `pinstack()`, as a plain `std::process::Command` (to run it in the background,
    /// or to read its output without asserting anything).
    pub fn pinstack_std(&self) -> StdCommand {
        let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("pinstack"));
        cmd.current_dir(self.root())
            .env("PINSTACK_CACHE", self.path("cache"))
            .env_remove("PINSTACK_WORKSPACE")
            .env_remove("CI")
            .env("HOME", self.path("home"))
            .env("XDG_CACHE_HOME", self.path("home/.cache"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for k in GIT_ENV_REMOVED {
            cmd.env_remove(k);
        }
        for (k, v) in GIT_ENV {
            cmd.env(k, v);
        }
        cmd
    }

    /// A stand-in `git` that takes a second over every fetch and writes a line to the returned
    /// marker file when one begins; returns a PATH that puts it first, and the marker.
    pub fn slow_git(&self) -> (String, PathBuf) {
        let real = StdCommand::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap();
        let real = String::from_utf8(real.stdout).unwrap().trim().to_owned();
        let bin = self.path("slow-git");
        std::fs::create_dir_all(&bin).unwrap();
        let marker = self.path("fetching");
        let script = format!(
            "#!/bin/sh\ncase \" $* \" in *\" fetch \"*) echo >> '{}'; sleep 1;; esac\n\
             exec '{real}' \"$@\"\n",
            marker.display()
        );
        std::fs::write(bin.join("git"), script).unwrap();
        std::fs::set_permissions(
            bin.join("git"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        (path, marker)
    }

    /// Runs pinstack with `--json`, asserts the exit code, and parses stdout.
    pub fn json(&self, args: &[&str], code: i32) -> Value {
        let out = self
            .pinstack()
            .args(args)
            .arg("--json")
            .assert()
            .code(code)
            .get_output()
            .clone();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "pinstack {args:?} --json: {e}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Runs pinstack, asserts the exit code, and returns its stderr.
    pub fn stderr(&self, args: &[&str], code: i32) -> String {
        let out = self
            .pinstack()
            .args(args)
            .assert()
            .code(code)
            .get_output()
            .clone();
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs pinstack, asserts the exit code, and returns its stdout.
    pub fn stdout(&self, args: &[&str], code: i32) -> String {
        let out = self
            .pinstack()
            .args(args)
            .assert()
            .code(code)
            .get_output()
            .clone();
        String::from_utf8(out.stdout).unwrap()
    }

    /// A repo's checkout folder in the default workspace.
    pub fn checkout(&self, dir: &str) -> PathBuf {
        self.path(&format!("workspace/src/{dir}"))
    }

    /// The tree `git apply` gives: a clone of `upstream` at `commit`, each diff applied in turn
    /// (with `--directory=DIR` for a base_dir), then `git add -A && git write-tree`.
    pub fn oracle_tree(
        &self,
        upstream: &Upstream,
        commit: &str,
        diffs: &[(&[u8], Option<&str>)],
    ) -> String {
        let dir = self.unique("oracle");
        git(
            self.root(),
            &[
                "clone",
                "-q",
                "--no-checkout",
                &upstream.url(),
                &dir.display().to_string(),
            ],
        );
        git(&dir, &["checkout", "-q", "--detach", commit]);
        for (i, (diff, base)) in diffs.iter().enumerate() {
            let file = dir.with_extension(format!("{i}.diff"));
            std::fs::write(&file, diff).unwrap();
            let file = file.display().to_string();
            let mut args = vec!["apply".to_owned()];
            if let Some(b) = base {
                args.push(format!("--directory={b}"));
            }
            args.push(file);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            git(&dir, &args);
        }
        git(&dir, &["add", "-A"]);
        git(&dir, &["write-tree"])
    }

    /// A full clone of `upstream` at `<root>/<rel>`, detached at `commit`: a checkout made by
    /// hand, without pinstack.
    pub fn clone_at(&self, upstream: &Upstream, commit: &str, rel: &str) -> PathBuf {
        let dir = self.path(rel);
        git(
            self.root(),
            &[
                "clone",
                "-q",
                "--no-checkout",
                &upstream.url(),
                &dir.display().to_string(),
            ],
        );
        git(&dir, &["checkout", "-q", "--detach", commit]);
        dir
    }

    /// Runs `git apply ARGS DIFF` inside `dir` (the diff is written to a scratch file first).
    pub fn git_apply(&self, dir: &Path, diff: &[u8], args: &[&str]) {
        let file = self.unique("apply").with_extension("diff");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, diff).unwrap();
        let file = file.display().to_string();
        let mut all = vec!["apply"];
        all.extend_from_slice(args);
        all.push(&file);
        git(dir, &all);
    }

    /// The tree a checkout's files make (`git add -A && git write-tree`), computed on a copy of
    /// its index so the checkout's own index is left as it was.
    pub fn worktree_tree(&self, checkout: &Path) -> String {
        let index = self.unique("index");
        std::fs::create_dir_all(index.parent().unwrap()).unwrap();
        let git_dir = PathBuf::from(git(checkout, &["rev-parse", "--absolute-git-dir"]));
        if git_dir.join("index").exists() {
            std::fs::copy(git_dir.join("index"), &index).unwrap();
        }
        let run = |args: &[&str]| {
            let mut cmd = git_command(checkout);
            cmd.env("GIT_INDEX_FILE", &index).args(args);
            run_git(&mut cmd, args)
        };
        run(&["add", "-A"]);
        let tree = String::from_utf8(run(&["write-tree"])).unwrap();
        let _ = std::fs::remove_file(&index);
        tree.trim().to_owned()
    }

    /// Packs each diff, pins `commit` of `upstream` with them (in order), runs `apply`, and
    /// asserts that the checkout equals what `git apply` makes of the same input and that
    /// `check --json` reports the same tree. Returns that tree.
    pub fn assert_apply_like_git(
        &self,
        upstream: &Upstream,
        commit: &str,
        diffs: &[(&[u8], Option<&str>)],
    ) -> String {
        let mut pin = Pin::new(&upstream.name, upstream, commit);
        for (i, (diff, base)) in diffs.iter().enumerate() {
            let b = self.bundle(&format!("{}-{i}", upstream.name), diff);
            let mut entry = b.entry();
            if let Some(base) = base {
                entry = entry.base_dir(base);
            }
            pin = pin.patch(entry);
        }
        self.pins(&[pin]);
        let want = self.oracle_tree(upstream, commit, diffs);
        let report = self.json(&["apply"], 0);
        assert_eq!(report["repos"][0]["outcome"], "applied", "{report:#}");
        let checkout = self.checkout(&upstream.name);
        assert_eq!(
            self.worktree_tree(&checkout),
            want,
            "the checkout differs from what git apply makes of the same diffs"
        );
        assert_eq!(report["repos"][0]["tree"], want.as_str());
        let check = self.json(&["check"], 0);
        assert_eq!(check["ok"], true, "{check:#}");
        assert_eq!(check["repos"][0]["tree"], want.as_str(), "{check:#}");
        want
    }
}

/// The bytes of a checkout's index file (empty when there is none).
pub fn index_bytes(checkout: &Path) -> Vec<u8> {
    std::fs::read(checkout.join(".git/index")).unwrap_or_default()
}

/// A bundle's diff, decoded by coreutils and gzip rather than by the code under test.
pub fn decode_bundle(encoded: &[u8]) -> Vec<u8> {
    pipe("sh", &["-c", "base64 -d | gzip -dc"], encoded)
}

/// Every file under `dir` (`.git` included) with its size, mode and modification time: a
/// snapshot that shows whether anything was written.
///
/// Loose objects are recorded without their time: when libgit2 is asked to write an object that
/// already exists it "freshens" the file's mtime instead (as git does, to keep it from being
/// pruned), which adds or changes nothing.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, u32, SystemTime)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    let objects = dir.join(".git/objects");
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            let time = if entry.path().starts_with(&objects) {
                SystemTime::UNIX_EPOCH
            } else {
                meta.modified().unwrap()
            };
            out.insert(
                entry.path().strip_prefix(dir).unwrap().to_path_buf(),
                (meta.len(), meta.permissions().mode(), time),
            );
        }
    }
    out
}

/// A minimal XML element tree, enough to prove a JUnit report is well formed.
#[derive(Debug, Clone)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
}

impl Element {
    /// The value of an attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every descendant (and self) with this name.
    pub fn find_all<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        if self.name == name {
            out.push(self);
        }
        for c in &self.children {
            c.find_all(name, out);
        }
    }
}

/// Parses XML strictly (balanced tags, quoted attributes, known entities, one root element);
/// panics with the reason when the text is not well formed.
pub fn parse_xml(text: &str) -> Element {
    let mut rest = text;
    if let Some(after) = rest.strip_prefix("<?xml") {
        let end = after.find("?>").expect("unterminated XML declaration");
        rest = &after[end + 2..];
    }
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let lt = rest.find('<');
        let chunk = &rest[..lt.unwrap_or(rest.len())];
        check_text(chunk);
        assert!(
            !stack.is_empty() || chunk.trim().is_empty(),
            "text outside the root element: {chunk:?}"
        );
        let Some(lt) = lt else { break };
        rest = &rest[lt + 1..];
        let gt = rest.find('>').expect("unterminated tag");
        let tag = &rest[..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().expect("closing tag without an opening tag");
            assert_eq!(open.name, name.trim(), "mismatched closing tag");
            match stack.last_mut() {
                Some(parent) => parent.children.push(open),
                None => {
                    assert!(root.is_none(), "two root elements");
                    root = Some(open);
                }
            }
            continue;
        }
        let (tag, empty) = match tag.strip_suffix('/') {
            Some(t) => (t, true),
            None => (tag, false),
        };
        let element = parse_tag(tag);
        if empty {
            match stack.last_mut() {
                Some(parent) => parent.children.push(element),
                None => {
                    assert!(root.is_none(), "two root elements");
                    root = Some(element);
                }
            }
        } else {
            assert!(root.is_none(), "content after the root element");
            stack.push(element);
        }
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    root.expect("no root element")
}

fn parse_tag(tag: &str) -> Element {
    let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
    let name = &tag[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c)),
        "bad element name {name:?}"
    );
    let mut attrs = Vec::new();
    let mut rest = tag[name_end..].trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').expect("attribute without a value");
        let key = rest[..eq].trim();
        assert!(
            !key.is_empty() && !key.contains(char::is_whitespace),
            "bad attribute name {key:?}"
        );
        let after = &rest[eq + 1..];
        let quote = after.chars().next().expect("attribute without a value");
        assert!(quote == '"' || quote == '\'', "unquoted attribute {key}");
        let close = after[1..].find(quote).expect("unterminated attribute");
        let value = &after[1..1 + close];
        assert!(!value.contains('<'), "`<` in attribute {key}");
        check_text(value);
        assert!(
            !attrs.iter().any(|(k, _): &(String, String)| k == key),
            "duplicate attribute {key}"
        );
        attrs.push((key.to_owned(), unescape(value)));
        rest = after[close + 2..].trim_start();
    }
    Element {
        name: name.to_owned(),
        attrs,
        children: Vec::new(),
    }
}

fn check_text(text: &str) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        let after = &rest[amp + 1..];
        let semi = after.find(';').expect("`&` without an entity");
        let entity = &after[..semi];
        let known = ["amp", "lt", "gt", "quot", "apos"].contains(&entity)
            || entity
                .strip_prefix('#')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        assert!(known, "unknown entity &{entity};");
        rest = &after[semi + 1..];
    }
    assert!(
        !text
            .chars()
            .any(|c| (c as u32) < 0x20 && !"\n\r\t".contains(c)),
        "control character in XML text"
    );
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Every file under `dir` (symbolic links not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Whether this test run can run pinstack as `nobody` (root, setpriv, and a binary whose
/// folders `nobody` may enter): the tests of what a non-root user sees need all three.
pub fn can_run_pinstack_as_nobody() -> bool {
    let root = StdCommand::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if !root || !Path::new("/usr/bin/setpriv").exists() {
        return false;
    }
    StdCommand::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(assert_cmd::cargo::cargo_bin("pinstack"))
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
