#!/usr/bin/env bash
# Verify every bundle in pins.yaml still applies to its pin: the CI entry point for any
# repository that keeps a pins.yaml. Needs git and network access to the pinned repositories;
# needs no GPU, no Python and no build tools.
#
#   ci/check.sh [PINS_FILE]            (default: pins.yaml)
#
# Environment:
#   PINSTACK        the pinstack binary to use (default: pinstack on PATH, else built from
#                   this checkout when it is pinstack's own repository)
#   PINSTACK_CACHE  the object cache; keep it between runs to fetch nothing twice
#   JUNIT_OUT       where to write the JUnit report (default: pinstack-check.xml)
set -euo pipefail

pins=${1:-pins.yaml}
junit=${JUNIT_OUT:-pinstack-check.xml}
here=$(cd "$(dirname "$0")/.." && pwd)

if [ -n "${PINSTACK:-}" ]; then
  bin=$PINSTACK
elif command -v pinstack >/dev/null; then
  bin=pinstack
elif [ -f "$here/Cargo.toml" ] && grep -q '^name = "pinstack"' "$here/Cargo.toml"; then
  cargo build --release --quiet --manifest-path "$here/Cargo.toml"
  bin=$here/target/release/pinstack
else
  echo "ci/check.sh: pinstack not found; install it or set PINSTACK" >&2
  exit 3
fi

# Exit codes: 0 all as pinned, 1 a bundle does not apply or a hash/tree differs,
# 2 invalid pins or bundles, 3 a fetch failed.
exec "$bin" --pins "$pins" check --junit "$junit"
