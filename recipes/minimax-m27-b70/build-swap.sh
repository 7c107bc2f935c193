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
    size=${SWAP_SIZE:?}
    if [ -e "$file" ]; then
      echo "build-swap: $file exists and pinstack did not make it; move it or set SWAP_FILE" >&2
      exit 1
    fi
    dir=$(dirname "$file")
    # Checked before anything is written: a file system Linux cannot swap to, or too little
    # room, would otherwise fail after minutes of writing, or fill the disk the build needs.
    fs=$(stat -f -c %T "$dir")
    case "$fs" in
      zfs|tmpfs|nfs*|cifs|smb*|fuse*|overlay*|squashfs)
        echo "build-swap: $dir is on $fs, where Linux cannot swap to a file; set SWAP_FILE to a file on ext4, xfs or btrfs" >&2
        exit 1 ;;
    esac
    # SWAP_SIZE is in GiB (fallocate's G); df counts GB.
    need_gb=$(( ${size%G} * 1074 / 1000 + 1 ))
    free_gb=$(df -P -B1000000000 "$dir" | awk 'NR == 2 { print $4 }')
    if [ "$free_gb" -lt "$need_gb" ]; then
      echo "build-swap: the ${size} swap file needs ${need_gb} GB free on $dir, which has ${free_gb} GB; free some, or set SWAP_FILE to a file on another disk" >&2
      exit 1
    fi
    mkdir -p "$(dirname "$marker")"
    echo "$file" > "$marker"
    : > "$file"
    if [ "$fs" = btrfs ]; then
      # A btrfs swap file must not be copy-on-write (set while it is still empty).
      chattr +C "$file"
    fi
    fallocate -l "$size" "$file"
    chmod 600 "$file"
    mkswap "$file" > /dev/null
    swapon "$file"
    echo "build swap $file (${SWAP_SIZE}) on: memory + swap was ${have_gib} GiB, the build needs ${need_gib}"
    ;;
  *) echo "usage: build-swap.sh on|off MARKER [NEED_GIB]" >&2; exit 2 ;;
esac
