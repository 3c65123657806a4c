"""Worker 1's pass carried by worker 0 (a lone message from Redis for a sleeping worker is
written on the thread that read it, not handed over with a wake-up) against the build before
(BASE_DIR), alternated, ROUNDS rounds, one row per run appended to OUT:

- `latency-10k` (10,000 msg/s to 1,000 sockets through the compat channel, **sustained**),
  uws alternated with both, as benches/lone_sender.py measures it (CPU, p99, switches);
- unicast bursts through Redis (**burst**: every message published at once), which the
  carrying must leave to each id's own worker: 1,000 sockets compat and envelope channel,
  the tokio-tungstenite client, 10,000 sockets, two nodes.

Every run must be exact. ENTRIES (optional, comma-separated) limits the entries run, e.g.
ENTRIES=latency-10k.

    cargo build --release -p wspush -p wspush-bench
    benches/build-commit.sh BASE_COMMIT /tmp/basebin
    BASE_DIR=/tmp/basebin BASE_COMMIT=... python3 benches/results/carried-pass/carried_ab.py OUT.jsonl ROUNDS
"""
import os, sys
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import lone_sender
from alternate import alternate
from costlib import commit

VARIANTS = [
    {"name": "handed-over", "bench": os.path.join(os.environ["BASE_DIR"], "wspush-bench"), "target": "wspush",
     "build": os.environ.get("BASE_COMMIT", "?")},
    {"name": "carried", "bench": lone_sender.BENCH, "target": "wspush", "build": commit()},
    {"name": "uws", "bench": lone_sender.BENCH, "target": "uws", "latency_only": True},
]
entries = os.environ["ENTRIES"].split(",") if os.environ.get("ENTRIES") else None
alternate(sys.argv[1], int(sys.argv[2]), VARIANTS, entries)
