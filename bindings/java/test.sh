#!/usr/bin/env bash
# Builds the Java binding (build.sh, release) and tests it as a user gets it: the packaged
# jar alone on a plain classpath, no java.library.path, the native library extracted from the
# jar on first use. Then the loader's cases:
#   - the test program under java -ea -Xcheck:jni (the engine in the JVM, the JDK's
#     java.net.http WebSocket clients), from an empty cache directory: fails on a test
#     failure and on any -Xcheck:jni warning; exactly one library extracted, identical to the
#     jar's, no partial file left; wss:// and reloadTls too when WSPUSH_TEST_TLS_DIR names the
#     test certificates' directory (tests/ffi_java.rs makes them and sets it);
#   - four JVMs starting at once on an empty cache directory: all load, one file results;
#   - a damaged library in the cache is replaced; an unwritable cache directory falls back to
#     a private temporary one; $XDG_CACHE_HOME/wspush is the default cache;
#   - a platform the jar has no library for, and a missing -Dwspush.library, are clear
#     errors; -Dwspush.library still overrides;
#   - the jar's contents (library, index, licences, no debug info), the sources and javadoc
#     jars.
# Prints "ok - ..." per check; exits non-zero on the first failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
out="$target/java"
version="$("$root/scripts/version.sh")"

"$here/build.sh"

if [[ -z "${JAVA_HOME:-}" ]]; then
    JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"
fi
java="$JAVA_HOME/bin/java"
jar="$out/wspush-$version.jar"
classpath="$jar:$out/test-classes"
scratch="$out/test-scratch"
rm -rf "$scratch"
mkdir -p "$scratch"

fail() {
    echo "not ok - $*" >&2
    echo "test.sh: the Java binding FAILED" >&2
    exit 1
}
ok() { echo "ok - $*"; }

# The JVM as a user runs it: the jar on the classpath, nothing else (the scratch cache aside).
run_java() {
    env -u LD_LIBRARY_PATH timeout 300 "$java" -ea -Xcheck:jni "$@"
}

# The one library extracted under $1, checked against the jar's.
extracted_once() {
    local cache="$1" what="$2"
    mapfile -t libraries < <(find "$cache" -name 'libwspush_jni.so')
    [[ ${#libraries[@]} -eq 1 ]] || fail "$what: ${#libraries[@]} libraries in $cache: ${libraries[*]}"
    [[ "${libraries[0]}" == "$cache/$version/linux-"*"/libwspush_jni.so" ]] ||
        fail "$what: extracted to ${libraries[0]}, not under $cache/$version/PLATFORM-HASH/"
    cmp -s "${libraries[0]}" "$out/libwspush_jni.so" || fail "$what: the extracted library differs from the jar's"
    [[ -z "$(find "$cache" -name '*.partial')" ]] || fail "$what: partial files left in $cache"
    extracted="${libraries[0]}"
}

echo "==> the jar's contents"
listing="$("$JAVA_HOME/bin/jar" tf "$jar")"
for entry in io/wspush/WsPush.class io/wspush/native/index.properties META-INF/LICENSE-MIT \
    META-INF/LICENSE-APACHE "io/wspush/native/linux-$(uname -m)/libwspush_jni.so"; do
    grep -qx "$entry" <<<"$listing" || fail "$jar has no $entry"
done
ok "the jar carries the classes, the library for this platform, its index and the licences"
if readelf -S --wide "$out/libwspush_jni.so" | grep -q '\.debug_info'; then
    fail "the packaged libwspush_jni.so carries debug info (not a release build?)"
fi
ok "the packaged library is a release build without debug info ($(stat -c %s "$out/libwspush_jni.so") bytes)"
"$JAVA_HOME/bin/jar" tf "$out/wspush-$version-sources.jar" | grep -qx io/wspush/WsPush.java ||
    fail "the sources jar has no io/wspush/WsPush.java"
"$JAVA_HOME/bin/jar" tf "$out/wspush-$version-javadoc.jar" | grep -qx io/wspush/WsPush.html ||
    fail "the javadoc jar has no io/wspush/WsPush.html"
ok "the sources and javadoc jars"

echo "==> java -ea -Xcheck:jni -cp wspush-$version.jar:test-classes io.wspush.test.WsPushTest (empty cache)"
log="$out/test-output.txt"
status=0
# The wss:// checks need the test certificates, which tests/ffi_java.rs makes (rcgen).
tls=()
[[ -n "${WSPUSH_TEST_TLS_DIR:-}" ]] && tls=(-Dwspush.test.tls="$WSPUSH_TEST_TLS_DIR")
run_java -Dwspush.cache.dir="$scratch/cache" "${tls[@]}" -cp "$classpath" io.wspush.test.WsPushTest 2>&1 |
    tee "$log" || status=$?
[[ $status -eq 0 ]] || fail "the Java test failed (exit $status)"
if grep -q "WARNING in native method\|FATAL ERROR in native method" "$log"; then
    fail "-Xcheck:jni reported problems (see above)"
fi
extracted_once "$scratch/cache" "first use"
ok "first use extracted the library once, into the version's directory"

echo "==> four JVMs at once on an empty cache"
pids=()
for n in 1 2 3 4; do
    run_java -Dwspush.cache.dir="$scratch/concurrent" -cp "$classpath" io.wspush.test.WsPushTest version \
        >"$scratch/concurrent-$n.txt" 2>&1 &
    pids+=($!)
done
for n in 1 2 3 4; do
    wait "${pids[$((n - 1))]}" || fail "JVM $n of 4 failed: $(cat "$scratch/concurrent-$n.txt")"
done
extracted_once "$scratch/concurrent" "four at once"
ok "four JVMs extracting at once all loaded it, leaving one complete file"

echo "==> a damaged library in the cache"
echo "not a library" >"$extracted"
run_java -Dwspush.cache.dir="$scratch/concurrent" -cp "$classpath" io.wspush.test.WsPushTest version ||
    fail "a damaged cached library was not replaced"
extracted_once "$scratch/concurrent" "after damage"
ok "a damaged cached library is extracted again"

echo "==> an unwritable cache directory; the default one"
run_java -Dwspush.cache.dir=/proc/wspush-cannot-write-here -cp "$classpath" io.wspush.test.WsPushTest version ||
    fail "an unwritable cache directory is not worked around"
ok "an unwritable cache directory falls back to a private temporary one"
XDG_CACHE_HOME="$scratch/xdg" run_java -cp "$classpath" io.wspush.test.WsPushTest version ||
    fail "loading with the default cache directory failed"
extracted_once "$scratch/xdg/wspush" "default cache"
ok "the default cache is \$XDG_CACHE_HOME/wspush"

echo "==> load errors, and the override"
run_java -Dos.arch=sparc64 -Dwspush.cache.dir="$scratch/cache" -cp "$classpath" \
    io.wspush.test.WsPushTest load-error-platform
run_java -Dwspush.library=/nonexistent/libwspush_jni.so -cp "$classpath" io.wspush.test.WsPushTest load-error
run_java -Dwspush.library="$out/libwspush_jni.so" -Dwspush.cache.dir="$scratch/override" -cp "$classpath" \
    io.wspush.test.WsPushTest version
[[ ! -e "$scratch/override" ]] || fail "-Dwspush.library did not override the bundled library"
ok "-Dwspush.library overrides the bundled library (nothing extracted)"
echo "test.sh: the Java binding passed"
