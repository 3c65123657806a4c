"""Builds and servers measured side by side: each round runs every entry once per variant,
the variants' order reversed every other round (so neither always runs first on a machine
that warms or tires), one JSON line per run appended to a results file. A run that is not
exact is recorded as such and makes the whole comparison exit non-zero.

Entries are `latency-10k` (`lone_sender.one_run`: **sustained**, CPU, p99, switches) and
unicast bursts (a `wspush-bench unicast` command, **burst**). A variant is a dict:
`name`, `bench` (the `wspush-bench` binary; it starts the `wspush` beside it), `target`
(`wspush` or `uws`), optional `args` (options added to every command, or replacing the
entry's value of one: `--workers 1`, which the load generator passes on to the server, or
`--via http --with-redis`), `build` (recorded with the row) and
`latency_only` (true: the variant skips the bursts). uws skips the envelope-channel bursts:
the baselines read the compat channel only.
"""
import json
import os
import sys
import time

import lone_sender
from costlib import load_generator_report

# The unicast bursts through Redis the lone-sender work must not slow down.
BURSTS = [
    ("compat-200k", ["--connections", "1000", "--messages", "200000", "--via", "redis-compat"]),
    ("envelope-200k", ["--connections", "1000", "--messages", "200000", "--via", "redis-envelope"]),
    ("tungstenite-200k", ["--connections", "1000", "--messages", "200000", "--via", "redis-compat",
                          "--client", "tungstenite"]),
    ("compat-10k-sockets", ["--connections", "10000", "--messages", "200000", "--via", "redis-compat"]),
    ("envelope-2nodes", ["--connections", "1000", "--messages", "200000", "--via", "redis-envelope",
                         "--nodes", "2"]),
]
LATENCY_ARGS = list(lone_sender.ARGS)


def with_args(base, extra):
    """`base` with `extra`'s options added (`--option value` or a lone `--flag`), an option
    of both taking `extra`'s value (the load generator refuses an option given twice)."""
    merged = list(base)
    i = 0
    while i < len(extra):
        option = extra[i]
        value = extra[i + 1] if i + 1 < len(extra) and not extra[i + 1].startswith("--") else None
        if value is not None and option in merged:
            merged[merged.index(option) + 1] = value
        elif option not in merged:
            merged += [option] if value is None else [option, value]
        i += 1 if value is None else 2
    return merged


def one_row(entry, args, variant):
    extra = variant.get("args", [])
    if args is None:
        lone_sender.BENCH = variant["bench"]
        lone_sender.ARGS = with_args(LATENCY_ARGS, extra)
        return lone_sender.one_run(variant["target"], None)
    return load_generator_report([variant["bench"], "unicast", "--target", variant["target"], "--quiet",
                                  "--label", entry] + with_args(args, extra))


def alternate(out_path, rounds, variants, entries=None):
    """Runs `rounds` alternated rounds of `entries` (names among `latency-10k` and
    `BURSTS`; all when None) for `variants`, appending a row per run to `out_path`."""
    session = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    runs = [("latency-10k", None)] + BURSTS
    if entries:
        runs = [r for r in runs if r[0] in entries]
    inexact = 0
    with open(out_path, "a") as out:
        for run in range(1, rounds + 1):
            order = variants if run % 2 else list(reversed(variants))
            for entry, args in runs:
                for variant in order:
                    if args is not None and variant.get("latency_only"):
                        continue
                    if args is not None and variant["target"] == "uws" and "redis-envelope" in args:
                        continue  # the baselines read the compat channel only
                    row = one_row(entry, args, variant)
                    row.update({"entry": entry, "variant": variant["name"], "run": run, "session": session,
                                "machine": {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}})
                    if variant.get("args"):
                        row["args"] = variant["args"]
                    if variant.get("build"):
                        row["build"] = variant["build"]
                    inexact += not row.get("exact")
                    print(json.dumps({k: row.get(k) for k in ("entry", "variant", "run", "exact",
                                      "server_cpu_s_per_100k", "latency_p99_ms", "deliveries_per_s",
                                      "switches_per_message")}), flush=True)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
    if inexact:
        sys.exit(f"{inexact} inexact run(s): see the rows above")
