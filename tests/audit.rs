//! `pinstack audit`: a tree explained as pin + bundles + residual, per file, on trees made by
//! pinstack and by hand (`git apply`), with git as the oracle for the exported residual; and the
//! promise never to change the audited tree, its index or its HEAD.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{
    Bundle, Fixture, Pin, Upstream, decode_bundle, git, git_bytes, git_ok, index_bytes, numbered,
    pipe, sha256, snapshot,
};

/// The folder the second bundle's paths are relative to, as in the real llm-scaler bundle.
const KDIR: &str = "vllm/custom-esimd-kernels-vllm";
/// A file the first bundle creates whose name has `=`, `,`, `(` and `[` (like vLLM's MoE
/// configs).
const MOE: &str =
    "vllm/configs/E=128,N=384,device_name=Intel(R)_Arc_B70,block_shape=[128,128].json";

/// The paths of bundle A (repo-root paths, abbreviated `index` lines, text only).
const A_FILES: [&str; 4] = [MOE, "vllm/engine.py", "vllm/envs.py", "vllm/kv_offload.py"];

fn kdir(rel: &str) -> String {
    format!("{KDIR}/{rel}")
}

/// The paths of bundle B, once placed under its base_dir.
fn b_files() -> Vec<String> {
    ["csrc/moe.sycl", "python/ops.py", "tables/router.bin"]
        .iter()
        .map(|p| kdir(p))
        .collect()
}

fn logo() -> Vec<u8> {
    (0..=255u8).cycle().take(2000).collect()
}

/// An upstream `app` with history `old` -> `pin` -> (bundle commits) -> `later`, and two
/// bundles made from real diffs of the pin: A rooted at the repo root, B rooted at `KDIR`.
struct Stack {
    fx: Fixture,
    up: Upstream,
    old: String,
    pin: String,
    later: String,
    diff_a: Vec<u8>,
    diff_b: Vec<u8>,
    a: Bundle,
    b: Bundle,
}

fn stack() -> Stack {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write(".gitignore", "build/\n*.so\n")
        .write("README.md", "app\n")
        .write("vllm/envs.py", numbered("env", 30))
        .write("vllm/engine.py", numbered("engine", 30))
        .write("vllm/sampler.py", numbered("sampler", 30))
        .write("assets/logo.bin", logo())
        .write(&kdir("csrc/moe.sycl"), numbered("moe", 30))
        .write(&kdir("setup.py"), numbered("setup", 10));
    let old = up.commit("old");
    up.write("vllm/sampler.py", numbered("sampler", 31))
        .write("vllm/worker.py", numbered("worker", 5));
    let pin = up.commit("pin");

    up.write(
        "vllm/envs.py",
        numbered("env", 30).replace("env 5\n", "env 5 = offload\n"),
    )
    .write(
        "vllm/engine.py",
        numbered("engine", 30).replace("engine 20\n", "engine 20 turbo\n"),
    )
    .write("vllm/kv_offload.py", numbered("offload", 12))
    .write(MOE, "{\"1\": {\"BLOCK_SIZE_M\": 16}}\n");
    let with_a = up.commit("bundle a");
    // Without --binary: abbreviated blob ids on the index lines.
    let diff_a = git_bytes(&up.path, &["diff", "-M", &pin, &with_a]);
    let text = String::from_utf8_lossy(&diff_a).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("index ") && l.len() < "index 1234567..1234567 100644".len() + 2),
        "bundle A should carry abbreviated index lines:\n{text}"
    );

    up.restore(&pin);
    up.write(
        &kdir("csrc/moe.sycl"),
        numbered("moe", 30).replace("moe 10\n", "moe 10 int4\n"),
    )
    .write(&kdir("python/ops.py"), numbered("ops", 8))
    .write(&kdir("tables/router.bin"), [0u8, 1, 2, 255, 0, 7, 0]);
    let with_b = up.commit("bundle b");
    // With --binary (full index lines), rooted at KDIR.
    let diff_b = up.diff_relative(KDIR, &pin, &with_b);
    let text = String::from_utf8_lossy(&diff_b).into_owned();
    assert!(text.contains("GIT binary patch"), "{text}");
    assert!(text.contains("diff --git a/csrc/moe.sycl"), "{text}");

    up.restore(&pin);
    up.write("README.md", "app, later\n");
    let later = up.commit("later");

    let a = fx.bundle("a", &diff_a);
    let b = fx.bundle("b", &diff_b);
    Stack {
        fx,
        up,
        old,
        pin,
        later,
        diff_a,
        diff_b,
        a,
        b,
    }
}

impl Stack {
    /// pins.yaml: `app` at the pin with A, then B under KDIR.
    fn pins(&self) {
        self.fx.pins(&[self.pin_entry()]);
    }

    fn pin_entry(&self) -> Pin {
        Pin::new("app", &self.up, &self.pin)
            .patch(self.a.entry())
            .patch(self.b.entry().base_dir(KDIR))
    }

    /// The workspace checkout, made by `pinstack apply`.
    fn applied(&self) -> PathBuf {
        self.pins();
        let v = self.fx.json(&["apply"], 0);
        assert_eq!(v["repos"][0]["outcome"], "applied", "{v:#}");
        self.fx.checkout("app")
    }

    /// A full clone at `commit` under `rel`, with the named diffs applied by `git apply`.
    fn by_hand(&self, rel: &str, commit: &str, a: bool, b: bool) -> PathBuf {
        let dir = self.fx.clone_at(&self.up, commit, rel);
        if a {
            self.fx.git_apply(&dir, &self.diff_a, &[]);
        }
        if b {
            self.fx
                .git_apply(&dir, &self.diff_b, &[&format!("--directory={KDIR}")]);
        }
        dir
    }

    /// `audit --json` of the one workspace repo; checks the report's shape.
    fn audit(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["audit"];
        all.extend_from_slice(args);
        let v = self.fx.json(&all, code);
        let repos = v["repos"].as_array().expect("repos");
        assert_eq!(repos.len(), 1, "{v:#}");
        let repo = repos[0].clone();
        assert_shape(&repo);
        assert_eq!(repo["clean_as_pinned"], code == 0, "{repo:#}");
        repo
    }

    /// `audit --path DIR --repo app --json`.
    fn audit_path(&self, dir: &Path, code: i32) -> Value {
        let path = dir.display().to_string();
        let repo = self.audit(&["--path", &path, "--repo", "app"], code);
        assert_eq!(repo["path"], path.as_str());
        repo
    }
}

/// Every report field is there, with the right type, and the counts add up.
fn assert_shape(repo: &Value) {
    for key in [
        "name",
        "path",
        "head",
        "pinned_commit",
        "pinned_commit_present",
        "head_state",
        "mode",
        "clean_as_pinned",
        "bundles",
        "files",
        "counts",
        "ignored_skipped",
    ] {
        assert!(repo.get(key).is_some(), "no {key} in {repo:#}");
    }
    assert!(repo["clean_as_pinned"].is_boolean());
    assert!(repo["pinned_commit_present"].is_boolean());
    assert!(repo["ignored_skipped"].is_u64());
    let mut tally: BTreeMap<String, u64> = [
        "unpatched",
        "drifted",
        "residual",
        "untracked",
        "deleted",
        "patched",
    ]
    .iter()
    .map(|c| ((*c).to_owned(), 0))
    .collect();
    for f in repo["files"].as_array().unwrap() {
        let class = f["class"].as_str().unwrap();
        *tally
            .get_mut(class)
            .unwrap_or_else(|| panic!("unknown class {class}")) += 1;
    }
    let counts: BTreeMap<String, u64> = repo["counts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(counts, tally, "counts do not match files: {repo:#}");
}

/// `files` as path -> class (a path is listed once).
fn classes(repo: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in repo["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap().to_owned();
        let class = f["class"].as_str().unwrap().to_owned();
        assert!(
            out.insert(path.clone(), class).is_none(),
            "{path} listed twice"
        );
    }
    out
}

/// One bundle's state and its files as path -> state.
fn bundle(repo: &Value, i: usize) -> (String, BTreeMap<String, String>) {
    let b = &repo["bundles"][i];
    let files = b["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no bundle {i} in {repo:#}"))
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (b["state"].as_str().unwrap().to_owned(), files)
}

/// A map of these paths, all with one class.
fn all_as<S: AsRef<str>>(
    paths: impl IntoIterator<Item = S>,
    class: &str,
) -> BTreeMap<String, String> {
    paths
        .into_iter()
        .map(|p| (p.as_ref().to_owned(), class.to_owned()))
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
        .collect()
}

/// Every path pin + bundles change, as `patched`.
fn all_patched() -> BTreeMap<String, String> {
    let mut want = all_as(A_FILES, "patched");
    want.extend(all_as(b_files(), "patched"));
    want
}

/// What audit must leave alone: every file of the checkout (`.git` included), the index bytes,
/// HEAD and the tree the files make.
struct Untouched {
    dir: PathBuf,
    snapshot: BTreeMap<PathBuf, (u64, u32, std::time::SystemTime)>,
    index: Vec<u8>,
    head: String,
    tree: String,
}

impl Untouched {
    fn record(fx: &Fixture, dir: &Path) -> Untouched {
        // First, so that the objects `git add` writes for the tree are already there.
        let tree = fx.worktree_tree(dir);
        Untouched {
            dir: dir.to_owned(),
            snapshot: snapshot(dir),
            index: index_bytes(dir),
            head: git(dir, &["rev-parse", "HEAD"]),
            tree,
        }
    }

    fn assert_same(&self, fx: &Fixture) {
        assert!(
            self.index == index_bytes(&self.dir),
            "audit changed the index"
        );
        assert_eq!(
            snapshot(&self.dir),
            self.snapshot,
            "audit wrote into the checkout"
        );
        assert_eq!(git(&self.dir, &["rev-parse", "HEAD"]), self.head);
        assert_eq!(fx.worktree_tree(&self.dir), self.tree);
    }
}

#[test]
fn a_tree_made_by_apply_is_clean_as_pinned() {
    let s = stack();
    let co = s.applied();
    // Build outputs are ignored, not drift.
    s.fx.write("workspace/src/app/build/lib/engine.o", [0u8, 1, 2]);
    s.fx.write("workspace/src/app/vllm/_C.so", [7u8; 16]);
    s.fx.write(&format!("workspace/src/app/{KDIR}/build/x.o"), "o");
    let before = Untouched::record(&s.fx, &co);

    let repo = s.audit(&[], 0);
    assert_eq!(repo["name"], "app");
    assert_eq!(repo["path"], "workspace/src/app");
    assert_eq!(repo["head"], s.pin.as_str());
    assert_eq!(repo["pinned_commit"], s.pin.as_str());
    assert_eq!(repo["pinned_commit_present"], true);
    assert_eq!(repo["head_state"], "at_pin");
    assert_eq!(repo["mode"], "full");
    assert_eq!(repo["ignored_skipped"], 3, "{repo:#}");
    assert_eq!(repo["residual"], Value::Null);
    assert_eq!(classes(&repo), all_patched(), "{repo:#}");
    let (state, files) = bundle(&repo, 0);
    assert_eq!(repo["bundles"][0]["bundle"], s.a.path.as_str());
    assert_eq!(state, "applied");
    assert_eq!(files, all_as(A_FILES, "patched"));
    let (state, files) = bundle(&repo, 1);
    assert_eq!(repo["bundles"][1]["bundle"], s.b.path.as_str());
    assert_eq!(state, "applied");
    assert_eq!(files, all_as(b_files(), "patched"));
    before.assert_same(&s.fx);

    // The bundles' new files are untracked as far as git is concerned, but patched here.
    let status = git(&co, &["status", "--porcelain", "--untracked-files=all"]);
    assert!(status.contains("?? vllm/kv_offload.py"), "{status}");
    assert!(
        status.contains(&format!("?? {}", kdir("python/ops.py"))),
        "{status}"
    );

    // Naming the repo audits the same tree; the human report says it is clean.
    assert_eq!(s.audit(&["app"], 0)["files"], repo["files"]);
    let text = s.fx.stdout(&["audit"], 0);
    assert!(text.contains("clean as pinned"), "{text}");
    assert!(!text.contains("NOT clean"), "{text}");
    assert!(text.contains("HEAD"), "{text}");
    assert!(text.contains("3 ignored entries skipped"), "{text}");
    assert!(text.contains("7 patched"), "{text}");
    assert!(
        text.contains(&format!("bundle {}: applied", s.a.path)),
        "{text}"
    );
}

#[test]
fn the_same_tree_made_by_hand_is_clean_too() {
    let s = stack();
    s.pins();
    let dir = s.by_hand("hand/app", &s.pin, true, true);
    // The hand-made tree is what pinstack's oracle says pin + bundles is.
    assert_eq!(
        s.fx.worktree_tree(&dir),
        s.fx.oracle_tree(&s.up, &s.pin, &[(&s.diff_a, None), (&s.diff_b, Some(KDIR))])
    );
    let before = Untouched::record(&s.fx, &dir);
    let repo = s.audit_path(&dir, 0);
    before.assert_same(&s.fx);
    assert_eq!(repo["head_state"], "at_pin");
    assert_eq!(classes(&repo), all_patched(), "{repo:#}");
    assert_eq!(bundle(&repo, 0).0, "applied");
    assert_eq!(bundle(&repo, 1).0, "applied");

    // Staged or not, the content is what counts: staging everything changes nothing.
    git(&dir, &["add", "-A"]);
    let staged = s.audit_path(&dir, 0);
    assert_eq!(staged["files"], repo["files"]);
    assert_eq!(staged["bundles"], repo["bundles"]);

    // A relative --path works from the current folder.
    let rel =
        s.fx.json(&["audit", "--path", "hand/app", "--repo", "app"], 0);
    assert_eq!(rel["repos"][0]["path"], "hand/app");
    assert_eq!(rel["repos"][0]["files"], repo["files"]);
}

/// From the applied checkout: one path of every class, some changes staged, some not.
fn every_class(s: &Stack, co: &Path) -> BTreeMap<String, String> {
    let fx = &s.fx;
    let w = |rel: &str, bytes: &[u8]| {
        fx.write(&format!("workspace/src/app/{rel}"), bytes);
    };
    // drifted: a bundle file with other content (staged).
    w("vllm/envs.py", b"something else entirely\n");
    git(co, &["add", "vllm/envs.py"]);
    // unpatched: a bundle file back at the pin's content.
    w(&kdir("csrc/moe.sycl"), numbered("moe", 30).as_bytes());
    // deleted: a bundle's file, a pin file, and a staged deletion.
    std::fs::remove_file(co.join("vllm/engine.py")).unwrap();
    // A file a bundle creates, gone again, is the pin's content there (no file): unpatched.
    std::fs::remove_file(co.join(kdir("tables/router.bin"))).unwrap();
    std::fs::remove_file(co.join("vllm/worker.py")).unwrap();
    git(co, &["rm", "-q", &kdir("setup.py")]);
    // residual: unstaged and staged edits, a binary edit, a mode change, a staged new file.
    w("vllm/sampler.py", numbered("sampler", 32).as_bytes());
    w("README.md", b"app, with local notes\n");
    git(co, &["add", "README.md"]);
    let mut bin = logo();
    bin[7] = 0;
    w("assets/logo.bin", &bin);
    {
        use std::os::unix::fs::PermissionsExt;
        let p = co.join(".gitignore");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    w("vllm/staged_new.py", b"staged\n");
    git(co, &["add", "vllm/staged_new.py"]);
    // untracked: files and a whole new folder, one with a hostile-looking name.
    w("notes.txt", b"notes\n");
    w("scratch/deep/dir/x.txt", b"x\n");
    w("vllm/configs/E=64,N=(7),x=[1].json", b"{}\n");
    // ignored: build outputs.
    w("build/out.o", b"o");
    w("vllm/_C.so", b"so");
    map(&[
        ("vllm/envs.py", "drifted"),
        (&kdir("csrc/moe.sycl"), "unpatched"),
        ("vllm/engine.py", "deleted"),
        (&kdir("tables/router.bin"), "unpatched"),
        ("vllm/worker.py", "deleted"),
        (&kdir("setup.py"), "deleted"),
        ("vllm/sampler.py", "residual"),
        ("README.md", "residual"),
        ("assets/logo.bin", "residual"),
        (".gitignore", "residual"),
        ("vllm/staged_new.py", "residual"),
        ("notes.txt", "untracked"),
        ("scratch/deep/dir/x.txt", "untracked"),
        ("vllm/configs/E=64,N=(7),x=[1].json", "untracked"),
        ("vllm/kv_offload.py", "patched"),
        (MOE, "patched"),
        (&kdir("python/ops.py"), "patched"),
    ])
}

#[test]
fn every_class_at_once_staged_and_unstaged() {
    let s = stack();
    let co = s.applied();
    let want = every_class(&s, &co);
    let before = Untouched::record(&s.fx, &co);

    let repo = s.audit(&[], 1);
    before.assert_same(&s.fx);
    assert_eq!(classes(&repo), want, "{repo:#}");
    assert_eq!(repo["head_state"], "at_pin");
    assert_eq!(repo["ignored_skipped"], 2, "{repo:#}");
    let counts = &repo["counts"];
    assert_eq!(counts["unpatched"], 2);
    assert_eq!(counts["drifted"], 1);
    assert_eq!(counts["residual"], 5);
    assert_eq!(counts["untracked"], 3);
    assert_eq!(counts["deleted"], 3);
    assert_eq!(counts["patched"], 3);

    let (state, files) = bundle(&repo, 0);
    assert_eq!(state, "partially_applied");
    assert_eq!(
        files,
        map(&[
            (MOE, "patched"),
            ("vllm/engine.py", "deleted"),
            ("vllm/envs.py", "drifted"),
            ("vllm/kv_offload.py", "patched"),
        ])
    );
    let (state, files) = bundle(&repo, 1);
    assert_eq!(state, "partially_applied");
    assert_eq!(
        files,
        map(&[
            (&kdir("csrc/moe.sycl"), "unpatched"),
            (&kdir("python/ops.py"), "patched"),
            (&kdir("tables/router.bin"), "unpatched"),
        ])
    );

    // The human report: a summary, then the paths grouped by class with counts.
    let text = s.fx.stdout(&["audit"], 1);
    before.assert_same(&s.fx);
    assert!(text.contains("NOT clean as pinned"), "{text}");
    assert!(text.contains("2 ignored entries skipped"), "{text}");
    assert!(
        text.contains("2 unpatched, 1 drifted, 5 residual, 3 untracked, 3 deleted, 3 patched"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    for (class, n) in [
        ("unpatched", 2),
        ("drifted", 1),
        ("residual", 5),
        ("untracked", 3),
        ("deleted", 3),
        ("patched", 3),
    ] {
        let heading = format!("  {class} ({n})");
        let at = lines
            .iter()
            .position(|l| *l == heading)
            .unwrap_or_else(|| panic!("no {heading:?} in\n{text}"));
        let listed: Vec<&str> = lines[at + 1..at + 1 + n].iter().map(|l| l.trim()).collect();
        let mut expected: Vec<&str> = want
            .iter()
            .filter(|(_, c)| c.as_str() == class)
            .map(|(p, _)| p.as_str())
            .collect();
        let mut got = listed.clone();
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected, "{class} in\n{text}");
    }
}

#[test]
fn a_partially_applied_bundle_lists_each_file() {
    let s = stack();
    s.pins();
    let dir = s.fx.clone_at(&s.up, &s.pin, "hand/app");
    // Only two of bundle A's four files.
    s.fx.git_apply(
        &dir,
        &s.diff_a,
        &["--include=vllm/envs.py", "--include=vllm/kv_offload.py"],
    );
    s.fx.git_apply(&dir, &s.diff_b, &[&format!("--directory={KDIR}")]);
    let repo = s.audit_path(&dir, 1);
    let (state, files) = bundle(&repo, 0);
    assert_eq!(state, "partially_applied");
    assert_eq!(
        files,
        map(&[
            (MOE, "unpatched"),
            ("vllm/engine.py", "unpatched"),
            ("vllm/envs.py", "patched"),
            ("vllm/kv_offload.py", "patched"),
        ])
    );
    assert_eq!(bundle(&repo, 1).0, "applied");
    let mut want = all_patched();
    want.insert(MOE.to_owned(), "unpatched".to_owned());
    want.insert("vllm/engine.py".to_owned(), "unpatched".to_owned());
    assert_eq!(classes(&repo), want);

    let text = s.fx.stdout(
        &[
            "audit",
            "--path",
            &dir.display().to_string(),
            "--repo",
            "app",
        ],
        1,
    );
    assert!(
        text.contains(&format!("bundle {}: partially applied", s.a.path)),
        "{text}"
    );
    assert!(text.contains("unpatched vllm/engine.py"), "{text}");
    assert!(text.contains("patched   vllm/envs.py"), "{text}");
}

#[test]
fn a_bundle_committed_then_undone_is_reverted() {
    let s = stack();
    s.pins();
    let dir = s.by_hand("hand/app", &s.pin, true, true);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "bundles committed"]);
    s.fx.git_apply(&dir, &s.diff_a, &["-R"]);
    let repo = s.audit_path(&dir, 1);
    assert_eq!(repo["head_state"], "ahead");
    let (state, files) = bundle(&repo, 0);
    assert_eq!(state, "reverted", "{repo:#}");
    assert_eq!(files, all_as(A_FILES, "unpatched"));
    assert_eq!(bundle(&repo, 1).0, "applied");
    let mut want = all_as(A_FILES, "unpatched");
    want.extend(all_as(b_files(), "patched"));
    assert_eq!(classes(&repo), want);
}

#[test]
fn a_bundle_staged_then_undone_is_reverted_and_one_never_applied_is_not() {
    let s = stack();
    s.pins();
    let dir = s.fx.clone_at(&s.up, &s.pin, "hand/app");
    s.fx.git_apply(&dir, &s.diff_a, &["--index"]);
    // Undone in the work tree only: the index still records the bundle.
    s.fx.git_apply(&dir, &s.diff_a, &["-R"]);
    let repo = s.audit_path(&dir, 1);
    assert_eq!(repo["head_state"], "at_pin");
    let (state, files) = bundle(&repo, 0);
    assert_eq!(state, "reverted", "{repo:#}");
    assert_eq!(files, all_as(A_FILES, "unpatched"));
    let (state, files) = bundle(&repo, 1);
    assert_eq!(state, "not_applied");
    assert_eq!(files, all_as(b_files(), "unpatched"));
    let mut want = all_as(A_FILES, "unpatched");
    want.extend(all_as(b_files(), "unpatched"));
    assert_eq!(classes(&repo), want);

    // A plain clone at the pin: nothing applied, nothing recorded.
    let plain = s.fx.clone_at(&s.up, &s.pin, "plain/app");
    let repo = s.audit_path(&plain, 1);
    assert_eq!(bundle(&repo, 0).0, "not_applied");
    assert_eq!(bundle(&repo, 1).0, "not_applied");
    let text = s.fx.stdout(
        &[
            "audit",
            "--path",
            &plain.display().to_string(),
            "--repo",
            "app",
        ],
        1,
    );
    assert!(
        text.contains(&format!("bundle {}: not applied", s.a.path)),
        "{text}"
    );
}

#[test]
fn head_ahead_of_the_pin() {
    let s = stack();
    s.pins();
    let dir = s.by_hand("hand/app", &s.pin, true, true);
    std::fs::write(dir.join("vllm/sampler.py"), "committed on top\n").unwrap();
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "on top of the pin"]);
    let repo = s.audit_path(&dir, 1);
    assert_eq!(repo["head_state"], "ahead");
    assert_eq!(repo["head"], git(&dir, &["rev-parse", "HEAD"]).as_str());
    assert_eq!(repo["pinned_commit_present"], true);
    let mut want = all_patched();
    want.insert("vllm/sampler.py".to_owned(), "residual".to_owned());
    assert_eq!(classes(&repo), want, "{repo:#}");
    assert_eq!(bundle(&repo, 0).0, "applied");

    // Even when the files are exactly pin + bundles, a moved HEAD is not clean as pinned.
    let exact = s.by_hand("exact/app", &s.pin, true, true);
    git(&exact, &["add", "-A"]);
    git(&exact, &["commit", "-q", "-m", "bundles committed"]);
    let repo = s.audit_path(&exact, 1);
    assert_eq!(repo["head_state"], "ahead");
    assert_eq!(classes(&repo), all_patched());
    let text = s.fx.stdout(
        &[
            "audit",
            "--path",
            &exact.display().to_string(),
            "--repo",
            "app",
        ],
        1,
    );
    assert!(
        text.contains(&format!("ahead (pin {})", &s.pin[..12])),
        "{text}"
    );
}

#[test]
fn head_behind_the_pin() {
    let s = stack();
    s.pins();
    let dir = s.by_hand("hand/app", &s.old, true, true);
    let repo = s.audit_path(&dir, 1);
    assert_eq!(repo["head_state"], "behind");
    assert_eq!(repo["head"], s.old.as_str());
    // What the pin changed since `old` is missing from this tree.
    let mut want = all_patched();
    want.insert("vllm/sampler.py".to_owned(), "residual".to_owned());
    want.insert("vllm/worker.py".to_owned(), "deleted".to_owned());
    assert_eq!(classes(&repo), want, "{repo:#}");
}

#[test]
fn head_diverged_from_the_pin() {
    let s = stack();
    s.pins();
    let dir = s.fx.clone_at(&s.up, &s.old, "hand/app");
    std::fs::write(dir.join("side.txt"), "side\n").unwrap();
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "a side branch off old"]);
    let repo = s.audit_path(&dir, 1);
    assert_eq!(repo["head_state"], "diverged");
    assert_eq!(classes(&repo)["side.txt"], "residual");
}

#[test]
fn head_unrelated_to_the_pin() {
    let s = stack();
    s.pins();
    let dir = s.by_hand("hand/app", &s.pin, true, true);
    git(&dir, &["checkout", "-q", "--orphan", "elsewhere"]);
    git(&dir, &["add", "-A"]);
    git(
        &dir,
        &["commit", "-q", "-m", "an orphan with the same files"],
    );
    let repo = s.audit_path(&dir, 1);
    assert_eq!(repo["head_state"], "unrelated");
    assert_eq!(repo["pinned_commit_present"], true);
    assert_eq!(classes(&repo), all_patched(), "{repo:#}");
}

#[test]
fn without_the_pinned_commit_index_lines_decide() {
    let s = stack();
    s.pins();
    // A shallow clone at a later commit: the pinned commit's objects are not there.
    let dir = s.fx.path("shallow/app");
    git(
        s.fx.root(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &format!("file://{}", s.up.url()),
            &dir.display().to_string(),
        ],
    );
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), s.later);
    assert!(!git_ok(
        &dir,
        &["cat-file", "-e", &format!("{}^{{commit}}", s.pin)]
    ));

    let repo = s.audit_path(&dir, 1);
    assert_eq!(repo["mode"], "index_lines");
    assert_eq!(repo["pinned_commit_present"], false);
    assert_eq!(repo["head_state"], "unknown");
    assert_eq!(repo["head"], s.later.as_str());
    assert_eq!(
        bundle(&repo, 0),
        ("not_applied".to_owned(), all_as(A_FILES, "unpatched"))
    );
    assert_eq!(
        bundle(&repo, 1),
        ("not_applied".to_owned(), all_as(b_files(), "unpatched"))
    );

    s.fx.git_apply(&dir, &s.diff_a, &[]);
    s.fx.git_apply(&dir, &s.diff_b, &[&format!("--directory={KDIR}")]);
    std::fs::write(dir.join("vllm/sampler.py"), "local\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "notes\n").unwrap();
    std::fs::write(dir.join("vllm/_C.so"), "so").unwrap();
    let before = Untouched::record(&s.fx, &dir);
    let repo = s.audit_path(&dir, 1);
    before.assert_same(&s.fx);
    assert_eq!(repo["mode"], "index_lines");
    // Abbreviated (bundle A) and full (bundle B) blob ids alike.
    assert_eq!(
        bundle(&repo, 0),
        ("applied".to_owned(), all_as(A_FILES, "patched"))
    );
    assert_eq!(
        bundle(&repo, 1),
        ("applied".to_owned(), all_as(b_files(), "patched"))
    );
    let mut want = all_patched();
    want.insert("vllm/sampler.py".to_owned(), "residual".to_owned());
    want.insert("notes.txt".to_owned(), "untracked".to_owned());
    assert_eq!(classes(&repo), want, "{repo:#}");
    assert_eq!(repo["ignored_skipped"], 1);

    // A drifted bundle file is told from both images.
    std::fs::write(dir.join("vllm/envs.py"), "neither\n").unwrap();
    let repo = s.audit_path(&dir, 1);
    assert_eq!(bundle(&repo, 0).0, "partially_applied");
    assert_eq!(bundle(&repo, 0).1["vllm/envs.py"], "drifted");

    let text = s.fx.stdout(
        &[
            "audit",
            "--path",
            &dir.display().to_string(),
            "--repo",
            "app",
        ],
        1,
    );
    assert!(
        text.contains("the pinned commit is not in this repository"),
        "{text}"
    );
    assert!(text.contains("index lines"), "{text}");
    assert!(text.contains("weaker"), "{text}");

    // The residual cannot be exported without the pin's objects; nothing is written.
    s.fx.pinstack()
        .args([
            "audit",
            "--path",
            &dir.display().to_string(),
            "--repo",
            "app",
            "--export-residual",
            "residual.b64",
        ])
        .assert()
        .code(3);
    assert!(!s.fx.path("residual.b64").exists());
}

#[test]
fn a_repo_with_the_same_files_and_another_history_uses_index_lines() {
    let s = stack();
    s.pins();
    let dir = s.fx.path("foreign/app");
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["-c", "init.defaultBranch=main", "init", "-q", "."]);
    let archive = git_bytes(&s.up.path, &["archive", "--format=tar", &s.pin]);
    pipe("tar", &["-x", "-C", &dir.display().to_string()], &archive);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "imported"]);
    s.fx.git_apply(&dir, &s.diff_a, &[]);
    let repo = s.audit_path(&dir, 1);
    assert_eq!(repo["mode"], "index_lines");
    assert_eq!(repo["pinned_commit_present"], false);
    assert_eq!(
        bundle(&repo, 0),
        ("applied".to_owned(), all_as(A_FILES, "patched"))
    );
    assert_eq!(
        bundle(&repo, 1),
        ("not_applied".to_owned(), all_as(b_files(), "unpatched"))
    );
    let mut want = all_as(A_FILES, "patched");
    want.extend(all_as(b_files(), "unpatched"));
    assert_eq!(classes(&repo), want, "{repo:#}");
}

/// Runs `audit --export-residual FILE --json` and returns the repo report.
fn export(s: &Stack, file: &str, code: i32) -> (Value, String) {
    let out =
        s.fx.pinstack()
            .args(["audit", "--export-residual", file, "--json"])
            .assert()
            .code(code)
            .get_output()
            .clone();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["repos"][0].clone(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_residual_reproduces_the_tree_with_git_apply() {
    let s = stack();
    let co = s.applied();
    every_class(&s, &co);
    // A binary untracked file, too.
    s.fx.write(
        "workspace/src/app/assets/new.bin",
        [0u8, 159, 146, 150, 0, 1],
    );
    let before = Untouched::record(&s.fx, &co);

    let (repo, _) = export(&s, "residual.patch.gz.b64", 1);
    before.assert_same(&s.fx);
    let encoded = s.fx.read("residual.patch.gz.b64");
    let diff = decode_bundle(&encoded);
    let residual = &repo["residual"];
    assert_eq!(residual["bundle"], "residual.patch.gz.b64");
    assert_eq!(residual["sha256"], sha256(&encoded).as_str());
    assert_eq!(residual["diff_sha256"], sha256(&diff).as_str());

    // Everything no bundle explains is in it; the patched files and ignored outputs are not.
    let text = String::from_utf8_lossy(&diff).into_owned();
    for path in [
        "notes.txt",
        "assets/new.bin",
        "assets/logo.bin",
        "vllm/configs/E=64,N=(7),x=[1].json",
        "vllm/envs.py",
        "vllm/staged_new.py",
    ] {
        assert!(
            text.contains(&format!("diff --git a/{path} b/{path}\n")),
            "{path} not in the residual:\n{text}"
        );
    }
    assert!(text.contains("GIT binary patch"), "{text}");
    for path in ["vllm/kv_offload.py", "build/out.o", "vllm/_C.so", MOE] {
        assert!(!text.contains(path), "{path} in the residual:\n{text}");
    }

    // Git is the oracle: pin + bundles + residual, each applied with `git apply`.
    let want = s.fx.oracle_tree(
        &s.up,
        &s.pin,
        &[(&s.diff_a, None), (&s.diff_b, Some(KDIR)), (&diff, None)],
    );
    assert_eq!(
        before.tree, want,
        "pin + bundles + residual is not the audited tree"
    );

    // The human run prints the pins.yaml entry that adopts it, with both hashes.
    let out =
        s.fx.pinstack()
            .args(["audit", "--export-residual", "again.patch.gz.b64"])
            .assert()
            .code(1)
            .get_output()
            .clone();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.fx.read("again.patch.gz.b64"),
        encoded,
        "the export is deterministic"
    );
    assert!(
        printed.contains("- bundle: again.patch.gz.b64"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("sha256: {}", sha256(&encoded))),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("diff_sha256: {}", sha256(&diff))),
        "{printed}"
    );
    before.assert_same(&s.fx);

    // Adopting it makes the tree clean as pinned: the residual is now a bundle.
    let adopted = crate::harness::Bundle {
        path: "residual.patch.gz.b64".to_owned(),
        sha256: sha256(&encoded),
        diff_sha256: sha256(&diff),
    };
    s.fx.pins(&[s.pin_entry().patch(adopted.entry())]);
    let repo = s.audit(&[], 0);
    assert!(classes(&repo).values().all(|c| c == "patched"), "{repo:#}");
    assert_eq!(bundle(&repo, 2).0, "applied");
    assert_eq!(s.fx.json(&["check"], 0)["ok"], true);
}

#[test]
fn hostile_looking_paths_round_trip_through_the_report_and_the_residual() {
    let s = stack();
    let co = s.applied();
    let odd = [
        "cfg/E=1,N=2.json",
        "cfg/a(b)c.txt",
        "cfg/[x]y.txt",
        "cfg/=,([.txt",
    ];
    for p in odd {
        s.fx.write(&format!("workspace/src/app/{p}"), format!("{p}\n"));
    }
    std::fs::write(co.join(MOE), "{\"drifted\": true}\n").unwrap();
    let repo = s.audit(&[], 1);
    let got = classes(&repo);
    for p in odd {
        assert_eq!(got[p], "untracked", "{repo:#}");
    }
    assert_eq!(got[MOE], "drifted");
    assert_eq!(bundle(&repo, 0).1[MOE], "drifted");
    let text = s.fx.stdout(&["audit"], 1);
    for p in odd.iter().chain([&MOE]) {
        assert!(text.contains(&format!("    {p}\n")), "{p} in\n{text}");
    }

    let tree = s.fx.worktree_tree(&co);
    export(&s, "odd.patch.gz.b64", 1);
    let diff = decode_bundle(&s.fx.read("odd.patch.gz.b64"));
    let want = s.fx.oracle_tree(
        &s.up,
        &s.pin,
        &[(&s.diff_a, None), (&s.diff_b, Some(KDIR)), (&diff, None)],
    );
    assert_eq!(tree, want);
}

#[test]
fn a_clean_tree_exports_nothing() {
    let s = stack();
    let co = s.applied();
    let before = Untouched::record(&s.fx, &co);
    let (repo, stderr) = export(&s, "nothing.patch.gz.b64", 0);
    before.assert_same(&s.fx);
    assert_eq!(repo["residual"], Value::Null);
    assert!(!s.fx.path("nothing.patch.gz.b64").exists());
    assert!(stderr.contains("no residual"), "{stderr}");
}

#[test]
fn exporting_needs_exactly_one_repo() {
    let s = stack();
    let lab = s.fx.upstream("lab");
    lab.write("README", "lab\n");
    let lab_commit = lab.commit("lab");
    s.fx.pins(&[s.pin_entry(), Pin::new("lab", &lab, &lab_commit)]);
    s.fx.json(&["apply"], 0);
    std::fs::write(s.fx.checkout("app").join("notes.txt"), "n\n").unwrap();
    let err = s.fx.stderr(&["audit", "--export-residual", "r.b64"], 2);
    assert!(err.contains("exactly one repo"), "{err}");
    assert!(!s.fx.path("r.b64").exists());
    // Naming one is enough.
    s.fx.stderr(&["audit", "app", "--export-residual", "r.b64"], 1);
    assert!(s.fx.path("r.b64").exists());
}

#[test]
fn several_repos_a_bundle_read_from_another_repo_and_a_missing_checkout() {
    let s = stack();
    let lab = s.fx.upstream("lab");
    lab.write("patches/a.patch.gz.b64", s.fx.read(&s.a.path));
    let lab_commit = lab.commit("lab carries bundle a");
    let app = Pin::new("app", &s.up, &s.pin)
        .patch(s.a.entry().in_repo("lab", "patches/a.patch.gz.b64"))
        .patch(s.b.entry().base_dir(KDIR));
    s.fx.pins(&[app, Pin::new("lab", &lab, &lab_commit)]);
    s.fx.json(&["apply"], 0);

    let v = s.fx.json(&["audit"], 0);
    let repos = v["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 2);
    assert_eq!(repos[0]["name"], "app");
    assert_eq!(repos[1]["name"], "lab");
    assert_eq!(
        repos[0]["bundles"][0]["bundle"],
        "lab:patches/a.patch.gz.b64"
    );
    assert_eq!(classes(&repos[0]), all_patched());
    assert_eq!(repos[1]["bundles"], serde_json::json!([]));
    assert_eq!(repos[1]["clean_as_pinned"], true);

    // The lab checkout is gone: the bundle is read from the object cache (filled by check).
    s.fx.json(&["check"], 0);
    std::fs::remove_dir_all(s.fx.checkout("lab")).unwrap();
    let app = s.fx.json(&["audit", "app"], 0);
    assert_eq!(classes(&app["repos"][0]), all_patched());
    let v = s.fx.json(&["audit"], 1);
    let lab = &v["repos"][1];
    assert_shape(lab);
    assert_eq!(lab["head_state"], "missing");
    assert_eq!(lab["clean_as_pinned"], false);
    assert_eq!(lab["head"], Value::Null);
    assert_eq!(v["repos"][0]["clean_as_pinned"], true);
    let text = s.fx.stdout(&["audit", "lab"], 1);
    assert!(text.contains("no checkout here"), "{text}");
    assert!(text.contains("NOT clean as pinned"), "{text}");
}

#[test]
fn bad_input_is_exit_2() {
    let s = stack();
    s.pins();
    s.fx.stderr(&["audit", "nosuch"], 2);
    s.fx.stderr(&["audit", "--path", "somewhere"], 2);
    s.fx.stderr(&["audit", "--repo", "app"], 2);
    s.fx.stderr(&["audit", "--path", "somewhere", "--repo", "nosuch"], 2);
    s.fx.stderr(&["audit", "app", "--path", "somewhere", "--repo", "app"], 2);
    s.fx.stderr(&["--pins", "absent.yaml", "audit"], 2);
    s.fx.write("broken.yaml", "repos: [\n");
    s.fx.stderr(&["--pins", "broken.yaml", "audit"], 2);
    // A bundle that cannot be decoded is bad input; one whose bytes are not the pinned ones is
    // "not as pinned".
    let dir = s.fx.clone_at(&s.up, &s.pin, "hand/app");
    let path = dir.display().to_string();
    let junk =
        s.fx.raw_bundle("junk", b"this is not base64 at all!\n", None);
    s.fx.pins(&[Pin::new("app", &s.up, &s.pin).patch(junk.entry())]);
    let err = s.fx.stderr(&["audit", "--path", &path, "--repo", "app"], 2);
    assert!(err.contains(&junk.path), "{err}");
    let mut wrong = s.a.entry();
    wrong.sha256 = "ab".repeat(32);
    s.fx.pins(&[Pin::new("app", &s.up, &s.pin).patch(wrong)]);
    let err = s.fx.stderr(&["audit", "--path", &path, "--repo", "app"], 1);
    assert!(err.contains("sha256 mismatch"), "{err}");
}

/// An upstream whose pin gets two stacked bundles: A edits `f.txt`, makes `run.sh` executable
/// (a mode-only change) and renames `old.txt` unchanged (no `index` line for either); B edits
/// `f.txt` again.
struct Stacked {
    fx: Fixture,
    up: Upstream,
    pin: String,
    diff_a: Vec<u8>,
    diff_b: Vec<u8>,
}

fn stacked() -> Stacked {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write("f.txt", numbered("f", 30))
        .write("run.sh", "#!/bin/sh\n")
        .write("old.txt", numbered("old", 20));
    let pin = up.commit("pin");
    up.write("f.txt", numbered("f", 30).replace("f 5\n", "f five\n"))
        .chmod("run.sh", 0o755)
        .rename("old.txt", "new.txt");
    let with_a = up.commit("a");
    let diff_a = git_bytes(&up.path, &["diff", "-M", &pin, &with_a]);
    let text = String::from_utf8_lossy(&diff_a).into_owned();
    assert!(text.contains("similarity index 100%"), "{text}");
    assert!(text.contains("old mode 100644\nnew mode 100755"), "{text}");
    up.write(
        "f.txt",
        numbered("f", 30)
            .replace("f 5\n", "f five\n")
            .replace("f 25\n", "f twenty-five\n"),
    );
    let with_b = up.commit("b");
    let diff_b = git_bytes(&up.path, &["diff", "-M", &with_a, &with_b]);
    let a = fx.bundle("a", &diff_a);
    let b = fx.bundle("b", &diff_b);
    fx.pins(&[Pin::new("app", &up, &pin).patch(a.entry()).patch(b.entry())]);
    Stacked {
        fx,
        up,
        pin,
        diff_a,
        diff_b,
    }
}

impl Stacked {
    fn audit(&self, dir: &Path, code: i32) -> Value {
        let v = self.fx.json(
            &[
                "audit",
                "--path",
                &dir.display().to_string(),
                "--repo",
                "app",
            ],
            code,
        );
        let repo = v["repos"][0].clone();
        assert_shape(&repo);
        repo
    }

    /// Audits `dir` with nothing applied, then A, then A and B, expecting the same verdicts in
    /// full and index-line mode.
    fn assert_stages(&self, dir: &Path, mode: &str) {
        let a_files = |state: &str, f: &str| {
            map(&[
                ("f.txt", f),
                ("new.txt", state),
                ("old.txt", state),
                ("run.sh", state),
            ])
        };
        let repo = self.audit(dir, 1);
        assert_eq!(repo["mode"], mode);
        assert_eq!(
            bundle(&repo, 0),
            ("not_applied".to_owned(), a_files("unpatched", "unpatched")),
            "{repo:#}"
        );
        // The pin's content is unpatched for B too, though B's pre-image is A's result.
        assert_eq!(
            bundle(&repo, 1),
            ("not_applied".to_owned(), map(&[("f.txt", "unpatched")])),
            "{repo:#}"
        );
        assert_eq!(
            classes(&repo),
            a_files("unpatched", "unpatched"),
            "{repo:#}"
        );

        self.fx.git_apply(dir, &self.diff_a, &[]);
        let repo = self.audit(dir, 1);
        assert_eq!(
            bundle(&repo, 0),
            ("applied".to_owned(), a_files("patched", "patched")),
            "{repo:#}"
        );
        assert_eq!(
            bundle(&repo, 1),
            ("not_applied".to_owned(), map(&[("f.txt", "unpatched")])),
            "{repo:#}"
        );
        // f.txt holds A's result: neither the pin's content nor the bundles' result.
        assert_eq!(classes(&repo), a_files("patched", "drifted"), "{repo:#}");

        self.fx.git_apply(dir, &self.diff_b, &[]);
        let repo = self.audit(dir, if mode == "full" { 0 } else { 1 });
        assert_eq!(bundle(&repo, 0).0, "applied", "{repo:#}");
        assert_eq!(bundle(&repo, 1).0, "applied", "{repo:#}");
        assert_eq!(classes(&repo), a_files("patched", "patched"), "{repo:#}");

        // A mode the bundle did not ask for is drift, in both modes.
        {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join("run.sh");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let repo = self.audit(dir, 1);
        assert_eq!(bundle(&repo, 0).1["run.sh"], "unpatched", "{repo:#}");
    }
}

#[test]
fn stacked_bundles_renames_and_mode_changes_with_the_pinned_commit() {
    let s = stacked();
    let dir = s.fx.clone_at(&s.up, &s.pin, "hand/app");
    s.assert_stages(&dir, "full");
}

#[test]
fn stacked_bundles_renames_and_mode_changes_from_index_lines() {
    let s = stacked();
    let dir = s.fx.path("foreign/app");
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["-c", "init.defaultBranch=main", "init", "-q", "."]);
    let archive = git_bytes(&s.up.path, &["archive", "--format=tar", &s.pin]);
    pipe("tar", &["-x", "-C", &dir.display().to_string()], &archive);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "imported"]);
    s.assert_stages(&dir, "index_lines");
}

#[test]
fn files_checked_out_with_crlf_line_endings_are_not_drift() {
    let fx = Fixture::new();
    let up = fx.upstream("app");
    up.write(".gitattributes", "*.txt text eol=crlf\n")
        .write("f.txt", numbered("f", 20))
        .write("g.txt", numbered("g", 5));
    let pin = up.commit("pin");
    up.write("f.txt", numbered("f", 20).replace("f 3\n", "f three\n"))
        .write("new.txt", "new\n");
    let tip = up.commit("bundle");
    let diff = up.diff(&pin, &tip);
    let b = fx.bundle("a", &diff);
    fx.pins(&[Pin::new("app", &up, &pin).patch(b.entry())]);
    // Written with CRLF, as git writes them; the blobs are the LF ones.
    fx.json(&["apply"], 0);
    let co = fx.checkout("app");
    assert!(std::fs::read(co.join("f.txt")).unwrap().ends_with(b"\r\n"));
    assert_eq!(
        fx.worktree_tree(&co),
        fx.oracle_tree(&up, &pin, &[(&diff, None)])
    );
    let v = fx.json(&["audit"], 0);
    let repo = &v["repos"][0];
    assert_eq!(
        classes(repo),
        map(&[("f.txt", "patched"), ("new.txt", "patched")]),
        "{repo:#}"
    );
    // A real change is still seen.
    std::fs::write(co.join("g.txt"), "g changed\r\n").unwrap();
    std::fs::write(co.join("f.txt"), "f changed\r\n").unwrap();
    let v = fx.json(&["audit"], 1);
    assert_eq!(
        classes(&v["repos"][0]),
        map(&[
            ("f.txt", "drifted"),
            ("g.txt", "residual"),
            ("new.txt", "patched")
        ])
    );
}

#[test]
fn a_nested_repository_is_untracked_and_cannot_be_exported() {
    let s = stack();
    let co = s.applied();
    let nested = co.join("third_party/scratch");
    std::fs::create_dir_all(&nested).unwrap();
    git(
        &nested,
        &["-c", "init.defaultBranch=main", "init", "-q", "."],
    );
    std::fs::write(nested.join("x.txt"), "x\n").unwrap();
    git(&nested, &["add", "-A"]);
    git(&nested, &["commit", "-q", "-m", "nested"]);
    let repo = s.audit(&[], 1);
    assert_eq!(
        classes(&repo)["third_party/scratch/"],
        "untracked",
        "{repo:#}"
    );
    // A bundle cannot carry another repository: nothing is written.
    let err =
        s.fx.stderr(&["audit", "--export-residual", "nested.patch.gz.b64"], 1);
    assert!(err.contains("third_party/scratch/"), "{err}");
    assert!(!s.fx.path("nested.patch.gz.b64").exists());
}

#[test]
fn the_adopting_entry_is_a_result_and_names_the_bundle_as_pins_yaml_reads_it() {
    let s = stack();
    s.fx.pins(&[]);
    std::fs::remove_file(s.fx.path("pins.yaml")).unwrap();
    let conf = s.fx.path("conf");
    std::fs::create_dir_all(conf.join("patches")).unwrap();
    for b in [&s.a, &s.b] {
        std::fs::copy(s.fx.path(&b.path), conf.join(&b.path)).unwrap();
    }
    s.fx.write(
        "conf/pins.yaml",
        crate::harness::pins_yaml(&[s.pin_entry()]),
    );
    s.fx.json(&["--pins", "conf/pins.yaml", "apply"], 0);
    std::fs::write(s.fx.checkout("app").join("notes.txt"), "notes\n").unwrap();

    // Quiet silences progress, not results.
    let out = s.fx.stdout(
        &[
            "--pins",
            "conf/pins.yaml",
            "-q",
            "audit",
            "--export-residual",
            "conf/patches/residual.patch.gz.b64",
        ],
        1,
    );
    let encoded = s.fx.read("conf/patches/residual.patch.gz.b64");
    let diff = decode_bundle(&encoded);
    assert!(
        out.contains("      - bundle: patches/residual.patch.gz.b64\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("        sha256: {}\n", sha256(&encoded))),
        "{out}"
    );
    assert!(
        out.contains(&format!("        diff_sha256: {}", sha256(&diff))),
        "{out}"
    );
    // The printed entry, added to pins.yaml as it is, is read and makes the tree clean.
    let entry = &out[out.find("      - bundle:").unwrap()..];
    // (app's patches are the last lines of the file: the entry goes right after them.)
    let mut yaml = crate::harness::pins_yaml(&[s.pin_entry()]);
    yaml.push_str(entry.trim_end());
    yaml.push('\n');
    s.fx.write("conf/pins.yaml", yaml);
    let v = s.fx.json(&["--pins", "conf/pins.yaml", "audit"], 0);
    assert_eq!(v["repos"][0]["bundles"][2]["state"], "applied", "{v:#}");
}

#[test]
fn two_bundles_the_second_large_audit_clean() {
    // The second bundle reads enough files to be read on every core; its base is the first
    // bundle's tree, which exists only in memory.
    let fx = Fixture::new();
    let up = fx.upstream("app");
    for i in 0..160 {
        up.write(
            &format!("d{}/f{i}.txt", i % 7),
            format!("file {i}\nline two\n"),
        );
    }
    let base = up.commit("base");
    up.write("d0/f0.txt", "file 0 changed\nline two\n");
    let first = up.commit("first bundle");
    for i in 1..160 {
        up.write(
            &format!("d{}/f{i}.txt", i % 7),
            format!("file {i}\nline two changed\n"),
        );
    }
    let second = up.commit("second bundle");
    let diffs = [up.diff(&base, &first), up.diff(&first, &second)];
    let tree = fx.assert_apply_like_git(&up, &base, &[(&diffs[0], None), (&diffs[1], None)]);
    assert_eq!(tree, up.tree(&second));
    let v = fx.json(&["audit"], 0);
    let repo = &v["repos"][0];
    assert_eq!(repo["clean_as_pinned"], true, "{repo:#}");
    assert_eq!(repo["counts"]["patched"], 160, "{repo:#}");
}

#[test]
fn a_change_staged_and_taken_back_in_its_file_is_not_clean() {
    let s = stack();
    let co = s.applied();
    // The bundles' own changes staged: the index holds what the files hold; still clean.
    git(&co, &["add", "-A"]);
    let repo = s.audit(&[], 0);
    assert_eq!(repo["staged_apart"], serde_json::json!([]), "{repo:#}");
    // A change staged, then taken back in the file: git status shows MM, and a commit would
    // record what no file shows.
    let readme = std::fs::read(co.join("README.md")).unwrap();
    std::fs::write(co.join("README.md"), "staged only\n").unwrap();
    git(&co, &["add", "README.md"]);
    std::fs::write(co.join("README.md"), &readme).unwrap();
    // A bundle file staged with other content, the file itself as the bundle has it.
    let envs = std::fs::read(co.join("vllm/envs.py")).unwrap();
    std::fs::write(co.join("vllm/envs.py"), "half of a bundle\n").unwrap();
    git(&co, &["add", "vllm/envs.py"]);
    std::fs::write(co.join("vllm/envs.py"), &envs).unwrap();
    let repo = s.audit(&[], 1);
    assert_eq!(
        repo["staged_apart"],
        serde_json::json!(["README.md", "vllm/envs.py"]),
        "{repo:#}"
    );
    assert_eq!(classes(&repo).get("README.md"), None, "{repo:#}");
    let text = s.fx.stdout(&["audit"], 1);
    assert!(
        text.contains("staged apart from the work tree (2 path(s))"),
        "{text}"
    );
    // Unstaged again (the index back at the files): clean.
    git(&co, &["add", "README.md", "vllm/envs.py"]);
    s.audit(&[], 0);
}
