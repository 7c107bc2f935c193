#!/usr/bin/env bash
# Serves the model once with the production (c1) shape on loopback and asserts, not prints:
# /health is 200, /v1/models reports the context length, and a temperature-0 completion of the
# reference prompt contains 42. The server is stopped afterwards, whatever happened.
# Usage: smoke.sh VENV MODEL CONTEXT RUNTIME_ENV SRC
set -euo pipefail
venv=$1
model=$2
context=$3
runtime_env=$4
src=$5
port=${SMOKE_PORT:-18080}
base=http://127.0.0.1:$port

set -a
# shellcheck disable=SC1090
. "$runtime_env"
set +a
export PYTHONPATH=$src/llm-scaler/vllm/custom-esimd-kernels-vllm/python:$src/vllm
log=$(mktemp)
setsid "$venv/bin/vllm" serve "$model" --host 127.0.0.1 --port "$port" --trust-remote-code \
  --dtype float16 --tensor-parallel-size 4 --distributed-executor-backend mp \
  --max-model-len "$context" --max-num-batched-tokens 512 --max-num-seqs 1 \
  --gpu-memory-utilization 0.95 --block-size 256 --no-enable-prefix-caching \
  --compilation-config '{"use_inductor_graph_partition":true,"compile_sizes":[1],"cudagraph_mode":"PIECEWISE"}' \
  > "$log" 2>&1 &
server=$!
stop() {
  # SIGTERM, not SIGINT: a background job of a non-interactive shell starts with SIGINT
  # ignored, so the server would never see a Ctrl-C and the stop would wait its 180 s out.
  kill -TERM -- "-$server" 2>/dev/null || true
  for _ in $(seq 1 180); do kill -0 "$server" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$server" 2>/dev/null || true
  rm -f "$log"
}
trap stop EXIT

# Startup compiles and captures graphs: minutes, not seconds (the c1 unit allows 1800 s).
for _ in $(seq 1 900); do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "smoke: the server exited during startup; its last lines:" >&2
    tail -n 120 "$log" >&2
    exit 1
  fi
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/health")" = 200 ]; then
    break
  fi
  sleep 2
done
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/health")
[ "$code" = 200 ] || { echo "smoke: /health is $code after 30 minutes" >&2; tail -n 160 "$log" >&2; exit 1; }

curl -sf "$base/v1/models" | python3 -c '
import json, sys
want = int(sys.argv[1])
data = json.load(sys.stdin)["data"]
assert len(data) == 1, f"expected one model, got {len(data)}"
got = data[0].get("max_model_len")
assert got == want, f"max_model_len is {got}, expected {want}"
served = data[0]["id"]
print(f"/v1/models: {served} with max_model_len {got}")
' "$context"

curl -sf "$base/v1/completions" -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"prompt\": \"Return only the number 42:\", \"max_tokens\": 16, \"temperature\": 0}" \
  | python3 -c '
import json, sys
text = json.load(sys.stdin)["choices"][0]["text"]
assert "42" in text, f"the completion is {text!r}, which does not contain 42"
print(f"completion: {text.strip()!r}")
'
echo "smoke passed"
