"""Medians (range) per session, entry and variant of carried_ab.py's rows; refuses a file
with an inexact run.

    python3 benches/results/carried-pass/summary.py FILE.jsonl
"""
import json, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
if any(not row.get("exact") for row in rows):
    sys.exit("an inexact run: no medians")
fields = ["server_cpu_s_per_100k", "latency_p99_ms", "switches_per_message", "deliveries_per_s"]
groups = {}
for row in rows:
    groups.setdefault((row["session"], row["entry"], row["variant"]), []).append(row)
for (session, entry, variant), group in groups.items():
    parts = []
    for field in fields:
        values = [row[field] for row in group if row.get(field) is not None]
        if values:
            parts.append(f"{field} {statistics.median(values):g} ({min(values):g}-{max(values):g})")
    print(f"{session} {entry:20} {variant:12} n={len(group)}  " + "; ".join(parts))
