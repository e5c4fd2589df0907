# SPDX-License-Identifier: Apache-2.0
"""Blob bodies over TLS, byte for byte, at the sizes where the way they are sent changes: one
record joined to the response head or not (16 KiB), one read buffer or more (256 KiB); read on
the loop from the page cache, or on the thread pool when the file is not resident; ranges
across those edges; and hosted blobs served from kept descriptors only through a repository
that holds them."""

import hashlib
import http.client
import os
import ssl
import urllib.parse

from rawpush import Pusher
from test_tls import make_cert

KiB = 1024
# each size on both sides of the edges: 16 KiB (a TLS record; a head and a body joined in
# one), 256 KiB (one read buffer)
SIZES = (1, 4 * KiB, 16 * KiB - 1, 16 * KiB, 16 * KiB + 1, 256 * KiB - 1, 256 * KiB,
         256 * KiB + 1, 1024 * KiB + 7)


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_bytes(size, seed):
    # distinct bytes at every offset, so that a piece sent twice or skipped shows
    out = bytearray()
    block = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{block}".encode()).digest()
        block += 1
    return bytes(out[:size])


def tls_conn(m):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection("127.0.0.1", m.port, context=ctx, timeout=60)


def call(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def push_hosted(conn, repo, data):
    s, h, b = call(conn, "POST", f"/v2/{repo}/blobs/uploads/")
    assert s == 202, (s, b)
    loc = urllib.parse.urlsplit(h["location"])
    path = loc.path + ("?" + loc.query if loc.query else "")
    sep = "&" if "?" in path else "?"
    d = digest_of(data)
    s, _, b = call(conn, "PUT", f"{path}{sep}digest={d}", body=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert s == 201, (s, b)
    return d


def tls_mirror(mirror_factory, up, tmp_dir):
    _, crt, key = make_cert(os.path.join(tmp_dir, "certs"), "bodies")
    m = mirror_factory([up], start=False, extra={"tls": {"cert": crt, "key": key},
                                                 "hosted": ["team/*"]})
    m.start(wait=False)
    import procs
    procs.wait_for(lambda: procs.port_open(m.port), 20, "regcache over TLS", proc=m.proc)
    return m


def evict_from_page_cache(path):
    """Drops the file's pages (clean ones go at once), and checks that they went: a read that
    must not wait for the disk then fails."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
            return False
        except BlockingIOError:
            return True
    finally:
        os.close(fd)


def test_tls_bodies_byte_exact(mirror_factory, up, token_server, tmp_dir):
    """Hosted and proxied blobs of every edge size come back exact over TLS on one keep-alive
    connection, from the page cache and (dropped from it) from the disk, whole and in ranges;
    the access log counts each body's bytes, never the head's."""
    blobs = {size: blob_bytes(size, f"b{size}") for size in SIZES}
    pusher = Pusher(up.port, token_server, up.service)
    for data in blobs.values():
        pusher.blob("library/edges", data)
    m = tls_mirror(mirror_factory, up, tmp_dir)
    conn = tls_conn(m)
    digests = {size: push_hosted(conn, "team/edges", data) for size, data in blobs.items()}
    paths = {"hosted": "/v2/team/edges/blobs/", "proxied": "/v2/library/edges/blobs/"}
    expected_bytes = []
    # the first proxied GET is a fill streamed as it arrives; the rest are hits
    for rnd in range(3):
        for size, data in blobs.items():
            for kind, base in paths.items():
                s, h, body = call(conn, "GET", base + digests[size])
                assert s == 200, (kind, size, s, body[:200])
                assert int(h["content-length"]) == size
                assert body == data, (kind, size, rnd, len(body))
                expected_bytes.append(size)
        if rnd == 1:
            # not resident: the thread pool reads them
            evicted = [evict_from_page_cache(m.file_for(d)) for d in digests.values()]
            assert any(evicted), "cannot drop store files from the page cache here"
    # ranges across the edges, on the same connection
    big = 256 * KiB + 1
    data = blobs[big]
    for first, last in ((0, 0), (16 * KiB - 2, 16 * KiB), (16 * KiB, 16 * KiB),
                        (256 * KiB - 1, 256 * KiB), (256 * KiB, 256 * KiB), (1, 256 * KiB - 1),
                        (16 * KiB + 1, 256 * KiB)):
        for kind, base in paths.items():
            s, h, body = call(conn, "GET", base + digests[big],
                              headers={"Range": f"bytes={first}-{last}"})
            assert s == 206, (kind, first, last, s)
            assert h["content-range"] == f"bytes {first}-{last}/{big}"
            assert body == data[first:last + 1], (kind, first, last, len(body))
            expected_bytes.append(last - first + 1)
    s, h, body = call(conn, "GET", paths["hosted"] + digests[big], headers={"Range": "bytes=-1"})
    assert s == 206 and body == data[-1:]
    expected_bytes.append(1)
    # HEAD from a kept descriptor: the size, no body
    s, h, body = call(conn, "HEAD", paths["hosted"] + digests[16 * KiB + 1])
    assert s == 200 and int(h["content-length"]) == 16 * KiB + 1 and body == b""
    conn.close()
    sent = [e.size for e in m.entries() if e.method == "GET" and "/blobs/sha256:" in e.path]
    assert sent == expected_bytes


def test_hosted_hot_descriptor_needs_the_repository(mirror_factory, up, tmp_dir):
    """A hosted blob kept open after a hit through the repository holding it is not served
    through another repository, over plain HTTP or TLS; through its own, the kept descriptor
    serves it (the file removed from the store behind the daemon's back shows that it was
    kept)."""
    m = mirror_factory([up], extra={"hosted": ["team/*"]})
    data = blob_bytes(4 * KiB, "hot")
    d = Pusher(m.port).blob("team/holder", data)
    for _ in range(2):
        s, _, body, _ = m.request("GET", f"/v2/team/holder/blobs/{d}")
        assert s == 200 and body == data
    for method in ("GET", "HEAD"):
        s, _, body, _ = m.request(method, f"/v2/team/other/blobs/{d}")
        assert s == 404, (method, s)
        if method == "GET":
            assert b"BLOB_UNKNOWN" in body
    os.unlink(m.file_for(d))
    s, _, body, _ = m.request("GET", f"/v2/team/holder/blobs/{d}")
    assert s == 200 and body == data, "the hit did not come from a kept descriptor"
    s, h, _, _ = m.request("HEAD", f"/v2/team/holder/blobs/{d}")
    assert s == 200 and int(h["content-length"]) == len(data)
    assert m.request("GET", f"/v2/team/other/blobs/{d}")[0] == 404


def test_a_small_manifest_comes_in_its_heads_record(mirror_factory, up, make_image, push,
                                                    tmp_dir):
    """Over TLS a manifest of a few KiB is sent in the same record as its response head (one
    SSL_write and one send, not two), whichever loop answers: on 16 connections, each read of
    one record (SSL_read returns at most one) holds the whole response, by tag and by digest,
    the first time (answered by the first loop) and the next (by the connection's own)."""
    import socket
    img = push(make_image(1201, (4 * KiB,)), up, "library/tlsman", "v1")
    m = tls_mirror(mirror_factory, up, tmp_dir)
    conn = tls_conn(m)
    s, _, body = call(conn, "GET", "/v2/library/tlsman/manifests/v1",
                      headers={"Accept": img.media_type})
    assert s == 200 and body == img.raw
    conn.close()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    socks = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", m.port), timeout=30))
             for _ in range(16)]
    try:
        for _ in range(2):
            for ref in ("v1", img.digest):
                for s in socks:
                    s.sendall(f"GET /v2/library/tlsman/manifests/{ref} HTTP/1.1\r\nHost: m\r\n"
                              f"Accept: {img.media_type}\r\n\r\n".encode())
                    record = s.recv(1 << 20)
                    head, _, rest = record.partition(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200"), head[:100]
                    assert rest == img.raw, (ref, len(record), len(head), len(img.raw))
    finally:
        for s in socks:
            s.close()
