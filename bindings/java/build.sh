#!/usr/bin/env bash
# Builds the Java binding with plain javac/jar/javadoc (no Maven) into $TARGET/java/:
#   wspush-VERSION.jar          what an application needs, alone on its classpath: the
#                               io.wspush classes; the JNI library for this platform at
#                               io/wspush/native/PLATFORM/libwspush_jni.so (PLATFORM as in
#                               linux-x86_64), listed with its size and SHA-256 in
#                               io/wspush/native/index.properties (NativeLibrary.java extracts
#                               and loads it); META-INF/LICENSE-MIT and LICENSE-APACHE
#   wspush-VERSION-sources.jar  the sources, with the licences
#   wspush-VERSION-javadoc.jar  the API documentation (javadoc with doclint, warnings as errors)
#   libwspush_jni.so            the same library, loose (for -Dwspush.library)
#   test-classes/               the test program (bindings/java/test) and the examples
#
#   bindings/java/build.sh                        release build (cargo build --release -p wspush-ffi)
#   WSPUSH_PROFILE=debug bindings/java/build.sh   debug build, with debug info (working on the glue)
#
# The release build of libwspush is the one scripts/dist.sh makes too (same command, same
# features), so the two share it. Needs: cargo, a C compiler (CC, default cc), a JDK 17+
# (JAVA_HOME, or javac on PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
out="$target/java"
profile="${WSPUSH_PROFILE:-release}"
version="$("$root/scripts/version.sh")"

if [[ -z "${JAVA_HOME:-}" ]]; then
    javac_path="$(command -v javac || true)"
    if [[ -z "$javac_path" ]]; then
        echo "build.sh: no JDK: set JAVA_HOME or put javac on PATH" >&2
        exit 1
    fi
    JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$javac_path")")")"
fi
for tool in javac jar javadoc; do
    [[ -x "$JAVA_HOME/bin/$tool" ]] || { echo "build.sh: $JAVA_HOME/bin/$tool is missing" >&2; exit 1; }
done

# The platform as io.wspush.NativeLibrary names it from os.name and os.arch.
case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=macos ;;
    *) os="$(uname -s | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9')" ;;
esac
case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    i?86) arch=x86 ;;
    *) arch="$(uname -m | tr '[:upper:]' '[:lower:]')" ;;
esac
platform="$os-$arch"

echo "==> libwspush ($profile)"
cargo_args=(build -p wspush-ffi)
debug_flags=(-g)
if [[ "$profile" == "release" ]]; then
    cargo_args+=(--release)
    # The release profile keeps line tables for Rust backtraces; the shipped library does not.
    debug_flags=(-Wl,--strip-debug)
fi
(cd "$root" && "${CARGO:-cargo}" "${cargo_args[@]}")
library="$target/$profile/libwspush.a"
[[ -f "$library" ]] || { echo "build.sh: $library was not built" >&2; exit 1; }

mkdir -p "$out"
# One build at a time (the Rust test and scripts/test-bindings.sh may overlap).
exec 9>"$out/.build.lock"
flock 9
echo "==> $out/libwspush_jni.so ($platform)"
# --exclude-libs: the engine's symbols stay inside; only JNI_OnLoad is needed from outside.
"${CC:-cc}" -shared -fPIC -O2 "${debug_flags[@]}" -std=c11 -Wall -Wextra -Werror \
    -I"$JAVA_HOME/include" -I"$JAVA_HOME/include/linux" -I"$root/include" \
    "$here/native/wspush_jni.c" "$library" \
    -Wl,--exclude-libs,ALL -Wl,-z,defs -lpthread -ldl -lm -lc \
    -o "$out/libwspush_jni.so.partial"
mv -f "$out/libwspush_jni.so.partial" "$out/libwspush_jni.so"

rm -rf "$out/classes" "$out/test-classes" "$out/javadoc" "$out/sources"
mkdir -p "$out/classes/META-INF" "$out/sources/META-INF"
for licence in LICENSE-MIT LICENSE-APACHE; do
    cp "$root/$licence" "$out/classes/META-INF/"
    cp "$root/$licence" "$out/sources/META-INF/"
done
cat >"$out/manifest.txt" <<EOF
Implementation-Title: wspush
Implementation-Version: $version
Automatic-Module-Name: io.wspush
EOF

echo "==> $out/wspush-$version.jar"
"$JAVA_HOME/bin/javac" -Xlint:all -Werror --release 17 -d "$out/classes" \
    $(find "$here/src" -name '*.java' | sort)
native="$out/classes/io/wspush/native"
mkdir -p "$native/$platform"
cp "$out/libwspush_jni.so" "$native/$platform/libwspush_jni.so"
cat >"$native/index.properties" <<EOF
# The native libraries in this jar, read by io.wspush.NativeLibrary.
version=$version
platforms=$platform
$platform.file=$platform/libwspush_jni.so
$platform.size=$(stat -c %s "$out/libwspush_jni.so")
$platform.sha256=$(sha256sum "$out/libwspush_jni.so" | cut -d' ' -f1)
EOF
"$JAVA_HOME/bin/jar" --create --file "$out/wspush-$version.jar.partial" --manifest "$out/manifest.txt" \
    -C "$out/classes" .
mv -f "$out/wspush-$version.jar.partial" "$out/wspush-$version.jar"

echo "==> $out/wspush-$version-sources.jar"
cp -r "$here/src/." "$out/sources/"
"$JAVA_HOME/bin/jar" --create --file "$out/wspush-$version-sources.jar" --manifest "$out/manifest.txt" \
    -C "$out/sources" .

echo "==> $out/wspush-$version-javadoc.jar"
# Every doclint check except "missing" (not every parameter has its own @param), as errors.
"$JAVA_HOME/bin/javadoc" -quiet -Xdoclint:all,-missing -Werror --release 17 \
    -d "$out/javadoc" -doctitle "wspush $version" -windowtitle "wspush $version" \
    $(find "$here/src" -name '*.java' | sort)
"$JAVA_HOME/bin/jar" --create --file "$out/wspush-$version-javadoc.jar" -C "$out/javadoc" .

echo "==> $out/test-classes"
"$JAVA_HOME/bin/javac" -Xlint:all -Werror --release 17 -cp "$out/wspush-$version.jar" -d "$out/test-classes" \
    $(find "$here/test" "$here/examples" -name '*.java' | sort)
echo "built: $out/wspush-$version.jar $out/wspush-$version-sources.jar $out/wspush-$version-javadoc.jar"
