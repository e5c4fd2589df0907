# SPDX-License-Identifier: Apache-2.0
"""Resumable fills: a blob transfer the upstream cuts goes on with `Range: bytes=N-` from where
it was, and clients attached to the fill never see the cut. An upstream that answers the Range
with everything (200) or with other bytes than were asked for makes the fill start again from
byte 0; nothing wrong is ever appended or served. Retries are bounded. The cuts and the wrong
answers come from faultproxy.FaultProxy in front of the token-auth docker-registry."""

import hashlib
import http.client
import os
import signal
import socket
import subprocess
import threading

import pytest

import clients
from faultproxy import FaultProxy
from slowproxy import SlowProxy
from helpers import assert_error, blob_gets, get, mirror_has, since, wait_until
from test_metrics import metrics_mirror, scrape

MiB = 1024 * 1024


@pytest.fixture
def proxy(up):
    """A FaultProxy in front of `up`; the mirror's docker.io is the proxy."""
    p = FaultProxy(up.port)
    yield p
    p.stop()


def blob_requests(proxy, layer):
    """The Range header (or None) of every GET of the blob the proxy relayed, in order (the
    token challenges, 401s, left out)."""
    return [rng for method, path, rng, outcome in proxy.ranges
            if method == "GET" and path.endswith(f"/blobs/{layer}") and outcome != 401]


def blob_outcomes(proxy, layer):
    """What became of each of those: the status relayed, or "cut"."""
    return [outcome for method, path, _, outcome in proxy.ranges
            if method == "GET" and path.endswith(f"/blobs/{layer}") and outcome != 401]


def upstream_body_bytes(proxy, layer):
    return sum(n for path, n in proxy.body_bytes if path.endswith(f"/blobs/{layer}"))


def tmp_files(mirror):
    return os.listdir(os.path.join(mirror.storage, "tmp"))


def stored_digest(mirror, digest):
    h = hashlib.sha256()
    with open(mirror.file_for(digest), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def fetch(mirror, path, timeout=120):
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


def curl(mirror, path, out):
    """curl through the mirror into out, failing on an HTTP error or a body cut short."""
    return subprocess.run(["curl", "-sS", "--fail", "--max-time", "180", "-o", out,
                           f"http://127.0.0.1:{mirror.port}{path}"],
                          capture_output=True, text=True, timeout=200)


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest(), os.path.getsize(path)


@pytest.mark.once
def test_a_blob_cut_twice_is_resumed_and_attached_clients_get_every_byte(
        up, proxy, mirror_factory, make_image, push, tmp_dir):
    """The upstream cuts a 64 MiB blob at 30 % and at 70 %: the fill resumes twice with Range
    requests starting exactly there; a curl client that started the fill and a second one that
    attached after the first cut both get every byte (digest checked) with no error; the
    upstream sent at most 1.05x the blob; the metrics and the log show two resumes."""
    img = push(make_image(1300, (64 * MiB,)), up, "library/resume", "v1")
    layer = img.layer_digests[0]
    size = len(img.blobs[layer])
    cuts = [size * 30 // 100, size * 70 // 100]
    proxy.cut_at[layer] = list(cuts)
    m, mport = metrics_mirror(mirror_factory, [{"name": "docker.io", "url": proxy.url}])
    path = f"/v2/library/resume/blobs/{layer}"
    results = {}

    def client(name):
        out = os.path.join(tmp_dir, name)
        results[name] = (curl(m, path, out), out)

    mark = up.mark()
    first = threading.Thread(target=client, args=("first",))
    first.start()
    wait_until(lambda: any(o == "cut" for _, p, o in proxy.requests() if p == path),
               timeout=120, what="the first cut")
    second = threading.Thread(target=client, args=("second",))
    second.start()
    first.join(200)
    second.join(200)
    for name in ("first", "second"):
        run, out = results[name]
        assert run.returncode == 0, (name, run.stderr)
        assert file_digest(out) == (layer, size), name

    assert blob_requests(proxy, layer) == [None, f"bytes={cuts[0]}-", f"bytes={cuts[1]}-"]
    assert blob_outcomes(proxy, layer) == ["cut", "cut", 206]
    # the resumes carry If-Range with the ETag of the first answer (docker-registry gives one)
    if_ranges = [dict((k.lower(), v) for k, v in h).get("if-range")
                 for meth, p, h in proxy.heads
                 if p == path and any(k.lower() == "range" for k, _ in h)]
    assert len(if_ranges) == 2 and if_ranges[0] and if_ranges[0] == if_ranges[1]
    assert blob_gets(since(up, mark))[layer] == 3
    assert upstream_body_bytes(proxy, layer) <= size * 1.05
    wait_until(lambda: mirror_has(m, layer), timeout=30, what="the blob to be stored")
    assert stored_digest(m, layer) == layer
    assert tmp_files(m) == []
    s = scrape(mport)
    assert s.get("regcache_fill_resumes_total", outcome="resumed") == 2
    assert s.get("regcache_fill_resumes_total", outcome="restarted") == 0
    assert s.get("regcache_fill_resumes_total", outcome="gave_up") == 0
    log = m.log_text()
    assert log.count(f"fill {layer}: resumed at") == 2
    for c in cuts:
        assert f"fill {layer}: resumed at {c} of {size} bytes" in log


@pytest.mark.parametrize("misanswer", ["full", "shift", "etag"])
def test_a_range_answered_otherwise_starts_the_fill_again(up, proxy, mirror_factory, make_image,
                                                          push, misanswer):
    """After a cut at 4 MiB of 8 MiB, the upstream answers the Range with the whole blob (200),
    with a 206 of bytes starting 1024 earlier than asked, or with the 206 asked for but another
    ETag than the first answer's: the fill starts again from byte 0,
    the blob ends correct in the store, the client got correct bytes or a response cut short
    (never a complete wrong body), and the next pull is served from the store."""
    img = push(make_image(1301, (8 * MiB,)), up, "library/misrange", "v1")
    layer = img.layer_digests[0]
    good = img.blobs[layer]
    cut = 4 * MiB
    proxy.cut_at[layer] = [cut]
    proxy.on_range[layer] = misanswer
    m, mport = metrics_mirror(mirror_factory, [{"name": "docker.io", "url": proxy.url}])
    path = f"/v2/library/misrange/blobs/{layer}"
    mark = up.mark()
    status, body, was_cut = fetch(m, path)
    if status == 200 and not was_cut:
        assert body == good
    elif status == 200:
        assert len(body) < len(good) and good.startswith(body)
    else:
        assert_error(status, body, range(500, 600))
    wait_until(lambda: mirror_has(m, layer), timeout=30, what="the blob to be stored")
    assert stored_digest(m, layer) == layer
    assert tmp_files(m) == []
    outcomes = blob_outcomes(proxy, layer)
    if misanswer == "full":
        assert blob_requests(proxy, layer) == [None, f"bytes={cut}-"]
        assert outcomes == ["cut", 200]
    else:
        # the 206 is refused on its headers; the fill asks for everything again
        assert blob_requests(proxy, layer) == [None, f"bytes={cut}-", None]
        assert outcomes == ["cut", "aborted", 200]
        why = "and another ETag" if misanswer == "etag" else \
            f"Content-Range bytes {cut - 1024}-{len(good) - 1}/{len(good)}"
        assert f"fill {layer}: upstream answered bytes={cut}- with " in m.log_text()
        assert why in m.log_text()
    assert blob_gets(since(up, mark))[layer] == len(outcomes)
    s = scrape(mport)
    assert s.get("regcache_fill_resumes_total", outcome="restarted") == 1
    assert s.get("regcache_fill_resumes_total", outcome="resumed") == 0
    mark = up.mark()
    s_, _, again = get(m, path, accept=False)
    assert s_ == 200 and again == good
    assert blob_gets(since(up, mark))[layer] == 0


def test_retries_exhausted_fail_cleanly(up, proxy, mirror_factory, make_image, push):
    """Every answer is cut again, each a little further on: after the first request and five
    retries the fill gives up; the client gets a response cut short (a prefix of the blob) or
    a 5xx spec error, nothing is stored, tmp/ is empty, the metric counts one gave_up; the next
    request with the upstream healthy fetches the blob afresh and stores it."""
    img = push(make_image(1302, (8 * MiB,)), up, "library/giveup", "v1")
    layer = img.layer_digests[0]
    good = img.blobs[layer]
    proxy.cut_at[layer] = [n * MiB for n in range(1, 8)]
    m, mport = metrics_mirror(mirror_factory, [{"name": "docker.io", "url": proxy.url}])
    path = f"/v2/library/giveup/blobs/{layer}"
    status, body, was_cut = fetch(m, path)
    if status == 200:
        assert was_cut and len(body) < len(good) and good.startswith(body)
    else:
        assert_error(status, body, range(500, 600))
    wait_until(lambda: scrape(mport).get("regcache_fill_resumes_total", outcome="gave_up") == 1,
               timeout=30, what="the fill to give up")
    assert blob_requests(proxy, layer) == [None] + [f"bytes={n * MiB}-" for n in range(1, 6)]
    assert scrape(mport).get("regcache_fill_resumes_total", outcome="resumed") == 5
    assert "retries exhausted" in m.log_text()
    wait_until(lambda: not tmp_files(m), timeout=10, what="tmp/ to be empty")
    assert not mirror_has(m, layer)

    proxy.cut_at.clear()
    s_, _, again = get(m, path, accept=False)
    assert s_ == 200 and again == good
    assert blob_requests(proxy, layer)[-1] is None
    wait_until(lambda: mirror_has(m, layer), timeout=30, what="the blob to be stored")
    assert stored_digest(m, layer) == layer


def test_a_partial_file_kept_over_a_restart_is_resumed(up, mirror_factory, make_image, push):
    """SIGKILL while a 16 MiB blob trickles in: the partial file stays in tmp/ over the restart,
    the next pull re-hashes it and asks the upstream only for the rest (a Range request from
    exactly the partial's size), the client gets the right bytes, the blob is stored and tmp/
    ends empty. A partial of an upstream no longer configured is removed at start-up."""
    img = push(make_image(1303, (16 * MiB,)), up, "library/kept", "v1")
    layer = img.layer_digests[0]
    good = img.blobs[layer]
    slow = SlowProxy(up.port, rate=2 * MiB)
    proxy = FaultProxy(slow.port)
    try:
        m = mirror_factory([{"name": "docker.io", "url": proxy.url}])
        tmp = os.path.join(m.storage, "tmp")
        name = f"partial-{layer[7:]}-docker.io"
        stray = os.path.join(tmp, f"partial-{'ab' * 32}-gone.example")
        s = socket.create_connection(("127.0.0.1", m.port), timeout=30)
        s.sendall(f"GET /v2/library/kept/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        part = os.path.join(tmp, name)
        wait_until(lambda: os.path.exists(part) and os.path.getsize(part) >= 2 * MiB,
                   timeout=30, what="a partial fill on disk")
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(10)
        m.proc = None
        s.close()
        kept = os.path.getsize(part)
        assert 0 < kept < len(good)
        with open(part, "rb") as f:
            assert f.read() == good[:kept]
        with open(stray, "wb") as f:
            f.write(b"x" * 1000)

        slow.rate = 1 << 30  # new connections are fast
        m.start()
        assert sorted(os.listdir(tmp)) == [name]  # the stray one is gone, this one kept
        n_before = len(proxy.ranges)
        status, body, was_cut = fetch(m, f"/v2/library/kept/blobs/{layer}")
        assert (status, was_cut) == (200, False) and body == good
        gets = [(r, o) for meth, p, r, o in proxy.ranges[n_before:]
                if meth == "GET" and p.endswith(layer) and o != 401]
        assert gets == [(f"bytes={kept}-", 206)]
        wait_until(lambda: mirror_has(m, layer), timeout=30, what="the blob to be stored")
        assert stored_digest(m, layer) == layer
        assert os.listdir(tmp) == []
        assert f"fill {layer}: {kept} bytes kept from before a restart" in m.log_text()
    finally:
        proxy.stop()
        slow.close()


@pytest.mark.parametrize("kept", ["whole", "wrong"])
def test_a_kept_partial_that_does_not_fit_never_makes_a_wrong_blob(up, proxy, mirror_factory,
                                                                  make_image, push, kept):
    """A partial file left in tmp/ that holds the whole blob (the upstream answers its Range
    with 416) starts the fill again from byte 0 and the pull succeeds; one that holds wrong
    bytes is resumed, fails the digest check at the end and is discarded, not resumed: that
    pull ends short or with a 5xx, nothing is stored, tmp/ is left empty, and the next pull
    fetches the whole blob afresh."""
    img = push(make_image(1304 if kept == "whole" else 1305, (2 * MiB,)), up,
               "library/keptbad", "v1")
    layer = img.layer_digests[0]
    good = img.blobs[layer]
    m = mirror_factory([{"name": "docker.io", "url": proxy.url}])
    m.stop()
    m.proc = None
    part = os.path.join(m.storage, "tmp", f"partial-{layer[7:]}-docker.io")
    with open(part, "wb") as f:
        f.write(good if kept == "whole" else bytes(b ^ 0x5A for b in good[:MiB]))
    m.start()
    path = f"/v2/library/keptbad/blobs/{layer}"
    status, body, was_cut = fetch(m, path)
    if kept == "whole":
        assert (status, was_cut) == (200, False) and body == good
        assert blob_requests(proxy, layer) == [f"bytes={len(good)}-", None]
        assert blob_outcomes(proxy, layer)[1] == 200
        assert f"fill {layer}: upstream answered bytes={len(good)}- with 416" in m.log_text()
    else:
        if status == 200:
            assert was_cut and len(body) < len(good)
        else:
            assert_error(status, body, range(500, 600))
        assert blob_requests(proxy, layer) == [f"bytes={MiB}-"]
        wait_until(lambda: not tmp_files(m), timeout=10, what="tmp/ to be empty")
        assert not mirror_has(m, layer)
        assert "do not match the digest" in m.log_text()
        s_, _, again = get(m, path, accept=False)
        assert s_ == 200 and again == good
        assert blob_requests(proxy, layer) == [f"bytes={MiB}-", None]
    wait_until(lambda: mirror_has(m, layer), timeout=30, what="the blob to be stored")
    assert stored_digest(m, layer) == layer
    assert tmp_files(m) == []


@pytest.mark.once
def test_skopeo_pulls_through_two_cuts_without_an_error(up, proxy, mirror_factory, make_image,
                                                        push, tmp_dir):
    """skopeo copies an image whose 32 MiB layer the upstream cuts at 30 % and 70 %: it
    succeeds on its first try, the layer in its OCI layout hashes to its digest, and the
    upstream was asked for the rest twice (Range from exactly the cuts)."""
    img = push(make_image(1306, (32 * MiB,)), up, "library/skopeocut", "v1")
    layer = img.layer_digests[0]
    size = len(img.blobs[layer])
    cuts = [size * 30 // 100, size * 70 // 100]
    proxy.cut_at[layer] = list(cuts)
    m = mirror_factory([{"name": "docker.io", "url": proxy.url}])
    dest = os.path.join(tmp_dir, "oci")
    clients.skopeo_copy_from_mirror(m.port, "library/skopeocut:v1", dest, ["--retry-times", "0"])
    assert file_digest(os.path.join(dest, "blobs", "sha256", layer[7:])) == (layer, size)
    assert blob_requests(proxy, layer) == [None, f"bytes={cuts[0]}-", f"bytes={cuts[1]}-"]
    assert blob_outcomes(proxy, layer) == ["cut", "cut", 206]
