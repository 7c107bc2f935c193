#!/usr/bin/env python3
"""The runtime check after the native builds: devices, platform, which code is imported, the
flags that need out-of-tree modules, and the packages in the venv.

Usage: runtime-check.py --src SRC --devices N --report FILE
"""
import argparse
import hashlib
import importlib
import importlib.metadata as md
import json
import os
import sys

# Packages for CUDA hosts that the lab's older venv pulled in; none belongs on an XPU host.
CUDA_ONLY = [
    "cuda-bindings",
    "cuda-python",
    "flashinfer-python",
    "nvidia-cutlass-dsl",
    "quack-kernels",
    "tilelang",
    "apache-tvm-ffi",
]

# Flag -> the module it needs (the patch silently turns the feature off without it).
FLAG_MODULES = {
    "VLLM_MINIMAX_QK_RMS_XPU_HELPER": "minimax_qk_rms_xpu",
}

# Patched vLLM modules whose identity is recorded (as the lab's inspect script did).
PATCHED = [
    "vllm/model_executor/models/minimax_m2.py",
    "vllm/model_executor/layers/fused_moe/runner/moe_runner.py",
    "vllm/model_executor/layers/quantization/moe_wna16.py",
    "vllm/platforms/xpu.py",
    "vllm/v1/worker/gpu_model_runner.py",
    "vllm/distributed/parallel_state.py",
]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def installed(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--report", required=True)
    args = ap.parse_args()
    problems = []
    report = {}

    import torch

    report["torch"] = torch.__version__
    if torch.__version__ != "2.11.0+xpu":
        problems.append(f"torch is {torch.__version__}, not 2.11.0+xpu")
    count = torch.xpu.device_count() if torch.xpu.is_available() else 0
    report["xpu_devices"] = count
    if count != args.devices:
        problems.append(
            f"torch sees {count} XPU devices, not {args.devices} (is LD_LIBRARY_PATH from the oneapi-env step?)"
        )

    from vllm.platforms import current_platform

    report["platform"] = current_platform.device_type
    if current_platform.device_type != "xpu":
        problems.append(f"vLLM's platform is {current_platform.device_type!r}, not 'xpu'")

    tree = os.path.realpath(os.path.join(args.src, "vllm"))
    import vllm

    vllm_dir = os.path.realpath(os.path.dirname(vllm.__file__))
    report["vllm_path"] = vllm_dir
    if not vllm_dir.startswith(tree + os.sep):
        problems.append(f"vllm is imported from {vllm_dir}, not the patched tree {tree}")
    identity = {}
    for rel in PATCHED:
        path = os.path.join(tree, rel)
        identity[rel] = sha256(path) if os.path.isfile(path) else None
    report["patched_modules"] = identity

    # The native modules must be the ones built here from the pinned trees, not a wheel that
    # shadows them (the prebuilt vllm-xpu-kernels wheel is ABI-incompatible with this torch).
    for module, repo in [
        ("vllm_xpu_kernels", "vllm-xpu-kernels"),
        ("custom_esimd_kernels_vllm.moe_int4_ops", "llm-scaler"),
    ]:
        try:
            m = importlib.import_module(module)
            report[module] = os.path.realpath(m.__file__)
        except Exception as e:  # noqa: BLE001 - the message is the report
            problems.append(f"cannot import {module}: {e}")
            continue
        built = os.path.realpath(os.path.join(args.src, repo))
        if not report[module].startswith(built + os.sep):
            problems.append(f"{module} is imported from {report[module]}, not the build in {built}")

    for flag, module in FLAG_MODULES.items():
        if os.environ.get(flag) == "1":
            try:
                importlib.import_module(module)
            except Exception as e:  # noqa: BLE001
                problems.append(f"{flag}=1 needs the module {module}, which does not import: {e}")

    for name in CUDA_ONLY:
        if installed(name):
            problems.append(f"CUDA-only package {name} {installed(name)} is in the venv")
    if not installed("triton-xpu"):
        problems.append("triton-xpu is not installed")
    if installed("triton"):
        problems.append(f"plain triton {installed('triton')} is installed beside triton-xpu")

    report["problems"] = problems
    os.makedirs(os.path.dirname(args.report), exist_ok=True)
    with open(args.report, "w") as f:
        json.dump(report, f, indent=2)
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"runtime ok: {count} XPU devices, vllm from {vllm_dir}")


if __name__ == "__main__":
    main()
