#!/usr/bin/env bash
# Builds the Java binding with plain javac/jar (no Maven) into $TARGET/java/:
#   wspush.jar          the io.wspush classes
#   libwspush_jni.so    the JNI glue (native/wspush_jni.c) with libwspush.a linked in
#   test-classes/       the test program (bindings/java/test) and the examples
#
#   bindings/java/build.sh            debug build of libwspush (cargo build -p wspush-ffi)
#   WSPUSH_PROFILE=release bindings/java/build.sh
#
# Needs: cargo, a C compiler (CC, default cc), a JDK 17+ (JAVA_HOME, or javac on PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
out="$target/java"
profile="${WSPUSH_PROFILE:-debug}"

if [[ -z "${JAVA_HOME:-}" ]]; then
    javac_path="$(command -v javac || true)"
    if [[ -z "$javac_path" ]]; then
        echo "build.sh: no JDK: set JAVA_HOME or put javac on PATH" >&2
        exit 1
    fi
    JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$javac_path")")")"
fi
for tool in javac jar; do
    [[ -x "$JAVA_HOME/bin/$tool" ]] || { echo "build.sh: $JAVA_HOME/bin/$tool is missing" >&2; exit 1; }
done

echo "==> libwspush ($profile)"
cargo_args=(build -p wspush-ffi)
[[ "$profile" == "release" ]] && cargo_args+=(--release)
(cd "$root" && "${CARGO:-cargo}" "${cargo_args[@]}")
library="$target/$profile/libwspush.a"
[[ -f "$library" ]] || { echo "build.sh: $library was not built" >&2; exit 1; }

mkdir -p "$out"
# One build at a time (the Rust test and scripts/test-bindings.sh may overlap).
exec 9>"$out/.build.lock"
flock 9
echo "==> $out/libwspush_jni.so"
# --exclude-libs: the engine's symbols stay inside; only JNI_OnLoad is needed from outside.
"${CC:-cc}" -shared -fPIC -O2 -g -std=c11 -Wall -Wextra -Werror \
    -I"$JAVA_HOME/include" -I"$JAVA_HOME/include/linux" -I"$root/include" \
    "$here/native/wspush_jni.c" "$library" \
    -Wl,--exclude-libs,ALL -Wl,-z,defs -lpthread -ldl -lm -lc \
    -o "$out/libwspush_jni.so.partial"
mv -f "$out/libwspush_jni.so.partial" "$out/libwspush_jni.so"

echo "==> $out/wspush.jar"
rm -rf "$out/classes" "$out/test-classes"
"$JAVA_HOME/bin/javac" -Xlint:all -Werror --release 17 -d "$out/classes" \
    $(find "$here/src" -name '*.java' | sort)
"$JAVA_HOME/bin/jar" --create --file "$out/wspush.jar" -C "$out/classes" .

echo "==> $out/test-classes"
"$JAVA_HOME/bin/javac" -Xlint:all -Werror --release 17 -cp "$out/wspush.jar" -d "$out/test-classes" \
    $(find "$here/test" "$here/examples" -name '*.java' | sort)
echo "built: $out/wspush.jar $out/libwspush_jni.so"
