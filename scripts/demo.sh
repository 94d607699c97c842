#!/usr/bin/env bash
# Starts a demo gateway at http://127.0.0.1:8080/mcp in front of three real MCP servers
# (examples/demo.yaml). Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-e2e.sh
cargo build --locked --quiet

export PATH="$PWD/.e2e/venv/bin:$PWD/tests/e2e/node_modules/.bin:$PATH"
export EVERYTHING_PORT="${EVERYTHING_PORT:-3001}"
export MCPGATE_DEMO_DIR="$PWD/.e2e/demo"
mkdir -p "$MCPGATE_DEMO_DIR"

PORT="$EVERYTHING_PORT" mcp-server-everything streamableHttp >"$MCPGATE_DEMO_DIR/everything.log" 2>&1 &
everything=$!
trap 'kill "$everything" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$EVERYTHING_PORT") 2>/dev/null && break
  sleep 0.1
done

cat <<MSG
mcpgate demo: time (stdio, PyPI), everything (Streamable HTTP, npm), memory (stdio, npm)
  MCP endpoint:  http://127.0.0.1:8080/mcp
  metrics:       http://127.0.0.1:9090/metrics
Point any MCP client at the endpoint; from another terminal, for example:
  .e2e/venv/bin/python examples/client.py http://127.0.0.1:8080/mcp
MSG
target/debug/mcpgate serve --config examples/demo.yaml
