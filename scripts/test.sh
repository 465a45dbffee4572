#!/usr/bin/env bash
# Everything CI runs, from a fresh clone: start (and install) the services the
# tests need, check formatting and lints, build the plugin libraries the tests
# load, and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo build (plugin libraries)"
cargo build --workspace --all-features
echo "== cargo test"
cargo test --workspace --all-features
