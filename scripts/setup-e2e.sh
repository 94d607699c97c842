#!/usr/bin/env bash
# Installs the real MCP peers the end-to-end tests and the demo use: a Python venv with the
# official Python SDK and mcp-server-time (PyPI), and the official TypeScript SDK with
# server-everything and server-memory (npm). Idempotent: re-runs only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.e2e/venv
stamp=$venv/.requirements
if [ ! -x "$venv/bin/python" ] || ! cmp -s tests/e2e/requirements.txt "$stamp"; then
  echo "setup-e2e: installing Python packages into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
  cp tests/e2e/requirements.txt "$stamp"
fi

if [ ! -d tests/e2e/node_modules ] || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules ]; then
  echo "setup-e2e: installing npm packages into tests/e2e/node_modules" >&2
  if [ -f tests/e2e/package-lock.json ]; then
    npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error
  else
    npm install --prefix tests/e2e --no-audit --no-fund --loglevel=error
  fi
  touch tests/e2e/node_modules
fi
