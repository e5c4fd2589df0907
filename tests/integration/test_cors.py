# SPDX-License-Identifier: Apache-2.0
"""CORS for browser UIs: preflights from an allowed origin are answered 204 before auth, answers
to it expose the registry's headers, other origins get nothing; and a real headless Chromium on
a page of another origin reads a manifest and its digest through an authenticated fetch()."""

import http.server
import os
import re
import signal
import subprocess
import threading

import pytest

from helpers import get, since
from mirror import request
from test_auth import ALICE, basic, make_users
from upstream import count

CHROMIUM = "/usr/bin/chromium"
ACCEPT = ("application/vnd.oci.image.manifest.v1+json, "
          "application/vnd.docker.distribution.manifest.v2+json")


def preflight(m, path, origin, method="GET", headers="authorization, accept"):
    s, h, body, _ = request(m.port, "OPTIONS", path,
                            {"Origin": origin, "Access-Control-Request-Method": method,
                             "Access-Control-Request-Headers": headers})
    return s, h, body


def cors_mirror(mirror_factory, up, tmp_dir, cors, anonymous="none"):
    return mirror_factory([up], extra={
        "auth": {"htpasswd": make_users(tmp_dir, ALICE), "anonymous": anonymous},
        "cors": cors})


def test_a_preflight_from_an_allowed_origin_is_answered_before_auth(mirror_factory, up,
                                                                    make_image, push, tmp_dir):
    img = push(make_image(1111, fmt="oci"), up, "library/ui", "v1")
    ui = "http://ui.example.org:8080"
    m = cors_mirror(mirror_factory, up, tmp_dir, {"allow_origins": [ui, "https://other.example"]})
    path = "/v2/library/ui/manifests/v1"
    s, h, body = preflight(m, path, ui)
    assert s == 204 and body == b""
    assert h["access-control-allow-origin"] == ui and h["vary"] == "Origin"
    assert h["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    allowed = [x.strip().lower() for x in h["access-control-allow-headers"].split(",")]
    assert {"authorization", "accept", "content-type", "range"} <= set(allowed)
    assert h["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in h and "www-authenticate" not in h
    # the actual request, with credentials: the answer and the headers a UI reads
    s, h, body, _ = request(m.port, "GET", path, {"Origin": ui, "Accept": ACCEPT,
                                                  **basic(*ALICE)})
    assert s == 200 and h["docker-content-digest"] == img.digest
    assert h["access-control-allow-origin"] == ui
    exposed = [x.strip().lower() for x in h["access-control-expose-headers"].split(",")]
    for name in ("docker-content-digest", "www-authenticate", "link", "content-range",
                 "docker-distribution-api-version", "x-request-id", "x-cache"):
        assert name in exposed, exposed
    # a 401 to the UI is readable too: it must see the challenge to ask for a password
    s, h, _, _ = request(m.port, "GET", path, {"Origin": ui})
    assert s == 401 and h["access-control-allow-origin"] == ui and "www-authenticate" in h
    # origins are matched whole
    s, h, _ = preflight(m, path, "http://ui.example.org:8081")
    assert s == 403 and not any(k.startswith("access-control-") for k in h), h
    s, h, _, _ = request(m.port, "GET", path, {"Origin": "http://evil.example", **basic(*ALICE)})
    assert s == 200 and not any(k.startswith("access-control-") for k in h), h
    # without an Origin nothing changes
    s, h, _, _ = request(m.port, "GET", path, basic(*ALICE))
    assert s == 200 and not any(k.startswith("access-control-") for k in h)
    preflights = [e for e in m.entries() if e.method == "OPTIONS"]
    assert [e.status for e in preflights] == [204, 403]


def test_cors_is_off_by_default(mirror_factory, up, tmp_dir):
    m = mirror_factory([up], extra={"auth": {"htpasswd": make_users(tmp_dir, ALICE)}})
    s, h, _ = preflight(m, "/v2/", "http://ui.example")
    assert s in (401, 405) and not any(k.startswith("access-control-") for k in h), (s, h)
    s, h, _, _ = request(m.port, "GET", "/v2/", {"Origin": "http://ui.example"})
    assert not any(k.startswith("access-control-") for k in h)


def test_any_origin_credentials_and_methods(mirror_factory, up, tmp_dir):
    m = cors_mirror(mirror_factory, up, tmp_dir, {"allow_origins": ["*"]}, anonymous="pull")
    s, h, _ = preflight(m, "/v2/", "http://anything.example")
    assert s == 204 and h["access-control-allow-origin"] == "*" and "vary" not in h
    m2 = cors_mirror(mirror_factory, up, tmp_dir,
                     {"allow_origins": ["http://ui.example"], "allow_credentials": True,
                      "allow_methods": ["GET", "HEAD", "DELETE", "OPTIONS"],
                      "allow_headers": ["Authorization", "Accept"], "max_age": "1h"})
    s, h, _ = preflight(m2, "/v2/team/app/manifests/v1", "http://ui.example", method="DELETE")
    assert s == 204 and h["access-control-allow-origin"] == "http://ui.example"
    assert h["access-control-allow-credentials"] == "true"
    assert h["access-control-allow-methods"] == "GET, HEAD, DELETE, OPTIONS"
    assert h["access-control-allow-headers"] == "Authorization, Accept"
    assert h["access-control-max-age"] == "3600"
    s, h, _, _ = request(m2.port, "GET", "/v2/", {"Origin": "http://ui.example"})
    assert h["access-control-allow-credentials"] == "true" and h["vary"] == "Origin"


# -- a real browser ---------------------------------------------------------------------------

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
fetch("%(url)s", {headers: {"Authorization": "%(auth)s", "Accept": "%(accept)s"}})
  .then(function (r) {
    document.getElementById("out").textContent = "status=" + r.status + " digest=" +
      r.headers.get("Docker-Content-Digest") + " cache=" + r.headers.get("X-Cache") +
      " id=" + r.headers.get("X-Request-Id");
  })
  .catch(function (e) { document.getElementById("out").textContent = "failed: " + e; });
</script></body></html>
"""


class PageServer:
    """Serves one page (set once the mirror's port is known) on its own 127.0.0.1 port: an
    origin of its own."""

    def __init__(self):
        self.page = b""
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = server.page
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def chromium_dom(url, profile):
    """The DOM of url once its script ran, from headless Chromium (its whole process group is
    killed afterwards, whatever happens)."""
    p = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                          "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
                          "--virtual-time-budget=5000", "--dump-dom", url],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=60)
        return out.decode("utf-8", errors="replace")
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def result_of(dom):
    m = re.search(r'<pre id="out">([^<]*)</pre>', dom)
    assert m, dom[-2000:]
    return m.group(1)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_headless_chromium_reads_a_manifest_across_origins_with_auth(mirror_factory, up,
                                                                     make_image, push, tmp_dir):
    img = push(make_image(1112, fmt="oci"), up, "library/browser", "v1")
    allowed, denied = PageServer(), PageServer()
    try:
        m = cors_mirror(mirror_factory, up, tmp_dir, {"allow_origins": [allowed.origin]})
        page = (PAGE % {"url": f"http://127.0.0.1:{m.port}/v2/library/browser/manifests/v1",
                        "auth": basic(*ALICE)["Authorization"], "accept": ACCEPT}).encode()
        allowed.page = denied.page = page
        mark = up.mark()
        out = result_of(chromium_dom(allowed.origin + "/", os.path.join(tmp_dir, "profile1")))
        assert f"status=200 digest={img.digest} cache=MISS" in out, out
        # the browser asked first (a preflight, answered without credentials), then fetched
        entries = m.entries()
        opts = [e for e in entries if e.method == "OPTIONS"]
        gets = [e for e in entries if e.method == "GET" and e.path.endswith("/manifests/v1")]
        assert [e.status for e in opts] == [204], entries
        assert [e.status for e in gets] == [200], entries
        assert out.split(" id=")[1] in m.log_text()  # the X-Request-Id it read is logged
        assert count(since(up, mark), method="GET", kind="manifests") == 1
        # the same page from an origin the mirror does not allow: the browser refuses
        out = result_of(chromium_dom(denied.origin + "/", os.path.join(tmp_dir, "profile2")))
        assert out.startswith("failed: TypeError"), out
        assert img.digest not in out
        opts = [e for e in m.entries() if e.method == "OPTIONS"]
        assert [e.status for e in opts] == [204, 403]
        gets = [e for e in m.entries() if e.method == "GET" and e.path.endswith("/manifests/v1")]
        assert len(gets) == 1  # the browser never sent the request itself
    finally:
        allowed.stop()
        denied.stop()
