# SPDX-License-Identifier: Apache-2.0
"""An HTTP/1.1 proxy on 127.0.0.1 that sits in front of one upstream (as the mirror's upstream
URL) and injects faults into what it relays, one request at a time (keep-alive is kept):

- `cut[suffix] = n`: the next 200 answering a request whose path ends with suffix is cut after
  n body bytes (both connections closed); one shot per entry;
- `cut_at[suffix] = [a, b, ...]`: successive 200s or 206s for such a path are cut when they
  reach offset a, then b, ... of the whole body (a 206 of bytes N- is cut after a-N bytes);
- `on_range[suffix] = "full" | "shift" | "etag"`: a request for such a path with a Range header
  is sent on without it (the upstream answers 200 with everything), with its start moved 1024
  bytes earlier (an honest 206 of other bytes than were asked for), or without its If-Range and
  the 206's ETag replaced (a representation that changed, by a server ignoring If-Range);
- `extra_headers`: (name, value) pairs added to every relayed response (e.g. Docker Hub's
  ratelimit-* headers); `headers_for(method, path)`, when set, returns more of them per
  request (e.g. a ratelimit-remaining that falls with every manifest GET);
- `answer(method, path)`: when it returns (status, [(name, value)], body) the proxy answers that
  itself and the upstream never sees the request (e.g. a 429).

`log` holds (method, path, outcome) per request: the status relayed or answered, or "cut";
`ranges` (method, path, the Range header sent to the proxy or None, outcome, "aborted" when
either side closed mid-answer) per relayed request, `heads` (method, path, [(name, value)])
of every request relayed, and `body_bytes` (path, body bytes relayed) per relayed body.
For a slow upstream use slowproxy.SlowProxy; the listener and its teardown are tlsproxy's."""

import socket
import threading

from tlsproxy import _Acceptor

REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}


class FaultProxy(_Acceptor):
    def __init__(self, target_port):
        self.target_port = target_port
        self.cut = {}
        self.cut_at = {}
        self.on_range = {}
        self.ranges = []
        self.body_bytes = []
        self.heads = []
        self.extra_headers = []
        self.headers_for = None
        self.answer = None
        self.log = []
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def _on_accept(self, conn):
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _note(self, method, path, outcome):
        with self._lock:
            self.log.append((method, path, outcome))

    def requests(self):
        with self._lock:
            return list(self.log)

    def _take_cut(self, path):
        with self._lock:
            for suffix in list(self.cut):
                if path.split("?", 1)[0].endswith(suffix):
                    return self.cut.pop(suffix)
        return None

    def _matching(self, table, path):
        with self._lock:
            for suffix in table:
                if path.split("?", 1)[0].endswith(suffix):
                    return suffix
        return None

    def _take_cut_at(self, path, start):
        """Body bytes after which this response (starting at offset start) is cut, or None."""
        with self._lock:
            for suffix, offsets in self.cut_at.items():
                if path.split("?", 1)[0].endswith(suffix) and offsets:
                    return max(0, offsets.pop(0) - start)
        return None

    def _rewrite_range(self, path, headers):
        rng = next((v for k, v in headers if k.lower() == "range"), None)
        suffix = self._matching(self.on_range, path)
        if rng is None or suffix is None:
            return headers
        rest = [(k, v) for k, v in headers if k.lower() not in ("range", "if-range")]
        if self.on_range[suffix] == "full":
            return rest
        if self.on_range[suffix] == "etag":
            return rest + [("Range", rng)]
        first = int(rng.split("=", 1)[1].split("-", 1)[0])
        return rest + [("Range", f"bytes={max(0, first - 1024)}-")]

    def _serve(self, client):
        upstream = up_f = None
        cf = client.makefile("rb")
        try:
            while True:
                head = _read_head(cf)
                if head is None:
                    return
                method, path = (head[0].split() + ["", ""])[:2]
                extra = self.extra_headers + (self.headers_for(method, path)
                                              if self.headers_for else [])
                canned = self.answer(method, path) if self.answer else None
                if canned is not None:
                    status, headers, body = canned
                    client.sendall(_head(f"HTTP/1.1 {status} {REASONS.get(status, 'X')}",
                                         headers + [("Content-Length", str(len(body)))]
                                         + extra)
                                   + (b"" if method == "HEAD" else body))
                    self._note(method, path, status)
                    continue
                if upstream is None:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port),
                                                        timeout=30)
                    self._keep(upstream)
                    up_f = upstream.makefile("rb")
                rng = next((v for k, v in head[1] if k.lower() == "range"), None)
                with self._lock:
                    self.heads.append((method, path, list(head[1])))
                upstream.sendall(_head(head[0], self._rewrite_range(path, head[1])))
                try:
                    outcome, keep = self._relay(method, path, up_f, client, extra)
                except OSError:
                    with self._lock:
                        self.ranges.append((method, path, rng, "aborted"))
                    raise
                self._note(method, path, outcome)
                with self._lock:
                    self.ranges.append((method, path, rng, outcome))
                if outcome == "cut":
                    return
                if not keep:
                    upstream.close()
                    upstream = up_f = None
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                if s is not None:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()

    def _relay(self, method, path, up_f, client, extra):
        """Relays one response; returns (outcome, whether the upstream connection stays)."""
        resp = _read_head(up_f)
        if resp is None:
            raise OSError("upstream closed")
        status_line, headers = resp
        status = int(status_line.split()[1])
        h = {k.lower(): v for k, v in headers}
        suffix = self._matching(self.on_range, path)
        if status == 206 and suffix is not None and self.on_range[suffix] == "etag":
            headers = [(k, v) for k, v in headers if k.lower() != "etag"] + \
                [("ETag", '"changed"')]
        client.sendall(_head(status_line, headers + extra))
        keep = h.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or status < 200:
            return status, keep
        cut = self._take_cut(path) if status == 200 else None
        if cut is None and status in (200, 206):
            start = 0
            if status == 206:
                start = int(h.get("content-range", "bytes 0-").split()[1].split("-")[0])
            cut = self._take_cut_at(path, start)
        if "chunked" in h.get("transfer-encoding", "").lower():
            _relay_chunked(up_f, client)
            return status, keep
        if "content-length" not in h:
            while True:
                data = up_f.read1(65536)
                if not data:
                    return status, False
                client.sendall(data)
        left, sent = int(h["content-length"]), 0
        try:
            while left:
                n = min(left, 65536)
                if cut is not None:
                    n = min(n, cut - sent)
                    if n <= 0:
                        return "cut", False
                data = up_f.read(n)
                if not data:
                    raise OSError("upstream closed mid-body")
                client.sendall(data)
                sent += len(data)
                left -= len(data)
        finally:
            with self._lock:
                self.body_bytes.append((path, sent))
        return status, keep


def _read_head(f):
    """(first line, [(name, value)]) of a request or response head; None at end of input."""
    line = f.readline()
    if not line:
        return None
    headers = []
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    return line.decode("latin-1").rstrip("\r\n"), headers


def _head(first, headers):
    return (first + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode(
        "latin-1")


def _relay_chunked(src, client):
    while True:
        line = src.readline()
        client.sendall(line)
        n = int(line.split(b";")[0], 16)
        if n == 0:
            while True:
                t = src.readline()
                client.sendall(t)
                if t in (b"\r\n", b"\n", b""):
                    return
        client.sendall(src.read(n + 2))
