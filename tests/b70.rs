//! The production recipe, `recipes/minimax-m27-b70.yaml`, run end to end by the real binary on a
//! fake B70 host: stand-ins for the host's programs first on `PATH` (each appends its arguments,
//! folder, recipe step and environment to a calls log), a fake root for `pinstack doctor` and
//! `/proc/meminfo`, a fake oneAPI 2025.3 folder, a small model on a fake hub, and local upstreams
//! for every pinned repository, which git reaches from the real URLs through `insteadOf`. The
//! model is three small files with a manifest of their own (`B70_MODEL_MANIFEST`): no test can
//! download or hash the real 120 GB. The tests need root, as the recipe's privileged steps do
//! (as another user they would go through sudo, whose environment reset hides the stand-ins).
//!
//! One workaround, on purpose and in plain sight: `pinstack doctor` measures the free space of
//! the real disk under the workspace (statvfs), which no fake root can change, so on a test
//! machine without 553 GB free the preflight step would always fail. Through `BASH_ENV`, the
//! preflight step's `$PINSTACK` becomes a shim that runs the real doctor against the fake root
//! and forgives its disk check only; every other check must pass or warn.

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Fixture, PatchEntry, Pin, Upstream, files_under, pins_yaml, sha256};

/// The stand-ins: one Python program, dispatched on the name it is called by.
const STANDIN: &str = r##""""Stand-ins for the programs of a B70 host, one file dispatched on the name given first.

Every call appends one JSON line to calls.jsonl beside this file: the program, its arguments,
its folder, the recipe step it ran in (from $PINSTACK_EXPORT), its environment without
secret-looking names, the sha256 of HF_TOKEN when it is set (never the token), and every file
under $TMPDIR that holds the token at that moment.
"""
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

HOST = os.path.dirname(os.path.abspath(__file__))
CONFIG = json.load(open(os.path.join(HOST, "config.json")))
REAL_PYTHON = CONFIG["python"]
SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|_KEY$")


def leaks(token):
    found = []
    tmp = os.environ.get("TMPDIR")
    if not token or not tmp or not os.path.isdir(tmp):
        return found
    for folder, _, files in os.walk(tmp):
        for name in files:
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as f:
                    if token.encode() in f.read():
                        found.append(path)
            except OSError:
                pass
    return found


def record(tool, args, **extra):
    token = os.environ.get("HF_TOKEN", "")
    env = {
        k: v
        for k, v in os.environ.items()
        if not SECRET.search(k.upper()) and not (token and token in v)
    }
    export = os.environ.get("PINSTACK_EXPORT", "")
    step = os.path.basename(export)[: -len(".export")] if export.endswith(".export") else None
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    entry = {
        "tool": tool,
        "args": args,
        "cwd": cwd,
        "step": step,
        "env": env,
        "token": hashlib.sha256(token.encode()).hexdigest() if token else None,
        "leaks": leaks(token),
    }
    entry.update(extra)
    fd = os.open(os.path.join(HOST, "calls.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


def flag(kind, name):
    """A file under <host>/<kind>/ that a test creates to make a stand-in fail or hang."""
    return os.path.join(HOST, kind, name)


def write(path, text, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)


def wrapper(tool, pass_path=False):
    me = ' "$0"' if pass_path else ""
    return f'#!/bin/sh\nexec "{REAL_PYTHON}" -S "{HOST}/standin.py" {tool}{me} "$@"\n'


# ---- apt and friends ------------------------------------------------------------------------


def apt_versions():
    out = {}
    for line in open(CONFIG["apt_versions"]):
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#"):
            out[parts[0]] = parts[1]
    return out


def apt_get(args):
    record("apt-get", args)
    print("Reading package lists... Done")
    pinned = [a for a in args if a.startswith("intel-opencl-icd=")]
    if pinned and os.path.exists(flag("past", "intel-opencl-icd")) \
            and "--allow-downgrades" not in args:
        # The host already runs a newer driver than the recorded one.
        print(f"The following packages will be DOWNGRADED:\n  intel-opencl-icd")
        print("E: Packages were downgraded and -y was used without --allow-downgrades.")
        sys.exit(100)


def add_apt_repository(args):
    record("add-apt-repository", args)
    if "ppa:kobuk-team/intel-graphics" in args:
        write(
            os.path.join(
                CONFIG["root"],
                "etc/apt/sources.list.d/kobuk-team-ubuntu-intel-graphics-noble.sources",
            ),
            "Types: deb\nURIs: https://ppa.launchpadcontent.net/kobuk-team/intel-graphics/ubuntu/\n",
        )


def apt_mark(args):
    record("apt-mark", args)


def dpkg_query(args):
    record("dpkg-query", args)
    fmt = "${Package}\t${Version}\n"
    pkgs = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-f="):
            fmt = a[3:]
        elif a in ("-f", "--showformat"):
            i += 1
            fmt = args[i]
        elif a.startswith("--showformat="):
            fmt = a.split("=", 1)[1]
        elif not a.startswith("-"):
            pkgs.append(a)
        i += 1
    fmt = fmt.replace("\\n", "\n").replace("\\t", "\t")
    versions = apt_versions()
    for p in pkgs:
        v = versions.get(p, "1.0-1ubuntu1")
        if v.endswith("*"):
            v = v[:-1] + "+20260523-1"
        sys.stdout.write(fmt.replace("${Package}", p).replace("${Version}", v))


def gpg(args):
    record("gpg", args)
    if "--dearmor" not in args or "-o" not in args:
        sys.exit("gpg stand-in: expected --dearmor -o FILE")
    data = sys.stdin.buffer.read()
    with open(args[args.index("-o") + 1], "wb") as f:
        f.write(b"dearmored:" + hashlib.sha256(data).hexdigest().encode())


def git_lfs(args):
    record("git-lfs", args)
    print("Git LFS initialized.")


# ---- HTTP -----------------------------------------------------------------------------------

GPG_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nstand-in\n-----END PGP PUBLIC KEY BLOCK-----\n"


def server():
    try:
        state = json.load(open(os.path.join(HOST, "state/server.json")))
        os.kill(state["pid"], 0)
        return state
    except (OSError, ValueError):
        return None


def option(args, name):
    return args[args.index(name) + 1] if name in args else None


def curl(args):
    record("curl", args)
    fail = out = fmt = data = url = None
    silent = show_errors = False
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-o", "-w", "-d", "-H", "-X", "--data"):
            value = args[i + 1]
            if a == "-o":
                out = value
            elif a == "-w":
                fmt = value
            elif a in ("-d", "--data"):
                data = value
            i += 2
            continue
        if a.startswith("-") and not a.startswith("--"):
            fail = fail or "f" in a
            silent = silent or "s" in a
            show_errors = show_errors or "S" in a
        elif a.startswith("http"):
            url = a
        i += 1
    code, body = 0, ""
    if url == "https://apt.repos.intel.com/oneapi/gpgkey":
        code, body = 200, GPG_KEY
    elif url and url.startswith("http://127.0.0.1:"):
        # A server that was just started takes a moment to listen: wait for it, briefly (the
        # smoke test would otherwise sleep 2 s before asking again).
        state = server()
        for _ in range(50):
            if state is not None:
                break
            time.sleep(0.02)
            state = server()
        port = url.split(":")[2].split("/")[0]
        if state is None or option(state["args"], "--port") != port:
            code = 0
        else:
            path = "/" + url.split("/", 3)[3]
            if path == "/health":
                code = 200
            elif path == "/v1/models":
                model = state["args"][state["args"].index("serve") + 1]
                mml = int(option(state["args"], "--max-model-len"))
                code = 200
                body = json.dumps(
                    {"object": "list", "data": [{"id": model, "max_model_len": mml}]}
                )
            elif path == "/v1/completions":
                req = json.loads(data or "{}")
                right = req.get("temperature") == 0 and "42" in req.get("prompt", "")
                code = 200
                body = json.dumps({"choices": [{"text": " 42" if right else " forty"}]})
            else:
                code = 404
    if code == 0:
        if fmt:
            sys.stdout.write(fmt.replace("%{http_code}", "000"))
        if show_errors or not silent:
            sys.stderr.write(f"curl: (7) Failed to connect to {url}\n")
        sys.exit(7)
    if out is None:
        sys.stdout.write(body)
    elif out != "/dev/null":
        write(out, body)
    if fmt:
        sys.stdout.write(fmt.replace("%{http_code}", str(code)))
    if fail and code >= 400:
        sys.exit(22)


# ---- swap and file systems --------------------------------------------------------------------


def swaps():
    path = os.path.join(HOST, "state/swaps")
    return path, (open(path).read().split() if os.path.exists(path) else [])


def fallocate(args):
    record("fallocate", args)
    with open(args[-1], "wb"):
        pass


def mkswap(args):
    record("mkswap", args)
    if not os.path.isfile(args[-1]):
        sys.exit(f"mkswap: cannot open {args[-1]}")


def swapon(args):
    record("swapon", args)
    path, on = swaps()
    if not os.path.isfile(args[-1]) or args[-1] in on:
        sys.exit(f"swapon: {args[-1]}: swapon failed")
    write(path, "\n".join(on + [args[-1]]) + "\n")


def swapoff(args):
    record("swapoff", args)
    path, on = swaps()
    if args[-1] not in on:
        sys.exit(f"swapoff: {args[-1]}: swapoff failed: Invalid argument")
    write(path, "".join(f"{s}\n" for s in on if s != args[-1]))


def stat(args):
    if "-f" in args:
        record("stat", args)
        print(os.environ.get("B70_FSTYPE") or CONFIG["fstype"])
        return
    os.execv(CONFIG["stat"], ["stat"] + args)


def chattr(args):
    record("chattr", args)


def df(args):
    record("df", args)
    big = int(os.environ.get("B70_DISK_FREE_GB") or 2000) * 1_000_000_000
    unit = 1_000_000_000 if "-B1000000000" in args else 1024
    print("Filesystem     1024-blocks      Used Available Capacity Mounted on")
    print(f"/dev/stand-in {big // unit} 0 {big // unit} 0% /srv")


# ---- devices --------------------------------------------------------------------------------


def xpu_smi(args):
    record("xpu-smi", args)
    for i in range(4):
        print(f"| {i} | Device Name: Intel(R) Graphics [0xe223] |")


def clinfo(args):
    record("clinfo", args)
    print("Platform #0: Intel(R) OpenCL Graphics")
    for i in range(4):
        print(f" +-- Device #{i}: Intel(R) Graphics [0xe223]")


def sudo(args):
    record("sudo", args)
    if args == ["-v"] or args == ["-n", "-v"]:
        return
    while args and (args[0] in ("-n", "-E") or args[0].startswith("--preserve-env")):
        args = args[1:]
    if args and args[0] == "--":
        args = args[1:]
    os.execvp(args[0], args)


# ---- Python: the host's interpreter and the venvs it makes ------------------------------------


def make_venv(folder):
    site = os.path.join(folder, "lib/python3.12/site-packages")
    os.makedirs(site, exist_ok=True)
    write(os.path.join(folder, "pyvenv.cfg"), "home = /usr/bin\nversion = 3.12.3\n")
    for name in ("python", "python3", "python3.12"):
        write(os.path.join(folder, "bin", name), wrapper("venv-python", True), 0o755)
    for name in ("pip", "pip3"):
        write(os.path.join(folder, "bin", name), wrapper("venv-pip", True), 0o755)
    write(os.path.join(folder, "bin/vllm"), wrapper("venv-vllm", True), 0o755)


def host_python(tool, args):
    record(tool, args)
    if args[:2] == ["-m", "venv"]:
        make_venv(os.path.abspath([a for a in args[2:] if not a.startswith("-")][-1]))
        return
    if args == ["--version"]:
        print("Python 3.12.3")
        return
    os.execv(REAL_PYTHON, [REAL_PYTHON, "-S"] + args)


def venv_of(path):
    return os.path.dirname(os.path.dirname(os.path.abspath(path)))


def site_of(venv):
    return os.path.join(venv, "lib/python3.12/site-packages")


def venv_python(path, args):
    record("venv-python", args, venv=venv_of(path))
    site = site_of(venv_of(path))
    extra = [site]
    for name in sorted(os.listdir(site)):
        if name.endswith(".pth"):
            extra += [line.strip() for line in open(os.path.join(site, name)) if line.strip()]
    env = dict(os.environ)
    env["PYTHONPATH"] = ":".join(([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []) + extra)
    os.execve(REAL_PYTHON, [REAL_PYTHON, "-S"] + args, env)


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path):
    out = []
    for line in open(path):
        line = line.split("#")[0].strip()
        if line.startswith("-r ") or line.startswith("-r'"):
            # An included file, relative to the including one, its name read as pip reads
            # option lines (shlex).
            name = shlex.split(line[2:].strip())[0]
            out += requirements(os.path.join(os.path.dirname(path), name))
        elif line and not line.startswith("-"):
            out.append(line)
    return out


TORCH = '''"""Stand-in torch from the fake XPU index."""
__version__ = "{version}"


class xpu:
    @staticmethod
    def is_available():
        return True

    @staticmethod
    def device_count():
        return 4
'''


def install_dist(venv, spec, constraints, editable=False):
    m = re.match(r"^([A-Za-z0-9._-]+)\s*(?:==\s*([^\s;]+))?", spec)
    name = m.group(1)
    version = m.group(2) or constraints.get(normalize(name)) or "0.0.0.dev0+unpinned"
    site = site_of(venv)
    dist = normalize(name).replace("-", "_")
    for old in os.listdir(site):
        if old.startswith(dist + "-") and old.endswith(".dist-info"):
            shutil.rmtree(os.path.join(site, old))
    write(
        os.path.join(site, f"{dist}-{version}.dist-info/METADATA"),
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    )
    if normalize(name) == "torch":
        torch = TORCH.format(version=version)
        if os.path.exists(flag("broken", "torch")):
            torch = 'raise ImportError("libtorch_xpu.so: cannot open shared object file")\n'
        write(os.path.join(site, "torch/__init__.py"), torch)
        os.makedirs(os.path.join(site, "torch/lib"), exist_ok=True)
    if normalize(name) == "vllm-xpu-kernels" and not editable:
        # The prebuilt wheel: a package in site-packages, ahead of any editable install.
        write(os.path.join(site, "vllm_xpu_kernels/__init__.py"), "# prebuilt wheel\n")
    if normalize(name) == "huggingface-hub":
        write(os.path.join(venv, "bin/hf"), wrapper("hf"), 0o755)


def install_editable(venv, path):
    path = os.path.abspath(path)
    name = os.path.basename(path)
    write(os.path.join(site_of(venv), f"__editable__.{name}.pth"), path + "\n")
    install_dist(venv, f"{name}==0.0.0+editable", {}, editable=True)
    # Build outputs land in the tree (all of them git-ignored upstream).
    write(os.path.join(path, "build/stand-in-build.txt"), "built\n")
    for entry in os.listdir(path):
        if os.path.isfile(os.path.join(path, entry, "__init__.py")):
            write(os.path.join(path, entry, "_C.abi3.so"), "stand-in extension\n")


def venv_pip(path, args):
    venv = venv_of(path)
    record("venv-pip", args, venv=venv)
    here = os.path.basename(os.getcwd())
    if os.path.exists(flag("fail", f"pip-{here}")):
        sys.exit(f"pip stand-in: failing in {here}, as the test asked")
    hang = flag("hang", f"pip-{here}")
    if os.path.exists(hang):
        # Once: this call hangs until its process group is stopped; the next one builds.
        os.rename(hang, hang + ".started")
        while True:
            time.sleep(0.05)
    if args[:1] == ["freeze"]:
        site = site_of(venv)
        for name in sorted(os.listdir(site)):
            if name.endswith(".dist-info"):
                meta = open(os.path.join(site, name, "METADATA")).read()
                fields = dict(line.split(": ", 1) for line in meta.splitlines() if ": " in line)
                print(f"{fields['Name']}=={fields['Version']}")
        return
    if not args or args[0] != "install":
        return
    constraints, specs, editables = {}, [], []
    i = 1
    while i < len(args):
        a = args[i]
        if a in ("-c", "-r", "-e", "--index-url", "--extra-index-url"):
            value = args[i + 1]
            if a == "-c":
                for line in requirements(value):
                    n, _, v = line.partition("==")
                    constraints[normalize(n.strip())] = v.strip()
            elif a == "-r":
                specs += requirements(value)
            elif a == "-e":
                editables.append(value)
            i += 2
            continue
        if not a.startswith("-"):
            specs.append(a)
        i += 1
    for spec in specs:
        install_dist(venv, spec, constraints)
    for e in editables:
        install_editable(venv, e)


def venv_vllm(path, args):
    record("venv-vllm", args)
    if not args or args[0] != "serve":
        return
    state = os.path.join(HOST, "state/server.json")

    def stop(signum, _frame):
        record("venv-vllm", ["stopped by", signal.Signals(signum).name])
        try:
            os.remove(state)
        except OSError:
            pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, stop)
    write(state, json.dumps({"pid": os.getpid(), "args": args}))
    while True:
        signal.pause()


def hf(args):
    record("hf", args)
    if not args or args[0] != "download":
        sys.exit("hf stand-in: only `hf download`")
    repo, revision, target = args[1], option(args, "--revision"), option(args, "--local-dir")
    source = os.path.join(HOST, "hub", repo, revision or "main")
    if not os.path.isdir(source):
        sys.exit(f"hf stand-in: {repo} has no revision {revision}")
    for folder, _, files in os.walk(source):
        for name in files:
            src = os.path.join(folder, name)
            dst = os.path.join(target, os.path.relpath(src, source))
            if os.path.exists(dst) and os.path.getsize(dst) == os.path.getsize(src):
                continue
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
    print(f"downloaded {repo}@{revision}")


# ---- pinstack doctor ------------------------------------------------------------------------


def doctor(args):
    """The real `pinstack doctor`, forgiving only its disk check (see the test's BASH_ENV)."""
    out = subprocess.run([CONFIG["pinstack"], "--json"] + args, capture_output=True, text=True)
    report = json.loads(out.stdout)
    checks = [[c["id"], c["level"]] for c in report["checks"]]
    record("pinstack-doctor", args, checks=checks, code=out.returncode)
    for c in report["checks"]:
        print(f"{c['level']:5} {c['id']}: {c['detail']}")
    if any(level == "fail" and cid != "disk" for cid, level in checks):
        sys.exit(1)


def probe(args):
    record("probe", args)


TOOLS = {
    "apt-get": apt_get,
    "add-apt-repository": add_apt_repository,
    "apt-mark": apt_mark,
    "dpkg-query": dpkg_query,
    "gpg": gpg,
    "git-lfs": git_lfs,
    "curl": curl,
    "fallocate": fallocate,
    "mkswap": mkswap,
    "swapon": swapon,
    "swapoff": swapoff,
    "stat": stat,
    "chattr": chattr,
    "df": df,
    "xpu-smi": xpu_smi,
    "clinfo": clinfo,
    "sudo": sudo,
    "hf": hf,
    "doctor": doctor,
    "probe": probe,
}


def main():
    tool, args = sys.argv[1], sys.argv[2:]
    if tool in ("python3", "python3.12"):
        host_python(tool, args)
    elif tool == "venv-python":
        venv_python(args[0], args[1:])
    elif tool == "venv-pip":
        venv_pip(args[0], args[1:])
    elif tool == "venv-vllm":
        venv_vllm(args[0], args[1:])
    else:
        TOOLS[tool](args)


if __name__ == "__main__":
    main()
"##;

/// Every step of the recipe, in its order.
const STEPS: [&str; 16] = [
    "preflight",
    "system-packages",
    "storage",
    "sources-kernels",
    "sources-llm-scaler",
    "sources-vllm",
    "sources-model-pin",
    "model",
    "python",
    "oneapi-env",
    "build-kernels",
    "build-llm-scaler",
    "build-vllm",
    "verify",
    "quality-gate",
    "smoke",
];

/// The programs on the fake host's `PATH`.
const TOOLS: [&str; 19] = [
    "apt-get",
    "add-apt-repository",
    "apt-mark",
    "dpkg-query",
    "gpg",
    "git-lfs",
    "curl",
    "fallocate",
    "mkswap",
    "swapon",
    "swapoff",
    "stat",
    "chattr",
    "df",
    "xpu-smi",
    "clinfo",
    "sudo",
    "python3",
    "python3.12",
];

/// The real URLs (those of pins.yaml): the test's pins file names them too.
const URLS: [(&str, &str); 7] = [
    ("vllm", "https://github.com/vllm-project/vllm.git"),
    ("llm-scaler", "https://github.com/intel/llm-scaler.git"),
    (
        "vllm-xpu-kernels",
        "https://github.com/vllm-project/vllm-xpu-kernels.git",
    ),
    ("oneDNN", "https://github.com/uxlfoundation/oneDNN.git"),
    ("sycl-tla", "https://github.com/intel/sycl-tla.git"),
    (
        "lab",
        "https://github.com/steveseguin/b70-optimization-lab.git",
    ),
    (
        "lab-hardened",
        "https://github.com/bosd/b70-optimization-lab.git",
    ),
];

const PATCHES: &str = "repro/minimax-m27-b70-89tps-20260520/patches";
const VLLM_BUNDLE: &str = "vllm-active-promoted-minimax-89tps-20260520.patch.gz.b64";
const SCALER_BUNDLE: &str = "llm-scaler-active-promoted-minimax-89tps-20260520.patch.gz.b64";
const MODEL_PIN: &str = "repro/minimax-m27-b70-89tps-20260520/manifests/model-pin.json";
const MODEL_REPO: &str = "Lasimeri/MiniMax-M2.7-int4-AutoRound";
const MODEL_REVISION: &str = "1afac074ecf7c3c4504c68b83d127506f8a7e5a4";
const SCALER_DIR: &str = "vllm/custom-esimd-kernels-vllm";
const MINIMAX_M2: &str = "vllm/model_executor/models/minimax_m2.py";
const XPU_INDEX: &str = "https://download.pytorch.org/whl/xpu";

/// The vLLM modules the runtime check records by path and sha256.
const PATCHED: [&str; 6] = [
    MINIMAX_M2,
    "vllm/model_executor/layers/fused_moe/runner/moe_runner.py",
    "vllm/model_executor/layers/quantization/moe_wna16.py",
    "vllm/platforms/xpu.py",
    "vllm/v1/worker/gpu_model_runner.py",
    "vllm/distributed/parallel_state.py",
];

/// Stand-in for an llm-scaler extension build: it needs the venv's final torch and the build
/// environment, and leaves a module where the real build leaves its `.so`.
const SETUP_SCRIPT: &str = r#"import os
import sys

import torch

assert sys.argv[1:] == ["build_ext", "--inplace"], sys.argv
for var in ("SYCL_HOME", "TORCH_XPU_ARCH_LIST", "MAX_JOBS", "TORCH_VERSION"):
    if not os.environ.get(var):
        sys.exit(f"{var} is not set")
here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(here, "build"), exist_ok=True)
with open(os.path.join(here, "python/custom_esimd_kernels_vllm/MODULE.py"), "w") as f:
    f.write(f"BUILT_AGAINST_TORCH = {torch.__version__!r}\n")
"#;

/// Stand-in for the lab's strict gate: the five gates "pass" and the summary records the gate's
/// configuration. `B70_GATE=silent` writes nothing (a gate that gave up quietly).
const GATE_SCRIPT: &str = r#"#!/usr/bin/env bash
set -euo pipefail
[ "${B70_GATE:-}" = silent ] && exit 0
stem="minimax-strict-$LABEL-$(date -u +%Y%m%dT%H%M%S%N)"
python3 - "$OUTDIR/$stem-summary.json" <<'PY'
import json, os, sys
keys = ["MODEL", "PUBLISH_ROOT", "OUTDIR", "LABEL", "TP", "MAX_MODEL_LEN", "MAX_BATCHED_TOKENS",
        "MAX_NUM_SEQS", "INPUT_LEN", "OUTPUT_LEN", "NUM_PROMPTS", "BLOCK_SIZE", "DTYPE",
        "COMPILATION_CONFIG_JSON", "RUN_REPEAT_ARITHMETIC_QUALITY", "RUN_EXTENDED_QUALITY",
        "BENCH_REPEATS", "REPEAT_ARITHMETIC_RUNS", "CACHE_ROOT", "VLLM_XPU_ENABLE_XPU_GRAPH",
        "FI_TCP_IFACE", "ZE_AFFINITY_MASK", "PYTHONPATH", "LD_LIBRARY_PATH"]
# The identity record: where the patched modules were imported from (the patched tree next on
# PYTHONPATH, or site-packages when B70_GATE=site-packages).
tree = os.environ["PYTHONPATH"].split(":")[1]
if os.environ.get("B70_GATE") == "site-packages":
    tree = os.path.join(os.environ["MODEL"], "../../venv/lib/python3.12/site-packages")
summary = {
    "label": os.environ["LABEL"],
    "status": "quality_passed",
    "runtime_vllm": {"modules": [
        {"module": "vllm.envs", "path": os.path.join(tree, "vllm/envs.py"), "sha256": "x"},
        {"module": "vllm.model_executor.models.minimax_m2",
         "path": os.path.join(tree, "vllm/model_executor/models/minimax_m2.py")},
    ]},
    "quality_policy": {
        "raw145_n64": {"expected_token_sha256": "267cbf30208d84929ee79284ac695467f7e80597bf8694130e1e1f8b180eb5bd"},
        "raw145_n256": {"expected_token_sha256": "58f6e8251c7a0a17e8c441278b5861f7d5da914fa1823ecd10484b296f2d7537"},
    },
    "candidate_env": {k: os.environ.get(k) for k in keys},
}
json.dump(summary, open(sys.argv[1], "w"), indent=2)
PY
"#;

/// How much memory the fake host has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Memory {
    /// 24 GiB and no swap: the kernels build needs a temporary swap.
    Small,
    /// 251 GiB plus 8 GiB of swap: no build swap.
    Large,
}

/// A fake B70 host, its upstreams and a workspace.
struct B70 {
    fx: Fixture,
    ws: PathBuf,
    host: PathBuf,
    /// A value of HF_TOKEN no other test uses.
    token: String,
    vllm: Upstream,
    vllm_base: String,
    lab: Upstream,
    pins: Vec<Pin>,
}

impl B70 {
    fn new(memory: Memory) -> B70 {
        let fx = Fixture::new();
        let ws = fx.path("ws");
        let host = fx.path("host");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let token = format!("hf_b70{:x}{nanos:x}", std::process::id());
        let python = real_python();
        let pinstack = assert_cmd::cargo::cargo_bin("pinstack");
        fx.write("host/standin.py", STANDIN);
        fx.write(
            "host/config.json",
            json!({
                "python": python,
                "pinstack": pinstack,
                "stat": which("stat"),
                "root": host.join("root"),
                "apt_versions": recipe_dir().join("minimax-m27-b70/apt-versions.txt"),
                "fstype": "ext2/ext3",
            })
            .to_string(),
        );
        std::fs::create_dir_all(fx.path("tmp")).unwrap();
        let wrapper = |tool: &str| {
            format!(
                "#!/bin/sh\nexec \"{python}\" -S \"{}\" {tool} \"$@\"\n",
                host.join("standin.py").display()
            )
        };
        for tool in TOOLS {
            executable(&fx, &format!("host/bin/{tool}"), &wrapper(tool));
        }
        executable(&fx, "host/bin/b70-probe", &wrapper("probe"));
        executable(&fx, "host/shim/pinstack-doctor", &wrapper("doctor"));
        fx.write(
            "host/bash_env.sh",
            format!(
                "# The preflight step's `\"$PINSTACK\" doctor`: see the top of tests/b70.rs.\n\
                 case \"${{PINSTACK:-}}\" in */pinstack) PINSTACK={} ;; esac\n",
                host.join("shim/pinstack-doctor").display()
            ),
        );
        let b = B70 {
            vllm: fx.upstream("vllm"),
            lab: fx.upstream("lab"),
            fx,
            ws,
            host,
            token,
            vllm_base: String::new(),
            pins: Vec::new(),
        };
        b.fake_root(memory);
        b.build_upstreams()
    }

    /// A root that passes every doctor check it controls, with the oneAPI 2025.3 compiler.
    fn fake_root(&self, memory: Memory) {
        let w = |rel: &str, text: &str| {
            self.fx.write(&format!("host/root/{rel}"), text);
        };
        w(
            "etc/os-release",
            "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nPRETTY_NAME=\"Ubuntu 24.04.4 LTS\"\n",
        );
        w("proc/sys/kernel/arch", "x86_64\n");
        w("proc/sys/kernel/osrelease", "6.17.0-29-generic\n");
        w(
            "proc/cmdline",
            "BOOT_IMAGE=/vmlinuz-6.17.0-29-generic root=UUID=x ro quiet xe.disable_display=1\n",
        );
        w(
            "proc/meminfo",
            match memory {
                Memory::Small => "MemTotal:       24684084 kB\nSwapTotal:             0 kB\n",
                Memory::Large => "MemTotal:       263000000 kB\nSwapTotal:        8000000 kB\n",
            },
        );
        w("sys/class/net/lo/operstate", "unknown\n");
        for i in 0..4 {
            let d = format!("sys/bus/pci/devices/0000:0{}:00.0", i + 3);
            for (file, value) in [
                ("vendor", "0x8086"),
                ("device", "0xe223"),
                ("boot_vga", "0"),
                ("current_link_speed", "32.0 GT/s PCIe"),
                ("max_link_speed", "32.0 GT/s PCIe"),
                ("current_link_width", "16"),
                ("max_link_width", "16"),
            ] {
                w(&format!("{d}/{file}"), &format!("{value}\n"));
            }
        }
        w("sys/bus/pci/devices/0000:00:02.0/vendor", "0x1a03\n");
        w("sys/bus/pci/devices/0000:00:02.0/device", "0x2000\n");
        w("sys/bus/pci/devices/0000:00:02.0/boot_vga", "1\n");
        w(
            "var/lib/dpkg/status",
            "Package: libze1\nStatus: install ok installed\nVersion: 1.28.2-1~24.04~ppa1\n\n",
        );
        let oneapi = self.oneapi();
        // Like the real vars.sh: it reads variables that may be unset (fatal under `set -u`),
        // and replaces LD_LIBRARY_PATH.
        w(
            "opt/intel/oneapi/compiler/2025.3/env/vars.sh",
            &format!(
                "if [ -n \"$SETVARS_CALL\" ]; then :; fi\n\
                 export CMPLR_ROOT={o}\n\
                 export PATH={o}/bin:$PATH\n\
                 export LD_LIBRARY_PATH={o}/lib:{o}/opt/compiler/lib\n\
                 export OCL_ICD_FILENAMES=$OCL_ICD_FILENAMES:{o}/lib/libintelocl.so\n\
                 export CPATH={o}/include${{CPATH:+:$CPATH}}\n\
                 {probe} vars.sh\n",
                o = oneapi.display(),
                probe = self.host.join("bin/b70-probe").display()
            ),
        );
        executable(
            &self.fx,
            "host/root/opt/intel/oneapi/compiler/2025.3/bin/icpx",
            "#!/bin/sh\necho 'Intel(R) oneAPI DPC++/C++ Compiler 2025.3.2 (2025.3.2.20260112)'\n",
        );
        w("opt/intel/oneapi/compiler/2025.3/lib/libsycl.so.8", "");
    }

    /// The upstreams, the bundles in the lab repo, the model on the hub, and the pins file.
    fn build_upstreams(mut self) -> B70 {
        let fx = &self.fx;

        // vLLM: the modules the runtime check records, importable from the checkout.
        let vllm = &self.vllm;
        vllm.write(
            ".gitignore",
            "__pycache__/\n*.py[cod]\n*.egg-info/\nbuild/\n*.so\n",
        )
        .write("vllm/__init__.py", "__version__ = \"0.20.1\"\n")
        .write(
            "vllm/platforms/__init__.py",
            "import torch\n\n\nclass _Platform:\n    \
                 device_type = \"xpu\" if torch.xpu.is_available() else \"cpu\"\n\n\n\
                 current_platform = _Platform()\n",
        )
        // As vLLM's own: common requirements included, and the prebuilt kernels wheel named.
        .write(
            "requirements/xpu.txt",
            "-r common.txt\n--extra-index-url=https://wheels.vllm.ai/xpu/\ntriton-xpu==3.7.0\n\
             vllm_xpu_kernels @ https://github.com/vllm-project/vllm-xpu-kernels/releases/\
             download/v0.1.7/vllm_xpu_kernels-0.1.7-cp38-abi3-manylinux_2_28_x86_64.whl\n",
        )
        .write("requirements/common.txt", "transformers\n")
        .write("setup.py", "# stand-in\n");
        for p in PATCHED.iter().filter(|p| **p != "vllm/platforms/xpu.py") {
            vllm.write(p, python_lines(p, 0));
        }
        vllm.write("vllm/platforms/xpu.py", python_lines("xpu", 0));
        self.vllm_base = vllm.commit("vllm 0.20.1");
        let vllm_diff = self.vllm_change("promoted");

        // llm-scaler: the MoE INT4 extension; its bundle adds the router extension.
        let scaler = fx.upstream("llm-scaler");
        scaler
            .write(
                ".gitignore",
                "__pycache__/\n*.py[cod]\n*.egg-info/\nbuild/\n*.so\n\
                 # the test's stand-in for the built extensions (.so files upstream)\n\
                 *_ops.py\n",
            )
            .write("omni/README.md", "omni\n")
            .write(
                &format!("{SCALER_DIR}/python/custom_esimd_kernels_vllm/__init__.py"),
                "",
            )
            .write(
                &format!("{SCALER_DIR}/setup_moe_int4_only.py"),
                SETUP_SCRIPT.replace("MODULE", "moe_int4_ops"),
            )
            .write(
                &format!("{SCALER_DIR}/csrc/moe_batch/moe_int4.sycl"),
                python_lines("moe", 0),
            );
        let scaler_base = scaler.commit("llm-scaler");
        scaler
            .write(
                &format!("{SCALER_DIR}/setup_minimax_router_only.py"),
                SETUP_SCRIPT.replace("MODULE", "minimax_router_ops"),
            )
            .write(
                &format!("{SCALER_DIR}/csrc/moe_batch/moe_int4.sycl"),
                python_lines("moe", 1),
            );
        let scaler_patched = scaler.commit("promoted");
        let scaler_diff = scaler.diff_relative(SCALER_DIR, &scaler_base, &scaler_patched);
        scaler.restore(&scaler_base);

        // vllm-xpu-kernels, with the oneDNN submodule at its real URL.
        let onednn = fx.upstream("oneDNN");
        onednn.write("include/dnnl.h", "// oneDNN\n");
        onednn.commit("oneDNN");
        let kernels = fx.upstream("vllm-xpu-kernels");
        kernels
            .write(".gitignore", "__pycache__/\n*.egg-info/\nbuild/\n*.so\n")
            .write("vllm_xpu_kernels/__init__.py", "")
            .write(
                "CMakeLists.txt",
                "set(CUTLASS_REVISION cd763790ad2f74d7294435ecf77682bac0062c3a)\n",
            );
        kernels.git(&[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &onednn.url(),
            "third_party/oneDNN",
        ]);
        kernels.git(&[
            "config",
            "-f",
            ".gitmodules",
            "submodule.third_party/oneDNN.url",
            url("oneDNN"),
        ]);
        let kernels_commit = kernels.commit("vllm-xpu-kernels");
        let sycl_tla = fx.upstream("sycl-tla");
        sycl_tla.write("include/cutlass/cutlass.h", "// sycl-tla\n");
        let sycl_tla_commit = sycl_tla.commit("sycl-tla");

        // The lab repository: both bundles and the gate.
        let vllm_bundle = fx.bundle("vllm-promoted", &vllm_diff);
        let scaler_bundle = fx.bundle("llm-scaler-promoted", &scaler_diff);
        let lab = &self.lab;
        lab.write(
            &format!("{PATCHES}/{VLLM_BUNDLE}"),
            fx.read(&vllm_bundle.path),
        )
        .write(
            &format!("{PATCHES}/{SCALER_BUNDLE}"),
            fx.read(&scaler_bundle.path),
        )
        .write(
            "scripts/run-minimax-strict-quality-gated-candidate.sh",
            GATE_SCRIPT,
        );
        let lab_commit = lab.commit("promoted bundles");

        // The model on the fake hub, its pin in lab-hardened, and its manifest.
        let hub = format!("host/hub/{MODEL_REPO}/{MODEL_REVISION}");
        let mut lfs = Vec::new();
        for i in 1..=3u8 {
            let name = format!("model-0000{i}-of-00003.safetensors");
            let bytes: Vec<u8> = (0..4096u32).map(|n| (n * 7 + u32::from(i)) as u8).collect();
            fx.write(&format!("{hub}/{name}"), &bytes);
            lfs.push(json!({"path": name, "bytes": bytes.len(), "sha256": sha256(&bytes)}));
        }
        let small = [
            ("model.safetensors.index.json", "{\"weight_map\": {}}\n"),
            (
                "config.json",
                "{\"architectures\": [\"MiniMaxM2ForCausalLM\"]}\n",
            ),
            ("tokenizer.json", "{}\n"),
            ("tokenizer_config.json", "{}\n"),
            ("generation_config.json", "{\"top_k\": 40}\n"),
        ];
        for (name, text) in small {
            fx.write(&format!("{hub}/{name}"), text);
        }
        let hardened = fx.upstream("lab-hardened");
        hardened.write(
            MODEL_PIN,
            serde_json::to_string_pretty(&json!({
                "schema": "minimax-m27-autoround-model-pin-v1",
                "repository": MODEL_REPO,
                "revision": MODEL_REVISION,
                "lfs_files": lfs,
                "total_weight_bytes": 3 * 4096,
            }))
            .unwrap(),
        );
        let hardened_commit = hardened.commit("model pin");
        let mut files: Vec<String> = (1..=3)
            .map(|i| format!("model-0000{i}-of-00003.safetensors"))
            .collect();
        files.extend(small.iter().map(|(n, _)| (*n).to_owned()));
        fx.write(
            "host/model.json",
            serde_json::to_string_pretty(&json!({
                "format": "pinstack-model-manifest-v1",
                "repository": MODEL_REPO,
                "revision": MODEL_REVISION,
                "local_dir": "minimax-m2.7-int4-autoround",
                "lfs_files": 3,
                "total_lfs_bytes": 3 * 4096,
                "lfs_hashes": {"repo": "lab-hardened", "path": MODEL_PIN},
                "files": files,
                "sha256_prefixes": {
                    "config.json": &sha256(small[1].1.as_bytes())[..8],
                    "tokenizer.json": &sha256(small[2].1.as_bytes())[..8],
                },
            }))
            .unwrap(),
        );

        self.pins = vec![
            pin("vllm", &self.vllm, &self.vllm_base)
                .patch(in_lab(vllm_bundle.entry(), VLLM_BUNDLE)),
            pin("llm-scaler", &scaler, &scaler_base)
                .patch(in_lab(scaler_bundle.entry(), SCALER_BUNDLE).base_dir(SCALER_DIR)),
            pin("vllm-xpu-kernels", &kernels, &kernels_commit).submodules(),
            pin("sycl-tla", &sycl_tla, &sycl_tla_commit),
            pin("lab", lab, &lab_commit),
            pin("lab-hardened", &hardened, &hardened_commit),
        ];
        self.write_pins();
        self
    }

    /// Commits a change of vLLM's patched modules on top of its base, puts the work tree back
    /// at the base, and returns the diff (a bundle's content).
    fn vllm_change(&self, what: &str) -> Vec<u8> {
        self.vllm.restore(&self.vllm_base);
        self.vllm.write(MINIMAX_M2, python_lines(what, 1)).write(
            "vllm/model_executor/layers/fused_moe/minimax_custom_op.py",
            format!("KIND = {what:?}\n"),
        );
        if what == "wheel" {
            // The 89 route's prebuilt kernels, which do not load with this torch, named where
            // the build step does not take them out: in a file the XPU requirements include.
            self.vllm.write(
                "requirements/common.txt",
                "transformers\nvllm_xpu_kernels==0.1.7\n",
            );
        }
        let patched = self.vllm.commit(what);
        let diff = self.vllm.diff(&self.vllm_base, &patched);
        self.vllm.restore(&self.vllm_base);
        diff
    }

    /// A new vLLM bundle, committed to the lab repository, and pinned (vLLM's bundle and the
    /// lab's commit change; nothing else does).
    fn new_vllm_bundle(&mut self, what: &str) -> Vec<u8> {
        let diff = self.vllm_change(what);
        let bundle = self.fx.bundle(&format!("vllm-{what}"), &diff);
        let name = format!("vllm-{what}-minimax.patch.gz.b64");
        self.lab
            .write(&format!("{PATCHES}/{name}"), self.fx.read(&bundle.path));
        let lab_commit = self.lab.commit("reworked vLLM bundle");
        for p in &mut self.pins {
            match p.name.as_str() {
                "vllm" => p.patches = vec![in_lab(bundle.entry(), &name)],
                "lab" => p.commit = lab_commit.clone(),
                _ => {}
            }
        }
        self.write_pins();
        diff
    }

    fn write_pins(&self) {
        self.fx.write("b70-pins.yaml", pins_yaml(&self.pins));
    }

    fn oneapi(&self) -> PathBuf {
        self.host.join("root/opt/intel/oneapi/compiler/2025.3")
    }

    fn venv(&self) -> PathBuf {
        self.ws.join("venv")
    }

    fn src(&self, repo: &str) -> PathBuf {
        self.ws.join("src").join(repo)
    }

    /// `pinstack --workspace WS --recipe <the real recipe> ARGS` on the fake host, booted as
    /// `boot`.
    fn command(&self, boot: &str, args: &[&str]) -> StdCommand {
        let mut cmd = self.fx.pinstack_std();
        // Steps inherit the caller's environment: nothing of the test's own may reach them.
        const KEPT: [&str; 8] = [
            "HOME",
            "XDG_CACHE_HOME",
            "NO_COLOR",
            "PINSTACK_CACHE",
            "LC_ALL",
            "USER",
            "LOGNAME",
            "LANG",
        ];
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if !k.starts_with("GIT_") && !KEPT.contains(&k.as_ref()) {
                cmd.env_remove(k.as_ref());
            }
        }
        let path = format!(
            "{}:{}:/usr/bin:/bin",
            self.host.join("bin").display(),
            Path::new(&which("git")).parent().unwrap().display()
        );
        cmd.env("PATH", path)
            .env("BASH_ENV", self.host.join("bash_env.sh"))
            .env("TMPDIR", self.fx.path("tmp"))
            .env("HF_TOKEN", &self.token)
            .env("B70_PINS", self.fx.path("b70-pins.yaml"))
            .env("B70_HOST_ROOT", self.host.join("root"))
            .env("B70_ONEAPI", self.oneapi())
            .env("B70_MODEL_MANIFEST", self.host.join("model.json"))
            .env("PINSTACK_BOOT_ID", boot);
        // Local upstreams for the real URLs (and the file transport for submodules).
        // Any other URL goes to a folder that does not exist: git never reaches the network.
        let mut config = vec![
            ("protocol.file.allow".to_owned(), "always".to_owned()),
            (
                format!("url.{}/.insteadOf", self.fx.path("no-network").display()),
                "https://".to_owned(),
            ),
        ];
        for (name, real) in URLS {
            config.push((
                format!(
                    "url.{}.insteadOf",
                    self.fx.path(&format!("upstream/{name}")).display()
                ),
                real.to_owned(),
            ));
        }
        cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (key, value)) in config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), key)
                .env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        cmd.arg("--workspace")
            .arg(&self.ws)
            .arg("--recipe")
            .arg(recipe_dir().join("minimax-m27-b70.yaml"))
            .args(args);
        cmd
    }

    /// Runs `up`, asserts its exit code and that the token is nowhere in its output.
    fn up(&self, boot: &str, code: i32) -> Run {
        self.up_with(boot, &[], code)
    }

    fn up_with(&self, boot: &str, env: &[(&str, &str)], code: i32) -> Run {
        let calls_before = self.calls().len();
        let mut cmd = self.command(boot, &["up"]);
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("pinstack runs");
        let run = Run::new(out, self.calls()[calls_before..].to_vec());
        if run.out.status.code() != Some(code) {
            // The failed step's whole log says more than the engine's summary.
            let log = run
                .stdout()
                .strip_prefix("step ")
                .and_then(|s| s.split_once(' '))
                .and_then(|(id, _)| {
                    std::fs::read_to_string(self.ws.join(format!("logs/minimax-m27-b70/{id}.log")))
                        .ok()
                })
                .unwrap_or_default();
            panic!(
                "pinstack up exited {:?}, not {code}\n{}\nthe failed step's log:\n{log}",
                run.out.status.code(),
                run.text()
            );
        }
        assert!(
            !run.text().contains(&self.token),
            "HF_TOKEN in the output:\n{}",
            run.text()
        );
        run
    }

    /// Every call the stand-ins recorded so far.
    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(self.host.join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Creates or removes a flag file that makes a stand-in fail or hang.
    fn flag(&self, kind: &str, name: &str, on: bool) {
        let path = self.host.join(kind).join(name);
        if on {
            self.fx.write(&format!("host/{kind}/{name}"), "");
        } else {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The first two `up`s of a fresh host: up to the reboot, then after it.
    fn bring_up(&self) -> (Run, Run) {
        let before = self.up("a", 0);
        let after = self.up("b", 0);
        (before, after)
    }

    /// The swap file the kernels build makes, and the swaps the fake host has on.
    fn swap_file(&self) -> PathBuf {
        self.ws.join("build-swap.img")
    }

    fn swaps_on(&self) -> String {
        std::fs::read_to_string(self.host.join("state/swaps")).unwrap_or_default()
    }

    /// Asserts that HF_TOKEN is in no file under the fixture (the workspace included), and was
    /// in no temporary file while a stand-in ran.
    fn assert_token_nowhere(&self) {
        for c in self.calls() {
            assert_eq!(c["leaks"], json!([]), "HF_TOKEN in a temporary file: {c}");
        }
        let token = self.token.as_bytes();
        for file in files_under(self.fx.root()) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(token.len()).any(|w| w == token),
                "HF_TOKEN is written in {}",
                file.display()
            );
        }
    }

    /// Asserts that no build swap is left: no file, no marker, nothing on.
    fn assert_no_swap_left(&self) {
        assert!(!self.swap_file().exists(), "the build swap file is left");
        assert!(
            !self.ws.join(".pinstack/build-swap").exists(),
            "the build swap marker is left"
        );
        assert_eq!(self.swaps_on().trim(), "", "a swap is still on");
    }
}

/// One `up`: its output and the calls the stand-ins recorded while it ran.
struct Run {
    out: Output,
    calls: Vec<Value>,
}

impl Run {
    fn new(out: Output, calls: Vec<Value>) -> Run {
        Run { out, calls }
    }

    fn text(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// The steps the engine started, in order (its `==> [i/n] ID: ...` lines).
    fn started(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.out.stderr)
            .lines()
            .filter_map(|l| l.strip_prefix("==> ["))
            .filter_map(|l| l.split_once("] "))
            .filter_map(|(_, rest)| rest.split_once(':'))
            .map(|(id, _)| id.to_owned())
            .collect()
    }

    /// The steps the engine skipped as done.
    fn skipped(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.out.stderr)
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("done "))
            .filter_map(|l| l.trim_start().split_once(':'))
            .map(|(id, _)| id.to_owned())
            .collect()
    }

    /// The steps the stand-ins were called from, in order, each once.
    fn call_steps(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &self.calls {
            let s = c["step"].as_str().unwrap_or("(none)").to_owned();
            if out.last() != Some(&s) {
                out.push(s);
            }
        }
        out
    }

    /// The calls of one program, as (step, args) pairs with the whole record.
    fn of(&self, tool: &str) -> Vec<&Value> {
        self.calls.iter().filter(|c| c["tool"] == tool).collect()
    }
}

fn args(call: &Value) -> Vec<&str> {
    call["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

fn env<'a>(call: &'a Value, name: &str) -> &'a str {
    call["env"][name].as_str().unwrap_or_else(|| {
        panic!(
            "{name} is not in the environment of {} {:?}",
            call["tool"],
            args(call)
        )
    })
}

fn step_of(call: &Value) -> &str {
    call["step"].as_str().unwrap_or("(none)")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn pin(name: &str, upstream: &Upstream, commit: &str) -> Pin {
    Pin::new(name, upstream, commit).url(url(name))
}

fn in_lab(entry: PatchEntry, file: &str) -> PatchEntry {
    entry.in_repo("lab", &format!("{PATCHES}/{file}"))
}

fn url(name: &str) -> &'static str {
    URLS.iter().find(|(n, _)| *n == name).unwrap().1
}

/// Python source lines, different per `tag` and `version`.
fn python_lines(tag: &str, version: u32) -> String {
    (1..=12)
        .map(|i| {
            if i == 6 && version > 0 {
                format!("# {tag} line {i}, changed ({version})\n")
            } else {
                format!("# {tag} line {i}\n")
            }
        })
        .collect()
}

fn recipe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes")
}

fn executable(fx: &Fixture, rel: &str, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = fx.write(rel, text);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A program's full path on the test's own PATH.
fn which(program: &str) -> String {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
        .display()
        .to_string()
}

/// The interpreter behind `python3` (not a launcher such as a pyenv shim).
fn real_python() -> String {
    let out = StdCommand::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn wait_for(path: &Path) {
    let until = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(Instant::now() < until, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// Whether the tests run as root. The recipe's privileged steps then run directly, as on the
/// lab's host; as another user they would go through sudo, whose environment reset hides the
/// stand-ins, so these tests need root (as tests/recipe.rs's sudo test does).
fn root() -> bool {
    let root = StdCommand::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if !root {
        eprintln!("skipped: the B70 recipe's privileged steps need the tests to run as root");
    }
    root
}

/// The bring-up of a fresh host, from nothing to a smoke-tested server, and a rerun that does
/// nothing.
#[test]
fn the_default_recipe_brings_up_a_fake_host_end_to_end() {
    if !root() {
        return;
    }
    let b = B70::new(Memory::Small);

    // Up to the reboot: preflight and the system packages only.
    let first = b.up("a", 0);
    assert_eq!(first.started(), strings(&STEPS[..2]), "{}", first.text());
    assert!(
        first
            .stdout()
            .contains("step system-packages needs the machine to reboot"),
        "{}",
        first.text()
    );
    assert_eq!(first.call_steps(), strings(&STEPS[..2]));
    // Until the boot id changes, nothing after system-packages runs.
    let same_boot = b.up("a", 0);
    assert_eq!(
        same_boot.started(),
        Vec::<String>::new(),
        "{}",
        same_boot.text()
    );
    assert!(same_boot.calls.is_empty(), "{:?}", same_boot.calls);
    assert!(
        same_boot.stdout().contains("reboot"),
        "{}",
        same_boot.text()
    );

    let second = b.up("b", 0);
    assert_eq!(second.started(), strings(&STEPS[2..]), "{}", second.text());
    assert!(
        second
            .stdout()
            .contains("all 16 steps done (14 ran, 2 were already done)"),
        "{}",
        second.text()
    );
    // The steps that call host programs, in the recipe's order (the sources steps use git).
    let with_calls: Vec<&str> = STEPS
        .iter()
        .copied()
        .filter(|s| !s.starts_with("sources-"))
        .collect();
    assert_eq!(second.call_steps(), strings(&with_calls[2..]));

    preflight_ran_doctor_on_the_fake_root(&first);
    system_packages_are_pinned(&b, &first);
    the_model_is_downloaded_at_its_revision_and_verified(&b, &second);
    python_packages_come_pinned_from_the_xpu_index(&b, &second);
    the_builds_get_the_oneapi_environment(&b, &second);
    the_build_swap_is_made_and_removed(&b, &second);
    runtime_quality_and_smoke_are_asserted(&b, &second);

    // A rerun does nothing.
    let third = b.up("b", 0);
    assert_eq!(third.started(), Vec::<String>::new(), "{}", third.text());
    assert_eq!(third.skipped(), strings(&STEPS), "{}", third.text());
    assert!(third.calls.is_empty(), "{:?}", third.calls);
    assert!(
        third
            .stdout()
            .contains("all 16 steps done (0 ran, 16 were already done)"),
        "{}",
        third.text()
    );

    // HF_TOKEN reached the download, and no file at all; root needed no sudo.
    let all = b.calls();
    let hf = all.iter().find(|c| c["tool"] == "hf").expect("hf ran");
    assert_eq!(hf["token"], sha256(b.token.as_bytes()).as_str());
    assert!(all.iter().all(|c| c["tool"] != "sudo"));
    b.assert_token_nowhere();
}

fn preflight_ran_doctor_on_the_fake_root(first: &Run) {
    let doctor = first.of("pinstack-doctor");
    assert_eq!(doctor.len(), 1);
    assert_eq!(step_of(doctor[0]), "preflight");
    let a = args(doctor[0]);
    assert_eq!(a[..3], ["doctor", "--context", "32768"]);
    for check in doctor[0]["checks"].as_array().unwrap() {
        let (id, level) = (check[0].as_str().unwrap(), check[1].as_str().unwrap());
        match id {
            // The real disk (see the top of this file); memory: the build swap covers it.
            "disk" | "memory" => {}
            _ => assert_eq!(level, "pass", "doctor check {id} on the fake root"),
        }
    }
}

fn system_packages_are_pinned(b: &B70, first: &Run) {
    let apt: Vec<Vec<&str>> = first.of("apt-get").iter().map(|c| args(c)).collect();
    assert_eq!(apt.len(), 4, "{apt:?}");
    assert_eq!(apt[0], ["update"]);
    assert_eq!(apt[2], ["update"]);
    assert_eq!(apt[1][..3], ["install", "-y", "--no-install-recommends"]);
    assert!(apt[1].contains(&"linux-generic-hwe-24.04") && apt[1].contains(&"git-lfs"));
    assert_eq!(
        apt[3],
        [
            "install",
            "-y",
            "--no-install-recommends",
            "level-zero",
            "level-zero-devel",
            "xpu-smi=1.3.6-1~24.04~ppa1",
            "intel-opencl-icd=26.18.38308.1-0",
            "libze-intel-gpu1=26.18.38308.1-0",
            "intel-ocloc=26.18.38308.1-0",
            "intel-igc-core-2=2.34.4*",
            "intel-igc-opencl-2=2.34.4*",
            "intel-metrics-discovery",
            "intel-metrics-library",
            "libxpum1",
            "intel-oneapi-dpcpp-cpp-2025.3",
            "intel-oneapi-dpcpp-cpp-2026.0",
            "intel-oneapi-mkl-devel",
            "intel-oneapi-dnnl-devel-2026.0",
            "libze1=1.28.2-1~24.04~ppa1",
        ]
    );
    for c in first.of("apt-get") {
        assert_eq!(env(c, "DEBIAN_FRONTEND"), "noninteractive");
    }
    assert_eq!(args(first.of("git-lfs")[0]), ["install", "--system"]);
    assert_eq!(
        args(first.of("curl")[0]),
        ["-fsSL", "https://apt.repos.intel.com/oneapi/gpgkey"]
    );
    assert_eq!(
        args(first.of("add-apt-repository")[0]),
        ["-y", "ppa:kobuk-team/intel-graphics"]
    );
    let root = b.host.join("root");
    assert!(
        root.join("usr/share/keyrings/oneapi-archive-keyring.gpg")
            .is_file()
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/apt/sources.list.d/oneAPI.list")).unwrap(),
        "deb [signed-by=/usr/share/keyrings/oneapi-archive-keyring.gpg] \
         https://apt.repos.intel.com/oneapi all main\n"
    );
    let lock = std::fs::read_to_string(b.ws.join("locks/apt.lock")).unwrap();
    for line in [
        "libze1 1.28.2-1~24.04~ppa1",
        "xpu-smi 1.3.6-1~24.04~ppa1",
        "intel-opencl-icd 26.18.38308.1-0",
        "intel-igc-core-2 2.34.4+20260523-1",
    ] {
        assert!(lock.lines().any(|l| l == line), "{line} in\n{lock}");
    }
    let log =
        std::fs::read_to_string(b.ws.join("logs/minimax-m27-b70/system-packages.log")).unwrap();
    assert!(
        log.contains("all recorded package versions installed"),
        "{log}"
    );
}

fn the_model_is_downloaded_at_its_revision_and_verified(b: &B70, second: &Run) {
    let hub_pip = second
        .of("venv-pip")
        .into_iter()
        .find(|c| step_of(c) == "model")
        .expect("the hub client is installed");
    assert_eq!(
        args(hub_pip),
        [
            "install",
            "--quiet",
            "huggingface_hub==1.13.0",
            "hf-xet==1.4.3"
        ]
    );
    assert_eq!(hub_pip["venv"], b.ws.join("hub-venv").display().to_string());
    let hf = second.of("hf");
    assert_eq!(hf.len(), 1);
    let model = b.ws.join("llm-models/minimax-m2.7-int4-autoround");
    assert_eq!(
        args(hf[0]),
        [
            "download",
            MODEL_REPO,
            "--revision",
            MODEL_REVISION,
            "--local-dir",
            &model.display().to_string(),
            "--max-workers",
            "4"
        ]
    );
    assert_eq!(env(hf[0], "HF_HUB_DISABLE_XET"), "1");
    assert_eq!(
        env(hf[0], "HF_HOME"),
        b.ws.join("llm-cache/hf").display().to_string()
    );
    let log = std::fs::read_to_string(b.ws.join("logs/minimax-m27-b70/model.log")).unwrap();
    assert!(
        log.contains("model verified: 3 LFS files, 12288 bytes"),
        "{log}"
    );
}

fn python_packages_come_pinned_from_the_xpu_index(b: &B70, second: &Run) {
    let venv = b.venv().display().to_string();
    let constraints = recipe_dir()
        .join("minimax-m27-b70/constraints.txt")
        .display()
        .to_string();
    let python_step: Vec<&Value> = second
        .calls
        .iter()
        .filter(|c| step_of(c) == "python")
        .collect();
    assert_eq!(python_step[0]["tool"], "python3.12");
    assert_eq!(args(python_step[0]), ["-m", "venv", venv.as_str()]);
    let pips: Vec<Vec<&str>> = python_step
        .iter()
        .filter(|c| c["tool"] == "venv-pip")
        .map(|c| args(c))
        .collect();
    assert_eq!(
        pips,
        [
            vec![
                "install",
                "-c",
                &constraints,
                "pip",
                "setuptools",
                "setuptools-scm",
                "wheel",
                "packaging",
                "ninja",
                "cmake",
                "pybind11"
            ],
            vec![
                "install",
                "-c",
                &constraints,
                "--index-url",
                XPU_INDEX,
                "--extra-index-url",
                "https://pypi.org/simple",
                "torch",
                "torchvision",
                "torchaudio"
            ],
            vec![
                "install",
                "-c",
                &constraints,
                "transformers",
                "tokenizers",
                "safetensors",
                "compressed-tensors",
                "huggingface_hub",
                "hf-xet",
                "oneccl",
                "oneccl-devel",
                "triton-xpu"
            ],
        ]
    );
    // What the constraints pinned is what got installed.
    let site = b.venv().join("lib/python3.12/site-packages");
    for dist in [
        "torch-2.11.0+xpu",
        "torchvision-0.26.0+xpu",
        "torchaudio-2.11.0+xpu",
        "transformers-5.7.0",
        "triton_xpu-3.7.0",
        "huggingface_hub-1.13.0",
        "setuptools-82.0.1",
        "pybind11-3.0.4",
    ] {
        assert!(
            site.join(format!("{dist}.dist-info")).is_dir(),
            "{dist} in {}",
            site.display()
        );
    }
}

fn the_builds_get_the_oneapi_environment(b: &B70, second: &Run) {
    let venv = b.venv().display().to_string();
    let oneapi = b.oneapi().display().to_string();
    let kernels = b.src("vllm-xpu-kernels").display().to_string();
    let ld = format!(
        "{kernels}/vllm_xpu_kernels:{venv}/lib:{venv}/lib/python3.12/site-packages/torch/lib:{oneapi}/lib"
    );
    // vars.sh was sourced once, by the oneapi-env step, with unset variables tolerated.
    let sourced: Vec<&str> = second
        .of("probe")
        .iter()
        .filter(|c| args(c) == ["vars.sh"])
        .map(|c| step_of(c))
        .collect();
    assert_eq!(sourced, ["oneapi-env"]);

    let builds: Vec<&Value> = second
        .calls
        .iter()
        .filter(|c| step_of(c).starts_with("build-"))
        .filter(|c| c["tool"] == "venv-pip" || c["tool"] == "venv-python")
        .collect();
    // vLLM's XPU requirements go through a copy without the prebuilt kernels wheel, made in a
    // temporary file: named here by what it is.
    let copy = "<vllm-xpu-requirements copy>";
    let summary: Vec<(&str, &str, Vec<&str>)> = builds
        .iter()
        .map(|c| {
            let a = args(c)
                .into_iter()
                .map(|a| {
                    if a.contains("/vllm-xpu-requirements.") {
                        copy
                    } else {
                        a
                    }
                })
                .collect();
            (step_of(c), c["tool"].as_str().unwrap(), a)
        })
        .collect();
    let constraints = recipe_dir()
        .join("minimax-m27-b70/constraints.txt")
        .display()
        .to_string();
    assert_eq!(
        summary,
        [
            (
                "build-kernels",
                "venv-pip",
                vec![
                    "install",
                    "--no-build-isolation",
                    "--no-deps",
                    "-v",
                    "-e",
                    "."
                ]
            ),
            (
                "build-llm-scaler",
                "venv-python",
                vec!["setup_moe_int4_only.py", "build_ext", "--inplace"]
            ),
            (
                "build-llm-scaler",
                "venv-python",
                vec!["setup_minimax_router_only.py", "build_ext", "--inplace"]
            ),
            (
                "build-vllm",
                "venv-pip",
                vec!["install", "-c", &constraints, "-r", copy]
            ),
            (
                "build-vllm",
                "venv-pip",
                vec!["install", "--no-build-isolation", "--no-deps", "-e", "."]
            ),
        ]
    );
    for c in &builds {
        let what = format!("{} {:?}", step_of(c), args(c));
        assert_eq!(env(c, "LD_LIBRARY_PATH"), ld, "{what}");
        assert_eq!(env(c, "SYCL_HOME"), oneapi, "{what}");
        assert_eq!(env(c, "TORCH_XPU_ARCH_LIST"), "bmg", "{what}");
        assert_eq!(env(c, "TORCH_VERSION"), "2.11.0+xpu", "{what}");
        assert!(env(c, "ONEAPI_VERSION").contains("2025.3.2"), "{what}");
        assert_eq!(env(c, "CMPLR_ROOT"), oneapi, "{what}: from vars.sh");
        // oneAPI's tools first, then the venv's (its pinned cmake and ninja), as the lab's build
        // had them.
        assert!(
            env(c, "PATH").starts_with(&format!(
                "{oneapi}/bin:{}/bin:",
                b.ws.join("venv").display()
            )),
            "{what}: {}",
            env(c, "PATH")
        );
    }
    let kernels_build = builds[0];
    assert_eq!(kernels_build["cwd"], kernels.as_str());
    assert_eq!(env(kernels_build, "MAX_JOBS"), "8");
    assert_eq!(env(kernels_build, "VLLM_TARGET_DEVICE"), "xpu");
    assert_eq!(
        env(kernels_build, "VLLM_CUTLASS_SRC_DIR"),
        b.src("sycl-tla").display().to_string()
    );
    assert!(b.src("sycl-tla/include/cutlass/cutlass.h").is_file());
    assert!(
        b.src("vllm-xpu-kernels/third_party/oneDNN/include/dnnl.h")
            .is_file()
    );
    for scaler_build in &builds[1..3] {
        assert_eq!(
            scaler_build["cwd"],
            b.src("llm-scaler").join(SCALER_DIR).display().to_string()
        );
        assert_eq!(env(scaler_build, "MAX_JOBS"), "4");
    }
    for vllm_build in &builds[3..] {
        assert_eq!(vllm_build["cwd"], b.src("vllm").display().to_string());
        assert_eq!(env(vllm_build, "VLLM_TARGET_DEVICE"), "xpu");
        assert_eq!(env(vllm_build, "MAX_JOBS"), "8");
    }
}

fn the_build_swap_is_made_and_removed(b: &B70, second: &Run) {
    let file = b.swap_file().display().to_string();
    let swap: Vec<(&str, &str, Vec<&str>)> = second
        .calls
        .iter()
        .filter(|c| {
            ["fallocate", "mkswap", "swapon", "swapoff"].contains(&c["tool"].as_str().unwrap())
                || (c["tool"] == "venv-pip" && step_of(c) == "build-kernels")
        })
        .map(|c| (step_of(c), c["tool"].as_str().unwrap(), args(c)))
        .collect();
    assert_eq!(
        swap,
        [
            (
                "build-kernels",
                "fallocate",
                vec!["-l", "160G", file.as_str()]
            ),
            ("build-kernels", "mkswap", vec![file.as_str()]),
            ("build-kernels", "swapon", vec![file.as_str()]),
            (
                "build-kernels",
                "venv-pip",
                vec![
                    "install",
                    "--no-build-isolation",
                    "--no-deps",
                    "-v",
                    "-e",
                    "."
                ]
            ),
            ("build-kernels", "swapoff", vec![file.as_str()]),
        ]
    );
    b.assert_no_swap_left();
}

fn runtime_quality_and_smoke_are_asserted(b: &B70, second: &Run) {
    // The runtime check saw the patched trees.
    let report = read_json(
        &b.ws
            .join("bench-results/minimax-m27-b70/runtime-identity.json"),
    );
    assert_eq!(report["problems"], json!([]), "{report:#}");
    assert_eq!(report["torch"], "2.11.0+xpu");
    assert_eq!(report["xpu_devices"], 4);
    assert_eq!(report["platform"], "xpu");
    let vllm_tree = std::fs::canonicalize(b.src("vllm")).unwrap();
    assert_eq!(
        report["vllm_path"],
        vllm_tree.join("vllm").display().to_string()
    );
    assert_eq!(
        report["patched_modules"][MINIMAX_M2],
        sha256(python_lines("promoted", 1).as_bytes()).as_str()
    );
    let scaler_tree = std::fs::canonicalize(b.src("llm-scaler")).unwrap();
    assert_eq!(
        report["custom_esimd_kernels_vllm.moe_int4_ops"],
        scaler_tree
            .join(SCALER_DIR)
            .join("python/custom_esimd_kernels_vllm/moe_int4_ops.py")
            .display()
            .to_string()
    );
    let kernels_tree = std::fs::canonicalize(b.src("vllm-xpu-kernels")).unwrap();
    assert_eq!(
        report["vllm_xpu_kernels"],
        kernels_tree
            .join("vllm_xpu_kernels/__init__.py")
            .display()
            .to_string()
    );
    // The router extension the bundle adds was built too.
    assert!(
        b.src("llm-scaler")
            .join(SCALER_DIR)
            .join("python/custom_esimd_kernels_vllm/minimax_router_ops.py")
            .is_file()
    );

    // The lock of what the venv holds.
    let freeze = std::fs::read_to_string(b.ws.join("locks/pip-freeze.txt")).unwrap();
    for line in [
        "torch==2.11.0+xpu",
        "triton-xpu==3.7.0",
        "transformers==5.7.0",
    ] {
        assert!(freeze.lines().any(|l| l == line), "{line} in\n{freeze}");
    }

    // The gate ran with the lab's configuration and its summary is kept.
    let strict = b.ws.join("bench-results/minimax-m27-b70/strict");
    let summaries: Vec<PathBuf> = files_under(&strict)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-summary.json"))
        .collect();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    let summary = read_json(&summaries[0]);
    let gate_env = &summary["candidate_env"];
    for (k, v) in [
        (
            "LABEL",
            "repro-minimax-moe-full-forward-customop-plus-output-ar",
        ),
        ("TP", "4"),
        ("MAX_MODEL_LEN", "2048"),
        ("REPEAT_ARITHMETIC_RUNS", "16"),
        ("BENCH_REPEATS", "4"),
        ("VLLM_XPU_ENABLE_XPU_GRAPH", "1"),
        ("FI_TCP_IFACE", "lo"),
        ("ZE_AFFINITY_MASK", "0,1,2,3"),
    ] {
        assert_eq!(gate_env[k], v, "{k} in the gate's environment");
    }
    assert_eq!(gate_env["PUBLISH_ROOT"], b.src("lab").display().to_string());
    // The engines import the llm-scaler kernels and the patched vLLM tree, as the lab's
    // runtime-env.sh has them, and find the built kernels' libraries first.
    // (The stand-in python that records it adds its own site-packages after them.)
    let imports = gate_env["PYTHONPATH"].as_str().unwrap_or_default();
    let first = format!(
        "{}:{}:",
        b.src("llm-scaler/vllm/custom-esimd-kernels-vllm/python")
            .display(),
        b.src("vllm").display()
    );
    assert!(imports.starts_with(&first), "{imports}");
    let libs = gate_env["LD_LIBRARY_PATH"].as_str().unwrap_or_default();
    assert!(
        libs.starts_with(
            &b.src("vllm-xpu-kernels/vllm_xpu_kernels")
                .display()
                .to_string()
        ),
        "{libs}"
    );

    // The smoke test served the model with the production shape and asserted the answers.
    let serve = second.of("venv-vllm");
    assert_eq!(serve.len(), 2, "{serve:?}");
    assert_eq!(step_of(serve[0]), "smoke");
    // Stopped by a signal it handles, not killed after the stop's 180 s.
    assert_eq!(args(serve[1]), ["stopped by", "SIGTERM"]);
    let a = args(serve[0]);
    let model = b.ws.join("llm-models/minimax-m2.7-int4-autoround");
    assert_eq!(a[..2], ["serve", model.display().to_string().as_str()]);
    let max_len = a.iter().position(|x| *x == "--max-model-len").unwrap();
    assert_eq!(a[max_len + 1], "32768");
    assert_eq!(env(serve[0], "VLLM_USE_V1"), "1");
    let urls: Vec<String> = second
        .of("curl")
        .iter()
        .filter(|c| step_of(c) == "smoke")
        .filter_map(|c| args(c).into_iter().find(|x| x.starts_with("http")))
        .map(str::to_owned)
        .collect();
    assert!(urls.contains(&"http://127.0.0.1:18080/v1/models".to_owned()));
    assert_eq!(
        urls.last().map(String::as_str),
        Some("http://127.0.0.1:18080/v1/completions")
    );
    let log = std::fs::read_to_string(b.ws.join("logs/minimax-m27-b70/smoke.log")).unwrap();
    assert!(log.contains("with max_model_len 32768"), "{log}");
    assert!(log.contains("smoke passed"), "{log}");
    assert!(
        !b.host.join("state/server.json").exists(),
        "the server was stopped"
    );
}

/// A kernels build that fails: its swap is removed all the same, and the next `up` resumes at
/// that step without rerunning anything before it.
#[test]
fn a_failed_kernels_build_removes_its_swap_and_the_next_up_resumes_there() {
    if !root() {
        return;
    }
    let b = B70::new(Memory::Small);
    b.up("a", 0);
    b.flag("fail", "pip-vllm-xpu-kernels", true);
    let failed = b.up("b", 3);
    assert_eq!(
        failed.started(),
        strings(&STEPS[2..=10]),
        "{}",
        failed.text()
    );
    assert!(
        failed.stdout().contains("step build-kernels failed"),
        "{}",
        failed.text()
    );
    let swap_tools: Vec<&str> = failed
        .calls
        .iter()
        .filter(|c| step_of(c) == "build-kernels")
        .map(|c| c["tool"].as_str().unwrap())
        .collect();
    assert_eq!(
        swap_tools,
        [
            "stat",
            "df",
            "fallocate",
            "mkswap",
            "swapon",
            "venv-pip",
            "swapoff"
        ]
    );
    b.assert_no_swap_left();

    b.flag("fail", "pip-vllm-xpu-kernels", false);
    let resumed = b.up("b", 0);
    assert_eq!(
        resumed.started(),
        strings(&STEPS[10..]),
        "{}",
        resumed.text()
    );
    assert_eq!(
        resumed.skipped(),
        strings(&STEPS[..10]),
        "{}",
        resumed.text()
    );
    for c in &resumed.calls {
        assert!(
            STEPS[10..].contains(&step_of(c)),
            "a step before the failed one ran again: {} {:?} in {}",
            c["tool"],
            args(c),
            step_of(c)
        );
    }
    b.assert_no_swap_left();
    b.assert_token_nowhere();
}

/// pinstack killed during the kernels build leaves the build and its swap behind; the next
/// `up` stops the build, removes the swap (the step's cleanup) and builds again.
#[test]
fn a_swap_left_by_a_killed_run_is_removed_by_the_next_run() {
    if !root() {
        return;
    }
    let b = B70::new(Memory::Small);
    b.up("a", 0);
    b.flag("hang", "pip-vllm-xpu-kernels", true);
    let mut child = b
        .command("b", &["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pinstack starts");
    wait_for(&b.host.join("hang/pip-vllm-xpu-kernels.started"));
    child.kill().unwrap();
    child.wait().unwrap();
    let file = b.swap_file().display().to_string();
    assert!(b.swap_file().exists(), "the killed run's swap file");
    assert_eq!(b.swaps_on().trim(), file);

    let next = b.up("b", 0);
    let text = next.text();
    assert!(text.contains("stopped process group"), "{text}");
    assert!(
        text.contains("ran the cleanup of step build-kernels, left behind by a killed run: ok"),
        "{text}"
    );
    assert_eq!(next.started(), strings(&STEPS[10..]), "{text}");
    let swap: Vec<(&str, Vec<&str>)> = next
        .calls
        .iter()
        .filter(|c| ["fallocate", "swapon", "swapoff"].contains(&c["tool"].as_str().unwrap()))
        .map(|c| (c["tool"].as_str().unwrap(), args(c)))
        .collect();
    assert_eq!(
        swap,
        [
            ("swapoff", vec![file.as_str()]),
            ("fallocate", vec!["-l", "160G", file.as_str()]),
            ("swapon", vec![file.as_str()]),
            ("swapoff", vec![file.as_str()]),
        ],
        "the old swap is removed first, the rebuild makes and removes its own"
    );
    b.assert_no_swap_left();
    b.assert_token_nowhere();
}

/// A new vLLM bundle reruns vLLM's steps and never the kernels or llm-scaler builds; on a host
/// with enough memory no build swap is made at all.
#[test]
fn a_new_vllm_bundle_reruns_only_the_vllm_steps_and_a_large_host_needs_no_swap() {
    if !root() {
        return;
    }
    let mut b = B70::new(Memory::Large);
    let (_, second) = b.bring_up();
    for tool in ["fallocate", "mkswap", "swapon", "swapoff"] {
        assert!(second.of(tool).is_empty(), "{tool} ran on a large host");
    }
    let log = std::fs::read_to_string(b.ws.join("logs/minimax-m27-b70/build-kernels.log")).unwrap();
    assert!(log.contains("no build swap needed"), "{log}");
    b.assert_no_swap_left();

    let diff = b.new_vllm_bundle("reworked");
    let rerun = b.up("b", 0);
    let vllm_steps = [
        "sources-vllm",
        "build-vllm",
        "verify",
        "quality-gate",
        "smoke",
    ];
    assert_eq!(rerun.started(), strings(&vllm_steps), "{}", rerun.text());
    for c in &rerun.calls {
        assert!(
            vllm_steps.contains(&step_of(c)),
            "{} {:?} ran in step {}",
            c["tool"],
            args(c),
            step_of(c)
        );
    }
    // The vLLM checkout is the pin plus the new bundle, as git applies it.
    assert_eq!(
        b.fx.worktree_tree(&b.src("vllm")),
        b.fx.oracle_tree(&b.vllm, &b.vllm_base, &[(&diff, None)])
    );
    let report = read_json(
        &b.ws
            .join("bench-results/minimax-m27-b70/runtime-identity.json"),
    );
    assert_eq!(
        report["patched_modules"][MINIMAX_M2],
        sha256(python_lines("reworked", 1).as_bytes()).as_str()
    );
    assert_eq!(b.up("b", 0).started(), Vec::<String>::new());

    // A gate run that writes no summary fails: an earlier run's passing summary never counts.
    let reset = b.command("b", &["reset", "quality-gate"]).output().unwrap();
    assert!(reset.status.success(), "{reset:?}");
    let quiet = b.up_with("b", &[("B70_GATE", "silent")], 3);
    assert_eq!(
        quiet.started(),
        strings(&["quality-gate"]),
        "{}",
        quiet.text()
    );
    assert!(
        quiet.text().contains("the gate wrote no new summary"),
        "{}",
        quiet.text()
    );
    // A gate that passed with vLLM imported from site-packages (as the lab's promoted run did)
    // did not test the patched tree: it fails.
    let elsewhere = b.up_with("b", &[("B70_GATE", "site-packages")], 3);
    assert_eq!(elsewhere.started(), strings(&["quality-gate"]));
    let log = std::fs::read_to_string(b.ws.join("logs/minimax-m27-b70/quality-gate.log")).unwrap();
    assert!(
        log.contains("vLLM was imported from outside the patched tree"),
        "{log}"
    );

    // A bundle whose XPU requirements pull the prebuilt kernels wheel over the source build is
    // caught before the gate.
    b.new_vllm_bundle("wheel");
    let shadowed = b.up("b", 3);
    assert_eq!(
        shadowed.started(),
        strings(&["sources-vllm", "build-vllm", "verify"]),
        "{}",
        shadowed.text()
    );
    let log = std::fs::read_to_string(b.ws.join("logs/minimax-m27-b70/verify.log")).unwrap();
    assert!(
        log.contains("vllm_xpu_kernels is imported from") && log.contains("not the build in"),
        "{log}"
    );
    b.assert_token_nowhere();
}

/// A torch that does not import fails the Python step, which exports the version every build is
/// keyed on, instead of exporting an empty one; nothing after it runs.
#[test]
fn a_torch_that_does_not_import_fails_the_python_step() {
    if !root() {
        return;
    }
    let b = B70::new(Memory::Small);
    b.up("a", 0);
    b.flag("broken", "torch", true);
    let run = b.up("b", 3);
    assert_eq!(run.started(), strings(&STEPS[2..=8]), "{}", run.text());
    assert!(
        run.stdout().contains("step python failed"),
        "{}",
        run.text()
    );
    let log = std::fs::read_to_string(b.ws.join("logs/minimax-m27-b70/python.log")).unwrap();
    assert!(log.contains("ImportError"), "{log}");
    assert!(run.calls.iter().all(|c| step_of(c) != "oneapi-env"));
    b.assert_token_nowhere();
}

/// The build swap's file system and room are checked before anything is written: a file system
/// Linux cannot swap to, or too little room, fails the step at once and leaves nothing; on
/// btrfs the file is made without copy-on-write first, as swap there needs.
#[test]
fn the_build_swap_checks_its_file_system_and_room_first() {
    if !root() {
        return;
    }
    let b = B70::new(Memory::Small);
    b.up("a", 0);
    let file = b.swap_file().display().to_string();
    let tools = |run: &Run| -> Vec<(String, Vec<String>)> {
        run.calls
            .iter()
            .filter(|c| step_of(c) == "build-kernels")
            .map(|c| {
                let a = args(c).iter().map(|s| s.to_string()).collect();
                (c["tool"].as_str().unwrap().to_owned(), a)
            })
            .collect()
    };
    for (env, says) in [
        (("B70_FSTYPE", "zfs"), "where Linux cannot swap to a file"),
        (("B70_DISK_FREE_GB", "100"), "needs 172 GB free"),
    ] {
        let failed = b.up_with("b", &[env], 3);
        assert!(failed.text().contains(says), "{env:?}: {}", failed.text());
        let ran: Vec<String> = tools(&failed).into_iter().map(|(t, _)| t).collect();
        assert!(
            !ran.iter().any(|t| t == "fallocate" || t == "venv-pip"),
            "{env:?}: {ran:?}"
        );
        assert!(!b.swap_file().exists(), "{env:?}");
        b.assert_no_swap_left();
    }
    let built = b.up_with("b", &[("B70_FSTYPE", "btrfs")], 0);
    let made: Vec<(String, Vec<String>)> = tools(&built)
        .into_iter()
        .filter(|(t, _)| ["chattr", "fallocate", "mkswap", "swapon"].contains(&t.as_str()))
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        made,
        [
            ("chattr".to_owned(), s(&["+C", &file])),
            ("fallocate".to_owned(), s(&["-l", "160G", &file])),
            ("mkswap".to_owned(), s(&[&file])),
            ("swapon".to_owned(), s(&[&file])),
        ]
    );
    b.assert_no_swap_left();
}

/// A host already past a recorded GPU package version keeps it: apt is not allowed to go back
/// unless asked (`B70_APT_ALLOW_DOWNGRADES=1`), and the step says both ways out.
#[test]
fn an_installed_driver_newer_than_the_recorded_one_is_not_downgraded_unless_asked() {
    if !root() {
        return;
    }
    let b = B70::new(Memory::Small);
    b.flag("past", "intel-opencl-icd", true);
    let refused = b.up("a", 3);
    assert_eq!(
        refused.started(),
        strings(&STEPS[..2]),
        "{}",
        refused.text()
    );
    let log =
        std::fs::read_to_string(b.ws.join("logs/minimax-m27-b70/system-packages.log")).unwrap();
    assert!(
        log.contains("DOWNGRADED") && log.contains("B70_APT_ALLOW_DOWNGRADES=1"),
        "{log}"
    );
    let asked = b.up_with("a", &[("B70_APT_ALLOW_DOWNGRADES", "1")], 0);
    let installs: Vec<Vec<&str>> = asked
        .of("apt-get")
        .iter()
        .map(|c| args(c))
        .filter(|a| a.contains(&"intel-opencl-icd=26.18.38308.1-0"))
        .collect();
    assert_eq!(installs.len(), 1, "{installs:?}");
    assert!(installs[0].contains(&"--allow-downgrades"), "{installs:?}");
}
