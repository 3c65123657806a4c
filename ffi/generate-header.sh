#!/usr/bin/env bash
# Generates include/wspush.h from ffi/src with the pinned cbindgen version, installing that
# version first (once) into target/tools/ if it is not there yet.
#
#   ffi/generate-header.sh           rewrite include/wspush.h
#   ffi/generate-header.sh --check   fail (exit 1, with a diff) if include/wspush.h is stale
#
# tests/ffi_c.rs runs the --check form, so `cargo test` fails on a stale header.
set -euo pipefail

CBINDGEN_VERSION=0.29.4

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/target/tools"
cbindgen="$tools/bin/cbindgen"
header="$root/include/wspush.h"

if ! [[ -x "$cbindgen" ]] || [[ "$("$cbindgen" --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]]; then
    echo "generate-header: installing cbindgen $CBINDGEN_VERSION into $tools (once)" >&2
    # Serialised: parallel test runs must not install over each other.
    mkdir -p "$tools"
    exec 9>"$tools/.cbindgen.lock"
    flock 9
    if ! [[ -x "$cbindgen" ]] || [[ "$("$cbindgen" --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]]; then
        "${CARGO:-cargo}" install cbindgen --version "=$CBINDGEN_VERSION" --locked --force \
            --root "$tools" --target-dir "$tools/build" >&2
    fi
    flock -u 9
fi

generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT
# cbindgen runs `cargo metadata`; --quiet keeps its warnings about private items out.
(cd "$root/ffi" && "$cbindgen" --quiet --config cbindgen.toml --crate wspush-ffi --output "$generated" .)

if [[ "${1:-}" == "--check" ]]; then
    if ! diff -u "$header" "$generated"; then
        echo >&2
        echo "include/wspush.h is stale: it is not what cbindgen $CBINDGEN_VERSION generates from ffi/src." >&2
        echo "Run ffi/generate-header.sh and commit include/wspush.h." >&2
        exit 1
    fi
    echo "include/wspush.h is up to date (cbindgen $CBINDGEN_VERSION)"
else
    mkdir -p "$(dirname "$header")"
    cp "$generated" "$header"
    echo "wrote $header (cbindgen $CBINDGEN_VERSION)"
fi
