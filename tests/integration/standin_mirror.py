"""A deliberately simple Python stand-in for regcache, used only to check the test suite itself
(`REGCACHE_BIN="/usr/bin/python3 tests/integration/standin_mirror.py" pytest tests/integration`).
It implements the interface the tests assume (config, routing, pull-through caching, logs) but
none of regcache's engineering: fills finish before they are served, the index lives in memory.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

ACCEPT = ", ".join(["application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])
NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


def duration(s):
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", str(s))
    if not m:
        raise ValueError(f"invalid duration '{s}'")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def load_config(path):
    with open(path) as f:
        text = f.read()
    doc = yaml.compose(text)
    known = {"listen", "storage", "upstreams", "cache", "timeouts", "limits", "log"}
    for k, _ in doc.value:
        if k.value not in known:
            raise ValueError(f"{path}:{k.start_mark.line + 1}: {k.value}: unknown key")
    cfg = yaml.safe_load(text)
    try:
        cfg["revalidate"] = duration(cfg.get("cache", {}).get("revalidate_after", "30s"))
    except ValueError as e:
        line = next((i + 1 for i, l in enumerate(text.splitlines()) if "revalidate_after" in l), 0)
        raise ValueError(f"{path}:{line}: cache.revalidate_after: {e}")
    cfg["grace"] = duration(cfg.get("timeouts", {}).get("shutdown_grace", "10s"))
    return cfg


class Upstream:
    def __init__(self, u):
        self.name, self.url = u["name"], u["url"].rstrip("/")
        self.creds = (u.get("username"), u.get("password")) if u.get("username") else None
        self.tokens = {}

    def request(self, method, repo, path, headers=None, stream=False):
        """(status, headers, body) from upstream, doing the token dance; raises OSError when down.
        With stream=True a 200's body is the open response, to be read in chunks."""
        headers = dict(headers or {})
        for attempt in range(2):
            if repo in self.tokens:
                headers["Authorization"] = "Bearer " + self.tokens[repo]
            req = urllib.request.Request(self.url + path, method=method, headers=headers)
            try:
                r = urllib.request.urlopen(req, timeout=30)
                if stream:
                    return r.status, r.headers, r
                with r:
                    return r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                body = e.read()
                if e.code == 401 and attempt == 0:
                    self._token(e.headers.get("WWW-Authenticate", ""), repo)
                    continue
                return e.code, e.headers, body
            except urllib.error.URLError as e:
                raise OSError(str(e))
        return 401, {}, b""

    def _token(self, challenge, repo):
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        q = urllib.parse.urlencode({"service": params.get("service", ""),
                                    "scope": f"repository:{repo}:pull"})
        h = {}
        if self.creds:
            h["Authorization"] = "Basic " + base64.b64encode(":".join(self.creds).encode()).decode()
        with urllib.request.urlopen(urllib.request.Request(params["realm"] + "?" + q, headers=h),
                                    timeout=30) as r:
            self.tokens[repo] = json.load(r)["token"]


class State:
    def __init__(self, cfg):
        self.cfg = cfg
        self.ups = [Upstream(u) for u in cfg["upstreams"]]
        self.store = cfg["storage"]
        os.makedirs(os.path.join(self.store, "blobs", "sha256"), exist_ok=True)
        self.tags = {}  # (upstream, repo, tag) -> [digest, media_type, checked_at]
        self.types = {}  # digest -> manifest media type
        self.fills = {}  # digest -> Event
        self.lock = threading.Lock()

    def path(self, digest):
        h = digest[7:]
        return os.path.join(self.store, "blobs", "sha256", h[:2], h)

    def fill(self, up, repo, digest, kind, sink=None):
        """Fetches digest once (single flight); True when it is in the store afterwards. The
        leader passes the bytes to sink(length, chunk) as they arrive (chunk None = start)."""
        with self.lock:
            if os.path.exists(self.path(digest)):
                return True
            ev = self.fills.get(digest)
            leader = ev is None
            if leader:
                ev = self.fills[digest] = threading.Event()
        if not leader:
            ev.wait(120)
            return os.path.exists(self.path(digest))
        try:
            st, hdrs, body = up.request("GET", repo, f"/v2/{repo}/{kind}/{digest}",
                                        {"Accept": ACCEPT}, stream=sink is not None)
            if st == 200 and sink is not None:
                length, parts = int(hdrs.get("Content-Length")), []
                sink(length, None)
                while True:
                    chunk = body.read(65536)
                    if not chunk:
                        break
                    parts.append(chunk)
                    sink(length, chunk)
                body.close()
                body = b"".join(parts)
            if st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == digest:
                self.put(digest, body)
                if kind == "manifests":
                    self.types[digest] = hdrs.get("Content-Type")
                return True
            return False
        finally:
            with self.lock:
                del self.fills[digest]
            ev.set()

    def put(self, digest, body):
        p = self.path(digest)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(p))
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.rename(tmp, p)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None

    def log_message(self, *a):
        pass

    def log_request(self, code="-", size="-"):
        pass

    def send_error(self, code, message=None, explain=None):
        self.close_connection = True
        self.reply(code, {"errors": [{"code": "UNSUPPORTED" if code == 405 else "INVALID",
                                      "message": message or ""}]})

    def reply(self, status, body=b"", headers=None, cache="-"):
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        headers = dict(headers or {})
        self.send_response(status)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = 0
        if self.command != "HEAD":
            self.wfile.write(body)
            sent = len(body)
        ms = int((time.monotonic() - self.t0) * 1000)
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                         f"{self.client_address[0]} {self.command} {self.path} {status} {sent} "
                         f"{ms}ms {cache}\n")
        sys.stderr.flush()

    def err(self, status, code, msg=""):
        self.reply(status, {"errors": [{"code": code, "message": msg, "detail": {}}]})

    def do_GET(self):
        self.t0 = time.monotonic()
        st = self.state
        if os.environ.get("STANDIN_DUMP"):  # record what clients send (for documentation)
            with open(os.environ["STANDIN_DUMP"], "a") as f:
                f.write(f"{self.command} {self.path} {[(k, v) for k, v in self.headers.items() if k.lower() == 'accept']}\n")
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        raw = url.path
        if "/../" in raw + "/" or "%2e" in raw.lower() or "/./" in raw + "/":
            return self.err(400, "NAME_INVALID", "bad path")
        if raw in ("/v2/", "/v2"):
            return self.reply(200, {})
        if raw == "/v2/_catalog":
            repos = sorted({r for (_, r, _) in st.tags})
            return self.reply(200, {"repositories": repos})
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs|tags)/([^/]+)", raw)
        if not m:
            return self.err(404, "NAME_UNKNOWN", "no route")
        name, kind, ref = m.groups()
        up = st.ups[0]
        if "ns" in q:
            up = next((u for u in st.ups if u.name == q["ns"][0]), None)
            if up is None:
                return self.err(404, "NAME_UNKNOWN", "unknown namespace")
        else:
            first = name.split("/", 1)[0]
            pref = next((u for u in st.ups if u.name == first and "/" in name), None)
            if pref:
                up, name = pref, name.split("/", 1)[1]
        if len(name) > 255 or not NAME_RE.match(name):
            return self.err(400, "NAME_INVALID", "invalid repository name")
        if up.name == "docker.io" and "/" not in name:
            name = "library/" + name
        self.extra = {"OCI-Namespace": up.name}
        if kind == "tags":
            return self.tags(up, name, ref)
        if kind == "blobs":
            return self.blob(up, name, ref)
        return self.manifest(up, name, ref)

    do_HEAD = do_GET

    def tags(self, up, name, ref):
        if ref != "list":
            return self.err(404, "NAME_UNKNOWN")
        try:
            s, h, body = up.request("GET", name, f"/v2/{name}/tags/list")
            if s < 500:
                return self.reply(s, body, {"Content-Type": "application/json"})
        except OSError:
            pass
        tags = sorted(t for (u, r, t) in self.state.tags if u == up.name and r == name)
        if not tags:
            return self.err(404, "NAME_UNKNOWN")
        return self.reply(200, {"name": name, "tags": tags})

    def manifest(self, up, name, ref):
        st = self.state
        cache = "hit"
        if ref.startswith("sha256:") or ":" in ref:
            if not DIGEST_RE.match(ref):
                return self.err(400, "DIGEST_INVALID", "invalid digest")
            digest = ref
            if not os.path.exists(st.path(digest)):
                cache = "fill"
                try:
                    ok = st.fill(up, name, digest, "manifests")
                except OSError:
                    return self.err(502, "UNAVAILABLE")
                if not ok:
                    return self.err(404, "MANIFEST_UNKNOWN")
        else:
            if not TAG_RE.match(ref):
                return self.err(400, "TAG_INVALID")
            key = (up.name, name, ref)
            entry = st.tags.get(key)
            if entry is None or time.time() - entry[2] >= st.cfg["revalidate"]:
                try:
                    method = "HEAD" if entry else "GET"
                    s, h, body = up.request(method, name, f"/v2/{name}/manifests/{ref}",
                                            {"Accept": ACCEPT})
                    if s == 404:
                        return self.err(404, "MANIFEST_UNKNOWN")
                    if s != 200:
                        raise OSError(s)
                    digest = h.get("Docker-Content-Digest")
                    if method == "GET":
                        digest = "sha256:" + hashlib.sha256(body).hexdigest()
                        st.put(digest, body)
                        st.types[digest] = h.get("Content-Type")
                        cache = "miss"
                    elif not os.path.exists(st.path(digest)):
                        st.fill(up, name, digest, "manifests")
                        cache = "miss"
                    st.tags[key] = [digest, st.types[digest], time.time()]
                except OSError:
                    if entry is None:
                        return self.err(502, "UNAVAILABLE", "upstream unreachable")
            digest = st.tags[key][0]
        with open(st.path(digest), "rb") as f:
            body = f.read()
        self.reply(200, body, dict(self.extra, **{
            "Content-Type": st.types.get(digest), "Docker-Content-Digest": digest,
            "ETag": f'"{digest}"'}), cache)

    def blob(self, up, name, digest):
        st = self.state
        if not DIGEST_RE.match(digest):
            return self.err(400, "DIGEST_INVALID", "invalid digest")
        cache = "hit"
        if not os.path.exists(st.path(digest)):
            if self.command == "HEAD":
                try:
                    s, h, _ = up.request("HEAD", name, f"/v2/{name}/blobs/{digest}")
                except OSError:
                    return self.err(502, "UNAVAILABLE")
                if s != 200:
                    return self.err(404, "BLOB_UNKNOWN")
                return self.reply(200, b"", dict(self.extra, **{
                    "Content-Length": h.get("Content-Length"), "Docker-Content-Digest": digest,
                    "Content-Type": "application/octet-stream"}), "miss")
            cache = "fill"
            streamed = {"n": 0, "started": False}

            def sink(length, chunk):
                if chunk is None:
                    streamed["started"] = True
                    self.send_response(200)
                    self.send_header("Content-Length", str(length))
                    self.send_header("Docker-Content-Digest", digest)
                    self.end_headers()
                else:
                    self.wfile.write(chunk)
                    streamed["n"] += len(chunk)

            try:
                ok = st.fill(up, name, digest, "blobs",
                             sink if "Range" not in self.headers else None)
            except OSError:
                if streamed["started"]:
                    self.close_connection = True
                    return
                return self.err(502, "UNAVAILABLE")
            if streamed["started"]:
                if not ok:
                    self.close_connection = True
                sys.stderr.write(f"- {self.client_address[0]} GET {self.path} 200 "
                                 f"{streamed['n']} 0ms fill\n")
                return
            if not ok:
                return self.err(404, "BLOB_UNKNOWN")
        with open(st.path(digest), "rb") as f:
            body = f.read()
        size, hdrs = len(body), dict(self.extra, **{
            "Content-Type": "application/octet-stream", "Docker-Content-Digest": digest,
            "ETag": f'"{digest}"', "Accept-Ranges": "bytes"})
        rng = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "") or "")
        if rng and (rng.group(1) or rng.group(2)):
            a, b = rng.groups()
            first, last = (int(a), int(b) if b else size - 1) if a else (size - int(b), size - 1)
            if first >= size or first < 0:
                return self.reply(416, b"", dict(hdrs, **{"Content-Range": f"bytes */{size}"}))
            last = min(last, size - 1)
            return self.reply(206, body[first:last + 1],
                              dict(hdrs, **{"Content-Range": f"bytes {first}-{last}/{size}"}), cache)
        self.reply(200, body, hdrs, cache)

    def unsupported(self):
        self.t0 = time.monotonic()
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.err(405, "UNSUPPORTED", "this is a read-only mirror")

    do_POST = do_PUT = do_DELETE = do_PATCH = unsupported


def main(argv):
    if "--version" in argv:
        print("regcache-standin 0.0.0")
        return 0
    cmd, cfg_path = argv[0], argv[argv.index("-c") + 1]
    try:
        cfg = load_config(cfg_path)
    except (ValueError, OSError, yaml.YAMLError) as e:
        print(f"regcache: {e}", file=sys.stderr)
        return 2
    if cmd == "check-config":
        return 0
    Handler.state = State(cfg)
    host, port = cfg["listen"].rsplit(":", 1)
    httpd = ThreadingHTTPServer((host, int(port)), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    stop.wait()
    httpd.shutdown()
    httpd.server_close()
    deadline = time.time() + cfg["grace"]
    while time.time() < deadline and threading.active_count() > 1:
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    http.client._MAXHEADERS = 100
    sys.exit(main(sys.argv[1:]))
