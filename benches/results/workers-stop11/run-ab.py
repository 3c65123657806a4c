import json, subprocess, sys
B="/work/main/target/release/wspush-bench"
entries=[
 ("unicast-1node","unicast",["--connections","1000","--messages","200000","--via","redis-compat"]),
 ("unicast-1node-envelope","unicast",["--connections","1000","--messages","200000","--via","redis-envelope"]),
 ("unicast-1node-tungstenite","unicast",["--connections","1000","--messages","200000","--client","tungstenite","--via","redis-compat"]),
 ("unicast-1node-10k","unicast",["--connections","10000","--messages","200000","--via","redis-compat"]),
 ("latency-10k","latency",["--connections","1000","--rate","10000","--duration","10","--via","redis-compat"]),
]
out=open("/work/main/benches/results/workers-stop11/runs.jsonl","a")
for rnd in range(3):
    for label,scen,args in entries:
        configs=[("default",[]),("workers1",["--workers","1"]),("uws",None)]
        if rnd%2: configs.reverse()
        for name,extra in configs:
            if extra is None:
                cmd=[B,scen,"--target","uws","--quiet","--label",label]+args
            else:
                cmd=[B,scen,"--target","wspush","--quiet","--label",label]+args+extra
            p=subprocess.run(cmd,capture_output=True,text=True,timeout=300)
            line=[l for l in p.stdout.splitlines() if l.startswith("{")]
            if not line:
                print("FAILED",name,label,p.returncode,p.stderr[-500:]); continue
            r=json.loads(line[-1]); r["config"]=name; r["round"]=rnd
            out.write(json.dumps(r)+"\n"); out.flush()
            print(rnd,label,name,r.get("exact"),r.get("deliveries_per_s"),r.get("server_cpu_s_per_100k"),r.get("latency_p99_ms"),flush=True)
