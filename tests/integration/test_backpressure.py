# SPDX-License-Identifier: Apache-2.0
"""Bounded memory: a slow client reading a cold blob neither slows the fill nor makes the mirror
hold the blob in memory; the bytes reach the client as they arrive."""

import hashlib
import socket
import time

from helpers import blob_gets, mirror_has, raw_get_headers, read_rest, since, wait_until

BLOB = 96 * 1024 * 1024


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_client_on_cold_blob_keeps_memory_bounded(mirror, up, make_image, push):
    """A client reading a 96 MiB cold blob at a trickle: the fill still completes (the store gets
    the blob while the client has read only a small part), the mirror's resident memory stays far
    below the blob size throughout, and the client finally gets every byte, hashing right."""
    img = push(make_image(60, (BLOB,)), up, "library/huge", "v1")
    layer = img.layer_digests[0]
    size = len(img.blobs[layer])
    pid = mirror.proc.pid
    rss_before = rss_kib(pid)

    mark = up.mark()
    s = socket.create_connection(("127.0.0.1", mirror.port), timeout=60)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    header, body_start = raw_get_headers(s, f"/v2/library/huge/blobs/{layer}")
    assert header.startswith(b"HTTP/1.1 200")
    assert f"content-length: {size}".encode() in header.lower()

    digest = hashlib.sha256(body_start)
    got = len(body_start)
    peak = rss_before
    # Trickle: read a little at a time until the mirror has stored the whole blob.
    deadline = time.monotonic() + 120
    while not mirror_has(mirror, layer):
        assert time.monotonic() < deadline, "the fill did not complete while the client was slow"
        chunk = s.recv(16 * 1024)
        assert chunk
        digest.update(chunk)
        got += len(chunk)
        peak = max(peak, rss_kib(pid))
        time.sleep(0.05)
    assert got < size // 4, f"the client had already read {got} of {size} bytes"
    peak = max(peak, rss_kib(pid))
    assert peak - rss_before < 32 * 1024, f"RSS grew by {peak - rss_before} KiB"

    # Now read the rest at full speed.
    got = read_rest(s, digest, got, size)
    s.close()
    assert got == size
    assert "sha256:" + digest.hexdigest() == layer
    assert blob_gets(since(up, mark))[layer] == 1


def test_client_hangup_cancels_neither_the_fill_nor_other_clients(mirror, up, make_image, push):
    """One client hangs up mid-blob while another keeps reading: the second gets the whole blob,
    the blob is stored, and the upstream served it once."""
    img = push(make_image(61, (16 * 1024 * 1024,)), up, "library/hang", "v1")
    layer = img.layer_digests[0]
    size = len(img.blobs[layer])
    mark = up.mark()
    req = f"GET /v2/library/hang/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    quitter = socket.create_connection(("127.0.0.1", mirror.port), timeout=60)
    stayer = socket.create_connection(("127.0.0.1", mirror.port), timeout=60)
    quitter.sendall(req)
    header, body = raw_get_headers(stayer, f"/v2/library/hang/blobs/{layer}")
    assert quitter.recv(1024)  # the response has started
    quitter.close()
    assert header.startswith(b"HTTP/1.1 200")
    h = hashlib.sha256(body)
    read_rest(stayer, h, len(body), size)
    stayer.close()
    assert "sha256:" + h.hexdigest() == layer
    wait_until(lambda: mirror_has(mirror, layer), timeout=20, what="the blob to be stored")
    assert blob_gets(since(up, mark))[layer] == 1
