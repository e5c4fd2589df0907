# SPDX-License-Identifier: Apache-2.0
"""Probes and the service manager: /livez answers whenever the process does; /readyz is 200
while the store is walked in the background after an unclean stop (what is served meanwhile is
correct), 503 during the drain after SIGTERM and while the store or the index cannot be
written, and 200 while an upstream is down; `?verbose` in Kubernetes' format; READY=1,
RELOADING=1 and STOPPING=1 on $NOTIFY_SOCKET."""

import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

from helpers import assert_error, get, since, wait_until
from mirror import request
from scripted import Reply, Scripted, digest_of

CHECK_LINE = re.compile(r"^\[([+-])\](\S+) (ok|ok: .*|excluded: ok|failed: .*)$")


@pytest.fixture
def scripted():
    up = Scripted()
    yield up
    up.stop()


def probe(m, path="/readyz", method="GET", timeout=5):
    """(status, body text) of one probe, or (None, "") when nothing answers."""
    try:
        s, h, body, _ = request(m.port, method, path, timeout=timeout)
    except OSError:
        return None, ""
    return s, body.decode()


def checks(text):
    """{name: (passed, detail)} of a verbose answer, asserting Kubernetes' line format."""
    lines = text.rstrip("\n").split("\n")
    assert lines[-1] in ("readyz check passed", "readyz check failed",
                         "livez check passed"), text
    out = {}
    for line in lines[:-1]:
        mt = CHECK_LINE.match(line)
        assert mt, f"not a check line: {line!r}"
        out[mt.group(2)] = (mt.group(1) == "+", mt.group(3))
    return out


def plant_unknown_blobs(storage, n, size):
    """n sparse files named like digests the index does not know: each is re-hashed at start-up
    (size bytes of zeros, so it does not match its name and is removed)."""
    names = []
    for _ in range(n):
        hexd = secrets.token_hex(32)
        d = os.path.join(storage, "blobs", "sha256", hexd[:2])
        os.makedirs(d, mode=0o700, exist_ok=True)
        with open(os.path.join(d, hexd), "wb") as f:
            f.truncate(size)
        names.append(os.path.join(d, hexd))
    os.chmod(storage, 0o700)
    for d in (os.path.join(storage, "blobs"), os.path.join(storage, "blobs", "sha256")):
        os.chmod(d, 0o700)
    return names


def test_readyz_is_200_while_the_store_is_walked_in_the_background(mirror_factory, scripted):
    """After an unclean stop (here: a store the index does not know) the mirror serves at once
    and walks the store in the background: /readyz is 200 with the walk on the startup check's
    line, a pull works, a planted file that does not match its name is never served (it is
    re-hashed, removed, and asked upstream), and the walk removes the others."""
    digest, _, _ = scripted.image("library/app", "1")
    m = mirror_factory([scripted], start=False)
    planted = plant_unknown_blobs(m.storage, 12, 64 << 20)
    m.start(wait=False)
    wait_until(lambda: probe(m)[0] is not None, timeout=20, what="the listener")
    s, text = probe(m, "/readyz?verbose")
    assert s == 200, text
    got = checks(text)
    assert list(got) == ["ping", "startup", "store", "index", "shutdown"]
    assert got["startup"][0] and "walking the store in the background" in got["startup"][1], got
    assert probe(m, "/livez")[0] == 200
    # a pull during the walk
    s, h, _ = get(m, "/v2/library/app/manifests/1")
    assert s == 200 and h["docker-content-digest"] == digest
    # a planted file asked for by its name: never its zeros
    hexd = os.path.basename(planted[-1])
    s, h, body = get(m, f"/v2/library/app/blobs/sha256:{hexd}")
    assert s == 404, (s, body[:100])
    assert_error(s, body, 404, "BLOB_UNKNOWN")
    wait_until(lambda: "corrupt removed" in m.log_text(), timeout=90, what="the walk's end")
    assert "12 corrupt removed" in m.log_text() or "11 corrupt removed" in m.log_text()
    assert not any(os.path.exists(p) for p in planted)
    assert probe(m, "/readyz?verbose")[1].startswith("[+]ping ok\n[+]startup ok\n")
    assert len(scripted.requests("GET", "/manifests/")) == 1
    assert probe(m, "/healthz")[0] == 200


def test_sigterm_during_the_startup_reconciliation_stops_cleanly(mirror_factory, scripted):
    """SIGTERM while the background walk of the store runs: it stops before its next file, the
    process exits 0 without recording a clean stop, and the next start walks again and finishes
    the job."""
    m = mirror_factory([scripted], start=False)
    planted = plant_unknown_blobs(m.storage, 32, 64 << 20)
    m.start(wait=False)
    wait_until(lambda: "walking the store" in probe(m, "/readyz?verbose")[1], timeout=30,
               what="/readyz naming the walk")
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(30) == 0
    m.proc = None
    log = m.log_text()
    assert "stopped during the start-up reconciliation" in log
    assert not os.path.exists(os.path.join(m.storage, "clean-shutdown"))
    left = [p for p in planted if os.path.exists(p)]
    assert left, "every file was re-hashed before SIGTERM could stop the reconciliation"
    m.start()
    assert probe(m)[0] == 200
    wait_until(lambda: not any(os.path.exists(p) for p in planted), timeout=120,
               what="the planted files removed by the second walk")
    assert get(m, "/v2/")[0] == 200


def test_readyz_is_503_during_the_drain_while_the_response_in_flight_finishes(
        mirror_factory, scripted):
    """SIGTERM while a blob drips in from the upstream: /readyz answers 503 (shutdown) on new
    connections, /livez 200, a new registry request 503 with Retry-After; the response in flight
    completes with the right bytes and the process exits 0."""
    data = os.urandom(48 * 1024)
    digest = digest_of(data)
    headers = [("Content-Type", "application/octet-stream"), ("Docker-Content-Digest", digest),
               ("Content-Length", str(len(data)))]
    scripted.route("GET", rf"/v2/library/slow/blobs/{digest}",
                   lambda req: Reply.drip(200, headers, data, interval=0.1, chunk=2048))
    m = mirror_factory([scripted], extra={"timeouts": {"shutdown_grace": "60s"}})
    assert probe(m)[0] == 200
    got, result = {"n": 0}, {}

    def download():
        try:
            c = m.conn(timeout=60)
            c.request("GET", f"/v2/library/slow/blobs/{digest}")
            resp = c.getresponse()
            body = b""
            while True:
                b = resp.read(1024)
                if not b:
                    break
                body += b
                got["n"] = len(body)
            result["status"], result["body"] = resp.status, body
            c.close()
        except Exception as e:  # noqa: BLE001
            result["error"] = repr(e)

    t = threading.Thread(target=download)
    t.start()
    try:
        wait_until(lambda: got["n"] >= 4096, timeout=20, what="the download to start")
        assert got["n"] < len(data)
        m.proc.send_signal(signal.SIGTERM)
        s, text = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(probe(m)),
                             timeout=10, what="/readyz 503 after SIGTERM")
        assert "[-]shutdown failed: draining" in text and text.endswith("readyz check failed\n")
        got_checks = checks(text)
        assert [n for n, (ok, _) in got_checks.items() if not ok] == ["shutdown"], text
        assert probe(m, "/readyz?verbose")[0] == 503
        assert probe(m, "/livez")[0] == 200
        s, h, body = get(m, "/v2/library/other/manifests/1")
        assert_error(s, body, 503, "UNAVAILABLE")
        assert b"shutting down" in body and h.get("retry-after", "").isdigit()
        assert h.get("connection", "").lower() == "close"
        assert t.is_alive(), "the response in flight finished before the probes were asked"
    finally:
        t.join(60)
    assert result.get("status") == 200 and result.get("body") == data, \
        {k: v for k, v in result.items() if k != "body"}
    assert m.proc.wait(30) == 0
    m.proc = None
    # the upstream saw the one blob GET, and nothing for the request answered 503
    assert len(scripted.requests("GET", "/blobs/")) == 1
    assert not scripted.requests(path="/library/other/")


def test_readyz_stays_200_while_the_upstream_is_down(mirror_factory, up, make_image, push):
    """An upstream that is down is no reason to take the mirror out of rotation: /readyz stays
    200 and no check fails, while cached content is served stale; probes never reach the
    upstream."""
    img = push(make_image(1101), up, "library/outage", "v1")
    m = mirror_factory([up], revalidate_after="0s")
    assert get(m, "/v2/library/outage/manifests/v1")[0] == 200
    mark = up.mark()
    for path in ("/readyz", "/readyz?verbose", "/livez", "/healthz"):
        assert probe(m, path)[0] == 200
    assert since(up, mark) == [], "a probe reached the upstream"
    up.stop()
    s, h, _ = get(m, "/v2/library/outage/manifests/v1")
    assert s == 200 and h["docker-content-digest"] == img.digest
    assert m.entries()[-1].cache == "stale"
    wait_until(lambda: "upstream docker.io: down (" in m.log_text(), timeout=10,
               what="the mirror to mark docker.io down")
    s, text = probe(m, "/readyz?verbose")
    assert s == 200, text
    got = checks(text)
    assert all(ok for ok, _ in got.values()), text
    assert text.endswith("readyz check passed\n")
    assert "upstream" not in text
    assert probe(m)[:2] == (200, "ok\n")


def test_verbose_format_exclude_head_and_methods(mirror_factory, scripted, tmp_dir):
    """The answers' shape: "ok" plain, Kubernetes' check lines with ?verbose, ?exclude, HEAD
    with the same headers and no body, 405 for other methods; probes need no credentials when
    the registry does."""
    from test_auth import make_users
    users = make_users(tmp_dir, ("alice", "alice-pass"))
    m = mirror_factory([scripted], extra={"auth": {"htpasswd": users,
                                                   "anonymous": "none"}})
    assert get(m, "/v2/")[0] == 401
    s, h, body, _ = request(m.port, "GET", "/readyz")
    assert (s, body) == (200, b"ok\n")
    assert h["content-type"].startswith("text/plain") and h["cache-control"] == "no-store"
    s, text = probe(m, "/readyz?verbose")
    assert s == 200
    assert text == ("[+]ping ok\n[+]startup ok\n[+]store ok\n[+]index ok\n[+]shutdown ok\n"
                    "readyz check passed\n")
    s, text = probe(m, "/readyz?verbose=1&exclude=store&exclude=nosuch")
    assert s == 200
    assert "[+]store excluded: ok\n" in text
    assert 'no matches for "nosuch"' in text
    assert probe(m, "/livez?verbose") == (200, "[+]ping ok\nlivez check passed\n")
    assert probe(m, "/livez") == (200, "ok\n")
    for path in ("/readyz", "/livez"):
        s, h, body, _ = request(m.port, "HEAD", path)
        assert s == 200 and body == b"" and h["content-length"] == "3"
        s, h, body, _ = request(m.port, "POST", path)
        assert_error(s, body, 405, "UNSUPPORTED")
        assert h["allow"] == "GET, HEAD"
    # /healthz is as it was
    assert probe(m, "/healthz") == (200, "ok\n")
    assert scripted.requests(path="/readyz|/livez|/healthz") == []


@pytest.fixture
def tmpfs_mirror(mirror_factory, scripted):
    """A started mirror whose storage is a 16 MiB tmpfs (needs root; skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    m = mirror_factory([scripted], start=False)
    os.makedirs(m.storage)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs",
                       m.storage]).returncode:
        pytest.skip("cannot mount a tmpfs")
    try:
        yield m.start()
        assert m.stop() == 0
    finally:
        m.stop()
        if subprocess.run(["umount", m.storage]).returncode:
            subprocess.run(["umount", "-l", m.storage])


def fill(path):
    """Writes path until the filesystem is full."""
    with open(path, "wb") as f:
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    # what is still buffered cannot be written either
    return path


def test_readyz_is_503_while_the_store_cannot_be_written_and_recovers(tmpfs_mirror):
    """The store's filesystem fills up: /readyz turns 503 naming the store check (the check
    runs off the loop: probes keep answering at once); once space is freed it is 200 again."""
    m = tmpfs_mirror
    assert probe(m)[0] == 200
    filler = os.path.join(m.storage, "filler")
    try:
        fill(filler)
        # the index may notice first (its writes fail too): wait for the store's own check
        s, text = wait_until(lambda: (lambda r: r if r[0] == 503 and "[-]store" in r[1]
                                      else None)(probe(m, "/readyz?verbose")),
                             timeout=15, interval=0.3, what="/readyz 503 with the store full")
        got = checks(text)
        assert got["store"][0] is False, text
        assert "cannot write " + os.path.join(m.storage, "tmp") in got["store"][1]
        assert "No space left on device" in got["store"][1]
        assert got["ping"][0] and got["startup"][0] and got["shutdown"][0]
        t = time.monotonic()
        assert probe(m, "/livez")[0] == 200
        assert time.monotonic() - t < 2
        assert "readyz: not ready: store failed" in m.log_text()
    finally:
        os.unlink(filler)
    wait_until(lambda: probe(m)[0] == 200, timeout=15, interval=0.3,
               what="/readyz 200 once the store takes writes again")
    assert all(ok for ok, _ in checks(probe(m, "/readyz?verbose")[1]).values())


def test_readyz_is_503_while_the_index_cannot_be_written_and_recovers(mirror_factory, scripted):
    """Another process holds the index's write lock: the mirror's writes are refused (after
    SQLite's busy timeout), /readyz turns 503 naming the index check, and 200 again once the
    lock is gone and the kept changes are written."""
    digest, _, _ = scripted.image("library/app", "1")
    m = mirror_factory([scripted])
    db = sqlite3.connect(os.path.join(m.storage, "regcache.db"), timeout=10,
                         isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        assert get(m, "/v2/library/app/manifests/1")[0] == 200  # changes to write
        s, text = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(
            probe(m, "/readyz?verbose")), timeout=20, interval=0.3,
            what="/readyz 503 with the index locked")
        got = checks(text)
        assert got["index"][0] is False and "cannot write" in got["index"][1], text
        assert "locked" in got["index"][1], text
        assert got["store"][0], text
        # serving goes on meanwhile: the manifest is in memory and in the store
        s, h, _ = get(m, f"/v2/library/app/manifests/{digest}")
        assert s == 200
    finally:
        db.execute("ROLLBACK")
        db.close()
    wait_until(lambda: probe(m)[0] == 200, timeout=20, interval=0.3,
               what="/readyz 200 once the index takes writes again")
    # the kept changes were written: the tag is in the index
    wait_until(lambda: sqlite3.connect(os.path.join(m.storage, "regcache.db")).execute(
        "SELECT count(*) FROM tags").fetchone()[0] >= 1, timeout=10, what="the tag written")
    assert len(scripted.requests("GET", "/manifests/")) == 1


class NotifySocket:
    """$NOTIFY_SOCKET as systemd has it: an AF_UNIX datagram socket (abstract name here)."""

    def __init__(self):
        self.name = "@regcache-test-" + secrets.token_hex(8)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.got = []

    def next(self, timeout=20):
        self.sock.settimeout(timeout)
        msg = self.sock.recv(4096).decode()
        self.got.append(msg)
        return dict(line.split("=", 1) for line in msg.split("\n") if line)

    def until(self, key, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            fields = self.next(max(0.1, deadline - time.monotonic()))
            if key in fields:
                return fields

    def close(self):
        self.sock.close()


def test_notify_socket_gets_ready_reloading_and_stopping(mirror_factory, scripted, tmp_dir,
                                                        monkeypatch):
    """With $NOTIFY_SOCKET: READY=1 as soon as the mirror serves (the walk of the store goes on
    in the background), RELOADING=1 with MONOTONIC_USEC then READY=1 once the password file is
    re-read on SIGHUP, STOPPING=1 on SIGTERM; one datagram each."""
    from test_auth import make_users
    users = make_users(tmp_dir, ("alice", "alice-pass"))
    ns = NotifySocket()
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", ns.name)
        m = mirror_factory([scripted], start=False, extra={"auth": {"htpasswd": users}})
        plant_unknown_blobs(m.storage, 2, 64 << 20)
        m.start(wait=False)
        ready = ns.next()
        assert ready["READY"] == "1" and ready["STATUS"].startswith("serving HTTP on ")
        assert probe(m)[0] == 200
        wait_until(lambda: "2 corrupt removed" in m.log_text(), timeout=60,
                   what="the background walk")
        assert all("READY=1" not in g for g in ns.got[:-1])

        loaded = m.log_text().count("auth: " + users + " loaded")
        before = time.clock_gettime(time.CLOCK_MONOTONIC)
        m.proc.send_signal(signal.SIGHUP)
        reloading = ns.next()
        assert reloading["RELOADING"] == "1", ns.got
        usec = int(reloading["MONOTONIC_USEC"])
        assert before * 1e6 - 1e6 <= usec <= time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
        again = ns.next()
        assert again["READY"] == "1" and again["STATUS"].startswith("serving")
        assert m.log_text().count("auth: " + users + " loaded") == loaded + 1, \
            "READY=1 came before the password file was re-read"

        m.proc.send_signal(signal.SIGTERM)
        stopping = ns.next()
        assert stopping["STOPPING"] == "1" and int(stopping["EXTEND_TIMEOUT_USEC"]) > 0
        assert m.proc.wait(30) == 0
        m.proc = None
        assert scripted.requests(path="/manifests/") == []
    finally:
        ns.close()


def test_a_new_store_is_not_walked_and_a_killed_one_is(mirror_factory, scripted):
    """A store that never held anything is trusted as it is: the first answer of /readyz?verbose
    already says startup ok, and the log says why. Killed, the next start walks it."""
    m = mirror_factory([scripted])
    s, text = probe(m, "/readyz?verbose")
    assert s == 200 and "[+]startup ok\n" in text, text
    assert "store: new and empty: nothing to walk" in m.log_text()
    assert "walked in the background" not in m.log_text()
    m.proc.kill()
    m.proc = None
    mark = len(m.log_text())
    m.start()
    wait_until(lambda: "(walked in the background in" in m.log_text()[mark:], timeout=30,
               what="the walk after the kill")
    assert "nothing to walk" not in m.log_text()[mark:]
