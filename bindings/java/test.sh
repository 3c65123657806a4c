#!/usr/bin/env bash
# Builds the Java binding (build.sh) and runs its test the way the issue asks:
# java -ea -Xcheck:jni, the engine in the JVM, the JDK's java.net.http WebSocket clients.
# Fails on a test failure and on any -Xcheck:jni warning. Then checks that a missing native
# library is a clear error.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
out="$target/java"

"$here/build.sh"

if [[ -z "${JAVA_HOME:-}" ]]; then
    JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"
fi
java="$JAVA_HOME/bin/java"
classpath="$out/wspush.jar:$out/test-classes"

echo "==> java -ea -Xcheck:jni io.wspush.test.WsPushTest (library from java.library.path)"
log="$out/test-output.txt"
status=0
timeout 300 "$java" -ea -Xcheck:jni -Djava.library.path="$out" -cp "$classpath" io.wspush.test.WsPushTest \
    2>&1 | tee "$log" || status=$?
if [[ $status -ne 0 ]]; then
    echo "test.sh: the Java test failed (exit $status)" >&2
    exit 1
fi
if grep -q "WARNING in native method\|FATAL ERROR in native method" "$log"; then
    echo "test.sh: -Xcheck:jni reported problems (see above)" >&2
    exit 1
fi

echo "==> java -ea -Xcheck:jni -Dwspush.library=/nonexistent/libwspush_jni.so (load error)"
timeout 60 "$java" -ea -Xcheck:jni -Dwspush.library=/nonexistent/libwspush_jni.so -cp "$classpath" \
    io.wspush.test.WsPushTest load-error
echo "test.sh: the Java binding passed"
