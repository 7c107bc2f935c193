#!/usr/bin/env bash
# The storage layout under the workspace root (the lab's 01-prepare-storage.sh). It checks the
# mount and the free space, and changes the owner only of folders it creates, never
# recursively over an existing 100 GB tree. Usage: storage.sh ROOT USER
set -euo pipefail
root=$1
user=$2

mkdir -p "$root"
echo "workspace root $root on $(df -P "$root" | awk 'NR == 2 { print $6 " (" $1 ")" }')"
free_gb=$(df -P -B1000000000 "$root" | awk 'NR == 2 { print $4 }')
echo "free: ${free_gb} GB"
if [ "$free_gb" -lt 393 ]; then
  echo "storage: only ${free_gb} GB free under $root; the bring-up needs about 550 GB" >&2
  exit 1
fi
for d in llm-models llm-cache/hf bench-results vllm-cache src locks; do
  if [ ! -d "$root/$d" ]; then
    mkdir -p "$root/$d"
    chown "$user": "$root/$d"
    echo "created $root/$d (owner $user)"
  fi
done
