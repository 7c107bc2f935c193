#!/usr/bin/env bash
# A temporary swap file for the vllm-xpu-kernels build, whose worst compiler process needs
# more than 120 GB. It is made only when memory plus swap is below the need, recorded in a
# marker, and removed only if this marker says pinstack made it: never a file it did not
# create. `on` also removes a swap left behind by a crash (the marker is still there).
#
# Usage: build-swap.sh on MARKER NEED_GIB [HOST_ROOT]   (SWAP_FILE, SWAP_SIZE from the environment)
#        build-swap.sh off MARKER
set -euo pipefail
action=$1
marker=$2

off() {
  [ -f "$marker" ] || return 0
  local file
  file=$(cat "$marker")
  if [ -n "$file" ] && [ -e "$file" ]; then
    swapoff "$file" 2>/dev/null || true
    rm -f -- "$file"
    echo "removed the build swap $file"
  fi
  rm -f -- "$marker"
}

case "$action" in
  off) off ;;
  on)
    need_gib=$3
    meminfo=${4:-/}/proc/meminfo
    off   # a swap left behind by a killed run
    mem_kb=$(awk '/^MemTotal:/ { print $2 }' "$meminfo")
    swap_kb=$(awk '/^SwapTotal:/ { print $2 }' "$meminfo")
    have_gib=$(( (mem_kb + swap_kb) / 1024 / 1024 ))
    if [ "$have_gib" -ge "$need_gib" ]; then
      echo "memory + swap is ${have_gib} GiB: no build swap needed"
      exit 0
    fi
    file=${SWAP_FILE:?}
    if [ -e "$file" ]; then
      echo "build-swap: $file exists and pinstack did not make it; move it or set SWAP_FILE" >&2
      exit 1
    fi
    mkdir -p "$(dirname "$marker")"
    echo "$file" > "$marker"
    fs=$(stat -f -c %T "$(dirname "$file")")
    case "$fs" in
      btrfs|zfs|tmpfs|nfs*)
        # fallocate'd swap is refused on these: write it out instead.
        dd if=/dev/zero of="$file" bs=1M count=$(( ${SWAP_SIZE%G} * 1024 )) status=none ;;
      *)
        fallocate -l "${SWAP_SIZE:?}" "$file" ;;
    esac
    chmod 600 "$file"
    mkswap "$file" > /dev/null
    swapon "$file"
    echo "build swap $file (${SWAP_SIZE}) on: memory + swap was ${have_gib} GiB, the build needs ${need_gib}"
    ;;
  *) echo "usage: build-swap.sh on|off MARKER [NEED_GIB]" >&2; exit 2 ;;
esac
