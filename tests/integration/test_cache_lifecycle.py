# SPDX-License-Identifier: Apache-2.0
"""The cache's lifecycle: access-time based expiry, the size cap, restarts and crashes, and the
operator commands (gc, verify, stats, ls) against a running daemon's storage."""

import hashlib
import json
import os
import signal
import socket
import time

import yaml

from helpers import blob_gets, get, raw_get_headers, read_rest, since, wait_until
from images import ACCEPT_ALL
from mirror import regcache

ACCEPT = ", ".join(ACCEPT_ALL)


def pull(mirror, img, repo, tag="v1"):
    """Pulls one single-arch image over HTTP like a client: manifest by tag, then every blob;
    checks every digest."""
    s, h, body = get(mirror, f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
    assert s == 200, body[:300]
    assert "sha256:" + hashlib.sha256(body).hexdigest() == img.digest
    for d in img.blob_digests:
        s, _, data = get(mirror, f"/v2/{repo}/blobs/{d}", accept=False)
        assert s == 200, (d, data[:200])
        assert "sha256:" + hashlib.sha256(data).hexdigest() == d


def operator_config(mirror, ttl):
    """A copy of the mirror's config with another cache.ttl, for the operator's commands."""
    with open(mirror.config_path) as f:
        doc = yaml.safe_load(f)
    doc["cache"]["ttl"] = ttl
    path = os.path.join(mirror.dir, "operator.yml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def stored(mirror):
    """digest -> size of every file in the mirror's blob store."""
    out = {}
    root = os.path.join(mirror.storage, "blobs", "sha256")
    for shard in os.listdir(root):
        for name in os.listdir(os.path.join(root, shard)):
            out["sha256:" + name] = os.path.getsize(os.path.join(root, shard, name))
    return out


def all_files_hash_to_their_names(mirror):
    root = os.path.join(mirror.storage, "blobs", "sha256")
    for shard in os.listdir(root):
        for name in os.listdir(os.path.join(root, shard)):
            with open(os.path.join(root, shard, name), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == name, name


def test_idle_image_expires_while_a_used_one_survives(mirror_factory, up, make_image, push):
    """ttl 6s, gc every 1s: an image untouched for longer than the TTL loses every blob from the
    store, an image pulled every second keeps all of its; the evicted image pulls again."""
    idle = push(make_image(80, (128 * 1024, 64 * 1024)), up, "library/idle", "v1")
    busy = push(make_image(81, (96 * 1024, 32 * 1024)), up, "library/busy", "v1")
    m = mirror_factory([up], extra={"cache": {"ttl": "6s", "gc_interval": "1s"}})
    pull(m, idle, "library/idle")
    pull(m, busy, "library/busy")
    for d in idle.blob_digests + busy.blob_digests + [idle.digest, busy.digest]:
        assert d in stored(m)
    deadline = time.monotonic() + 30
    while any(d in stored(m) for d in idle.blob_digests + [idle.digest]):
        assert time.monotonic() < deadline, "the idle image was not evicted"
        pull(m, busy, "library/busy")
        time.sleep(1)
    for _ in range(3):  # a few more GC rounds: the busy image must stay whole
        pull(m, busy, "library/busy")
        time.sleep(1)
    have = stored(m)
    for d in busy.blob_digests + [busy.digest]:
        assert d in have, f"busy image lost {d}"
    assert "evicted" in m.log_text()
    mark = up.mark()
    pull(m, idle, "library/idle")
    gets = blob_gets(since(up, mark))
    assert all(gets[d] == 1 for d in idle.blob_digests)


def test_size_cap_keeps_the_most_recent_image(mirror_factory, up, make_image, push):
    """max_size 40MiB: after pulling ~100 MiB, ~3 MiB and ~13 MiB images in that order, the store
    holds at most 40 MiB and the last image entirely."""
    big = push(make_image(82, (50 * 1024 * 1024, 50 * 1024 * 1024)), up, "library/big", "v1")
    small = push(make_image(83, (3 * 1024 * 1024,)), up, "library/small", "v1")
    mid = push(make_image(84, (8 * 1024 * 1024, 5 * 1024 * 1024)), up, "library/mid", "v1")
    m = mirror_factory([up], extra={"cache": {"max_size": "40MiB", "gc_interval": "1h"}})
    for img, repo in ((big, "library/big"), (small, "library/small"), (mid, "library/mid")):
        pull(m, img, repo)
    limit = 40 * 1024 * 1024
    wait_until(lambda: sum(stored(m).values()) <= limit, timeout=20,
               what="the store to fall under the cap")
    have = stored(m)
    for d in mid.blob_digests + [mid.digest]:
        assert d in have, f"the last image lost {d}"
    all_files_hash_to_their_names(m)


def test_restart_keeps_the_cache(mirror, up, make_image, push):
    """After SIGTERM and a restart the same image is served with no upstream request for it."""
    img = push(make_image(85, (256 * 1024,)), up, "library/keep", "v1")
    pull(mirror, img, "library/keep")
    assert mirror.stop() == 0
    mirror.start()
    mark = up.mark()
    s, _, body = get(mirror, f"/v2/library/keep/manifests/{img.digest}")
    assert s == 200
    for d in img.blob_digests:
        assert get(mirror, f"/v2/library/keep/blobs/{d}", accept=False)[0] == 200
    reqs = since(up, mark)
    assert sum(blob_gets(reqs).values()) == 0, reqs
    assert not [r for r in reqs if "/manifests/" in r[1] and r[0] == "GET"], reqs


def test_sigkill_mid_download_leaves_no_bad_blob(mirror, up, make_image, push):
    """SIGKILL while a large blob is being filled: after a restart every file under blobs/ hashes
    to its name, tmp/ holds nothing but that blob's kept partial file (resumed by the next
    fill, see test_resume.py), and the re-pull verifies and leaves tmp/ empty."""
    img = push(make_image(86, (64 * 1024 * 1024,)), up, "library/killed", "v1")
    layer = img.layer_digests[0]
    s = socket.create_connection(("127.0.0.1", mirror.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    s.sendall(f"GET /v2/library/killed/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    tmp = os.path.join(mirror.storage, "tmp")
    wait_until(lambda: any(os.path.getsize(os.path.join(tmp, f)) > 0 for f in os.listdir(tmp)),
               timeout=20, what="a partial fill on disk")
    mirror.proc.send_signal(signal.SIGKILL)
    mirror.proc.wait(10)
    mirror.proc = None
    s.close()
    all_files_hash_to_their_names(mirror)
    assert layer not in stored(mirror)
    mirror.start()
    assert [n for n in os.listdir(tmp) if not n.startswith(f"partial-{layer[7:]}-")] == []
    pull(mirror, img, "library/killed")
    all_files_hash_to_their_names(mirror)
    assert os.listdir(tmp) == []


def test_admin_commands_against_a_running_daemon(mirror_factory, up, make_image, push):
    """gc --dry-run lists without removing; gc evicts; verify removes a corrupted file and says
    so; stats and ls describe the cache; all while the daemon serves the same storage."""
    img = push(make_image(87, (64 * 1024,)), up, "library/admin", "v1")
    # the daemon never expires anything itself; the operator's commands use a 2 s TTL
    m = mirror_factory([up], extra={"cache": {"ttl": "0", "gc_interval": "1h"}})
    pull(m, img, "library/admin")
    cfg = operator_config(m, "2s")

    r = regcache("stats", "-c", cfg, "--json")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: json.loads(regcache("stats", "-c", cfg, "--json").stdout)["misses"] >= 1,
               timeout=10, what="counters to be flushed")
    st = json.loads(regcache("stats", "-c", cfg, "--json").stdout)
    assert st["blobs"] >= len(img.blob_digests) + 1
    assert st["tags"] == 1 and st["repositories"] >= 1
    assert st["free_bytes"] > 0
    text = regcache("stats", "-c", cfg).stdout
    assert "hit ratio" in text and "blobs:" in text

    r = regcache("ls", "-c", cfg)
    assert r.returncode == 0
    assert "docker.io/library/admin" in r.stdout and img.digest in r.stdout

    # corrupt one stored blob: verify finds and removes it
    victim = img.blob_digests[0]
    path = m.file_for(victim)
    with open(path, "r+b") as f:
        f.write(b"\0garbage")
    r = regcache("verify", "-c", cfg)
    assert r.returncode != 0 and "1 corrupt removed" in r.stdout, r.stdout + r.stderr
    assert not os.path.exists(path)
    # the daemon refetches it on the next pull
    assert get(m, f"/v2/library/admin/blobs/{victim}", accept=False)[0] == 200

    time.sleep(3)  # everything is now older than the 2 s TTL
    r = regcache("gc", "-c", cfg, "--dry-run")
    assert r.returncode == 0 and "would evict" in r.stdout, r.stdout + r.stderr
    assert img.digest in stored(m)
    r = regcache("gc", "-c", cfg)
    assert r.returncode == 0 and "evicted" in r.stdout, r.stdout + r.stderr
    assert not any(d in stored(m) for d in img.blob_digests + [img.digest])
    st = json.loads(regcache("stats", "-c", cfg, "--json").stdout)
    assert st["blobs"] == 0 and st["tags"] == 0
    assert any(run["reason"] == "manual" and run["evicted"] > 0 for run in st["gc_runs"])
    # the daemon still serves the image: it notices the files are gone and pulls again
    pull(m, img, "library/admin")


def test_gc_never_truncates_a_response_in_progress(mirror_factory, up, make_image, push):
    """A client slowly reading a cached blob while a GC evicts that blob still receives every
    byte, hashing right."""
    img = push(make_image(88, (24 * 1024 * 1024,)), up, "library/reading", "v1")
    layer = img.layer_digests[0]
    size = len(img.blobs[layer])
    m = mirror_factory([up], extra={"cache": {"ttl": "0", "gc_interval": "1h"}})
    pull(m, img, "library/reading")
    cfg = operator_config(m, "1s")
    time.sleep(3)  # older than the operator's TTL (access times are flushed every 2 s)

    s = socket.create_connection(("127.0.0.1", m.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    header, body = raw_get_headers(s, f"/v2/library/reading/blobs/{layer}")
    assert header.startswith(b"HTTP/1.1 200")
    h = hashlib.sha256(body)
    got = len(body)
    # the serve just touched it: wait until the touch is flushed, then age it out again
    time.sleep(3)
    r = regcache("gc", "-c", cfg)
    assert r.returncode == 0, r.stderr
    assert layer not in stored(m), "the GC should have evicted the blob being read"
    read_rest(s, h, got, size)
    s.close()
    assert "sha256:" + h.hexdigest() == layer
