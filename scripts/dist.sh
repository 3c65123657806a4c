#!/usr/bin/env bash
# Builds the C and server distribution: a relocatable tree and its tarball,
#
#   OUT/wspush-VERSION-TARGET/
#     bin/wspush                          the standalone server
#     include/wspush.h                    the C header
#     lib/libwspush.so.VERSION            the shared library, SONAME libwspush.so.MAJOR,
#     lib/libwspush.so.MAJOR -> ...       with the usual symlinks
#     lib/libwspush.so -> ...
#     lib/libwspush.a                     the static library
#     lib/pkgconfig/wspush.pc             pkg-config, relocatable (paths from ${pcfiledir})
#     share/wspush/wspush.example.toml    every setting, commented (docs/wspush.example.toml)
#     share/wspush/wspush.service         a systemd unit (docs/wspush.service)
#     README.md LICENSE-MIT LICENSE-APACHE
#   OUT/wspush-VERSION-TARGET.tar.gz
#
# Everything is a release build with its debug info stripped (symbols kept). OUT defaults to
# dist/ at the repository root; CARGO_TARGET_DIR is honoured. tests/dist.rs runs this into a
# temporary directory and builds bindings/c/example.c against the tree through pkg-config.
#
#   scripts/dist.sh [OUT]
#
# Needs: cargo, strip (binutils), tar, gzip.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/dist}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
cargo="${CARGO:-cargo}"

for tool in strip tar gzip; do
    command -v "$tool" >/dev/null || { echo "dist.sh: \`$tool\` is required" >&2; exit 2; }
done

# The workspace's version and the host's target triple.
version="$("$root/scripts/version.sh")"
major="${version%%.*}"
target="$(rustc -vV | sed -n 's/^host: //p')"
name="wspush-$version-$target"

# Two builds, not one: built together, the engine's features would be unified into a third
# variant, and neither the Java binding's build (bindings/java/build.sh) nor the soak's
# (scripts/test.sh) could be reused.
echo "==> cargo build --release -p wspush-ffi"
(cd "$root" && "$cargo" build --release -p wspush-ffi)
echo "==> cargo build --release -p wspush --bin wspush"
(cd "$root" && "$cargo" build --release -p wspush --bin wspush)
release="$target_dir/release"

stage="$out/.$name.partial"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/include" "$stage/lib/pkgconfig" "$stage/share/wspush"

strip --strip-debug -o "$stage/bin/wspush" "$release/wspush"
cp "$root/include/wspush.h" "$stage/include/"
strip --strip-debug -o "$stage/lib/libwspush.so.$version" "$release/libwspush.so"
ln -s "libwspush.so.$version" "$stage/lib/libwspush.so.$major"
ln -s "libwspush.so.$major" "$stage/lib/libwspush.so"
strip --strip-debug -o "$stage/lib/libwspush.a" "$release/libwspush.a"

# Libs.private: what Rust's standard library needs from the system when libwspush.a is
# linked into a C program (rustc's native-static-libs for this target), less -lc and
# -lgcc_s, which the C compiler driver adds itself (-lgcc_s would also break `cc -static`).
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
echo 'pub fn probe() {}' >"$probe/probe.rs"
native_libs="$(rustc --crate-type staticlib --print native-static-libs -o "$probe/libprobe.a" \
    "$probe/probe.rs" 2>&1 | sed -n 's/^note: native-static-libs: //p')"
libs_private="$(printf '%s\n' $native_libs | grep -vx -e -lc -e -lgcc_s | tr '\n' ' ' | sed 's/ $//')"

cat >"$stage/lib/pkgconfig/wspush.pc" <<EOF
# wspush $version for $target. Relocatable: every path is relative to this file.
prefix=\${pcfiledir}/../..
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: wspush
Description: the wspush WebSocket delivery engine, hosted in-process through its C ABI
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lwspush
Libs.private: $libs_private
EOF

cp "$root/docs/wspush.example.toml" "$root/docs/wspush.service" "$stage/share/wspush/"
cp "$root/README.md" "$root/LICENSE-MIT" "$root/LICENSE-APACHE" "$stage/"

rm -rf "${out:?}/$name"
mv "$stage" "$out/$name"
# Reproducible: sorted, owned by root, dated by the last commit (else now).
mtime="$(git -C "$root" log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"
tar -C "$out" --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" \
    -cf - "$name" | gzip -9n >"$out/$name.tar.gz.partial"
mv "$out/$name.tar.gz.partial" "$out/$name.tar.gz"
echo "dist.sh: $out/$name"
echo "dist.sh: $out/$name.tar.gz"
