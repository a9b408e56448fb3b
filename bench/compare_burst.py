#!/usr/bin/env python3
"""Compare d2o binaries on one table: one cold /query, warm repeats, a burst of 8 concurrent
cold queries and 10 uncached repeats, binaries interleaved, through curl on 127.0.0.1.

    python3 bench/compare_burst.py TABLE_DIR BINARY [BINARY ...]      (ROUNDS=2 WARM=5 UNCACHED=10 SLOW=0)

Prints one JSON line per binary and round: cold_ms, cold_hwm (the server's VmHWM in MB after
it), warm_ms and warm_cpu_ms (medians of WARM), warm_cpu_mean_ms (the mean), burst_ms (until the last of 8 answers) and
burst_hwm, uncached_hwm_series (VmHWM after each request with fileListCacheMib: 0), and with
SLOW=N slow_hwm: VmHWM after N concurrent warm answers read at 20 MB/s each (curl --limit-rate).
Standard library only; `bench/query_bench.sh` is the full benchmark with its floor.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
def free_port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
def start(binary, table, cache_mib=None, env=None):
    port=free_port(); d=Path(tempfile.mkdtemp())
    cfg=f"""version: 1
shares:
- name: bench
  schemas:
  - name: default
    tables:
    - name: t
      location: {table}
authorization:
  bearerToken: tok
host: 127.0.0.1
port: {port}
"""
    if cache_mib is not None: cfg+=f"fileListCacheMib: {cache_mib}\n"
    (d/"s.yaml").write_text(cfg)
    p=subprocess.Popen([binary,"serve","--config",str(d/"s.yaml")],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL,env={**os.environ,**(env or {})})
    for _ in range(200):
        try: socket.create_connection(("127.0.0.1",port),0.1).close(); break
        except OSError: time.sleep(0.05)
    return p,port
def status(p,key):
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith(key): return int(l.split()[1])/1024
def cpu(p):
    f=open(f"/proc/{p.pid}/stat").read().rsplit(")",1)[1].split(); return (int(f[11])+int(f[12]))*10
def q(port, rate=None):
    return subprocess.Popen(["curl","-s","-o","/dev/null",*(["--limit-rate",rate] if rate else []),"-w","%{http_code} %{size_download}","-X","POST","-H","Authorization: Bearer tok","-H","Content-Type: application/json","-d","{}",f"http://127.0.0.1:{port}/delta-sharing/shares/bench/schemas/default/tables/t/query"],stdout=subprocess.PIPE,text=True)
def run(binary, table, burst=8, warm=5, uncached=10, slow=0):
    r={}
    p,port=start(binary,table); t=time.time(); c=q(port); out=c.communicate()[0]; r["cold_ms"]=(time.time()-t)*1000; r["cold_hwm"]=status(p,"VmHWM"); assert out.startswith("200"),out
    ws=[]; cs=[]
    for _ in range(warm):
        c0=cpu(p); t=time.time(); q(port).communicate(); ws.append((time.time()-t)*1000); cs.append(cpu(p)-c0)
    r["warm_ms"]=statistics.median(ws); r["warm_cpu_ms"]=statistics.median(cs); r["warm_hwm"]=status(p,"VmHWM")
    # The CPU clock ticks in 10 ms: the mean over all warm requests resolves finer than the median.
    r["warm_cpu_mean_ms"]=sum(cs)/len(cs)
    if slow:
        # Warm answers to clients slower than the server: what the server holds per response.
        cs=[q(port,"20M") for _ in range(slow)]; [c.communicate() for c in cs]; r["slow_hwm"]=status(p,"VmHWM")
    p.kill(); p.wait()
    p,port=start(binary,table); t=time.time(); cs=[q(port) for _ in range(burst)]; outs=[c.communicate()[0] for c in cs]; r["burst_ms"]=(time.time()-t)*1000; r["burst_hwm"]=status(p,"VmHWM"); r["burst_sizes"]=sorted(set(outs)); p.kill(); p.wait()
    if uncached:
        p,port=start(binary,table,cache_mib=0); hw=[]
        for _ in range(uncached):
            q(port).communicate(); hw.append(round(status(p,"VmHWM")))
        r["uncached_hwm_series"]=hw; r["uncached_rss_end"]=status(p,"VmRSS"); p.kill(); p.wait()
    return r
if __name__=="__main__":
    table=sys.argv[1]; bins=sys.argv[2:]
    for rnd in range(int(os.environ.get("ROUNDS","1"))):
        for b in bins:
            r=run(b,table,warm=int(os.environ.get("WARM","5")),uncached=int(os.environ.get("UNCACHED","10")),slow=int(os.environ.get("SLOW","0")))
            print(b, json.dumps({k:(round(v,1) if isinstance(v,float) else v) for k,v in r.items()}),flush=True)
