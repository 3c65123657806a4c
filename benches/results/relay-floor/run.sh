#!/bin/bash
# Alternates the relays (MODES, default "epoll uring"), ROUNDS rounds of N messages at
# 10,000/s; every run must deliver every byte (the sink's count checked). PIN=1 runs the
# relay on CPU 0 and the source and the sink on CPU 1, so the relay's write never wakes a
# process on its own CPU (as with a remote client).
#   (cd benches/results/relay-floor && cargo build --release)
#   MODES="epoll hybrid uring" ROUNDS=5 benches/results/relay-floor/run.sh >> runs.jsonl
B=$(dirname "$0")/target/release/relayfloor
N=${N:-100000}
if [ "${PIN:-0}" = 1 ]; then ON0="taskset -c 0"; ON1="taskset -c 1"; else ON0=""; ON1=""; fi
for r in $(seq 1 ${ROUNDS:-5}); do
  for mode in ${MODES:-epoll uring}; do
    port=$((30000 + RANDOM % 20000))
    $ON0 $B $mode $port $N > /tmp/rf.out &
    rp=$!
    sleep 0.3
    $ON1 $B sink $((port+1)) 2> /tmp/rf.sink &
    sp=$!
    sleep 0.2
    $ON1 $B source $port 10000 $N
    wait $rp; wait $sp
    got=$(grep -o '[0-9]*' /tmp/rf.sink)
    frames=$(grep -o "\"frames\":[0-9]*" /tmp/rf.out | cut -d: -f2); exp=$((N*64 + 2*frames))
    row=$(cat /tmp/rf.out)
    if [ "$got" != "$exp" ]; then echo "INEXACT $mode sink=$got expected=$exp"; fi
    echo "{\"round\":$r,${row:1:-1},\"sink_bytes\":$got,\"pinned\":${PIN:-0},\"exact\":$([ "$got" = "$exp" ] && echo true || echo false)}"
  done
done
