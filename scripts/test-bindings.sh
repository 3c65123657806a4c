#!/usr/bin/env bash
# Tests the C ABI and its bindings, failing (non-zero) on anything wrong:
#   1. builds libwspush (cargo build -p wspush-ffi: libwspush.so + libwspush.a);
#   2. checks that include/wspush.h is what the pinned cbindgen generates now (installing
#      that cbindgen into target/tools/ once);
#   3. compiles the C example and the ABI conventions check with -Wall -Wextra -Werror
#      -std=c11 against the committed header and the static library, runs them against a
#      real WebSocket client, and again under valgrind; and cluster mode with a redis-server
#      of its own (tests/ffi_c.rs; valgrind and redis-server required);
#   4. builds the Java binding's release jar with javac/jar and runs its test with -ea
#      -Xcheck:jni, the jar alone on the classpath (bindings/java/test.sh, through
#      tests/ffi_java.rs, which makes the certificates of its wss:// checks; a JDK required).
#
#   scripts/test-bindings.sh                 debug build
#   WSPUSH_PROFILE=release scripts/test-bindings.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
profile="${WSPUSH_PROFILE:-debug}"
cargo_profile=()
[[ "$profile" == "release" ]] && cargo_profile=(--release)

# The machines are rebuilt from the repository: install what is missing, where we can.
scripts/ensure-tools.sh cc:gcc valgrind:valgrind javac:openjdk-17-jdk-headless redis-server:redis-server

# Every stage runs, so one report shows everything that is wrong.
failures=()
stage() {
    local name="$1"
    shift
    echo "==> $name"
    if ! "$@"; then
        echo "test-bindings: FAILED: $name" >&2
        failures+=("$name")
    fi
}

stage "cargo build -p wspush-ffi ($profile)" cargo build -p wspush-ffi "${cargo_profile[@]}"
stage "include/wspush.h is fresh" bash ffi/generate-header.sh --check
stage "C example, ABI checks and cluster mode, plain and under valgrind (tests/ffi_c.rs)" \
    env WSPUSH_REQUIRE_VALGRIND=1 WSPUSH_REQUIRE_REDIS=1 WSPUSH_REQUIRE_CXX=1 \
    cargo test "${cargo_profile[@]}" -p wspush-tests --test ffi_c -- --nocapture
stage "Java binding, the release jar, java -ea -Xcheck:jni (bindings/java/test.sh, tests/ffi_java.rs)" \
    env WSPUSH_REQUIRE_JAVA=1 cargo test "${cargo_profile[@]}" -p wspush-tests --test ffi_java -- --nocapture

if (( ${#failures[@]} > 0 )); then
    printf 'test-bindings: %d stage(s) failed:\n' "${#failures[@]}" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "test-bindings: all passed"
