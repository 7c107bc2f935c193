//! `switch` and `status` against a tiny OpenAI-compatible stand-in for `vllm serve`, on
//! loopback: readiness, rollback on every kind of failure, the process supervisor's process
//! groups, the switch lock, and `systemctl` driven through a recording stand-in.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::Fixture;

/// A stand-in for `vllm`: as a current vLLM, `serve --help=all` lists the flags it knows and
/// `serve --help` only points there; `serve MODEL --host H
/// --port P --max-model-len N [--served-model-name S]` answers `/health`, `/v1/models` and
/// `/v1/completions` (always " 42"). `STANDIN_MODE` in its environment breaks it on purpose.
/// It exits by itself when `STANDIN_WATCH` disappears (the test's folder) or after five minutes,
/// so no test can leave a server behind.
const STANDIN: &str = r#"
import json, os, signal, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HELP = """usage: vllm serve [model_tag] [options]
options:
  --host HOST
  --port PORT
  --max-model-len MAX_MODEL_LEN
  --served-model-name SERVED_MODEL_NAME [SERVED_MODEL_NAME ...]
  --dtype {auto,float16,bfloat16}
  --max-num-seqs MAX_NUM_SEQS
"""

def watchdog():
    watch = os.environ.get("STANDIN_WATCH")
    until = time.time() + 300
    def run():
        while True:
            if (watch and not os.path.exists(watch)) or time.time() > until:
                os._exit(0)
            time.sleep(0.5)
    threading.Thread(target=run, daemon=True).start()

def main():
    args = sys.argv[1:]
    if args[:2] == ["serve", "--help=all"]:
        print(HELP)
        return 0
    if args[:2] == ["serve", "--help"]:
        print("usage: vllm serve [model_tag] [options]\n  Use `--help=all` to show all available flags at once.")
        return 0
    if len(args) < 2 or args[0] != "serve":
        print("usage: vllm serve MODEL [options]", file=sys.stderr)
        return 9
    model, opts, i = args[1], {}, 2
    while i < len(args):
        a = args[i]
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            opts[a] = args[i + 1]
            i += 2
        else:
            opts[a] = True
            i += 1
    host = opts.get("--host", "127.0.0.1")
    port = int(opts.get("--port", 8000))
    length = int(opts.get("--max-model-len", 2048))
    served = opts.get("--served-model-name", model)
    mode = os.environ.get("STANDIN_MODE", "good")
    watchdog()
    print(f"standin: loading {model} (mode {mode})", flush=True)
    if mode == "die-after-start":
        time.sleep(0.3)
        print("standin: RuntimeError: out of device memory while capturing graphs", flush=True)
        return 1
    if mode == "ignore-sigint":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if mode == "gated":
        while not os.path.exists(os.environ["STANDIN_GATE"]):
            time.sleep(0.05)
    reported = length // 2 if mode == "wrong-len" else length

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            print("standin: " + fmt % a, flush=True)

        def answer(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if mode == "never-ready":
                return self.answer(503, {"error": "the model is still loading"})
            if self.path == "/health":
                return self.answer(200, {})
            if self.path == "/v1/models":
                return self.answer(200, {"object": "list", "data": [
                    {"id": served, "object": "model", "max_model_len": reported}]})
            self.answer(404, {"error": "not found"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            req = json.loads(self.rfile.read(n) or b"{}")
            if self.path != "/v1/completions":
                return self.answer(404, {"error": "not found"})
            if req.get("model") != served:
                return self.answer(404, {"error": "unknown model " + str(req.get("model"))})
            self.answer(200, {"object": "text_completion", "model": served,
                              "choices": [{"index": 0, "text": " 42", "finish_reason": "stop"}]})

    class Server(ThreadingHTTPServer):
        def server_bind(self):
            if os.environ.get("STANDIN_REUSEPORT"):
                # As vLLM binds: a second server of the same user may bind the same port.
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            super().server_bind()

    server = Server((host, port), Handler)
    server.daemon_threads = True
    print(f"standin: serving {served} with max_model_len {reported} on {host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        print("standin: stopping on SIGINT", flush=True)
    return 0

sys.exit(main())
"#;

fn recipe(port: u16, port2: u16) -> String {
    format!(
        "\
name: standin
steps:
  - id: nothing
    run: 'true'
serve:
  model: /models/tiny
  served_model_name: tiny
  venv: ${{workspace}}/venv
  port: {port}
  max_model_len: 4096
  env:
    STANDIN_WATCH: ${{workspace}}
    SERVE_API_TOKEN: hunter2
  flags:
    --dtype: float16
  smoke: {{ prompt: 'Return only the number 42:', expect: '42', max_tokens: 8 }}
  ready_timeout: 60s
profiles:
  good:
    status: production
  other:
    status: known-good
    served_model_name: other
    port: {port2}
    max_model_len: 8192
    flags:
      --max-num-seqs: 2
  wrong-len:
    status: known-good
    env: {{ STANDIN_MODE: wrong-len }}
  never-ready:
    status: known-good
    env: {{ STANDIN_MODE: never-ready }}
  dies:
    status: known-good
    env: {{ STANDIN_MODE: die-after-start }}
  gated:
    status: known-good
    env: {{ STANDIN_MODE: gated, STANDIN_GATE: '${{workspace}}/gate' }}
  stubborn:
    status: known-good
    env: {{ STANDIN_MODE: ignore-sigint }}
  trial:
    status: experimental
  stale:
    status: known-good
    flags:
      --async-engine: true
"
    )
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The interpreter itself, not a shim: the server runs with nothing but its profile's
/// environment.
fn python() -> String {
    let out = StdCommand::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn write_script(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Whether a process runs (a zombie does not).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A fixture with the stand-in as the workspace's `vllm` and the recipe above; kills whatever
/// server it recorded when the test ends.
struct Lab {
    fx: Fixture,
    port: u16,
    port2: u16,
    /// Processes a test started itself.
    extra: std::cell::RefCell<Vec<u32>>,
}

impl Lab {
    fn new() -> Lab {
        let fx = Fixture::new();
        let port = free_port();
        let port2 = (0..100).map(|_| free_port()).find(|p| *p != port).unwrap();
        fx.write("recipe.yaml", recipe(port, port2));
        write_script(
            &fx.path("workspace/venv/bin/vllm"),
            &format!("#!{}\n{STANDIN}", python()),
        );
        Lab {
            fx,
            port,
            port2,
            extra: Default::default(),
        }
    }

    fn cmd(&self) -> assert_cmd::Command {
        let mut c = self.fx.pinstack();
        c.env("PINSTACK_STOP_GRACE", "20")
            .args(["--recipe", "recipe.yaml"]);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs pinstack, asserts the exit code, returns (stdout, stderr).
    fn expect(&self, args: &[&str], code: i32) -> (String, String) {
        let out = self.run(args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "pinstack {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        (stdout, stderr)
    }

    fn switch(&self, profile: &str, code: i32) -> String {
        self.expect(&["switch", profile, "--supervisor", "process"], code)
            .1
    }

    /// Rewrites the recipe with one piece of its text replaced (which must be there).
    fn edit_recipe(&self, from: &str, to: &str) {
        let text = recipe(self.port, self.port2);
        assert!(text.contains(from), "{from:?} is not in the recipe");
        self.fx.write("recipe.yaml", text.replace(from, to));
    }

    /// `install-service` under `prefix` (in the fixture): the unit, launcher, env and args
    /// files systemd would run.
    fn install(&self, prefix: &str) {
        self.expect(
            &["install-service", "--prefix", prefix, "--user", "nobody"],
            0,
        );
    }

    /// `switch PROFILE` under the fake systemd on `path`, with the units installed under
    /// `prefix/`, killed at `fault` when one is given.
    fn systemd_switch(&self, path: &str, profile: &str, fault: Option<&str>) -> Output {
        let mut c = self.cmd();
        c.env("PATH", path).args([
            "switch",
            profile,
            "--supervisor",
            "systemd",
            "--prefix",
            "prefix",
        ]);
        if let Some(f) = fault {
            c.env("PINSTACK_FAULT", f);
        }
        c.output().unwrap()
    }

    /// A stand-in server of its own, started as profile `good` would be (its port, model id and
    /// context), binding with SO_REUSEPORT; returns at once.
    fn decoy_as_good(&self) -> std::process::Child {
        let port = self.port.to_string();
        let vllm = self.fx.path("workspace/venv/bin/vllm");
        let args = [
            "--served-model-name",
            "tiny",
            "--port",
            &port,
            "--max-model-len",
            "4096",
        ];
        self.decoy(&vllm, &args)
    }

    /// A stand-in server of its own on the port of profile `good`, answering as `good` would;
    /// returns once it listens.
    fn decoy_on_the_port(&self) -> std::process::Child {
        let decoy = self.decoy_as_good();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the decoy never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        decoy
    }

    /// A stand-in server this test starts itself, serving /models/tiny (stopped at the end).
    fn decoy(&self, program: &Path, args: &[&str]) -> std::process::Child {
        let child = StdCommand::new(program)
            .args(["serve", "/models/tiny"])
            .args(args)
            .env_clear()
            .env("STANDIN_REUSEPORT", "1")
            .env("STANDIN_WATCH", self.fx.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.extra.borrow_mut().push(child.id());
        child
    }

    fn state(&self) -> Option<Value> {
        let bytes = std::fs::read(self.fx.path("workspace/serve/state.json")).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    fn pid(&self) -> u64 {
        self.state().expect("a state file")["pid"].as_u64().unwrap()
    }

    fn status(&self, code: i32) -> Value {
        let (stdout, _) = self.expect(&["--json", "status"], code);
        serde_json::from_str(&stdout).unwrap()
    }

    /// Asserts status says the profile runs, healthy and as rendered.
    fn assert_healthy(&self, profile: &str) {
        let s = self.status(0);
        assert_eq!(s["profile"], profile, "{s:#}");
        assert_eq!(s["running"], true, "{s:#}");
        assert_eq!(s["healthy"], true, "{s:#}");
        assert_eq!(s["matches"], true, "{s:#}");
        assert_eq!(s["differences"], serde_json::json!([]), "{s:#}");
    }

    /// The pid a switch's stderr says it started a profile with.
    fn started_pid(stderr: &str, profile: &str) -> u64 {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("started {profile} ")))
            .unwrap_or_else(|| panic!("no start of {profile} in:\n{stderr}"));
        let rest = &line[line.find("process group ").unwrap() + "process group ".len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut groups: Vec<u64> = self.extra.borrow().iter().map(|p| u64::from(*p)).collect();
        if let Some(s) = self.state() {
            groups.extend(s["pgid"].as_u64().or(s["pid"].as_u64()));
        }
        // As a process group (the process supervisor's) and as a process (a unit's).
        for g in groups {
            for target in [format!("-{g}"), g.to_string()] {
                let _ = StdCommand::new("kill")
                    .args(["-KILL", "--", &target])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

#[test]
fn a_good_profile_is_recorded_and_healthy() {
    let lab = Lab::new();
    let (stdout, stderr) = lab.expect(&["--json", "switch", "good", "--supervisor", "process"], 0);
    assert!(stderr.contains("good is ready"), "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    let state = lab.state().unwrap();
    assert_eq!(out["pid"], state["pid"]);
    assert_eq!(state["profile"], "good");
    assert_eq!(state["supervisor"], "process");
    assert_eq!(
        state["pgid"], state["pid"],
        "the server leads its own group"
    );
    assert_eq!(state["unit"], Value::Null);
    assert_eq!(state["base_url"], format!("http://127.0.0.1:{}", lab.port));
    assert!(state["started_at"].as_u64().unwrap() > 0);
    let command: Vec<&str> = state["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        command[0].ends_with("workspace/venv/bin/vllm"),
        "{command:?}"
    );
    assert_eq!(command[1..3], ["serve", "/models/tiny"]);
    let env = state["env"].as_array().unwrap();
    let token = env.iter().find(|e| e["name"] == "SERVE_API_TOKEN").unwrap();
    assert_eq!(
        token["value"], "***",
        "secrets are masked in the state file"
    );
    assert!(
        !std::fs::read_to_string(lab.fx.path("workspace/serve/state.json"))
            .unwrap()
            .contains("hunter2")
    );
    assert_eq!(state["ready"]["model_id"], "tiny");
    assert_eq!(state["ready"]["max_model_len"], 4096);
    assert!(
        state["ready"]["smoke_text"]
            .as_str()
            .unwrap()
            .contains("42")
    );
    let log = PathBuf::from(state["log"].as_str().unwrap());
    assert!(
        log.starts_with(lab.fx.path("workspace/serve/logs")),
        "{log:?}"
    );
    assert!(
        log.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("good-"),
        "{log:?}"
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("standin: serving tiny")
    );

    lab.assert_healthy("good");
    let s = lab.status(0);
    assert_eq!(s["pid"], state["pid"]);
    assert_eq!(s["supervisor"], "process");
    assert!(s["uptime_s"].is_u64());
    assert_eq!(s["log"], state["log"]);
    // The server runs with exactly the profile's environment, nothing of the caller's.
    let environ = std::fs::read(format!("/proc/{}/environ", lab.pid())).unwrap();
    let mut names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|kv| {
            String::from_utf8_lossy(kv)
                .split('=')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["SERVE_API_TOKEN", "STANDIN_WATCH"]);

    let (text, _) = lab.expect(&["status", "--tail", "3"], 0);
    assert!(text.contains("healthy"), "{text}");
    assert!(text.contains("matches the profile"), "{text}");
    assert!(text.contains("last 3 lines"), "{text}");
}

#[test]
fn switching_stops_the_first_process_group() {
    let lab = Lab::new();
    lab.switch("good", 0);
    let first = lab.pid();
    assert!(alive(first));
    let stderr = lab.switch("other", 0);
    assert!(stderr.contains("stopped good"), "{stderr}");
    assert!(!alive(first), "the first server's group is gone");
    let state = lab.state().unwrap();
    assert_eq!(state["profile"], "other");
    assert_eq!(state["base_url"], format!("http://127.0.0.1:{}", lab.port2));
    assert_eq!(state["ready"]["model_id"], "other");
    assert_eq!(state["ready"]["max_model_len"], 8192);
    lab.assert_healthy("other");
    // And back: the same port is free again.
    lab.switch("good", 0);
    lab.assert_healthy("good");
}

#[test]
fn a_wrong_max_model_len_rolls_back() {
    let lab = Lab::new();
    lab.switch("good", 0);
    let before = lab.pid();
    let stderr = lab.switch("wrong-len", 1);
    assert!(
        stderr.contains("reports max_model_len 2048 for tiny; the profile expects 4096"),
        "{stderr}"
    );
    assert!(
        stderr.contains("| standin: serving tiny with max_model_len 2048"),
        "{stderr}"
    );
    assert!(stderr.contains("rolling back to good"), "{stderr}");
    assert!(
        stderr.contains("rolled back to good, which is healthy again"),
        "{stderr}"
    );
    let broken = Lab::started_pid(&stderr, "wrong-len");
    assert!(!alive(broken), "the broken server was stopped");
    assert!(!alive(before));
    assert_eq!(lab.state().unwrap()["profile"], "good");
    assert_ne!(lab.pid(), before);
    lab.assert_healthy("good");
}

#[test]
fn a_server_that_never_comes_up_rolls_back() {
    let lab = Lab::new();
    lab.switch("good", 0);
    let (_, stderr) = lab.expect(
        &[
            "switch",
            "never-ready",
            "--supervisor",
            "process",
            "--timeout",
            "2s",
        ],
        1,
    );
    assert!(
        stderr.contains("still starting when the deadline (2s) passed"),
        "{stderr}"
    );
    assert!(stderr.contains("answered 503"), "{stderr}");
    assert!(stderr.contains("rolled back to good"), "{stderr}");
    assert!(!alive(Lab::started_pid(&stderr, "never-ready")));
    lab.assert_healthy("good");
}

#[test]
fn a_server_that_dies_after_start_rolls_back() {
    let lab = Lab::new();
    lab.switch("good", 0);
    let stderr = lab.switch("dies", 1);
    assert!(stderr.contains("died while starting"), "{stderr}");
    assert!(stderr.contains("exited (exit status: 1)"), "{stderr}");
    assert!(
        stderr.contains("| standin: RuntimeError: out of device memory"),
        "{stderr}"
    );
    assert!(stderr.contains("rolled back to good"), "{stderr}");
    lab.assert_healthy("good");
}

#[test]
fn a_failed_switch_from_nothing_leaves_nothing() {
    let lab = Lab::new();
    let stderr = lab.switch("dies", 1);
    assert!(stderr.contains("no server was running before"), "{stderr}");
    assert!(lab.state().is_none());
    let s = lab.status(1);
    assert_eq!(s["running"], false);
    assert_eq!(s["profile"], Value::Null);
    let (text, _) = lab.expect(&["status"], 1);
    assert!(text.contains("nothing is running"), "{text}");
}

#[test]
fn experimental_profiles_need_the_flag() {
    let lab = Lab::new();
    let stderr = lab.switch("trial", 2);
    assert!(stderr.contains("--allow-experimental"), "{stderr}");
    assert!(lab.state().is_none(), "nothing was started");
    lab.expect(
        &[
            "switch",
            "trial",
            "--supervisor",
            "process",
            "--allow-experimental",
        ],
        0,
    );
    lab.assert_healthy("trial");
    let stderr = lab.switch("nope", 2);
    assert!(stderr.contains("unknown profile \"nope\""), "{stderr}");
    lab.assert_healthy("trial");
}

#[test]
fn a_stale_flag_is_refused_before_anything_stops() {
    let lab = Lab::new();
    lab.switch("good", 0);
    let pid = lab.pid();
    let stderr = lab.switch("stale", 2);
    assert!(stderr.contains("--async-engine"), "{stderr}");
    assert!(stderr.contains("nothing was stopped"), "{stderr}");
    assert!(!stderr.contains("stopping"), "{stderr}");
    assert!(alive(pid));
    assert_eq!(lab.pid(), pid);
    lab.assert_healthy("good");
}

#[test]
fn status_reports_what_differs_from_the_profile() {
    let lab = Lab::new();
    lab.switch("good", 0);
    // The recipe changes after the switch: the running server no longer matches it.
    lab.edit_recipe(
        "  good:\n    status: production\n",
        "  good:\n    status: production\n    env: { EXTRA: '1', SERVE_API_TOKEN: hunter3 }\n    flags:\n      --max-num-seqs: 4\n",
    );
    let s = lab.status(1);
    assert_eq!(s["running"], true, "{s:#}");
    assert_eq!(s["healthy"], true, "{s:#}");
    assert_eq!(s["matches"], false, "{s:#}");
    let diffs: Vec<&str> = s["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        diffs
            .iter()
            .any(|d| d.starts_with("command line:") && d.contains("--max-num-seqs 4")),
        "{diffs:?}"
    );
    assert!(
        diffs.contains(&"EXTRA: the profile sets \"1\"; the server has none"),
        "{diffs:?}"
    );
    assert!(
        diffs.contains(&"SERVE_API_TOKEN: the server has ***; the profile sets ***"),
        "{diffs:?}"
    );
    assert!(!format!("{s}").contains("hunter"), "secrets stay hidden");
    let (text, _) = lab.expect(&["status"], 1);
    assert!(text.contains("DIFFERS"), "{text}");

    // A server that stopped behind pinstack's back: not running, exit 1.
    lab.fx.write("recipe.yaml", recipe(lab.port, lab.port2));
    let pid = lab.pid();
    StdCommand::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    for _ in 0..200 {
        if !alive(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let s = lab.status(1);
    assert_eq!(s["running"], false, "{s:#}");
    assert_eq!(s["profile"], "good");
}

#[test]
fn a_look_alike_process_is_never_touched() {
    let lab = Lab::new();
    // Somebody else's vLLM on the same host: same program name, same model, own folder.
    let other = lab.fx.path("elsewhere/venv/bin/vllm");
    write_script(&other, &format!("#!{}\n{STANDIN}", python()));
    let mut decoy = lab.decoy(&other, &["--port", &free_port().to_string()]);
    lab.switch("good", 0);
    lab.switch("other", 0);
    lab.switch("dies", 1);
    lab.switch("wrong-len", 1);
    assert!(
        decoy.try_wait().unwrap().is_none(),
        "a process pinstack did not start is never stopped"
    );
    lab.assert_healthy("other");
    decoy.kill().unwrap();
    decoy.wait().unwrap();
}

#[test]
fn a_second_switch_is_refused_while_one_runs() {
    let lab = Lab::new();
    let first = lab
        .cmd()
        .args(["switch", "gated", "--supervisor", "process"])
        .spawn_ok();
    // The workspace lock, shared with `up`, `apply` and `fetch`.
    let lock = lab.fx.path("workspace/.pinstack/lock");
    let mut held = false;
    for _ in 0..600 {
        if std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("switch gated")) {
            held = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(held, "the first switch takes the lock");
    let stderr = lab.switch("good", 3);
    assert!(stderr.contains("in use by another pinstack"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {} (switch gated", first.id())),
        "{stderr}"
    );
    // Let the first one finish.
    lab.fx.write("workspace/gate", "");
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    lab.assert_healthy("gated");
}

/// `assert_cmd::Command` does not spawn; this does, from its configuration.
trait SpawnOk {
    fn spawn_ok(&mut self) -> std::process::Child;
}

impl SpawnOk for assert_cmd::Command {
    fn spawn_ok(&mut self) -> std::process::Child {
        let mut copy = StdCommand::new(self.get_program());
        copy.args(self.get_args());
        if let Some(dir) = self.get_current_dir() {
            copy.current_dir(dir);
        }
        for (k, v) in self.get_envs() {
            match v {
                Some(v) => copy.env(k, v),
                None => copy.env_remove(k),
            };
        }
        copy.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

#[test]
fn a_server_ignoring_sigint_is_killed_after_the_grace() {
    let lab = Lab::new();
    lab.switch("stubborn", 0);
    let pid = lab.pid();
    let out = lab
        .cmd()
        .env("PINSTACK_STOP_GRACE", "1")
        .args(["switch", "good", "--supervisor", "process"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stubborn ignored SIGINT"), "{stderr}");
    assert!(!alive(pid));
    lab.assert_healthy("good");
}

/// A recording `systemctl` that runs each unit from `units/<unit>.sh` (rendered by the test
/// from `profile show`), and a `journalctl` that prints the unit's output.
fn fake_systemd(lab: &Lab) -> PathBuf {
    let root = lab.fx.root().display().to_string();
    let bin = lab.fx.path("bin");
    write_script(
        &bin.join("systemctl"),
        &format!(
            r#"#!/bin/sh
d='{root}'
echo "$*" >> "$d/systemctl.calls"
alive() {{ [ -f "$d/units/$1.pid" ] && kill -0 "$(cat "$d/units/$1.pid")" 2>/dev/null; }}
case "$1" in
  start)
    [ -f "$d/units/$2.sh" ] || {{ echo "Unit $2 not found." >&2; exit 5; }}
    sh "$d/units/$2.sh" </dev/null >>"$d/units/$2.log" 2>&1 &
    echo $! > "$d/units/$2.pid" ;;
  stop)
    if alive "$2"; then
      # SIGTERM: a background job of sh ignores SIGINT.
      pid=$(cat "$d/units/$2.pid"); kill -TERM "$pid"; i=0
      while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
      kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$d/units/$2.pid" ;;
  is-active)
    if alive "$2"; then echo active; else echo inactive; exit 3; fi ;;
  show)
    if alive "$5"; then cat "$d/units/$5.pid"; else echo 0; fi ;;
  *) exit 1 ;;
esac
"#
        ),
    );
    write_script(
        &bin.join("journalctl"),
        &format!("#!/bin/sh\ntail -n \"$6\" '{root}/units/'\"$2\".log\n"),
    );
    // One unit per profile, as install-service would render them.
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    for name in ["good", "other", "wrong-len"] {
        let (stdout, _) = lab.expect(&["--json", "profile", "show", name], 0);
        let p: Value = serde_json::from_str(&stdout).unwrap();
        let mut line = "exec env -i".to_owned();
        for e in p["env"].as_array().unwrap() {
            let value = if e["name"] == "SERVE_API_TOKEN" {
                "hunter2"
            } else {
                e["value"].as_str().unwrap()
            };
            line.push(' ');
            line.push_str(&quote(&format!("{}={value}", e["name"].as_str().unwrap())));
        }
        for a in p["command"].as_array().unwrap() {
            line.push(' ');
            line.push_str(&quote(a.as_str().unwrap()));
        }
        lab.fx.write(
            &format!("units/pinstack-standin@{name}.service.sh"),
            format!("{line}\n"),
        );
    }
    bin
}

fn systemctl_calls(lab: &Lab) -> Vec<String> {
    std::fs::read_to_string(lab.fx.path("systemctl.calls"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("start ") || l.starts_with("stop "))
        .map(str::to_owned)
        .collect()
}

/// The units the fake systemd was asked to start, in order.
fn units_started(lab: &Lab) -> Vec<String> {
    systemctl_calls(lab)
        .iter()
        .filter_map(|c| c.strip_prefix("start "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_switch_stops_and_starts_the_units_in_order() {
    let lab = Lab::new();
    let bin = fake_systemd(&lab);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |args: &[&str], code: i32| -> String {
        let out = lab.cmd().env("PATH", &path).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}\nstdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    };
    let switch = ["--supervisor", "systemd", "--prefix", "prefix"];

    // Without the unit installed under the prefix: refused, systemctl never asked.
    let stderr = run(&[&["switch", "good"][..], &switch].concat(), 2);
    assert!(
        stderr.contains("pinstack install-service --prefix prefix"),
        "{stderr}"
    );
    assert!(systemctl_calls(&lab).is_empty());

    lab.install("prefix");
    run(&[&["switch", "good"][..], &switch].concat(), 0);
    let state = lab.state().unwrap();
    assert_eq!(state["supervisor"], "systemd");
    assert_eq!(state["unit"], "pinstack-standin@good.service");
    assert_eq!(state["pgid"], Value::Null);
    let pid = state["pid"].as_u64().unwrap();
    assert!(alive(pid));

    let out = lab
        .cmd()
        .env("PATH", &path)
        .args(["--json", "status", "--prefix", "prefix"])
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{s:#}");
    assert_eq!(s["unit"], "pinstack-standin@good.service");
    assert_eq!(s["pid"], pid);
    assert_eq!(s["matches"], true, "{s:#}");

    run(&[&["switch", "other"][..], &switch].concat(), 0);
    assert!(!alive(pid));
    let stderr = run(&[&["switch", "wrong-len"][..], &switch].concat(), 1);
    assert!(stderr.contains("rolled back to other"), "{stderr}");
    assert!(
        stderr.contains("| standin: serving tiny with max_model_len 2048"),
        "the unit's journal is shown: {stderr}"
    );
    assert_eq!(
        systemctl_calls(&lab),
        [
            "start pinstack-standin@good.service",
            "stop pinstack-standin@good.service",
            "start pinstack-standin@other.service",
            "stop pinstack-standin@other.service",
            "start pinstack-standin@wrong-len.service",
            "stop pinstack-standin@wrong-len.service",
            "start pinstack-standin@other.service",
        ]
    );
    assert_eq!(
        lab.state().unwrap()["unit"],
        "pinstack-standin@other.service"
    );
    // Stop the unit the test's systemctl started (it is not in a process group of its own).
    run(&[&["switch", "good"][..], &switch].concat(), 0);
    let pid = lab.state().unwrap()["pid"].as_u64().unwrap();
    lab.extra.borrow_mut().push(pid as u32);
}

/// pinstack killed at many moments of a switch (while stopping, starting, waiting): a plain
/// rerun of the switch always converges to the profile running, healthy, with no other server
/// left behind.
#[test]
fn a_switch_killed_at_any_moment_converges_on_rerun() {
    let lab = Lab::new();
    lab.switch("good", 0);
    let port_of = |profile: &str| {
        if profile == "good" {
            lab.port
        } else {
            lab.port2
        }
    };
    for round in 0..8u64 {
        let (target, other) = if round % 2 == 0 {
            ("other", "good")
        } else {
            ("good", "other")
        };
        let mut child = lab
            .cmd()
            .args(["switch", target, "--supervisor", "process"])
            .spawn_ok();
        std::thread::sleep(Duration::from_millis(20 + round * 45));
        let _ = child.kill();
        let _ = child.wait();
        lab.switch(target, 0);
        lab.assert_healthy(target);
        let left = std::net::TcpStream::connect(("127.0.0.1", port_of(other))).is_ok();
        assert!(!left, "round {round}: a {other} server was left behind");
    }
}

/// pinstack killed after it started a server but before it saved the state naming it: the
/// server never runs (it waits behind a gate the dead switch can no longer open), so nothing
/// unrecorded is left behind, and a plain rerun converges.
#[test]
fn a_switch_killed_before_recording_its_server_leaves_no_server() {
    let lab = Lab::new();
    lab.switch("good", 0);
    let killed = lab
        .cmd()
        .env("PINSTACK_FAULT", "switch-spawned:1")
        .args(["switch", "other", "--supervisor", "process"])
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), None, "killed at the fault point");
    std::thread::sleep(Duration::from_millis(500));
    let other = std::net::TcpStream::connect(("127.0.0.1", lab.port2)).is_ok();
    assert!(!other, "a server no state records is listening");
    lab.switch("other", 0);
    lab.assert_healthy("other");
    let good = std::net::TcpStream::connect(("127.0.0.1", lab.port)).is_ok();
    assert!(!good, "the good server was left behind");
}

/// `up` and `switch` share the workspace lock: while an `up` runs, a switch fails at once,
/// naming the holder, and stops nothing.
#[test]
fn a_switch_is_refused_while_up_runs() {
    let lab = Lab::new();
    lab.switch("good", 0);
    let serving = lab.pid();
    let busy = recipe(lab.port, lab.port2).replace(
        "  - id: nothing\n    run: 'true'\n",
        "  - id: wait\n    run: |\n      touch started\n      while [ ! -e go ]; do sleep 0.05; done\n",
    );
    lab.fx.write("busy.yaml", &busy);
    let mut up = lab.fx.pinstack();
    up.env("PINSTACK_STOP_GRACE", "20")
        .args(["--recipe", "busy.yaml", "up"]);
    let child = up.spawn_ok();
    for _ in 0..2400 {
        if lab.fx.path("workspace/started").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let stderr = lab.switch("other", 3);
    assert!(
        stderr.contains(&format!("pid {} (pinstack up", child.id())),
        "{stderr}"
    );
    assert!(alive(serving), "the running server was not stopped");
    lab.fx.write("workspace/go", "");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    lab.assert_healthy("good");
}

#[test]
fn a_server_no_state_names_on_the_port_is_refused_before_anything_starts() {
    // A unit started by hand (or one from before a lost state) answers on the profile's port:
    // its answers would pass for the new server's, which would then fail to bind beside it.
    let lab = Lab::new();
    let mut decoy = lab.decoy_on_the_port();
    let stderr = lab.switch("good", 3);
    assert!(stderr.contains("already answers"), "{stderr}");
    assert!(lab.state().is_none(), "nothing recorded");
    assert!(decoy.try_wait().unwrap().is_none(), "never touched");
    // Another port is free: a profile there switches.
    lab.switch("other", 0);
    decoy.kill().unwrap();
    decoy.wait().unwrap();
}

#[test]
fn a_failed_server_that_cannot_be_stopped_gets_no_rollback_beside_it() {
    let lab = Lab::new();
    let bin = fake_systemd(&lab);
    // Stopping the wrong-len unit fails (and leaves it running).
    let systemctl = std::fs::read_to_string(bin.join("systemctl")).unwrap();
    write_script(
        &bin.join("systemctl"),
        &systemctl.replacen(
            "  stop)\n",
            "  stop)\n    case \"$2\" in *wrong-len*) exit 1;; esac\n",
            1,
        ),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    lab.install("prefix");
    let switch = |profile: &str, code: i32| -> String {
        let out = lab.systemd_switch(&path, profile, None);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{profile}: {stderr}");
        stderr
    };
    switch("good", 0);
    let stderr = switch("wrong-len", 3);
    assert!(stderr.contains("could not be stopped"), "{stderr}");
    // The good unit was not started again beside the one still running.
    assert_eq!(
        units_started(&lab),
        [
            "pinstack-standin@good.service",
            "pinstack-standin@wrong-len.service"
        ]
    );
    assert_eq!(
        lab.state().unwrap()["profile"],
        "wrong-len",
        "still recorded"
    );
    // Let the test's cleanup stop it.
    std::fs::write(bin.join("systemctl"), systemctl).unwrap();
    switch("good", 0);
}

/// Under systemd no gate holds a unit back: its state is saved before `systemctl start`, so a
/// switch killed just after starting it leaves a state that names it.
#[test]
fn a_systemd_switch_killed_after_starting_the_unit_leaves_it_recorded() {
    let lab = Lab::new();
    let bin = fake_systemd(&lab);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    lab.install("prefix");
    let switch = |profile: &str, fault: Option<&str>| lab.systemd_switch(&path, profile, fault);
    assert_eq!(switch("good", None).status.code(), Some(0));
    let killed = switch("other", Some("switch-spawned:1"));
    assert_eq!(killed.status.code(), None, "killed at the fault point");
    assert_eq!(
        lab.state().unwrap()["unit"],
        "pinstack-standin@other.service",
        "the started unit is recorded"
    );
    let back = switch("good", None);
    assert_eq!(
        back.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert!(
        systemctl_calls(&lab).contains(&"stop pinstack-standin@other.service".to_owned()),
        "{:?}",
        systemctl_calls(&lab)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", lab.port2)).is_ok() {
        assert!(std::time::Instant::now() < deadline, "other still listens");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// systemd runs the installed files, not the recipe: a profile changed since install-service is
/// refused before anything stops, and runs once installed again.
#[test]
fn a_profile_changed_since_the_install_is_refused_before_anything_stops() {
    let lab = Lab::new();
    let bin = fake_systemd(&lab);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    lab.install("prefix");
    let switch = |profile: &str, code: i32| -> String {
        let out = lab.systemd_switch(&path, profile, None);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{profile}: {stderr}");
        stderr
    };
    switch("good", 0);
    lab.edit_recipe(
        "    flags:\n      --max-num-seqs: 2\n",
        "    flags:\n      --max-num-seqs: 3\n",
    );
    let stderr = switch("other", 2);
    assert!(
        stderr.contains("other.args differs") && stderr.contains("install-service"),
        "{stderr}"
    );
    assert_eq!(
        systemctl_calls(&lab),
        ["start pinstack-standin@good.service"],
        "nothing stopped"
    );
    lab.install("prefix");
    switch("other", 0);
}

/// A rollback brings the previous profile back as it ran (its recorded command line and
/// environment, secrets from the recipe), not as an edited recipe says now; where it cannot
/// (under systemd, whose unit runs its installed files), the switch says so first.
#[test]
fn a_rollback_restores_the_previous_profile_as_it_ran() {
    let lab = Lab::new();
    lab.switch("good", 0);
    // Unchanged: no word of it.
    let quiet = lab.switch("dies", 1);
    assert!(!quiet.contains("changed in the recipe"), "{quiet}");
    lab.assert_healthy("good");
    // The base environment edited while good serves: good, as the recipe says now, would no
    // longer come up; as it ran, it does.
    lab.edit_recipe(
        "    SERVE_API_TOKEN: hunter2\n",
        "    SERVE_API_TOKEN: hunter2\n    STANDIN_MODE: die-after-start\n",
    );
    let back = lab.switch("other", 1);
    assert!(back.contains("rolled back to good"), "{back}");
    assert!(!back.contains("changed in the recipe"), "{back}");
    // It runs as it ran before: healthy, and not what the edited recipe renders.
    let s = lab.status(1);
    assert_eq!(s["healthy"], true, "{s:#}");
    assert_eq!(s["matches"], false, "{s:#}");
    // The secret came from the recipe (the record masks it).
    let pid = lab.pid();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|kv| kv == b"SERVE_API_TOKEN=hunter2"),
        "the rolled-back server has its secret"
    );
}

/// `status` counts a server healthy only when the answers come from it: a recorded server that
/// runs but does not hold the port (still loading, say) while another process answers there is
/// not healthy.
#[test]
fn status_is_not_fooled_by_another_server_on_the_port() {
    use std::os::unix::process::CommandExt;
    let lab = Lab::new();
    // The recorded server: alive, in a group of its own, listening nowhere.
    let mut quiet = StdCommand::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .unwrap();
    lab.extra.borrow_mut().push(quiet.id());
    let pid = quiet.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start: u64 = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let (stdout, _) = lab.expect(&["--json", "profile", "show", "good"], 0);
    let good: Value = serde_json::from_str(&stdout).unwrap();
    let state = serde_json::json!({
        "profile": "good",
        "supervisor": "process",
        "started_at": 0,
        "pid": pid,
        "pgid": pid,
        "pid_start": start,
        "boot_id": boot.trim(),
        "unit": null,
        "log": null,
        "base_url": format!("http://127.0.0.1:{}", lab.port),
        "command": good["command"],
        "env": good["env"],
        "ready": null,
    });
    lab.fx
        .write("workspace/serve/state.json", state.to_string());
    // Another server answers on the port, as the profile expects.
    let mut decoy = lab.decoy_on_the_port();
    let v = lab.status(1);
    assert_eq!(v["running"], true, "{v:#}");
    assert_eq!(v["healthy"], false, "{v:#}");
    let health = v["health"].as_str().unwrap();
    assert!(
        health.contains(&format!("pid {}", decoy.id())) && health.contains("not the server"),
        "{health}"
    );
    decoy.kill().unwrap();
    decoy.wait().unwrap();
    quiet.kill().unwrap();
    quiet.wait().unwrap();
}

/// Answers that come from another process on the port never make a new server ready: a
/// server that starts beside it cannot bind there.
#[test]
fn a_server_that_answers_for_the_new_one_is_found_out() {
    let lab = Lab::new();
    // The gated profile waits before it binds; meanwhile another server takes the port.
    let mut switching = lab
        .cmd()
        .args([
            "switch",
            "gated",
            "--supervisor",
            "process",
            "--timeout",
            "60s",
        ])
        .spawn_ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lab.state().is_none_or(|s| s["profile"] != "gated") {
        assert!(
            std::time::Instant::now() < deadline,
            "the switch never started gated"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut decoy = lab.decoy_on_the_port();
    let done = switching.wait().unwrap();
    assert_eq!(
        done.code(),
        Some(1),
        "not ready: the answers were the decoy's"
    );
    assert!(
        lab.state().is_none(),
        "the gated server was stopped and forgotten"
    );
    assert!(
        decoy.try_wait().unwrap().is_none(),
        "the decoy is untouched"
    );
    decoy.kill().unwrap();
    decoy.wait().unwrap();
}

/// The recorded server is recognised by its port: a profile whose host changed (127.0.0.1 to
/// 0.0.0.0) is not refused as if another server held the port.
#[test]
fn a_changed_host_on_the_same_port_is_not_another_server() {
    let lab = Lab::new();
    lab.switch("good", 0);
    lab.edit_recipe(
        "  served_model_name: tiny\n",
        "  served_model_name: tiny\n  host: 0.0.0.0\n",
    );
    lab.switch("good", 0);
    lab.assert_healthy("good");
}

/// A unit that failed to start but may still come up (it is up, restarting, and cannot be
/// stopped) stays recorded: nothing is started beside it. One that is down after all is
/// forgotten, and the previous profile comes back.
#[test]
fn a_unit_that_fails_to_start_is_kept_only_while_it_may_come_up() {
    let lab = Lab::new();
    let bin = fake_systemd(&lab);
    let systemctl = std::fs::read_to_string(bin.join("systemctl")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    lab.install("prefix");
    let stop_fails = |s: &str| {
        s.replacen(
            "  stop)\n",
            "  stop)\n    case \"$2\" in *wrong-len*) exit 1;; esac\n",
            1,
        )
    };
    // Started, then reported failed (a unit in its restart loop), and it cannot be stopped.
    write_script(
        &bin.join("systemctl"),
        &stop_fails(&systemctl).replacen(
            "    echo $! > \"$d/units/$2.pid\" ;;\n",
            "    echo $! > \"$d/units/$2.pid\"\n    case \"$2\" in *wrong-len*) exit 1;; esac ;;\n",
            1,
        ),
    );
    assert_eq!(
        lab.systemd_switch(&path, "good", None).status.code(),
        Some(0)
    );
    let out = lab.systemd_switch(&path, "wrong-len", None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("could not be stopped"), "{stderr}");
    assert_eq!(lab.state().unwrap()["profile"], "wrong-len");
    assert_eq!(
        units_started(&lab),
        [
            "pinstack-standin@good.service",
            "pinstack-standin@wrong-len.service"
        ]
    );
    std::fs::write(bin.join("systemctl"), &systemctl).unwrap();
    assert_eq!(
        lab.systemd_switch(&path, "good", None).status.code(),
        Some(0)
    );

    // Refused at once (never up), and the stop refused too (no right to manage units, say):
    // nothing can come up, so it is forgotten and good is started again.
    write_script(
        &bin.join("systemctl"),
        &stop_fails(&systemctl).replacen(
            "  start)\n",
            "  start)\n    case \"$2\" in *wrong-len*) exit 1;; esac\n",
            1,
        ),
    );
    let out = lab.systemd_switch(&path, "wrong-len", None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rolled back to good"), "{stderr}");
    let state = lab.state().unwrap();
    assert_eq!(state["profile"], "good");
    assert!(!state["ready"].is_null(), "{state:#}");
    std::fs::write(bin.join("systemctl"), &systemctl).unwrap();
}

/// vLLM binds with SO_REUSEPORT: a second server of the same user can listen on the same port
/// beside pinstack's and take part of its connections. status says so, and is not healthy.
#[test]
fn a_second_server_sharing_the_port_makes_status_unhealthy() {
    let lab = Lab::new();
    lab.edit_recipe(
        "    SERVE_API_TOKEN: hunter2\n",
        "    SERVE_API_TOKEN: hunter2\n    STANDIN_REUSEPORT: '1'\n",
    );
    lab.switch("good", 0);
    lab.assert_healthy("good");
    // Bound beside it: connecting says nothing new, so wait for a second listening socket.
    let mut decoy = lab.decoy_as_good();
    let listening = |port: u16| {
        ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|t| std::fs::read_to_string(t).ok())
            .map(|t| {
                t.lines()
                    .filter(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.len() > 3 && f[3] == "0A" && f[1].ends_with(&format!(":{port:04X}"))
                    })
                    .count()
            })
            .sum::<usize>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while listening(lab.port) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the decoy never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = lab.status(1);
    assert_eq!(v["healthy"], false, "{v:#}");
    let health = v["health"].as_str().unwrap();
    assert!(health.contains(&format!("pid {}", decoy.id())), "{health}");
    decoy.kill().unwrap();
    decoy.wait().unwrap();
    lab.assert_healthy("good");
}

/// A record whose server is gone, and another server on its port: after the stop, the port
/// still answers, and nothing is started beside that server.
#[test]
fn a_port_still_answering_after_the_recorded_server_stopped_is_refused() {
    let lab = Lab::new();
    lab.switch("good", 0);
    // The recorded server dies outside pinstack, and another takes its port.
    let pid = lab.pid();
    kill_group(pid);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", lab.port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never went"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut decoy = lab.decoy_on_the_port();
    // Refused before the stop (the other server is seen on the port), or after it were it not.
    let stderr = lab.switch("good", 3);
    assert!(
        stderr.contains("is shared") || stderr.contains("still answers after the recorded server"),
        "{stderr}"
    );
    assert!(
        decoy.try_wait().unwrap().is_none(),
        "the other server is untouched"
    );
    decoy.kill().unwrap();
    decoy.wait().unwrap();
}

/// SIGKILL to a process group, as a crash would end it.
fn kill_group(pgid: u64) {
    let status = StdCommand::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Under systemd a rollback starts the unit, which runs its installed files: what ran, unless
/// installed again since. Its readiness is judged by the record, not by a recipe edited since.
#[test]
fn under_systemd_a_rollback_is_judged_by_what_ran() {
    let lab = Lab::new();
    let bin = fake_systemd(&lab);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    lab.install("prefix");
    assert_eq!(
        lab.systemd_switch(&path, "good", None).status.code(),
        Some(0)
    );
    // good's context edited in the recipe, not installed: the unit still serves 4096.
    lab.edit_recipe(
        "  good:\n    status: production\n",
        "  good:\n    status: production\n    max_model_len: 2048\n",
    );
    let out = lab.systemd_switch(&path, "wrong-len", None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rolled back to good"), "{stderr}");
    assert!(!stderr.contains("ROLLBACK FAILED"), "{stderr}");
}

/// A listener on another address with the same port number (`::1` beside `127.0.0.1`) takes
/// none of the server's connections: not a sharer.
#[test]
fn a_listener_on_another_address_is_not_a_sharer() {
    let lab = Lab::new();
    lab.switch("good", 0);
    let v6 = StdCommand::new("python3")
        .args([
            "-c",
            "import socket, sys, time\n\
             s = socket.socket(socket.AF_INET6)\n\
             s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n\
             s.bind(('::1', int(sys.argv[1])))\n\
             s.listen()\n\
             print('listening', flush=True)\n\
             time.sleep(60)",
            &lab.port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut v6) = v6 else { return };
    lab.extra.borrow_mut().push(v6.id());
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(v6.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.trim() != "listening" {
        // No IPv6 loopback here: nothing to test.
        return;
    }
    lab.assert_healthy("good");
    v6.kill().unwrap();
    v6.wait().unwrap();
}

/// Our recorded server on the port, and another sharing it (SO_REUSEPORT): the switch to a
/// profile on that port is refused while ours still serves, not after it was stopped.
#[test]
fn a_shared_port_is_refused_before_the_recorded_server_stops() {
    let lab = Lab::new();
    lab.edit_recipe(
        "    SERVE_API_TOKEN: hunter2\n",
        "    SERVE_API_TOKEN: hunter2\n    STANDIN_REUSEPORT: '1'\n",
    );
    lab.switch("good", 0);
    let serving = lab.pid();
    let mut decoy = lab.decoy_as_good();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let healthy = || {
        let out = lab.run(&["--json", "status"]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["healthy"] == true
    };
    while healthy() {
        assert!(
            std::time::Instant::now() < deadline,
            "the decoy never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stderr = lab.switch("wrong-len", 3);
    assert!(
        stderr.contains("is shared") && stderr.contains("nothing was stopped"),
        "{stderr}"
    );
    assert_eq!(lab.pid(), serving, "the recorded server still serves");
    assert!(alive(serving));
    assert!(decoy.try_wait().unwrap().is_none());
    decoy.kill().unwrap();
    decoy.wait().unwrap();
}
