//! The recipe engine (`plan`, `up`, `why`, `logs`, `reset`) over the real binary: recipes made in
//! the test, whose steps append to a counter per step (`<root>/counts/ID`, one line per run) and
//! write a marker (`<workspace>/markers/ID`) as their last action, so each test can count runs
//! and see what finished.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

use crate::harness::{Fixture, Pin, files_under, sha256};

/// The recipe file every test writes, relative to the fixture root (pinstack's working folder).
const RECIPE: &str = "recipe.yaml";

/// A fixture with a recipe and an explicit workspace, `<root>/ws`.
struct RecipeTest {
    fx: Fixture,
    ws: PathBuf,
}

impl RecipeTest {
    /// A fixture whose recipe is `yaml`.
    fn new(yaml: &str) -> RecipeTest {
        let fx = Fixture::new();
        let ws = fx.path("ws");
        let t = RecipeTest { fx, ws };
        t.recipe(yaml);
        t
    }

    /// Rewrites the recipe.
    fn recipe(&self, yaml: &str) -> &Self {
        self.fx.write(RECIPE, yaml);
        self
    }

    /// Writes a file under the fixture root.
    fn write(&self, rel: &str, text: &str) -> &Self {
        self.fx.write(rel, text);
        self
    }

    /// `pinstack --workspace WS --recipe recipe.yaml ARGS`, in the fixture root.
    fn pinstack(&self, args: &[&str]) -> Command {
        let mut cmd = self.fx.pinstack();
        cmd.env_remove("PINSTACK_RECIPE")
            .env_remove("PINSTACK_BOOT_ID")
            .env_remove("HF_TOKEN")
            .arg("--workspace")
            .arg(&self.ws)
            .args(["--recipe", RECIPE])
            .args(args);
        cmd
    }

    /// Runs `up` and asserts its exit code.
    fn up(&self, args: &[&str], code: i32) -> Output {
        let mut all = vec!["up"];
        all.extend_from_slice(args);
        self.run(&all, &[], code)
    }

    /// Runs pinstack with extra environment and asserts its exit code.
    fn run(&self, args: &[&str], env: &[(&str, &str)], code: i32) -> Output {
        let mut cmd = self.pinstack(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.assert().get_output().clone();
        assert_eq!(
            out.status.code(),
            Some(code),
            "pinstack {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// `plan --json`.
    fn plan(&self, env: &[(&str, &str)]) -> Value {
        let out = self.run(&["plan", "--json"], env, 0);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("plan --json: {e}\n{}", text(&out.stdout)))
    }

    /// Each step's status, in run order.
    fn statuses(&self) -> Vec<(String, String)> {
        self.statuses_with(&[])
    }

    fn statuses_with(&self, env: &[(&str, &str)]) -> Vec<(String, String)> {
        self.plan(env)["steps"]
            .as_array()
            .expect("plan --json has a steps array")
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_owned(),
                    s["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// One step's `{id, status, reason, ...}` from `plan --json`.
    fn step_plan(&self, id: &str) -> Value {
        let plan = self.plan(&[]);
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no step {id} in {plan:#}"))
            .clone()
    }

    /// Asserts every step's status.
    fn assert_statuses(&self, want: &[(&str, &str)]) {
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        assert_eq!(self.statuses(), want, "plan:\n{:#}", self.plan(&[]));
    }

    /// How many times a step ran (started).
    fn count(&self, id: &str) -> usize {
        std::fs::read_to_string(self.fx.path(&format!("counts/{id}")))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Asserts how many times each listed step ran.
    fn assert_counts(&self, want: &[(&str, usize)]) {
        let got: Vec<(&str, usize)> = want.iter().map(|(id, _)| (*id, self.count(id))).collect();
        assert_eq!(got, want, "run counts");
    }

    /// The markers the steps wrote: file name to content.
    fn markers(&self) -> BTreeMap<String, String> {
        let Ok(entries) = std::fs::read_dir(self.ws.join("markers")) else {
            return BTreeMap::new();
        };
        entries
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect()
    }

    /// Whether a step's marker exists.
    fn marker(&self, id: &str) -> bool {
        self.ws.join("markers").join(id).exists()
    }

    /// Starts `pinstack up` in the background (stdout and stderr captured).
    fn spawn_up(&self, env: &[(&str, &str)]) -> Child {
        let bin = assert_cmd::cargo::cargo_bin("pinstack");
        let mut cmd = StdCommand::new(bin);
        cmd.current_dir(self.fx.root())
            .env("PINSTACK_CACHE", self.fx.path("cache"))
            .env("HOME", self.fx.path("home"))
            .env("XDG_CACHE_HOME", self.fx.path("home/.cache"))
            .env("NO_COLOR", "1")
            .env_remove("PINSTACK_WORKSPACE")
            .env_remove("PINSTACK_RECIPE")
            .env_remove("PINSTACK_BOOT_ID")
            .env_remove("CI")
            .arg("--workspace")
            .arg(&self.ws)
            .args(["--recipe", RECIPE, "up"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("pinstack starts")
    }

    /// A path under the workspace.
    fn ws_path(&self, rel: &str) -> PathBuf {
        self.ws.join(rel)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// stdout and stderr together, for "appears nowhere in the output" checks.
fn all_output(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// One step of a test recipe. `keys` are extra YAML lines (`needs: []`, `inputs: [...]`);
/// `script` lines run after the counter is bumped and before the marker is written, which is
/// the step's last action.
fn step(id: &str, keys: &[&str], script: &[&str]) -> String {
    let mut out = format!("  - id: {id}\n");
    for k in keys {
        out.push_str(&format!("    {k}\n"));
    }
    out.push_str("    run: |\n");
    out.push_str("      mkdir -p \"${recipe_dir}/counts\" \"${workspace}/markers\"\n");
    out.push_str(&format!(
        "      echo run >> \"${{recipe_dir}}/counts/{id}\"\n"
    ));
    for line in script {
        out.push_str(&format!("      {line}\n"));
    }
    out.push_str(&format!(
        "      echo {id} > \"${{workspace}}/markers/{id}\"\n"
    ));
    out
}

/// A recipe: a header (name, vars, env, ...) and steps.
fn recipe(header: &str, steps: &[String]) -> String {
    format!("{header}\nsteps:\n{}", steps.concat())
}

/// The chain most tests use: `a` -> `b` -> `c` (each needs the one before it by default), and
/// `d`, which needs nothing. `a` and `d` have the inputs in/a.txt and in/d.txt, `b` an env value
/// from the caller (`MODE`, default `fast`), `c` uses the recipe variable `GREETING`.
fn chain() -> RecipeTest {
    let yaml = recipe(
        "name: chain\nvars:\n  GREETING: hello\n",
        &[
            step("a", &["inputs: [in/a.txt]"], &[]),
            step(
                "b",
                &["env:", "  MODE: ${env:MODE:-fast}"],
                &["echo \"mode $MODE\""],
            ),
            step("c", &[], &["echo '${GREETING}'"]),
            step("d", &["needs: []", "inputs: [in/d.txt]"], &[]),
        ],
    );
    let t = RecipeTest::new(&yaml);
    t.write("in/a.txt", "a1\n").write("in/d.txt", "d1\n");
    t
}

/// Waits (up to a minute) until `path` exists and holds a line; returns that line.
fn wait_for_file(path: &Path) -> String {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s.trim().to_owned();
        }
        assert!(Instant::now() < until, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process exists and is not a zombie (a container's init may never reap one).
fn process_running(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        }
        Err(_) => false,
    }
}

/// Asserts a process is gone, allowing a few seconds for an orphan to be reaped.
fn assert_gone(pid: &str, what: &str) {
    let until = Instant::now() + Duration::from_secs(15);
    while process_running(pid) {
        assert!(
            Instant::now() < until,
            "{what} (pid {pid}) is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends a signal with the `kill` command.
fn kill(signal: &str, pid: u32) {
    let status = StdCommand::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}

#[test]
fn a_second_up_runs_nothing_and_plan_shows_every_step_done() {
    let t = chain();
    let out = t.up(&[], 0);
    assert!(
        text(&out.stdout).contains("all 4 steps done (4 ran, 0 were already done)"),
        "{}",
        all_output(&out)
    );
    t.assert_counts(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
    assert_eq!(t.markers().len(), 4);

    let out = t.up(&[], 0);
    assert!(
        text(&out.stdout).contains("(0 ran, 4 were already done)"),
        "{}",
        all_output(&out)
    );
    t.assert_counts(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);

    let plan = text(&t.run(&["plan"], &[], 0).stdout);
    for id in ["a", "b", "c", "d"] {
        assert!(
            plan.lines()
                .any(|l| l.split_whitespace().take(2).eq(["done", id])),
            "step {id} is not shown done:\n{plan}"
        );
    }
    assert!(
        plan.contains("4 steps: 4 done, 0 pending, 0 stale, 0 failed"),
        "{plan}"
    );

    let json = t.plan(&[]);
    let steps = json["steps"].as_array().expect("steps is an array");
    assert_eq!(steps.len(), 4);
    for (s, id) in steps.iter().zip(["a", "b", "c", "d"]) {
        assert_eq!(s["id"], id, "{json:#}");
        assert_eq!(s["status"], "done", "{json:#}");
        assert!(
            s["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "a reason is a non-empty string: {json:#}"
        );
    }
}

#[test]
fn interpolation_resolves_vars_caller_env_defaults_and_predefined_paths() {
    let yaml = recipe(
        "name: interp\nvars:\n  BASE: base\n  FULL: ${BASE}/full\n  FROM_CALLER: ${env:PINSTACK_TEST_GIVEN}",
        &[
            step(
                "script",
                &[],
                &[
                    "LOCAL=shell",
                    "echo \"$${LOCAL} ${FULL} ${FROM_CALLER} ${env:PINSTACK_TEST_UNSET:-fallback}\" > out.txt",
                    "echo '${workspace}' '${recipe_dir}' >> out.txt",
                ],
            ),
            "  - id: argv\n    argv: [sh, -c, 'echo \"$1\" > argv.txt', sh, \"${FULL}+${env:PINSTACK_TEST_GIVEN}\"]\n"
                .to_owned(),
        ],
    );
    let t = RecipeTest::new(&yaml);
    t.run(&["up"], &[("PINSTACK_TEST_GIVEN", "given value")], 0);
    let recipe_dir = std::fs::canonicalize(t.fx.root()).unwrap();
    assert_eq!(
        std::fs::read_to_string(t.ws_path("out.txt")).unwrap(),
        format!(
            "shell base/full given value fallback\n{} {}\n",
            t.ws.display(),
            recipe_dir.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(t.ws_path("argv.txt")).unwrap(),
        "base/full+given value\n"
    );
}

#[test]
fn changing_one_input_reruns_that_step_and_its_dependents_only() {
    let t = chain();
    t.up(&[], 0);

    // a's input: a, then b and c (which need it, transitively); d needs nothing.
    t.write("in/a.txt", "a2\n");
    t.assert_statuses(&[
        ("a", "stale"),
        ("b", "stale"),
        ("c", "stale"),
        ("d", "done"),
    ]);
    let why = text(&t.run(&["why", "a"], &[], 0).stdout);
    assert!(why.contains("in/a.txt"), "why names the input:\n{why}");
    assert!(why.contains("will run"), "{why}");
    let why = text(&t.run(&["why", "b"], &[], 0).stdout);
    assert!(
        why.contains("step a"),
        "why names the upstream step:\n{why}"
    );
    let why = text(&t.run(&["why", "c"], &[], 0).stdout);
    assert!(
        why.contains("step b"),
        "why names the upstream step:\n{why}"
    );
    let why = text(&t.run(&["why", "d"], &[], 0).stdout);
    assert!(why.contains("will not run"), "{why}");

    t.up(&[], 0);
    t.assert_counts(&[("a", 2), ("b", 2), ("c", 2), ("d", 1)]);

    // d's input: d alone.
    t.write("in/d.txt", "d2\n");
    t.assert_statuses(&[("a", "done"), ("b", "done"), ("c", "done"), ("d", "stale")]);
    t.up(&[], 0);
    t.assert_counts(&[("a", 2), ("b", 2), ("c", 2), ("d", 2)]);

    // Rewriting a file with the content it had is no change.
    t.write("in/d.txt", "d2\n");
    t.assert_statuses(&[("a", "done"), ("b", "done"), ("c", "done"), ("d", "done")]);
}

#[test]
fn changing_an_env_or_var_value_reruns_that_step() {
    let t = chain();
    t.up(&[], 0);

    // b's env value comes from the caller (default "fast").
    let slow = [("MODE", "slow")];
    assert_eq!(
        t.statuses_with(&slow),
        [("a", "done"), ("b", "stale"), ("c", "stale"), ("d", "done")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let why = text(&t.run(&["why", "b"], &slow, 0).stdout);
    assert!(
        why.contains("MODE") && why.contains("\"fast\"") && why.contains("\"slow\""),
        "why names the env value, old and new:\n{why}"
    );
    t.run(&["up"], &slow, 0);
    t.assert_counts(&[("a", 1), ("b", 2), ("c", 2), ("d", 1)]);
    t.run(&["up"], &slow, 0);
    t.assert_counts(&[("a", 1), ("b", 2), ("c", 2), ("d", 1)]);

    // c uses the recipe variable GREETING.
    let yaml = std::fs::read_to_string(t.fx.path(RECIPE)).unwrap();
    t.recipe(&yaml.replace("GREETING: hello", "GREETING: bonjour"));
    assert_eq!(
        t.statuses_with(&slow),
        [("a", "done"), ("b", "done"), ("c", "stale"), ("d", "done")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let why = text(&t.run(&["why", "c"], &slow, 0).stdout);
    assert!(why.contains("definition changed"), "{why}");
    t.run(&["up"], &slow, 0);
    t.assert_counts(&[("a", 1), ("b", 2), ("c", 3), ("d", 1)]);
    let log = text(&t.run(&["logs", "c"], &slow, 0).stdout);
    assert!(log.contains("bonjour"), "{log}");
}

#[test]
fn a_git_work_tree_input_follows_tracked_content_not_ignored_build_output() {
    let fx_yaml = recipe(
        "name: git-input",
        &[step("build", &["inputs: [upstream/tree]"], &[])],
    );
    let t = RecipeTest::new(&fx_yaml);
    let tree = t.fx.upstream("tree");
    tree.write(".gitignore", "build/\n*.o\n")
        .write("src/main.c", "int main(void) { return 0; }\n");
    tree.commit("first");
    t.up(&[], 0);
    t.assert_counts(&[("build", 1)]);

    // Build output the tree ignores does not change the fingerprint.
    tree.write("build/main.o", "object code\n")
        .write("src/main.o", "more object code\n");
    t.assert_statuses(&[("build", "done")]);
    t.up(&[], 0);
    t.assert_counts(&[("build", 1)]);

    // Editing a tracked file does.
    tree.write("src/main.c", "int main(void) { return 1; }\n");
    t.assert_statuses(&[("build", "stale")]);
    let why = text(&t.run(&["why", "build"], &[], 0).stdout);
    assert!(why.contains("upstream/tree"), "{why}");
    assert!(why.contains("uncommitted"), "{why}");
    t.up(&[], 0);
    t.assert_counts(&[("build", 2)]);

    // So does a commit (HEAD's tree moves).
    tree.write("README", "docs\n");
    tree.commit("docs");
    t.assert_statuses(&[("build", "stale")]);
    let why = text(&t.run(&["why", "build"], &[], 0).stdout);
    assert!(why.contains("HEAD"), "{why}");
    t.up(&[], 0);
    t.assert_counts(&[("build", 3)]);
    t.up(&[], 0);
    t.assert_counts(&[("build", 3)]);
}

#[test]
fn needs_defaults_to_the_previous_step_and_an_empty_list_means_none() {
    let yaml = recipe(
        "name: needs",
        &[
            step("first", &["inputs: [in.txt]"], &[]),
            step("second", &[], &["test -f \"${workspace}/markers/first\""]),
            step("alone", &["needs: []"], &[]),
            // Listed before the step it needs: it still runs after it.
            step(
                "early",
                &["needs: [late]"],
                &["test -f \"${workspace}/markers/late\""],
            ),
            step("late", &["needs: []"], &[]),
        ],
    );
    let t = RecipeTest::new(&yaml);
    t.write("in.txt", "1\n");
    t.up(&[], 0);
    let order: Vec<String> = t.statuses().into_iter().map(|(id, _)| id).collect();
    assert_eq!(order, ["first", "second", "alone", "late", "early"]);

    t.write("in.txt", "2\n");
    t.assert_statuses(&[
        ("first", "stale"),
        ("second", "stale"),
        ("alone", "done"),
        ("late", "done"),
        ("early", "done"),
    ]);
    t.up(&[], 0);
    t.assert_counts(&[
        ("first", 2),
        ("second", 2),
        ("alone", 1),
        ("late", 1),
        ("early", 1),
    ]);
}

#[test]
fn recipe_errors_name_file_line_and_column_and_nothing_runs() {
    // A valid first step that would write a marker, then the error.
    let head = "name: broken\nsteps:\n  - id: ok\n    run: mkdir -p \"${workspace}/markers\" && touch \"${workspace}/markers/ok\"\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "  - id: b\n    run: \"true\"\n    colour: blue\n",
            "recipe.yaml:7:5:",
            "unknown field `colour`",
        ),
        (
            "  - id: ok\n    run: \"true\"\n",
            "recipe.yaml:5:9:",
            "duplicate step id \"ok\"",
        ),
        (
            "  - id: b\n    needs: [ok, nowhere]\n    run: \"true\"\n",
            "recipe.yaml:6:17:",
            "needs unknown step \"nowhere\"",
        ),
        (
            "  - id: x\n    needs: [z]\n    run: \"true\"\n  - id: y\n    run: \"true\"\n  - id: z\n    run: \"true\"\n",
            "recipe.yaml:5:9:",
            "needs form a cycle: x -> z -> y -> x",
        ),
        (
            "  - id: b\n    run: echo ${NOT_DEFINED}\n",
            "recipe.yaml:6:10:",
            "undefined variable ${NOT_DEFINED}",
        ),
        (
            "  - id: b\n    run: echo ${env:PINSTACK_TEST_SURELY_UNSET}\n",
            "recipe.yaml:6:10:",
            "${env:PINSTACK_TEST_SURELY_UNSET}",
        ),
        (
            "  - id: b\n    timeout: 5 minutes\n    run: \"true\"\n",
            "recipe.yaml:6:14:",
            "timeout \"5 minutes\" is not a duration",
        ),
        (
            "  - id: Bad_Id\n    run: \"true\"\n",
            "recipe.yaml:5:9:",
            "step id \"Bad_Id\" must match [a-z0-9-]+",
        ),
    ];
    let t = RecipeTest::new(head);
    for (tail, at, message) in cases {
        t.recipe(&format!("{head}{tail}"));
        for args in [&["up"][..], &["plan"], &["up", "--dry-run"]] {
            let out = t.run(args, &[], 2);
            let err = text(&out.stderr);
            assert!(
                err.contains(at) && err.contains(message),
                "pinstack {args:?} on\n{head}{tail}\nwants {at} {message}; stderr:\n{err}"
            );
        }
        assert!(
            !t.marker("ok"),
            "a step ran although the recipe is invalid:\n{tail}"
        );
        assert!(
            !t.ws_path(".pinstack").exists(),
            "state was written for an invalid recipe"
        );
    }
    // The same recipe without the error runs.
    t.recipe(head);
    t.up(&[], 0);
    assert!(t.marker("ok"));
}

/// A recipe whose middle step fails until `<root>/fixed` exists.
fn failing() -> RecipeTest {
    RecipeTest::new(&recipe(
        "name: failing",
        &[
            step("prepare", &[], &[]),
            step(
                "flaky",
                &[],
                &[
                    "echo checking the fix",
                    "if [ ! -e \"${recipe_dir}/fixed\" ]; then echo 'flaky: the fix is missing' >&2; exit 7; fi",
                ],
            ),
            step("after", &[], &[]),
        ],
    ))
}

#[test]
fn a_failing_step_exits_3_keeps_earlier_steps_done_and_resumes_after_the_fix() {
    let t = failing();
    let out = t.up(&[], 3);
    assert!(
        all_output(&out).contains("pinstack logs flaky"),
        "{}",
        all_output(&out)
    );
    t.assert_statuses(&[
        ("prepare", "done"),
        ("flaky", "failed"),
        ("after", "pending"),
    ]);
    let flaky = t.step_plan("flaky");
    let reason = flaky["reason"].as_str().unwrap();
    assert!(reason.contains("pinstack logs flaky"), "{reason}");
    assert!(reason.contains("exit status 7"), "{reason}");
    assert!(!t.marker("flaky") && !t.marker("after"));

    let log = text(&t.run(&["logs", "flaky"], &[], 0).stdout);
    assert!(log.contains("checking the fix"), "{log}");
    assert!(log.contains("flaky: the fix is missing"), "{log}");

    // Still broken: only the failed step runs again.
    t.up(&[], 3);
    t.assert_counts(&[("prepare", 1), ("flaky", 2), ("after", 0)]);

    t.write("fixed", "");
    t.up(&[], 0);
    t.assert_counts(&[("prepare", 1), ("flaky", 3), ("after", 1)]);
    t.assert_statuses(&[("prepare", "done"), ("flaky", "done"), ("after", "done")]);
}

#[test]
fn a_forced_rerun_that_fails_leaves_the_step_not_done() {
    let t = failing();
    t.write("fixed", "");
    t.up(&[], 0);
    std::fs::remove_file(t.fx.path("fixed")).unwrap();
    t.up(&["--only", "flaky"], 3);
    let plan = t.plan(&[]);
    assert_eq!(plan["steps"][1]["status"], "failed", "{plan:#}");
    t.write("fixed", "");
    t.up(&[], 0);
    t.assert_counts(&[("prepare", 1), ("flaky", 3), ("after", 2)]);
}

#[test]
fn dry_run_prints_commands_with_their_environment_and_runs_nothing() {
    let yaml = recipe(
        "name: dry\nenv:\n  HF_TOKEN: ${env:HF_TOKEN}\n  LEVEL: ${env:LEVEL:-3}",
        &[
            step("fetch", &[], &["echo fetching"]),
            step("build", &["inputs: [in.txt]"], &[]),
        ],
    );
    let t = RecipeTest::new(&yaml);
    t.write("in.txt", "1\n");
    let env = [("HF_TOKEN", "dry-run-unique-secret"), ("LEVEL", "9")];

    let out = t.run(&["up", "--dry-run"], &env, 0);
    let shown = text(&out.stdout);
    assert!(shown.contains("would run fetch"), "{shown}");
    assert!(shown.contains("would run build"), "{shown}");
    assert!(
        shown.contains("echo fetching"),
        "the command is shown:\n{shown}"
    );
    assert!(shown.contains("HF_TOKEN=***"), "{shown}");
    assert!(shown.contains("LEVEL=9"), "{shown}");
    assert!(!all_output(&out).contains("dry-run-unique-secret"));
    t.assert_counts(&[("fetch", 0), ("build", 0)]);
    assert!(
        files_under(&t.ws).is_empty(),
        "a dry run wrote {:?}",
        files_under(&t.ws)
    );

    t.run(&["up"], &env, 0);
    t.write("in.txt", "2\n");
    let before = crate::harness::snapshot(&t.ws);
    let shown = text(&t.run(&["up", "--dry-run"], &env, 0).stdout);
    assert!(!shown.contains("would run fetch"), "{shown}");
    assert!(shown.contains("would run build"), "{shown}");
    assert_eq!(before, crate::harness::snapshot(&t.ws), "a dry run wrote");
    t.assert_counts(&[("fetch", 1), ("build", 1)]);
    assert_eq!(t.statuses_with(&env)[1].1, "stale");
}

#[test]
fn only_reruns_one_step_and_from_reruns_it_and_everything_after() {
    let t = chain();
    t.up(&[], 0);
    t.up(&["--only", "b"], 0);
    t.assert_counts(&[("a", 1), ("b", 2), ("c", 1), ("d", 1)]);
    // c needs b, which ran again since c's last run.
    t.assert_statuses(&[("a", "done"), ("b", "done"), ("c", "stale"), ("d", "done")]);

    t.up(&["--from", "b"], 0);
    t.assert_counts(&[("a", 1), ("b", 3), ("c", 2), ("d", 2)]);
    t.assert_statuses(&[("a", "done"), ("b", "done"), ("c", "done"), ("d", "done")]);

    let err = text(&t.run(&["up", "--only", "nope"], &[], 2).stderr);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn reset_makes_a_step_and_its_dependents_run_again() {
    let t = chain();
    t.up(&[], 0);
    let out = text(&t.run(&["reset", "b"], &[], 0).stdout);
    assert!(out.contains("b: forgotten"), "{out}");
    t.assert_statuses(&[
        ("a", "done"),
        ("b", "pending"),
        ("c", "stale"),
        ("d", "done"),
    ]);
    t.up(&[], 0);
    t.assert_counts(&[("a", 1), ("b", 2), ("c", 2), ("d", 1)]);

    t.run(&["reset", "--all"], &[], 0);
    t.up(&[], 0);
    t.assert_counts(&[("a", 2), ("b", 3), ("c", 3), ("d", 2)]);
}

#[test]
fn secrets_appear_in_no_file_under_the_workspace_nor_in_json_or_dry_run() {
    const SECRET: &str = "some-unique-secret-value-4f1c";
    let yaml = recipe(
        "name: secrets\nvars:\n  TOKEN_COPY: ${env:HF_TOKEN}\nenv:\n  HF_TOKEN: ${env:HF_TOKEN}",
        &[
            step("env-echo", &[], &["echo \"token from env: $HF_TOKEN\""]),
            step("interp-echo", &[], &["echo \"token interpolated: ${env:HF_TOKEN}\"", "echo ${TOKEN_COPY}"]),
            "  - id: argv-echo\n    title: \"echo ${env:HF_TOKEN}\"\n    argv: [echo, \"token as argument: ${env:HF_TOKEN}\"]\n".to_owned(),
        ],
    );
    let t = RecipeTest::new(&yaml);
    let env = [("HF_TOKEN", SECRET)];

    let dry = t.run(&["up", "--dry-run"], &env, 0);
    assert!(!all_output(&dry).contains(SECRET), "{}", all_output(&dry));
    assert!(
        text(&dry.stdout).contains("HF_TOKEN=***"),
        "{}",
        text(&dry.stdout)
    );

    let up = t.run(&["up"], &env, 0);
    assert!(!all_output(&up).contains(SECRET), "{}", all_output(&up));
    t.assert_counts(&[("env-echo", 1), ("interp-echo", 1)]);

    for id in ["env-echo", "interp-echo", "argv-echo"] {
        let log = text(&t.run(&["logs", id], &env, 0).stdout);
        assert!(!log.contains(SECRET), "{log}");
        assert!(log.contains("token"), "{log}");
        assert!(
            log.contains("***"),
            "the log shows the secret as ***:\n{log}"
        );
    }
    for args in [
        &["plan", "--json"][..],
        &["plan"],
        &["why", "argv-echo"],
        &["up"],
    ] {
        let out = t.run(args, &env, 0);
        assert!(
            !all_output(&out).contains(SECRET),
            "{args:?}: {}",
            all_output(&out)
        );
    }

    // A changed secret reruns its steps, and `why` says so without either value.
    let other = [("HF_TOKEN", "another-unique-secret-value-77")];
    assert!(t.statuses_with(&other).iter().all(|(_, s)| s == "stale"));
    let why = all_output(&t.run(&["why", "env-echo"], &other, 0));
    assert!(why.contains("HF_TOKEN") && why.contains("secret"), "{why}");
    assert!(
        !why.contains(SECRET) && !why.contains("another-unique"),
        "{why}"
    );

    // Not in any file, in plain text or as a plain (unsalted) sha256.
    let plain_hash = sha256(SECRET.as_bytes());
    let files = files_under(t.fx.root());
    assert!(files.iter().any(|f| f.starts_with(t.ws_path(".pinstack"))));
    assert!(files.iter().any(|f| f.starts_with(t.ws_path("logs"))));
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let content = String::from_utf8_lossy(&bytes);
        assert!(
            !content.contains(SECRET),
            "{} holds the secret",
            f.display()
        );
        assert!(
            !content.contains(&plain_hash),
            "{} holds the unsalted hash of the secret",
            f.display()
        );
    }
    let checkpoint =
        std::fs::read_to_string(t.ws_path(".pinstack/steps/secrets/env-echo.done.json")).unwrap();
    assert!(checkpoint.contains("secret:"), "{checkpoint}");
}

#[test]
fn caller_values_with_shell_metacharacters_are_data_not_code() {
    let evil1 = "'; touch PWNED; echo '";
    let evil2 = "$(touch PWNED2)";
    let evil3 = "a  *  \"b\" \\ `touch PWNED3` ${HOME}";
    let yaml = recipe(
        "name: quoting",
        &[
            step(
                "quote",
                &[],
                &[
                    "printf '%s\\n' ${env:EVIL1} ${env:EVIL2} ${env:EVIL3} > bare.txt",
                    "printf '%s\\n' \"${env:EVIL1}\" \"${env:EVIL2}\" \"${env:EVIL3}\" > quoted.txt",
                    "printf '%s\\n' \"one string: ${env:EVIL3} end\" > inside.txt",
                    "printf '%s\\n' 'single: ${env:EVIL1}' > single.txt",
                ],
            ),
            "  - id: argv\n    argv: [sh, -c, 'printf \"%s\\n\" \"$1\" > argv.txt', sh, \"${env:EVIL1}\"]\n".to_owned(),
        ],
    );
    let t = RecipeTest::new(&yaml);
    let env = [("EVIL1", evil1), ("EVIL2", evil2), ("EVIL3", evil3)];
    t.run(&["up"], &env, 0);

    let read = |f: &str| std::fs::read_to_string(t.ws_path(f)).unwrap();
    let three = format!("{evil1}\n{evil2}\n{evil3}\n");
    assert_eq!(read("bare.txt"), three);
    assert_eq!(read("quoted.txt"), three);
    assert_eq!(read("inside.txt"), format!("one string: {evil3} end\n"));
    assert_eq!(read("single.txt"), format!("single: {evil1}\n"));
    assert_eq!(read("argv.txt"), format!("{evil1}\n"));
    for f in files_under(t.fx.root()) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with("PWNED"), "{} was created", f.display());
    }
    // The value is not pasted into the script.
    let log = text(&t.run(&["logs", "quote"], &env, 0).stdout);
    let command = log.lines().find(|l| l.starts_with("# command:")).unwrap();
    assert!(!command.contains("PWNED"), "{command}");
}

#[test]
fn a_timed_out_step_fails_with_exit_3_and_leaves_no_process_behind() {
    let yaml = recipe(
        "name: timeout",
        &[step(
            "slow",
            &["timeout: 1s"],
            &[
                "sleep 30 &",
                "echo $! > \"${workspace}/background.pid\"",
                "echo $$ > \"${workspace}/slow.pid\"",
                "exec sleep 30",
            ],
        )],
    );
    let t = RecipeTest::new(&yaml);
    let out = t.up(&[], 3);
    assert!(
        all_output(&out).contains("timed out"),
        "{}",
        all_output(&out)
    );
    let reason = t.step_plan("slow")["reason"].as_str().unwrap().to_owned();
    assert_eq!(t.statuses(), [("slow".to_owned(), "failed".to_owned())]);
    assert!(reason.contains("timed out"), "{reason}");
    assert!(!t.marker("slow"));
    for f in ["slow.pid", "background.pid"] {
        let pid = std::fs::read_to_string(t.ws_path(f)).unwrap();
        assert_gone(pid.trim(), f);
    }
}

#[test]
fn an_interrupted_up_stops_the_step_group_exits_130_and_reruns_it_next_time() {
    for signal in ["INT", "TERM"] {
        let yaml = recipe(
            "name: interrupt",
            &[
                step("first", &[], &[]),
                step(
                    "long",
                    &[],
                    &[
                        "if [ ! -e \"${recipe_dir}/release\" ]; then",
                        "  sleep 30 &",
                        "  echo $! > \"${workspace}/grandchild.pid\"",
                        "  echo $$ > \"${workspace}/child.pid\"",
                        "  exec sleep 30",
                        "fi",
                    ],
                ),
            ],
        );
        let t = RecipeTest::new(&yaml);
        let child = t.spawn_up(&[]);
        let grandchild = wait_for_file(&t.ws_path("grandchild.pid"));
        let sleeper = wait_for_file(&t.ws_path("child.pid"));
        kill(signal, child.id());
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(130),
            "SIG{signal}: {}",
            all_output(&out)
        );
        assert_gone(&grandchild, "the backgrounded sleep");
        assert_gone(&sleeper, "the step's sleep");

        t.assert_statuses(&[("first", "done"), ("long", "failed")]);
        let reason = t.step_plan("long")["reason"].as_str().unwrap().to_owned();
        assert!(reason.contains("interrupted"), "{reason}");

        t.write("release", "");
        t.up(&[], 0);
        t.assert_counts(&[("first", 1), ("long", 2)]);
        t.assert_statuses(&[("first", "done"), ("long", "done")]);
    }
}

/// Four steps of 0.2 to 0.5 seconds; each marker depends on the one before it.
fn slow_chain() -> String {
    recipe(
        "name: converge",
        &[
            step("s1", &[], &["sleep 0.2"]),
            step("s2", &[], &["sleep 0.3", "cat markers/s1 > markers/s2.in"]),
            step(
                "s3",
                &[],
                &["sleep 0.4", "cat markers/s2 markers/s2.in > markers/s3.in"],
            ),
            step(
                "s4",
                &["inputs: [in.txt]"],
                &[
                    "sleep 0.5",
                    "cat \"${recipe_dir}/in.txt\" markers/s3.in > markers/s4.in",
                ],
            ),
        ],
    )
}

#[test]
fn a_killed_up_always_converges_to_the_uninterrupted_result() {
    let reference = RecipeTest::new(&slow_chain());
    reference.write("in.txt", "input\n");
    reference.up(&[], 0);
    let want = reference.markers();
    assert_eq!(want.len(), 7, "{want:?}");

    let mut kills_mid_run = 0;
    for i in 0..8u64 {
        let t = RecipeTest::new(&slow_chain());
        t.write("in.txt", "input\n");
        // Two kills per round, at different moments, before the run that completes.
        for delay in [60 + i * 190, 40 + (7 - i) * 110] {
            let mut child = t.spawn_up(&[]);
            std::thread::sleep(Duration::from_millis(delay));
            kill("KILL", child.id());
            let _ = child.wait();
            let markers = t.markers();
            let statuses = t.statuses();
            if statuses.iter().any(|(_, s)| s != "done") {
                kills_mid_run += 1;
            }
            for (id, status) in statuses {
                if status == "done" {
                    assert!(
                        markers.contains_key(&id),
                        "round {i}, kill after {delay}ms: step {id} is recorded done but its \
                         marker is missing ({markers:?})"
                    );
                }
            }
        }
        t.up(&[], 0);
        assert_eq!(t.markers(), want, "round {i}");
        assert!(t.statuses().iter().all(|(_, s)| s == "done"));
        let counts: Vec<usize> = ["s1", "s2", "s3", "s4"].map(|s| t.count(s)).into();
        t.up(&[], 0);
        let again: Vec<usize> = ["s1", "s2", "s3", "s4"].map(|s| t.count(s)).into();
        assert_eq!(
            counts, again,
            "round {i}: a converged workspace ran steps again"
        );
    }
    assert!(
        kills_mid_run > 0,
        "every kill came after the run had finished"
    );
}

#[test]
fn a_second_concurrent_up_is_refused_at_once_naming_the_holder() {
    let yaml = recipe(
        "name: busy",
        &[step(
            "wait",
            &[],
            &[
                "echo started > \"${workspace}/started\"",
                "for _ in $(seq 600); do [ -e \"${recipe_dir}/release\" ] && break; sleep 0.1; done",
            ],
        )],
    );
    let t = RecipeTest::new(&yaml);
    let holder = t.spawn_up(&[]);
    wait_for_file(&t.ws_path("started"));

    let out = t
        .pinstack(&["up"])
        .timeout(Duration::from_secs(30))
        .assert()
        .get_output()
        .clone();
    assert_eq!(out.status.code(), Some(3), "{}", all_output(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("pid {} (", holder.id())),
        "the message names the holder pid {}:\n{err}",
        holder.id()
    );
    assert_eq!(t.count("wait"), 1);

    t.write("release", "");
    let out = holder.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    t.assert_counts(&[("wait", 1)]);
}

#[test]
fn a_reboot_step_holds_later_steps_until_the_boot_id_changes() {
    let yaml = recipe(
        "name: reboot",
        &[
            step("driver", &["reboot: true"], &[]),
            step("after", &[], &[]),
            // Later in the recipe without needing the driver: it waits all the same.
            step("unrelated", &["needs: []"], &[]),
        ],
    );
    let t = RecipeTest::new(&yaml);
    let boot_a = [("PINSTACK_BOOT_ID", "a")];
    let out = t.run(&["up"], &boot_a, 0);
    assert!(text(&out.stdout).contains("reboot"), "{}", all_output(&out));
    t.assert_counts(&[("driver", 1), ("after", 0), ("unrelated", 0)]);

    let out = t.run(&["up"], &boot_a, 0);
    assert!(
        text(&out.stdout).contains("step driver needs the machine to reboot"),
        "{}",
        all_output(&out)
    );
    t.assert_counts(&[("driver", 1), ("after", 0), ("unrelated", 0)]);
    assert!(
        t.statuses_with(&boot_a)
            .iter()
            .map(|(id, s)| format!("{id} {s}"))
            .eq(["driver done", "after pending", "unrelated pending"]),
    );
    let why = text(&t.run(&["why", "after"], &boot_a, 0).stdout);
    assert!(why.contains("reboot"), "{why}");

    let boot_b = [("PINSTACK_BOOT_ID", "b")];
    let out = t.run(&["up"], &boot_b, 0);
    assert!(
        text(&out.stdout).contains("all 3 steps done"),
        "{}",
        all_output(&out)
    );
    t.assert_counts(&[("driver", 1), ("after", 1), ("unrelated", 1)]);
    t.run(&["up"], &boot_b, 0);
    t.assert_counts(&[("driver", 1), ("after", 1), ("unrelated", 1)]);
}

/// Ctrl-C during a `uses: sources` step: the repo being fetched is finished, the next one is
/// not begun, and `up` exits 130 with the step interrupted; the next `up` does the rest.
#[test]
fn a_ctrl_c_during_a_sources_step_stops_it_between_repos() {
    let yaml = recipe(
        "name: sources\npins: pins.yaml",
        &["  - id: sources\n    uses: sources\n".to_owned()],
    );
    let t = RecipeTest::new(&yaml);
    let mut pins = Vec::new();
    for name in ["a", "b"] {
        let up = t.fx.upstream(name);
        up.write("f.txt", format!("{name}\n"));
        let commit = up.commit("base");
        pins.push(Pin::new(name, &up, &commit));
    }
    t.fx.pins(&pins);
    // A git that takes its time over a fetch, and says when it starts one.
    let (path, marker) = t.fx.slow_git();
    let child = t.spawn_up(&[("PATH", path.as_str())]);
    wait_until(|| marker.exists());
    kill("INT", child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", all_output(&out));
    assert!(
        t.ws_path("src/a/f.txt").exists(),
        "the repo begun is finished"
    );
    assert!(!t.ws_path("src/b").exists(), "the next repo is not begun");
    let reason = t.step_plan("sources")["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("interrupted"), "{reason}");
    t.up(&[], 0);
    assert!(t.ws_path("src/b/f.txt").exists());
}

#[test]
fn a_sources_step_applies_the_pins_and_follows_the_bundle_hashes() {
    let yaml = recipe(
        "name: sources\npins: pins.yaml",
        &[
            "  - id: sources\n    uses: sources\n".to_owned(),
            step("build", &[], &["cat src/lib/lib.txt > markers/lib.txt"]),
        ],
    );
    let t = RecipeTest::new(&yaml);
    let upstream = t.fx.upstream("lib");
    upstream.write("lib.txt", "one\n");
    let base = upstream.commit("base");
    upstream.write("lib.txt", "two\n");
    let two = upstream.commit("two");
    upstream.write("lib.txt", "three\n");
    let three = upstream.commit("three");
    let diff_two = upstream.diff(&base, &two);
    let diff_three = upstream.diff(&base, &three);
    let bundle_two = t.fx.bundle("lib-two", &diff_two);
    let bundle_three = t.fx.bundle("lib-three", &diff_three);
    t.fx.pins(&[Pin::new("lib", &upstream, &base).patch(bundle_two.entry())]);

    t.up(&[], 0);
    let checkout = t.ws_path("src/lib");
    assert_eq!(
        t.fx.worktree_tree(&checkout),
        t.fx.oracle_tree(&upstream, &base, &[(&diff_two, None)])
    );
    assert_eq!(t.markers()["lib.txt"], "two\n");
    t.up(&[], 0);
    t.assert_counts(&[("build", 1)]);

    // Another bundle (other hashes) in pins.yaml: the sources step and its dependents rerun.
    t.fx.pins(&[Pin::new("lib", &upstream, &base).patch(bundle_three.entry())]);
    t.assert_statuses(&[("sources", "stale"), ("build", "stale")]);
    let why = text(&t.run(&["why", "sources"], &[], 0).stdout);
    assert!(why.contains("bundle hashes of repo lib"), "{why}");
    // The old bundle's changes are pinstack's own work: the sources step replaces them.
    t.up(&[], 0);
    assert_eq!(
        t.fx.worktree_tree(&checkout),
        t.fx.oracle_tree(&upstream, &base, &[(&diff_three, None)])
    );
    assert_eq!(t.markers()["lib.txt"], "three\n");
    t.assert_counts(&[("build", 2)]);
}

/// Run as a user who is not root, pinstack asks sudo once, before the first step, and runs the
/// privileged step through `sudo -n` with the step's environment preserved. A stand-in `sudo`
/// records each call; the test drops to `nobody` with setpriv, so it needs root itself.
#[test]
fn privileged_steps_go_through_sudo_asked_for_once_up_front() {
    use std::os::unix::fs::PermissionsExt;
    if !crate::harness::can_run_pinstack_as_nobody() {
        eprintln!("skipped: needs root, setpriv, and a pinstack binary nobody may run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let open = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open(root, 0o777);
    let log = root.join("calls.log");
    std::fs::write(&log, "").unwrap();
    open(&log, 0o666);
    let bin = root.join("bin");
    std::fs::create_dir(&bin).unwrap();
    open(&bin, 0o755);
    let sudo = bin.join("sudo");
    std::fs::write(
        &sudo,
        format!(
            "#!/bin/sh\necho \"sudo $*\" | head -c 60 >> {log}\necho >> {log}\n\
             [ \"$1\" = -v ] && exit 0\n\
             while [ $# -gt 0 ]; do case \"$1\" in -n|--preserve-env=*) shift;; --) shift; break;; *) break;; esac; done\n\
             exec \"$@\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    open(&sudo, 0o755);
    let recipe = root.join("r.yaml");
    std::fs::write(
        &recipe,
        format!(
            "name: priv\nsteps:\n  - id: plain\n    run: echo \"plain uid=$(id -u)\" >> {log}\n  \
             - id: root-step\n    privileged: true\n    env: {{ FOO: bar }}\n    \
             run: echo \"privileged FOO=$FOO\" >> {log}\n",
            log = log.display()
        ),
    )
    .unwrap();
    open(&recipe, 0o644);
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
        .arg(format!("PATH={}:/usr/bin:/bin", bin.display()))
        .arg(format!("HOME={}", root.display()))
        .arg("CI=1")
        .arg(assert_cmd::cargo::cargo_bin("pinstack"))
        .arg("--workspace")
        .arg(root.join("ws"))
        .arg("--recipe")
        .arg(&recipe)
        .arg("up")
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    let calls = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = calls.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0], "sudo -v",
        "sudo is asked first, before any step: {calls}"
    );
    assert_eq!(lines[1], "plain uid=65534", "{calls}");
    assert!(
        lines[2].starts_with("sudo -n --preserve-env=FOO,PINSTACK_EXPORT -- bash"),
        "the privileged step runs through sudo -n: {calls}"
    );
    assert_eq!(lines[3], "privileged FOO=bar", "{calls}");
    assert_eq!(lines.len(), 4, "{calls}");
}

/// A step's `$PINSTACK_EXPORT` lines reach the steps that need it (directly or not), are part of
/// their fingerprints, and a secret-looking name is refused.
#[test]
fn exported_values_reach_the_steps_that_need_them() {
    let yaml = recipe(
        "name: exports\nenv:\n  LIB: recipe-default\n",
        &[
            step(
                "env",
                &[],
                &["echo \"LIB=$(cat \"${recipe_dir}/in/lib.txt\")\" >> \"$PINSTACK_EXPORT\""],
            ),
            step(
                "mid",
                &[],
                &["echo \"mid sees $LIB\" > \"${workspace}/mid.txt\""],
            ),
            step(
                "leaf",
                &[],
                &["echo \"leaf sees $LIB\" > \"${workspace}/leaf.txt\""],
            ),
            step(
                "alone",
                &["needs: []"],
                &["echo \"alone sees $LIB\" > \"${workspace}/alone.txt\""],
            ),
        ],
    );
    let t = RecipeTest::new(&yaml);
    t.write("in/lib.txt", "/opt/one\n");
    t.up(&[], 0);
    let read = |f: &str| std::fs::read_to_string(t.ws_path(f)).unwrap();
    assert_eq!(read("mid.txt"), "mid sees /opt/one\n");
    assert_eq!(read("leaf.txt"), "leaf sees /opt/one\n", "through `mid`");
    assert_eq!(read("alone.txt"), "alone sees recipe-default\n");
    t.up(&[], 0);
    t.assert_counts(&[("env", 1), ("mid", 1), ("leaf", 1), ("alone", 1)]);

    // A new exported value reruns the steps that receive it; `why` names it.
    t.write("in/lib.txt", "/opt/two\n");
    t.run(&["reset", "env"], &[], 0);
    t.up(&["--only", "env"], 0);
    let why = text(&t.run(&["why", "mid"], &[], 0).stdout);
    assert!(
        why.contains("LIB") || why.contains("env ran again"),
        "{why}"
    );
    t.up(&[], 0);
    assert_eq!(read("leaf.txt"), "leaf sees /opt/two\n");
    t.assert_counts(&[("env", 2), ("mid", 2), ("leaf", 2), ("alone", 1)]);

    // A secret is never stored, so it cannot be exported.
    let bad = recipe(
        "name: exports-bad",
        &[step(
            "leak",
            &[],
            &["echo API_TOKEN=x >> \"$PINSTACK_EXPORT\""],
        )],
    );
    let t = RecipeTest::new(&bad);
    let out = t.up(&[], 3);
    assert!(
        all_output(&out).contains("API_TOKEN"),
        "{}",
        all_output(&out)
    );
    assert_eq!(t.statuses(), vec![("leak".to_owned(), "failed".to_owned())]);
}

/// `cleanup:` runs after its step whatever the outcome: success, failure, timeout, Ctrl-C, and
/// (by the next `up`) after pinstack itself was killed.
#[test]
fn cleanup_runs_after_success_failure_interrupt_and_a_killed_run() {
    let yaml = "name: cleanup\nsteps:\n  - id: work\n    run: |\n      \
                echo started >> \"${workspace}/work.log\"\n      \
                [ -e \"${recipe_dir}/slow\" ] && sleep 30\n      \
                [ -e \"${recipe_dir}/ok\" ] || exit 5\n    \
                cleanup: echo cleaned >> \"${workspace}/cleanup.log\"\n";
    let t = RecipeTest::new(yaml);
    let cleanups = || {
        std::fs::read_to_string(t.ws_path("cleanup.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    t.up(&[], 3);
    assert_eq!(cleanups(), 1, "after a failure");
    let log = text(&t.run(&["logs", "work"], &[], 0).stdout);
    assert!(log.contains("# cleanup"), "{log}");

    t.write("ok", "");
    t.up(&[], 0);
    assert_eq!(cleanups(), 2, "after a success");

    // Ctrl-C during the step: the cleanup still runs.
    t.write("slow", "");
    t.run(&["reset", "work"], &[], 0);
    let child = t.spawn_up(&[]);
    wait_until(|| {
        std::fs::read_to_string(t.ws_path("work.log")).is_ok_and(|s| s.lines().count() == 3)
    });
    kill("INT", child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", all_output(&out));
    assert_eq!(cleanups(), 3, "after an interrupt");

    // pinstack killed outright: the next `up` runs the cleanup before anything else.
    let mut child = t.spawn_up(&[]);
    wait_until(|| {
        std::fs::read_to_string(t.ws_path("work.log")).is_ok_and(|s| s.lines().count() == 4)
    });
    kill("KILL", child.id());
    let _ = child.wait();
    assert_eq!(cleanups(), 3, "nothing ran the cleanup yet");
    rerun_cleans_up_first(&t);
    assert_eq!(
        cleanups(),
        5,
        "once for the killed run, once after the rerun"
    );
}

/// The first Ctrl-C lets a step's cleanup finish; a second one stops the cleanup (its whole
/// process group) and pinstack with it, and the next `up` runs the cleanup first, as after a
/// killed run, then the step again.
#[test]
fn a_second_ctrl_c_stops_the_cleanup_and_the_next_up_runs_it_first() {
    let yaml = "name: cleanup\nsteps:\n  - id: work\n    run: echo ran >> \"${workspace}/work.log\"\n    \
                cleanup: |\n      \
                echo started >> \"${workspace}/cleanup.log\"\n      \
                if [ -e \"${recipe_dir}/slow\" ]; then\n        \
                sleep 30 &\n        \
                echo $! > \"${workspace}/cleanup-sleep.pid\"\n        \
                wait\n      \
                fi\n      \
                echo finished >> \"${workspace}/cleanup.log\"\n";
    let t = RecipeTest::new(yaml);
    let lines = |name: &str| {
        std::fs::read_to_string(t.ws_path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    t.write("slow", "");
    let mut child = t.spawn_up(&[]);
    let sleeper = wait_for_file(&t.ws_path("cleanup-sleep.pid"));
    kill("INT", child.id());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a first Ctrl-C lets the cleanup run on"
    );
    stop_again(child);
    assert_gone(&sleeper, "the cleanup's sleep");
    assert_eq!(lines("cleanup.log"), ["started"]);
    let reason = t.step_plan("work")["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("runs the cleanup first"), "{reason}");

    rerun_cleans_up_first(&t);
    assert_eq!(
        lines("cleanup.log"),
        ["started", "started", "finished", "started", "finished"],
        "the stopped cleanup, the one the next up ran first, the one after the rerun"
    );
    assert_eq!(lines("work.log"), ["ran", "ran"], "the step ran again");
}

/// Asked twice to stop while the step itself is still stopping (it takes its time over
/// SIGTERM), pinstack does not begin the cleanup only to cut it short: it leaves it, whole,
/// for the next `up`.
#[test]
fn stopped_twice_before_the_cleanup_began_it_is_left_for_the_next_up() {
    let yaml = "name: cleanup\nsteps:\n  - id: work\n    run: |\n      \
                echo ran >> \"${workspace}/work.log\"\n      \
                if [ -e \"${recipe_dir}/slow\" ]; then\n        \
                trap 'echo stopping > \"${workspace}/stopping\"; sleep 2; exit 1' TERM\n        \
                sleep 30 &\n        \
                wait\n      \
                fi\n    \
                cleanup: echo cleaned >> \"${workspace}/cleanup.log\"\n";
    let t = RecipeTest::new(yaml);
    t.write("slow", "");
    let child = t.spawn_up(&[]);
    wait_until(|| t.ws_path("work.log").exists());
    // The step's shell is waiting; the first stop makes its trap sleep before it exits.
    std::thread::sleep(Duration::from_millis(200));
    kill("INT", child.id());
    wait_for_file(&t.ws_path("stopping"));
    stop_again(child);
    assert!(!t.ws_path("cleanup.log").exists(), "no cleanup was begun");
    rerun_cleans_up_first(&t);
    let cleaned = std::fs::read_to_string(t.ws_path("cleanup.log")).unwrap();
    assert_eq!(
        cleaned.lines().count(),
        2,
        "once first, once after the rerun"
    );
}

/// pinstack killed while a step's cleanup runs: the next `up` stops that cleanup's process
/// group before running the cleanup again, so no two copies of it run at once.
#[test]
fn a_cleanup_left_running_by_a_killed_run_is_stopped_first() {
    let yaml = "name: cleanup\nsteps:\n  - id: work\n    run: echo ran\n    \
                cleanup: |\n      \
                if [ -e \"${recipe_dir}/slow\" ]; then\n        \
                sleep 30 &\n        \
                echo $! > \"${workspace}/cleanup-sleep.pid\"\n        \
                wait\n      \
                fi\n      \
                echo cleaned >> \"${workspace}/cleanup.log\"\n";
    let t = RecipeTest::new(yaml);
    t.write("slow", "");
    let mut child = t.spawn_up(&[]);
    let sleeper = wait_for_file(&t.ws_path("cleanup-sleep.pid"));
    // Killed once the attempt names the cleanup's process group (recorded just after it
    // starts; a kill before that is a window of a few microseconds this test does not aim at).
    let group = String::from_utf8(
        StdCommand::new("ps")
            .args(["-o", "pgid=", "-p", &sleeper])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let attempt = t.ws_path(".pinstack/steps/cleanup/work.attempt.json");
    wait_until(|| {
        std::fs::read_to_string(&attempt)
            .ok()
            .and_then(|a| serde_json::from_str::<Value>(&a).ok())
            .is_some_and(|a| a["group"].as_u64().map(|g| g.to_string()) == Some(group.clone()))
    });
    kill("KILL", child.id());
    let _ = child.wait();
    assert!(
        process_running(&sleeper),
        "the killed run's cleanup runs on"
    );
    std::fs::remove_file(t.fx.path("slow")).unwrap();
    let out = t.up(&[], 0);
    assert!(
        all_output(&out).contains("stopped process group"),
        "{}",
        all_output(&out)
    );
    assert_gone(&sleeper, "the killed run's cleanup");
    let cleaned = std::fs::read_to_string(t.ws_path("cleanup.log")).unwrap();
    assert_eq!(cleaned.lines().count(), 2, "{cleaned}");
}

/// The second Ctrl-C: pinstack exits 130, saying that step `work`'s cleanup was stopped.
fn stop_again(child: Child) {
    kill("INT", child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", all_output(&out));
    assert!(
        all_output(&out).contains("the cleanup of step work was stopped"),
        "{}",
        all_output(&out)
    );
}

/// With the slow marker gone, `up` runs step `work`'s cleanup left behind first, and succeeds.
fn rerun_cleans_up_first(t: &RecipeTest) {
    std::fs::remove_file(t.fx.path("slow")).unwrap();
    let out = t.up(&[], 0);
    assert!(
        all_output(&out).contains("ran the cleanup of step work"),
        "{}",
        all_output(&out)
    );
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A secret from the caller's environment reaches only the steps that declare it.
#[test]
fn an_inherited_secret_reaches_only_the_steps_that_declare_it() {
    let yaml = recipe(
        "name: secrets",
        &[
            step(
                "declares",
                &["env:", "  HF_TOKEN: ${env:HF_TOKEN:-}"],
                &["[ -n \"$HF_TOKEN\" ] && echo has > \"${workspace}/declares.txt\""],
            ),
            step(
                "records",
                &[],
                &["env | cut -d= -f1 | sort > \"${workspace}/records.txt\""],
            ),
        ],
    );
    let t = RecipeTest::new(&yaml);
    t.run(
        &["up"],
        &[
            ("HF_TOKEN", "tok-1234567890"),
            ("MY_API_KEY", "key-987654321"),
        ],
        0,
    );
    assert_eq!(
        std::fs::read_to_string(t.ws_path("declares.txt")).unwrap(),
        "has\n"
    );
    let names = std::fs::read_to_string(t.ws_path("records.txt")).unwrap();
    assert!(!names.lines().any(|n| n == "HF_TOKEN"), "{names}");
    assert!(!names.lines().any(|n| n == "MY_API_KEY"), "{names}");
    assert!(names.lines().any(|n| n == "PATH"), "{names}");
}

/// One pinstack at a time changes a workspace: while `up` runs a step, `apply`, `fetch` and
/// another `up` on the same workspace fail at once, naming the holder.
#[test]
fn up_apply_and_fetch_exclude_each_other_on_one_workspace() {
    let yaml = recipe(
        "name: busy",
        &[step(
            "wait",
            &[],
            &[
                "touch \"${workspace}/started\"",
                "while [ ! -e \"${workspace}/go\" ]; do sleep 0.05; done",
            ],
        )],
    );
    let t = RecipeTest::new(&yaml);
    t.fx.write("pins.yaml", "repos: {}\n");
    let child = t.spawn_up(&[]);
    wait_until(|| t.ws_path("started").exists());
    let prefix = t.fx.path("prefix").display().to_string();
    let install = vec!["install-service", "--prefix", &prefix, "--user", "nobody"];
    for args in [vec!["apply"], vec!["fetch"], vec!["up"], install] {
        let out = t.run(&args, &[], 3);
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("pid {}", child.id())) && err.contains("pinstack up"),
            "{args:?}: {err}"
        );
    }
    std::fs::write(t.ws_path("go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
}

/// A full disk while the checkpoint is written (simulated in test builds): the step is not
/// recorded done, the message names what could not be written, and the next run recovers.
#[test]
fn a_full_disk_while_writing_a_checkpoint_leaves_the_step_not_done() {
    let yaml = recipe(
        "name: full",
        &[step("one", &[], &[]), step("two", &[], &[])],
    );
    let t = RecipeTest::new(&yaml);
    let out = t.run(&["up"], &[("PINSTACK_FAULT_DISK_FULL", "two.done.json")], 3);
    let err = text(&out.stderr);
    assert!(
        err.contains("two.done.json") && err.contains("No space left on device"),
        "{err}"
    );
    assert_eq!(
        t.statuses(),
        vec![
            ("one".to_owned(), "done".to_owned()),
            ("two".to_owned(), "failed".to_owned())
        ]
    );
    let reason = t.step_plan("two")["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("could not be recorded done"), "{reason}");
    t.up(&[], 0);
    t.assert_counts(&[("one", 1), ("two", 2)]);
    assert_eq!(
        t.statuses(),
        vec![
            ("one".to_owned(), "done".to_owned()),
            ("two".to_owned(), "done".to_owned())
        ]
    );
}

/// A recipe holding an alias bomb, deep nesting or too many bytes is refused with a location,
/// before anything runs.
#[test]
fn hostile_recipes_are_refused_with_a_location() {
    let mut bomb = "name: bomb\nvars:\n  A: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("  V{i}: &a{i} [{refs}]\n"));
    }
    bomb.push_str("steps:\n  - id: a\n    run: 'true'\n");
    let deep = format!(
        "name: deep\nvars: {}{}\nsteps: []\n",
        "{a: ".repeat(20_000),
        "}".repeat(20_000)
    );
    let huge = format!("name: huge\n{}\nsteps: []\n", "#".repeat(5 * 1024 * 1024));
    for yaml in [bomb, deep, huge] {
        let t = RecipeTest::new(&yaml);
        let out = t.up(&[], 2);
        let err = text(&out.stderr);
        assert!(err.contains("recipe.yaml:"), "{err}");
        assert!(!t.ws.join(".pinstack").exists(), "nothing ran");
    }
}

/// A full disk when a step's log is created (simulated in test builds): the step does not run
/// and is not recorded done, the message names the log, and the next run recovers.
#[test]
fn a_full_disk_for_a_log_stops_before_the_step_runs() {
    let yaml = recipe("name: full-log", &[step("one", &[], &[])]);
    let t = RecipeTest::new(&yaml);
    let out = t.run(
        &["up"],
        &[("PINSTACK_FAULT_DISK_FULL", "logs/full-log/one.log")],
        3,
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("one.log") && err.contains("No space left on device"),
        "{err}"
    );
    t.assert_counts(&[("one", 0)]);
    t.up(&[], 0);
    t.assert_counts(&[("one", 1)]);
}

/// pinstack killed after a step finished but before its checkpoint was written: the step is
/// not recorded done, and the next `up` runs it again and converges.
#[test]
fn a_kill_before_the_checkpoint_is_written_reruns_the_step() {
    let t = chain();
    let killed = t
        .pinstack(&["up"])
        .env("PINSTACK_FAULT", "checkpoint:2")
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), None, "killed by the fault point");
    let statuses = t.statuses();
    assert_eq!(statuses[0], ("a".to_owned(), "done".to_owned()));
    assert_ne!(
        statuses[1].1, "done",
        "b finished but was never recorded done"
    );
    t.up(&[], 0);
    t.assert_counts(&[("a", 1), ("b", 2), ("c", 1), ("d", 1)]);
    assert!(t.statuses().iter().all(|(_, s)| s == "done"));
}

/// Links someone planted in the workspace (its lock file, a step's export file) are not
/// written through: what they point to stays as it was.
#[test]
fn links_planted_in_the_workspace_are_not_written_through() {
    let t = RecipeTest::new(&recipe("name: planted", &[step("build", &[], &[])]));
    let victim = t.fx.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let export = t.ws_path(".pinstack/steps/planted/build.export");
    std::fs::create_dir_all(export.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, &export).unwrap();
    t.up(&[], 0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(
        !std::fs::symlink_metadata(&export)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // The lock file: the command fails rather than write where the link points.
    let lock = t.ws_path(".pinstack/lock");
    std::fs::remove_file(&lock).unwrap_or_default();
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let out = t.run(&["up"], &[], 3);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// Recipes whose names map to one folder name ("lab one", "lab_one"), or a name like "..",
/// keep checkpoints of their own, all under `.pinstack/steps/`.
#[test]
fn recipe_names_that_share_a_folder_name_keep_their_own_checkpoints() {
    let t = RecipeTest::new("name: lab one\nsteps:\n  - id: s\n    run: echo one\n");
    t.up(&[], 0);
    t.recipe("name: lab_one\nsteps:\n  - id: s\n    run: echo two\n");
    t.assert_statuses(&[("s", "pending")]);
    t.up(&[], 0);
    t.recipe("name: lab one\nsteps:\n  - id: s\n    run: echo one\n");
    t.assert_statuses(&[("s", "done")]);
    t.recipe("name: ..\nsteps:\n  - id: s\n    run: echo dots\n");
    t.up(&[], 0);
    assert!(!t.ws_path(".pinstack/s.done.json").exists());
    assert!(!t.ws_path(".pinstack/steps/s.done.json").exists());
}

/// `reset` waits for no `up`: while one runs it refuses (exit 3, naming the holder), since a
/// checkpoint the `up` writes afterwards would bring the step back.
#[test]
fn reset_refuses_while_up_runs() {
    let yaml = recipe(
        "name: busy",
        &[step(
            "long",
            &[],
            &["echo $$ > \"${workspace}/long.pid\"", "sleep 30"],
        )],
    );
    let t = RecipeTest::new(&yaml);
    let child = t.spawn_up(&[]);
    wait_for_file(&t.ws_path("long.pid"));
    let out = t.run(&["reset", "long"], &[], 3);
    assert!(
        all_output(&out).contains("pinstack up"),
        "{}",
        all_output(&out)
    );
    kill("INT", child.id());
    let _ = child.wait_with_output();
    t.run(&["reset", "long"], &[], 0);
}

/// Two recipes of one workspace may name a step alike: each keeps its own log.
#[test]
fn two_recipes_with_a_step_of_the_same_name_keep_their_own_logs() {
    let t = RecipeTest::new(&recipe(
        "name: first",
        &[step("build", &[], &["echo built by the first recipe"])],
    ));
    t.write(
        "second.yaml",
        &recipe(
            "name: second",
            &[step("build", &[], &["echo built by the second recipe"])],
        ),
    );
    let second = |args: &[&str]| {
        let mut cmd = t.fx.pinstack();
        cmd.env_remove("PINSTACK_RECIPE")
            .arg("--workspace")
            .arg(&t.ws)
            .args(["--recipe", "second.yaml"])
            .args(args);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    t.up(&[], 0);
    second(&["up"]);
    let first = text(&t.run(&["logs", "build"], &[], 0).stdout);
    assert!(first.contains("built by the first recipe"), "{first}");
    let log = second(&["logs", "build"]);
    assert!(log.contains("built by the second recipe"), "{log}");
    assert!(!log.contains("first"), "{log}");
}
