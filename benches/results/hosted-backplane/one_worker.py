"""What removing worker 1's hand-off is worth today: the hosted backplane (this checkout's
release build) with the default workers (2 here) against `--workers 1`, where every message
is read and written on worker 0's thread, uws alternated with them; one row each per round,
appended to OUT. The lone sender (`latency-10k`, sustained) as in lone_sender_ab.py, and the
burst to 10,000 sockets (`unicast-1node-10k`, compat channel), which one worker must not lose.

    cargo build --release -p wspush -p wspush-bench
    python3 benches/results/hosted-backplane/one_worker.py OUT.jsonl ROUNDS
"""
import json, os, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import lone_sender as ls
from costlib import commit, load_generator_report

BASE_ARGS = list(ls.ARGS)
VARIANTS = [("default-workers", "wspush", []), ("workers-1", "wspush", ["--workers", "1"]), ("uws", "uws", [])]
BURST = ["--connections", "10000", "--messages", "200000", "--via", "redis-compat"]
session = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
build = commit()
rows = []


def burst(target, extra):
    command = [ls.BENCH, "unicast", "--target", target, "--quiet", "--label", "unicast-1node-10k"] + BURST + extra
    return load_generator_report(command)


with open(sys.argv[1], "a") as out:
    for run in range(1, int(sys.argv[2]) + 1):
        order = VARIANTS if run % 2 else list(reversed(VARIANTS))
        for kind in ("latency-10k", "unicast-1node-10k"):
            for name, target, extra in order:
                if kind == "latency-10k":
                    ls.ARGS = BASE_ARGS + extra
                    row = ls.one_run(target, run)
                else:
                    row = burst(target, extra)
                    row["run"] = run
                row.update({"variant": name, "entry": kind, "session": session,
                            "machine": {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}})
                if target == "wspush":
                    row["build"] = build
                print(json.dumps({k: row.get(k) for k in ("entry", "variant", "exact", "server_cpu_s_per_100k",
                                  "latency_p99_ms", "deliveries_per_s", "switches_per_message")}), flush=True)
                out.write(json.dumps(row) + "\n")
                rows.append(row)
if any(not r.get("exact") for r in rows):
    sys.exit("an inexact run: see the rows above")
