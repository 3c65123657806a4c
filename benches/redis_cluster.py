#!/usr/bin/env python3
"""Redis Cluster (issue 14): the `cluster` scenario (3 wspush nodes, unicast through the HTTP API,
every send published to Redis for the other nodes) against a Redis Cluster of 1 master and of 3
masters, alternated, and a connect storm of 10,000 ids on 3 masters.

    python3 benches/redis_cluster.py [--rounds 3] [--out benches/results/redis-cluster/runs.jsonl]

Each line of the output is the load generator's JSON line plus `label` (`1-master`,
`3-masters`, `storm-10k`) and `round`. What it shows: deliveries/s, the Redis CPU per 100,000
deliveries summed over the masters and per master (the load spreading over 3 masters), and for
the storm the SUBSCRIBE commands (one SSUBSCRIBE per id: each id is a slot of its own) and the
writes that carried them (`connect_storm_subscribe_round_trips`: each a round trip). An inexact
run (a loss, a duplicate, a misroute) is recorded with `"exact": false` and left out of the
medians printed at the end.

Needs the release build of wspush and wspush-bench, redis-server and redis-cli.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "target", "release", "wspush-bench")
RUNS = {
    "1-master": ["cluster", "--nodes", "3", "--connections", "3000", "--messages", "100000", "--redis-masters", "1"],
    "3-masters": ["cluster", "--nodes", "3", "--connections", "3000", "--messages", "100000", "--redis-masters", "3"],
    "storm-10k": ["cluster", "--nodes", "1", "--connections", "10000", "--messages", "10000", "--redis-masters", "3"],
}
FIGURES = ["deliveries_per_s", "server_cpu_s_per_100k", "redis_cpu_s_per_100k_deliveries",
           "redis_cpu_s_per_100k_deliveries_per_master", "connect_storm_subscribe_commands",
           "connect_storm_subscribe_round_trips"]


def run(label, round_no):
    done = subprocess.run([BENCH, *RUNS[label], "--quiet"], capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"label": label, "round": round_no, "exact": False, "error": done.stderr[-2000:]}
    result = json.loads(lines[-1])
    result.update(label=label, round=round_no)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "benches", "results", "redis-cluster", "runs.jsonl"))
    args = parser.parse_args()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    results = []
    with open(args.out, "a") as out:
        for round_no in range(1, args.rounds + 1):
            for label in RUNS:
                result = run(label, round_no)
                out.write(json.dumps(result) + "\n")
                out.flush()
                results.append(result)
                shown = {k: result.get(k) for k in FIGURES if k in result}
                print(f"round {round_no} {label}: exact={result.get('exact')} {shown}", file=sys.stderr)
    for label in RUNS:
        exact = [r for r in results if r["label"] == label and r.get("exact")]
        inexact = sum(1 for r in results if r["label"] == label and not r.get("exact"))
        medians = {}
        for key in FIGURES:
            values = [r[key] for r in exact if isinstance(r.get(key), (int, float))]
            if values:
                medians[key] = statistics.median(values)
        print(f"{label}: {len(exact)} exact runs ({inexact} inexact), medians {medians}")
    return 0 if all(r.get("exact") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
