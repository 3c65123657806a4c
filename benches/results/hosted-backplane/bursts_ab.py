"""Unicast bursts through Redis (1,000 sockets unless a case says otherwise; the cases of
benches/run.py's unicast entries, and a 1,000,000-message burst) with the backplane on a
thread of its own (BASE_DIR: a build of the commit before) and hosted by worker 0 (this
checkout's release build), alternated, ROUNDS rounds of each case, appended to OUT. Every run must be exact.

    BASE_DIR=/tmp/basebin BASE_COMMIT=... python3 benches/results/hosted-backplane/bursts_ab.py OUT.jsonl ROUNDS

(BASE_DIR is built as in lone_sender_ab.py's docstring.)
"""
import json, os, subprocess, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from costlib import commit

CASES = [
    ("compat-200k", ["--messages", "200000", "--via", "redis-compat"]),
    ("envelope-200k", ["--messages", "200000", "--via", "redis-envelope"]),
    ("tungstenite-200k", ["--messages", "200000", "--via", "redis-compat", "--client", "tungstenite"]),
    ("compat-1m", ["--messages", "1000000", "--via", "redis-compat", "--stall", "5"]),
    ("compat-10k-sockets", ["--messages", "200000", "--via", "redis-compat", "--connections", "10000"]),
    ("envelope-2nodes", ["--messages", "200000", "--via", "redis-envelope", "--nodes", "2"]),
]
VARIANTS = [
    ("backplane-thread", os.path.join(os.environ["BASE_DIR"], "wspush-bench"), os.environ.get("BASE_COMMIT", "?")),
    ("hosted-by-worker-0", os.path.join(ROOT, "target", "release", "wspush-bench"), commit()),
]
session = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
inexact = 0
with open(sys.argv[1], "a") as out:
    for run in range(1, int(sys.argv[2]) + 1):
        for case, args in CASES:
            for variant, bench, build in VARIANTS:
                sockets = [] if "--connections" in args else ["--connections", "1000"]
                command = [bench, "unicast", "--target", "wspush", "--quiet", "--label", case] + sockets + args
                done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
                lines = [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]
                row = lines[-1] if lines else {"exact": False}
                row.update({"variant": variant, "case": case, "run": run, "exit": done.returncode,
                            "build": build, "session": session,
                            "machine": {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}})
                inexact += not (row.get("exact") and done.returncode == 0)
                print(json.dumps(row), flush=True)
                out.write(json.dumps(row) + "\n")
if inexact:
    sys.exit(f"{inexact} inexact run(s): see the rows above")
