# SPDX-License-Identifier: Apache-2.0
"""Sustained load: 200 concurrent clients pulling a mix of 20 images (manifest by tag, then
every blob, each checked against its digest) for a bounded time. Nothing may fail, the
mirror's file descriptors come back to where they were, its memory stays flat, and every blob
is still fetched upstream once however many clients asked for it at the same moment."""

import hashlib
import http.client
import os
import random
import threading
import time

from helpers import ACCEPT_HEADER, blob_gets, since, wait_until
from test_backpressure import rss_kib

CLIENTS = 200
IMAGES = 20
SECONDS = float(os.environ.get("REGCACHE_LOAD_SECONDS", "60"))


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return sorted(out)


def client_sockets(pid, port):
    """The mirror's sockets that are accepted client connections (local port == port, not the
    listener), from /proc/net/tcp{,6}."""
    accepted = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                local_port = int(cols[1].rsplit(":", 1)[1], 16)
                if local_port == port and cols[3] != "0A":  # 0A: LISTEN
                    accepted.add(cols[9])
    return [t for t in fd_targets(pid)
            if t.startswith("socket:[") and t[8:-1] in accepted]


def pull_one(conn, img, name):
    """One pull over a keep-alive connection: the tag's manifest, then its config and layers.
    Returns an error string, or None when every byte matched."""
    conn.request("GET", f"/v2/{name}/manifests/v1", headers={"Accept": ACCEPT_HEADER})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200 or body != img.raw:
        return f"manifest {name}: {r.status}"
    m = img.manifests[0]
    for digest in [m.config.digest] + [l.digest for l in m.layers]:
        conn.request("GET", f"/v2/{name}/blobs/{digest}")
        r = conn.getresponse()
        data = r.read()
        if r.status != 200 or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            return f"blob {digest[:19]} of {name}: {r.status}, {len(data)} bytes"
    return None


def test_200_clients_pull_20_images(mirror_factory, up, make_image, push):
    imgs = []
    for i in range(IMAGES):
        sizes = (8 * 1024 * (1 + i % 4), 96 * 1024 + 4096 * i)
        imgs.append((push(make_image(300 + i, sizes), up, f"library/load{i}", "v1"),
                     f"library/load{i}"))
    m = mirror_factory([up])
    pid = m.proc.pid
    mark = up.mark()
    base = fd_targets(pid)
    base_fds = len(base)
    stop = time.monotonic() + SECONDS
    errors, pulls, rss = [], [0], []
    lock = threading.Lock()

    def client(seed):
        rnd = random.Random(seed)
        conn = None
        while time.monotonic() < stop:
            img, name = imgs[rnd.randrange(IMAGES)]
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=60)
                err = pull_one(conn, img, name)
            except (OSError, http.client.HTTPException) as e:
                err = f"{name}: {type(e).__name__}: {e}"
            with lock:
                if err:
                    errors.append(err)
                else:
                    pulls[0] += 1
            if err or rnd.random() < 0.05:  # now and then a client comes back on a new connection
                if conn:
                    conn.close()
                conn = None
        if conn:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    while time.monotonic() < stop:
        rss.append(rss_kib(pid))
        time.sleep(min(5, max(0.1, stop - time.monotonic())))
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "clients still running after the deadline"

    assert not errors, f"{len(errors)} failed pulls, e.g. {errors[:5]}"
    assert pulls[0] >= CLIENTS, f"only {pulls[0]} pulls completed"
    # every client connection is closed, and nothing else leaked: beyond the descriptors open
    # before, only idle upstream connections kept for reuse remain (at most 16)
    wait_until(lambda: not client_sockets(pid, m.port), timeout=20,
               what="client connections to close")
    wait_until(lambda: open_fds(pid) <= base_fds + 16, timeout=20,
               what=f"file descriptors back to {base} (now {fd_targets(pid)})")
    extra = [t for t in fd_targets(pid) if t not in base]
    assert all(t.startswith("socket:[") for t in extra), extra
    # flat memory: after the first samples (cold fills, caches warming) RSS does not keep growing
    # (not for a sanitizer build or a wrapper named by REGCACHE_BIN: their allocators hold
    # freed memory on purpose; LeakSanitizer checks those runs instead)
    if "REGCACHE_BIN" not in os.environ:
        settled = rss[len(rss) // 3:]
        assert max(settled) - settled[0] < 16 * 1024, f"RSS samples (KiB): {rss}"
    # single flight under load: no blob went upstream twice
    gets = blob_gets(since(up, mark))
    assert gets and max(gets.values()) == 1, {d: n for d, n in gets.items() if n > 1}
    print(f"{pulls[0]} pulls by {CLIENTS} clients in {SECONDS:.0f} s; RSS KiB {rss}")
