#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 600), one after the other, and
# prints each target's last libFuzzer status line. Installs cargo-fuzz if it is missing.
# Not part of CI's default run: it takes SECONDS x 4 plus a build.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# libFuzzer needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# Runs are capped at 512 MB of RSS and 256 MB per allocation, with a 5 s timeout per
# input. Each run starts from the committed fuzz/corpus/<target>/ and
# fuzz/regressions/<target>/, and grows its corpus in fuzz/target/grown-corpus/<target>/
# (ignored by git, kept between runs; see fuzz/README.md to minimise and commit some of
# it). Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail

seconds="${1:-600}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

# -a: debug assertions (and overflow checks) on, as in tests.
cargo fuzz build -a

logs="$(mktemp -d)"
status=0
for target in "${targets[@]}"; do
    echo "== $target: ${seconds}s"
    grown="target/grown-corpus/$target"
    mkdir -p "$grown"
    inputs=("$grown" "corpus/$target")
    [ -d "regressions/$target" ] && inputs+=("regressions/$target")
    if cargo fuzz run -a "$target" "${inputs[@]}" -- -max_total_time="$seconds" -rss_limit_mb=512 \
        -malloc_limit_mb=256 -timeout=5 -print_final_stats=1 >"$logs/$target.log" 2>&1; then
        result="ok"
    else
        result="FAILED (see $logs/$target.log and fuzz/artifacts/$target/)"
        status=1
    fi
    grep -E '^#[0-9]+' "$logs/$target.log" | tail -n 1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$logs/$target.log" || true
    echo "   $result"
done
echo "logs: $logs"
exit $status
