# SPDX-License-Identifier: Apache-2.0
"""regcache against the incumbent (docker-registry 2.8 in proxy mode, and as a plain registry
for hosted content) and nginx (static files, sendfile; one worker per CPU and one worker), all
on loopback against one seeded upstream docker-registry with token auth.

Run through bench/run, which builds build-bench/regcache, raises the file limit and calls
    /usr/bin/python3 bench/bench.py --tmp DIR --out bench/results [--seconds 3] [--rounds 3]
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
import ssl
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

KiB = 1024
MiB = 1024 * 1024
ACCEPT = ", ".join(images.ACCEPT_ALL)
UP_USER, UP_PASS = "pushuser", "pushpass"  # the token issuer's one user
WRK_LUA = os.path.join(HERE, "wrk.lua")
FLOOD_LUA = os.path.join(HERE, "flood.lua")
CHART_GP = os.path.join(HERE, "chart.gp")

HOT_LAYERS = (4 * KiB, 1 * MiB, 64 * MiB)           # blob hit workloads (HIT_KINDS)
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
CONNS = 64            # wrk connections for manifests and 4 KiB and 1 MiB blobs
BIG_CONNS = 8         # wrk connections for 64 MiB blobs
ROUNDS = 3            # wrk runs per peer and workload (the median counts)
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
{tls}{proxy}"""
INCUMBENT_PROXY = """\
proxy:
  remoteurl: {remote}
  username: {user}
  password: {password}
"""
INCUMBENT_TLS = """\
  tls:
    certificate: {cert}
    key: {key}
"""


def make_cert(directory):
    """A self-signed certificate for 127.0.0.1 (RSA 2048, as most sites still serve), made
    afresh for each run; every TLS peer serves the same one."""
    os.makedirs(directory, exist_ok=True)
    crt, key = os.path.join(directory, "bench.crt"), os.path.join(directory, "bench.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)  # regcache warns about a key others may read
    return crt, key


def tls_context(cert):
    """A client context that trusts exactly the run's certificate."""
    return ssl.create_default_context(cafile=cert)


def probe_status(port, path, cert=None):
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=2.0, context=tls_context(cert))
            if cert else None)
    return procs.http_status(port, path, conn=conn)


def tls_cipher(port, cert):
    """(protocol, cipher) a TLS handshake with the peer settles on, with the client side of the
    same OpenSSL that wrk links."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with tls_context(cert).wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.version(), s.cipher()[0]


class Server:
    """A process the run starts, tracked for clean-up, ready once `probe_path` answers 200
    (over TLS when `cert` is set)."""

    proc = None
    cert = None

    def _run(self, argv, log, probe_path, what):
        self.proc = track(procs.Proc(argv, log))
        procs.wait_for(lambda: probe_status(self.port, probe_path, self.cert) == 200, 20,
                       f"{what} on :{self.port}", proc=self.proc)
        return self

    def url(self, path):
        return f"{'https' if self.cert else 'http'}://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc:
            self.proc.stop(timeout=10)
            self.proc = None


class Incumbent(Server):
    """docker-registry (distribution 2.8) as a pull-through cache of the upstream: the config
    of the registry:2 image (in-memory blob descriptor cache) plus `proxy:`; its logging is
    cut to warnings (no access log), which can only help it. Without an upstream (up=None) the
    same registry is a plain one, which takes pushes: the incumbent's "hosted" repository.
    tls=(cert, key): HTTPS with its own `http.tls`."""

    def __init__(self, directory, up, tls=None):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = procs.free_port()
        self.cert = tls[0] if tls else None
        self.config_path = os.path.join(directory, "config.yml")
        proxy = (INCUMBENT_PROXY.format(remote=up.url, user=UP_USER, password=UP_PASS)
                 if up else "")
        with open(self.config_path, "w") as f:
            f.write(INCUMBENT_CONFIG.format(
                root=os.path.join(directory, "storage"), port=self.port, proxy=proxy,
                tls=INCUMBENT_TLS.format(cert=tls[0], key=tls[1]) if tls else ""))
        self.proc = None

    def start(self):
        return self._run(["docker-registry", "serve", self.config_path],
                         os.path.join(self.dir, "registry.log"), "/v2/", "incumbent")


NGINX_CONFIG = """\
daemon off;
user root;
worker_processes {workers};
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
        listen 127.0.0.1:{port}{ssl} backlog=4096;
{tls}        root {store};
        location = /ping {{ return 200 "ok"; }}
{aliases}    }}
}}
"""
NGINX_TLS = """\
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
"""


class Nginx(Server):
    """nginx as a plain static file server over regcache's store directory: `workers` worker
    processes ("auto": one per CPU; 1: as many event loops as regcache without `workers`),
    sendfile on, keep-alive without a request cap, access log on (regcache logs every request
    too). URLs are store paths, /blobs/sha256/ab/abcd...; `aliases` maps further URLs to store
    files (a tag's URL to its manifest's file). tls=(cert, key): `listen ... ssl` with the same
    sendfile setting, which nginx cannot use under TLS without kernel TLS (so it encrypts from
    its own buffers, as regcache does)."""

    def __init__(self, directory, store, workers=1, tls=None, aliases=None):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = procs.free_port()
        self.workers = workers
        self.cert = tls[0] if tls else None
        self.conf = os.path.join(directory, "nginx.conf")
        alias_conf = "".join(f"        location = {url} {{ alias {path}; }}\n"
                             for url, path in (aliases or {}).items())
        with open(self.conf, "w") as f:
            f.write(NGINX_CONFIG.format(
                d=directory, port=self.port, store=store, nofile=NOFILE, workers=workers,
                ssl=" ssl" if tls else "", aliases=alias_conf,
                tls=NGINX_TLS.format(cert=tls[0], key=tls[1]) if tls else ""))
        self.proc = None

    def start(self):
        return self._run(["nginx", "-e", os.path.join(self.dir, "error.log"), "-c", self.conf],
                         os.path.join(self.dir, "stdout.log"), "/ping", "nginx")


# `workers:` for every regcache the run starts (None: the key is left out); set by main()
REGCACHE_WORKERS = None


def regcache_config(extra=None):
    """extra for Mirror, with `workers` added when the run passes it."""
    out = dict(extra or {})
    if REGCACHE_WORKERS is not None:
        out["workers"] = REGCACHE_WORKERS
    return out or None


def probe_workers(tmp):
    """What `workers:` to give regcache: REGCACHE_BENCH_WORKERS (auto, N, or off for none) or
    else auto, if `regcache check-config` takes the key. Returns (value or None, a sentence for
    the output saying what was done and why)."""
    want = os.environ.get("REGCACHE_BENCH_WORKERS")
    if want is not None and want.strip().lower() in ("", "off", "none"):
        return None, "regcache ran without `workers` (REGCACHE_BENCH_WORKERS=off): one event loop"
    text = (want or "auto").strip()
    value = int(text) if text.isdigit() else text
    from mirror import regcache as run_regcache
    d = os.path.join(tmp, "workers-probe")
    m = Mirror(d, [{"name": "docker.io", "url": "http://127.0.0.1:9"}],
               extra={"workers": value})
    p = run_regcache("check-config", "-c", m.config_path)
    shutil.rmtree(d, ignore_errors=True)
    err = (p.stderr or p.stdout).replace(m.config_path, "its config").strip().splitlines()[-1:] \
        or [f"exit {p.returncode}"]
    if p.returncode == 0:
        how = "REGCACHE_BENCH_WORKERS" if want else "the default here"
        return value, f"regcache ran with `workers: {text}` ({how}; `regcache check-config` takes it)"
    if want:
        raise RuntimeError(f"REGCACHE_BENCH_WORKERS={want}: regcache refuses it: {err[0]}")
    return None, ("regcache ran without `workers`: this binary refuses `workers: auto` "
                  f"(`regcache check-config`: {err[0].removeprefix('regcache: ')}), so it ran "
                  "one event loop")


def start_regcache(directory, up, max_connections=None, revalidate_after="10m", tls=None,
                   hosted=None):
    extra = {}
    if max_connections:
        extra["limits"] = {"max_connections": max_connections}
    if tls:
        extra["tls"] = {"cert": tls[0], "key": tls[1]}
    if hosted:
        extra["hosted"] = list(hosted)
    m = Mirror(directory, [{"name": "docker.io", "url": up.url}],
               revalidate_after=revalidate_after, extra=regcache_config(extra))
    m.cert = tls[0] if tls else None
    m.url = lambda path: f"{'https' if m.cert else 'http'}://127.0.0.1:{m.port}{path}"
    m.start(wait=False)
    track(m.proc)
    procs.wait_for(lambda: probe_status(m.port, "/healthz", m.cert) == 200, 20,
                   f"regcache /healthz on :{m.port}", proc=m.proc)
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
def get(port, path, accept=False, timeout=120, cert=None):
    """(status, body bytes) of one GET; over TLS, trusting `cert`, when it is set."""
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                        context=tls_context(cert)) if cert else
            http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))
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
    """One wrk run; its figures, plus the CPU time wrk itself took (cpu_s) and how busy its
    threads were on average (busy: 1.0 = every thread on a core all the time)."""
    env = dict(os.environ, BENCH_ACCEPT=ACCEPT if accept else "")
    threads = max(1, min(threads, conns))
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
           "-s", WRK_LUA, url]
    # wrk is the only child that ends (and is reaped) in this window, so the children's
    # rusage grows by exactly its CPU time
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    for line in p.stdout.splitlines():
        if line.startswith("BENCH "):
            r = json.loads(line[6:])
            secs = r["duration_us"] / 1e6
            r["rps"] = r["requests"] / secs
            r["mbps"] = r["bytes"] / secs / 1e6
            r["errors"] = sum(r[k] for k in ("connect", "read", "write", "status", "timeout"))
            r["threads"], r["cpu_s"] = threads, cpu
            r["busy"] = cpu / secs / threads
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
        self.header = []       # sentences for the top of results.md and the printed table
        self.calibration = []  # how wrk's thread count was picked, per workload (pick_threads)

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


# hit workloads: key, label, what is fetched (a manifest by digest or tag, or layer i of the
# image), wrk connections, the figure reported
HIT_KINDS = (
    ("manifest_digest", "manifest by digest", "digest", CONNS, "req/s"),
    ("manifest_tag", "manifest by tag", "tag", CONNS, "req/s"),
    ("blob_4k", "blob 4 KiB", 0, CONNS, "req/s"),
    ("blob_1m", "blob 1 MiB", 1, CONNS, "MB/s"),
    ("blob_64m", "blob 64 MiB", 2, BIG_CONNS, "MB/s"),
)
ORIGINS = (("", "proxied"), ("_hosted", "hosted"))
TRANSPORTS = (("", "HTTP"), ("_tls", "TLS"))
HOT_REPO = "library/hot"    # proxied: pulled through from the upstream
HOSTED_REPO = "bench/hot"   # hosted: pushed into regcache and into the plain incumbent
HOSTED_GLOB = "bench/*"
NGINX_TAG_URL = "/tags/v1"  # nginx's URL for "the manifest by tag": its file, by alias
# wrk's threads per workload: one per CPU, unless twice as many raise a peer's figure by more
# than THREADS_WITHIN (pick_threads); CAL_SECONDS per run of that check
WRK_THREADS = (os.cpu_count() or 1, 2 * (os.cpu_count() or 1))
THREADS_WITHIN = 0.05
CAL_SECONDS = 2


def hit_key(kind, origin, transport):
    return f"{kind}{origin}{transport}"


def hit_label(label, origin, transport):
    return f"{label}, {origin}, {transport}"


def registry_path(img, repo, what):
    man = img.manifests[0]
    if what == "digest":
        return f"/v2/{repo}/manifests/{man.digest}"
    if what == "tag":
        return f"/v2/{repo}/manifests/v1"
    return f"/v2/{repo}/blobs/{man.layers[what].digest}"


def store_path(digest):
    return f"/blobs/sha256/{digest[7:9]}/{digest[7:]}"


def nginx_path(img, what):
    man = img.manifests[0]
    if what == "digest":
        return store_path(man.digest)
    if what == "tag":
        return NGINX_TAG_URL
    return store_path(man.layers[what].digest)


def size_of(img, what):
    man = img.manifests[0]
    return len(man.raw) if what in ("digest", "tag") else man.layers[what].size


def figure(r, unit):
    return r["rps"] if unit == "req/s" else r["mbps"]


def pick_threads(res, tag, label, conns, accept, unit, urls):
    """wrk's thread count for one workload, checked on the peers in `urls` (the fastest ones):
    runs of CAL_SECONDS with WRK_THREADS[0] (one per CPU) and WRK_THREADS[1] (twice that) in
    the order A B B A, the better of each pair counting. The larger count is used only if it
    raised some peer's figure by more than THREADS_WITHIN; so more wrk threads than used did
    not raise any peer's figure, and wrk is not what limits the ones measured with it. Kept
    for the output."""
    counts = [t for t in WRK_THREADS if t <= conns] or [conns]
    order = counts + counts[::-1]
    figs = {}
    for peer, url in urls.items():
        for t in order:
            figs.setdefault((peer, t), []).append(wrk(url, conns, CAL_SECONDS, accept, threads=t))
    best = {k: max(runs, key=lambda r: figure(r, unit)) for k, runs in figs.items()}
    chosen = counts[0]
    for peer in urls:
        for t in counts[1:]:
            if figure(best[(peer, t)], unit) > (1 + THREADS_WITHIN) * figure(best[(peer, chosen)],
                                                                             unit):
                chosen = t
    res.calibration.append(dict(workload=f"{label}, {tag}", unit=unit, threads=chosen, figures={
        peer: {t: (figure(best[(peer, t)], unit), max(r["busy"] for r in figs[(peer, t)]))
               for t in counts} for peer in urls}))
    log(f"wrk threads for {label}, {tag}: " + "; ".join(
        f"{peer} " + ", ".join(f"-t{t} {figure(best[(peer, t)], unit):.0f} {unit} (busy "
                               f"{best[(peer, t)]['busy']:.0%})" for t in counts)
        for peer in urls) + f" -> -t{chosen}")
    return chosen


def bench_throughput(res, up, peers, hot, hosted, seconds, tls):
    """wrk against each peer in turn, per hit workload (HIT_KINDS), proxied and hosted, over
    the transport of this phase. peers: regcache, incumbent (proxy), incumbent_hosted (plain
    registry), nginx_auto, nginx_1. nginx serves one static file per workload, measured once
    and shown for both proxied and hosted."""
    transport = TRANSPORTS[1] if tls else TRANSPORTS[0]
    rc = peers["regcache"]
    raw = {}
    for kind, label, what, conns, unit in HIT_KINDS:
        accept = what in ("digest", "tag")
        cases = {
            "": {"regcache": rc.url(registry_path(hot, HOT_REPO, what)),
                 "incumbent": peers["incumbent"].url(registry_path(hot, HOT_REPO, what)),
                 "nginx_auto": peers["nginx_auto"].url(nginx_path(hot, what)),
                 "nginx_1": peers["nginx_1"].url(nginx_path(hot, what))},
            "_hosted": {"regcache": rc.url(registry_path(hosted, HOSTED_REPO, what)),
                        "incumbent": peers["incumbent_hosted"].url(
                            registry_path(hosted, HOSTED_REPO, what))},
        }
        threads = pick_threads(res, transport[1], label, conns, accept, unit,
                               {p: cases[""][p] for p in ("nginx_auto", "regcache")})
        # rounds interleave the peers, so that a burst of load from elsewhere on the machine
        # hits them alike; each figure is the median over the rounds
        for rnd in range(ROUNDS):
            for origin, urls in cases.items():
                key = hit_key(kind, origin, transport[0])
                for peer, url in urls.items():
                    if rnd == 0:
                        wrk(url, conns, 1, accept, threads)  # warm-up, not counted
                    perf = None
                    if PROFILE_DIR and peer == "regcache" and rnd == ROUNDS - 1:
                        perf = start_perf(rc.proc.pid, key, seconds)
                    mark = len(upstream_log(up))
                    r = wrk(url, conns, seconds, accept, threads)
                    if perf:
                        finish_perf(perf, key)
                    r["upstream"] = len(upstream_since(up, mark, quiet=0.3, timeout=5))
                    raw.setdefault((key, peer), []).append(r)
                    log(f"{hit_label(label, ORIGINS[bool(origin)][1], transport[1]):<32} "
                        f"{peer:<10} {r['rps']:>9.0f} req/s {r['mbps']:>8.1f} MB/s "
                        f"p50 {r['p50_us'] / 1000:.2f} ms p99 {r['p99_us'] / 1000:.2f} ms "
                        f"errors {r['errors']}, upstream {r['upstream']}, "
                        f"wrk -t{threads} busy {r['busy']:.0%}")
        meds = {}
        for origin, urls in cases.items():
            for peer in urls:
                runs = raw[(hit_key(kind, origin, transport[0]), peer)]
                med = {f: statistics.median(r[f] for r in runs)
                       for f in ("rps", "mbps", "p50_us", "p99_us")}
                med["errors"] = sum(r["errors"] for r in runs)
                med["upstream"] = sum(r["upstream"] for r in runs)
                med["busy"] = max(r["busy"] for r in runs)
                meds[(origin, peer)] = med
        for origin, origin_name in ORIGINS:
            key = hit_key(kind, origin, transport[0])
            vals = {peer: meds[(origin, peer)] for peer in cases[origin]}
            for peer in ("nginx_auto", "nginx_1"):  # hosted: the same static file as proxied
                vals[peer] = meds[("", peer)]
            errs = {p: v["errors"] for p, v in vals.items() if v["errors"]}
            ups = {p: v["upstream"] for p, v in vals.items() if v["upstream"]}
            busy = max(v["busy"] for v in vals.values())
            size = size_of(hot if not origin else hosted, what)
            note = (f"{size:,} bytes; {conns} conns, wrk -t{threads} (its threads at most "
                    f"{busy:.0%} busy), median of {ROUNDS} runs of {seconds} s"
                    + ("; nginx: the same static file as proxied" if origin else "")
                    + ("; nginx: the manifest's file at a URL of its own" if what == "tag"
                       else "")
                    + (f"; wrk errors {errs}" if errs else "")
                    + (f"; upstream requests during the runs {ups}" if ups else ""))
            lab = hit_label(label, origin_name, transport[1])
            metric = "rps" if unit == "req/s" else "mbps"
            res.set(f"{key}_{metric}", lab, unit, "high",
                    **{p: v[metric] for p, v in vals.items()})["note"] = note
            res.set(f"{key}_p50", f"{lab}: p50 latency", "ms", "low",
                    **{p: v["p50_us"] / 1000 for p, v in vals.items()})["note"] = note
            res.set(f"{key}_p99", f"{lab}: p99 latency", "ms", "low",
                    **{p: v["p99_us"] / 1000 for p, v in vals.items()})["note"] = note


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
               extra=regcache_config({"auth": {"htpasswd": users}}))
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
               extra=regcache_config({"metrics": {"listen": f"127.0.0.1:{metrics_port}"}}))
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


def warm(peers, hot, hosted, up):
    """Every hit workload's URL fetched on each peer (twice, a moment apart, so that a proxy's
    background store of what it pulled is done), and nginx's files checked in the store."""
    for name, img, repo in (("regcache", hot, HOT_REPO), ("incumbent", hot, HOT_REPO),
                            ("regcache", hosted, HOSTED_REPO),
                            ("incumbent_hosted", hosted, HOSTED_REPO)):
        server = peers[name]
        paths = [(registry_path(img, repo, w), True, size_of(img, w)) for w in ("tag", "digest")]
        paths += [(f"/v2/{repo}/blobs/{d}", False, len(img.blobs[d])) for d in img.blob_digests]
        for _ in range(2):
            for path, accept, size in paths:
                st, n = get(server.port, path, accept, cert=server.cert)
                if st != 200 or n != size:
                    raise RuntimeError(f"warm-up GET {path} on {name} -> {st}, {n} bytes")
            time.sleep(0.5)
    rc = peers["regcache"]
    man = hot.manifests[0]
    for digest in [man.digest] + hot.blob_digests:
        procs.wait_for(lambda: os.path.exists(rc.file_for(digest)), 20, f"{digest} in the store")
    for name in ("nginx_auto", "nginx_1"):
        for what in ("tag", "digest", *range(len(man.layers))):
            st, n = get(peers[name].port, nginx_path(hot, what), cert=peers[name].cert)
            if st != 200 or n != size_of(hot, what):
                raise RuntimeError(f"nginx GET {nginx_path(hot, what)} -> {st}, {n} bytes")
    upstream_mark(up, quiet=1.0, timeout=30)  # the incumbent's background fetches done


def push_hosted(hosted, peers):
    """The hosted image pushed (skopeo, digests preserved) into regcache's hosted repository
    and into the plain incumbent; skopeo speaks TLS or plain HTTP, whichever the peer does."""
    for name in ("regcache", "incumbent_hosted"):
        images.skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                      f"dir:{hosted.layout}.dir",
                      f"docker://127.0.0.1:{peers[name].port}/{HOSTED_REPO}:v1")
        st, _ = get(peers[name].port, f"/v2/{HOSTED_REPO}/manifests/v1", True,
                    cert=peers[name].cert)
        if st != 200:
            raise RuntimeError(f"the pushed {HOSTED_REPO}:v1 on {name} -> {st}")


def bench_hits(res, up, tmp, hot, hosted, seconds, transports):
    """The hit workloads, once per transport (plain HTTP, TLS): every peer started over it
    (regcache and the incumbents on the same directories each time, so what was pulled and
    pushed stays), warmed, and measured; memory and connections too over plain HTTP."""
    certs = make_cert(os.path.join(tmp, "certs")) if "TLS" in transports else None
    pushed = False
    for suffix, name in TRANSPORTS:
        if name not in transports:
            continue
        tls = certs if suffix else None
        peers = {}
        try:
            rc = peers["regcache"] = start_regcache(os.path.join(tmp, "regcache"), up,
                                                    MAX_CONNECTIONS, tls=tls,
                                                    hosted=[HOSTED_GLOB])
            peers["incumbent"] = Incumbent(os.path.join(tmp, "incumbent"), up, tls).start()
            peers["incumbent_hosted"] = Incumbent(os.path.join(tmp, "incumbent-hosted"), None,
                                                  tls).start()
            tag_file = rc.file_for(hot.manifests[0].digest)
            for workers in ("auto", 1):
                peers[f"nginx_{workers}"] = Nginx(
                    os.path.join(tmp, f"nginx-{workers}{suffix}"), rc.storage, workers, tls,
                    {NGINX_TAG_URL: tag_file}).start()
            log(f"{name}: " + ", ".join(f"{p} :{s.port} (pid {s.proc.pid})"
                                        for p, s in peers.items()))
            if not pushed:
                push_hosted(hosted, peers)
                pushed = True
            warm(peers, hot, hosted, up)
            if tls:
                seen = {p: tls_cipher(s.port, certs[0]) for p, s in peers.items()}
                res.header.append("TLS: a self-signed RSA 2048 certificate made for the run; "
                                  "what a handshake settles on (OpenSSL client, as wrk): " +
                                  "; ".join(f"{PEER_NAMES.get(p, 'incumbent (plain registry)')} {v} {c}"
                                            for p, (v, c) in seen.items()))
            else:
                bench_connections(res, rc, peers["incumbent"], hot)
            bench_throughput(res, up, peers, hot, hosted, seconds, bool(tls))
        finally:
            for p, server in peers.items():
                if p == "regcache":
                    status = server.stop()
                    if status != 0:
                        log(f"regcache exited with {status} after SIGTERM")
                else:
                    server.stop()


TARGETS = {
    # key: description ("nginx" is target_nginx(): as many event loops as regcache)
    "manifest_digest_rps": "regcache >= 20x incumbent and >= 0.5x {nginx}",
    "blob_1m_mbps": ">= 0.9x {nginx}",
    "blob_64m_mbps": ">= 0.9x {nginx}",
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


def target_nginx():
    """The nginx the targets hold regcache to: one worker while regcache runs one event loop,
    else one worker per CPU."""
    return "nginx_1" if REGCACHE_WORKERS in (None, 1) else "nginx_auto"


def judge(res):
    ngx = target_nginx()
    for key, target in TARGETS.items():
        row = res.rows.get(key)
        if not row:
            continue
        v = row["values"]
        rc = v.get("regcache")
        if key == "manifest_digest_rps":
            holds = (ratio(rc, v.get("incumbent")) or 0) >= 20 and \
                    (ratio(rc, v.get(ngx)) or 0) >= 0.5
        elif key.startswith("blob_"):
            holds = (ratio(rc, v.get(ngx)) or 0) >= 0.9
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
        row["target"], row["holds"] = target.format(nginx=PEER_NAMES[ngx]), holds


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


def hit_rows():
    """The hit workloads' row keys and chart labels, in table order: per transport and
    origin, each workload's figure, then its p50 and p99."""
    out = []
    for transport, tname in TRANSPORTS:
        for origin, oname in ORIGINS:
            for kind, label, _, _, unit in HIT_KINDS:
                key = hit_key(kind, origin, transport)
                metric = "rps" if unit == "req/s" else "mbps"
                out.append((f"{key}_{metric}", f"{label}, {oname}, {tname}"))
                out += [(f"{key}_p50", None), (f"{key}_p99", None)]
    return out


HIT_ORDER = [k for k, _ in hit_rows()]
ORDER = HIT_ORDER + [
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
PEERS = ["regcache", "incumbent", "nginx_auto", "nginx_1"]
PEER_NAMES = {"regcache": "regcache", "incumbent": "incumbent", "nginx_auto": "nginx auto",
              "nginx_1": "nginx 1"}
REFERENCE = ("nginx_auto", "incumbent")  # regcache is held to the better of these
HIT_CHART_LABELS = {k: lab for k, lab in hit_rows() if lab}
CHART_LABELS = {
    "cold_pull_s": "cold pull time", "cold_pull_bytes": "cold pull upstream bytes",
    "storm_s": "storm time", "rss_idle": "RSS idle", "rss_1000": "RSS 1,000 conns",
    "c10k_seconds": "10,000 conns time", "c10k_rss": "RSS 10,000 conns",
    "storm_gets": "storm upstream GETs/blob",
    "hung_first_s": "hung upstream: 1st answer", "hung_later_ms": "hung upstream: later answers",
    "hung_copy_s": "hung upstream: skopeo copy",
    "flood_p50": "bcrypt flood: hit p50", "flood_p99": "bcrypt flood: hit p99",
}


def reference(row):
    """(peer, value): the better of nginx auto and the incumbent on this row (the higher
    figure or the lower latency), or (None, None) when neither has one."""
    v = row["values"]
    have = [(p, v[p]) for p in REFERENCE if v.get(p) is not None]
    if not have:
        return None, None
    pick = max if row["better"] == "high" else min
    return pick(have, key=lambda pv: pv[1])


def ratio_cell(row):
    peer, value = reference(row)
    r = ratio(row["values"].get("regcache"), value)
    return "-" if r is None else f"{fmt_ratio(r)} ({PEER_NAMES[peer]})"


def table_rows(res):
    out = []
    for key in ORDER:
        row = res.rows.get(key)
        if not row:
            continue
        v = row["values"]
        out.append([f"{row['label']} ({row['unit']})", *[fmt(v.get(p), row["unit"]) for p in PEERS],
                    ratio_cell(row),
                    "" if row["holds"] is None else
                    (f"{row['target']}: " + ("holds" if row["holds"] else "MISSED"))])
    return out


HEAD = ["workload", *[PEER_NAMES[p] for p in PEERS], "regcache / better of nginx auto, incumbent",
        "target"]
NUMERIC = range(1, len(PEERS) + 2)  # right-aligned columns


def print_table(res):
    rows = table_rows(res)
    widths = [max(len(str(r[i])) for r in rows + [HEAD]) for i in range(len(HEAD))]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) if i in NUMERIC else h
                     for i, (h, w) in enumerate(zip(HEAD, widths)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) if i in NUMERIC else str(c)
                        for i, (c, w) in enumerate(zip(r, widths))))


def header_lines(res, info):
    """What the output says before the table: the machine, how regcache ran, how wrk's thread
    count was picked and checked."""
    out = [f"Run of {info['date']} on {info['nproc']} CPUs ({info['cpu']}), Linux "
           f"{info['kernel']}, {info['mem_mib'] // 1024} GiB RAM."]
    if info["nproc"] <= 2:
        out.append(f"Only {info['nproc']} cores: wrk, the peer measured (nginx auto: "
                   f"{info['nproc']} workers) and the machine's other work all share them, so "
                   "each figure is what the pair reaches together on this machine, not what "
                   "the peer alone could serve, and a peer that scales over more cores cannot "
                   "show it here.")
    out += res.header
    if res.calibration:
        out.append(f"wrk's threads (-t) per workload: {WRK_THREADS[0]} (one per CPU) unless "
                   f"{WRK_THREADS[1]} raised the figure of nginx auto or regcache (the fastest "
                   f"peers) by more than {THREADS_WITHIN:.0%}, in {CAL_SECONDS} s runs in the "
                   "order A B B A, the better of each pair counting (table at the end): so more "
                   "wrk threads did not raise a peer's figure. Each measured run also records "
                   "wrk's own CPU time (\"busy\": the share of its threads' time on a core; the "
                   "most per workload is in its note in results.csv): a thread near 100% would "
                   "be the limit.")
    return out


def calibration_table(res):
    rows = [["workload", "unit", *[f"-t{t}" for t in WRK_THREADS], "chosen"]]
    for c in res.calibration:
        cells = []
        for t in WRK_THREADS:
            cells.append(", ".join(
                f"{PEER_NAMES[p]} {fmt(f[t][0])} ({f[t][1]:.0%} busy)"
                for p, f in c["figures"].items() if t in f) or "-")
        rows.append([c["workload"], c["unit"], *cells, f"-t{c['threads']}"])
    return rows


def write_chart(res, out, info, tmp):
    """chart.svg: the hit workloads, every peer's figure over the better of nginx auto and the
    incumbent (1 = that peer; higher is better); below, the other scenarios, how many times
    better regcache does than the incumbent (throughput: regcache/peer; latency, time, bytes,
    memory: peer/regcache), so every bar there reads "higher is better" too."""
    hits = os.path.join(tmp, "chart-hits.dat")
    with open(hits, "w") as f:
        for key in HIT_ORDER:
            row = res.rows.get(key)
            if not row or key not in HIT_CHART_LABELS:
                continue
            _, ref = reference(row)
            vals = [ratio(row["values"].get(p), ref) for p in PEERS]
            f.write(f"\"{HIT_CHART_LABELS[key]}\"\t"
                    + "\t".join("-" if r is None else f"{r:.4g}" for r in vals) + "\n")
    other = os.path.join(tmp, "chart-other.dat")
    with open(other, "w") as f:
        for key in ORDER:
            row = res.rows.get(key)
            if (not row or key in HIT_ORDER or key in ("c10k_errors", "storm_gets_max")):
                continue
            v = row["values"]
            r = (ratio(v.get("regcache"), v.get("incumbent")) if row["better"] == "high"
                 else ratio(v.get("incumbent"), v.get("regcache")))
            if r is not None:
                f.write(f"\"{CHART_LABELS.get(key, row['label'])}\"\t{r:.4g}\n")
    files = [p if os.path.getsize(p) else "" for p in (hits, other)]
    if not any(files):
        return  # nothing compared with a peer (e.g. --only bcrypt-flood,scrape): no chart
    title = (f"regcache vs docker-registry 2.8 and nginx (sendfile; auto = "
             f"{info['nproc']} workers, and 1), {info['date'][:10]}, {info['nproc']} CPUs, "
             f"Linux {info['kernel']}")
    p = subprocess.run(["gnuplot", "-e", f"hitsfile='{files[0]}'; otherfile='{files[1]}'; "
                        f"outfile='{os.path.join(out, 'chart.svg')}'; charttitle='{title}'",
                        CHART_GP], capture_output=True, text=True)
    if p.returncode != 0:
        log(f"gnuplot failed: {p.stderr}")


def write_outputs(res, out, info, tmp):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "nproc", "kernel", "cpu", "workload", "label", "unit", "better",
                    *PEERS, "better_peer", "regcache_over_better_peer", "target", "holds",
                    "note"])
        for key in ORDER:
            row = res.rows.get(key)
            if not row:
                continue
            v = row["values"]
            peer, ref = reference(row)
            r = ratio(v.get("regcache"), ref)
            w.writerow([info["date"], info["nproc"], info["kernel"], info["cpu"], key,
                        row["label"], row["unit"], row["better"],
                        *["" if v.get(p) is None else f"{v[p]:.6g}" for p in PEERS],
                        peer or "", "" if r is None else f"{r:.4g}",
                        row["target"], "" if row["holds"] is None else
                        ("yes" if row["holds"] else "no"), row["note"].strip("; ")])
    with open(os.path.join(out, "results.md"), "w") as f:
        for line in header_lines(res, info):
            f.write(line + "\n\n")
        f.write("| " + " | ".join(HEAD) + " |\n")
        f.write("| --- " + "| ---: " * (len(HEAD) - 2) + "| --- |\n")
        for r in table_rows(res):
            f.write("| " + " | ".join(r) + " |\n")
        if res.calibration:
            cal = calibration_table(res)
            f.write("\nwrk's threads, per workload (figure and wrk's busy share per thread "
                    "count):\n\n")
            f.write("| " + " | ".join(cal[0]) + " |\n")
            f.write("| --- | --- " + "| ---: " * (len(cal[0]) - 2) + "|\n")
            for r in cal[1:]:
                f.write("| " + " | ".join(r) + " |\n")
    write_chart(res, out, info, tmp)


def on_term(signum, frame):
    """SIGTERM (bench/run's time bound or cleanup) unwinds like Ctrl-C: every server stops."""
    raise KeyboardInterrupt("SIGTERM")


# hits: the hit workloads over plain HTTP (with connections and memory) and over TLS;
# hits-plain and hits-tls: one transport only
SCENARIOS = ("hits", "hits-plain", "hits-tls", "cold", "storm", "hung", "bcrypt-flood", "scrape")


def main():
    global PIDS_FILE, PROFILE_DIR, ROUNDS, REGCACHE_WORKERS
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
    transports = [name for _, name in TRANSPORTS
                  if "hits" in only or f"hits-{'plain' if name == 'HTTP' else 'tls'}" in only]
    if transports:
        only.add("hits")
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
    REGCACHE_WORKERS, how = probe_workers(tmp)
    res.header.append(how + ".")
    log(how)
    try:
        specs = {"hits": ("hot", 9001, HOT_LAYERS), "cold": ("cold", 9002, COLD_LAYERS),
                 "storm": ("storm", 9003, STORM_LAYERS), "hung": ("hung", 9004, HUNG_LAYERS),
                 "bcrypt-flood": ("flood", 9005, FLOOD_LAYERS),
                 "scrape": ("scrape", 9006, SCRAPE_LAYERS)}
        imgs = {}
        for scenario, (name, seed, layers) in specs.items():
            if scenario in only:
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
            # the hosted image: the same layer sizes as the proxied one, other bytes, never
            # upstream; pushed into the peers themselves
            hosted = images.build_image(os.path.join(tmp, "img-hosted"), 9007, HOT_LAYERS,
                                        fmt="oci")
            bench_hits(res, up, tmp, imgs["hot"], hosted, args.seconds, transports)

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
          + (f"; only {args.only}" if args.only else ""))
    for line in header_lines(res, info)[1:]:
        print(line)
    print()
    print_table(res)
    if res.calibration:
        print()
        cal = calibration_table(res)
        widths = [max(len(r[i]) for r in cal) for i in range(len(cal[0]))]
        for r in cal:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    if out:
        write_outputs(res, out, info, tmp)
        print(f"\nwrote {os.path.relpath(out, ROOT)}/results.csv, results.md, chart.svg")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'SIGINT'}); every process started was stopped")
        sys.exit(130)
