"""Faults between the mirror and its upstream, and in the mirror's own storage: a connection cut
mid-blob, a slow upstream under many clients, Docker Hub's 429 and rate-limit headers, a full
disk, and a corrupt or locked index. Each test asserts that nothing is lost or corrupted: what
the clients got, what the upstream saw, and what is left in the store.

Covered elsewhere: bytes that do not match the digest (test_fills.py), a fast upstream with a
slow client (test_backpressure.py), SIGKILL mid-fill (test_cache_lifecycle.py)."""

import hashlib
import http.client
import os
import threading
import time

import pytest

from faultproxy import FaultProxy
from helpers import assert_error, blob_gets, get, mirror_has, since, wait_until
from mirror import request
from slowproxy import SlowProxy

MiB = 1024 * 1024


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def tmp_files(mirror):
    return os.listdir(os.path.join(mirror.storage, "tmp"))


def blob_files(mirror):
    """digest -> path of every file under blobs/."""
    out = {}
    root = os.path.join(mirror.storage, "blobs", "sha256")
    for shard in os.listdir(root):
        for name in os.listdir(os.path.join(root, shard)):
            out["sha256:" + name] = os.path.join(root, shard, name)
    return out


def assert_store_sound(mirror):
    """Every file under blobs/ hashes to its name."""
    for digest, path in blob_files(mirror).items():
        with open(path, "rb") as f:
            assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == digest, path


def fetch(mirror, path, timeout=60):
    """(status, body, cut): cut is True when the response ended before its Content-Length."""
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        try:
            return resp.status, resp.read(), False
        except (http.client.IncompleteRead, ConnectionResetError) as e:
            return resp.status, getattr(e, "partial", b""), True
    finally:
        conn.close()


@pytest.fixture
def proxy(up):
    """A FaultProxy in front of `up`; the mirror's docker.io is the proxy."""
    p = FaultProxy(up.port)
    yield p
    p.stop()


# -- 1. the upstream connection cut mid-blob -----------------------------------------------------
@pytest.mark.parametrize("after", [0, 1536 * 1024], ids=["before-body", "mid-body"])
def test_upstream_cut_mid_blob_stores_nothing_and_retry_heals(up, proxy, mirror_factory,
                                                              make_image, push, after):
    """The upstream connection closes after `after` bytes of a 4 MiB blob: the client gets a
    5xx spec error or a response cut short (never a complete body), nothing is stored for the
    digest and tmp/ is empty; the next request, with the upstream healthy, fetches the blob
    again (one more upstream GET) and gets the right bytes, which are then stored."""
    img = push(make_image(200, (4 * MiB,)), up, "library/cut", "v1")
    layer = img.layer_digests[0]
    good = img.blobs[layer]
    m = mirror_factory([{"name": "docker.io", "url": proxy.url}])
    proxy.cut[layer] = after
    mark = up.mark()
    status, body, cut = fetch(m, f"/v2/library/cut/blobs/{layer}")
    if status == 200:
        assert cut and len(body) < len(good), f"a complete 200 of {len(body)} bytes"
        assert good.startswith(body), "the bytes that did arrive are not the blob's"
    else:
        assert_error(status, body, range(500, 600))
    assert ("GET", f"/v2/library/cut/blobs/{layer}", "cut") in proxy.requests()
    assert blob_gets(since(up, mark))[layer] == 1
    wait_until(lambda: not tmp_files(m), timeout=10, what="tmp/ to be empty")
    assert not mirror_has(m, layer)

    s, _, body = get(m, f"/v2/library/cut/blobs/{layer}", accept=False)
    assert s == 200 and body == good
    assert blob_gets(since(up, mark))[layer] == 2
    wait_until(lambda: mirror_has(m, layer), timeout=10, what="the blob to be stored")
    assert tmp_files(m) == []
    assert_store_sound(m)
    mark = up.mark()
    assert get(m, f"/v2/library/cut/blobs/{layer}", accept=False)[2] == good
    assert blob_gets(since(up, mark))[layer] == 0


# -- 3. a slow upstream and many fast clients ----------------------------------------------------
def test_slow_upstream_many_clients_one_fetch_bounded_memory(up, mirror_factory, make_image, push):
    """20 clients ask at once for one cold 16 MiB blob that the upstream trickles at 4 MiB/s:
    the upstream serves it once, every client gets every byte (hashing right), and the mirror's
    resident memory grows by far less than one copy of the blob per client."""
    img = push(make_image(201, (16 * MiB,)), up, "library/trickle", "v1")
    layer = img.layer_digests[0]
    size = len(img.blobs[layer])
    slow = SlowProxy(up.port, rate=4 * MiB)
    try:
        m = mirror_factory([{"name": "docker.io", "url": slow.url}])
        pid = m.proc.pid
        rss_before = rss_kib(pid)
        peak = [rss_before]
        n = 20
        barrier = threading.Barrier(n)
        results = [None] * n

        def client(i):
            barrier.wait()
            try:
                s, body, cut = fetch(m, f"/v2/library/trickle/blobs/{layer}", timeout=120)
                results[i] = (s, len(body), "sha256:" + hashlib.sha256(body).hexdigest(), cut)
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = ("error", repr(e), None, None)

        mark = up.mark()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.05)
        for t in threads:
            t.join()
        assert results == [(200, size, layer, False)] * n
        assert blob_gets(since(up, mark))[layer] == 1
        growth = peak[0] - rss_before
        print(f"RSS {rss_before} KiB before, peak {peak[0]} KiB (+{growth} KiB)")
        assert growth < 16 * 1024, f"RSS grew by {growth} KiB for a {size >> 10} KiB blob"
        wait_until(lambda: mirror_has(m, layer), timeout=10, what="the blob to be stored")
        assert tmp_files(m) == []
        assert_store_sound(m)
    finally:
        slow.close()
