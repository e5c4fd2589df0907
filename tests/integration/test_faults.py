# SPDX-License-Identifier: Apache-2.0
"""Faults between the mirror and its upstream, and in the mirror's own storage: a connection cut
mid-blob, a slow upstream under many clients, Docker Hub's 429 and rate-limit headers, a full
disk, and a corrupt or locked index. Each test asserts that nothing is lost or corrupted: what
the clients got, what the upstream saw, and what is left in the store.

Covered elsewhere: bytes that do not match the digest (test_fills.py), a fast upstream with a
slow client (test_backpressure.py), SIGKILL mid-fill (test_cache_lifecycle.py)."""

import errno
import hashlib
import http.client
import json
import os
import sqlite3
import subprocess
import threading
import time

import pytest

from faultproxy import FaultProxy
from helpers import assert_error, blob_gets, get, mirror_has, since, wait_until
from mirror import regcache
from slowproxy import SlowProxy
from test_backpressure import rss_kib
from test_cache_lifecycle import all_files_hash_to_their_names as assert_store_sound

MiB = 1024 * 1024


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
def test_upstream_cut_mid_blob_is_resumed(up, proxy, mirror_factory, make_image, push):
    """The upstream connection closes after 1.5 MiB of a 4 MiB blob: the fill asks again for the
    rest (Range: bytes=1572864-), the client gets the whole blob in one response, the upstream
    served two GETs of it and the blob is stored (more in test_resume.py)."""
    img = push(make_image(200, (4 * MiB,)), up, "library/cut", "v1")
    layer = img.layer_digests[0]
    m = mirror_factory([{"name": "docker.io", "url": proxy.url}])
    proxy.cut[layer] = 1536 * 1024
    mark = up.mark()
    status, body, cut = fetch(m, f"/v2/library/cut/blobs/{layer}")
    assert (status, cut) == (200, False) and body == img.blobs[layer]
    assert [r for _, p, r, o in proxy.ranges if p.endswith(layer) and o != 401] == \
        [None, "bytes=1572864-"]
    assert blob_gets(since(up, mark))[layer] == 2
    wait_until(lambda: mirror_has(m, layer), timeout=10, what="the blob to be stored")
    assert tmp_files(m) == []
    assert_store_sound(m)


@pytest.mark.parametrize("after", [0], ids=["before-body"])
def test_upstream_cut_mid_blob_stores_nothing_and_retry_heals(up, proxy, mirror_factory,
                                                              make_image, push, after):
    """The upstream connection closes after the headers of a 4 MiB blob, before any body byte:
    the client gets a 5xx spec error or a response cut short (never a complete body), nothing
    is stored for the digest and tmp/ is empty; the next request, with the upstream healthy,
    fetches the blob again (one more upstream GET) and gets the right bytes, which are then
    stored."""
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


# -- 4. Docker Hub's pull limit: 429 TOOMANYREQUESTS and the ratelimit-* headers -----------------
HUB_429_BODY = (b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate '
                b'limit. You may increase the limit by authenticating and upgrading: '
                b'https://www.docker.com/increase-rate-limit"}]}\n')


def hub_headers(remaining):
    return [("RateLimit-Limit", "100;w=21600"), ("RateLimit-Remaining", f"{remaining};w=21600"),
            ("Docker-RateLimit-Source", "203.0.113.9")]


def rate_limits(mirror):
    r = regcache("stats", "-c", mirror.config_path, "--json")
    assert r.returncode == 0, r.stderr
    return {x["upstream"]: x for x in json.loads(r.stdout)["rate_limits"]}


def test_rate_limited_upstream_serves_cache_and_shows_budget(up, proxy, mirror_factory,
                                                             make_image, push):
    """The upstream (through the proxy) announces Docker Hub's ratelimit-* headers on every
    response: `regcache stats` shows the remaining budget, and a low one is logged. Then every
    request gets Docker Hub's 429 TOOMANYREQUESTS with Retry-After: a tag cached and past
    revalidate_after is served stale with its blobs, the upstream is marked down and tags/list
    answers with the cached tags without asking it,
    a cold tag and a cold blob get 429 TOOMANYREQUESTS with what is left of the Retry-After
    without asking the upstream again, the registry behind it sees none of it, and stats shows 0 left and when the last 429 came."""
    cached = push(make_image(210, (256 * 1024,)), up, "library/limited", "v1")
    cold = push(make_image(211, (128 * 1024,)), up, "library/limited", "cold")
    proxy.extra_headers = hub_headers(7)
    m = mirror_factory([{"name": "docker.io", "url": proxy.url}])
    s, h, body = get(m, "/v2/library/limited/manifests/v1")
    assert s == 200 and body == cached.raw
    for d in cached.blob_digests:
        assert get(m, f"/v2/library/limited/blobs/{d}", accept=False)[2] == cached.blobs[d]
    wait_until(lambda: rate_limits(m).get("docker.io", {}).get("remaining") == 7, timeout=15,
               what="stats to show the budget")
    rl = rate_limits(m)["docker.io"]
    assert (rl["limit"], rl["window_s"], rl["source"], rl["last_429"]) == \
        (100, 21600, "203.0.113.9", None)
    text = regcache("stats", "-c", m.config_path).stdout
    assert "docker.io" in text and "7 of 100 left per 21600 s for 203.0.113.9" in text, text
    assert "pull budget low: 7 of 100 left" in m.log_text()

    proxy.extra_headers = hub_headers(0)
    proxy.answer = lambda method, path: (
        (429, [("Content-Type", "application/json"), ("Retry-After", "3600")], HUB_429_BODY)
        if path.startswith("/v2/library/") else None)
    time.sleep(1.5)  # past revalidate_after
    mark, pmark = up.mark(), len(proxy.requests())
    s, h, body = get(m, "/v2/library/limited/manifests/v1")
    assert s == 200 and body == cached.raw and h["docker-content-digest"] == cached.digest
    for d in cached.blob_digests:
        s, _, body = get(m, f"/v2/library/limited/blobs/{d}", accept=False)
        assert s == 200 and body == cached.blobs[d]
    s, _, body = get(m, "/v2/library/limited/tags/list", accept=False)
    assert s == 200 and json.loads(body)["tags"] == ["v1"], (s, body)
    s, h, body = get(m, "/v2/library/limited/manifests/cold")
    assert_error(s, body, 429, "TOOMANYREQUESTS")
    assert 3500 < int(h.get("retry-after", "0")) <= 3600  # the seconds left of the upstream's
    layer = cold.layer_digests[0]
    s, h, body = get(m, f"/v2/library/limited/blobs/{layer}", accept=False)
    assert_error(s, body, 429, "TOOMANYREQUESTS")
    assert 3500 < int(h.get("retry-after", "0")) <= 3600
    assert not mirror_has(m, layer) and not mirror_has(m, cold.digest)

    seen = proxy.requests()[pmark:]
    assert ("HEAD", "/v2/library/limited/manifests/v1", 429) in seen, seen
    # until its Retry-After passes the upstream is asked nothing: the cold ones are refused here
    assert not any("/cold" in path or layer in path for _, path, _ in seen), seen
    # the 429 marked the upstream down: tags/list came from the cache without asking it
    assert not any(path.endswith("/tags/list") for _, path, _ in seen), seen
    assert "upstream docker.io: down (HTTP 429)" in m.log_text()
    assert all(outcome == 429 for _, _, outcome in seen), seen
    assert since(up, mark) == []
    assert any(e.method == "GET" and e.path == "/v2/library/limited/manifests/v1"
               and e.status == 200 for e in m.entries())
    assert any(e.path.endswith("/manifests/v1") and e.status == 200 and e.cache == "stale"
               for e in m.entries())
    assert "HTTP 429, pull limit reached (Retry-After 3600)" in m.log_text()
    wait_until(lambda: rate_limits(m)["docker.io"]["remaining"] == 0, timeout=15,
               what="stats to show the budget spent")
    assert rate_limits(m)["docker.io"]["last_429"] is not None


# -- 5. the store's disk full ---------------------------------------------------------------------
@pytest.fixture
def small_disk_mirror_factory(mirror_factory):
    """make(upstreams) -> a started mirror whose storage (blobs, tmp/ and regcache.db) is an
    8 MiB tmpfs. Each mirror is stopped (and must exit 0) before its tmpfs is unmounted."""
    made = []

    def make(upstreams):
        m = mirror_factory(upstreams, start=False)
        os.makedirs(m.storage)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", m.storage], check=True)
        made.append(m)
        return m.start()

    try:
        yield make
        for m in made:
            assert m.stop() == 0, "regcache did not exit 0 after SIGTERM"
    finally:
        for m in made:
            m.stop()
            if subprocess.run(["umount", m.storage]).returncode:
                subprocess.run(["umount", "-l", m.storage])


@pytest.fixture
def small_disk_mirror(up, small_disk_mirror_factory):
    return small_disk_mirror_factory([up])


def fill_disk(path, leave=0):
    """Writes zeros to path until the filesystem is full, then gives back `leave` bytes."""
    chunk = b"\0" * (64 * 1024)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    with open(path, "ab", buffering=0) as f:  # the last few bytes too
        try:
            while True:
                f.write(b"\0")
        except OSError:
            pass
    if leave:
        os.truncate(path, os.path.getsize(path) - leave)


def pull_image(mirror, img, repo, tag):
    s, h, body = get(mirror, f"/v2/{repo}/manifests/{tag}")
    assert s == 200 and body == img.raw, (s, body[:200])
    for d in img.blob_digests:
        s, _, body = get(mirror, f"/v2/{repo}/blobs/{d}", accept=False)
        assert s == 200 and body == img.blobs[d], (d, s, body[:200])


def test_full_disk_keeps_hits_fails_misses_cleanly_and_recovers(up, small_disk_mirror,
                                                                 make_image, push):
    """Storage on an 8 MiB tmpfs. A cached image keeps serving (by tag past revalidate_after,
    by digest, its blobs) while the disk is full; a blob that cannot fit (larger than the disk,
    or anything once the disk is full) gets a 5xx spec error before any byte of body, leaving
    no file under blobs/ and nothing in tmp/; the daemon keeps running through SQLite's
    SQLITE_FULL; once space is back the same pulls work and are stored; the index passes
    SQLite's integrity check and `regcache verify` finds nothing wrong."""
    m = small_disk_mirror
    a = push(make_image(220, (512 * 1024, 256 * 1024)), up, "library/fits", "v1")
    big = push(make_image(221, (12 * MiB,)), up, "library/huge", "v1")
    late = push(make_image(222, (384 * 1024,)), up, "library/late", "v1")
    pull_image(m, a, "library/fits", "v1")

    # larger than the whole disk
    layer = big.layer_digests[0]
    mark = up.mark()
    s, body, cut = fetch(m, f"/v2/library/huge/blobs/{layer}")
    assert not cut, "the response started and was then cut"
    assert_error(s, body, range(500, 600))
    assert not mirror_has(m, layer)
    assert blob_gets(since(up, mark))[layer] <= 1

    filler = os.path.join(m.storage, "filler")
    fill_disk(filler)
    time.sleep(1.5)  # past revalidate_after: the tag is revalidated (and the index written)
    pull_image(m, a, "library/fits", "v1")
    s, _, body = get(m, f"/v2/library/fits/manifests/{a.digest}")
    assert s == 200 and body == a.raw
    # a miss while the disk is full: the manifest comes from memory, its blob cannot be stored
    s, _, body = get(m, "/v2/library/late/manifests/v1")
    assert s == 200 and body == late.raw
    layer = late.layer_digests[0]
    s, body, cut = fetch(m, f"/v2/library/late/blobs/{layer}")
    assert not cut, "the response started and was then cut"
    assert_error(s, body, range(500, 600))
    assert not mirror_has(m, layer)
    time.sleep(2.5)  # an index flush while the disk is full
    assert get(m, "/healthz")[0] == 200
    wait_until(lambda: not tmp_files(m), timeout=10, what="tmp/ to be empty")
    assert_store_sound(m)

    os.unlink(filler)
    pull_image(m, late, "library/late", "v1")
    pull_image(m, a, "library/fits", "v1")
    wait_until(lambda: mirror_has(m, layer), timeout=10, what="the blob to be stored")
    assert tmp_files(m) == []
    assert_store_sound(m)
    if "cannot write (database or disk is full)" in m.log_text():
        wait_until(lambda: "writing again" in m.log_text(), timeout=15,
                   what="the index to be written again")
    wait_until(lambda: json.loads(regcache("stats", "-c", m.config_path, "--json").stdout)
               ["tags"] == 2, timeout=15, what="both tags in the index")
    assert m.stop() == 0
    with sqlite3.connect(os.path.join(m.storage, "regcache.db")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    r = regcache("verify", "-c", m.config_path)
    assert r.returncode == 0 and "0 corrupt removed" in r.stdout, r.stdout + r.stderr
    assert "0 adopted" in r.stdout and "0 index rows without a file dropped" in r.stdout, \
        r.stdout
    m.start()


# -- 7. a damaged or locked index -----------------------------------------------------------------
def damage(path, how):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        if how == "garbage":  # not a database at all
            f.write(os.urandom(size))
        else:  # a valid header, the pages after it overwritten
            f.seek(4096)
            f.write(os.urandom(min(size - 4096, 3 * 4096)))


@pytest.mark.parametrize("how", ["garbage", "pages"])
def test_damaged_database_is_refused_by_name_and_moving_it_aside_recovers(up, mirror_factory,
                                                                          make_image, push, how):
    """regcache.db overwritten with random bytes (or its pages after the header): serve, stats,
    verify and gc each exit 1 (no crash) naming the file and saying it is damaged, and touch
    nothing in the store. Moved aside as the message says, the mirror starts with a new index,
    adopts every stored file after re-hashing it, and serves the image again with no blob GET
    upstream (only the tag is asked again)."""
    img = push(make_image(230, (256 * 1024, 128 * 1024)), up, "library/idx", "v1")
    m = mirror_factory([up])
    pull_image(m, img, "library/idx", "v1")
    time.sleep(2.5)  # an index flush
    assert m.stop() == 0
    db = os.path.join(m.storage, "regcache.db")
    damage(db, how)
    files = blob_files(m)
    for cmd in (["serve"], ["stats"], ["stats", "--json"], ["verify"], ["gc"]):
        r = regcache(*cmd, "-c", m.config_path, timeout=60)
        assert r.returncode == 1, (cmd, r.returncode, r.stderr)
        assert f"database {db} is damaged" in r.stderr, (cmd, r.stderr)
        assert "Moving it aside starts an empty index" in r.stderr
    assert blob_files(m) == files

    os.rename(db, db + ".damaged")
    m.start()
    # the store is walked in the background once serving
    wait_until(lambda: f"{len(files)} adopted" in m.log_text(), timeout=30,
               what="the walk adopting the store's files")
    mark = up.mark()
    pull_image(m, img, "library/idx", "v1")
    reqs = since(up, mark)
    assert sum(blob_gets(reqs).values()) == 0, reqs
    assert_store_sound(m)


@pytest.mark.parametrize("mode", ["wal", "rollback"])
def test_locked_database(up, mirror_factory, make_image, push, mode):
    """Another process holds an exclusive lock on regcache.db.
    wal (how regcache keeps it): the running daemon goes on serving pulls, logs that it cannot
    write and keeps the changes; stats and verify read through the lock; once the lock goes the
    kept changes are written (stats counts the new tag), and after a restart the image is
    served with no upstream blob GET.
    rollback (someone switched the journal mode, so the lock keeps readers out too): serve and
    stats wait a few seconds, then exit 1 saying the file is locked by another process."""
    first = push(make_image(231, (128 * 1024,)), up, "library/lock1", "v1")
    second = push(make_image(232, (192 * 1024,)), up, "library/lock2", "v1")
    m = mirror_factory([up])
    pull_image(m, first, "library/lock1", "v1")
    wait_until(lambda: json.loads(regcache("stats", "-c", m.config_path, "--json").stdout)
               ["tags"] == 1, timeout=15, what="the first tag in the index")
    db_path = os.path.join(m.storage, "regcache.db")
    if mode == "rollback":
        assert m.stop() == 0
    holder = sqlite3.connect(db_path, isolation_level=None, timeout=10)
    try:
        if mode == "rollback":
            holder.execute("PRAGMA journal_mode=DELETE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("INSERT OR REPLACE INTO counters (name, value) VALUES ('lock-test', 1)")
        if mode == "rollback":
            for cmd in (["serve"], ["stats"]):
                r = regcache(*cmd, "-c", m.config_path, timeout=60)
                assert r.returncode == 1, (cmd, r.returncode, r.stderr)
                assert f"database {db_path} is locked by another process" in r.stderr, r.stderr
            return
        pull_image(m, second, "library/lock2", "v1")
        wait_until(lambda: "cannot write (database is locked); keeping the changes"
                   in m.log_text(), timeout=30, what="the daemon to log the lock")
        pull_image(m, first, "library/lock1", "v1")
        r = regcache("stats", "-c", m.config_path, "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["tags"] == 1, r.stdout + r.stderr
        r = regcache("verify", "-c", m.config_path)
        assert r.returncode == 0, r.stdout + r.stderr
        # the second image's files are not in the index yet: verify checks them and says that
        # it could not write them in
        assert "could not be written" in r.stderr, r.stderr
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    wait_until(lambda: "writing again" in m.log_text(), timeout=30,
               what="the daemon to write again")
    wait_until(lambda: json.loads(regcache("stats", "-c", m.config_path, "--json").stdout)
               ["tags"] == 2, timeout=15, what="the kept tag to be written")
    assert m.stop() == 0
    m.start()
    mark = up.mark()
    pull_image(m, second, "library/lock2", "v1")
    assert sum(blob_gets(since(up, mark)).values()) == 0
    assert_store_sound(m)


def test_fills_racing_for_the_last_space_leave_nothing_partial(up, small_disk_mirror_factory,
                                                              make_image, push):
    """4 MiB free and two 3 MiB blobs asked at once from an upstream trickling at 4 MiB/s: each
    fits alone, so both fills start, and at least one runs out of space while streaming. Every
    client gets either the whole right blob or a response cut short / a 5xx (never a wrong
    complete body); no partial file is left under blobs/ or in tmp/; once there is room both
    blobs pull and are stored."""
    slow = SlowProxy(up.port, rate=4 * MiB)
    try:
        race(up, small_disk_mirror_factory([{"name": "docker.io", "url": slow.url}]),
             make_image, push)
    finally:
        slow.close()


def race(up, m, make_image, push):
    imgs = [push(make_image(223 + i, (3 * MiB,)), up, f"library/race{i}", "v1") for i in (0, 1)]
    filler = os.path.join(m.storage, "filler")
    fill_disk(filler, leave=4 * MiB)
    results = [None, None]
    barrier = threading.Barrier(2)

    def client(i):
        layer = imgs[i].layer_digests[0]
        barrier.wait()
        results[i] = fetch(m, f"/v2/library/race{i}/blobs/{layer}")

    threads = [threading.Thread(target=client, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    complete = 0
    for img, (status, body, cut) in zip(imgs, results):
        good = img.blobs[img.layer_digests[0]]
        if status == 200 and not cut:
            assert body == good
            complete += 1
        elif status == 200:
            assert len(body) < len(good) and good.startswith(body)
        else:
            assert_error(status, body, range(500, 600))
    assert complete < 2, "two 3 MiB blobs cannot both fit in 4 MiB"
    print(results and [(s, len(b), c) for s, b, c in results])
    wait_until(lambda: not tmp_files(m), timeout=10, what="tmp/ to be empty")
    assert_store_sound(m)
    assert get(m, "/healthz")[0] == 200

    os.unlink(filler)
    for i, img in enumerate(imgs):
        layer = img.layer_digests[0]
        s, _, body = get(m, f"/v2/library/race{i}/blobs/{layer}", accept=False)
        assert s == 200 and body == img.blobs[layer]
        wait_until(lambda: mirror_has(m, layer), timeout=10, what="the blob to be stored")
    assert tmp_files(m) == []
    assert_store_sound(m)
