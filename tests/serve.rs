//! Serving profiles: resolution over the base, values from the recipe only, flags checked
//! against the installed vLLM's own help.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::harness::Fixture;

const RECIPE: &str = "\
name: serving
vars:
  venv: ${workspace}/venv
  host: ${env:SERVE_HOST:-127.0.0.1}
steps:
  - id: nothing
    run: 'true'
serve:
  model: /models/base
  venv: ${venv}
  host: ${host}
  port: 18080
  max_model_len: 32768
  env_files: [serve.env]
  env:
    FROM_BASE: base
    OVERRIDDEN: base
  flags:
    --dtype: float16
    --tensor-parallel-size: 4
    --no-enable-prefix-caching: true
    --compilation-config: '{\"a\":1}'
  smoke: { prompt: 'Say 7:', expect: '7' }
  ready_timeout: 5m
profiles:
  one:
    status: production
    source_state: promoted
  two:
    status: known-good
    env: { OVERRIDDEN: profile }
    flags:
      --max-num-seqs: 2
      --no-enable-prefix-caching: false
      --enable-prefix-caching: true
  three:
    status: experimental
    model: /models/other
    served_model_name: other
    max_model_len: 8192
    flags:
      --async-engine: true
";

fn fixture() -> Fixture {
    let fx = Fixture::new();
    fx.write("recipe.yaml", RECIPE);
    fx.write("serve.env", "# comment\nFROM_FILE=file\nOVERRIDDEN=file\n");
    fx
}

fn profiles(fx: &Fixture) -> Vec<Value> {
    let v = fx.json(&["--recipe", "recipe.yaml", "profile", "list"], 0);
    v["profiles"].as_array().unwrap().clone()
}

fn env(p: &Value) -> Vec<(String, String)> {
    p["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn command(p: &Value) -> Vec<String> {
    p["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn profiles_resolve_over_the_base() {
    let fx = fixture();
    let ps = profiles(&fx);
    let names: Vec<&str> = ps.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["one", "two", "three"]);
    let statuses: Vec<&str> = ps.iter().map(|p| p["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["production", "known-good", "experimental"]);

    let venv = fx.path("workspace/venv").display().to_string();
    let one = &ps[0];
    assert_eq!(
        command(one),
        [
            format!("{venv}/bin/vllm").as_str(),
            "serve",
            "/models/base",
            "--host",
            "127.0.0.1",
            "--port",
            "18080",
            "--max-model-len",
            "32768",
            "--dtype",
            "float16",
            "--tensor-parallel-size",
            "4",
            "--no-enable-prefix-caching",
            "--compilation-config",
            "{\"a\":1}",
        ]
    );
    assert_eq!(one["model_id"], "/models/base");
    assert_eq!(one["base_url"], "http://127.0.0.1:18080");
    assert_eq!(one["smoke"]["prompt"], "Say 7:");
    assert_eq!(one["ready_timeout_s"], 300);
    assert_eq!(one["source_state"], "promoted");
    assert_eq!(
        env(one),
        [
            ("FROM_FILE".into(), "file".into()),
            ("OVERRIDDEN".into(), "base".into()),
            ("FROM_BASE".into(), "base".into()),
        ]
    );

    // A profile replaces, removes and adds flags by name, and overrides env values.
    let two = command(&ps[1]);
    assert!(
        two.windows(2).any(|w| w == ["--max-num-seqs", "2"]),
        "{two:?}"
    );
    assert!(two.contains(&"--enable-prefix-caching".to_owned()));
    assert!(!two.contains(&"--no-enable-prefix-caching".to_owned()));
    assert!(env(&ps[1]).contains(&("OVERRIDDEN".into(), "profile".into())));

    let three = &ps[2];
    assert_eq!(three["model_id"], "other");
    assert_eq!(three["max_model_len"], 8192);
    let c = command(three);
    assert_eq!(c[2], "/models/other");
    assert!(
        c.windows(2).any(|w| w == ["--served-model-name", "other"]),
        "{c:?}"
    );
    assert!(
        c.windows(2).any(|w| w == ["--max-model-len", "8192"]),
        "{c:?}"
    );
}

#[test]
fn the_callers_environment_never_reaches_a_profile() {
    let fx = fixture();
    let before = profiles(&fx);
    // Variables a lab script would have read: they change nothing.
    let out = fx
        .pinstack()
        .env("VLLM_MAX_NUM_SEQS", "8")
        .env("FROM_BASE", "caller")
        .args(["--json", "--recipe", "recipe.yaml", "profile", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let after: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(after["profiles"].as_array().unwrap(), &before);

    // A value that would come from the caller is refused, naming the place.
    let out = fx
        .pinstack()
        .env("SERVE_HOST", "0.0.0.0")
        .args(["--recipe", "recipe.yaml", "profile", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("recipe.yaml:") && err.contains("caller's environment"),
        "{err}"
    );
}

/// A stand-in `vllm` whose `serve --help=all` lists `help`, as a current vLLM's does (its plain
/// `--help` lists only the groups of flags).
fn fake_vllm(fx: &Fixture, help: &str) {
    fake_vllm_script(
        fx,
        &format!(
            "case \"$1 $2\" in\n\
             'serve --help=all') cat <<'HELP'\n{help}\nHELP\n;;\n\
             'serve --help') echo 'usage: vllm serve [model_tag] [options]'; \
             echo 'Config Groups: ModelConfig, CacheConfig'; \
             echo 'Use `--help=all` to show all available flags at once.';;\n\
             *) exit 9;;\nesac"
        ),
    );
}

/// `profile show NAME --check-flags` of the fixture's recipe.
fn args(name: &str) -> Vec<&str> {
    vec![
        "--recipe",
        "recipe.yaml",
        "profile",
        "show",
        name,
        "--check-flags",
    ]
}

fn fake_vllm_script(fx: &Fixture, body: &str) {
    let bin = fx.path("workspace/venv/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let vllm = bin.join("vllm");
    std::fs::write(&vllm, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&vllm, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn flags_are_checked_against_the_installed_vllm() {
    let fx = fixture();
    fake_vllm(
        &fx,
        "usage: vllm serve [model_tag] [options]\n  --host HOST\n  --port PORT\n  \
         --max-model-len MAX_MODEL_LEN\n  --served-model-name NAME\n  --dtype {auto,float16}\n  \
         --tensor-parallel-size, -tp N\n  --enable-prefix-caching, --no-enable-prefix-caching\n  \
         --compilation-config, -O CONFIG\n  --max-num-seqs N",
    );
    let ok = fx.pinstack().args(args("two")).output().unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The lab's stale flag is found before anything is stopped.
    let out = fx.pinstack().args(args("three")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--async-engine"));
    let v = fx.json(
        &[
            "--recipe",
            "recipe.yaml",
            "profile",
            "show",
            "three",
            "--check-flags",
        ],
        1,
    );
    assert_eq!(v["unknown_flags"], serde_json::json!(["--async-engine"]));
}

#[test]
fn flags_are_checked_against_a_vllm_from_before_grouped_help() {
    // Its argparse refuses `--help=all`; its plain `--help` lists every flag, some written
    // with underscores (vLLM takes both).
    let fx = fixture();
    fake_vllm_script(
        &fx,
        "case \"$1 $2\" in\n\
         'serve --help') cat <<'HELP'\n\
         usage: vllm serve [model_tag] [options]\n  --host HOST\n  --port PORT\n  \
         --max_model_len MAX_MODEL_LEN\n  --served-model-name NAME\n  --dtype DTYPE\n  \
         --tensor-parallel-size N\n  --enable-prefix-caching, --no-enable-prefix-caching\n  \
         --compilation-config CONFIG\n  --max-num-seqs N\nHELP\n;;\n\
         'serve --help=all') echo 'error: argument -h/--help: ignored explicit argument' >&2; \
         exit 2;;\n\
         *) exit 9;;\nesac",
    );
    let check = |name: &str, code: i32| fx.json(&args(name), code);
    assert_eq!(check("two", 0)["unknown_flags"], serde_json::json!([]));
    assert_eq!(
        check("three", 1)["unknown_flags"],
        serde_json::json!(["--async-engine"])
    );
}

#[test]
fn an_unknown_profile_is_a_usage_error() {
    let fx = fixture();
    let err = fx.stderr(&["--recipe", "recipe.yaml", "profile", "show", "nope"], 2);
    assert!(err.contains("one, two, three"), "{err}");
}

#[test]
fn the_production_recipe_declares_the_labs_profiles() {
    let fx = Fixture::new();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/minimax-m27-b70.yaml");
    let recipe = recipe.display().to_string();
    let v = fx.json(
        &[
            "--recipe",
            &recipe,
            "--workspace",
            "/srv/b70",
            "profile",
            "list",
        ],
        0,
    );
    let ps = v["profiles"].as_array().unwrap();
    let by_name = |n: &str| {
        ps.iter()
            .find(|p| p["name"] == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    assert_eq!(by_name("c1")["status"], "production");
    // c2 is known-good on a tree this recipe does not build.
    assert_eq!(by_name("c2")["status"], "experimental");
    assert_eq!(by_name("c4")["status"], "experimental");
    assert_eq!(by_name("c8")["status"], "experimental");
    for n in ["c1", "c2", "c4", "c8"] {
        assert_eq!(by_name(n)["max_model_len"], 32768);
    }
    // The context doctor checks and the smoke test serves is the one the profiles serve.
    let text = std::fs::read_to_string(&recipe).unwrap();
    let context: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("context: "))
        .collect();
    assert_eq!(context, ["\"32768\""], "vars: context");
    let c1 = command(by_name("c1"));
    for pair in [
        ["--dtype", "float16"],
        ["--tensor-parallel-size", "4"],
        ["--distributed-executor-backend", "mp"],
        ["--max-num-batched-tokens", "512"],
        ["--max-num-seqs", "1"],
        ["--gpu-memory-utilization", "0.95"],
        ["--block-size", "256"],
        ["--max-model-len", "32768"],
    ] {
        assert!(
            c1.windows(2).any(|w| w == pair),
            "c1 lacks {pair:?}: {c1:?}"
        );
    }
    assert!(c1.contains(&"--trust-remote-code".to_owned()));
    assert!(c1.contains(&"--no-enable-prefix-caching".to_owned()));
    assert!(!c1.iter().any(|a| a == "--async-engine"));
    let c2 = command(by_name("c2"));
    assert!(c2.windows(2).any(|w| w == ["--kv-offloading-size", "16"]));
    assert!(c2.contains(&"--no-scheduler-reserve-full-isl".to_owned()));
    let env1 = env(by_name("c1"));
    let get = |k: &str| env1.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("ZE_AFFINITY_MASK").as_deref(), Some("0,1,2,3"));
    assert_eq!(
        get("ONEAPI_DEVICE_SELECTOR"),
        None,
        "only the affinity mask"
    );
    assert_eq!(get("FI_PROVIDER").as_deref(), Some("tcp"));
    assert_eq!(
        get("VLLM_WORKER_MULTIPROC_METHOD").as_deref(),
        Some("spawn")
    );
    assert_eq!(get("VLLM_XPU_ENABLE_XPU_GRAPH").as_deref(), Some("1"));
    let ld = get("LD_LIBRARY_PATH").unwrap();
    let parts: Vec<&str> = ld.split(':').collect();
    assert!(
        parts[0].ends_with("vllm-xpu-kernels/vllm_xpu_kernels"),
        "{ld}"
    );
    assert!(parts[1].ends_with("venv/lib"), "{ld}");
    assert!(parts[2].ends_with("torch/lib"), "{ld}");
    assert!(parts[3].ends_with("compiler/2025.3/lib"), "{ld}");
    let gemma = by_name("gemma4-12b-it-int4-autoround-c8");
    let g = command(gemma);
    assert_eq!(gemma["model_id"], "gemma4-12b-it-int4-autoround");
    assert!(g.windows(2).any(|w| w == ["--dtype", "bfloat16"]), "{g:?}");
    assert!(g.windows(2).any(|w| w == ["--max-num-seqs", "8"]), "{g:?}");
    assert!(g.contains(&"--enable-prefix-caching".to_owned()));
    assert!(!g.contains(&"--no-enable-prefix-caching".to_owned()));
}

#[test]
fn an_api_key_flag_is_refused_and_its_env_is_masked() {
    // On the command line, a key is every local user's to read (ps) and lands in a
    // world-readable args file: the recipe says VLLM_API_KEY instead.
    let fx = fixture();
    let flagged = RECIPE.replace(
        "    flags:\n      --async-engine: true\n",
        "    flags:\n      --api-key: sk-hunter2\n",
    );
    fx.write("recipe.yaml", flagged);
    let err = fx.stderr(&["--recipe", "recipe.yaml", "profile", "list"], 2);
    assert!(
        err.contains("recipe.yaml:") && err.contains("VLLM_API_KEY"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    // vLLM reads `_` and `-` alike: so does the refusal.
    let underscored = RECIPE.replace(
        "    flags:\n      --async-engine: true\n",
        "    flags:\n      --api_key: sk-hunter2\n",
    );
    fx.write("recipe.yaml", underscored);
    let err = fx.stderr(&["--recipe", "recipe.yaml", "profile", "list"], 2);
    assert!(err.contains("VLLM_API_KEY"), "{err}");
    let in_env = RECIPE.replace(
        "    flags:\n      --async-engine: true\n",
        "    env: { VLLM_API_KEY: sk-hunter2 }\n",
    );
    fx.write("recipe.yaml", in_env);
    for args in [
        &["--recipe", "recipe.yaml", "profile", "show", "three"][..],
        &[
            "--recipe",
            "recipe.yaml",
            "--json",
            "profile",
            "show",
            "three",
        ][..],
    ] {
        let out = fx.pinstack().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("VLLM_API_KEY"), "{args:?}: {text}");
        assert!(!text.contains("hunter2"), "{args:?}: {text}");
    }
}
