#!/usr/bin/env bash
# The release build of what ships: optimized, dependencies exactly as in Cargo.lock, no debug
# info (Cargo profile `dist`). The Dockerfile runs this script, and so does the test command,
# so the binary the tests check is built the way the image's is. Output: target/dist/mcpgate.
# The git revision comes from git, or from MCPGATE_GIT_REVISION (an image build has no .git).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --profile dist --bin mcpgate
