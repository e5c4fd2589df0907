# SPDX-License-Identifier: Apache-2.0
"""Hostile input: path traversal, bad names/digests/tags, oversized requests and garbage. Each
gets a 4xx (with a spec error body where an HTTP response is possible), nothing is created
outside the storage directory, nothing reaches the upstream, and the mirror keeps serving."""

import os
import re
import resource
import select
import selectors
import socket
import time

import pytest

from helpers import (ACCEPT_HEADER, _complete, assert_error, error_codes, get, parse_raw,
                     raw_exchange, raw_exchange_ex, since, tree, wait_until)


def forwarded(up, mark):
    """Upstream requests since mark other than version checks: none are expected here."""
    return [r for r in since(up, mark) if r[1] != "/v2/"]


@pytest.fixture
def guarded(mirror, up, tmp_dir, make_image, push):
    """The mirror plus a canary directory next to its storage; yields, then checks that nothing
    appeared outside storage, the canary is intact, and /v2/ still answers 200."""
    img = push(make_image(60), up, "library/ok", "v1")
    canary = os.path.join(tmp_dir, "canary")
    os.makedirs(canary)
    with open(os.path.join(canary, "keep"), "w") as f:
        f.write("canary")
    skip = [os.path.relpath(mirror.storage, tmp_dir), os.path.relpath(mirror.log_path, tmp_dir),
            os.path.relpath(up.directory, tmp_dir)]
    before = tree(tmp_dir, skip)
    mark = up.mark()
    yield mirror, up, img, mark
    assert tree(tmp_dir, skip) == before
    with open(os.path.join(canary, "keep")) as f:
        assert f.read() == "canary"
    assert get(mirror, "/v2/")[0] == 200
    assert get(mirror, "/v2/library/ok/manifests/v1")[2] == img.raw


@pytest.fixture
def hostile_mirror(mirror_factory, up, tmp_dir):
    """make(extra) -> a started mirror with `up` as docker.io; at the end nothing appeared
    outside its storage, and it still runs and answers /v2/ with 200."""
    made = []

    def make(extra=None):
        m = mirror_factory([up], extra=extra)
        skip = [os.path.relpath(m.storage, tmp_dir), os.path.relpath(m.log_path, tmp_dir),
                os.path.relpath(up.directory, tmp_dir)]
        made.append((m, skip, tree(tmp_dir, skip)))
        return m

    yield make
    for m, skip, before in made:
        assert tree(tmp_dir, skip) == before
        alive(m)


def raw_get(port, target, extra=b""):
    return parse_raw(raw_exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                                  + extra + b"\r\n"))


TRAVERSALS = [
    b"/v2/../../../etc/passwd",
    b"/v2/library/../../canary/manifests/latest",
    b"/v2/library/ok/../../../canary/blobs/sha256:" + b"0" * 64,
    b"/v2/..%2f..%2fcanary/manifests/latest",
    b"/v2/library/%2e%2e/%2e%2e/canary/manifests/latest",
    b"/v2/%2e%2e/%2e%2e/canary/keep/manifests/x",
    b"/v2/library/ok/manifests/..",
    b"/v2/library/ok/blobs/../../../../canary",
    b"/v2/library/ok/manifests/v1%00",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=range(len(TRAVERSALS)))
def test_path_traversal_is_rejected(guarded, target):
    """Dot-dot segments (raw or percent-encoded) and NULs in the path are 4xx, never a file."""
    mirror, up, _, mark = guarded
    status, _, body = raw_get(mirror.port, target)
    assert status is not None and 400 <= status < 500, (target, status, body[:200])
    error_codes(body)
    assert b"canary" not in body and b"root:" not in body
    assert forwarded(up, mark) == []


BAD_DIGESTS = ["sha256:XYZ", "sha256:" + "a" * 63, "sha256:" + "A" * 64, "sha256:" + "g" * 64,
               "sha256:" + "a" * 65, "md5:" + "a" * 32, "sha256:", "sha256" + "a" * 64]


@pytest.mark.parametrize("digest", BAD_DIGESTS, ids=range(len(BAD_DIGESTS)))
def test_bad_blob_digests(guarded, digest):
    """Malformed blob digests are 400 DIGEST_INVALID (or a 404 with a spec body) and never
    forwarded upstream."""
    mirror, up, _, mark = guarded
    s, _, body = get(mirror, f"/v2/library/ok/blobs/{digest}")
    assert_error(s, body, range(400, 500), "DIGEST_INVALID", "BLOB_UNKNOWN", "NAME_INVALID")
    if ":" in digest and digest.split(":")[0] == "sha256":
        assert "DIGEST_INVALID" in error_codes(body)
    assert forwarded(up, mark) == []


@pytest.mark.parametrize("digest", BAD_DIGESTS[:4], ids=range(4))
def test_bad_manifest_digests(guarded, digest):
    """Malformed manifest digests get a 4xx spec error and are not forwarded."""
    mirror, up, _, mark = guarded
    s, _, body = get(mirror, f"/v2/library/ok/manifests/{digest}")
    assert_error(s, body, range(400, 500))
    assert forwarded(up, mark) == []


BAD_NAMES = ["a" * 256, "/".join(["abcdefghij"] * 26), "Library/Upper", "library/-dash",
             "library//double", "library/trailing_", "x" * 4000]


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_bad_repository_names(guarded, name):
    """Names breaking the grammar or over 255 characters are 4xx NAME_INVALID."""
    mirror, up, _, mark = guarded
    for path in (f"/v2/{name}/manifests/latest", f"/v2/{name}/blobs/sha256:{'0' * 64}",
                 f"/v2/{name}/tags/list"):
        s, _, body = get(mirror, path)
        assert_error(s, body, range(400, 500), "NAME_INVALID")
    assert forwarded(up, mark) == []


BAD_TAGS = ["-leading-dash", ".dot", "t" * 129, "a+b", "t%20x", "é"]


@pytest.mark.parametrize("tag", BAD_TAGS, ids=range(len(BAD_TAGS)))
def test_bad_tags(guarded, tag):
    """Invalid tags get a 4xx spec error (MANIFEST_UNKNOWN, NAME_INVALID, ...) and
    are not forwarded upstream."""
    mirror, up, _, mark = guarded
    target = ("/v2/library/ok/manifests/" + tag).encode("utf-8")
    s, _, body = raw_get(mirror.port, target)
    assert s is not None and 400 <= s < 500, (tag, s)
    error_codes(body)
    assert forwarded(up, mark) == []


def test_huge_header_is_431(guarded):
    """A single 64 KiB header value is refused with 431."""
    mirror = guarded[0]
    s, _, body = raw_get(mirror.port, b"/v2/", b"X-Big: " + b"a" * 65536 + b"\r\n")
    assert s == 431, (s, body[:200])
    error_codes(body)


def test_huge_number_of_headers_is_rejected(guarded):
    """5000 small headers (about 40 KiB in all) are refused with 431 (or 400)."""
    mirror = guarded[0]
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
    s, _, body = raw_get(mirror.port, b"/v2/", extra)
    assert s in (400, 431), (s, body[:200])
    error_codes(body)


def test_huge_url_is_414(guarded):
    """A 64 KiB request target is refused with 414."""
    mirror = guarded[0]
    s, _, body = raw_get(mirror.port, b"/v2/library/ok/manifests/" + b"a" * 65536)
    assert s == 414, (s, body[:200])
    error_codes(body)


@pytest.mark.parametrize("junk", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4,  # a TLS hello
    b"HELLO THERE\r\n\r\n",
    b"GET /v2/ HTTP/9.9\r\n\r\n",
    b"GET\x00/v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nzz\r\n",
], ids=["tls", "words", "version", "nul", "negative-length", "te-and-cl"])
def test_garbage_gets_400_or_close(guarded, junk):
    """Bytes that are not valid HTTP/1.x get a 4xx (505 for the version) or the connection is
    closed at once; the mirror keeps answering afterwards (checked by the fixture)."""
    mirror = guarded[0]
    buf, how = raw_exchange_ex(mirror.port, junk, timeout=10)
    if buf:
        assert buf.startswith(b"HTTP/1."), buf[:100]
        status = int(buf.split()[1])
        assert 400 <= status < 500 or status == 505, buf[:200]
    else:
        assert how in ("closed", "reset"), "the mirror neither answered nor closed in 10 s"


# -- slow clients ---------------------------------------------------------------------------------
def alive(m):
    """The mirror process still runs and answers a normal request."""
    assert m.proc.alive(), "the mirror died"
    assert get(m, "/v2/")[0] == 200


def trickle(sock, chunks, pause=0.5):
    """Sends chunks one by one, pausing between them, until the peer answers or closes; returns
    (what came back, how many chunks went out)."""
    got, sent = b"", 0
    for chunk in chunks:
        try:
            sock.sendall(chunk)
            sent += 1
        except OSError:
            break
        r, _, _ = select.select([sock], [], [], pause)
        if r:
            break
    sock.settimeout(10)
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                break
            got += b
    except OSError:
        pass
    return got, sent


def test_slowloris_headers_are_cut_by_a_head_deadline(hostile_mirror):
    """Headers sent one byte every half second keep the connection busy (each byte would reset
    an idle timer of 60 s) but the whole head must arrive within timeouts.client_header: the
    client gets 408 and the connection closes long before the head would be complete."""
    m = hostile_mirror({"timeouts": {"client_header": "2s", "client_idle": "60s"}})
    head = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", m.port), timeout=10) as s:
        got, sent = trickle(s, [head[i:i + 1] for i in range(len(head))])
    assert sent < len(head), "the whole head went out: the mirror never cut it off"
    status, _, body = parse_raw(got)
    assert status == 408, got[:300]
    error_codes(body)


def test_silent_connection_is_closed_after_the_head_deadline(hostile_mirror):
    """A connection that never sends a byte is closed (without an answer) once the head
    deadline passes; the mirror goes on serving."""
    m = hostile_mirror({"timeouts": {"client_header": "1s", "client_idle": "60s"}})
    with socket.create_connection(("127.0.0.1", m.port), timeout=30) as s:
        assert s.recv(100) == b""


def upload_head(length, digest="sha256:" + "0" * 64):
    return (f"POST /v2/team/app/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n").encode()


@pytest.mark.parametrize("how", ["trickle", "stall"])
def test_slow_request_bodies_are_cut(hostile_mirror, how):
    """An upload trickled below limits.min_body_rate is cut with 408 even though bytes keep
    coming (no idle timer fires); one that stops sending is cut by timeouts.client_idle. Nothing
    is stored, and the mirror goes on serving."""
    if how == "trickle":
        limits = {"timeouts": {"client_header": "2s", "client_idle": "60s"},
                  "limits": {"min_body_rate": "10KiB"}}
    else:
        limits = {"timeouts": {"client_header": "60s", "client_idle": "2s"},
                  "limits": {"min_body_rate": 0}}
    m = hostile_mirror(dict(limits, hosted=["team/*"]))
    size = 200000
    with socket.create_connection(("127.0.0.1", m.port), timeout=10) as s:
        s.sendall(upload_head(size))
        chunks = [b"x" * 100] * 200 if how == "trickle" else [b"x" * 100]
        got, sent = trickle(s, chunks)
        if how == "stall":
            got += trickle(s, [])[0]
    assert sent * 100 < size
    status, _, body = parse_raw(got)
    assert status == 408, got[:300]
    error_codes(body)
    assert not os.path.exists(m.file_for("sha256:" + "0" * 64))


# -- request smuggling ----------------------------------------------------------------------------
SMUGGLED = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"


def responses(buf):
    """The status codes of every response in buf (as many as there are status lines)."""
    return [int(s) for s in re.findall(rb"(?:^|\n)HTTP/1\.[01] (\d{3}) ", buf)]


def read_until_closed(port, data, timeout=10):
    """Sends data and reads until the mirror closes the connection (or timeout)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    return b"".join(chunks), "closed"
                chunks.append(b)
        except socket.timeout:
            return b"".join(chunks), "timeout"
        except OSError:
            return b"".join(chunks), "reset"


def smuggle(headers, body=b"0\r\n\r\n"):
    return (b"POST /v2/team/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
            + body + SMUGGLED)


SMUGGLING = {
    "cl-and-te": smuggle(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
    "te-and-cl": smuggle(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
    "two-lengths": smuggle(b"Content-Length: 5\r\nContent-Length: 40\r\n"),
    "same-length-twice": smuggle(b"Content-Length: 5\r\nContent-Length: 5\r\n"),
    "length-list": smuggle(b"Content-Length: 5, 5\r\n"),
    "gzip-chunked": smuggle(b"Transfer-Encoding: gzip, chunked\r\n"),
    "chunked-chunked": smuggle(b"Transfer-Encoding: chunked, chunked\r\n"),
    "te-twice": smuggle(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
    "te-identity": smuggle(b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n"),
    "te-space-colon": smuggle(b"Transfer-Encoding : chunked\r\n"),
    "te-obs-fold": smuggle(b"Transfer-Encoding:\r\n chunked\r\n"),
    "obs-fold": smuggle(b"Content-Length: 5\r\nX-A: 1\r\n\tfolded\r\n"),
    "bare-lf": smuggle(b"Content-Length: 5\nX-A: 1\r\n"),
    "bare-lf-request-line": b"POST /v2/ HTTP/1.1\nContent-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "bare-cr": smuggle(b"Content-Length: 5\rX-A: 1\r\n"),
}


@pytest.mark.parametrize("data", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_request_smuggling_is_refused(hostile_mirror, data):
    """Ambiguous framing (Content-Length with chunked, two lengths, codings other than a single
    chunked, obs-fold, bare LF or CR) is refused with 400 and the connection closed: the request
    hidden in the body is never answered."""
    m = hostile_mirror({"hosted": ["team/*"]})
    buf, how = read_until_closed(m.port, data)
    assert responses(buf) == [400], buf[:400]
    assert how in ("closed", "reset"), how
    error_codes(parse_raw(buf)[2])


def test_pipelining_and_unread_bodies_answer_each_request_once(hostile_mirror):
    """Two pipelined requests get two answers (the count above is right); a body the route
    does not read ends the connection after its answer, so a request inside it is never
    answered."""
    m = hostile_mirror()
    buf, _ = read_until_closed(m.port, SMUGGLED + SMUGGLED[:-2] + b"Connection: close\r\n\r\n")
    assert responses(buf) == [200, 200], buf[:400]
    body = SMUGGLED * 3
    buf, how = read_until_closed(m.port, b"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert len(responses(buf)) == 1, buf[:400]
    assert how in ("closed", "reset"), how


# -- invalid UTF-8 and NUL bytes ------------------------------------------------------------------
BAD_BYTES_TARGETS = [
    b"/v2/lib%00rary/ok/manifests/v1",
    b"/v2/lib%ffrary/ok/manifests/v1",
    b"/v2/lib\xffrary/ok/manifests/v1",
    b"/v2/library/ok\xc0\xaf/manifests/v1",          # overlong '/'
    b"/v2/library/ok%c0%af..%c0%afcanary/manifests/v1",
    b"/v2/library/ok%e0%80%af/manifests/v1",
    b"/v2/\xed\xa0\x80/ok/manifests/v1",               # a UTF-16 surrogate
    b"/v2/library/ok/manifests/v1%00",
    b"/v2/library/ok/manifests/v1%ff",
    b"/v2/library/ok/manifests/\xc3\x28",
    b"/v2/library/ok/manifests/\xf8\x88\x80\x80\x80",
    b"/v2/library/ok/blobs/sha256:%00" + b"0" * 63,
    b"/v2/library/ok/blobs/sha256:\xff" + b"0" * 63,
    b"/v2/library/ok/tags/list%00",
    b"/v2/lib%2500rary/ok/manifests/v1",
]


@pytest.mark.parametrize("target", BAD_BYTES_TARGETS, ids=range(len(BAD_BYTES_TARGETS)))
def test_invalid_utf8_and_nul_in_names_and_tags(guarded, target):
    """Raw or %-encoded NULs, invalid and overlong UTF-8 in repository names, tags and digests
    get 400 or 404 with a spec error body: never a 5xx, never a file, never the upstream."""
    mirror, up, _, mark = guarded
    status, _, body = raw_get(mirror.port, target)
    assert status in (400, 404), (target, status, body[:200])
    error_codes(body)
    assert forwarded(up, mark) == []


BAD_BYTES_QUERIES = [b"?n=%00", b"?n=\xff", b"?n=%ff%fe", b"?last=%c0%af&n=1", b"?last=\x80",
                     b"?ns=%00", b"?ns=\xff\xfe", b"?ns=docker.io%00evil", b"?%00=%00",
                     b"?n=1%00", b"?n=99999999999999999999999"]


@pytest.mark.parametrize("query", BAD_BYTES_QUERIES, ids=range(len(BAD_BYTES_QUERIES)))
def test_invalid_utf8_and_nul_in_query_strings(guarded, query):
    """Junk in the query of a tags list or a manifest is ignored or refused with a 4xx and a
    spec error body; never a 5xx and nothing on disk outside the storage."""
    mirror, _, img, _ = guarded
    for path in (b"/v2/library/ok/tags/list", b"/v2/library/ok/manifests/v1"):
        status, _, body = raw_get(mirror.port, path + query,
                                  b"Accept: " + ACCEPT_HEADER.encode() + b"\r\n")
        assert status < 500, (path + query, status, body[:200])
        if status >= 400:
            error_codes(body)


BAD_HEADER_VALUES = [
    b"Accept: \xff\xfe\xfd\r\n",
    b"Accept: application/vnd.oci.image.manifest.v1+json\xc0\xaf\r\n",
    b"Accept: \x00\r\n",
    b"Authorization: Basic \xff\xfe\r\n",
    b"Authorization: Bearer \xc3\x28.\xc3\x28.\xc3\x28\r\n",
    b"Authorization: Basic %00%00\r\n",
    b"Range: bytes=\xff-\r\n",
    b"Host: \xff\xfe\r\n",
    b"Host: a\x00b\r\n",
    b"X-Forwarded-Proto: https\x00\r\n",
    b"X-Anything: \x80\x81\x82\r\n",
    b"\xff\xfe: value\r\n",
]


@pytest.mark.parametrize("header", BAD_HEADER_VALUES, ids=range(len(BAD_HEADER_VALUES)))
def test_invalid_utf8_and_nul_in_header_values(guarded, header):
    """Invalid UTF-8 (allowed as obs-text, so the request goes on), NULs and control bytes
    (refused with 400) in header values: a spec error body whenever it is an error, never a
    5xx."""
    mirror = guarded[0]
    for path in (b"/v2/library/ok/manifests/v1", b"/v2/library/ok/blobs/sha256:" + b"0" * 64):
        status, _, body = raw_get(mirror.port, path, header)
        assert status is not None and status < 500, (header, status, body[:200])
        if status >= 400:
            error_codes(body)
        if b"\x00" in header or header.startswith(b"\xff"):
            assert status == 400, (header, status)


# -- many connections -----------------------------------------------------------------------------
def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard < n:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {n}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


class Sockets(list):
    """Client sockets closed together when the block ends."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for s in self:
            s.close()


def connect_many(port, n):
    socks = Sockets()
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=30))
    except BaseException:
        socks.__exit__()
        raise
    return socks


def read_statuses(socks, want, bound=120):
    """Reads from every socket at once until `want` of them have a whole response (or closed):
    {socket: status, or None when closed without one}. Bounded by `bound` seconds in all."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    done = {}
    deadline = time.monotonic() + bound
    while len(done) < want and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                b = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                b = b""
            bufs[s] += b
            if not b or _complete(bufs[s]):
                done[s] = parse_raw(bufs[s])[0] if bufs[s] else None
                sel.unregister(s)
    sel.close()
    return done


def silent(sock):
    """Nothing has come back on sock and it is still open."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    return False


def serves_again(m):
    wait_until(lambda: get(m, "/v2/")[0] == 200, 30, what="a 200 once the crowd left")


def test_connections_over_the_limit_get_503(hostile_mirror):
    """With limits.max_connections 200, of 1000 idle connections 800 get a 503 with a spec body
    and are closed, 200 are held open without an answer, and once they all close a normal
    client is served."""
    raise_nofile(4096)
    m = hostile_mirror({"limits": {"max_connections": 200},
                                    "timeouts": {"client_header": "5m", "client_idle": "5m"}})
    with connect_many(m.port, 1000) as socks:
        done = read_statuses(socks, 800)
        assert sorted(set(done.values())) == [503] and len(done) == 800, len(done)
        held = [s for s in socks if s not in done]
        assert len(held) == 200 and all(silent(s) for s in held)
        status, _, body = raw_get(m.port, b"/v2/")
        assert status == 503
        error_codes(body)
    assert m.proc.alive()
    serves_again(m)


def test_two_thousand_idle_connections_with_default_limits(hostile_mirror):
    """2000 idle connections against the default limits: the mirror holds 1024, answers the
    rest 503, keeps answering new clients (503 while full) and serves normally once they go."""
    raise_nofile(8192)
    m = hostile_mirror()
    with connect_many(m.port, 2000) as socks:
        done = read_statuses(socks, 2000 - 1024)
        assert set(done.values()) == {503} and len(done) == 2000 - 1024, len(done)
        assert raw_get(m.port, b"/v2/")[0] == 503
    assert m.proc.alive()
    serves_again(m)


def test_three_thousand_concurrent_requests_are_all_served(hostile_mirror, up, make_image,
                                                           push):
    """3000 connections open at once, each with a manifest request in flight: every one gets a
    200 with the right bytes."""
    raise_nofile(8192)
    img = push(make_image(61), up, "library/crowd", "v1")
    m = hostile_mirror({"limits": {"max_connections": 4000}})
    assert get(m, "/v2/library/crowd/manifests/v1")[2] == img.raw  # cached: no upstream fan-out
    req = (b"GET /v2/library/crowd/manifests/" + img.digest.encode() + b" HTTP/1.1\r\nHost: x\r\n"
           b"Accept: " + ACCEPT_HEADER.encode() + b"\r\n\r\n")
    with connect_many(m.port, 3000) as socks:
        for s in socks:
            s.sendall(req)
        done = read_statuses(socks, 3000, bound=300)
        assert len(done) == 3000
        assert set(done.values()) == {200}


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif("REGCACHE_BIN" in os.environ, reason="RSS of another build or a wrapper")
def test_memory_with_a_thousand_idle_keepalive_connections(hostile_mirror, up, make_image,
                                                           push):
    """1000 keep-alive connections, each after a request, stay open idle: the mirror's RSS stays
    at most 32 MiB and grows by less than 8 KiB per connection."""
    raise_nofile(4096)
    img = push(make_image(62), up, "library/mem", "v1")
    m = hostile_mirror({"limits": {"max_connections": 2000}})
    path = "/v2/library/mem/manifests/v1"
    assert get(m, path)[2] == img.raw
    before = vm_rss_kib(m.proc.pid)
    req = (f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {ACCEPT_HEADER}\r\n\r\n").encode()
    with connect_many(m.port, 1000) as socks:
        for s in socks:
            s.sendall(req)
        done = read_statuses(socks, 1000)
        assert set(done.values()) == {200} and len(done) == 1000
        assert all(silent(s) for s in socks), "a keep-alive connection was closed"
        after = vm_rss_kib(m.proc.pid)
    assert after <= 32 * 1024, f"RSS {after} KiB with 1000 connections (before: {before} KiB)"
    assert after - before < 8 * 1000, f"RSS grew {after - before} KiB for 1000 connections"
