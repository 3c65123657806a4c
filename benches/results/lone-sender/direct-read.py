"""The lone sender (`latency-10k`: 10,000 msg/s to 1,000 sockets through the compat channel)
under four server variants and uws, alternated, one row each per round, into direct-read.jsonl.

The "direct" variants need the throwaway build of `direct-read-experiment.patch` (applied to
96a5ca2): with WSPUSH_EXP_DIRECT set, a worker opens its own connection to Redis, SUBSCRIBEs to
the compat channel in its own mio loop and delivers the messages of its own ids there, with no
subscriber thread and no hand-off ("0": worker 0 only, so run it with --workers 1; "all": every
worker, each keeping its own ids). With WSPUSH_EXP_HANDOFF set as well, worker 0 hands the
messages of other workers' ids to them through their queues (the default 2 workers). Without
the variables the build is 96a5ca2.

    git apply benches/results/lone-sender/direct-read-experiment.patch
    cargo build --release -p wspush -p wspush-bench
    mkdir /tmp/exp && cp target/release/wspush target/release/wspush-bench /tmp/exp/
    git checkout -- engine && rm engine/src/worker/direct.rs
    EXP_DIR=/tmp/exp python3 benches/results/lone-sender/direct-read.py OUT.jsonl ROUNDS [VARIANT,...]
"""
import json, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import lone_sender as ls
ls.BENCH = os.path.join(os.environ["EXP_DIR"], "wspush-bench")
BASE = list(ls.ARGS)
VARIANTS = [
    ("handoff-2-workers", {}, "0"),        # main as it is: default workers (one per CPU)
    ("handoff-1-worker", {}, "1"),         # main with --workers 1
    ("direct-1-worker", {"WSPUSH_EXP_DIRECT": "0"}, "1"),   # the worker reads Redis itself
    ("direct-every-worker", {"WSPUSH_EXP_DIRECT": "all"}, "0"),  # every worker reads compat, keeps its own ids
    # worker 0 reads Redis, delivers its own ids and hands the others' to their workers
    ("direct-worker-0-handoff", {"WSPUSH_EXP_DIRECT": "0", "WSPUSH_EXP_HANDOFF": "1"}, "0"),
    ("uws", None, "0"),
]
session = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
out = open(sys.argv[1], "a")
for run in range(1, int(sys.argv[2]) + 1):
    for name, env, workers in VARIANTS:
        if len(sys.argv) > 3 and name not in sys.argv[3].split(","):
            continue
        for k in ("WSPUSH_EXP_DIRECT", "WSPUSH_EXP_HANDOFF"):
            os.environ.pop(k, None)
        if env:
            os.environ.update(env)
        ls.ARGS = (["--workers", workers] if workers != "0" else []) + BASE
        row = ls.one_run("uws" if env is None else "wspush", run)
        row["variant"] = name
        row["session"] = session
        row["machine"] = {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}
        print(json.dumps(row), flush=True)
        out.write(json.dumps(row) + "\n")
