# SPDX-License-Identifier: Apache-2.0
"""A hostile crowd of clients: slow readers must not make the mirror hold a body per client,
clients that hang up must give their slots back, a crowd of misses on a hung upstream must not
lock hits and probes out, and every answer tells browsers not to sniff or render it."""

import json
import os
import random
import select
import socket
import threading
import time

import pytest

import mirror as mirror_mod
from helpers import wait_until
from scripted import OCI_MANIFEST, Reply, Scripted, digest_of

MIB = 1024 * 1024
# RSS is meaningless under a sanitizer or another wrapper: their allocators keep what is freed
HEAVY_SKIP = pytest.mark.skipif(
    any(w in " ".join(mirror_mod.REGCACHE) for w in ("asan", "sanitize", "valgrind")),
    reason="RSS under a sanitizer build says nothing about the mirror's own memory")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def client_sockets(pid, port):
    """The mirror's accepted client connections (local port == port, not the listener)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] != "0A":
                    inodes.add(cols[9])
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            n += 1
    return n


def padded_manifest(size):
    """A valid OCI image manifest of exactly size bytes (the padding is an annotation)."""
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": digest_of(b"{}"), "size": 2},
           "layers": [], "annotations": {"pad": ""}}
    base = len(json.dumps(doc).encode())
    doc["annotations"]["pad"] = "x" * (size - base)
    body = json.dumps(doc).encode()
    assert len(body) == size
    return body


@pytest.fixture
def scripted():
    up = Scripted()
    yield up
    up.stop()


def mirror_of(mirror_factory, up, **limits):
    extra = {"limits": limits} if limits else None
    return mirror_factory([{"name": "docker.io", "url": up.url}], extra=extra)


def request_bytes(path, method="GET", headers=()):
    lines = [f"{method} {path} HTTP/1.1", "Host: mirror"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def non_reader(port, path):
    """A client that asks for path and then reads nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(request_bytes(path))
    return s


def readable(socks, timeout):
    """The sockets of socks with something to read within timeout seconds (poll, not select:
    a test process may hold descriptors past FD_SETSIZE)."""
    poller = select.poll()
    by_fd = {}
    for s in socks:
        poller.register(s, select.POLLIN)
        by_fd[s.fileno()] = s
    return [by_fd[fd] for fd, _ in poller.poll(timeout * 1000)]


def wait_answered(socks, timeout=60):
    """Every client has the head of a 200 waiting in its socket."""
    pending = list(socks)
    deadline = time.monotonic() + timeout
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} clients got no answer"
        for s in readable(pending[:500], 1):
            head = s.recv(12, socket.MSG_PEEK)
            assert head.startswith(b"HTTP/1.1 200"), head
            pending.remove(s)


def crowd_of_non_readers(m, path, clients, limit_kib, what):
    """Opens `clients` connections asking for path that never read; fails as soon as the
    mirror's RSS has grown by more than limit_kib (checked after every 25 clients have been
    answered). Returns the sockets (the caller closes them)."""
    pid = m.proc.pid
    before = rss_kib(pid)
    socks = []
    try:
        for i in range(clients):
            socks.append(non_reader(m.port, path))
            if i % 25 == 24 or i == clients - 1:
                wait_answered(socks[-25:])
                grew = rss_kib(pid) - before
                assert grew <= limit_kib, \
                    f"RSS grew by {grew} KiB after {i + 1} non-reading clients of {what}"
        time.sleep(0.5)
        grew = rss_kib(pid) - before
        assert grew <= limit_kib, f"RSS grew by {grew} KiB with {clients} non-reading clients " \
                                  f"of {what}"
        return socks
    except BaseException:
        for s in socks:
            s.close()
        raise


@HEAVY_SKIP
def test_a_thousand_clients_not_reading_a_4mib_manifest_add_at_most_64mib(mirror_factory,
                                                                          scripted):
    """1,000 clients ask for a 4 MiB manifest and never read it: the mirror sends them all from
    one copy (RSS grows by at most 64 MiB), the upstream was asked once, and a client that does
    read gets every byte, hashing to the digest."""
    body = padded_manifest(4 * MIB)
    digest = scripted.manifest("library/big", "v1", body)
    m = mirror_of(mirror_factory, scripted, max_connections=1200)
    status, _, got, _ = m.request("GET", "/v2/library/big/manifests/v1",
                                  {"Accept": OCI_MANIFEST})
    assert status == 200 and got == body
    socks = crowd_of_non_readers(m, f"/v2/library/big/manifests/{digest}", 1000, 64 * 1024,
                                 "a 4 MiB manifest")
    try:
        status, headers, got, _ = m.request("GET", f"/v2/library/big/manifests/{digest}")
        assert status == 200 and digest_of(got) == digest
        assert headers["docker-content-digest"] == digest
    finally:
        for s in socks:
            s.close()
    assert len(scripted.requests("GET", r"/manifests/")) == 1


@HEAVY_SKIP
def test_clients_not_reading_a_6mib_tags_list_share_one_copy(mirror_factory, scripted):
    """300 clients ask for a 6 MiB tags list and never read it: RSS grows by at most 64 MiB
    (one copy of the list, not one per client), and every client was answered 200."""
    tags = [f"t{i:07d}-{'x' * 40}" for i in range(6 * MIB // 52)]
    doc = json.dumps({"name": "library/many", "tags": tags}).encode()
    assert 6 * MIB - 200000 < len(doc) <= 8 * MIB
    scripted.route("GET", r"/v2/library/many/tags/list",
                   lambda req: Reply(200, [("Content-Type", "application/json")], doc))
    m = mirror_of(mirror_factory, scripted, max_connections=1200)
    status, _, got, _ = m.request("GET", "/v2/library/many/tags/list")
    assert status == 200 and got == doc
    socks = crowd_of_non_readers(m, "/v2/library/many/tags/list", 300, 64 * 1024,
                                 "a 6 MiB tags list")
    for s in socks:
        s.close()
    assert 2 <= len(scripted.requests("GET", r"/tags/list")) <= 301


def test_responses_held_for_slow_clients_are_capped(mirror_factory, scripted):
    """limits.max_response_memory: distinct large bodies held for clients that do not read add up
    to at most the cap; past it, new answers are 503 with Retry-After (not more memory), and
    once the slow clients go, answers are 200 again."""
    bodies = {}
    for i in range(6):
        body = padded_manifest(12 * MIB + i)  # more than the kernel's socket buffers take
        bodies[scripted.manifest("library/m", f"v{i}", body)] = body
    m = mirror_of(mirror_factory, scripted, max_response_memory="30MiB",
                  max_manifest_size="16MiB")
    for i in range(6):
        status, _, _, _ = m.request("GET", f"/v2/library/m/manifests/v{i}")
        assert status == 200
    socks = [non_reader(m.port, f"/v2/library/m/manifests/{d}") for d in bodies]
    try:
        heads = []
        for s in socks:
            s.settimeout(10)
            heads.append(s.recv(200, socket.MSG_PEEK))
        ok = [h for h in heads if h.startswith(b"HTTP/1.1 200")]
        busy = [h for h in heads if h.startswith(b"HTTP/1.1 503")]
        assert len(ok) == 2 and len(busy) == 4, heads
        assert all(b"retry-after: 1" in h.lower() for h in busy), busy
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: client_sockets(m.proc.pid, m.port) == 0, timeout=10,
               what="the slow clients' connections to close")
    status, _, got, _ = m.request("GET", f"/v2/library/m/manifests/{list(bodies)[5]}")
    assert status == 200 and got == list(bodies.values())[5]


class HungBlobs:
    """Every blob request the upstream gets hangs without an answer until release(), then gets
    404 (so that no fill is left in flight when the mirror stops)."""

    def __init__(self, scripted):
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.held = 0
        scripted.route("*", r"/v2/.*/blobs/.*", self.answer)

    def answer(self, req):
        with self.lock:
            self.held += 1
        self.gate.wait(60)
        with self.lock:
            self.held -= 1
        return Reply.error(404, "BLOB_UNKNOWN")

    def release(self, m, scripted):
        """Lets every hung request end, and waits until the mirror has asked for no more."""
        self.gate.set()

        def settled():
            n = len(scripted.requests(path=r"/blobs/"))
            time.sleep(0.5)
            return self.held == 0 and len(scripted.requests(path=r"/blobs/")) == n
        wait_until(settled, timeout=30, what="the hung upstream requests to end")


def cold_digest():
    return "sha256:" + "".join(random.choice("0123456789abcdef") for _ in range(64))


def test_clients_that_hang_up_on_a_hung_upstream_give_their_slots_back(mirror_factory,
                                                                       scripted):
    """250 clients (more than limits.max_connections) each ask for a cold blob of a hung
    upstream and hang up: the mirror notices each hang-up, its open client connections drop to
    none, and /healthz and a cached blob answer 200; the upstream got at most 64 connections."""
    # the upstream is never given up on during the test (its own timeouts are not the point)
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}],
                       extra={"limits": {"max_connections": 200},
                              "timeouts": {"first_byte": "60s", "low_speed": "60s"}})
    digest = scripted.blob(os.urandom(4096))
    status, _, data, _ = m.request("GET", f"/v2/library/app/blobs/{digest}")
    assert status == 200 and digest_of(data) == digest
    hung = HungBlobs(scripted)
    for _ in range(5):
        socks = []
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", m.port), timeout=10)
            s.sendall(request_bytes(f"/v2/library/app/blobs/{cold_digest()}"))
            socks.append(s)
        time.sleep(0.3)
        for s in socks:
            s.close()
    wait_until(lambda: client_sockets(m.proc.pid, m.port) == 0, timeout=8,
               what="the connections of clients that left to close")
    status, _, body, _ = m.request("GET", "/healthz", timeout=10)
    assert status == 200 and body == b"ok\n"
    status, _, body, _ = m.request("GET", f"/v2/library/app/blobs/{digest}", timeout=10)
    assert status == 200 and body == data
    seen = scripted.requests("GET", r"/blobs/")
    assert 1 <= len(seen) <= 64 + 1, f"{len(seen)} upstream requests for blobs"
    hung.release(m, scripted)


def test_a_crowd_of_misses_on_a_hung_upstream_leaves_slots_for_hits_and_probes(mirror_factory,
                                                                               scripted):
    """250 clients (more than limits.max_connections 200) ask for cold blobs of a hung upstream
    and stay: requests waiting on the upstream never take the reserve (a sixteenth of the
    slots); the longest-waiting are answered 503 with Retry-After and closed, and /healthz and
    a cached blob still answer 200 on new connections."""
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}],
                       extra={"limits": {"max_connections": 200},
                              "timeouts": {"first_byte": "60s", "low_speed": "60s"}})
    digest = scripted.blob(os.urandom(4096))
    status, _, data, _ = m.request("GET", f"/v2/library/app/blobs/{digest}")
    assert status == 200
    hung = HungBlobs(scripted)
    socks = []
    try:
        for _ in range(250):
            s = socket.create_connection(("127.0.0.1", m.port), timeout=10)
            s.sendall(request_bytes(f"/v2/library/app/blobs/{cold_digest()}"))
            socks.append(s)
        time.sleep(0.5)
        for path, want in (("/healthz", b"ok\n"), (f"/v2/library/app/blobs/{digest}", data)):
            status, _, body, _ = m.request("GET", path, timeout=10)
            assert status == 200 and body == want, (path, status, body[:200])
        shed = []
        for s in socks:
            s.settimeout(0)
            try:
                head = s.recv(4096)
            except BlockingIOError:
                continue
            if head:
                shed.append(head)
        assert shed and all(h.startswith(b"HTTP/1.1 503") for h in shed), shed[:3]
        assert all(b"retry-after: 1" in h.lower() for h in shed)
        assert client_sockets(m.proc.pid, m.port) <= 200 - 200 // 16
        assert len(scripted.requests("GET", r"/blobs/")) <= 64 + 1
    finally:
        for s in socks:
            s.close()
        hung.release(m, scripted)


def answers_of_every_kind(m, scripted, digest, blob, manifest_digest):
    """(what, raw response head) for one answer of each kind the mirror gives."""
    out = []

    def raw(what, data):
        s = socket.create_connection(("127.0.0.1", m.port), timeout=10)
        try:
            s.sendall(data)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            out.append((what, buf.split(b"\r\n\r\n")[0]))
        finally:
            s.close()

    raw("blob", request_bytes(f"/v2/library/app/blobs/{digest}"))
    raw("blob HEAD", request_bytes(f"/v2/library/app/blobs/{digest}", "HEAD"))
    raw("blob 206", request_bytes(f"/v2/library/app/blobs/{digest}", headers=[("Range",
                                                                               "bytes=0-9")]))
    raw("blob 416", request_bytes(f"/v2/library/app/blobs/{digest}",
                                  headers=[("Range", f"bytes={len(blob) + 10}-")]))
    raw("manifest", request_bytes(f"/v2/library/app/manifests/{manifest_digest}"))
    raw("manifest by tag", request_bytes("/v2/library/app/manifests/v1",
                                         headers=[("Accept", OCI_MANIFEST)]))
    raw("404", request_bytes("/v2/library/app/manifests/nope"))
    raw("/v2/", request_bytes("/v2/"))
    raw("tags", request_bytes("/v2/library/app/tags/list"))
    raw("catalog", request_bytes("/v2/_catalog"))
    raw("healthz", request_bytes("/healthz"))
    raw("405", request_bytes("/v2/library/app/manifests/v1", "DELETE"))
    raw("400 bad digest", request_bytes("/v2/library/app/blobs/sha512:00"))
    raw("400 malformed", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    raw("hosted upload 202", request_bytes("/v2/local/app/blobs/uploads/", "POST",
                                           [("Content-Length", "0")]))
    return out


def test_every_answer_says_nosniff_and_api_answers_are_sandboxed(mirror_factory, scripted):
    """Blobs (200, HEAD, 206, 416), manifests, errors (400, 404, 405, a malformed request), /v2/,
    tags, catalog, /healthz, a hosted upload's 202 and the 503 of a full mirror all carry
    X-Content-Type-Options: nosniff and Content-Security-Policy: sandbox."""
    blob = os.urandom(1000)
    digest = scripted.blob(blob)
    manifest_digest, _, _ = scripted.image("library/app", "v1")
    scripted.route("GET", r"/v2/library/app/tags/list",
                   lambda req: Reply.json(200, {"name": "library/app", "tags": ["v1"]}))
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}],
                       extra={"hosted": ["local/*"]})
    answers = answers_of_every_kind(m, scripted, digest, blob, manifest_digest)
    # a full mirror: an idle connection holds its only slot
    full = mirror_factory([{"name": "docker.io", "url": scripted.url}],
                          extra={"limits": {"max_connections": 1}})
    wait_until(lambda: client_sockets(full.proc.pid, full.port) == 0, timeout=10,
               what="the start-up probe's connection to close")
    held = [socket.create_connection(("127.0.0.1", full.port), timeout=10)]
    try:
        time.sleep(0.3)
        s = socket.create_connection(("127.0.0.1", full.port), timeout=10)
        s.sendall(request_bytes("/healthz"))
        answers.append(("503 full", s.recv(4096).split(b"\r\n\r\n")[0]))
        s.close()
    finally:
        for h in held:
            h.close()
    statuses = {what: head.split(b"\r\n")[0].decode() for what, head in answers}
    assert statuses["blob 206"].startswith("HTTP/1.1 206"), statuses
    assert statuses["blob 416"].startswith("HTTP/1.1 416"), statuses
    assert statuses["503 full"].startswith("HTTP/1.1 503"), statuses
    assert statuses["hosted upload 202"].startswith("HTTP/1.1 202"), statuses
    for what, head in answers:
        lines = [line.lower() for line in head.split(b"\r\n")[1:]]
        assert b"x-content-type-options: nosniff" in lines, (what, head)
        assert b"content-security-policy: sandbox" in lines, (what, head)


def test_fills_from_one_upstream_are_capped(mirror_factory, scripted):
    """300 clients ask for 300 cold blobs of a hung upstream at once: at most 256 fills
    (limits.max_fills) are started, each with its temporary file; the others are answered 503
    UNAVAILABLE with Retry-After at once, and at most 64 sockets (limits.upstream_connections)
    reach the upstream."""
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}],
                       extra={"limits": {"max_connections": 400},
                              "timeouts": {"first_byte": "60s", "low_speed": "60s"}})
    hung = HungBlobs(scripted)
    socks = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", m.port), timeout=10)
            s.sendall(request_bytes(f"/v2/library/app/blobs/{cold_digest()}"))
            socks.append(s)
        refused = []
        deadline = time.monotonic() + 10
        while len(refused) < 300 - 256 and time.monotonic() < deadline:
            for s in readable([s for s in socks if s not in refused], 0.5):
                head = s.recv(4096)
                assert head.startswith(b"HTTP/1.1 503"), head
                assert b"retry-after: 1" in head.lower() and b"UNAVAILABLE" in head, head
                refused.append(s)
        assert len(refused) == 300 - 256, f"{len(refused)} clients refused"
        temp = os.listdir(os.path.join(m.storage, "tmp"))
        assert len(temp) <= 256, f"{len(temp)} temporary files"
        assert len(scripted.requests(path=r"/blobs/")) <= 64
    finally:
        for s in socks:
            s.close()
        hung.release(m, scripted)
