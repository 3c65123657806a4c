#!/usr/bin/env bash
# Builds `wspush` and `wspush-bench` of another commit, for an A/B benchmark against this
# checkout: a git worktree of COMMIT, built into a target directory of its own (this
# checkout's stays as it is), the two binaries copied to OUT_DIR, the worktree removed.
#
#   benches/build-commit.sh COMMIT OUT_DIR
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: benches/build-commit.sh COMMIT OUT_DIR" >&2
    exit 2
fi
commit=$1
out=$2
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
tree=$(mktemp -d /tmp/wspush-build-XXXXXX)
trap 'git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || true; rm -rf "$tree"' EXIT
git -C "$root" worktree add --detach "$tree" "$commit" >/dev/null
target=${CARGO_TARGET_DIR_BASE:-/tmp/wspush-build-target}
(cd "$tree" && CARGO_TARGET_DIR="$target" cargo build --release -p wspush -p wspush-bench)
mkdir -p "$out"
cp "$target/release/wspush" "$target/release/wspush-bench" "$out/"
echo "built $(git -C "$root" rev-parse --short "$commit") into $out"
