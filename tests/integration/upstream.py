# SPDX-License-Identifier: Apache-2.0
"""The upstream: Debian's docker-registry (distribution 2.8) with token auth, filesystem storage
in a temp dir and its access log captured, plus a parser for that access log."""

import os
import re
from collections import Counter

import procs

# 127.0.0.1 - - [27/Nov/2025:18:40:00 +0000] "GET /v2/x/manifests/1 HTTP/1.1" 200 528 "" "ua"
ACCESS_RE = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "(\S+) (\S+) HTTP/[\d.]+" (\d{3}) (\S+)')

CONFIG = """\
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: regcache-test-secret
auth:
  token:
    realm: {realm}
    service: {service}
    issuer: {issuer}
    rootcertbundle: {certs}
"""


class Upstream:
    """One docker-registry. start()/stop() may be called repeatedly; the port, storage and log
    file stay the same, so a restarted upstream serves what it had and its log keeps growing."""

    def __init__(self, directory, token_server, service="upstream"):
        self.directory = directory
        self.root = os.path.join(directory, "storage")
        os.makedirs(self.root, exist_ok=True)
        self.port = procs.free_port()
        self.service = service
        self.realm = token_server.url
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = os.path.join(directory, "registry.log")
        self.config_path = os.path.join(directory, "config.yml")
        with open(self.config_path, "w") as f:
            f.write(CONFIG.format(root=self.root, port=self.port, realm=token_server.url,
                                  service=service, issuer=token_server.issuer,
                                  certs=token_server.cert_path))
        self.proc = None

    def start(self):
        if self.proc and self.proc.alive():
            return self
        self.proc = procs.Proc(["docker-registry", "serve", self.config_path], self.log_path)
        procs.wait_for(lambda: procs.http_status(self.port) == 401, 20,
                       f"docker-registry on :{self.port}", proc=self.proc)
        return self

    def stop(self):
        if self.proc:
            self.proc.stop(timeout=10)
            self.proc = None
        procs.wait_for(lambda: not procs.port_open(self.port), 10, f"upstream :{self.port} closed")

    @property
    def running(self):
        return bool(self.proc and self.proc.alive())

    # -- access log ---------------------------------------------------------------------------
    def requests(self):
        """Every request in the access log so far, as (method, path, status) tuples."""
        out = []
        try:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    m = ACCESS_RE.match(line)
                    if m:
                        out.append((m.group(1), m.group(2), int(m.group(3))))
        except FileNotFoundError:
            pass
        return out

    def mark(self):
        """A position in the access log; pass it to since() to see only later requests. Waits
        for the lines of requests already answered (they trail the responses), so that e.g. a
        push's last GET is not counted as the mirror's."""
        return len(procs.wait_settled(self.requests))

    def since(self, mark):
        return self.requests()[mark:]

    def blob_path(self, digest):
        """Where the upstream keeps a blob's bytes (for corruption tests)."""
        hexd = digest.split(":", 1)[1]
        return os.path.join(self.root, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data")


def _strip_query(path):
    return path.split("?", 1)[0]


def count(reqs, method=None, kind=None, ref=None, status=None):
    """Counts requests by method, kind ('blobs' or 'manifests'), reference (digest or tag, matched
    against the last path component) and status; authentication 401s are ignored unless a status
    is asked for."""
    n = 0
    for m, path, st in reqs:
        p = _strip_query(path)
        if method and m != method:
            continue
        if kind and f"/{kind}/" not in p:
            continue
        if ref and not p.endswith("/" + ref):
            continue
        if status is None and st == 401:
            continue
        if status is not None and st != status:
            continue
        n += 1
    return n


def blob_gets(reqs):
    """Counter of digest -> number of non-401 upstream blob GETs."""
    c = Counter()
    for m, path, st in reqs:
        p = _strip_query(path)
        if m == "GET" and "/blobs/sha256:" in p and st != 401:
            c[p.rsplit("/", 1)[1]] += 1
    return c
