#!/usr/bin/env bash
# Downloads the model at its pinned revision, resumably, with retries (the lab's
# 02-download-model.sh, pinned). HF_TOKEN comes from the caller's environment only; it is never
# written anywhere. Usage: download-model.sh HUB_VENV MODEL_DIR MANIFEST
set -euo pipefail
hub_venv=$1
model=$2
manifest=$3

repo=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["repository"])' "$manifest")
revision=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["revision"])' "$manifest")

# A download environment of its own, with the hub client pinned: the lab installed it unpinned
# into the serving venv.
if [ ! -x "$hub_venv/bin/hf" ]; then
  python3 -m venv "$hub_venv"
fi
"$hub_venv/bin/pip" install --quiet huggingface_hub==1.13.0 hf-xet==1.4.3

mkdir -p "$model"
tries=${HF_DOWNLOAD_RETRIES:-20}
for ((i = 1; i <= tries; i++)); do
  # Resumable: files already complete are skipped, partial ones continue.
  if "$hub_venv/bin/hf" download "$repo" --revision "$revision" --local-dir "$model" \
      --max-workers "${HF_DOWNLOAD_WORKERS:-4}"; then
    echo "downloaded $repo@$revision into $model"
    exit 0
  fi
  echo "download attempt $i of $tries failed; retrying in 15 s" >&2
  sleep 15
done
echo "the download failed $tries times" >&2
exit 1
