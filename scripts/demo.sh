#!/usr/bin/env bash
# `make demo`: start the platform in the background, deploy the example app, print URLs to try.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export SHIPYARD_HOME="${SHIPYARD_HOME:-$HOME/.shipyard}"
PORT="${SHIPYARD_PORT:-8787}"

if ! curl -fsS "http://127.0.0.1:${PORT}/api/health" >/dev/null 2>&1; then
  mkdir -p "$SHIPYARD_HOME"
  nohup "$BIN/shipyard" server --port "$PORT" >"$SHIPYARD_HOME/server.log" 2>&1 &
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:${PORT}/api/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  echo "Started shipyard server on port ${PORT} (logs: $SHIPYARD_HOME/server.log)"
fi

"$BIN/shipyard" deploy examples/square_get.py --name demo
"$BIN/shipyard" deploy examples/fastapi_app.py --name demo-fastapi
echo
echo "Try it (the first request starts a container, later ones reuse it):"
echo "  curl 'http://shipyard--demo-square.localhost:${PORT}/?x=42'"
echo "  curl 'http://127.0.0.1:${PORT}/fn/shipyard--demo-square/?x=42'      # path form"
echo "  curl 'http://shipyard--demo-fastapi-fastapi-app.localhost:${PORT}/bar?arg=you'"
echo
echo "Answer from the running platform:"
curl -sS "http://127.0.0.1:${PORT}/fn/shipyard--demo-square/?x=42"; echo
# LLM endpoint: the bundled SmolLM2-135M GGUF on CPU, behind a proxy token of the main environment.
MODEL=HuggingFaceTB/SmolLM2-135M-Instruct
if ! "$BIN/shipyard" endpoint list --json | grep -q '"name": "smollm2-135m-instruct"'; then
  "$BIN/shipyard" endpoint create --model "$MODEL" --wait
fi
TOKEN_OUT="$("$BIN/shipyard" workspace proxy-tokens create)"
KEY="$(echo "$TOKEN_OUT" | sed -n 's/^Modal-Key: //p')"
SECRET="$(echo "$TOKEN_OUT" | sed -n 's/^Modal-Secret: //p')"
EP="http://127.0.0.1:${PORT}/fn/shipyard--smollm2-135m-instruct"
echo
echo "LLM endpoint (OpenAI API under /v1; also http://shipyard--smollm2-135m-instruct.localhost:${PORT}/v1):"
cat <<EOF
  curl $EP/v1/chat/completions \\
    -H 'Modal-Key: $KEY' -H 'Modal-Secret: $SECRET' -H 'Content-Type: application/json' \\
    -d '{"model": "$MODEL", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 32}'

  $BIN/python - <<'PY'
from openai import OpenAI
client = OpenAI(base_url="$EP/v1", api_key="unused",
                default_headers={"Modal-Key": "$KEY", "Modal-Secret": "$SECRET"})
reply = client.chat.completions.create(model="$MODEL", max_tokens=32,
                                       messages=[{"role": "user", "content": "Hello!"}])
print(reply.choices[0].message.content, reply.usage)
PY
EOF
echo "Answer from the endpoint:"
curl -sS "$EP/v1/chat/completions" -H "Modal-Key: $KEY" -H "Modal-Secret: $SECRET" \
  -H 'Content-Type: application/json' \
  -d "{\"model\": \"$MODEL\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}], \"max_tokens\": 32}"
echo
echo "Metered usage: $BIN/shipyard usage"
echo "Stop the server with: kill \$(python3 -c 'import json;print(json.load(open(\"$SHIPYARD_HOME/server.json\"))[\"pid\"])')"
