"""Voluntary and involuntary context switches per message of the wspush and uws servers in
`latency-10k` (10,000 msg/s to 1,000 sockets through the compat channel, sustained), read
from /proc/PID/task/*/status over a 5 s window 4 s into the phase, ROUNDS alternated rounds.

    python3 benches/results/relay-floor/switches.py ROUNDS >> benches/results/relay-floor/switches.jsonl

Needs what benches/lone_sender.py needs (release build of wspush and wspush-bench, bun).
"""
import subprocess, sys, time, os, json
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import lone_sender as ls
from costlib import commit
SESSION = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
BUILD = commit()
def switches(pid):
    v=n=0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in open(f"/proc/{pid}/task/{tid}/status"):
                if line.startswith("voluntary_ctxt_switches"): v+=int(line.split()[1])
                if line.startswith("nonvoluntary_ctxt_switches"): n+=int(line.split()[1])
        except OSError: pass
    return v,n
for rnd in range(int(sys.argv[1])):
  for target in ("wspush","uws"):
    cmd = [ls.BENCH, "latency", "--target", target, "--quiet", "--label", "latency-10k"] + ls.ARGS
    b = subprocess.Popen(cmd, cwd=ls.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = ls.newest_pid(ls.PROCESS[target])
    time.sleep(4)
    v0,n0=switches(pid); c0=ls.thread_cpu(pid); time.sleep(5); v1,n1=switches(pid); c1=ls.thread_cpu(pid)
    out, err = b.communicate(timeout=120)
    r=json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    print(json.dumps({"target":target,"round":rnd+1,"exact":r["exact"],"server_cpu_s_per_100k":r["server_cpu_s_per_100k"],
      "latency_p99_ms":r["latency_p99_ms"],"voluntary_per_message":round((v1-v0)/50000,3),"involuntary_per_message":round((n1-n0)/50000,3),
      "window_cpu_s_per_100k":round((sum(c1.values())-sum(c0.values()))/50000*1e5,3),
      "session":SESSION,**({"build":BUILD} if target=="wspush" else {})}),flush=True)
