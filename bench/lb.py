# SPDX-License-Identifier: Apache-2.0
"""Blob hits through HAProxy in front of two regcache replicas, against one replica alone and
HAProxy in front of one, with packaging/load-balancer/haproxy.cfg as shipped (listen address,
servers and admin socket replaced). Every replica serves from its own store, warmed first.

Run through bench/lb.sh, which builds build-bench/regcache:
    /usr/bin/python3 bench/lb.py --tmp DIR [--seconds 3] [--rounds 3]
Prints a table of requests/s, MB/s and the ratios.
"""

import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402  (sets REGCACHE_BIN and the integration suite's path)
import images  # noqa: E402
import procs  # noqa: E402
from token_server import TokenServer  # noqa: E402
from upstream import Upstream  # noqa: E402

MiB = 1024 * 1024
BLOBS = 16            # 1 MiB layers, spread over the replicas by digest
CONNS = 64
SHIPPED = os.path.join(bench.ROOT, "packaging", "load-balancer", "haproxy.cfg")
SERVERS = ("10.0.0.11:5000", "10.0.0.12:5000")


def start_haproxy(directory, mirrors):
    os.makedirs(directory, exist_ok=True)
    port = procs.free_port()
    text = open(SHIPPED).read()
    text = text.replace("bind :443 ssl crt /etc/haproxy/registry.example.lan.pem",
                        f"bind 127.0.0.1:{port}")
    text = text.replace("/run/haproxy/regcache-admin.sock", os.path.join(directory, "admin.sock"))
    text = text.replace("    log /dev/log local0\n", "")
    text = text.replace("    option httplog\n", "")
    for i, placeholder in enumerate(SERVERS):
        line = f"    server regcache{i + 1} {placeholder}\n"
        assert line in text, line
        text = text.replace(line, f"    server regcache{i + 1} 127.0.0.1:{mirrors[i].port}\n"
                            if i < len(mirrors) else "")
    cfg = os.path.join(directory, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(text)
    proc = bench.track(procs.Proc(["/usr/sbin/haproxy", "-db", "-f", cfg],
                                  os.path.join(directory, "out.log")))
    procs.wait_for(lambda: procs.http_status(port, "/readyz") == 200, 20, "haproxy", proc=proc)
    return port, proc


def run_wrk(port, paths, seconds):
    env = dict(os.environ, BENCH_WRK_LUA=bench.WRK_LUA, BENCH_PATHS=" ".join(paths))
    cmd = ["wrk", "-t2", f"-c{CONNS}", f"-d{seconds}s", "--timeout", "10s",
           "-s", os.path.join(HERE, "lb.lua"), f"http://127.0.0.1:{port}/"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    for line in p.stdout.splitlines():
        if line.startswith("BENCH "):
            r = bench.json.loads(line[6:])
            secs = r["duration_us"] / 1e6
            errs = sum(r[k] for k in ("connect", "read", "write", "status", "timeout"))
            return r["requests"] / secs, r["bytes"] / secs / 1e6, errs
    raise RuntimeError(f"wrk gave no figures:\n{p.stdout}\n{p.stderr}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bench.PIDS_FILE = os.path.join(args.tmp, "pids")
    img = images.build_image(os.path.join(args.tmp, "img"), 9101, (MiB,) * BLOBS, fmt="oci")
    token = TokenServer(os.path.join(args.tmp, "token")).start()
    up = Upstream(os.path.join(args.tmp, "upstream"), token, "registry.docker.io").start()
    bench.track(up.proc)
    images.push(img, up, "library/spread", "v1")
    paths = [f"/v2/library/spread/blobs/{d}" for d in img.layer_digests]
    ms = [bench.start_regcache(os.path.join(args.tmp, f"regcache{i}"), up,
                               bench.MAX_CONNECTIONS) for i in range(2)]
    for m in ms:  # every replica warm with every blob, so the hashing decides nothing here
        for p in paths:
            assert bench.get(m.port, p)[0] == 200
    one, p1 = start_haproxy(os.path.join(args.tmp, "haproxy1"), ms[:1])
    two, p2 = start_haproxy(os.path.join(args.tmp, "haproxy2"), ms)
    peers = {"one replica, direct": ms[0].port, "HAProxy, one replica": one,
             "HAProxy, two replicas": two}
    got = {k: [] for k in peers}
    for k, port in peers.items():
        run_wrk(port, paths, 1)  # warm-up, not counted
    for _ in range(args.rounds):  # interleaved, the median counts
        for k, port in peers.items():
            got[k].append(run_wrk(port, paths, args.seconds))
    base = statistics.median(r[0] for r in got["one replica, direct"])
    print("| 1 MiB blob hits, 64 connections | req/s | MB/s | against one replica | wrk errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for k in peers:
        rps = statistics.median(r[0] for r in got[k])
        mbps = statistics.median(r[1] for r in got[k])
        errs = sum(r[2] for r in got[k])
        print(f"| {k} | {rps:,.0f} | {mbps:,.0f} | {rps / base:.2f}x | {errs} |")
    for p in (p1, p2):
        p.stop(timeout=10)
    for m in ms:
        m.stop()
    up.stop()
    token.stop()


if __name__ == "__main__":
    main()
