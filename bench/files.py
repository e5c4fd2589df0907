# SPDX-License-Identifier: Apache-2.0
"""Blob hits against nginx, plain and over TLS: regcache serving 4 KiB, 1 MiB and 64 MiB blobs
of a proxied and of a hosted repository, and nginx (bench.py's, one worker, sendfile; a second
one over TLS) serving the same store files, all on loopback, wrk -t1 keep-alive.

    /usr/bin/python3 bench/files.py [--bin PATH]... [--seconds 3] [--rounds 3] [--tmp DIR]

Each --bin is measured in turn (e.g. an older build, then the current one) against the same
store; the figures are requests per second, the median of --rounds wrk runs, and each
regcache figure is also given as a ratio to nginx on the same file and scheme. Every process it
starts is stopped on exit. 1 MiB blobs are asked on 16 connections and 64 MiB ones on 4 for
three times as long (64 of those would not finish within a run). Besides requests per second
it gives the server's CPU time per request (user and system, from /proc, threads included),
which says more than the rate when the machine is shared with other work.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("REGCACHE_BIN", os.path.join(ROOT, "build-rel", "regcache"))

import procs  # noqa: E402
from bench import Nginx, make_cert  # noqa: E402
from mirror import Mirror  # noqa: E402
from rawpush import Pusher  # noqa: E402
from token_server import TokenServer  # noqa: E402
from upstream import Upstream  # noqa: E402

KiB, MiB = 1024, 1024 * 1024
SIZES = (("4k", 4 * KiB), ("1m", 1 * MiB), ("64m", 64 * MiB))
CONNS = {"4k": 64, "1m": 16, "64m": 4}  # 64 MiB x 64 connections would not finish a round
WRK_LUA = os.path.join(HERE, "wrk.lua")

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def cpu_ticks(pids):
    """User plus system CPU time of the processes pids (threads included), in clock ticks."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def group_pids(leader):
    """The leader and every process of its group (nginx's workers)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == leader:
                out.append(int(d))
    return out


def wrk(url, seconds, pids=(), conns=64):
    """(requests per second, server CPU microseconds per request)."""
    import json
    t0 = cpu_ticks(pids)
    p = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s", WRK_LUA,
                        url], capture_output=True, text=True, timeout=seconds + 60)
    for line in p.stdout.splitlines():
        if line.startswith("BENCH "):
            r = json.loads(line[6:])
            errors = sum(r[k] for k in ("connect", "read", "write", "status", "timeout"))
            if errors:
                raise RuntimeError(f"wrk {url}: {errors} errors")
            cpu = (cpu_ticks(pids) - t0) * TICK_US / max(r["requests"], 1)
            return r["requests"] / (r["duration_us"] / 1e6), cpu
    raise RuntimeError(f"wrk gave no figures:\n{p.stdout}\n{p.stderr}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", default=[])
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tmp")
    ap.add_argument("--only", help="comma-separated sizes: 4k,1m,64m")
    a = ap.parse_args()
    bins = a.bin or [os.environ["REGCACHE_BIN"]]
    sizes = [s for s in SIZES if not a.only or s[0] in a.only.split(",")]
    tmp = a.tmp or tempfile.mkdtemp(prefix="regcache-files-")
    started = []
    try:
        ts = TokenServer(os.path.join(tmp, "token")).start()
        started.append(ts)
        up = Upstream(os.path.join(tmp, "up"), ts, "registry.docker.io").start()
        started.append(up)
        crt, key = make_cert(os.path.join(tmp, "certs"))
        blobs = {name: os.urandom(size) for name, size in sizes}
        pusher = Pusher(up.port, ts, "registry.docker.io")
        digests = {name: pusher.blob("library/bench", data) for name, data in blobs.items()}
        mdir = os.path.join(tmp, "mirror")
        upstreams = [{"name": "docker.io", "url": up.url}]
        plain = Mirror(mdir, upstreams, revalidate_after="10m",
                       extra={"hosted": ["team/*"], "log": {"level": "warn"}})
        # seed with the first binary: proxied blobs fetched, hosted ones pushed
        os.environ["REGCACHE_BIN"] = bins[0]
        m = plain.start()
        started.append(m)
        hp = Pusher(m.port)
        for name, data in blobs.items():
            s, _, body, _ = m.request("GET", f"/v2/library/bench/blobs/{digests[name]}")
            assert s == 200 and body == data, s
            assert hp.blob("team/bench", data) == digests[name]
        m.stop()
        started.remove(m)

        store = m.storage
        ngx = Nginx(os.path.join(tmp, "nginx"), store).start()
        started.append(ngx)
        ngx_tls = Nginx(os.path.join(tmp, "nginx-tls"), store, tls=(crt, key)).start()
        started.append(ngx_tls)

        def path_of(d):
            return f"/blobs/sha256/{d[7:9]}/{d[7:]}"

        # one mirror per binary and scheme, each on its own copy of the seeded store, all
        # running at once so that every round measures each of them back to back (the machine
        # may be shared: interleaving spreads any other load over all of them alike)
        mirrors = {}
        for i, b in enumerate(bins):
            for scheme in ("http", "https"):
                d = os.path.join(tmp, f"mirror-{i}-{scheme}")
                shutil.copytree(mdir, d, ignore=shutil.ignore_patterns("*.log", "regcache.yml"))
                extra = {"hosted": ["team/*"], "log": {"level": "warn"}}
                if scheme == "https":
                    extra["tls"] = {"cert": crt, "key": key}
                os.environ["REGCACHE_BIN"] = b
                mm = Mirror(d, upstreams, revalidate_after="10m", extra=extra)
                mm.start(wait=False)
                started.append(mm)
                procs.wait_for(lambda: procs.port_open(mm.port), 20, "regcache")
                mirrors[(b, scheme)] = mm
        runs = {}
        for name, _ in sizes:
            urls = {}
            for scheme, server in (("http", ngx), ("https", ngx_tls)):
                urls[("nginx", name, scheme)] = \
                    (server.url(path_of(digests[name])), group_pids(server.proc.pid))
            for (b, scheme), mm in mirrors.items():
                for kind, repo in (("proxied", "library/bench"), ("hosted", "team/bench")):
                    urls[(b, kind, name, scheme)] = \
                        (f"{scheme}://127.0.0.1:{mm.port}/v2/{repo}/blobs/{digests[name]}",
                         [mm.proc.pid])
            conns, secs = CONNS[name], a.seconds * (3 if name == "64m" else 1)
            for k, (url, pids) in urls.items():
                wrk(url, 1, conns=conns)  # warm: connections, page cache, kept descriptors
            for _ in range(a.rounds):
                for k, (url, pids) in urls.items():
                    runs.setdefault(k, []).append(wrk(url, secs, pids, conns))
        rows = {k: statistics.median(r for r, _ in v) for k, v in runs.items()}
        cpus = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
        print(f"{'binary':<28} {'workload':<22} {'req/s':>10} {'nginx':>10} {'ratio':>7} "
              f"{'cpu us/req':>10} {'nginx':>8} {'ratio':>7}")
        for b in bins:
            for scheme in ("http", "https"):
                for name, _ in sizes:
                    for kind in ("proxied", "hosted"):
                        v, n = rows[(b, kind, name, scheme)], rows[("nginx", name, scheme)]
                        cv, cn = cpus[(b, kind, name, scheme)], cpus[("nginx", name, scheme)]
                        label = os.path.basename(os.path.dirname(b)) + "/" + os.path.basename(b)
                        print(f"{label:<28} {kind + ' ' + name + ' ' + scheme:<22} {v:>10.1f} "
                              f"{n:>10.1f} {v / max(n, 1e-9):>7.2f} {cv:>10.1f} {cn:>8.1f} "
                              f"{cv / max(cn, 1e-9):>7.2f}")
    finally:
        for p in reversed(started):
            try:
                p.stop()
            except Exception:  # noqa: BLE001
                pass
        if not a.tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
