# SPDX-License-Identifier: Apache-2.0
"""Exactly-once fills: concurrent cold requests share one upstream download, and a blob whose
upstream bytes do not match its digest is never stored."""

import hashlib
import http.client
import os
import threading

import pytest

from helpers import blob_gets, get, mirror_has, since, upstream_log, wait_until
from mirror import request


def test_concurrent_cold_blob_is_fetched_once(mirror, up, make_image, push):
    """12 clients ask for the same cold ~20 MiB blob at once: all get the full, correct bytes,
    and the upstream serves that blob exactly once."""
    img = push(make_image(30, (20 * 1024 * 1024,)), up, "library/big", "v1")
    layer = img.layer_digests[0]
    want = img.blobs[layer]
    barrier = threading.Barrier(12)
    results = [None] * 12

    def fetch(i):
        barrier.wait()
        try:
            s, h, body, _ = request(mirror.port, "GET", f"/v2/library/big/blobs/{layer}",
                                    timeout=120)
            results[i] = (s, len(body), "sha256:" + hashlib.sha256(body).hexdigest())
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = ("error", repr(e), None)

    mark = up.mark()
    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert results == [(200, len(want), layer)] * 12
    assert blob_gets(since(up, mark))[layer] == 1
    wait_until(lambda: mirror_has(mirror, layer), timeout=10, what="the blob to be stored")
    with open(mirror.file_for(layer), "rb") as f:
        assert f.read() == want


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_upstream_blob_is_not_served_whole_nor_stored(mirror, up, make_image, push, damage):
    """If the upstream's bytes do not hash to the digest (flipped bytes, or a file cut short),
    the client does not get a complete body with that digest, nothing is stored under it, tmp/
    is left empty, and once the upstream file is repaired a new request succeeds."""
    img = push(make_image(31, (512 * 1024,)), up, "library/bad", "v1")
    layer = img.layer_digests[0]
    good = img.blobs[layer]
    path = up.blob_path(layer)
    with open(path, "r+b") as f:
        if damage == "flip":  # same size, different bytes
            f.seek(len(good) // 2)
            f.write(bytes(b ^ 0xFF for b in good[len(good) // 2:len(good) // 2 + 4096]))
        else:
            f.truncate(len(good) - 1000)
    try:
        s, h, body, _ = request(mirror.port, "GET", f"/v2/library/bad/blobs/{layer}")
        complete_and_valid = s == 200 and body == good
        assert not complete_and_valid
        assert s != 200 or len(body) < len(good) or \
            "sha256:" + hashlib.sha256(body).hexdigest() != layer
    except (OSError, http.client.HTTPException):
        pass  # the mirror cut the response: that is a correct outcome too
    upstream_log(up)  # let the mirror finish with the upstream response
    assert not mirror_has(mirror, layer)
    assert not [n for n in _store_files(mirror) if layer[7:] in n]
    wait_until(lambda: not os.listdir(os.path.join(mirror.storage, "tmp")), timeout=10,
               what="tmp/ to be empty")
    with open(path, "wb") as f:
        f.write(good)
    wait_until(lambda: get(mirror, f"/v2/library/bad/blobs/{layer}")[2] == good, timeout=15,
               what="the repaired blob to be served")
    wait_until(lambda: mirror_has(mirror, layer), timeout=10, what="the blob to be stored")


def _store_files(mirror):
    out = []
    for dirpath, _, files in os.walk(mirror.storage):
        out += [os.path.join(dirpath, f) for f in files
                if os.path.getsize(os.path.join(dirpath, f)) > 0]
    return out


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_stop_with_blob_requests_waiting_on_a_hung_upstream_is_clean(mirror_factory, up,
                                                                    make_image, push, method):
    """Clients wait for a cold blob (a fill, or a HEAD asked upstream) whose upstream hangs
    before answering; SIGTERM ends the daemon with status 0 once the drain's grace has passed,
    and (under the sanitizers) without leaking the waiting clients' state."""
    from switchproxy import SwitchProxy

    img = push(make_image(341, (20 * 1024,)), up, "library/hung", "v1")
    proxy = SwitchProxy(up.port)
    try:
        m = mirror_factory([{"name": "docker.io", "url": proxy.url}],
                           extra={"timeouts": {"shutdown_grace": "1s", "first_byte": "30s"}})
        s, _, _ = get(m, "/v2/library/hung/manifests/v1")
        assert s == 200
        proxy.set_mode("hang")
        layer = img.blob_digests[-1]

        def ask():
            try:
                request(m.port, method, f"/v2/library/hung/blobs/{layer}", {})
            except OSError:
                pass  # the drain closes it unanswered
        threads = [threading.Thread(target=ask, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: any(f"/blobs/{layer}" in p for _, p, _ in proxy.requests()),
                   timeout=10, what="the blob request to reach the upstream")
        assert m.stop(timeout=20) == 0
        for t in threads:
            t.join(timeout=10)
    finally:
        proxy.stop()
