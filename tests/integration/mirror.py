# SPDX-License-Identifier: Apache-2.0
"""The regcache process under test: config writing, start/stop, request-log parsing, and a small
HTTP helper for talking to it."""

import http.client
import os
import re
import shlex
import signal
import subprocess
import time

import yaml

import procs
from procs import wait_settled  # noqa: F401 - re-exported for the tests

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# REGCACHE_BIN may name another command, e.g. a sanitizer build or valgrind.
REGCACHE = shlex.split(os.environ.get("REGCACHE_BIN", os.path.join(REPO_ROOT, "build", "regcache")))

# The access log in its text form: the Combined Log Format, then key=value fields:
# <client> - <user> [<time>] "<METHOD> <target> <proto>" <status> <bytes> "<referer>" "<agent>"
#   rt=<seconds> upstream=<name|-> outcome=<hit|miss|fill|stale|denied|loop|relayed|-> id=<request id> peer=.. note=..
# Groups: 1 client, 2 method, 3 target, 4 status, 5 bytes, 6 seconds, 7 outcome.
LOG_RE = re.compile(r'^(\S+) - \S+ \[[^\]]+\] "([A-Z]+|-) (\S+) [^" ]+" (\d{3}) (\d+) '
                    r'"(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*" rt=(\d+\.\d+) upstream=\S+ '
                    r'outcome=(hit|miss|fill|stale|denied|loop|relayed|-) ')


class LogEntry(tuple):
    __slots__ = ()
    ip = property(lambda s: s[0])
    method = property(lambda s: s[1])
    path = property(lambda s: s[2])
    status = property(lambda s: s[3])
    size = property(lambda s: s[4])
    cache = property(lambda s: s[5])


def regcache(*args, timeout=30):
    """Runs the binary with args; returns CompletedProcess (text)."""
    return subprocess.run([*REGCACHE, *args], capture_output=True, text=True, timeout=timeout)


class Mirror:
    """One regcache serving on 127.0.0.1:port with its own storage directory."""

    def __init__(self, directory, upstreams, port=None, revalidate_after="1s", extra=None):
        """upstreams: list of {"name", "url"[, "username", "password"]} dicts, in order."""
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = port or procs.free_port()
        self.storage = os.path.join(directory, "store")
        self.log_path = os.path.join(directory, "regcache.log")
        self.config_path = os.path.join(directory, "regcache.yml")
        cfg = {
            "listen": f"127.0.0.1:{self.port}",
            "storage": self.storage,
            "upstreams": [dict(u) for u in upstreams],
            "cache": {"revalidate_after": revalidate_after},
            # several event loops, whatever the machine has (REGCACHE_TEST_WORKERS=1: one)
            "workers": int(os.environ.get("REGCACHE_TEST_WORKERS", "2")),
        }
        for key, value in (extra or {}).items():
            if isinstance(value, dict):
                cfg.setdefault(key, {}).update(value)
            else:
                cfg[key] = value
        with open(self.config_path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        self.proc = None

    def start(self, wait=True):
        self.proc = procs.Proc([*REGCACHE, "serve", "-c", self.config_path], self.log_path)
        if wait:
            procs.wait_for(lambda: procs.http_status(self.port, "/healthz") == 200, 20,
                           f"regcache /healthz on :{self.port}", proc=self.proc)
        return self

    def stop(self, timeout=15):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if not self.proc:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            status = None
        self.proc.kill()
        self.proc = None
        return status

    # -- request log --------------------------------------------------------------------------
    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def entries(self, settle=True):
        """Every request line the mirror logged, as LogEntry(ip, method, path, status, bytes,
        cache); by default once the log has stopped growing (lines follow the responses)."""
        if settle:
            wait_settled(self.log_text, quiet=0.3)
        out = []
        for line in self.log_text().splitlines():
            m = LOG_RE.search(line)
            if m:
                out.append(LogEntry((m.group(1), m.group(2), m.group(3), int(m.group(4)),
                                     int(m.group(5)), m.group(7))))
        return out

    # -- HTTP ---------------------------------------------------------------------------------
    def conn(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, headers=None, timeout=60):
        """One request on a fresh connection: (status, headers dict lower-cased, body, resp)."""
        return request(self.port, method, path, headers, timeout)

    def file_for(self, digest):
        algo, hexd = digest.split(":", 1)
        return os.path.join(self.storage, "blobs", algo, hexd[:2], hexd)


def request(port, method, path, headers=None, timeout=60, body=None):
    """One request on a fresh connection: (status, headers dict lower-cased, body, response).
    headers may be a list of (name, value) pairs to send repeated headers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(headers, list):  # repeated headers: send them by hand
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v)
            conn.endheaders()
        else:
            conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, resp
    finally:
        conn.close()
