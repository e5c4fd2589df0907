#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Large caches: start-up, memory, index size, GC and hits at 10k, 100k and 1M blobs.

    /usr/bin/python3 bench/scale/run.py [--sizes 10000,100000,1000000] [--work DIR]
                                        [--bin build/regcache] [--seconds 3] [--keep]

For each size, builds a synthetic store (synth.py; kept in --work and reused when there),
then measures with the regcache of --bin, everything on 127.0.0.1 (the upstream is a closed
port: every figure is of what the mirror holds):
  - the time until GET /v2/ answers after the start: after a clean stop (SIGTERM) and after
    SIGKILL (the store is then walked in the background: its duration is logged),
  - the background parts: index load and the walk, as the daemon logs them,
  - RSS once idle, the database's bytes per blob,
  - the GC: a scheduled run that evicts nothing (cache.ttl 7d), then one that evicts the
    oldest tenth (ttl set so), with the hit p99 of random blobs (wrk, hits.lua) while idle and
    while that run goes (the first scheduled run starts 5 s after the start),
  - `regcache stats` and `regcache ls`.
Prints a Markdown table and writes results.json in --work. The run that evicts a tenth
changes the store: a later run rebuilds it. Every process started is stopped on exit; the
work directory is removed unless --keep."""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PROCS = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path, storage, port, ttl="7d"):
    with open(path, "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\nstorage: {storage}\n"
                "upstreams:\n  - name: docker.io\n    url: http://127.0.0.1:9\n"
                f"cache:\n  ttl: {ttl}\n  gc_interval: 1h\n")


class Daemon:
    def __init__(self, binary, cfg, port, log):
        self.port, self.log = port, log
        self.mark = os.path.getsize(log) if os.path.exists(log) else 0
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([binary, "serve", "-c", cfg], stdout=open(log, "a"),
                                     stderr=subprocess.STDOUT)
        PROCS.append(self.proc)

    def wait_v2(self, timeout=120):
        """Seconds from the start until GET /v2/ answers 200."""
        deadline = self.t0 + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - self.t0
            except Exception:
                if self.proc.poll() is not None:
                    sys.exit(f"regcache exited: see {self.log}")
            time.sleep(0.002)
        sys.exit("GET /v2/ did not answer")

    def text(self):
        with open(self.log, errors="replace") as f:
            f.seek(self.mark)
            return f.read()

    def wait_log(self, pattern, timeout=600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                sys.exit(f"regcache exited: see {self.log}")
            time.sleep(0.05)
        sys.exit(f"no {pattern!r} in {self.log}")

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(120)
        PROCS.remove(self.proc)


def wrk(port, paths, seconds):
    env = dict(os.environ, SCALE_PATHS=paths)
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{seconds}s", "-s",
                          os.path.join(HERE, "hits.lua"), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, env=env, timeout=seconds + 30).stdout
    line = [l for l in out.splitlines() if l.startswith("BENCH ")]
    return json.loads(line[0][6:]) if line else {"p99_us": -1, "requests": 0}


def timed(cmd):
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode:
        sys.exit(f"{cmd}: {r.stderr[-500:]}")
    return time.monotonic() - t0


def db_bytes(storage):
    return sum(os.path.getsize(os.path.join(storage, n)) for n in os.listdir(storage)
               if n.startswith("regcache.db") and not n.endswith("-shm"))


def hit_paths(storage, sample, out, cutoff_ms):
    """Request paths of the sample's blobs that the tenth-evicting run keeps."""
    db = sqlite3.connect(os.path.join(storage, "regcache.db"))
    with open(sample) as f:
        blobs = json.load(f)["blobs"]
    keep = []
    for repo, digest in blobs:
        row = db.execute("SELECT last_access_ms FROM blobs WHERE digest = ?", (digest,)).fetchone()
        if row and row[0] > cutoff_ms:
            keep.append(f"/v2/{repo}/blobs/{digest}")
    db.close()
    with open(out, "w") as f:
        f.write("\n".join(keep) + "\n")
    return len(keep)


def tenth_cutoff(storage, n):
    db = sqlite3.connect(os.path.join(storage, "regcache.db"))
    row = db.execute("SELECT last_access_ms FROM blobs ORDER BY last_access_ms LIMIT 1 OFFSET ?",
                     (n // 10,)).fetchone()
    db.close()
    return row[0]


def gc_ms(text):
    m = re.search(r"gc \(scheduled\): evicted (\d+) of (\d+).*; (\d+) ms", text)
    return (int(m.group(1)), int(m.group(3))) if m else (None, None)


def measure(a, n):
    d = os.path.join(a.work, f"s{n}")
    storage = os.path.join(d, "storage")
    sample = os.path.join(d, "sample.json")
    if not os.path.exists(sample) or os.path.exists(os.path.join(d, "evicted")):
        shutil.rmtree(d, ignore_errors=True)
        subprocess.run([sys.executable, os.path.join(HERE, "synth.py"), "--files", str(n),
                        "--out", d, "--bin", a.bin], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    cfg = os.path.join(d, "bench.yml")
    log = os.path.join(d, "bench.log")
    write_config(cfg, storage, port)
    r = {"blobs": n}

    # whatever state the store is in: bring it to a clean stop
    m = Daemon(a.bin, cfg, port, log)
    m.wait_v2()
    m.wait_log(r"\(walked in the background in|the store is not walked")
    m.wait_log(r"loaded in the background in")
    m.stop()

    # clean restart
    m = Daemon(a.bin, cfg, port, log)
    r["start_clean_s"] = round(m.wait_v2(), 3)
    r["index_load_ms"] = int(m.wait_log(r"loaded in the background in (\d+) ms").group(1))
    r["quick_check_ms"] = int(m.wait_log(r"quick_check\) done in (\d+) ms").group(1))
    evicted, ms = gc_ms(m.wait_log(r"gc \(scheduled\).*ms").group(0))
    r["gc_nothing_ms"] = ms
    time.sleep(1)
    r["rss_idle_mib"] = round(m.rss_mib(), 1)
    r["db_bytes_per_blob"] = round(db_bytes(storage) / n)
    r["stats_s"] = round(timed([a.bin, "stats", "-c", cfg]), 3)
    r["ls_s"] = round(timed([a.bin, "ls", "-c", cfg]), 3)
    m.stop()

    # SIGKILL restart: the walk in the background
    m = Daemon(a.bin, cfg, port, log)
    m.wait_v2()
    m.wait_log(r"loaded in the background in")
    m.stop(signal.SIGKILL)
    m = Daemon(a.bin, cfg, port, log)
    r["start_killed_s"] = round(m.wait_v2(), 3)
    r["walk_ms"] = int(m.wait_log(r"\(walked in the background in (\d+) ms").group(1))
    m.stop()

    # hits idle (once the background load and check are done, with a GC that evicts nothing),
    # then, after a restart, during a GC that evicts the oldest tenth (5 s after the start)
    cutoff = tenth_cutoff(storage, n)
    paths = os.path.join(d, "paths.txt")
    r["hit_paths"] = hit_paths(storage, sample, paths, cutoff + 3600 * 1000)
    m = Daemon(a.bin, cfg, port, log)
    m.wait_v2()
    m.wait_log(r"loaded in the background in")
    m.wait_log(r"integrity check \(quick_check\) done")
    m.wait_log(r"gc \(scheduled\)")
    wrk(port, paths, a.seconds)  # the sample's files into the page cache, as during the GC
    idle = wrk(port, paths, a.seconds)
    m.stop()
    ttl_s = int((time.time() * 1000 + 5000 - cutoff) / 1000)
    write_config(cfg, storage, port, ttl=f"{ttl_s}s")
    m = Daemon(a.bin, cfg, port, log)
    m.wait_v2()
    wait = 5.0 - (time.monotonic() - m.t0)
    if wait > 0:
        time.sleep(wait)
    during = wrk(port, paths, a.seconds)
    line = m.wait_log(r"gc \(scheduled\).*ms").group(0)
    evicted, ms = gc_ms(line)
    r["gc_tenth_evicted"], r["gc_tenth_ms"] = evicted, ms
    r["hit_p99_idle_ms"] = round(idle["p99_us"] / 1000, 2)
    r["hit_p99_gc_ms"] = round(during["p99_us"] / 1000, 2)
    r["hit_rps_idle"] = round(idle["requests"] / a.seconds)
    r["hit_rps_gc"] = round(during["requests"] / a.seconds)
    m.stop()
    open(os.path.join(d, "evicted"), "w").close()
    return r


COLUMNS = [("blobs", "blobs"), ("start_clean_s", "GET /v2/ after clean stop (s)"),
           ("start_killed_s", "after SIGKILL (s)"), ("walk_ms", "background walk (ms)"),
           ("index_load_ms", "background index load (ms)"),
           ("quick_check_ms", "background quick_check (ms)"), ("rss_idle_mib", "RSS idle (MiB)"),
           ("db_bytes_per_blob", "DB bytes/blob"), ("gc_nothing_ms", "GC evicting nothing (ms)"),
           ("gc_tenth_ms", "GC evicting 10% (ms)"), ("hit_p99_idle_ms", "hit p99 idle (ms)"),
           ("hit_p99_gc_ms", "hit p99 during GC (ms)"), ("stats_s", "`stats` (s)"),
           ("ls_s", "`ls` (s)")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--work", default="/tmp/regcache-scale")
    ap.add_argument("--bin", default="build/regcache")
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    os.makedirs(a.work, exist_ok=True)
    results = []
    try:
        for n in [int(x) for x in a.sizes.split(",")]:
            results.append(measure(a, n))
            print(json.dumps(results[-1]), file=sys.stderr)
    finally:
        for p in PROCS:
            p.kill()
            p.wait()
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("| " + " | ".join(h for _, h in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in results:
        print("| " + " | ".join(str(r.get(k, "")) for k, _ in COLUMNS) + " |")
    if not a.keep:
        shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
