#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# Installs what the tests need (Python venv and npm packages with real MCP peers), then runs
# formatting and lint checks, unit and integration tests, docs, the release build the Dockerfile
# makes, the end-to-end tests (with the Dockerfile lint and the release binary checks), and the
# load benchmark in its --quick mode (correctness under load, never timing).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-e2e.sh

echo "== cargo fmt" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test" >&2
cargo test --all-targets --locked
echo "== cargo doc" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
echo "== release build (scripts/build-release.sh, as the Dockerfile makes it)" >&2
scripts/build-release.sh
echo "== end-to-end (real MCP servers and SDK clients; the Dockerfile and the release binary)" >&2
cargo build --locked --quiet
.e2e/venv/bin/pytest tests/e2e -q -p no:cacheprovider --timeout=300
echo "== load benchmark, --quick (every configuration answers correctly under load)" >&2
scripts/bench.sh --quick
