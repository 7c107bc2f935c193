//! pinstack against git on the same work, at several tree sizes.
//!
//! ```sh
//! cargo build --release
//! cargo bench --bench vs_git -- [--sizes 1000,10000,50000] [--runs N] [--quick] [--keep]
//! ```
//!
//! Generates its data in a temporary folder (an upstream with a long history made with
//! `git fast-import`, bundles packed by `pinstack bundle pack` from diffs made by git), runs
//! every case once as a warm-up and then `--runs` times (half as many at 50,000 files and more),
//! alternating pinstack and git so a busy machine slows both alike, and prints markdown tables:
//! medians, the ratio pinstack / git, and how each cost grows from the smallest to the largest
//! size. The ratios are the claim, not the absolute times. Nothing here asserts a time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Numbers of changed files in the bundles of cases 2 and 3.
const BUNDLE_SIZES: [usize; 3] = [10, 100, 1000];
/// Commits of history on top of the first one.
const HISTORY: usize = 200;
/// Steps of the case-5 recipe, and every how many steps one takes the source tree as input.
const STEPS: usize = 20;
const TREE_INPUT_EVERY: usize = 5;

struct Opts {
    sizes: Vec<usize>,
    runs: usize,
    big_diff_mb: usize,
    keep: bool,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        sizes: vec![1000, 10_000, 50_000],
        runs: 5,
        big_diff_mb: 50,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sizes" => {
                let v = args.next().expect("--sizes needs a list, e.g. 1000,10000");
                o.sizes = v
                    .split(',')
                    .map(|s| s.trim().parse().expect("--sizes: numbers"))
                    .collect();
            }
            "--runs" => o.runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--quick" => {
                o.sizes = vec![300, 2000];
                o.runs = 3;
                o.big_diff_mb = 5;
            }
            "--keep" => o.keep = true,
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => panic!(
                "unknown argument {other:?}; usage: vs_git [--sizes 1000,10000,50000] [--runs N] [--quick] [--keep]"
            ),
        }
    }
    o
}

/// The environment every process gets: git blind to the user's configuration, reproducible
/// commits, a private HOME.
fn env_for(cmd: &mut Command, home: &Path) {
    for k in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_CONFIG_COUNT",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
}

struct World {
    root: PathBuf,
    bin: PathBuf,
}

impl World {
    fn cmd(&self, prog: &str, args: &[&str], cwd: &Path) -> Command {
        let prog = if prog == "pinstack" {
            self.bin.as_os_str()
        } else {
            prog.as_ref()
        };
        let mut c = Command::new(prog);
        c.args(args).current_dir(cwd);
        env_for(&mut c, &self.root.join("home"));
        c
    }

    /// Runs to completion; panics unless the exit code is one of `ok`. Returns stdout.
    fn run(&self, prog: &str, args: &[&str], cwd: &Path, ok: &[i32]) -> Vec<u8> {
        let out = self
            .cmd(prog, args, cwd)
            .output()
            .unwrap_or_else(|e| panic!("{prog}: {e}"));
        let code = out.status.code().unwrap_or(-1);
        assert!(
            ok.contains(&code),
            "{prog} {args:?} in {} exited {code}: {}",
            cwd.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Like `run`, output discarded (what the timed runs do).
    fn quiet(&self, prog: &str, args: &[&str], cwd: &Path, ok: &[i32]) {
        let out = self
            .cmd(prog, args, cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("{prog}: {e}"));
        let code = out.status.code().unwrap_or(-1);
        assert!(
            ok.contains(&code),
            "{prog} {args:?} in {} exited {code}: {}",
            cwd.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn git(&self, cwd: &Path, args: &[&str]) -> String {
        String::from_utf8(self.run("git", args, cwd, &[0]))
            .unwrap()
            .trim()
            .to_owned()
    }
}

/// Content of file `i` at version `v`: thirty distinct lines, about 1.2 KB.
fn content(i: usize, v: usize) -> String {
    let mut s = String::with_capacity(1300);
    for l in 0..30 {
        let _ = writeln!(
            s,
            "def f{i}_{l}(x): return x * {} + {v}  # module {i}",
            l + 1
        );
    }
    s
}

fn path_of(i: usize) -> String {
    format!("pkg{:03}/mod{:02}/file{i}.py", i / 1000, (i / 50) % 20)
}

fn fast_import_file(stream: &mut Vec<u8>, path: &str, data: &str) {
    let _ = write!(stream, "M 644 inline {path}\ndata {}\n", data.len());
    stream.extend_from_slice(data.as_bytes());
    stream.push(b'\n');
}

fn fast_import(w: &World, repo: &Path, stream: &[u8]) {
    let mut child = w
        .cmd("git", &["fast-import", "--quiet"], repo)
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    child.stdin.take().unwrap().write_all(stream).unwrap();
    assert!(child.wait().unwrap().success(), "git fast-import failed");
}

/// One size's data: an upstream with history, bundles, pins files, a recipe.
struct Data {
    dir: PathBuf,
    url: String,
    pin: String,
    checkout: PathBuf,
}

fn commit_header(stream: &mut Vec<u8>, branch: &str, n: usize) {
    let _ = write!(
        stream,
        "commit refs/heads/{branch}\ncommitter Bench <bench@example.invalid> {} +0000\ndata 10\ncommit {n:03}\n",
        1_700_000_000 + n
    );
}

fn pins_yaml(url: &str, pin: &str, bundle: Option<(&str, &str, &str)>) -> String {
    let mut s = format!("repos:\n  big:\n    url: {url}\n    commit: {pin}\n");
    if let Some((path, sha, diff_sha)) = bundle {
        let _ = write!(
            s,
            "    patches:\n      - bundle: {path}\n        sha256: {sha}\n        diff_sha256: {diff_sha}\n"
        );
    }
    s
}

/// Packs a diff with `pinstack bundle pack`; returns (bundle path, sha256, diff_sha256).
fn pack(w: &World, dir: &Path, name: &str, diff: &[u8]) -> (String, String, String) {
    let rel = format!("patches/{name}.patch");
    std::fs::create_dir_all(dir.join("patches")).unwrap();
    std::fs::write(dir.join(&rel), diff).unwrap();
    let out_rel = format!("{rel}.gz.b64");
    let out = String::from_utf8(w.run(
        "pinstack",
        &["bundle", "pack", &rel, "-o", &out_rel],
        dir,
        &[0],
    ))
    .unwrap();
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .trim()
            .to_owned()
    };
    (out_rel, field("sha256:"), field("diff_sha256:"))
}

fn generate(w: &World, n: usize) -> Data {
    let dir = w.root.join(format!("n{n}"));
    let upstream = dir.join("upstream");
    std::fs::create_dir_all(&upstream).unwrap();
    w.git(&upstream, &["init", "-q", "--bare", "-b", "main", "."]);

    // The first commit holds every file; then HISTORY commits change 20 files each.
    let mut version = vec![0usize; n];
    let mut s = Vec::with_capacity(n * 1400);
    commit_header(&mut s, "main", 0);
    for (i, v) in version.iter().enumerate() {
        fast_import_file(&mut s, &path_of(i), &content(i, *v));
    }
    let mut x: usize = 12345;
    for c in 1..=HISTORY {
        commit_header(&mut s, "main", c);
        for _ in 0..20 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (x >> 33) % n;
            version[i] += 1;
            fast_import_file(&mut s, &path_of(i), &content(i, version[i]));
        }
    }
    // Side branches holding each bundle's change: k files spread over the tree, each with a
    // line changed near the top and two lines added near the bottom.
    for (b, &k) in BUNDLE_SIZES.iter().enumerate() {
        let k = k.min(n);
        commit_header(&mut s, &format!("side{k}"), HISTORY + 1 + b);
        let _ = writeln!(s, "from refs/heads/main");
        for j in 0..k {
            let i = j * n / k;
            let mut lines: Vec<String> =
                content(i, version[i]).lines().map(str::to_owned).collect();
            lines[3] = format!("def f{i}_3(x): return x - 1  # patched");
            lines.insert(25, format!("PATCHED_{i} = True"));
            lines.insert(26, String::new());
            let mut text = lines.join("\n");
            text.push('\n');
            fast_import_file(&mut s, &path_of(i), &text);
        }
    }
    fast_import(w, &upstream, &s);
    drop(s);
    let pin = w.git(&upstream, &["rev-parse", "main"]);
    let url = upstream.to_str().unwrap().to_owned();

    std::fs::write(dir.join("pins-b0.yaml"), pins_yaml(&url, &pin, None)).unwrap();
    for &k in &BUNDLE_SIZES {
        let k = k.min(n);
        let diff = w.run(
            "git",
            &["diff", "--full-index", "main", &format!("side{k}")],
            &upstream,
            &[0],
        );
        let (path, sha, diff_sha) = pack(w, &dir, &format!("b{k}"), &diff);
        std::fs::write(
            dir.join(format!("pins-b{k}.yaml")),
            pins_yaml(&url, &pin, Some((&path, &sha, &diff_sha))),
        )
        .unwrap();
    }

    // The shared checkout, made by pinstack itself.
    w.quiet(
        "pinstack",
        &["--pins", "pins-b0.yaml", "--workspace", "ws", "fetch"],
        &dir,
        &[0],
    );
    let checkout = dir.join("ws/src/big");
    assert_eq!(w.git(&checkout, &["rev-parse", "HEAD"]), pin);

    // The case-5 recipe: STEPS steps in a chain; every TREE_INPUT_EVERY-th takes the source tree
    // as input, the others a small file of their own.
    let mut r = String::from("name: bench\nsteps:\n");
    std::fs::create_dir_all(dir.join("in")).unwrap();
    for st in 0..STEPS {
        let input = if st % TREE_INPUT_EVERY == 0 {
            "ws/src/big".to_owned()
        } else {
            let f = format!("in/s{st:02}.txt");
            std::fs::write(dir.join(&f), format!("input of step {st}\n")).unwrap();
            f
        };
        let _ = write!(
            r,
            "  - id: s{st:02}\n    run: \"true\"\n    inputs: [{input}]\n"
        );
    }
    std::fs::write(dir.join("recipe.yaml"), r).unwrap();
    w.quiet(
        "pinstack",
        &["--workspace", "ws-recipe", "up", "recipe.yaml"],
        &dir,
        &[0],
    );

    Data {
        dir,
        url,
        pin,
        checkout,
    }
}

/// A 50 MB (or `mb`) diff made by git: one new file of code-like lines, packed as a bundle.
fn generate_big_diff(w: &World, mb: usize) -> PathBuf {
    let dir = w.root.join("big-diff");
    std::fs::create_dir_all(&dir).unwrap();
    w.git(&dir, &["init", "-q", "-b", "main", "."]);
    let mut text = String::with_capacity(mb << 20);
    let mut x: u64 = 7;
    let mut l = 0;
    while text.len() < mb << 20 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let _ = writeln!(
            text,
            "    value_{} = compute_{}(x, {}, \"{:x}\")  # line {l}",
            (x >> 50) % 997,
            (x >> 40) % 89,
            (x >> 20) % 100_000,
            x >> 44
        );
        l += 1;
    }
    std::fs::write(dir.join("big.txt"), &text).unwrap();
    drop(text);
    w.git(&dir, &["add", "-N", "big.txt"]);
    let diff = w.run("git", &["diff", "--full-index"], &dir, &[0]);
    let (path, _, _) = pack(w, &dir, "big", &diff);
    dir.join(path)
}

fn rm(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}

/// Puts the shared checkout back at the pin, clean, and forgets what pinstack applied.
fn reset(w: &World, d: &Data) {
    w.git(&d.checkout, &["reset", "-q", "--hard", &d.pin]);
    w.git(&d.checkout, &["clean", "-fdq"]);
    rm(&d.dir.join("ws/.pinstack/applied"));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

struct Row {
    case: String,
    size: usize,
    pinstack_ms: f64,
    git_ms: f64,
}

/// Times `a` (pinstack) and `b` (git), alternating, after one warm-up of each; `prep` runs
/// untimed before every run of either.
fn measure(
    runs: usize,
    prep: &mut dyn FnMut(),
    a: &mut dyn FnMut(),
    b: &mut dyn FnMut(),
) -> (f64, f64) {
    let mut ta = Vec::new();
    let mut tb = Vec::new();
    for r in 0..=runs {
        prep();
        let t = Instant::now();
        a();
        let da = t.elapsed().as_secs_f64() * 1e3;
        prep();
        let t = Instant::now();
        b();
        let db = t.elapsed().as_secs_f64() * 1e3;
        if r > 0 {
            ta.push(da);
            tb.push(db);
        }
    }
    (median(ta), median(tb))
}

fn bench_size(w: &World, n: usize, runs: usize, rows: &mut Vec<Row>) {
    let t0 = Instant::now();
    let d = generate(w, n);
    eprintln!(
        "n={n}: data generated in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let dir = &d.dir;
    let co = &d.checkout;
    let mut push = |case: &str, (p, g): (f64, f64)| {
        eprintln!(
            "  {case:<34} pinstack {p:9.1} ms   git {g:9.1} ms   ratio {:.2}",
            p / g
        );
        rows.push(Row {
            case: case.to_owned(),
            size: n,
            pinstack_ms: p,
            git_ms: g,
        });
    };

    // 1. Fetch a pinned commit into an empty workspace.
    // Every run fetches into a folder of its own, removed only after the case: a tree deleted
    // just before makes the file system's next allocations in its folder group skip the
    // inodes it freed (ext4 scans past recently deleted ones), which costs whoever runs next
    // as much as the fetch itself at 1,000 files, and a user's fetch into a new workspace
    // never pays it.
    let fetches = dir.join("fetches");
    let run = std::cell::Cell::new(0usize);
    push(
        "1 fetch pinned commit",
        measure(
            runs,
            &mut || run.set(run.get() + 1),
            &mut || {
                let ws = format!("fetches/ps-{}", run.get());
                w.quiet(
                    "pinstack",
                    &["--pins", "pins-b0.yaml", "--workspace", &ws, "fetch"],
                    dir,
                    &[0],
                )
            },
            &mut || {
                let target = fetches.join(format!("git-{}", run.get()));
                w.quiet("git", &["init", "-q", target.to_str().unwrap()], dir, &[0]);
                w.quiet(
                    "git",
                    &["fetch", "-q", "--no-tags", "--depth", "1", &d.url, &d.pin],
                    &target,
                    &[0],
                );
                w.quiet("git", &["checkout", "-q", &d.pin], &target, &[0]);
            },
        ),
    );
    rm(&fetches);

    // 2 and 3. Check and apply bundles of 10, 100 and 1,000 changed files.
    for &nominal in &BUNDLE_SIZES {
        let k = nominal.min(n);
        let pins = format!("pins-b{k}.yaml");
        let diff = dir.join(format!("patches/b{k}.patch"));
        let diff = diff.to_str().unwrap();
        let pinstack = |command: &[&str]| {
            let args = [&["--pins", pins.as_str(), "--workspace", "ws"][..], command].concat();
            w.quiet("pinstack", &args, dir, &[0]);
        };
        let check = || pinstack(&["check", "--offline"]);
        let apply = || pinstack(&["apply"]);
        push(
            &format!("2 check --offline, {nominal} files"),
            measure(runs, &mut || {}, &mut || check(), &mut || {
                w.quiet("git", &["apply", "--check", diff], co, &[0])
            }),
        );
        // Context: git doing the same work from the object store (the index at the pin), as
        // `check` must, rather than from the work tree's plain files.
        push(
            &format!("2c check --offline, {nominal} files (ref: git apply --cached --check)"),
            measure(runs, &mut || {}, &mut || check(), &mut || {
                w.quiet("git", &["apply", "--cached", "--check", diff], co, &[0])
            }),
        );
        push(
            &format!("3 apply, {nominal} files"),
            measure(runs, &mut || reset(w, &d), &mut || apply(), &mut || {
                w.quiet("git", &["apply", diff], co, &[0])
            }),
        );
        // Context: what a safe apply needs from git, a status of the tree before writing.
        push(
            &format!("3c apply, {nominal} files (ref: git status + git apply)"),
            measure(runs, &mut || reset(w, &d), &mut || apply(), &mut || {
                w.quiet("git", &["status", "--porcelain"], co, &[0]);
                w.quiet("git", &["apply", diff], co, &[0]);
            }),
        );
        reset(w, &d);
    }
    reset(w, &d);

    // 4. Audit a clean tree, then one with 100 changed and 20 untracked files.
    let audit = |w: &World| {
        w.quiet(
            "pinstack",
            &["--pins", "pins-b0.yaml", "--workspace", "ws", "audit"],
            dir,
            &[0, 1],
        )
    };
    let status_diff = |w: &World| {
        w.quiet("git", &["status", "--porcelain"], co, &[0]);
        w.quiet("git", &["diff"], co, &[0]);
    };
    push(
        "4 audit, clean",
        measure(runs, &mut || {}, &mut || audit(w), &mut || status_diff(w)),
    );
    for j in 0..100.min(n) {
        let p = co.join(path_of(j * n / 100.min(n)));
        let mut t = std::fs::read_to_string(&p).unwrap();
        t.push_str("# local change\n");
        std::fs::write(p, t).unwrap();
    }
    for j in 0..20 {
        std::fs::write(co.join(format!("pkg000/untracked{j}.txt")), "new\n").unwrap();
    }
    push(
        "4 audit, 100 changed + 20 untracked",
        measure(runs, &mut || {}, &mut || audit(w), &mut || status_diff(w)),
    );
    reset(w, &d);

    // 5. plan, and up with nothing to do, against one `git status` of the source tree.
    let git_status = |w: &World| w.quiet("git", &["status", "--porcelain"], co, &[0]);
    push(
        "5 plan (20 steps)",
        measure(
            runs,
            &mut || {},
            &mut || {
                w.quiet(
                    "pinstack",
                    &["--workspace", "ws-recipe", "plan", "recipe.yaml"],
                    dir,
                    &[0],
                )
            },
            &mut || git_status(w),
        ),
    );
    push(
        "5 up, nothing to do (20 steps)",
        measure(
            runs,
            &mut || {},
            &mut || {
                w.quiet(
                    "pinstack",
                    &["--workspace", "ws-recipe", "up", "recipe.yaml"],
                    dir,
                    &[0],
                )
            },
            &mut || git_status(w),
        ),
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this target without it, and
    // a benchmark is no test: it says so and succeeds.
    if !std::env::args().any(|a| a == "--bench") {
        println!("vs_git is a benchmark: run it with `cargo bench --bench vs_git`");
        return;
    }
    let opts = parse_args();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var_os("PINSTACK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target/release/pinstack"));
    if !bin.is_file() {
        eprintln!(
            "error: {} not found; build it first with `cargo build --release` (or set PINSTACK_BIN)",
            bin.display()
        );
        std::process::exit(2);
    }
    let tmp = tempfile::Builder::new()
        .prefix("pinstack-bench-")
        .tempdir()
        .expect("temp dir");
    let root = tmp.path().to_owned();
    std::fs::create_dir_all(root.join("home")).unwrap();
    // pinstack runs as installed (`cargo install` and packages copy the binary): the linker's
    // own output file, run in place, took 0.6 to 0.8 ms longer to start on every run than a
    // copy of the same bytes (docs/benchmarks.md), which is a tenth of a small check. The copy
    // goes beside the binary, where running programs is allowed (a temporary folder may be
    // mounted noexec).
    let installed = bin.with_file_name("pinstack-bench-copy");
    std::fs::copy(&bin, &installed).expect("copying the pinstack binary");
    let w = World {
        root: root.clone(),
        bin: installed,
    };
    eprintln!("data in {}", root.display());
    let started = Instant::now();

    let mut rows = Vec::new();
    for &n in &opts.sizes {
        let runs = if n >= 50_000 {
            opts.runs.div_ceil(2)
        } else {
            opts.runs
        };
        bench_size(&w, n, runs.max(1), &mut rows);
    }

    // 6. Decode and verify a big bundle (independent of tree size).
    let t0 = Instant::now();
    let big = generate_big_diff(&w, opts.big_diff_mb);
    eprintln!("big diff generated in {:.1}s", t0.elapsed().as_secs_f64());
    let big_s = big.to_str().unwrap().to_owned();
    let script = format!("base64 -d '{big_s}' | gzip -dc | sha256sum >/dev/null");
    let (p, g) = measure(
        opts.runs,
        &mut || {},
        &mut || {
            w.quiet(
                "pinstack",
                &["bundle", "unpack", &big_s, "-o", "-"],
                &root,
                &[0],
            )
        },
        &mut || w.quiet("sh", &["-c", &script], &root, &[0]),
    );
    let case6 = format!("6 bundle unpack, {} MB diff", opts.big_diff_mb);
    eprintln!(
        "  {case6:<34} pinstack {p:9.1} ms   ref {g:9.1} ms   ratio {:.2}",
        p / g
    );
    let (p2, g2) = measure(
        opts.runs,
        &mut || {},
        &mut || w.quiet("pinstack", &["bundle", "show", &big_s], &root, &[0]),
        &mut || w.quiet("sh", &["-c", &script], &root, &[0]),
    );
    let case6b = format!("6 bundle show (+2 hashes, parse), {} MB", opts.big_diff_mb);
    eprintln!(
        "  {case6b:<34} pinstack {p2:9.1} ms   ref {g2:9.1} ms   ratio {:.2}",
        p2 / g2
    );

    // The tables.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n| case | files | pinstack (ms) | git (ms) | pinstack / git |\n|---|---:|---:|---:|---:|"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.2} |",
            r.case,
            r.size,
            r.pinstack_ms,
            r.git_ms,
            r.pinstack_ms / r.git_ms
        );
    }
    for (case, p, g) in [(&case6, p, g), (&case6b, p2, g2)] {
        let _ = writeln!(
            out,
            "| {case} | – | {p:.1} | {g:.1} (base64 -d \\| gzip -dc \\| sha256sum) | {:.2} |",
            p / g
        );
    }

    // Growth from the smallest to the largest size, per case.
    let mut by_case: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    let mut order = Vec::new();
    for r in &rows {
        if !by_case.contains_key(r.case.as_str()) {
            order.push(r.case.as_str());
        }
        by_case.entry(&r.case).or_default().push(r);
    }
    if opts.sizes.len() > 1 {
        let (lo, hi) = (opts.sizes[0], *opts.sizes.last().unwrap());
        let _ = writeln!(
            out,
            "\nGrowth from {lo} to {hi} files ({:.0}x the files):\n\n| case | pinstack | git |\n|---|---:|---:|",
            hi as f64 / lo as f64
        );
        for case in &order {
            let v = &by_case[case];
            let (a, b) = (v.first().unwrap(), v.last().unwrap());
            let _ = writeln!(
                out,
                "| {case} | {:.1}x | {:.1}x |",
                b.pinstack_ms / a.pinstack_ms,
                b.git_ms / a.git_ms
            );
        }
    }

    // Case 5 against its own target: git status plus a few ms per step.
    let _ = writeln!(
        out,
        "\nCase 5, pinstack minus one `git status`, per step ({STEPS} steps, {} take the tree):\n\n| case | files | (pinstack - git status) / step (ms) |\n|---|---:|---:|",
        STEPS / TREE_INPUT_EVERY
    );
    for r in rows.iter().filter(|r| r.case.starts_with('5')) {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} |",
            r.case,
            r.size,
            (r.pinstack_ms - r.git_ms) / STEPS as f64
        );
    }
    let _ = writeln!(
        out,
        "\nruns: {} (warm-up excluded; half as many at 50,000 files and more), total {:.0}s",
        opts.runs,
        started.elapsed().as_secs_f64()
    );
    println!("{out}");
    if opts.keep {
        let kept = tmp.keep();
        eprintln!("data kept in {}", kept.display());
    }
}
