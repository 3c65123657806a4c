#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, where it can (root with
# apt-get), and fails naming the missing tool where it cannot:
#   redis-server, redis-cli   cluster tests start their own Redis processes
#   valgrind                  the C programs run under it (no leaks, no invalid reads)
#   javac, java               the Java binding's test (java -ea -Xcheck:jni)
#   cc                        the C example and the header checks
#   c++                       the header checked as C++
#   node, npm                 the Node.js baseline the load generator is compared with
#                             (benches/baseline; its packages are installed by `npm ci`),
#                             and npm installs Bun for the uWebSockets baseline
#                             (benches/baseline-bun: `npm ci` brings the bun binary)
#   pkg-config                tests/dist.rs builds the C example against the distribution
#                             with nothing but `pkg-config --cflags --libs wspush`
#   systemd-analyze           tests/dist.rs verifies the example systemd unit
#   chromium                  tests/browser_client.rs runs the browser client (clients/js) in
#                             it, headless, driven by playwright-core (tests/browser: `npm ci`;
#                             it downloads no browser of its own); tests/js_client.rs runs the
#                             client under node (20 or later: its WebSocket)
#
#   scripts/ensure-tools.sh [TOOL:PACKAGE ...]   (default: all of the above)
set -euo pipefail

ensure() {
  local tool="${1%%:*}" package="${1#*:}"
  command -v "$tool" >/dev/null 2>&1 && return 0
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing $package (for $tool)"
    { [ -n "${apt_updated:-}" ] || apt-get update -qq; } >/dev/null && apt_updated=1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
  fi
  command -v "$tool" >/dev/null 2>&1 || {
    echo "ensure-tools: \`$tool\` is required (Debian package $package) and could not be installed" >&2
    exit 2
  }
}

if [ $# -eq 0 ]; then
  set -- cc:gcc c++:g++ redis-server:redis-server redis-cli:redis-tools valgrind:valgrind \
    javac:openjdk-17-jdk-headless java:openjdk-17-jdk-headless node:nodejs npm:npm chromium:chromium \
    pkg-config:pkg-config systemd-analyze:systemd
  baseline=1
fi
for tool in "$@"; do
  ensure "$tool"
done

# The baseline's packages (ws, ioredis), pinned by its package-lock.json.
if [ -n "${baseline:-}" ] && [ ! -d "$(dirname "$0")/../benches/baseline/node_modules/ws" ]; then
  echo "==> npm ci in benches/baseline"
  (cd "$(dirname "$0")/../benches/baseline" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "ensure-tools: \`npm ci\` in benches/baseline failed (is the npm registry reachable?)" >&2
    exit 2
  }
fi

# The uWebSockets baseline: the bun runtime itself comes from npm (package `bun`, pinned by
# benches/baseline-bun/package-lock.json); its postinstall puts the binary in node_modules/.bin.
bun_dir="$(dirname "$0")/../benches/baseline-bun"
if [ -n "${baseline:-}" ] && ! "$bun_dir/node_modules/.bin/bun" --version >/dev/null 2>&1; then
  echo "==> npm ci in benches/baseline-bun"
  (cd "$bun_dir" && npm ci --no-audit --no-fund --loglevel=error) && "$bun_dir/node_modules/.bin/bun" --version >/dev/null || {
    echo "ensure-tools: \`npm ci\` in benches/baseline-bun failed or its bun does not run (is the npm registry reachable? were install scripts skipped?)" >&2
    exit 2
  }
fi

# The browser test's driver: playwright-core, pinned by tests/browser/package-lock.json.
browser_dir="$(dirname "$0")/../tests/browser"
if [ -n "${baseline:-}" ] && [ ! -d "$browser_dir/node_modules/playwright-core" ]; then
  echo "==> npm ci in tests/browser"
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "ensure-tools: \`npm ci\` in tests/browser failed (is the npm registry reachable?)" >&2
    exit 2
  }
fi
