#!/usr/bin/env bash
# Installs what the load benchmark drives and compares against: nginx (Debian package), the
# plain reverse-proxy baseline, and oha (crates.io), the load generator, into .bench/bin.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

OHA_VERSION=1.16.0

if [ ! -x /usr/sbin/nginx ]; then
  echo "setup-bench: installing nginx (Debian package nginx-light)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends nginx-light >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends nginx-light >/dev/null; }
fi

if ! .bench/bin/oha --version 2>/dev/null | grep -q "$OHA_VERSION"; then
  echo "setup-bench: installing oha $OHA_VERSION into .bench (a few minutes, once)" >&2
  cargo install oha --version "$OHA_VERSION" --locked --root .bench --quiet
fi
