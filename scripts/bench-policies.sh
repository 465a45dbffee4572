#!/usr/bin/env bash
# Policy costs before and after a change, measured in one run:
#   scripts/bench-policies.sh OLD_REV [ROUNDS]
# Builds benches/policies.rs (release) at the working tree and at OLD_REV
# (this tree's bench file is copied there, so both run the same code), runs the two
# binaries round by round (old, new, old, new, ...) and prints, per
# scenario, the median ns/op of each and the median of the per-round
# new/old ratios (below 1.0: the new code is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
old_rev=${1:?usage: scripts/bench-policies.sh OLD_REV [ROUNDS]}
rounds=${2:-15}
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
old_tree=$(mktemp -d)
trap 'git worktree remove --force "$old_tree" >/dev/null 2>&1 || rm -rf "$old_tree"' EXIT
git worktree add -q --detach "$old_tree" "$old_rev"
# The same instrument on both sides: this tree's bench file, at OLD_REV too.
grep -q '^name = "policies"' "$old_tree/Cargo.toml" ||
    printf '\n[[bench]]\nname = "policies"\nharness = false\n' >>"$old_tree/Cargo.toml"
cp benches/policies.rs "$old_tree/benches/"
bench_bin() { # manifest dir -> absolute path of the built bench binary
    local bin
    bin=$(cd "$1" && CARGO_TARGET_DIR=$target cargo bench --bench policies --no-run 2>&1 |
        sed -n 's/.*Executable benches\/policies.rs (\(.*\))/\1/p' | tail -n 1)
    case "$bin" in /*) echo "$bin" ;; ?*) echo "$1/$bin" ;; esac
}
new_bin=$(bench_bin "$root")
old_bin=$(bench_bin "$old_tree")
[ -x "$old_bin" ] && [ -x "$new_bin" ] || { echo "bench build failed (old: '$old_bin', new: '$new_bin')" >&2; exit 1; }
out=$(mktemp)
for r in $(seq 1 "$rounds"); do
    "$old_bin" --bench | sed "s/^/old $r /" >>"$out"
    "$new_bin" --bench | sed "s/^/new $r /" >>"$out"
done
python3 - "$out" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    side, rnd, scenario, ns = line.split()
    rows[(scenario, rnd)][side] = float(ns)
by = collections.defaultdict(lambda: {"old": [], "new": [], "ratio": []})
for (scenario, _), v in rows.items():
    if "old" in v and "new" in v:
        by[scenario]["old"].append(v["old"]); by[scenario]["new"].append(v["new"])
        by[scenario]["ratio"].append(v["new"] / v["old"])
print(f"{'scenario':<20} {'old ns/op':>10} {'new ns/op':>10} {'new/old':>8} {'(min-max)':>14}  rounds")
for s, v in sorted(by.items()):
    r = v["ratio"]
    print(f"{s:<20} {statistics.median(v['old']):>10.1f} {statistics.median(v['new']):>10.1f} "
          f"{statistics.median(r):>8.3f} {min(r):>6.3f}-{max(r):<6.3f}  {len(r)}")
PY
