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
    git worktree add /tmp/base BASE_COMMIT
    (cd /tmp/base && CARGO_TARGET_DIR=/tmp/basetarget cargo build --release -p wspush -p wspush-bench)
    mkdir /tmp/basebin && cp /tmp/basetarget/release/wspush /tmp/basetarget/release/wspush-bench /tmp/basebin/
    BASE_DIR=/tmp/basebin BASE_COMMIT=... python3 benches/results/carried-pass/carried_ab.py OUT.jsonl ROUNDS
"""
import json, os, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import lone_sender as ls
from costlib import commit, load_generator_report

BURSTS = [
    ("compat-200k", ["--connections", "1000", "--messages", "200000", "--via", "redis-compat"]),
    ("envelope-200k", ["--connections", "1000", "--messages", "200000", "--via", "redis-envelope"]),
    ("tungstenite-200k", ["--connections", "1000", "--messages", "200000", "--via", "redis-compat",
                          "--client", "tungstenite"]),
    ("compat-10k-sockets", ["--connections", "10000", "--messages", "200000", "--via", "redis-compat"]),
    ("envelope-2nodes", ["--connections", "1000", "--messages", "200000", "--via", "redis-envelope",
                         "--nodes", "2"]),
]
# (variant, load generator (it starts the wspush beside it), target, build)
VARIANTS = [
    ("handed-over", os.path.join(os.environ["BASE_DIR"], "wspush-bench"), "wspush",
     os.environ.get("BASE_COMMIT", "?")),
    ("carried", ls.BENCH, "wspush", commit()),
    ("uws", ls.BENCH, "uws", None),
]
session = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


inexact = 0
with open(sys.argv[1], "a") as out:
    for run in range(1, int(sys.argv[2]) + 1):
        order = VARIANTS if run % 2 else list(reversed(VARIANTS))
        runs = [("latency-10k", None)] + BURSTS
        if os.environ.get("ENTRIES"):
            runs = [r for r in runs if r[0] in os.environ["ENTRIES"].split(",")]
        for entry, args in runs:
            for variant, bench, target, build in order:
                if args is None:
                    ls.BENCH = bench
                    row = ls.one_run(target, run)
                elif target == "uws":
                    continue
                else:
                    row = load_generator_report(
                        [bench, "unicast", "--target", "wspush", "--quiet", "--label", entry] + args)
                row.update({"entry": entry, "variant": variant, "run": run, "session": session,
                            "machine": {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}})
                if build:
                    row["build"] = build
                inexact += not row.get("exact")
                print(json.dumps({k: row.get(k) for k in ("entry", "variant", "run", "exact",
                                  "server_cpu_s_per_100k", "latency_p99_ms", "deliveries_per_s",
                                  "switches_per_message")}), flush=True)
                out.write(json.dumps(row) + "\n")
if inexact:
    sys.exit(f"{inexact} inexact run(s): see the rows above")
