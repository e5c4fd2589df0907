# SPDX-License-Identifier: Apache-2.0
"""A scripted stand-in upstream for the hostile-upstream tests: an HTTP/1.1 server on 127.0.0.1
whose every answer is chosen by the test, down to the raw bytes, so that it can lie, redirect,
drip, never end a body or put control characters in a header, which no real registry does.

    up = Scripted()                       # listens on 127.0.0.1:<port>, up.url
    up.manifest("library/app", "1", body) # GET/HEAD of the tag and of its digest
    up.blob(data)                         # GET/HEAD /v2/<any>/blobs/<digest>
    up.route("GET", r"/v2/x/manifests/.*", lambda req: Reply(302, [("Location", url)]))
    up.bearer(realm=url)                  # every /v2/ request without a Bearer token gets a 401
    ...
    up.requests(method="GET", path=r"/manifests/")   # what it saw, with headers
    up.stop()

A handler takes a Request and returns a Reply (or None to fall through to the next route;
with no route left, 404 MANIFEST_UNKNOWN / BLOB_UNKNOWN). Routes added later win. A Reply is a
status, header pairs written as given (no validation: a value may hold "\\r"), and a body:
bytes, or one of the behaviours `Reply.hang()`, `Reply.drip(...)`, `Reply.endless(...)`.
Content-Length is added for bytes bodies unless the headers name one or Transfer-Encoding.
"""

import hashlib
import json
import re
import socket
import threading
import time

from tlsproxy import _Acceptor

REASONS = {200: "OK", 201: "Created", 202: "Accepted", 206: "Partial Content",
           301: "Moved Permanently", 302: "Found", 307: "Temporary Redirect",
           308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 503: "Service Unavailable"}

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_body(code, message=""):
    return json.dumps({"errors": [{"code": code, "message": message or code,
                                   "detail": None}]}).encode()


def image_manifest(config=b"{}", layers=(), media_type=OCI_MANIFEST):
    """(manifest bytes, {digest: data}) for an image with the given config and layer bytes."""
    blobs = {digest_of(config): config}
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": digest_of(config), "size": len(config)},
           "layers": []}
    for data in layers:
        blobs[digest_of(data)] = data
        doc["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                              "digest": digest_of(data), "size": len(data)})
    return json.dumps(doc, indent=1).encode(), blobs


class Request:
    __slots__ = ("method", "target", "path", "query", "headers", "body", "peer", "time")

    def __init__(self, method, target, headers, body, peer):
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition("?")
        self.headers = headers          # lower-cased names -> last value
        self.body = body
        self.peer = peer
        self.time = time.monotonic()

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return f"<{self.method} {self.target}>"


class Reply:
    """status, [(name, value)], body: bytes or a behaviour (a callable taking the socket)."""

    def __init__(self, status=200, headers=(), body=b""):
        self.status = status
        self.headers = list(headers)
        self.body = body

    @staticmethod
    def json(status, doc, headers=()):
        return Reply(status, [("Content-Type", "application/json"), *headers],
                     json.dumps(doc).encode())

    @staticmethod
    def error(status, code, headers=()):
        return Reply(status, [("Content-Type", "application/json"), *headers],
                     error_body(code))

    @staticmethod
    def hang(status=None, headers=()):
        """Say nothing (status None) or send only the head, then hold the connection until the
        server stops."""
        def run(sock, server):
            if status is not None:
                sock.sendall(_head(status, headers))
            server._stop.wait()
        return Reply(status or 0, headers, run)

    @staticmethod
    def drip(status, headers, body, interval=1.0, chunk=1):
        """Send the head, then `chunk` bytes of body every `interval` seconds."""
        def run(sock, server):
            sock.sendall(_head(status, headers))
            for i in range(0, len(body), chunk):
                if server._stop.wait(interval):
                    return
                sock.sendall(body[i:i + chunk])
        return Reply(status, headers, run)

    @staticmethod
    def endless(status=200, headers=(), chunk=65536, limit=None):
        """A chunked body that never ends (or ends, unterminated, after `limit` bytes); the
        number of bytes sent is kept in server.sent[path]."""
        def run(sock, server, path=None):
            sock.sendall(_head(status, [*headers, ("Transfer-Encoding", "chunked")]))
            piece = b"%x\r\n" % chunk + b"\0" * chunk + b"\r\n"
            sent = 0
            while not server._stop.is_set() and (limit is None or sent < limit):
                sock.sendall(piece)
                sent += chunk
                with server._lock:
                    server.sent[path] = sent
        return Reply(status, headers, run)


def _head(status, headers):
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Scripted(_Acceptor):
    def __init__(self, host_name="127.0.0.1", tls=None):
        """tls: an ssl.SSLContext for the server side (tlsproxy.TestCA.server_context()) to
        serve https instead of http."""
        self._routes = []
        self.log = []
        self.sent = {}
        self._tls = tls
        super().__init__()
        self.host = f"{host_name}:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self.route("GET", r"/v2/?", lambda req: Reply.json(200, {}))

    # -- scripting ------------------------------------------------------------------------------
    def route(self, method, pattern, handler):
        """handler(Request) -> Reply | None for requests whose method is `method` ("*" for
        any) and whose path matches the regular expression `pattern` in full."""
        with self._lock:
            self._routes.insert(0, (method, re.compile(pattern), handler))

    def manifest(self, repo, tag, body, media_type=None, headers=()):
        """Serve body as repo's manifest by tag and by digest; returns the digest."""
        media_type = media_type or json.loads(body).get("mediaType", OCI_MANIFEST)
        digest = digest_of(body)

        def answer(req):
            return Reply(200, [("Content-Type", media_type),
                               ("Docker-Content-Digest", digest), *headers], body)
        for ref in (tag, digest):
            if ref:
                self.route("GET", rf"/v2/{re.escape(repo)}/manifests/{re.escape(ref)}", answer)
                self.route("HEAD", rf"/v2/{re.escape(repo)}/manifests/{re.escape(ref)}", answer)
        return digest

    def blob(self, data, repo=r".+", headers=()):
        """Serve data under its digest in every repository matching repo; returns the digest."""
        digest = digest_of(data)

        def answer(req):
            return Reply(200, [("Content-Type", "application/octet-stream"),
                               ("Docker-Content-Digest", digest), *headers], data)
        self.route("GET", rf"/v2/{repo}/blobs/{digest}", answer)
        self.route("HEAD", rf"/v2/{repo}/blobs/{digest}", answer)
        return digest

    def image(self, repo, tag, layers=(b"layer",), media_type=OCI_MANIFEST):
        """A whole image: its blobs and its manifest; returns (manifest digest, manifest, blobs)."""
        body, blobs = image_manifest(b'{"architecture":"amd64","os":"linux"}', layers,
                                     media_type)
        for data in blobs.values():
            self.blob(data, re.escape(repo))
        return self.manifest(repo, tag, body, media_type), body, blobs

    def bearer(self, realm, service="scripted", accept=lambda req: True):
        """Every /v2/ request without `Authorization: Bearer` (or whose token `accept` refuses)
        gets 401 with a Bearer challenge naming realm."""
        challenge = f'Bearer realm="{realm}",service="{service}"'

        def gate(req):
            auth = req.header("authorization", "")
            if auth.startswith("Bearer ") and accept(req):
                return None
            return Reply.error(401, "UNAUTHORIZED", [("WWW-Authenticate", challenge)])
        self.route("*", r"/v2/.*", gate)

    def basic(self, realm="scripted"):
        """Every /v2/ request without `Authorization: Basic` gets 401 with a Basic challenge."""
        def gate(req):
            if req.header("authorization", "").startswith("Basic "):
                return None
            return Reply.error(401, "UNAUTHORIZED",
                               [("WWW-Authenticate", f'Basic realm="{realm}"')])
        self.route("*", r"/v2/.*", gate)

    def token_endpoint(self, path="/token", token="scripted-token"):
        """Answer GET path with a token (the realm of bearer() may point here)."""
        self.route("GET", re.escape(path), lambda req: Reply.json(200, {"token": token,
                                                                        "expires_in": 300}))

    # -- what it saw ----------------------------------------------------------------------------
    def requests(self, method=None, path=None):
        """Requests seen so far, optionally only those of `method` whose path matches (search)
        the regular expression `path`."""
        with self._lock:
            reqs = list(self.log)
        return [r for r in reqs if (method is None or r.method == method)
                and (path is None or re.search(path, r.path))]

    # -- serving --------------------------------------------------------------------------------
    def _on_accept(self, conn):
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _answer(self, req):
        with self._lock:
            routes = list(self._routes)
        for method, pattern, handler in routes:
            if method in ("*", req.method) and pattern.fullmatch(req.path):
                reply = handler(req)
                if reply is not None:
                    return reply
        code = "BLOB_UNKNOWN" if "/blobs/" in req.path else "MANIFEST_UNKNOWN"
        return Reply.error(404, code)

    def _serve(self, sock):
        if self._tls:
            try:
                sock.settimeout(10)
                sock = self._tls.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
                self._keep(sock)
            except (OSError, ValueError):
                sock.close()
                return
        f = sock.makefile("rb")
        peer = sock.getpeername()
        try:
            while not self._stop.is_set():
                line = f.readline(65536)
                if not line:
                    return
                parts = line.decode("latin-1").split()
                if len(parts) < 2:
                    return
                headers = {}
                while True:
                    h = f.readline(65536)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = f.read(int(headers.get("content-length", "0") or 0))
                req = Request(parts[0], parts[1], headers, body, peer)
                with self._lock:
                    self.log.append(req)
                reply = self._answer(req)
                if callable(reply.body):
                    if reply.body.__code__.co_argcount == 3:
                        reply.body(sock, self, req.path)
                    else:
                        reply.body(sock, self)
                    return
                names = {k.lower() for k, _ in reply.headers}
                headers_out = list(reply.headers)
                if "content-length" not in names and "transfer-encoding" not in names:
                    headers_out.append(("Content-Length", str(len(reply.body))))
                sock.sendall(_head(reply.status, headers_out)
                             + (b"" if req.method == "HEAD" else reply.body))
                if headers.get("connection", "").lower() == "close":
                    return
        except OSError:
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass
