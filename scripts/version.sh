#!/usr/bin/env bash
# Prints the workspace's version (Cargo.toml, [workspace.package]): what scripts/dist.sh and
# bindings/java/build.sh name their artifacts after.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(awk '/^\[workspace.package\]/ { inside = 1; next } /^\[/ { inside = 0 }
    inside && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' "$root/Cargo.toml")"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "version.sh: no version in $root/Cargo.toml" >&2; exit 1; }
echo "$version"
