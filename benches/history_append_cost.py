#!/usr/bin/env python3
"""What one history append costs Redis: one script call per message vs one call per 32.

    python3 benches/history_append_cost.py

Starts a scratch redis-server (port 46001, no persistence), loads engine/src/cluster/lua/
append.lua as it was before batching (one message per call, kept inline below as `single`
read with git show) and a batched form, pipelines 20,000 appends of 64 bytes
to 1,000 ids each way, and a plain PUBLISH for comparison; Redis's own CPU (INFO cpu) per
message is printed. Results: benches/results/history-append-cost.txt.
"""
import socket, subprocess, time, os
port=46001
p=subprocess.Popen(["redis-server","--port",str(port),"--save","","--appendonly","no"],stdout=subprocess.DEVNULL)
time.sleep(0.3)
s=socket.create_connection(("127.0.0.1",port))
def enc(*args):
    out=b"*%d\r\n"%len(args)
    for a in args:
        if isinstance(a,str): a=a.encode()
        if isinstance(a,int): a=str(a).encode()
        out+=b"$%d\r\n%s\r\n"%(len(a),a)
    return out
def readall(n):
    # crude: read until n replies seen by counting top-level lines is hard; just read with timeout
    s.settimeout(2); data=b""
    try:
        while True:
            d=s.recv(1<<20)
            if not d: break
            data+=d
            if data.count(b"\r\n")>0 and len(d)<(1<<20): 
                s.settimeout(0.05)
    except socket.timeout: pass
    return data
# The one-message script as it was before batching (commit 4219f36).
single=subprocess.run(["git","show","4219f36:engine/src/cluster/lua/append.lua"],capture_output=True,text=True,check=True).stdout
many='''
local n = tonumber(ARGV[1])
local out = {}
for i = 0, n - 1 do
  local stream, meta = KEYS[2*i+1], KEYS[2*i+2]
  local b = 2 + i*9
  local m = redis.call('HMGET', meta, 'e', 's', ARGV[b+8])
  local epoch, top = m[1], tonumber(m[2] or '0')
  if not epoch or (top > 0 and redis.call('EXISTS', stream) == 0) then
    redis.call('DEL', stream); epoch = ARGV[b+7]; top = 0
  end
  top = top + 1
  local off = string.format('%d', top)
  redis.call('HSET', meta, 'e', epoch, 's', off, ARGV[b+8], ARGV[b+9])
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[b+5], off, ARGV[b+3], ARGV[b+4])
  redis.call('PEXPIRE', stream, ARGV[b+6]); redis.call('PEXPIRE', meta, ARGV[b+6])
  local pos = epoch .. ':' .. off
  out[#out+1] = {redis.call('PUBLISH', ARGV[b+1], ARGV[b+2] .. string.char(#pos) .. pos .. ARGV[b+4]), top, epoch}
end
return out
'''
def cpu():
    s.sendall(enc("INFO","cpu")); d=readall(1).decode()
    u=float(d.split("used_cpu_user:")[1].split()[0]); sy=float(d.split("used_cpu_sys:")[1].split()[0]); return u+sy
s.sendall(enc("SCRIPT","LOAD",single)); sha1=readall(1).split(b"\r\n")[1].decode()
s.sendall(enc("SCRIPT","LOAD",many)); sha2=readall(1).split(b"\r\n")[1].decode()
N=20000; B=32; body="x"*64; head="\x02\x01\x05node0"
c0=cpu()
seq=0
for start in range(0,N,B):
    buf=b""
    for i in range(start,start+B):
        seq+=1; idn="id%d"%(i%1000)
        buf+=enc("EVALSHA",sha1,2,"h:"+idn,"m:"+idn,"u:"+idn,head,"t",body,100,600000,"epoch001","p:abc",seq)
    s.sendall(buf); readall(B)
c1=cpu()
print("single: %.2f us per append"%((c1-c0)/N*1e6))
for start in range(0,N,B):
    keys=[];argv=[B]
    for i in range(start,start+B):
        seq+=1; idn="jd%d"%(i%1000)
        keys+=["h:"+idn,"m:"+idn]; argv+=["u:"+idn,head,"t",body,100,600000,"epoch001","p:abc",seq]
    s.sendall(enc("EVALSHA",sha2,len(keys),*keys,*argv)); readall(1)
c2=cpu()
print("batched %d: %.2f us per append"%(B,(c2-c1)/N*1e6))
for start in range(0,N,B):
    buf=b""
    for i in range(start,start+B):
        idn="id%d"%(i%1000); buf+=enc("PUBLISH","u:"+idn,head+body)
    s.sendall(buf); readall(B)
c3=cpu()
print("publish: %.2f us"%((c3-c2)/N*1e6))
p.kill()
