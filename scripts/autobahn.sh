#!/usr/bin/env bash
# Autobahn|Testsuite (the standard RFC 6455 conformance suite) against the wspush server.
#
#   scripts/autobahn.sh [REPORT_DIR]          (default: ./autobahn-report)
#   scripts/autobahn.sh --probe               exit 0 if the suite can run here, else 2 saying why
#
# Builds `wspush` (release), starts it in echo mode with --compression on free loopback
# ports, runs the suite's fuzzing client against ws://ADDR/websocket/autobahn, summarizes.
#
# Env: AUTOBAHN_CASES   JSON list of case patterns (default: every group, 1-7, 9, 10 and
#                       12, 13: permessage-deflate; there is no 8 and no 11)
#      AUTOBAHN_EXCLUDE JSON list of excluded patterns (default none)
#      AUTOBAHN_HOME    where the suite's Python 2.7 virtualenv is kept
#                       (default ~/.cache/wspush-autobahn; installed from PyPI on first use)
#      PY27             a CPython 2.7 interpreter (default: python2.7 on PATH, else pyenv's)
#      WSPUSH_BIN       a prebuilt server binary to test instead of building one
#      AUTOBAHN_TLS=1   run over wss:// (--tls-cert/--tls-key, a self-signed ECDSA P-256
#                       certificate made with openssl for the run; the fuzzing client does
#                       not verify certificates, so nothing else to trust)
# Exit: 0 every case passed (OK, NON-STRICT, INFORMATIONAL or UNIMPLEMENTED, with a clean
#       close), 1 some case failed (listed as BAD) or the server failed, 2 the suite could
#       not run here (no CPython 2.7, install failed; the reason is printed loudly).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
here="$root/scripts/conformance"
out=${1:-autobahn-report}
home=${AUTOBAHN_HOME:-$HOME/.cache/wspush-autobahn}
cases=${AUTOBAHN_CASES:-'["1.*","2.*","3.*","4.*","5.*","6.*","7.*","9.*","10.*","12.*","13.*"]'}
exclude=${AUTOBAHN_EXCLUDE:-'[]'}

cannot_run() {
  {
    echo
    echo "########################################################################"
    echo "##  AUTOBAHN CONFORMANCE SUITE WAS NOT RUN"
    echo "##  $1"
    echo "########################################################################"
    echo
  } >&2
  exit 2
}

fail() {
  echo "autobahn: FAILED: $1" >&2
  exit 1
}

# --- CPython 2.7, which the suite needs ------------------------------------------------
runs27() { [ -n "$1" ] && "$1" -c 'import sys; assert sys.version_info[:2] == (2, 7)' >/dev/null 2>&1; }
py27=${PY27:-}
runs27 "$py27" || py27=$(command -v python2.7 || true)
if ! runs27 "$py27" && command -v pyenv >/dev/null; then
  py27=$(ls -d "$(pyenv root)"/versions/2.7*/bin/python 2>/dev/null | tail -n 1 || true)
fi
if ! runs27 "$py27" && [ -d "$HOME/.pyenv/versions" ]; then
  py27=$(ls -d "$HOME"/.pyenv/versions/2.7*/bin/python 2>/dev/null | tail -n 1 || true)
fi
# Distributions that still package it (Debian 11, Ubuntu 22.04): installed, as root.
if ! runs27 "$py27" && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] &&
  apt-cache policy python2.7 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  echo "autobahn: installing python2.7 (Debian package)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python2.7 >/dev/null && py27=$(command -v python2.7 || true)
fi
runs27 "$py27" || cannot_run "no CPython 2.7 (the suite runs only on Python 2.7). Install one, then rerun:
##    Debian 11, Ubuntu 22.04 or older: apt-get install python2.7
##    Debian 12+, Ubuntu 24.04+ (not packaged): pyenv (https://github.com/pyenv/pyenv),
##      its build dependencies (apt-get install build-essential libssl-dev zlib1g-dev
##      libbz2-dev libreadline-dev libsqlite3-dev libffi-dev), then: pyenv install 2.7.18
##    or any CPython 2.7 build: PY27=/path/to/python2.7 scripts/autobahn.sh
##  This script looks for PY27, python2.7 on PATH, then pyenv's versions/2.7*."
command -v python3 >/dev/null || cannot_run "no python3 (needed to install the suite and read its report)"
# --probe: only say whether the suite can run here (scripts/test.sh asks before the long steps).
[ "${1:-}" = "--probe" ] && { echo "autobahn: CPython 2.7 at $py27"; exit 0; }

# --- the suite, installed once -----------------------------------------------------------
if [ ! -x "$home/venv/bin/wstest" ]; then
  echo "autobahn: installing the suite into $home (once)"
  mkdir -p "$home"
  export PIP_CACHE_DIR="$home/.pipcache" VIRTUALENV_OVERRIDE_APP_DATA="$home/.vapp"
  if ! {
    python3 -m venv "$home/tools" &&
      "$home/tools/bin/pip" install -q virtualenv==20.21.1 &&
      "$home/tools/bin/virtualenv" -q --no-periodic-update -p "$py27" "$home/venv" &&
      "$home/venv/bin/pip" install -q -c "$here/constraints-py27.txt" autobahntestsuite==25.10.1
  } >"$home/install.log" 2>&1; then
    tail -n 20 "$home/install.log" >&2
    rm -rf "$home/venv"
    cannot_run "installing the suite failed, see $home/install.log"
  fi
fi

# --- the server --------------------------------------------------------------------------
if [ -n "${WSPUSH_BIN:-}" ]; then
  bin=$WSPUSH_BIN
else
  echo "autobahn: building wspush (release)"
  (cd "$root" && cargo build --release --quiet -p wspush --bin wspush)
  target=${CARGO_TARGET_DIR:-$root/target}
  case $target in /*) ;; *) target="$root/$target" ;; esac
  bin="$target/release/wspush"
fi
[ -x "$bin" ] || fail "no server binary at $bin"

mkdir -p "$out" && out=$(cd "$out" && pwd)
log="$out/wspush.log"
spec=$(mktemp)
pid=
tls_dir=
cleanup() {
  rm -f "$spec"
  [ -n "$tls_dir" ] && rm -rf "$tls_dir"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tls_args=()
if [ "${AUTOBAHN_TLS:-}" = "1" ]; then
  command -v openssl >/dev/null || cannot_run "AUTOBAHN_TLS=1 needs openssl (to make the run's certificate)"
  tls_dir=$(mktemp -d)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" >/dev/null 2>&1 || fail "openssl could not make a certificate"
  tls_args=(--tls-cert "$tls_dir/cert.pem" --tls-key "$tls_dir/key.pem")
fi

# Group 9 sends messages of up to 16 MiB: raising the message size is all it takes (a client
# that reads gets any message the node accepts, whatever --max-buffered-bytes is).
"$bin" --echo --ws-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 \
  --max-message-size 16MiB --compression "${tls_args[@]}" >"$log" 2>&1 &
pid=$!

prefix=
for _ in $(seq 300); do
  prefix=$(sed -n 's|^wspush: websocket listening on \(wss\{0,1\}://[^ ]*\)$|\1|p' "$log" | head -n 1)
  [ -n "$prefix" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "the server exited at start"; }
  sleep 0.1
done
[ -n "$prefix" ] || { cat "$log" >&2; fail "the server did not announce its address in 30 s"; }
url="${prefix}autobahn"
echo "autobahn: server $bin (pid $pid) at $url; cases $cases"

# --- the run -----------------------------------------------------------------------------
cat >"$spec" <<JSON
{"outdir": "$out", "servers": [{"agent": "wspush", "url": "$url"}],
 "cases": $cases, "exclude-cases": $exclude, "exclude-agent-cases": {}}
JSON
started=$(date +%s)
set +e
(cd "$(dirname "$spec")" && "$home/venv/bin/wstest" -m fuzzingclient -s "$spec") >"$out/wstest.log" 2>&1
wstest_status=$?
set -e
echo "autobahn: wstest finished in $(($(date +%s) - started)) s (exit $wstest_status); log $out/wstest.log"
if ! kill -0 "$pid" 2>/dev/null; then
  echo "autobahn: THE SERVER DIED during the run; its log:" >&2
  tail -n 50 "$log" >&2
  pid=
  exit 1
fi

set +e
python3 "$here/summarize.py" "$out/index.json"
status=$?
set -e
if [ "$status" -eq 2 ]; then
  tail -n 20 "$out/wstest.log" >&2
  cannot_run "the suite wrote no report (see $out/wstest.log)"
fi
echo "autobahn: report in $out/index.html"
exit "$status"
