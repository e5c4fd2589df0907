# SPDX-License-Identifier: Apache-2.0
"""A cluster of three regcache replicas (the `cluster` section) against a single node, on
127.0.0.1 in front of Debian's docker-registry with token auth:

- cold pulls: 12 clients pull one cold image of 16 x 1 MiB layers, spread over the three
  replicas (cluster), over three replicas that do not know each other, or all on the single
  node; wall time and the upstream's blob GETs;
- a replica's first pull of an image its owner members already hold (a miss here, a hit in
  the cluster) against the single node's cold pull of it;
- blob hits (wrk, 1 MiB, 64 connections) on one cluster replica against the single node.

Run through bench/cluster.sh, which builds build-bench/regcache:
    /usr/bin/python3 bench/cluster.py --tmp DIR [--seconds 3] [--rounds 3]
Prints a table with the ratios to the single node.
"""

import argparse
import hashlib
import http.client
import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402  (sets REGCACHE_BIN and the integration suite's path)
import images  # noqa: E402
import procs  # noqa: E402
from mirror import Mirror  # noqa: E402
from token_server import TokenServer  # noqa: E402
from upstream import Upstream  # noqa: E402

MiB = 1024 * 1024
LAYERS = 16
CLIENTS = 12
CONNS = 64
SECRET = "a cluster secret for the bench"


def start_set(directory, up, n, cluster):
    ports = [procs.free_port() for _ in range(n)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    ms = []
    for i, p in enumerate(ports):
        extra = {"limits": {"max_connections": bench.MAX_CONNECTIONS}}
        if cluster:
            extra["cluster"] = {"members": urls, "self": urls[i], "secret": SECRET,
                                "probe_interval": "500ms"}
        m = Mirror(os.path.join(directory, f"r{i}"), [{"name": "docker.io", "url": up.url}],
                   port=p, revalidate_after="10m", extra=extra)
        ms.append(m)
    for m in ms:
        m.start()
        bench.track(m.proc)
    for m in ms:
        procs.wait_for(lambda m=m: procs.http_status(m.port, "/readyz") == 200, 20, "ready")
    time.sleep(1.5 if cluster else 0)  # every member has seen the others answer
    return ms


def fetch(port, path, accept=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path, headers={"Accept": bench.ACCEPT} if accept else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def pull(port, repo):
    st, body = fetch(port, f"/v2/{repo}/manifests/v1", accept=True)
    assert st == 200, st
    man = json.loads(body)
    for layer in man["layers"]:
        st, data = fetch(port, f"/v2/{repo}/blobs/{layer['digest']}")
        assert st == 200 and hashlib.sha256(data).hexdigest() == layer["digest"][7:]


def crowd(ports, repo):
    """CLIENTS pulls of repo at once, spread over ports; the wall time in seconds."""
    barrier = threading.Barrier(CLIENTS)
    errors = []

    def one(i):
        try:
            barrier.wait()
            pull(ports[i % len(ports)], repo)
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CLIENTS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise RuntimeError(errors[:3])
    return time.monotonic() - t0


def blob_gets(up, mark):
    return sum(1 for m, p, s, _ in bench.upstream_since(up, mark)
               if m == "GET" and "/blobs/sha256:" in p and s in (200, 206))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bench.PIDS_FILE = os.path.join(args.tmp, "pids")
    token = TokenServer(os.path.join(args.tmp, "token")).start()
    up = Upstream(os.path.join(args.tmp, "upstream"), token, "registry.docker.io").start()
    bench.track(up.proc)
    repos = []
    for r in range(args.rounds * 3 + 1):
        img = images.build_image(os.path.join(args.tmp, f"img{r}"), 9300 + r, (MiB,) * LAYERS,
                                 fmt="docker")
        images.push(img, up, f"library/cold{r}", "v1")
        repos.append(f"library/cold{r}")
    single = start_set(os.path.join(args.tmp, "single"), up, 1, False)
    apart = start_set(os.path.join(args.tmp, "apart"), up, 3, False)
    cluster = start_set(os.path.join(args.tmp, "cluster"), up, 3, True)
    sets = {"single node": [m.port for m in single],
            "3 replicas, no cluster": [m.port for m in apart],
            "3 replicas, cluster": [m.port for m in cluster]}
    cold = {k: [] for k in sets}
    gets = {k: [] for k in sets}
    n = 0
    for _ in range(args.rounds):  # interleaved, a fresh image each time: the median counts
        for k, ports in sets.items():
            mark = bench.upstream_mark(up)
            cold[k].append(crowd(ports, repos[n]))
            gets[k].append(blob_gets(up, mark))
            n += 1
    # a miss here that the cluster holds: replica 0 pulls what replicas 1 and 2 fetched
    warm_repo = repos[n]
    pull(cluster[1].port, warm_repo)
    pull(cluster[2].port, warm_repo)
    mark = bench.upstream_mark(up)
    t0 = time.monotonic()
    pull(cluster[0].port, warm_repo)
    warm_miss = time.monotonic() - t0
    warm_gets = blob_gets(up, mark)
    t0 = time.monotonic()
    pull(single[0].port, warm_repo)
    single_cold = time.monotonic() - t0
    # hits
    pull(single[0].port, repos[0])
    pull(cluster[0].port, repos[0])
    paths = []
    st, body = fetch(single[0].port, f"/v2/{repos[0]}/manifests/v1", accept=True)
    for layer in json.loads(body)["layers"]:
        paths.append(f"/v2/{repos[0]}/blobs/{layer['digest']}")
    hits = {"single node": [], "cluster replica": []}
    ports = {"single node": single[0].port, "cluster replica": cluster[0].port}
    for _ in range(args.rounds):
        for k, port in ports.items():
            r = bench.wrk(f"http://127.0.0.1:{port}{paths[0]}", CONNS, args.seconds)
            hits[k].append(r["requests"] / (r["duration_us"] / 1e6))
    base_cold = statistics.median(cold["single node"])
    print(f"| cold pull, {CLIENTS} clients, {LAYERS} x 1 MiB | wall s | against the single node "
          "| upstream blob GETs |")
    print("| --- | ---: | ---: | ---: |")
    for k in sets:
        t = statistics.median(cold[k])
        print(f"| {k} | {t:.2f} | {base_cold / t:.2f}x | {statistics.median(gets[k]):.0f} |")
    print()
    print("| first pull at a replica | wall s | against the single node's cold pull "
          "| upstream blob GETs |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| single node, cold | {single_cold:.3f} | 1.00x | {LAYERS} |")
    print(f"| cluster replica, the owners hold it | {warm_miss:.3f} | "
          f"{single_cold / warm_miss:.2f}x | {warm_gets} |")
    print()
    base = statistics.median(hits["single node"])
    print(f"| 1 MiB blob hits, {CONNS} connections | req/s | against the single node |")
    print("| --- | ---: | ---: |")
    for k in hits:
        rps = statistics.median(hits[k])
        print(f"| {k} | {rps:,.0f} | {rps / base:.2f}x |")
    for m in single + apart + cluster:
        m.stop()
    up.stop()
    token.stop()


if __name__ == "__main__":
    main()
