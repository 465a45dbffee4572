#!/usr/bin/env bash
# Everything CI runs, from a fresh clone: start (and install) the services the
# tests need, check formatting, the dependencies' licenses and sources
# (cargo-deny, installed if missing), and lints, build the plugin libraries the
# tests load, and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# A CI run builds once: incremental-compilation caches would only cost disk.
export CARGO_INCREMENTAL=0

scripts/services.sh

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo deny (licenses, bans, sources; see scripts/deny.sh for advisories)"
scripts/deny.sh
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (plugin libraries the tests load)"
cargo build --workspace
echo "== cargo test"
cargo test --workspace
# The facade's feature flags link the Supabase and Redis plugins into the host.
echo "== cargo test (features storage-supabase, storage-redis)"
cargo test -p p2p-ai-agents --features storage-supabase,storage-redis --test builtin_plugins
