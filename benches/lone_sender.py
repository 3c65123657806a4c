#!/usr/bin/env python3
"""Where a lone sender's CPU goes: the `latency-10k` entry (10,000 msg/s to 1,000 sockets for
10 s through the compat channel, one message per socket write), wspush and uws alternated,
with the kernel's account of each server's steady state beside the load generator's figures.

    python3 benches/lone_sender.py [--rounds 3] [--out benches/results/lone-sender/runs.jsonl]

For each run, 4 s into the phase, it watches the server process for 5 s: its CPU time per
thread (from /proc/PID/task/*/stat) and, when `perf` can count software events here, its
context switches (`perf stat -e task-clock,context-switches`). It records per run:
`server_cpu_s_per_100k` and `latency_p99_ms` (the load generator's, whole phase), the window's
CPU-s per 100k messages, context switches per message, each thread's CPU share, the session's
start and, for wspush, the commit checked out (the build is assumed to be of it).

What it shows (BENCHMARKS.md, "The lone sender"): a one-thread server (uws: Redis read and
socket write on one event loop) pays one sleep and wake-up per message and a loopback TCP
delivery to the client charged to its write; wspush pays a second sleep and wake-up, the
subscriber thread's hand-off to the worker. What removing that hand-off gives was measured
with a throwaway build (benches/results/lone-sender/direct-read.py and its README).

Needs what benches/run.py needs (the release build of wspush and wspush-bench, redis-server,
benches/baseline-bun's `npm ci`); `perf` is optional (without it, no switch counts).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from costlib import commit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "target", "release", "wspush-bench")
ARGS = ["--connections", "1000", "--rate", "10000", "--duration", "10", "--via", "redis-compat"]
PROCESS = {"wspush": "wspush", "uws": "bun"}
SETTLE_S, WINDOW_S = 4.0, 5.0
RATE = 10_000


def thread_cpu(pid):
    """CPU seconds per thread name (user + system), summed over threads of one name."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def newest_pid(name, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = subprocess.run(["pgrep", "-n", "-x", name], capture_output=True, text=True).stdout.split()
        if found:
            return int(found[0])
        time.sleep(0.05)
    raise RuntimeError(f"no {name} process appeared within {timeout} s")


def perf_counts(pid, seconds):
    """task-clock (ms) and context switches of `pid` over `seconds`, or None without perf."""
    if not shutil.which("perf"):
        time.sleep(seconds)
        return None
    done = subprocess.run(
        ["perf", "stat", "-x", ",", "-e", "task-clock,context-switches", "-p", str(pid), "--", "sleep", str(seconds)],
        capture_output=True, text=True)
    counts = {}
    for line in done.stderr.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].replace(".", "", 1).isdigit():
            counts[parts[2]] = float(parts[0])
    if "task-clock" not in counts or "context-switches" not in counts:
        return None
    return counts


def one_run(target, run):
    command = [BENCH, "latency", "--target", target, "--quiet", "--label", "latency-10k"] + ARGS
    bench = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = newest_pid(PROCESS[target])
    # The phase starts once the clients are connected and subscribed: wait for the rate.
    time.sleep(SETTLE_S)
    before = thread_cpu(pid)
    counts = perf_counts(pid, WINDOW_S)
    after = thread_cpu(pid)
    stdout, stderr = bench.communicate(timeout=120)
    lines = [json.loads(l) for l in stdout.splitlines() if l.startswith("{")]
    if bench.returncode != 0 or not lines or not lines[-1].get("exact"):
        sys.stderr.write(stderr)
        return {"target": target, "run": run, "exact": False, "exit": bench.returncode}
    report = lines[-1]
    threads = {name: round(after[name] - before.get(name, 0.0), 2) for name in after
               if after[name] - before.get(name, 0.0) > 0.005}
    window_cpu = sum(threads.values())
    messages = RATE * WINDOW_S
    row = {
        "target": target, "run": run, "exact": True,
        "server_cpu_s_per_100k": report["server_cpu_s_per_100k"],
        "latency_p50_ms": report["latency_p50_ms"], "latency_p99_ms": report["latency_p99_ms"],
        "window_cpu_s_per_100k": round(window_cpu / messages * 1e5, 3),
        "threads_cpu_s": threads,
    }
    if counts:
        row["switches_per_message"] = round(counts["context-switches"] / messages, 2)
        row["perf_task_clock_s_per_100k"] = round(counts["task-clock"] / 1e3 / messages * 1e5, 3)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "benches", "results", "lone-sender", "runs.jsonl"))
    options = parser.parse_args()
    os.makedirs(os.path.dirname(options.out), exist_ok=True)
    rows = []
    session = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    build = commit()
    with open(options.out, "a") as out:
        for run in range(1, options.rounds + 1):
            for target in ("wspush", "uws"):
                row = one_run(target, run)
                row["machine"] = {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}
                row["session"] = session
                if target == "wspush":
                    row["build"] = build
                print(json.dumps(row), flush=True)
                out.write(json.dumps(row) + "\n")
                rows.append(row)
    inexact = [r for r in rows if not r["exact"]]
    if inexact:
        sys.exit(f"inexact or failed runs, no medians: {inexact}")
    for target in ("wspush", "uws"):
        mine = [r for r in rows if r["target"] == target]
        def median(key):
            values = [r[key] for r in mine if key in r]
            return round(statistics.median(values), 3) if values else None
        print(f"{target}: CPU-s/100k {median('server_cpu_s_per_100k')} (window {median('window_cpu_s_per_100k')}),"
              f" switches/message {median('switches_per_message')}, p99 {median('latency_p99_ms')} ms")


if __name__ == "__main__":
    main()
