# SPDX-License-Identifier: Apache-2.0
"""regcache against the incumbent (docker-registry 2.8 in proxy mode) and nginx (static files,
sendfile), all on loopback against one seeded upstream docker-registry with token auth.

Run through bench/run, which builds build-bench/regcache, raises the file limit and calls
    /usr/bin/python3 bench/bench.py --tmp DIR --out bench/results [--seconds 3] [--rounds 5]
Prints a table, writes results.csv, results.md and chart.svg into --out.

The upstream, token issuer, image builder and process helpers are the integration suite's own
modules (tests/integration), imported as they are.
"""

import argparse
import csv
import datetime
import errno
import http.client
import json
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
os.environ.setdefault("REGCACHE_BIN", os.path.join(ROOT, "build-bench", "regcache"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import images  # noqa: E402
import procs  # noqa: E402
import upstream as upstream_mod  # noqa: E402
from mirror import Mirror  # noqa: E402
from switchproxy import SwitchProxy  # noqa: E402
from token_server import TokenServer  # noqa: E402
from upstream import Upstream  # noqa: E402

MiB = 1024 * 1024
ACCEPT = ", ".join(images.ACCEPT_ALL)
UP_USER, UP_PASS = "pushuser", "pushpass"  # the token issuer's one user
WRK_LUA = os.path.join(HERE, "wrk.lua")
FLOOD_LUA = os.path.join(HERE, "flood.lua")
CHART_GP = os.path.join(HERE, "chart.gp")

HOT_LAYERS = (1 * MiB, 64 * MiB)                    # blob hit workloads
COLD_LAYERS = (40 * MiB, 30 * MiB, 20 * MiB, 10 * MiB)  # the ~100 MiB cold pull
STORM_LAYERS = (16 * MiB, 8 * MiB, 4 * MiB)          # the 20-client storm
STORM_CLIENTS = 20
HUNG_LAYERS = (8 * MiB, 4 * MiB)                     # the image pulled with the upstream hung
HUNG_LATER = 10       # later cached answers timed with the upstream hung (the median counts)
HUNG_PATIENCE = 35    # s a client waits for one answer (registry:2's stall is ~30 s)
HUNG_LATER_BUDGET = 20  # s for the later answers of one peer: stops after at least one past it
HUNG_COPY_PATIENCE = 45  # s for the whole skopeo copy
FLOOD_LAYERS = (256 * 1024,)  # the blob read while one address floods the mirror with logins
FLOOD_CONNS = 8       # the flood's connections, all from one address
FLOOD_SAMPLES = 1000  # timed blob hits, idle and under the flood
FLOOD_BUDGET = 60     # s for the timed hits under the flood (fewer samples past it)
SCRAPE_LAYERS = (1 * MiB,)  # the blob read while /metrics is scraped
SCRAPE_COST_SAMPLES = 2000  # sequential scrapes of an idle mirror, for the cost of one
SCRAPE_RATES = (1, 10)  # scrapes a second: Prometheus' shortest usual interval, and a storm
# what Prometheus 2.42 sends with each scrape
SCRAPE_HEADERS = {"Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-"
                  "text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                  "Accept-Encoding": "gzip", "User-Agent": "Prometheus/2.42.0",
                  "X-Prometheus-Scrape-Timeout-Seconds": "1"}
CONNS = 64            # wrk connections for manifests and 1 MiB blobs
BIG_CONNS = 8         # wrk connections for 64 MiB blobs
ROUNDS = 5            # wrk runs per peer and workload (the median counts)
C10K = 10_000
NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # bench/run raised it
# regcache's limits.max_connections for the bench instance: room for the 10,000, within the
# descriptor limit less what regcache keeps for itself (it warns below max_connections + 256)
MAX_CONNECTIONS = min(20_000, NOFILE - 1024)

PIDS_FILE = None
PROFILE_DIR = None  # --profile DIR: perf record regcache during each of its wrk runs


def log(msg):
    sys.stderr.write(f"bench: {msg}\n")
    sys.stderr.flush()


def track(proc):
    """Records a started process group's id so bench/run can kill it if we die hard."""
    if PIDS_FILE:
        with open(PIDS_FILE, "a") as f:
            f.write(f"{proc.pid}\n")
    return proc


# -- peers -----------------------------------------------------------------------------------
INCUMBENT_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
  secret: regcache-bench-secret
proxy:
  remoteurl: {remote}
  username: {user}
  password: {password}
"""


class Server:
    """A process the run starts, tracked for clean-up, ready once `probe_path` answers 200."""

    proc = None

    def _run(self, argv, log, probe_path, what):
        self.proc = track(procs.Proc(argv, log))
        procs.wait_for(lambda: procs.http_status(self.port, probe_path) == 200, 20,
                       f"{what} on :{self.port}", proc=self.proc)
        return self

    def stop(self):
        if self.proc:
            self.proc.stop(timeout=10)
            self.proc = None


class Incumbent(Server):
    """docker-registry (distribution 2.8) as a pull-through cache of the upstream: the config
    of the registry:2 image (in-memory blob descriptor cache) plus `proxy:`; its logging is
    cut to warnings (no access log), which can only help it."""

    def __init__(self, directory, up):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = procs.free_port()
        self.config_path = os.path.join(directory, "config.yml")
        with open(self.config_path, "w") as f:
            f.write(INCUMBENT_CONFIG.format(root=os.path.join(directory, "storage"),
                                            port=self.port, remote=up.url, user=UP_USER,
                                            password=UP_PASS))
        self.proc = None

    def start(self):
        return self._run(["docker-registry", "serve", self.config_path],
                         os.path.join(self.dir, "registry.log"), "/v2/", "incumbent")


NGINX_CONFIG = """\
daemon off;
user root;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {store};
        location = /ping {{ return 200 "ok"; }}
    }}
}}
"""


class Nginx(Server):
    """nginx as a plain static file server over regcache's store directory: one worker
    (regcache is one event loop), sendfile on, keep-alive without a request cap, access log on
    (regcache logs every request too). URLs are store paths: /blobs/sha256/ab/abcd..."""

    def __init__(self, directory, store):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = procs.free_port()
        self.conf = os.path.join(directory, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONFIG.format(d=directory, port=self.port, store=store, nofile=NOFILE))
        self.proc = None

    def start(self):
        return self._run(["nginx", "-e", os.path.join(self.dir, "error.log"), "-c", self.conf],
                         os.path.join(self.dir, "stdout.log"), "/ping", "nginx")


def start_regcache(directory, up, max_connections=None, revalidate_after="10m"):
    extra = {"limits": {"max_connections": max_connections}} if max_connections else None
    m = Mirror(directory, [{"name": "docker.io", "url": up.url}],
               revalidate_after=revalidate_after, extra=extra)
    m.start()
    track(m.proc)
    return m


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# -- upstream accounting -----------------------------------------------------------------------
def upstream_log(up):
    """Every upstream access-log line as (method, path, status, bytes)."""
    out = []
    try:
        with open(up.log_path, errors="replace") as f:
            for line in f:
                m = upstream_mod.ACCESS_RE.match(line)
                if m:
                    size = m.group(4)
                    out.append((m.group(1), m.group(2), int(m.group(3)),
                                int(size) if size.isdigit() else 0))
    except FileNotFoundError:
        pass
    return out


def upstream_mark(up, quiet=0.5, timeout=10.0):
    return len(procs.wait_settled(lambda: upstream_log(up), quiet=quiet, timeout=timeout))


def upstream_since(up, mark, quiet=1.0, timeout=60.0):
    """Lines after mark, once the log has been quiet for `quiet` s (a proxy may still be
    fetching in the background after its client finished)."""
    return procs.wait_settled(lambda: upstream_log(up), quiet=quiet, timeout=timeout)[mark:]


# -- HTTP helpers ------------------------------------------------------------------------------
def get(port, path, accept=False, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": ACCEPT} if accept else {})
        resp = conn.getresponse()
        n = 0
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
        return resp.status, n
    finally:
        conn.close()


def wrk(url, conns, seconds, accept=False, threads=2):
    env = dict(os.environ, BENCH_ACCEPT=ACCEPT if accept else "")
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
           "-s", WRK_LUA, url]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    for line in p.stdout.splitlines():
        if line.startswith("BENCH "):
            r = json.loads(line[6:])
            secs = r["duration_us"] / 1e6
            r["rps"] = r["requests"] / secs
            r["mbps"] = r["bytes"] / secs / 1e6
            r["errors"] = sum(r[k] for k in ("connect", "read", "write", "status", "timeout"))
            return r
    raise RuntimeError(f"wrk gave no figures ({p.returncode}):\n{p.stdout}\n{p.stderr}")


class _Conn:
    __slots__ = ("sock", "out", "buf", "need")

    def __init__(self, sock, out):
        self.sock, self.out, self.buf, self.need = sock, out, bytearray(), None


def open_and_request(port, path, n, deadline_s=120.0):
    """Opens n connections at once (non-blocking, one selector), sends one keep-alive GET of path
    on each and reads each response in full. Returns (open sockets, ok, Counter of errors,
    seconds). The sockets are left open for the caller to measure and close."""
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {ACCEPT}\r\n"
           "Connection: keep-alive\r\n\r\n").encode()
    sel = selectors.DefaultSelector()
    errors, ok, socks = Counter(), 0, []
    t0 = time.monotonic()
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        rc = s.connect_ex(("127.0.0.1", port))
        if rc not in (0, errno.EINPROGRESS):
            errors[f"connect {errno.errorcode.get(rc, rc)}"] += 1
            s.close()
            continue
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE, _Conn(s, req))
    pending = len(socks)

    def finish(c, error=None):
        nonlocal pending, ok
        sel.unregister(c.sock)
        pending -= 1
        if error:
            errors[error] += 1
        else:
            ok += 1

    deadline = t0 + deadline_s
    while pending and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=1.0):
            c = key.data
            if ev & selectors.EVENT_WRITE:
                try:
                    sent = c.sock.send(c.out)
                except BlockingIOError:
                    continue
                except OSError as e:
                    finish(c, f"send {errno.errorcode.get(e.errno, e.errno)}")
                    continue
                c.out = c.out[sent:]
                if not c.out:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                finish(c, f"recv {errno.errorcode.get(e.errno, e.errno)}")
                continue
            if not data:
                finish(c, "closed before a full response")
                continue
            c.buf += data
            if c.need is None:
                end = c.buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                head = bytes(c.buf[:end]).decode("latin-1").split("\r\n")
                status = int(head[0].split()[1])
                if status != 200:
                    finish(c, f"status {status}")
                    continue
                length = 0
                for h in head[1:]:
                    k, _, v = h.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                c.need = end + 4 + length
            if len(c.buf) >= c.need:
                finish(c, None)
    if pending:
        errors["no full response in time"] += pending
    return socks, ok, errors, time.monotonic() - t0


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


# -- the run ---------------------------------------------------------------------------------
class Results:
    """Rows: key -> dict(label, unit, better, values {peer: value}, target, holds, note)."""

    def __init__(self):
        self.rows = {}

    def set(self, key, label, unit, better, **values):
        row = self.rows.setdefault(key, dict(label=label, unit=unit, better=better, values={},
                                             target="", holds=None, note=""))
        row["values"].update({k: v for k, v in values.items() if v is not None})
        return row


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def machine_info():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nproc": os.cpu_count(), "kernel": platform.release(), "cpu": cpu,
            "mem_mib": mem}


def bench_throughput(res, up, rc, inc, ngx, hot, seconds):
    """wrk against each peer in turn: manifests by digest and tag, blobs of 1 and 64 MiB."""
    man = hot.manifests[0]
    layer1, layer64 = man.layers[0].digest, man.layers[1].digest
    store_path = lambda d: f"/blobs/sha256/{d[7:9]}/{d[7:]}"  # noqa: E731
    cases = [
        ("manifest_digest", "manifest by digest", CONNS, True,
         {"regcache": (rc.port, f"/v2/library/hot/manifests/{man.digest}"),
          "incumbent": (inc.port, f"/v2/library/hot/manifests/{man.digest}"),
          "nginx": (ngx.port, store_path(man.digest))}),
        ("manifest_tag", "manifest by tag", CONNS, True,
         {"regcache": (rc.port, "/v2/library/hot/manifests/v1"),
          "incumbent": (inc.port, "/v2/library/hot/manifests/v1")}),
        ("blob_1m", "blob 1 MiB", CONNS, False,
         {"regcache": (rc.port, f"/v2/library/hot/blobs/{layer1}"),
          "incumbent": (inc.port, f"/v2/library/hot/blobs/{layer1}"),
          "nginx": (ngx.port, store_path(layer1))}),
        ("blob_64m", "blob 64 MiB", BIG_CONNS, False,
         {"regcache": (rc.port, f"/v2/library/hot/blobs/{layer64}"),
          "incumbent": (inc.port, f"/v2/library/hot/blobs/{layer64}"),
          "nginx": (ngx.port, store_path(layer64))}),
    ]
    # rounds interleave the peers, so that a burst of load from elsewhere on the machine hits
    # them alike; each figure is the median over the rounds
    raw = {}
    for key, label, conns, accept, peers in cases:
        for rnd in range(ROUNDS):
            for peer, (port, path) in peers.items():
                url = f"http://127.0.0.1:{port}{path}"
                if rnd == 0:
                    wrk(url, conns, 1, accept)  # warm-up, not counted
                perf = None
                if PROFILE_DIR and peer == "regcache" and rnd == ROUNDS - 1:
                    perf = start_perf(rc.proc.pid, key, seconds)
                mark = len(upstream_log(up))
                r = wrk(url, conns, seconds, accept)
                if perf:
                    finish_perf(perf, key)
                r["upstream"] = len(upstream_since(up, mark, quiet=0.3, timeout=5))
                raw.setdefault((key, peer), []).append(r)
                log(f"{label:<20} {peer:<9} {r['rps']:>10.0f} req/s {r['mbps']:>9.1f} MB/s "
                    f"p50 {r['p50_us'] / 1000:.2f} ms p99 {r['p99_us'] / 1000:.2f} ms "
                    f"errors {r['errors']}, upstream requests {r['upstream']}")
    for k, runs in raw.items():
        med = {f: statistics.median(r[f] for r in runs)
               for f in ("rps", "mbps", "p50_us", "p99_us")}
        med["errors"] = sum(r["errors"] for r in runs)
        med["upstream"] = sum(r["upstream"] for r in runs)
        raw[k] = med
    for key, label, conns, _, peers in cases:
        vals = {p: raw[(key, p)] for p in peers}
        errs = {p: v["errors"] for p, v in vals.items() if v["errors"]}
        ups = {p: v["upstream"] for p, v in vals.items() if v["upstream"]}
        note = (f"{conns} conns, median of {ROUNDS} runs of {seconds} s"
                + (f"; wrk errors {errs}" if errs else "")
                + (f"; upstream requests during the run {ups}" if ups else ""))
        if key.startswith("manifest"):
            res.set(key + "_rps", label, "req/s", "high",
                    **{p: v["rps"] for p, v in vals.items()})["note"] = (
                note + ("; nginx: the same bytes as a static file" if "nginx" in vals else ""))
        else:
            res.set(key + "_mbps", label, "MB/s", "high",
                    **{p: v["mbps"] for p, v in vals.items()})["note"] = note
    for key, label in (("manifest_digest", "manifest by digest"), ("blob_1m", "blob 1 MiB")):
        vals = {p: raw[(key, p)] for p in ("regcache", "incumbent", "nginx")}
        res.set(key + "_p50", f"{label} p50 latency", "ms", "low",
                **{p: v["p50_us"] / 1000 for p, v in vals.items()})["note"] = f"{CONNS} conns"
        res.set(key + "_p99", f"{label} p99 latency", "ms", "low",
                **{p: v["p99_us"] / 1000 for p, v in vals.items()})["note"] = f"{CONNS} conns"


def start_perf(pid, key, seconds):
    data = os.path.join(PROFILE_DIR, f"perf-{key}.data")
    return subprocess.Popen(["perf", "record", "-g", "-o", data, "-p", str(pid), "--",
                             "sleep", str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), data


def finish_perf(perf, key):
    """perf report of the regcache process during one workload, into --profile DIR."""
    p, data = perf
    p.wait(60)
    out = os.path.join(PROFILE_DIR, f"perf-{key}.txt")
    with open(out, "w") as f:
        subprocess.run(["perf", "report", "--stdio", "--no-children", "-i", data,
                        "--percent-limit", "0.5"], stdout=f, stderr=subprocess.DEVNULL)
    log(f"profile of regcache during {key}: {out}")


def bench_connections(res, rc, inc, hot):
    man = hot.manifests[0]
    path = f"/v2/library/hot/manifests/{man.digest}"
    for peer, server in (("regcache", rc), ("incumbent", inc)):
        pid = server.proc.pid
        idle = rss_mib(pid)
        socks, ok, errors, secs = open_and_request(server.port, path, 1000)
        time.sleep(0.5)
        held = rss_mib(pid)
        close_all(socks)
        log(f"RSS {peer}: idle {idle:.1f} MiB, 1,000 connections {held:.1f} MiB "
            f"({ok} ok, errors {dict(errors)})")
        res.set("rss_idle", "RSS idle", "MiB", "low", **{peer: idle})
        res.set("rss_1000", "RSS with 1,000 connections", "MiB", "low", **{peer: held})
        if errors:
            res.rows["rss_1000"]["note"] += f"{peer} errors {dict(errors)}; "
    time.sleep(1)
    for peer, server in (("regcache", rc), ("incumbent", inc)):
        socks, ok, errors, secs = open_and_request(server.port, path, C10K)
        held = rss_mib(server.proc.pid)
        close_all(socks)
        nerr = sum(errors.values())
        log(f"{C10K} connections {peer}: {ok} ok, {nerr} errors {dict(errors)}, {secs:.2f} s, "
            f"RSS {held:.1f} MiB")
        res.set("c10k_errors", f"{C10K:,} connections: errors", "count", "low", **{peer: nerr})
        res.set("c10k_seconds", f"{C10K:,} connections: time to all answers", "s", "low",
                **{peer: secs})
        res.set("c10k_rss", f"RSS with {C10K:,} connections", "MiB", "low", **{peer: held})
        if errors:
            res.rows["c10k_errors"]["note"] += f"{peer}: {dict(errors)}; "
        time.sleep(1)


def skopeo_pull(port, ref, dest):
    return subprocess.run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                           "--preserve-digests", f"docker://127.0.0.1:{port}/{ref}",
                           f"oci:{dest}:latest"], capture_output=True, text=True, timeout=300)


def bench_cold_pull(res, up, tmp, cold):
    size = sum(len(b) for b in cold.blobs.values())  # manifest + config + layers
    for peer in ("regcache", "incumbent"):
        d = os.path.join(tmp, f"cold-{peer}")
        server = (start_regcache(d, up) if peer == "regcache"
                  else Incumbent(d, up).start())
        try:
            mark = upstream_mark(up)
            t0 = time.monotonic()
            p = skopeo_pull(server.port, "library/cold:v1", os.path.join(d, "out"))
            wall = time.monotonic() - t0
            if p.returncode != 0:
                raise RuntimeError(f"cold pull through {peer} failed:\n{p.stderr}")
            images.verify_oci_layout(os.path.join(d, "out"), cold.digest)
            reqs = upstream_since(up, mark)
            got = sum(b for m, path, st, b in reqs if m == "GET" and st != 401)
            gets = upstream_mod.blob_gets([(m, path, st) for m, path, st, _ in reqs])
        finally:
            server.stop()
            shutil.rmtree(d, ignore_errors=True)
        log(f"cold pull {peer}: {wall:.2f} s, upstream sent {got / MiB:.1f} MiB for a "
            f"{size / MiB:.1f} MiB image ({got / size:.2f}x), blob GETs {sorted(gets.values())}")
        res.set("cold_pull_s", f"cold pull {size / MiB:.0f} MiB, {len(COLD_LAYERS)} layers",
                "s", "low", **{peer: wall})
        res.set("cold_pull_bytes", "cold pull: upstream bytes / image", "x", "low",
                **{peer: got / size})


def bench_storm(res, up, tmp, storm):
    digests = storm.blob_digests
    for peer in ("regcache", "incumbent"):
        d = os.path.join(tmp, f"storm-{peer}")
        server = (start_regcache(d, up) if peer == "regcache"
                  else Incumbent(d, up).start())
        try:
            mark = upstream_mark(up)
            t0 = time.monotonic()
            ps = [subprocess.Popen(["skopeo", "--insecure-policy", "copy",
                                    "--src-tls-verify=false", "--preserve-digests",
                                    f"docker://127.0.0.1:{server.port}/library/storm:v1",
                                    f"oci:{os.path.join(d, f'out{i}')}:latest"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                  for i in range(STORM_CLIENTS)]
            failed = []
            for i, p in enumerate(ps):
                _, err = p.communicate(timeout=300)
                if p.returncode != 0:
                    failed.append(f"client {i}: {err.decode(errors='replace').strip()[-200:]}")
            wall = time.monotonic() - t0
            reqs = upstream_since(up, mark)
            gets = upstream_mod.blob_gets([(m, path, st) for m, path, st, _ in reqs])
        finally:
            server.stop()
            shutil.rmtree(d, ignore_errors=True)
        per = [gets[x] for x in digests]
        mean = sum(per) / len(per)
        log(f"storm {peer}: {STORM_CLIENTS} clients in {wall:.2f} s, upstream GETs per blob "
            f"{per} (mean {mean:.2f}), failed clients {len(failed)}")
        for f in failed[:3]:
            log(f"  {f}")
        res.set("storm_gets", f"storm of {STORM_CLIENTS}: upstream GETs per blob (mean)",
                "GETs", "low", **{peer: mean})
        res.set("storm_gets_max", f"storm of {STORM_CLIENTS}: upstream GETs per blob (max)",
                "GETs", "low", **{peer: max(per)})
        res.set("storm_s", f"storm of {STORM_CLIENTS}: wall time", "s", "low", **{peer: wall})
        if failed:
            res.rows["storm_gets"]["note"] += f"{peer}: {len(failed)} clients failed; "


class _Via:
    """What start_regcache and Incumbent need of an upstream (its URL), for one behind a proxy."""

    def __init__(self, url):
        self.url = url


def timed_get(port, path, timeout):
    """(seconds, status) of one manifest GET; status None when no answer came in `timeout` s
    (the seconds are then the timeout, a lower bound)."""
    t0 = time.monotonic()
    try:
        st, _ = get(port, path, accept=True, timeout=timeout)
    except (OSError, http.client.HTTPException):
        st = None
    return time.monotonic() - t0, st


def bench_hung(res, up, tmp, hung):
    """A cached image with its upstream hung (a SwitchProxy in "hang" mode between the peer and
    the upstream: connections accepted, nothing ever answered). Each peer pulls the image once
    through the proxy, its tag then goes past revalidate_after (regcache: 1 s; the incumbent
    checks the upstream on every tag request anyway), the proxy hangs, and the run times the
    first manifest GET by tag, the later ones (median), and a whole `skopeo copy` of the image.
    Every wait is bounded (HUNG_PATIENCE per answer, HUNG_COPY_PATIENCE for the copy); a figure
    at its bound means no answer came, and the note says so. nginx has no upstream in this
    bench, so it has no figure here."""
    path = "/v2/library/hung/manifests/v1"
    for peer in ("regcache", "incumbent"):
        d = os.path.join(tmp, f"hung-{peer}")
        proxy = SwitchProxy(up.port)
        via = _Via(proxy.url)
        server = (start_regcache(d, via, revalidate_after="1s") if peer == "regcache"
                  else Incumbent(d, via).start())
        notes = []
        try:
            p = skopeo_pull(server.port, "library/hung:v1", os.path.join(d, "warm"))
            if p.returncode != 0:
                raise RuntimeError(f"warm pull through {peer} failed:\n{p.stderr}")
            time.sleep(1.5)  # past regcache's revalidate_after
            proxy.set_mode("hang")
            first, st = timed_get(server.port, path, HUNG_PATIENCE)
            if st != 200:
                notes.append(f"first answer {'none' if st is None else st}")
            later, t_later = [], time.monotonic()
            while len(later) < HUNG_LATER and (
                    not later or time.monotonic() - t_later < HUNG_LATER_BUDGET):
                secs, st = timed_get(server.port, path, HUNG_PATIENCE)
                later.append(secs)
                if st != 200:
                    notes.append(f"a later answer {'none' if st is None else st}")
            t0 = time.monotonic()
            try:
                p = subprocess.run(["skopeo", "--insecure-policy", "copy",
                                    "--src-tls-verify=false", "--preserve-digests",
                                    f"docker://127.0.0.1:{server.port}/library/hung:v1",
                                    f"oci:{os.path.join(d, 'out')}:latest"],
                                   capture_output=True, text=True, timeout=HUNG_COPY_PATIENCE)
                copy = time.monotonic() - t0
                if p.returncode != 0:
                    notes.append(f"copy failed after {copy:.1f} s: "
                                 f"{p.stderr.strip().splitlines()[-1][-160:] if p.stderr else ''}")
                else:
                    images.verify_oci_layout(os.path.join(d, "out"), hung.digest)
            except subprocess.TimeoutExpired:
                copy = float(HUNG_COPY_PATIENCE)
                notes.append(f"copy unfinished after {HUNG_COPY_PATIENCE} s")
            held = proxy.held()
        finally:
            proxy.set_mode("pass")  # lets every held request go before the peer stops
            server.stop()
            proxy.stop()
            shutil.rmtree(d, ignore_errors=True)
        med = statistics.median(later)
        notes = list(dict.fromkeys(notes))  # once each, in order
        log(f"hung upstream {peer}: first cached answer {first:.2f} s, later ones median "
            f"{med * 1000:.1f} ms ({len(later)}), skopeo copy {copy:.2f} s; requests held by the "
            f"proxy at the end {held}" + (f"; {'; '.join(notes)}" if notes else ""))
        res.set("hung_first_s", "hung upstream: first cached answer", "s", "low",
                **{peer: first})
        res.set("hung_later_ms", "hung upstream: later cached answers (median)", "ms", "low",
                **{peer: med * 1000})["note"] += f"{peer}: {len(later)} answers; "
        res.set("hung_copy_s", "hung upstream: cached skopeo copy", "s", "low", **{peer: copy})
        if notes:
            res.rows["hung_first_s"]["note"] += f"{peer}: {', '.join(notes)}; "


def evict_page_cache(path):
    """Drops the file's pages from the page cache (its own only: no root needed), so that the
    next read of it goes to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed_hits(port, path, n, budget_s, cold_file=None):
    """Latencies (s) of up to n sequential GETs of path on one keep-alive connection, stopping
    after budget_s; every answer must be a 200. cold_file: evicted from the page cache before
    each GET (a disk-backed hit)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HUNG_PATIENCE)
    out, t_end = [], time.monotonic() + budget_s
    try:
        while len(out) < n and time.monotonic() < t_end:
            if cold_file:
                evict_page_cache(cold_file)
            t0 = time.monotonic()
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {path} -> {resp.status}")
            out.append(time.monotonic() - t0)
    finally:
        conn.close()
    return out


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def bench_bcrypt_flood(res, tmp, up, img):
    """Disk-backed blob hits (the cached file evicted from the page cache before each GET, so
    that its read goes to the disk on libuv's pool) timed idle, then
    while one address floods the mirror with Basic credentials never sent before (wrk with
    FLOOD_CONNS connections, flood.lua), each of which costs a bcrypt check unless the mirror
    refuses it first. Auth is on (one user, bcrypt cost 10 as `regcache passwd` writes);
    anonymous pulls are allowed, so the hits need no login. Only regcache: the figure that
    counts is the ratio of hit latency under the flood to idle (REGCACHE_BENCH_BIN=... runs
    another binary, e.g. an older one, for comparison)."""
    d = os.path.join(tmp, "flood")
    os.makedirs(d, exist_ok=True)
    users = os.path.join(d, "htpasswd")
    from mirror import REGCACHE
    subprocess.run([*REGCACHE, "passwd", users, "alice"], input="alice-pass\n", text=True,
                   capture_output=True, check=True, timeout=60)
    m = Mirror(d, [{"name": "docker.io", "url": up.url}], revalidate_after="10m",
               extra={"auth": {"htpasswd": users}})
    m.start()
    track(m.proc)
    layer = max(img.blobs, key=lambda x: len(img.blobs[x]))
    path = f"/v2/library/flood/blobs/{layer}"
    flood = None
    try:
        timed_hits(m.port, path, 20, 30)  # cached
        store_file = m.file_for(layer)
        # idle before and after the flood, in halves, so that a change in the machine's other
        # load during the run weighs on both sides alike
        idle = timed_hits(m.port, path, FLOOD_SAMPLES // 2, FLOOD_BUDGET, store_file)
        env = dict(os.environ, BENCH_USER="alice")
        flood = track(subprocess.Popen(
            ["wrk", "-t1", f"-c{FLOOD_CONNS}", "-d600s", "--timeout", "30s", "-s", FLOOD_LUA,
             f"http://127.0.0.1:{m.port}/"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, start_new_session=True))
        time.sleep(2)  # the flood under way (and, where it is limited, refused)
        flooded = timed_hits(m.port, path, FLOOD_SAMPLES, FLOOD_BUDGET, store_file)
        flood.terminate()
        try:
            flood.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            flood.kill()
        flood = None
        time.sleep(2)  # refused logins still waiting are answered
        idle += timed_hits(m.port, path, FLOOD_SAMPLES // 2, FLOOD_BUDGET, store_file)
    finally:
        if flood:
            flood.kill()
            flood.wait(timeout=10)
        statuses = Counter(e.status for e in m.entries(settle=False) if e.path == "/v2/")
        m.stop()
        shutil.rmtree(d, ignore_errors=True)
    p50_idle, p99_idle = pct(idle, 50) * 1000, pct(idle, 99) * 1000
    p50_flood, p99_flood = pct(flooded, 50) * 1000, pct(flooded, 99) * 1000
    log(f"bcrypt flood: hit p50 {p50_idle:.2f} ms idle, {p50_flood:.2f} ms flooded "
        f"({p50_flood / p50_idle:.2f}x); p99 {p99_idle:.2f} / {p99_flood:.2f} ms "
        f"({p99_flood / p99_idle:.2f}x); {len(flooded)} hits under the flood; flood answers "
        f"{dict(sorted(statuses.items()))}")
    note = (f"{len(idle)}/{len(flooded)} hits; flood answers "
            + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) + "; ")
    res.set("flood_p50_idle", "bcrypt flood: blob hit p50, idle", "ms", "low",
            regcache=p50_idle)
    res.set("flood_p50", "bcrypt flood: blob hit p50, flooded", "ms", "low", regcache=p50_flood)
    res.set("flood_p99_idle", "bcrypt flood: blob hit p99, idle", "ms", "low",
            regcache=p99_idle)
    res.set("flood_p99", "bcrypt flood: blob hit p99, flooded", "ms", "low", regcache=p99_flood)
    res.set("flood_p50_ratio", "bcrypt flood: hit p50 flooded/idle", "x", "low",
            regcache=p50_flood / p50_idle)["note"] += note
    res.set("flood_p99_ratio", "bcrypt flood: hit p99 flooded/idle", "x", "low",
            regcache=p99_flood / p99_idle)


class Scraper:
    """GETs /metrics at `rate` a second on one keep-alive connection (as Prometheus does, with
    its headers) in a thread, until stop(); keeps each scrape's duration and size. A scrape
    that fails or answers other than 200 is counted as an error."""

    def __init__(self, port, rate):
        self.port, self.interval = port, 1.0 / rate
        self.durations, self.sizes, self.errors = [], [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        conn = None
        t_next = time.monotonic()
        while not self._stop.is_set():
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                t0 = time.monotonic()
                conn.request("GET", "/metrics", headers=SCRAPE_HEADERS)
                resp = conn.getresponse()
                body = resp.read()
                self.durations.append(time.monotonic() - t0)
                self.sizes.append(len(body))
                if resp.status != 200:
                    self.errors += 1
            except (OSError, http.client.HTTPException):
                self.errors += 1
                if conn:
                    conn.close()
                conn = None
            t_next += self.interval
            self._stop.wait(max(0.0, t_next - time.monotonic()))
        if conn:
            conn.close()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=15)


def proc_cpu_s(pid):
    """User+system CPU seconds of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_scrapes(port, n):
    """Durations (s) of n sequential scrapes of /metrics on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    try:
        for _ in range(n):
            t0 = time.monotonic()
            conn.request("GET", "/metrics", headers=SCRAPE_HEADERS)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET /metrics -> {resp.status}")
            out.append(time.monotonic() - t0)
    finally:
        conn.close()
    return out


def bench_scrape(res, up, tmp, img, seconds):
    """Hit latency with /metrics scraped during the load: wrk on a cached manifest (by digest)
    and a cached 1 MiB blob, first with nobody scraping, then with a scraper on the metrics
    listener (metrics.listen, on the same event loop) at each of SCRAPE_RATES a second. The
    conditions alternate within each round, so that a change in the machine's other load
    weighs on all alike; each figure is the median over the rounds. Only regcache: the figures
    that count are the ratios scraped/unscraped of p50 and p99 latency."""
    d = os.path.join(tmp, "scrape")
    metrics_port = procs.free_port()
    m = Mirror(d, [{"name": "docker.io", "url": up.url}], revalidate_after="10m",
               extra={"metrics": {"listen": f"127.0.0.1:{metrics_port}"}})
    m.start()
    track(m.proc)
    man = img.manifests[0]
    cases = [("manifest", "manifest by digest", f"/v2/library/scrape/manifests/{man.digest}",
              True),
             ("blob", "blob 1 MiB", f"/v2/library/scrape/blobs/{man.layers[0].digest}", False)]
    conditions = ["idle"] + [f"{r}/s" for r in SCRAPE_RATES]
    raw, scrapes = {}, {}
    try:
        for _, _, path, accept in cases:
            for _ in range(2):
                st, _ = get(m.port, path, accept)
                if st != 200:
                    raise RuntimeError(f"warm-up GET {path} -> {st}")
        st, n = get(metrics_port, "/metrics")
        if st != 200:
            raise RuntimeError(f"GET /metrics on :{metrics_port} -> {st}")
        log(f"regcache :{m.port}, /metrics on :{metrics_port} ({n} bytes)")
        # what one scrape costs with nothing else to do: an upper bound on how long it can
        # hold the event loop (the client's own time is in it too)
        cpu0 = proc_cpu_s(m.proc.pid)
        cost = timed_scrapes(metrics_port, SCRAPE_COST_SAMPLES)
        cpu_ms = (proc_cpu_s(m.proc.pid) - cpu0) / len(cost) * 1000
        res.set("scrape_cpu_ms", "scrape: regcache CPU per scrape", "ms", "low",
                regcache=cpu_ms)["note"] = (
            f"user+system time over {len(cost)} scrapes of an idle mirror: "
            + ", ".join(f"{cpu_ms * r / 10:.3f} % of a core at {r}/s" for r in SCRAPE_RATES))
        log(f"scrape CPU: {cpu_ms:.3f} ms of regcache per scrape")
        res.set("scrape_cost_p50", "scrape: one /metrics answer, idle mirror (p50)", "ms", "low",
                regcache=pct(cost, 50) * 1000)["note"] = (
            f"{len(cost)} sequential scrapes of {n} bytes; p99 {pct(cost, 99) * 1000:.2f} ms")
        res.set("scrape_cost_p99", "scrape: one /metrics answer, idle mirror (p99)", "ms", "low",
                regcache=pct(cost, 99) * 1000)
        log(f"scrape cost idle: p50 {pct(cost, 50) * 1000:.3f} ms, p99 "
            f"{pct(cost, 99) * 1000:.3f} ms ({len(cost)} scrapes)")
        for key, label, path, accept in cases:
            url = f"http://127.0.0.1:{m.port}{path}"
            wrk(url, CONNS, 1, accept)  # warm-up, not counted
            for rnd in range(ROUNDS):
                # rotate the order, so that no condition always runs first in a round
                for cond in conditions[rnd % len(conditions):] + conditions[:rnd % len(conditions)]:
                    scraper = (Scraper(metrics_port, int(cond.split("/")[0])).start()
                               if cond != "idle" else None)
                    try:
                        r = wrk(url, CONNS, seconds, accept)
                    finally:
                        if scraper:
                            scraper.stop()
                    if scraper:
                        sc = scrapes.setdefault(cond, Scraper(metrics_port, 1))
                        sc.durations += scraper.durations
                        sc.sizes += scraper.sizes
                        sc.errors += scraper.errors
                        r["scrapes"] = len(scraper.durations)
                    raw.setdefault((key, cond), []).append(r)
                    log(f"scrape {label:<18} {cond:<5} {r['rps']:>9.0f} req/s "
                        f"p50 {r['p50_us'] / 1000:.2f} ms p99 {r['p99_us'] / 1000:.2f} ms "
                        f"errors {r['errors']}"
                        + (f", {r['scrapes']} scrapes" if scraper else ""))
    finally:
        m.stop()
        shutil.rmtree(d, ignore_errors=True)
    med = {k: {f: statistics.median(r[f] for r in runs) for f in ("rps", "p50_us", "p99_us")}
           for k, runs in raw.items()}
    errs = {k: sum(r["errors"] for r in runs) for k, runs in raw.items()}
    for key, label, _, _ in cases:
        idle = med[(key, "idle")]
        note = (f"{CONNS} conns, median of {ROUNDS} runs of {seconds} s"
                + "".join(f"; wrk errors {c} {e}" for (k, c), e in errs.items()
                          if k == key and e))
        res.set(f"scrape_{key}_rps_idle", f"scrape: {label} hits, unscraped", "req/s", "high",
                regcache=idle["rps"])["note"] = note
        res.set(f"scrape_{key}_p50_idle", f"scrape: {label} p50, unscraped", "ms", "low",
                regcache=idle["p50_us"] / 1000)
        res.set(f"scrape_{key}_p99_idle", f"scrape: {label} p99, unscraped", "ms", "low",
                regcache=idle["p99_us"] / 1000)
        for rate in SCRAPE_RATES:
            cond, tag = f"{rate}/s", f"{rate}hz"
            v = med[(key, cond)]
            res.set(f"scrape_{key}_rps_{tag}", f"scrape: {label} hits, scraped {cond}",
                    "req/s", "high", regcache=v["rps"])
            res.set(f"scrape_{key}_p50_{tag}", f"scrape: {label} p50, scraped {cond}", "ms",
                    "low", regcache=v["p50_us"] / 1000)
            res.set(f"scrape_{key}_p99_{tag}", f"scrape: {label} p99, scraped {cond}", "ms",
                    "low", regcache=v["p99_us"] / 1000)
            res.set(f"scrape_{key}_p50_ratio_{tag}", f"scrape: {label} p50 scraped {cond}/unscraped",
                    "x", "low", regcache=v["p50_us"] / idle["p50_us"])
            res.set(f"scrape_{key}_p99_ratio_{tag}", f"scrape: {label} p99 scraped {cond}/unscraped",
                    "x", "low", regcache=v["p99_us"] / idle["p99_us"])
    for cond, sc in scrapes.items():
        tag = f"{cond.split('/')[0]}hz"
        if not sc.durations:
            continue
        res.set(f"scrape_time_{tag}", f"scrape: /metrics answer under load, scraped {cond} (p50)",
                "ms", "low", regcache=pct(sc.durations, 50) * 1000)["note"] = (
            f"{len(sc.durations)} scrapes, p99 {pct(sc.durations, 99) * 1000:.2f} ms, "
            f"{statistics.median(sc.sizes):.0f} bytes, errors {sc.errors}")
        log(f"scrapes {cond}: {len(sc.durations)}, answer p50 {pct(sc.durations, 50) * 1000:.2f} "
            f"ms p99 {pct(sc.durations, 99) * 1000:.2f} ms, {statistics.median(sc.sizes):.0f} "
            f"bytes, errors {sc.errors}")


def warm(rc, inc, ngx, hot, up):
    man = hot.manifests[0]
    for server in (rc, inc):
        for _ in range(2):
            for path, accept in (("/v2/library/hot/manifests/v1", True),
                                 (f"/v2/library/hot/manifests/{man.digest}", True),
                                 *[(f"/v2/library/hot/blobs/{b}", False)
                                   for b in hot.blob_digests]):
                st, _ = get(server.port, path, accept)
                if st != 200:
                    raise RuntimeError(f"warm-up GET {path} on :{server.port} -> {st}")
            time.sleep(0.5)
    # the store files nginx serves
    for digest in [man.digest] + hot.blob_digests:
        procs.wait_for(lambda: os.path.exists(rc.file_for(digest)), 20, f"{digest} in the store")
        st, n = get(ngx.port, f"/blobs/sha256/{digest[7:9]}/{digest[7:]}")
        if st != 200:
            raise RuntimeError(f"nginx GET {digest} -> {st}")
    upstream_mark(up, quiet=1.0, timeout=30)  # the incumbent's background fetches done


TARGETS = {
    # key: (description, check(row) -> (holds, how))
    "manifest_digest_rps": "regcache >= 20x incumbent and >= 0.5x nginx",
    "blob_1m_mbps": ">= 0.9x nginx",
    "blob_64m_mbps": ">= 0.9x nginx",
    "cold_pull_bytes": "regcache 1.00x",
    "storm_gets_max": "1 per blob",
    "rss_1000": "<= 32 MiB",
    "c10k_errors": "0",
    "hung_first_s": "<= 3 s (revalidate_timeout 2 s + 1 s)",
    "hung_copy_s": "<= 15 s",
    "flood_p50_ratio": "<= 2x",
    "flood_p99_ratio": "<= 2x",
}
for _key in ("manifest", "blob"):
    for _rate in SCRAPE_RATES:
        TARGETS[f"scrape_{_key}_p50_ratio_{_rate}hz"] = "<= 1.25x"
        TARGETS[f"scrape_{_key}_p99_ratio_{_rate}hz"] = "<= 1.25x"


def judge(res):
    for key, target in TARGETS.items():
        row = res.rows.get(key)
        if not row:
            continue
        v = row["values"]
        rc = v.get("regcache")
        if key == "manifest_digest_rps":
            holds = (ratio(rc, v.get("incumbent")) or 0) >= 20 and \
                    (ratio(rc, v.get("nginx")) or 0) >= 0.5
        elif key.startswith("blob_"):
            holds = (ratio(rc, v.get("nginx")) or 0) >= 0.9
        elif key == "cold_pull_bytes":
            holds = rc is not None and round(rc, 2) <= 1.00
        elif key == "storm_gets_max":
            holds = rc == 1
        elif key == "rss_1000":
            holds = rc is not None and rc <= 32
        elif key == "c10k_errors":
            holds = rc == 0
        elif key == "hung_first_s":
            holds = rc is not None and rc <= 3
        elif key == "hung_copy_s":
            holds = rc is not None and rc <= 15
        elif key.startswith("flood_"):
            holds = rc is not None and rc <= 2
        elif key.startswith("scrape_"):
            holds = rc is not None and rc <= 1.25
        row["target"], row["holds"] = target, holds


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, int) or (unit in ("count", "GETs") and float(v).is_integer()):
        return f"{int(v):,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_ratio(r):
    return "-" if r is None else (f"{r:.1f}x" if r >= 10 else f"{r:.2f}x")


ORDER = ["manifest_digest_rps", "manifest_tag_rps", "blob_1m_mbps", "blob_64m_mbps",
         "manifest_digest_p50", "manifest_digest_p99", "blob_1m_p50", "blob_1m_p99",
         "cold_pull_s", "cold_pull_bytes", "storm_gets", "storm_gets_max", "storm_s",
         "rss_idle", "rss_1000", "c10k_errors", "c10k_seconds", "c10k_rss",
         "hung_first_s", "hung_later_ms", "hung_copy_s",
         "flood_p50_idle", "flood_p50", "flood_p99_idle", "flood_p99", "flood_p50_ratio",
         "flood_p99_ratio"]
for _key in ("manifest", "blob"):
    ORDER += [f"scrape_{_key}_rps_idle", f"scrape_{_key}_p50_idle", f"scrape_{_key}_p99_idle"]
    for _rate in SCRAPE_RATES:
        ORDER += [f"scrape_{_key}_{f}_{_rate}hz" for f in ("rps", "p50", "p99")]
    for _rate in SCRAPE_RATES:
        ORDER += [f"scrape_{_key}_p50_ratio_{_rate}hz", f"scrape_{_key}_p99_ratio_{_rate}hz"]
ORDER += ["scrape_cpu_ms", "scrape_cost_p50", "scrape_cost_p99"] + [f"scrape_time_{_rate}hz" for _rate in SCRAPE_RATES]
PEERS = ["regcache", "incumbent", "nginx"]
CHART_LABELS = {
    "manifest_digest_rps": "manifest by digest req/s", "manifest_tag_rps": "manifest by tag req/s",
    "blob_1m_mbps": "1 MiB blob MB/s", "blob_64m_mbps": "64 MiB blob MB/s",
    "manifest_digest_p50": "manifest p50", "manifest_digest_p99": "manifest p99",
    "blob_1m_p50": "1 MiB blob p50", "blob_1m_p99": "1 MiB blob p99",
    "cold_pull_s": "cold pull time", "cold_pull_bytes": "cold pull upstream bytes",
    "storm_s": "storm time", "rss_idle": "RSS idle", "rss_1000": "RSS 1,000 conns",
    "c10k_seconds": "10,000 conns time", "c10k_rss": "RSS 10,000 conns",
    "storm_gets": "storm upstream GETs/blob",
    "hung_first_s": "hung upstream: 1st answer", "hung_later_ms": "hung upstream: later answers",
    "hung_copy_s": "hung upstream: skopeo copy",
    "flood_p50": "bcrypt flood: hit p50", "flood_p99": "bcrypt flood: hit p99",
}


def table_rows(res):
    out = []
    for key in ORDER:
        row = res.rows.get(key)
        if not row:
            continue
        v = row["values"]
        out.append([f"{row['label']} ({row['unit']})", *[fmt(v.get(p), row["unit"]) for p in PEERS],
                    fmt_ratio(ratio(v.get("regcache"), v.get("incumbent"))),
                    fmt_ratio(ratio(v.get("regcache"), v.get("nginx"))),
                    "" if row["holds"] is None else
                    (f"{row['target']}: " + ("holds" if row["holds"] else "MISSED"))])
    return out


HEAD = ["workload", "regcache", "incumbent", "nginx", "regcache/incumbent", "regcache/nginx",
        "target"]


def print_table(res):
    rows = table_rows(res)
    widths = [max(len(str(r[i])) for r in rows + [HEAD]) for i in range(len(HEAD))]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) if i < 6 else h
                     for i, (h, w) in enumerate(zip(HEAD, widths)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) if i < 6 else str(c)
                        for i, (c, w) in enumerate(zip(r, widths))))


def write_outputs(res, out, info, tmp):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "nproc", "kernel", "cpu", "workload", "label", "unit", "better",
                    *PEERS, "regcache_over_incumbent", "regcache_over_nginx", "target", "holds",
                    "note"])
        for key in ORDER:
            row = res.rows.get(key)
            if not row:
                continue
            v = row["values"]
            ri, rn = ratio(v.get("regcache"), v.get("incumbent")), ratio(v.get("regcache"),
                                                                         v.get("nginx"))
            w.writerow([info["date"], info["nproc"], info["kernel"], info["cpu"], key,
                        row["label"], row["unit"], row["better"],
                        *["" if v.get(p) is None else f"{v[p]:.6g}" for p in PEERS],
                        "" if ri is None else f"{ri:.4g}", "" if rn is None else f"{rn:.4g}",
                        row["target"], "" if row["holds"] is None else
                        ("yes" if row["holds"] else "no"), row["note"].strip("; ")])
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(f"Run of {info['date']} on {info['nproc']} CPUs ({info['cpu']}), "
                f"Linux {info['kernel']}, {info['mem_mib'] // 1024} GiB RAM:\n\n")
        f.write("| " + " | ".join(HEAD) + " |\n")
        f.write("| --- " + "| ---: " * 5 + "| --- |\n")
        for r in table_rows(res):
            f.write("| " + " | ".join(r) + " |\n")
    # chart: how many times better regcache does than each peer (throughput: regcache/peer;
    # latency, time, bytes, memory: peer/regcache), so every bar reads "higher is better"
    dat = os.path.join(tmp, "chart.dat")
    with open(dat, "w") as f:
        for key in ORDER:
            row = res.rows.get(key)
            if not row or key in ("c10k_errors", "storm_gets_max"):
                continue
            v = row["values"]
            vals = []
            for p in ("incumbent", "nginx"):
                r = (ratio(v.get("regcache"), v.get(p)) if row["better"] == "high"
                     else ratio(v.get(p), v.get("regcache")))
                vals.append("-" if r is None else f"{r:.4g}")
            if vals == ["-", "-"]:
                continue
            f.write(f"\"{CHART_LABELS.get(key, row['label'])}\"\t{vals[0]}\t{vals[1]}\n")
    if os.path.getsize(dat) == 0:
        return  # nothing compared with a peer (e.g. --only bcrypt-flood,scrape): no chart
    title = (f"regcache vs docker-registry 2.8 proxy and nginx (sendfile), {info['date'][:10]}, "
             f"{info['nproc']} CPUs, Linux {info['kernel']}")
    p = subprocess.run(["gnuplot", "-e", f"datafile='{dat}'; outfile='{os.path.join(out, 'chart.svg')}'; "
                        f"charttitle='{title}'", CHART_GP], capture_output=True, text=True)
    if p.returncode != 0:
        log(f"gnuplot failed: {p.stderr}")


def on_term(signum, frame):
    """SIGTERM (bench/run's time bound or cleanup) unwinds like Ctrl-C: every server stops."""
    raise KeyboardInterrupt("SIGTERM")


# hits: connections, memory and throughput
SCENARIOS = ("hits", "cold", "storm", "hung", "bcrypt-flood", "scrape")


def main():
    global PIDS_FILE, PROFILE_DIR, ROUNDS
    ap = argparse.ArgumentParser()
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--out", help="where results.csv, results.md and chart.svg go (default "
                    "bench/results; with --only, nowhere unless given)")
    ap.add_argument("--seconds", type=int, default=3, help="wrk duration per measurement")
    ap.add_argument("--rounds", type=int, default=ROUNDS,
                    help="wrk runs per peer and workload; the median counts")
    ap.add_argument("--profile", metavar="DIR",
                    help="perf record regcache during each of its wrk runs; reports in DIR")
    ap.add_argument("--only", metavar="LIST",
                    help=f"comma-separated scenarios to run, of {', '.join(SCENARIOS)} "
                    "(default: all)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    if only - set(SCENARIOS):
        ap.error(f"unknown scenario {', '.join(sorted(only - set(SCENARIOS)))}")
    out = args.out or (None if args.only else os.path.join(HERE, "results"))
    ROUNDS = max(1, args.rounds)
    if args.profile:
        PROFILE_DIR = os.path.abspath(args.profile)
        os.makedirs(PROFILE_DIR, exist_ok=True)
    tmp = args.tmp
    PIDS_FILE = os.path.join(tmp, "pids")
    signal.signal(signal.SIGTERM, on_term)
    t_start = time.monotonic()
    info = machine_info()
    res = Results()
    token = None
    try:
        specs = {"hits": ("hot", 9001, HOT_LAYERS), "cold": ("cold", 9002, COLD_LAYERS),
                 "storm": ("storm", 9003, STORM_LAYERS), "hung": ("hung", 9004, HUNG_LAYERS),
                 "bcrypt-flood": ("flood", 9005, FLOOD_LAYERS),
                 "scrape": ("scrape", 9006, SCRAPE_LAYERS)}
        imgs = {}
        for scenario in SCENARIOS:
            if scenario in only:
                name, seed, layers = specs[scenario]
                log(f"building image {name} ({sum(layers) // MiB} MiB)")
                imgs[name] = images.build_image(os.path.join(tmp, f"img-{name}"), seed, layers,
                                                fmt="oci")
        token = TokenServer(os.path.join(tmp, "token")).start()
        up = Upstream(os.path.join(tmp, "upstream"), token, "registry.docker.io").start()
        track(up.proc)
        log(f"upstream docker-registry on :{up.port}; pushing images")
        threads = [threading.Thread(target=images.push, args=(img, up, f"library/{name}", "v1"))
                   for name, img in imgs.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for img in imgs.values():
            if img.repo is None:
                raise RuntimeError("an image push failed (see above)")
        for img in imgs.values():  # the layouts are no longer needed
            shutil.rmtree(img.layout, ignore_errors=True)
            shutil.rmtree(img.layout + ".dir", ignore_errors=True)

        if "hits" in only:
            hot = imgs["hot"]
            rc = start_regcache(os.path.join(tmp, "regcache"), up, MAX_CONNECTIONS)
            inc = Incumbent(os.path.join(tmp, "incumbent"), up).start()
            ngx = Nginx(os.path.join(tmp, "nginx"), rc.storage).start()
            log(f"regcache :{rc.port} (pid {rc.proc.pid}), incumbent :{inc.port} "
                f"(pid {inc.proc.pid}), nginx :{ngx.port}; warming")
            warm(rc, inc, ngx, hot, up)

            bench_connections(res, rc, inc, hot)
            bench_throughput(res, up, rc, inc, ngx, hot, args.seconds)
            for s in (ngx, inc):
                s.stop()
            status = rc.stop()
            if status != 0:
                log(f"regcache exited with {status} after SIGTERM")

        if "cold" in only:
            bench_cold_pull(res, up, tmp, imgs["cold"])
        if "storm" in only:
            bench_storm(res, up, tmp, imgs["storm"])
        if "hung" in only:
            bench_hung(res, up, tmp, imgs["hung"])
        if "bcrypt-flood" in only:
            bench_bcrypt_flood(res, tmp, up, imgs["flood"])
        if "scrape" in only:
            bench_scrape(res, up, tmp, imgs["scrape"], args.seconds)
    finally:
        procs.kill_all()
        if token:
            token.stop()
    judge(res)
    elapsed = time.monotonic() - t_start
    print()
    print(f"regcache benchmark, {info['date']}, {info['nproc']} CPUs ({info['cpu']}), "
          f"Linux {info['kernel']}; {elapsed:.0f} s"
          + (f"; only {', '.join(s for s in SCENARIOS if s in only)}" if args.only else ""))
    print_table(res)
    if out:
        write_outputs(res, out, info, tmp)
        print(f"\nwrote {os.path.relpath(out, ROOT)}/results.csv, results.md, chart.svg")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'SIGINT'}); every process started was stopped")
        sys.exit(130)
