"""The lone sender (`latency-10k`: 10,000 msg/s to 1,000 sockets through the compat channel,
sustained) with the backplane on a thread of its own (BASE_DIR: a build of the commit before)
and hosted by worker 0 (this checkout's release build), uws alternated with them, one row each
per round, appended to OUT.

    cargo build --release -p wspush -p wspush-bench
    benches/build-commit.sh BASE_COMMIT /tmp/basebin
    BASE_DIR=/tmp/basebin BASE_COMMIT=... python3 benches/results/hosted-backplane/lone_sender_ab.py OUT.jsonl ROUNDS
"""
import json, os, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import lone_sender as ls
from costlib import commit

HOSTED = ls.BENCH
VARIANTS = [
    ("backplane-thread", os.path.join(os.environ["BASE_DIR"], "wspush-bench"), "wspush"),
    ("hosted-by-worker-0", HOSTED, "wspush"),
    ("uws", HOSTED, "uws"),
]
session = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
builds = {"backplane-thread": os.environ.get("BASE_COMMIT", "?"), "hosted-by-worker-0": commit()}
rows = []
with open(sys.argv[1], "a") as out:
    for run in range(1, int(sys.argv[2]) + 1):
        for name, bench, target in VARIANTS:
            ls.BENCH = bench
            row = ls.one_run(target, run)
            row["variant"] = name
            row["session"] = session
            if name in builds:
                row["build"] = builds[name]
            row["machine"] = {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}
            print(json.dumps(row), flush=True)
            out.write(json.dumps(row) + "\n")
            rows.append(row)
if any(not r["exact"] for r in rows):
    sys.exit("an inexact run: see the rows above")
