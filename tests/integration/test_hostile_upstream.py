# SPDX-License-Identifier: Apache-2.0
"""An upstream (or a host it points at) that is hostile: it names a token realm, a redirect
target or header values chosen to steal the upstream credentials, reach the mirror's own
network, inject headers into the mirror's answers, or hold requests and disk forever. Each
case runs against scripted.Scripted and checks what every party saw."""

import base64
import json
import os
import sqlite3
import threading
import time

from helpers import assert_error, get, mirror_has, raw_exchange, wait_until
from scripted import OCI_MANIFEST, Reply, Scripted, digest_of, image_manifest
from tlsproxy import TestCA

USER, PASSWORD = "alice", "s3cret-upstream-pw"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def servers(n, **kw):
    made = [Scripted(**kw) for _ in range(n)]
    return made


def stop(*ss):
    for s in ss:
        s.stop()


def upstream_entry(up, **extra):
    return {"name": "docker.io", "url": up.url, "username": USER, "password": PASSWORD,
            **extra}


def saw_password(s):
    """True when s received the upstream password in any form."""
    for r in s.requests():
        text = " ".join(f"{k}: {v}" for k, v in r.headers.items()) + " " + r.target
        if PASSWORD in text or BASIC.split()[1] in text or "authorization" in r.headers:
            return True
    return False


def a_manifest(seed=b"x"):
    body, _ = image_manifest(b'{"seed":"' + seed + b'"}', (seed,))
    return body


# -- item 1: the upstream credentials go to the upstream's own realm only -----------------------

def test_a_cdn_answering_401_neither_replaces_the_realm_nor_gets_credentials(mirror_factory):
    up, cdn, evil = servers(3)
    try:
        data = b"a blob behind a CDN that asks for a token of its own"
        d = digest_of(data)
        up.route("GET", rf"/v2/library/app/blobs/{d}",
                 lambda req: Reply(302, [("Location", f"{cdn.url}/cdn/{d}")]))
        body = a_manifest()
        up.manifest("library/app", "1", body)
        up.token_endpoint()
        up.bearer(realm=f"{up.url}/token")
        cdn.route("GET", r"/cdn/.*", lambda req: Reply.error(401, "UNAUTHORIZED", [(
            "WWW-Authenticate", f'Bearer realm="{evil.url}/token",service="evil"')]))
        evil.token_endpoint(token="evil-token")
        m = mirror_factory([upstream_entry(up)])
        s, _, b = get(m, f"/v2/library/app/blobs/{d}")
        assert s >= 400 and not mirror_has(m, d)
        # the upstream's realm is still the one the upstream named
        s, _, b = get(m, "/v2/library/app/manifests/1")
        assert s == 200 and b == body
        assert evil.requests() == [], "a redirect target's realm was asked for a token"
        assert cdn.requests() and not saw_password(cdn), "credentials followed the redirect"
        tokens = up.requests(path=r"^/token$")
        assert tokens and all(r.header("authorization") == BASIC for r in tokens)
        assert "scripted-token" in up.requests(path="/manifests/")[-1].header("authorization")
    finally:
        stop(up, cdn, evil)


def test_credentials_never_follow_a_blob_redirect_to_another_host(mirror_factory):
    up, cdn = servers(2)
    try:
        data = b"blob on the CDN"
        d = digest_of(data)
        up.route("GET", rf"/v2/library/app/blobs/{d}",
                 lambda req: Reply(307, [("Location", f"{cdn.url}/signed/{d}?sig=1")]))
        up.basic()
        cdn.route("GET", r"/signed/.*", lambda req: Reply(
            200, [("Content-Type", "application/octet-stream")], data))
        m = mirror_factory([upstream_entry(up)])
        s, _, b = get(m, f"/v2/library/app/blobs/{d}")
        assert s == 200 and b == data
        assert up.requests(path="/blobs/")[-1].header("authorization") == BASIC
        assert len(cdn.requests()) == 1 and not saw_password(cdn)
    finally:
        stop(up, cdn)


def test_realms_with_userinfo_or_link_local_addresses_get_no_credentials(mirror_factory):
    up, evil = servers(2)
    try:
        up.route("*", r"/v2/library/userinfo/.*", lambda req: Reply.error(401, "UNAUTHORIZED", [(
            "WWW-Authenticate", f'Bearer realm="http://x:y@127.0.0.1:{evil.port}/token"')]))
        up.route("*", r"/v2/library/metadata/.*", lambda req: Reply.error(401, "UNAUTHORIZED", [(
            "WWW-Authenticate", 'Bearer realm="http://169.254.169.254/latest/token"')]))
        evil.token_endpoint()
        m = mirror_factory([upstream_entry(up)], extra={"timeouts": {"connect": "2s"}})
        s, _, b = get(m, "/v2/library/userinfo/manifests/1")
        assert_error(s, b, range(400, 600))
        assert evil.requests() == []
        s, _, b = get(m, "/v2/library/metadata/manifests/1")
        assert_error(s, b, range(400, 600))
        log = m.log_text()
        assert "refused its token realm http://x:y@127.0.0.1" in log
        assert "refused its token realm http://169.254.169.254/latest/token: a link-local" in log
    finally:
        stop(up, evil)


def test_an_https_upstream_sends_no_password_to_an_http_realm_nor_follows_to_http(
        mirror_factory, tmp_dir):
    ca = TestCA(os.path.join(tmp_dir, "ca"))
    up = Scripted(tls=ca.server_context())
    plain, = servers(1)
    try:
        data = b"blob redirected to plain http"
        d = digest_of(data)
        up.route("GET", rf"/v2/library/app/blobs/{d}",
                 lambda req: Reply(302, [("Location", f"{plain.url}/cdn/{d}")]))
        up.route("*", r"/v2/library/app/manifests/.*", lambda req: Reply.error(
            401, "UNAUTHORIZED", [("WWW-Authenticate", f'Bearer realm="{plain.url}/token"')]))
        plain.token_endpoint()
        plain.route("GET", r"/cdn/.*", lambda req: Reply(200, [], data))
        m = mirror_factory([upstream_entry(up, ca_file=ca.cert_path)])
        s, _, b = get(m, "/v2/library/app/manifests/1")
        assert_error(s, b, range(400, 600))
        s, _, b = get(m, f"/v2/library/app/blobs/{d}")
        assert_error(s, b, range(400, 600))
        assert up.requests(path="/manifests/"), "the https upstream was never asked"
        assert plain.requests() == [], "the mirror went from https to plain http"
        log = m.log_text()
        assert "plain http, from https" in log
    finally:
        stop(up, plain)


# -- item 4: redirects only for blobs, never into the mirror's own network ---------------------

def test_a_manifest_redirect_to_an_internal_address_is_not_fetched_nor_cached(mirror_factory):
    up, internal = servers(2)
    try:
        secret = a_manifest(b"secret")
        internal.route("GET", r"/secret.*", lambda req: Reply(
            200, [("Content-Type", OCI_MANIFEST)], secret))
        internal.route("GET", r"/tags", lambda req: Reply.json(
            200, {"name": "library/app", "tags": ["secret"]}))
        for method in ("GET", "HEAD"):
            up.route(method, r"/v2/library/app/manifests/.*",
                     lambda req: Reply(302, [("Location", f"{internal.url}/secret")]))
        up.route("GET", r"/v2/library/app/tags/list",
                 lambda req: Reply(302, [("Location", f"{internal.url}/tags")]))
        m = mirror_factory([{"name": "docker.io", "url": up.url}])
        for _ in range(2):
            s, _, b = get(m, "/v2/library/app/manifests/latest")
            assert_error(s, b, range(400, 600))
        s, _, b = get(m, "/v2/library/app/tags/list")
        assert s != 200 or b"secret" not in b
        assert internal.requests() == [], "a non-blob redirect was followed"
        assert not mirror_has(m, digest_of(secret))
        assert "redirects are followed for blobs only" in m.log_text()
    finally:
        stop(up, internal)


def test_a_token_realm_that_redirects_is_refused(mirror_factory):
    up, other = servers(2)
    try:
        up.manifest("library/app", "1", a_manifest())
        up.route("GET", r"/token", lambda req: Reply(302, [("Location", f"{other.url}/token")]))
        up.bearer(realm=f"{up.url}/token")
        other.token_endpoint()
        m = mirror_factory([upstream_entry(up)])
        s, _, b = get(m, "/v2/library/app/manifests/1")
        assert_error(s, b, range(400, 600))
        assert up.requests(path=r"^/token$")
        assert other.requests() == []
    finally:
        stop(up, other)


def test_blob_redirects_to_link_local_or_with_userinfo_are_refused(mirror_factory):
    up, cdn = servers(2)
    try:
        d1, d2, d3 = digest_of(b"one"), digest_of(b"two"), digest_of(b"three")
        up.route("GET", rf"/v2/library/app/blobs/{d3}", lambda req: Reply(
            302, [("Location", f"http://127.0.0.1:{cdn.port}/b\rX-Injected: 1")]))
        up.route("GET", rf"/v2/library/app/blobs/{d1}",
                 lambda req: Reply(302, [("Location", "http://169.254.169.254/latest/meta")]))
        up.route("GET", rf"/v2/library/app/blobs/{d2}",
                 lambda req: Reply(302, [("Location", f"http://u:p@127.0.0.1:{cdn.port}/b")]))
        cdn.route("GET", r"/b", lambda req: Reply(200, [], b"two"))
        m = mirror_factory([{"name": "docker.io", "url": up.url}],
                           extra={"timeouts": {"connect": "2s"}})
        for d in (d1, d2, d3):
            s, _, b = get(m, f"/v2/library/app/blobs/{d}")
            assert_error(s, b, range(400, 600))
            assert not mirror_has(m, d)
        assert cdn.requests() == []
        log = m.log_text()
        assert "refused a redirect to http://169.254.169.254/latest/meta: a link-local" in log
        assert "user name or password" in log
        assert "a redirect without a usable Location" in log
    finally:
        stop(up, cdn)


# -- item 11: header values with control characters never reach the mirror's answers ----------

def raw_get(m, path, accept=OCI_MANIFEST):
    return raw_exchange(m.port, (f"GET {path} HTTP/1.1\r\nHost: m\r\nAccept: {accept}\r\n"
                                 "Connection: close\r\n\r\n").encode(), timeout=15)


def head_of(raw):
    head, sep, _ = raw.partition(b"\r\n\r\n")
    assert sep, raw[:300]
    return head


def assert_clean(head):
    lines = head.split(b"\r\n")
    assert all(b"\r" not in ln and b"\n" not in ln and b"\0" not in ln for ln in lines), head
    assert b"injected" not in head.lower(), head


def test_control_characters_in_upstream_headers_are_never_copied(mirror_factory):
    up, = servers(1)
    try:
        body = a_manifest(b"ct")
        d = up.manifest("library/app", "1", body, media_type=OCI_MANIFEST + "\rX-Injected: 1",
                        headers=[("RateLimit-Limit", "100;w=21600"),
                                 ("RateLimit-Remaining", "50;w=21600"),
                                 ("Docker-RateLimit-Source", "10.0.0.1\rX-Injected: 1")])
        up.route("*", r"/v2/library/app/manifests/limited", lambda req: Reply.error(
            429, "TOOMANYREQUESTS", [("Retry-After", "5\rSet-Cookie: injected=1")]))
        up.route("*", r"/v2/library/app/manifests/soon", lambda req: Reply.error(
            429, "TOOMANYREQUESTS", [("Retry-After", "soon")]))
        m = mirror_factory([{"name": "docker.io", "url": up.url}])
        for _ in range(2):  # the fill, then the hit from the index
            head = head_of(raw_get(m, "/v2/library/app/manifests/1"))
            assert head.startswith(b"HTTP/1.1 200"), head
            assert_clean(head)
            assert f"content-type: {OCI_MANIFEST}".encode() in head.lower()
        m.stop()
        db = sqlite3.connect(f"file:{os.path.join(m.storage, 'regcache.db')}?mode=ro", uri=True)
        try:
            stored = [v for row in db.execute("SELECT media_type FROM manifests UNION ALL "
                                              "SELECT media_type FROM tags UNION ALL "
                                              "SELECT source FROM ratelimits") for v in row]
            assert db.execute("SELECT remaining FROM ratelimits").fetchall() == [(50,)]
        finally:
            db.close()
        assert stored and all(v is None or v.isprintable() for v in stored), stored
        assert not any(v and "injected" in v.lower() for v in stored), stored
        m.start()  # and from the database
        head = head_of(raw_get(m, f"/v2/library/app/manifests/{d}"))
        assert head.startswith(b"HTTP/1.1 200") and f"content-type: {OCI_MANIFEST}".encode() \
            in head.lower()
        assert_clean(head)
        for tag in ("limited", "soon"):
            head = head_of(raw_get(m, f"/v2/library/app/manifests/{tag}"))
            assert head.startswith(b"HTTP/1.1 429"), head
            assert_clean(head)
            retry = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"retry-after:")]
            assert all(ln.split(b":", 1)[1].strip().isdigit() for ln in retry), retry
        assert "ignored its Retry-After header" in m.log_text()
    finally:
        stop(up)


# -- item 16: a blob is cut at limits.max_blob_size ---------------------------------------------

def store_bytes(m):
    total = 0
    for sub in ("blobs", "tmp"):
        for dirpath, _, files in os.walk(os.path.join(m.storage, sub)):
            total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


def test_a_blob_over_max_blob_size_is_cut_and_discarded(mirror_factory):
    up, = servers(1)
    try:
        endless = digest_of(b"endless")
        big = digest_of(b"big")
        path = f"/v2/library/app/blobs/{endless}"
        up.route("GET", path, lambda req: Reply.endless(
            200, [("Content-Type", "application/octet-stream")], limit=48 << 20))
        up.route("GET", rf"/v2/library/app/blobs/{big}", lambda req: Reply.hang(
            200, [("Content-Length", str(4 << 20)), ("Content-Type", "application/octet-stream")]))
        m = mirror_factory([{"name": "docker.io", "url": up.url}],
                           extra={"limits": {"max_blob_size": "1MiB"}})
        s, _, b, _ = m.request("GET", path, timeout=20)
        assert_error(s, b, range(500, 600))
        time.sleep(0.5)
        with up._lock:
            sent = up.sent.get(path, 0)
        assert sent < 24 << 20, f"the mirror read {sent} bytes of an endless blob"
        s, h, b, _ = m.request("GET", f"/v2/library/app/blobs/{big}", timeout=20)
        assert_error(s, b, range(500, 600))
        assert not mirror_has(m, endless) and not mirror_has(m, big)
        assert store_bytes(m) == 0
        log = m.log_text()
        assert "sent a blob of more than 1048576 bytes (limits.max_blob_size)" in log
        assert "announced a blob of 4194304 bytes, over limits.max_blob_size" in log
    finally:
        stop(up)


# -- item 17: a dripping answer holds no manifest, token or tags request for long --------------

def test_a_dripping_manifest_token_or_tags_answer_ends_at_the_total_deadline(mirror_factory):
    up, auth = servers(2)
    try:
        body = a_manifest(b"drip")
        drip = [("Content-Type", OCI_MANIFEST), ("Content-Length", str(len(body)))]
        up.route("GET", r"/v2/library/app/manifests/drip",
                 lambda req: Reply.drip(200, drip, body, interval=0.3))
        tags = json.dumps({"name": "library/app", "tags": ["a"] * 100}).encode()
        up.route("GET", r"/v2/library/app/tags/list", lambda req: Reply.drip(
            200, [("Content-Type", "application/json"), ("Content-Length", str(len(tags)))],
            tags, interval=0.3))
        tok = json.dumps({"token": "t" * 200}).encode()
        auth.route("GET", r"/token", lambda req: Reply.drip(
            200, [("Content-Type", "application/json"), ("Content-Length", str(len(tok)))],
            tok, interval=0.3))
        up.route("GET", r"/v2/library/tokened/manifests/1", lambda req: None if req.header(
            "authorization", "").startswith("Bearer ") else Reply.error(
            401, "UNAUTHORIZED", [("WWW-Authenticate", f'Bearer realm="{auth.url}/token"')]))
        m = mirror_factory([{"name": "docker.io", "url": up.url}],
                           extra={"timeouts": {"total_small": "2s"}})
        results = []

        def pull(path):
            start = time.monotonic()
            try:
                s, _, b, _ = m.request("GET", path, timeout=20)
            except OSError as e:
                s, b = None, repr(e).encode()
            results.append((path, s, b, time.monotonic() - start))

        paths = ["/v2/library/app/manifests/drip"] * 2 + ["/v2/library/app/tags/list",
                                                          "/v2/library/tokened/manifests/1"]
        threads = [threading.Thread(target=pull, args=(p,)) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == len(paths), results
        for path, s, b, took in results:
            assert s is not None and 400 <= s < 600, (path, s, b[:200], took)
            assert took < 15, (path, took)
        assert auth.requests(path="/token")
        assert any(b"timeouts.total_small" in b for _, _, b, _ in results), results
        assert not mirror_has(m, digest_of(body))
    finally:
        stop(up, auth)


# -- item 21: an upstream name that is also a Docker Hub namespace -----------------------------

def test_an_upstream_name_without_a_dot_is_warned_about_at_load(mirror_factory):
    up, = servers(1)
    try:
        m = mirror_factory([{"name": "myorg", "url": up.url},
                            {"name": "localhost:5001", "url": up.url},
                            {"name": "docker.io", "url": up.url}])
        with open(m.config_path) as f:
            line = next(i for i, ln in enumerate(f, 1) if "name: myorg" in ln)
        log = wait_until(lambda: (lambda t: t if "no dot" in t else None)(m.log_text()),
                         timeout=5, what="the warning")
        assert f"{m.config_path}:{line}: upstreams[0].name: 'myorg' has no dot" in log
        assert "Docker Hub namespace" in log
        assert "'localhost:5001' has no dot" not in log and "'docker.io'" not in log
    finally:
        stop(up)
