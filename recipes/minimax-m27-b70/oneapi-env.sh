#!/usr/bin/env bash
# Computes the oneAPI 2025.3 environment once, explicitly, and prints it as NAME=VALUE lines
# for every later step (pinstack's $PINSTACK_EXPORT). No later step sources vars.sh itself.
#
# - Only <oneapi>/env/vars.sh, never the umbrella setvars.sh (it selects 2026.0).
# - vars.sh aborts silently under unset-variable checking (SETVARS_CALL, OCL_ICD_FILENAMES):
#   it is sourced with checking off, in a subshell, and a failure is fatal.
# - vars.sh replaces LD_LIBRARY_PATH (torch then sees 0 devices): LD_LIBRARY_PATH is composed
#   afterwards, in the order the stack needs: the vllm_xpu_kernels package folder, <venv>/lib,
#   torch/lib, <oneapi>/lib.
# - The venv's bin folder is on PATH under oneAPI's, as the lab's build had it (it activated the
#   venv, then sourced vars.sh): the builds use the venv's pinned cmake and ninja, not the
#   system's.
# Usage: oneapi-env.sh ONEAPI VENV VLLM_XPU_KERNELS_SRC
set -euo pipefail
oneapi=$1
venv=$2
kernels=$3

if [ ! -f "$oneapi/env/vars.sh" ]; then
  echo "oneapi-env: $oneapi/env/vars.sh not found: install intel-oneapi-dpcpp-cpp-2025.3" >&2
  exit 1
fi
version=$("$oneapi/bin/icpx" --version | head -n 1)
case "$version" in
  *2025.3.*) ;;
  *) echo "oneapi-env: $oneapi/bin/icpx is \"$version\", not 2025.3" >&2; exit 1 ;;
esac

# The environment before and after, held in memory (base64, as shell variables cannot hold NUL):
# it carries the caller's secrets (HF_TOKEN), which must never reach a file, a temporary one
# included.
snapshot() { env -0 | sort -z | base64 -w 0; }
before=$(snapshot)
after=$(
  set +u
  export PATH=$venv/bin:$PATH
  # shellcheck disable=SC1091
  . "$oneapi/env/vars.sh" > /dev/null || exit 1
  snapshot
) || { echo "oneapi-env: sourcing $oneapi/env/vars.sh failed" >&2; exit 1; }

# Every variable vars.sh set or changed, but LD_LIBRARY_PATH (composed below).
comm -z -13 <(printf '%s' "$before" | base64 -d) <(printf '%s' "$after" | base64 -d) \
  | tr '\0' '\n' | grep -E '^[A-Za-z_][A-Za-z0-9_]*=' \
  | grep -v -E '^(LD_LIBRARY_PATH|SHLVL|_|OLDPWD|PWD)=' || true

site=$venv/lib/python3.12/site-packages
echo "LD_LIBRARY_PATH=$kernels/vllm_xpu_kernels:$venv/lib:$site/torch/lib:$oneapi/lib"
echo "ONEAPI_VERSION=$version"
