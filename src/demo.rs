//! `pinstack demo`: the source pipeline of a real bring-up, on small repositories made on the spot.
//!
//! It builds three upstreams with real history (an engine like vLLM, a kernels repo like
//! llm-scaler whose bundle is rooted in a subfolder, and a lab repo that carries the engine's
//! bundle), packs bundles from real diffs, writes a pins.yaml, and runs the same commands a
//! bring-up runs: fetch, apply, check, lock. Then it bumps a pin the way upstream moves on and
//! shows what `check` says. No network, no hardware.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use git2::{
    Commit, DiffFindOptions, DiffOptions, Index, IndexEntry, IndexTime, Oid, Repository, Signature,
    Tree,
};

use crate::bundle;
use crate::commands;
use crate::engine::UpOptions;
use crate::exit::ExitStatus;
use crate::output::Printer;
use crate::run::{Globals, StatusOptions, Supervisor, SwitchOptions};

/// A file in a demo commit: its path, its bytes (`None` deletes it) and whether it is executable.
struct File<'a> {
    path: String,
    content: Option<&'a [u8]>,
    executable: bool,
}

fn file<'a>(path: impl Into<String>, content: &'a [u8]) -> File<'a> {
    File {
        path: path.into(),
        content: Some(content),
        executable: false,
    }
}

fn deleted(path: impl Into<String>) -> File<'static> {
    File {
        path: path.into(),
        content: None,
        executable: false,
    }
}

/// Runs the demo in `dir` (which must be empty or absent), or in a temporary folder.
pub fn run(p: &Printer, dir: Option<&Path>) -> Result<ExitStatus> {
    let temp;
    let root: PathBuf = match dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                bail!(crate::exit::UsageError(format!(
                    "{}: the demo folder must be empty or absent",
                    d.display()
                )));
            }
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.to_owned()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("pinstack-demo-")
                .tempdir()?;
            temp.path().to_owned()
        }
    };
    let root = root.canonicalize()?;
    p.note(&format!("pinstack demo in {}", root.display()));
    let stack = Stack::build(&root)?;
    let globals = Globals {
        pins: root.join("pins.yaml"),
        workspace: Some(root.join("workspace")),
        recipe: root.join("recipe.yaml"),
        cache: root.join("cache"),
        json: false,
        quiet: false,
    };
    std::fs::write(&globals.pins, stack.pins_yaml(None))?;

    let mut status = ExitStatus::Success;
    let mut step = |result: Result<ExitStatus>| -> Result<()> {
        let s = result?;
        status = status.worst(s);
        p.out(&format!("    -> exit {}\n", s.code()))?;
        Ok(())
    };
    banner(
        p,
        "pinstack fetch",
        "each repo at its pinned commit, detached",
    )?;
    step(commands::source::fetch(p, &globals, &[]))?;
    banner(
        p,
        "pinstack check",
        "CI: every bundle applies to its pin, in memory",
    )?;
    step(commands::source::check(p, &globals, &[], false, None))?;
    banner(
        p,
        "pinstack apply",
        "verify both hashes, place paths, apply atomically",
    )?;
    step(commands::source::apply(p, &globals, &[], false))?;
    banner(
        p,
        "pinstack apply (again)",
        "idempotent: a patched tree is left alone",
    )?;
    step(commands::source::apply(p, &globals, &[], false))?;
    banner(
        p,
        "pinstack lock",
        "record each repo's tree after its bundles",
    )?;
    step(commands::source::lock(p, &globals, false))?;
    banner(
        p,
        "pinstack check --offline",
        "from the cache alone, against the lock",
    )?;
    step(commands::source::check(p, &globals, &[], true, None))?;

    // Upstream moves on: pinning the newer engine commit breaks the bundle, and check says why.
    let moved = root.join("pins-moved.yaml");
    std::fs::write(&moved, stack.pins_yaml(Some(&stack.engine_next)))?;
    let moved_globals = Globals {
        pins: moved,
        ..globals.clone()
    };
    banner(
        p,
        "pinstack --pins pins-moved.yaml check engine",
        "a pin bumped past the bundle's context: found, and explained",
    )?;
    let moved_status =
        commands::source::check(p, &moved_globals, &["engine".to_owned()], false, None)?;
    p.out(&format!(
        "    -> exit {} (expected: the bundle must be regenerated)\n",
        moved_status.code()
    ))?;
    if moved_status != ExitStatus::NotAsPinned {
        bail!("the demo's moved pin should not check clean");
    }
    // The recipe engine: sources, a Python environment, a native extension built from the
    // pinned, patched source, and a smoke test that fails once and is resumed.
    let recipe_globals = Globals {
        recipe: root.join("recipe.yaml"),
        ..globals.clone()
    };
    let port = free_port()?;
    std::fs::write(
        &recipe_globals.recipe,
        format!(
            "{DEMO_RECIPE}{}",
            DEMO_SERVING.replace("PORT", &port.to_string())
        ),
    )?;
    banner(
        p,
        "pinstack up recipe.yaml",
        "the engine: each step runs once, checkpointed; this first run fails on purpose",
    )?;
    let first = commands::recipe::up(p, &recipe_globals, &UpOptions::default())?;
    p.out(&format!(
        "    -> exit {} (expected: the smoke step fails on its first run)\n",
        first.code()
    ))?;
    if first != ExitStatus::Failed {
        bail!("the demo recipe's first run should stop at its staged failure");
    }
    banner(
        p,
        "pinstack up recipe.yaml (again)",
        "resumed: the steps that are done are skipped, the failed one runs",
    )?;
    step(commands::recipe::up(
        p,
        &recipe_globals,
        &UpOptions::default(),
    ))?;
    banner(p, "pinstack plan recipe.yaml", "every step done")?;
    step(commands::recipe::plan(p, &recipe_globals))?;
    banner(p, "pinstack logs smoke", "the step's full output")?;
    step(commands::recipe::logs(p, &recipe_globals, "smoke", false))?;

    // Ready to serve: a tiny OpenAI-compatible stand-in takes the place of vLLM.
    let venv_bin = root.join("workspace/venv/bin");
    std::fs::create_dir_all(&venv_bin)?;
    let standin = venv_bin.join("vllm");
    std::fs::write(&standin, STANDIN_SERVER)?;
    std::fs::set_permissions(
        &standin,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let prefix = root.join("install-root");
    let user = std::env::var("USER").unwrap_or_else(|_| "root".to_owned());
    banner(
        p,
        "pinstack install-service --prefix install-root",
        "a launcher, one env file per profile and a systemd unit, with a manifest",
    )?;
    step(commands::install::install_service(
        p,
        &recipe_globals,
        &prefix,
        Some(&user),
    ))?;
    let switch = |profile: &str, allow_experimental: bool| {
        commands::switch::switch(
            p,
            &recipe_globals,
            &SwitchOptions {
                profile: profile.to_owned(),
                supervisor: Supervisor::Process,
                allow_experimental,
                timeout: Some(std::time::Duration::from_secs(60)),
                prefix: prefix.clone(),
            },
        )
    };
    banner(
        p,
        "pinstack switch c1 --supervisor process",
        "start a profile and wait until /v1/models and the smoke completion answer",
    )?;
    step(switch("c1", false))?;
    banner(
        p,
        "pinstack switch c2 --supervisor process",
        "stop the server pinstack owns, start another profile",
    )?;
    step(switch("c2", false))?;
    banner(
        p,
        "pinstack switch broken --allow-experimental --supervisor process",
        "a profile that reports the wrong context length: the switch rolls back",
    )?;
    // The failed switch is the point here: its error is shown, not raised.
    let broken = match switch("broken", true) {
        Ok(s) => s,
        Err(e) => {
            p.out(&format!("    error: {e:#}"))?;
            crate::exit::classify(&e)
        }
    };
    p.out(&format!(
        "    -> exit {} (expected: rolled back to c2, which serves again)\n",
        broken.code()
    ))?;
    if broken == ExitStatus::Success {
        bail!("the demo's broken profile should not pass its readiness check");
    }
    let status_opts = StatusOptions {
        tail: Some(3),
        prefix: prefix.clone(),
    };
    banner(
        p,
        "pinstack status --tail 3",
        "what runs, and whether it matches its profile",
    )?;
    step(commands::switch::status(p, &recipe_globals, &status_opts))?;
    commands::switch::stop_owned_server(&recipe_globals, &prefix)?;

    p.out(&format!(
        "demo finished: {} (files kept in {})",
        if status == ExitStatus::Success {
            "all as pinned"
        } else {
            "problems found"
        },
        if dir.is_some() {
            root.display().to_string()
        } else {
            "a temporary folder, now removed".to_owned()
        }
    ))?;
    Ok(status)
}

fn banner(p: &Printer, command: &str, what: &str) -> Result<()> {
    p.out(&format!("==> {command}\n    {what}"))?;
    Ok(())
}

/// The demo's upstreams and bundles.
struct Stack {
    root: PathBuf,
    engine_pin: Oid,
    engine_next: Oid,
    kernels_pin: Oid,
    lab_pin: Oid,
    engine_bundle: Vec<u8>,
    engine_bundle_path: &'static str,
    kernels_bundle: Vec<u8>,
}

const KERNELS_BASE: &str = "vllm/custom-esimd-kernels-vllm";
const MOE_CONFIG: &str = "engine/layers/fused_moe/configs/E=256,N=384,device_name=Intel(R)_Graphics_[0xe223],dtype=int4_w4a16.json";

impl Stack {
    fn build(root: &Path) -> Result<Stack> {
        let up = root.join("upstream");
        // The engine: a pinned commit with history before and after it; the lab's change is a
        // commit on a side branch, and the bundle is its diff.
        let engine = Repository::init(up.join("engine"))?;
        let e1 = commit(
            &engine,
            None,
            &[
                file("README.md", b"# engine\n"),
                file("engine/envs.py", ENVS_V1.as_bytes()),
                file("engine/platforms/xpu.py", XPU_V1.as_bytes()),
                file("csrc/fastmath.c", FASTMATH_V1.as_bytes()),
            ],
            "engine: first import",
        )?;
        let e2 = commit(
            &engine,
            Some(e1),
            &[file("engine/envs.py", ENVS_V2.as_bytes())],
            "engine: more environment switches",
        )?;
        let lab_work = commit(
            &engine,
            Some(e2),
            &[
                file("engine/envs.py", ENVS_PATCHED.as_bytes()),
                file("engine/platforms/xpu.py", XPU_PATCHED.as_bytes()),
                file(MOE_CONFIG, MOE_JSON.as_bytes()),
                file("csrc/fastmath.c", FASTMATH_PATCHED.as_bytes()),
            ],
            "lab: MoE tuning for the B70",
        )?;
        let e3 = commit(
            &engine,
            Some(e2),
            &[file("engine/envs.py", ENVS_V3.as_bytes())],
            "engine: upstream reworks the switches",
        )?;
        set_branch(&engine, "main", e3)?;
        set_branch(&engine, "lab-work", lab_work)?;
        let engine_diff = diff_commits(&engine, e2, lab_work, None)?;

        // The kernels: the bundle is rooted in a subfolder (base_dir), renames a file and adds
        // a binary one.
        let kernels = Repository::init(up.join("kernels"))?;
        let k1 = commit(
            &kernels,
            None,
            &[
                file("README.md", b"# kernels\n"),
                file(
                    format!("{KERNELS_BASE}/setup_moe_int4_only.py"),
                    SETUP_V1.as_bytes(),
                ),
                file(
                    format!("{KERNELS_BASE}/csrc/moe_int4.sycl"),
                    SYCL_V1.as_bytes(),
                ),
                file(format!("{KERNELS_BASE}/python/ops_old.py"), OPS.as_bytes()),
            ],
            "kernels: import",
        )?;
        let k2_files = [
            file(
                format!("{KERNELS_BASE}/setup_moe_int4_only.py"),
                SETUP_PATCHED.as_bytes(),
            ),
            deleted(format!("{KERNELS_BASE}/python/ops_old.py")),
            file(format!("{KERNELS_BASE}/python/ops.py"), OPS.as_bytes()),
            File {
                path: format!("{KERNELS_BASE}/tables/router.bin"),
                content: Some(&ROUTER_TABLE),
                executable: false,
            },
            File {
                path: format!("{KERNELS_BASE}/build.sh"),
                content: Some(
                    b"#!/bin/sh\nexec python setup_moe_int4_only.py build_ext --inplace\n",
                ),
                executable: true,
            },
        ];
        let k2 = commit(&kernels, Some(k1), &k2_files, "lab: router tables")?;
        set_branch(&kernels, "main", k1)?;
        set_branch(&kernels, "lab-work", k2)?;
        let kernels_diff = diff_commits(&kernels, k1, k2, Some(KERNELS_BASE))?;

        // The lab repo carries the engine's bundle, as the real lab repository does.
        let engine_bundle = bundle::encode(&engine_diff);
        let engine_bundle_path = "repro/patches/engine-promoted.patch.gz.b64";
        let lab = Repository::init(up.join("lab"))?;
        let l1 = commit(
            &lab,
            None,
            &[
                file("README.md", b"# lab\n"),
                file(engine_bundle_path, &engine_bundle),
            ],
            "lab: promote the engine bundle",
        )?;
        set_branch(&lab, "main", l1)?;

        let kernels_bundle = bundle::encode(&kernels_diff);
        let patches = root.join("patches");
        std::fs::create_dir_all(&patches)?;
        std::fs::write(
            patches.join("kernels-promoted.patch.gz.b64"),
            &kernels_bundle,
        )?;
        Ok(Stack {
            root: root.to_owned(),
            engine_pin: e2,
            engine_next: e3,
            kernels_pin: k1,
            lab_pin: l1,
            engine_bundle,
            engine_bundle_path,
            kernels_bundle,
        })
    }

    fn pins_yaml(&self, engine_commit: Option<&Oid>) -> String {
        let up = self.root.join("upstream");
        let hashes = |encoded: &[u8]| {
            let diff = bundle::decode(encoded).expect("the demo's own bundle decodes");
            (bundle::sha256_hex(encoded), bundle::sha256_hex(&diff))
        };
        let (e_sha, e_diff) = hashes(&self.engine_bundle);
        let (k_sha, k_diff) = hashes(&self.kernels_bundle);
        format!(
            "# pinstack demo: three repositories at exact commits, two bundles.\n\
             repos:\n  \
               engine:\n    \
                 url: {engine}\n    \
                 commit: {engine_commit}\n    \
                 patches:\n      \
                   # read from the lab repo at its pinned commit\n      \
                   - bundle: lab:{engine_bundle}\n        \
                     sha256: {e_sha}\n        \
                     diff_sha256: {e_diff}\n  \
               kernels:\n    \
                 url: {kernels}\n    \
                 commit: {kernels_pin}\n    \
                 patches:\n      \
                   - bundle: patches/kernels-promoted.patch.gz.b64\n        \
                     sha256: {k_sha}\n        \
                     diff_sha256: {k_diff}\n        \
                     base_dir: {KERNELS_BASE}\n  \
               lab:\n    \
                 url: {lab}\n    \
                 commit: {lab_pin}\n",
            engine = up.join("engine").display(),
            engine_commit = engine_commit.unwrap_or(&self.engine_pin),
            engine_bundle = self.engine_bundle_path,
            kernels = up.join("kernels").display(),
            kernels_pin = self.kernels_pin,
            lab = up.join("lab").display(),
            lab_pin = self.lab_pin,
        )
    }
}

fn signature() -> Result<Signature<'static>> {
    // A fixed time keeps the demo's commit ids the same from run to run.
    Ok(Signature::new(
        "pinstack demo",
        "demo@pinstack.invalid",
        &git2::Time::new(1_779_000_000, 0),
    )?)
}

/// Commits `files` on top of `parent` (without touching any branch or work tree).
fn commit(
    repo: &Repository,
    parent: Option<Oid>,
    files: &[File<'_>],
    message: &str,
) -> Result<Oid> {
    let mut index = Index::new()?;
    let parent = parent.map(|id| repo.find_commit(id)).transpose()?;
    if let Some(p) = &parent {
        index.read_tree(&p.tree()?)?;
    }
    for f in files {
        match f.content {
            Some(bytes) => {
                let entry = IndexEntry {
                    ctime: IndexTime::new(0, 0),
                    mtime: IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode: if f.executable { 0o100755 } else { 0o100644 },
                    uid: 0,
                    gid: 0,
                    file_size: bytes.len() as u32,
                    id: repo.blob(bytes)?,
                    flags: 0,
                    flags_extended: 0,
                    path: f.path.as_bytes().to_vec(),
                };
                index.add(&entry)?;
            }
            None => index.remove_path(Path::new(&f.path))?,
        }
    }
    let tree_id = index.write_tree_to(repo)?;
    let tree = repo.find_tree(tree_id)?;
    let sig = signature()?;
    let parents: Vec<&Commit<'_>> = parent.iter().collect();
    Ok(repo.commit(None, &sig, &sig, message, &tree, &parents)?)
}

fn set_branch(repo: &Repository, name: &str, id: Oid) -> Result<()> {
    repo.reference(&format!("refs/heads/{name}"), id, true, "pinstack demo")?;
    if name == "main" {
        repo.set_head("refs/heads/main")?;
    }
    Ok(())
}

/// `git diff --binary` between two commits, optionally of one subfolder (paths relative to it).
fn diff_commits(repo: &Repository, from: Oid, to: Oid, subdir: Option<&str>) -> Result<Vec<u8>> {
    let tree = |id: Oid| -> Result<Tree<'_>> {
        let t = repo.find_commit(id)?.tree()?;
        Ok(match subdir {
            Some(d) => repo.find_tree(t.get_path(Path::new(d))?.id())?,
            None => t,
        })
    };
    let mut opts = DiffOptions::new();
    opts.show_binary(true);
    let mut diff = repo.diff_tree_to_tree(Some(&tree(from)?), Some(&tree(to)?), Some(&mut opts))?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true)))?;
    Ok(crate::git::print_patch(&diff)?)
}

const ENVS_V1: &str = "\
import os

environment_variables = {
    \"VLLM_USE_V1\": lambda: os.getenv(\"VLLM_USE_V1\", \"1\"),
    \"VLLM_XPU_ENABLE_XPU_GRAPH\": lambda: os.getenv(\"VLLM_XPU_ENABLE_XPU_GRAPH\", \"0\"),
}
";

const ENVS_V2: &str = "\
import os

environment_variables = {
    \"VLLM_USE_V1\": lambda: os.getenv(\"VLLM_USE_V1\", \"1\"),
    \"VLLM_XPU_ENABLE_XPU_GRAPH\": lambda: os.getenv(\"VLLM_XPU_ENABLE_XPU_GRAPH\", \"0\"),
    \"VLLM_WORKER_MULTIPROC_METHOD\": lambda: os.getenv(\"VLLM_WORKER_MULTIPROC_METHOD\", \"fork\"),
}
";

const ENVS_PATCHED: &str = "\
import os

environment_variables = {
    \"VLLM_USE_V1\": lambda: os.getenv(\"VLLM_USE_V1\", \"1\"),
    \"VLLM_XPU_ENABLE_XPU_GRAPH\": lambda: os.getenv(\"VLLM_XPU_ENABLE_XPU_GRAPH\", \"0\"),
    \"VLLM_XPU_USE_LLM_SCALER_MOE\": lambda: os.getenv(\"VLLM_XPU_USE_LLM_SCALER_MOE\", \"0\"),
    \"VLLM_WORKER_MULTIPROC_METHOD\": lambda: os.getenv(\"VLLM_WORKER_MULTIPROC_METHOD\", \"fork\"),
}
";

const ENVS_V3: &str = "\
import os

# Upstream reworked how switches are declared.
environment_variables: dict = {
    \"VLLM_USE_V1\": lambda: os.getenv(\"VLLM_USE_V1\", \"1\"),
    \"VLLM_XPU_ENABLE_XPU_GRAPH\": lambda: os.getenv(\"VLLM_XPU_ENABLE_XPU_GRAPH\", \"1\"),
    \"VLLM_WORKER_MULTIPROC_METHOD\": lambda: os.getenv(\"VLLM_WORKER_MULTIPROC_METHOD\", \"spawn\"),
}
";

const XPU_V1: &str = "\
class XPUPlatform:
    device_type = \"xpu\"

    def graph_enabled(self):
        return True
";

const XPU_PATCHED: &str = "\
import os


class XPUPlatform:
    device_type = \"xpu\"

    def graph_enabled(self):
        return os.getenv(\"VLLM_XPU_ENABLE_XPU_GRAPH\", \"0\") == \"1\"
";

const MOE_JSON: &str = "{\n  \"1\": {\"BLOCK_SIZE_M\": 16, \"BLOCK_SIZE_N\": 64}\n}";

const SETUP_V1: &str = "\
from setuptools import setup

setup(name=\"custom_esimd_kernels_vllm\", ext_modules=[])
";

const SETUP_PATCHED: &str = "\
from setuptools import setup

# Only the int4 MoE kernel is built for the B70.
setup(name=\"custom_esimd_kernels_vllm\", ext_modules=[\"moe_int4_ops\"])";

const SYCL_V1: &str = "// moe_int4 kernel\nvoid moe_int4() {}\n";

const OPS: &str = "def moe_int4(x):\n    return x\n";

const ROUTER_TABLE: [u8; 16] = [0, 1, 2, 3, 0xff, 0xfe, 0, 0, 7, 0, 0x80, 0x81, 9, 9, 0, 1];

const FASTMATH_V1: &str = "\
/* A kernel the engine loads at run time. */
int add_one(int x) { return x; }
";

const FASTMATH_PATCHED: &str = "\
/* A kernel the engine loads at run time. */
int add_one(int x) { return x + 1; }
";

/// The demo's recipe: what a bring-up recipe looks like, on the demo stack.
const DEMO_RECIPE: &str = r#"# pinstack demo recipe: sources, a Python environment, a native extension built from the
# pinned, patched source, and a smoke test.
name: demo
description: The demo stack through the recipe engine.
pins: pins.yaml
env:
  CFLAGS: -O2 -fPIC
steps:
  - id: sources
    title: fetch the pins and apply their bundles
    uses: sources

  - id: python
    title: a Python environment
    run: |
      if python3 -m venv --without-pip venv 2>/dev/null; then
        echo "venv made with $(python3 --version)"
      else
        mkdir -p venv/bin
        printf '#!/bin/sh\nexec python3 "$@"\n' > venv/bin/python
        chmod +x venv/bin/python
        echo "this python3 has no venv module: using a plain wrapper"
      fi

  - id: native
    title: build the engine's native extension from its pinned, patched source
    needs: [sources, python]
    inputs: ["${workspace}/src/engine/csrc"]
    run: |
      mkdir -p venv/lib
      cc $CFLAGS -shared -o venv/lib/libfastmath.so src/engine/csrc/fastmath.c
      echo "built venv/lib/libfastmath.so"

  - id: smoke
    title: load the extension and call it
    timeout: 5m
    run: |
      if [ ! -e .smoke-tried ]; then
        touch .smoke-tried
        echo "the device is not ready yet (a failure the demo stages on the first run)" >&2
        exit 1
      fi
      venv/bin/python - <<'PY'
      import ctypes
      lib = ctypes.CDLL("venv/lib/libfastmath.so")
      result = lib.add_one(41)
      print("add_one(41) =", result)
      assert result == 42, "the bundle's fix is not in the build"
      PY
"#;

/// A free TCP port on loopback for the demo's server.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The demo recipe's serving part: PORT is replaced by a free port.
const DEMO_SERVING: &str = r#"
serve:
  model: ${workspace}/models/demo-model
  served_model_name: demo-model
  venv: ${workspace}/venv
  host: 127.0.0.1
  port: PORT
  max_model_len: 4096
  env:
    PATH: /usr/local/bin:/usr/bin:/bin
    DEMO_WATCH: ${workspace}
  flags:
    --max-num-seqs: 1
  ready_timeout: 60s
profiles:
  c1:
    status: production
    description: one sequence
  c2:
    status: known-good
    description: two sequences
    flags:
      --max-num-seqs: 2
  broken:
    status: experimental
    description: reports the wrong context length (staged by the demo)
    env:
      DEMO_STANDIN: wrong-len
"#;

/// A tiny OpenAI-compatible server standing in for `vllm serve`. It exits by itself when the
/// demo's workspace disappears, or after ten minutes.
const STANDIN_SERVER: &str = r#"#!/usr/bin/env python3
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
if args[:2] == ["serve", "--help"]:
    print("usage: vllm serve MODEL [options]\n  --host\n  --port\n  --max-model-len\n  --served-model-name\n  --max-num-seqs")
    sys.exit(0)
model, opts, i = args[1], {}, 2
while i < len(args):
    if i + 1 < len(args) and not args[i + 1].startswith("--"):
        opts[args[i]] = args[i + 1]; i += 2
    else:
        opts[args[i]] = True; i += 1
served = opts.get("--served-model-name", model)
length = int(opts.get("--max-model-len", 2048))
reported = length // 2 if os.environ.get("DEMO_STANDIN") == "wrong-len" else length

def watchdog():
    until = time.time() + 600
    while os.path.exists(os.environ.get("DEMO_WATCH", "/")) and time.time() < until:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watchdog, daemon=True).start()

class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *a):
        print("standin: " + fmt % a, flush=True)
    def answer(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/v1/models":
            return self.answer({"object": "list", "data": [{"id": served, "max_model_len": reported}]})
        self.answer({})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer({"choices": [{"index": 0, "text": " 42", "finish_reason": "stop"}]})

print(f"standin: serving {served} ({opts.get('--max-num-seqs')} sequences, max_model_len {reported})", flush=True)
server = ThreadingHTTPServer((opts.get("--host", "127.0.0.1"), int(opts["--port"])), Handler)
server.daemon_threads = True
try:
    server.serve_forever(poll_interval=0.1)
except KeyboardInterrupt:
    print("standin: stopping", flush=True)
"#;
