#!/usr/bin/env python3
"""Verifies the downloaded model file by file: every expected file present, every LFS file at
its recorded size and sha256 (from the lab's model pin, read from the pinned lab-hardened
checkout), the recorded total, and the small files' known sha256 prefixes.

Usage: verify-model.py MODEL_DIR MANIFEST LAB_HARDENED_CHECKOUT
"""
import hashlib
import json
import os
import sys


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(16 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    model, manifest_path, hardened = sys.argv[1:4]
    manifest = json.load(open(manifest_path))
    problems = []
    for name in manifest["files"]:
        if not os.path.isfile(os.path.join(model, name)):
            problems.append(f"missing: {name}")
    pin_path = os.path.join(hardened, manifest["lfs_hashes"]["path"])
    pin = json.load(open(pin_path))
    if pin.get("revision") != manifest["revision"]:
        problems.append(
            f"the model pin records revision {pin.get('revision')}, the manifest {manifest['revision']}"
        )
    lfs = pin["lfs_files"]
    if len(lfs) != manifest["lfs_files"]:
        problems.append(f"the model pin lists {len(lfs)} LFS files, expected {manifest['lfs_files']}")
    total = 0
    for entry in lfs:
        path = os.path.join(model, entry["path"])
        if not os.path.isfile(path):
            problems.append(f"missing LFS file: {entry['path']}")
            continue
        size = os.path.getsize(path)
        total += size
        if size != entry["bytes"]:
            problems.append(f"{entry['path']}: {size} bytes, expected {entry['bytes']}")
            continue
        digest = sha256(path)
        if digest != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 {digest}, expected {entry['sha256']}")
        else:
            print(f"ok  {entry['path']}", flush=True)
    if total != manifest["total_lfs_bytes"]:
        problems.append(f"LFS payload is {total} bytes, expected {manifest['total_lfs_bytes']}")
    for name, prefix in manifest.get("sha256_prefixes", {}).items():
        path = os.path.join(model, name)
        if os.path.isfile(path) and not sha256(path).startswith(prefix):
            problems.append(f"{name}: sha256 does not start with {prefix}")
    if problems:
        for p in problems:
            print(f"FAIL {p}", file=sys.stderr)
        sys.exit(1)
    print(f"model verified: {len(lfs)} LFS files, {total} bytes")


if __name__ == "__main__":
    main()
