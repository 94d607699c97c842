#!/usr/bin/env bash
# The load benchmark (examples/loadbench): mcpgate, minimal and full, against a direct call
# and against nginx in front of the same upstream, both eras. Prints a table and writes
# target/bench/loadbench.json. `scripts/bench.sh --quick` checks correctness under load only.
# Other arguments go to the benchmark (e.g. --eras modern).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-bench.sh
if [[ " $* " == *" --quick "* ]]; then
  # Correctness only: the debug build the tests use is enough.
  cargo build --locked --quiet --bin mcpgate --example loadbench
  exec target/debug/examples/loadbench --gateway target/debug/mcpgate "$@"
fi
cargo build --locked --release --quiet --bin mcpgate --example loadbench
exec target/release/examples/loadbench --gateway target/release/mcpgate "$@"
