# SPDX-License-Identifier: Apache-2.0
"""Small assertions and raw-HTTP helpers shared by the tests."""

import hashlib
import json
import os
import socket
import sqlite3
import time

import upstream as upstream_mod
from images import ACCEPT_ALL
from mirror import request, wait_settled

ACCEPT_HEADER = ", ".join(ACCEPT_ALL)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def get(mirror, path, method="GET", headers=None, accept=True):
    """(status, headers, body) for one request to the mirror; Accept defaults to every manifest
    type as one comma-separated header."""
    h = headers
    if h is None:
        h = {"Accept": ACCEPT_HEADER} if accept else {}
    status, hdrs, body, _ = request(mirror.port, method, path, h)
    return status, hdrs, body


def stored_digests(mirror):
    """The digests of every file in the mirror's store (manifests and blobs)."""
    out = set()
    root = os.path.join(mirror.storage, "blobs", "sha256")
    if os.path.isdir(root):
        for shard in os.listdir(root):
            out.update("sha256:" + n for n in os.listdir(os.path.join(root, shard)))
    return out


def mirror_has(mirror, digest):
    """True when the mirror's store holds a file for digest."""
    return os.path.exists(mirror.file_for(digest))


def error_codes(body):
    """The codes of a spec error body {"errors":[{"code":..,"message":..}]}; fails if malformed."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError(f"error body is not JSON: {body[:200]!r}")
    assert isinstance(doc, dict) and isinstance(doc.get("errors"), list) and doc["errors"], \
        f"not a spec error body: {doc!r}"
    for e in doc["errors"]:
        assert isinstance(e, dict) and isinstance(e.get("code"), str), f"bad error entry {e!r}"
    return [e["code"] for e in doc["errors"]]


def assert_error(status, body, want_status, *codes):
    """Asserts the status (an int, or a range/collection of ints) and that the body is a spec
    error naming one of codes (any code if none given)."""
    ok = status in want_status if isinstance(want_status, (range, set, tuple, list)) \
        else status == want_status
    assert ok, f"status {status}, wanted {want_status}; body {body[:300]!r}"
    got = error_codes(body)
    if codes:
        assert set(got) & set(codes), f"error codes {got}, wanted one of {codes}"


def upstream_log(up):
    """The upstream's access log once it has stopped growing (log lines trail responses)."""
    return wait_settled(up.requests)


def since(up, mark):
    return upstream_log(up)[mark:]


def manifest_gets(reqs, method="GET"):
    return upstream_mod.count(reqs, method=method, kind="manifests")


def blob_gets(reqs):
    return upstream_mod.blob_gets(reqs)


def wait_until(predicate, timeout=15, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last value {last!r})")


# -- raw sockets (for what client libraries would normalise or refuse to send) ----------------
def raw_exchange(port, data, timeout=10):
    """Sends bytes, returns what came back (one response, or all until close/timeout)."""
    return raw_exchange_ex(port, data, timeout)[0]


def raw_exchange_ex(port, data, timeout=10):
    """(bytes read, how it ended: "response", "closed", "reset" or "timeout")."""
    chunks, how = [], "timeout"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may refuse the rest of a huge request: read its answer anyway
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    how = "closed"
                    break
                chunks.append(b)
                if _complete(b"".join(chunks)):
                    how = "response"
                    break
        except socket.timeout:
            how = "timeout"
        except (ConnectionResetError, BrokenPipeError):
            how = "reset"
    return b"".join(chunks), how


def _complete(buf):
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(body) >= int(v.strip())
    return False


def parse_raw(buf):
    """(status, headers dict lower-case, body) of the first response in buf; status None if
    there is no response at all."""
    if not buf:
        return None, {}, b""
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return status, headers, body


def read_response(f):
    """Reads one HTTP/1.1 response from a binary file object (Content-Length or chunked);
    returns (status, headers, body)."""
    status_line = f.readline()
    assert status_line, "connection closed before a response"
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            n = int(f.readline().split(b";")[0], 16)
            if n == 0:
                while f.readline() not in (b"\r\n", b""):
                    pass
                break
            body += f.read(n)
            f.readline()
    else:
        body = f.read(int(headers.get("content-length", "0")))
    return status, headers, body


def tree(root, skip=()):
    """Every path under root (relative), minus those under any of the skip prefixes."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, n), root)
            if not any(rel == s or rel.startswith(s + os.sep) for s in skip):
                out.add(rel)
    return out


def raw_get_headers(sock, path):
    """Sends a GET for path on a raw socket and reads up to the end of the response headers;
    returns (header bytes, the body bytes that came with them)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the end of the headers"
        data += chunk
    return tuple(data.split(b"\r\n\r\n", 1))


def read_rest(sock, h, got, size):
    """Reads the body on sock until size bytes in all, feeding hash h; returns the count.
    A connection that closes early fails the test with how far it got."""
    while got < size:
        chunk = sock.recv(1 << 20)
        assert chunk, f"connection closed after {got} of {size} bytes"
        h.update(chunk)
        got += len(chunk)
    return got


def assert_config_refused(tmp_dir, text, *expected):
    """Writes text as bad.yml in tmp_dir: `regcache check-config` must exit non-zero with a
    message containing every expected piece (file:line: key)."""
    from mirror import regcache
    path = os.path.join(tmp_dir, "bad.yml")
    with open(path, "w") as f:
        f.write(text)
    r = regcache("check-config", "-c", path)
    assert r.returncode != 0, r.stdout
    for piece in expected:
        assert piece in r.stderr, r.stderr


# -- sequences: what the upstream saw, what the index holds -------------------------------------
def upstream_calls(up, mark):
    """The upstream's requests since mark as (method, path, status), without the auth probes
    (`GET /v2/`) and the 401s of the token dance: what the mirror actually asked for."""
    return [(m, p, st) for m, p, st in since(up, mark)
            if st != 401 and p.split("?", 1)[0] != "/v2/"]


def index_tag(mirror, repo, tag, upstream="docker.io"):
    """(digest, media_type, validated_ms) of a proxied tag in the mirror's SQLite index, read
    through a read-only connection while the daemon runs; None when there is no row."""
    path = os.path.join(mirror.storage, "regcache.db")
    for _ in range(50):  # a writer may hold the lock for a moment
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
            try:
                return db.execute("SELECT digest, media_type, validated_ms FROM tags "
                                  "WHERE upstream = ? AND repo = ? AND tag = ?",
                                  (upstream, repo, tag)).fetchone()
            finally:
                db.close()
        except sqlite3.OperationalError as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"cannot read {path}: {last}")


def index_tag_after(mirror, repo, tag, since_ms, timeout=10, upstream="docker.io"):
    """The tag's index row once it records a validation at or after since_ms (wall clock, ms):
    the database is written in batches, so a row read at once may still be the previous one."""
    return wait_until(lambda: (lambda r: r if r and r[2] >= since_ms else None)(
        index_tag(mirror, repo, tag, upstream)), timeout=timeout, interval=0.2,
        what=f"the index row of {repo}:{tag} validated after {since_ms}")


def wall_ms():
    return int(time.time() * 1000)
