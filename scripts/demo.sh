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
echo "Stop the server with: kill \$(python3 -c 'import json;print(json.load(open(\"$SHIPYARD_HOME/server.json\"))[\"pid\"])')"
