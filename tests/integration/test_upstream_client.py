# SPDX-License-Identifier: Apache-2.0
"""regcache's upstream client: redirects to a CDN without the registry's Authorization, Bearer
tokens cached per scope (and replaced before they lapse), HTTPS upstreams with ca_file (also
through HTTPS_PROXY), Basic auth upstreams, and a dead upstream that accepts but never answers.
Each test checks what the client got and what the upstream / token issuer / proxy / CDN saw."""

import http.client
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from cdn import CdnServer
from helpers import assert_error, get, mirror_has, since, wait_until
from registry_variants import ConfiguredUpstream, TlsTokenServer, start_mirror_with_env
from tlsproxy import Blackhole, ConnectProxy, TestCA
from token_server import TokenServer
from upstream import Upstream, count

KiB = 1024


@pytest.fixture
def cleanup():
    """A list of callables run at teardown, last added first (servers the test started)."""
    stops = []
    yield stops
    errors = []
    for fn in reversed(stops):
        try:
            fn()
        except Exception as e:  # keep stopping the rest
            errors.append(repr(e))
    assert not errors, errors


def pull_all(mirror, img, repo, tag):
    """GETs the manifest by tag and every blob through the mirror, checking the bytes."""
    s, h, body = get(mirror, f"/v2/{repo}/manifests/{tag}")
    assert s == 200, (s, body[:300])
    assert body == img.raw and h["docker-content-digest"] == img.digest
    for d in img.blob_digests:
        s, _, body = get(mirror, f"/v2/{repo}/blobs/{d}")
        assert s == 200, (d, s, body[:300])
        assert body == img.blobs[d]


def token_scopes(entries):
    return [tuple(e["query"].get("scope", [])) for e in entries if e["path"] == "/token"]


def non_401(reqs):
    return [r for r in reqs if r[2] != 401]


# -- 1. redirects ---------------------------------------------------------------------------------
@pytest.mark.parametrize("auth", ["token", "basic"])
@pytest.mark.parametrize("cdn_host", ["127.0.0.2", "127.0.0.1"],
                         ids=["other-address", "same-address-other-port"])
def test_blob_redirect_to_cdn_carries_no_authorization(cdn_host, auth, tmp_dir, token_server,
                                                       cleanup, mirror_factory, make_image, push):
    """docker-registry's `redirect` storage middleware answers blob GETs 307 to a CDN (here a
    file server on the registry's storage root, on 127.0.0.2 or on the registry's own address but
    another port): the mirror follows it and serves the right bytes, the registry answered each
    blob GET 307 (so the mirror's Bearer token or Basic credentials were accepted there), and the
    CDN got exactly one GET per blob, none carrying an Authorization header."""
    up = ConfiguredUpstream(os.path.join(tmp_dir, "up"), token_server, "registry.docker.io")
    cdn = CdnServer(up.root, os.path.join(tmp_dir, "cdn.jsonl"), host=cdn_host).start()
    cleanup.append(cdn.stop)
    mirror_cfg = {"name": "docker.io", "url": up.url}
    if auth == "basic":
        up.use_htpasswd({"pushuser": "pushpass", "mirroruser": "mirrorpass"})
        mirror_cfg.update(username="mirroruser", password="mirrorpass")
    up.use_redirect(cdn.base_url).start()
    cleanup.append(up.stop)
    img = push(make_image(701, (48 * KiB, 80 * KiB)), up, "library/redir", "v1")
    mirror = mirror_factory([mirror_cfg])
    cdn_mark, up_mark = len(cdn.requests()), up.mark()

    pull_all(mirror, img, "library/redir", "v1")

    reqs = since(up, up_mark)
    assert count(reqs, method="GET", kind="manifests", status=200) == 1, reqs
    for d in img.blob_digests:
        assert count(reqs, method="GET", kind="blobs", ref=d, status=307) == 1, (d, reqs)
        assert count(reqs, method="GET", kind="blobs", ref=d, status=200) == 0, (d, reqs)
    got = cdn.requests()[cdn_mark:]
    print("CDN saw:", *got, sep="\n  ")
    assert sorted(e["path"] for e in got if e["method"] == "GET") == \
        sorted(cdn.blob_url_path(d) for d in img.blob_digests), got
    leaked = [e for e in got if cdn.header(e, "Authorization")]
    assert not leaked, f"Authorization sent to the CDN at {cdn_host}:{cdn.port}: {leaked}"


# -- 2. Bearer tokens -------------------------------------------------------------------------------
def test_bearer_token_fetched_once_per_repository_scope(mirror, up, token_server, make_image,
                                                        push):
    """Pulling a manifest and several blobs of one repository costs ONE anonymous token request
    for repository:<name>:pull; a second repository gets its own token; going back to the first
    reuses its cached token (no token request, no 401 from the registry)."""
    a = push(make_image(711, (16 * KiB, 24 * KiB, 32 * KiB)), up, "library/tok-a", "v1")
    b = push(make_image(712, (16 * KiB,)), up, "library/tok-b", "v1")
    t0, m0 = len(token_server.requests()), up.mark()

    s, _, body = get(mirror, "/v2/library/tok-a/manifests/v1")
    assert s == 200 and body == a.raw
    last = a.blob_digests[-1]
    for d in a.blob_digests[:-1]:
        s, _, body = get(mirror, f"/v2/library/tok-a/blobs/{d}")
        assert s == 200 and body == a.blobs[d]
    new = token_server.requests()[t0:]
    assert token_scopes(new) == [("repository:library/tok-a:pull",)], new
    assert not any(e["auth"] for e in new), new
    assert all(e["query"].get("service") == ["registry.docker.io"] for e in new), new
    reqs = since(up, m0)
    # at most the very first request was refused (the mirror did not know the realm yet)
    assert count(reqs, status=401) <= 1, reqs
    assert len(non_401(reqs)) == len(a.blob_digests) and all(st == 200 for _, _, st in
                                                              non_401(reqs)), reqs

    t1, m1 = len(token_server.requests()), up.mark()
    pull_all(mirror, b, "library/tok-b", "v1")
    new = token_server.requests()[t1:]
    assert token_scopes(new) == [("repository:library/tok-b:pull",)], new
    assert all(st == 200 for _, _, st in non_401(since(up, m1)))

    t2, m2 = len(token_server.requests()), up.mark()
    s, _, body = get(mirror, f"/v2/library/tok-a/blobs/{last}")
    assert s == 200 and body == a.blobs[last]
    assert token_server.requests()[t2:] == []
    assert since(up, m2) == [("GET", f"/v2/library/tok-a/blobs/{last}", 200)]


def test_token_replaced_after_expiry(tmp_dir, cleanup, mirror_factory, make_image, push):
    """With tokens valid 3 s: requests within the lifetime reuse the token; a request after it
    lapsed is preceded by a new token request, and the registry never sees the lapsed token (no
    401 for it) - the mirror stops using a token before it expires."""
    ts = TokenServer(os.path.join(tmp_dir, "token3s"), expires_in=3).start()
    cleanup.append(ts.stop)
    up = Upstream(os.path.join(tmp_dir, "up"), ts, "registry.docker.io").start()
    cleanup.append(up.stop)
    img = push(make_image(713, (16 * KiB, 24 * KiB)), up, "library/tok-exp", "v1")
    mirror = mirror_factory([up])
    scope = ("repository:library/tok-exp:pull",)
    cfg, l1, l2 = img.blob_digests

    t0 = len(ts.requests())
    assert get(mirror, "/v2/library/tok-exp/manifests/v1")[2] == img.raw
    first = ts.requests()[t0:]
    assert token_scopes(first) == [scope], first
    issued = first[0]["time"]
    assert get(mirror, f"/v2/library/tok-exp/blobs/{cfg}")[2] == img.blobs[cfg]
    if time.time() - issued < 1.5:  # well inside the lifetime: must be reused
        assert len(ts.requests()) == t0 + 1, ts.requests()[t0:]

    time.sleep(max(0.0, issued + 3.5 - time.time()))
    t1, m1 = len(ts.requests()), up.mark()
    s, _, body = get(mirror, f"/v2/library/tok-exp/blobs/{l1}")
    assert s == 200 and body == img.blobs[l1]
    new = ts.requests()[t1:]
    assert token_scopes(new) == [scope], new
    reqs = since(up, m1)
    assert count(reqs, status=401) == 0, f"the lapsed token was presented: {reqs}"
    assert reqs == [("GET", f"/v2/library/tok-exp/blobs/{l1}", 200)], reqs
    # and the new token is reused
    assert get(mirror, f"/v2/library/tok-exp/blobs/{l2}")[2] == img.blobs[l2]
    assert len(ts.requests()) == t1 + 1


class SlowTokenServer(TokenServer):
    """A token issuer that takes `delay` seconds per token, so that requests started together are
    all waiting for a token at the same time."""
    delay = 0.0

    def make_token(self, *args):
        time.sleep(self.delay)
        return super().make_token(*args)


def test_concurrent_requests_share_one_token_fetch(tmp_dir, cleanup, mirror_factory, make_image,
                                                   push):
    """Once the token has lapsed, four blob GETs started together (as clients pull layers in
    parallel) all succeed and cost ONE token request for the scope, not one each."""
    ts = SlowTokenServer(os.path.join(tmp_dir, "token3s"), expires_in=3).start()
    cleanup.append(ts.stop)
    up = Upstream(os.path.join(tmp_dir, "up"), ts, "registry.docker.io").start()
    cleanup.append(up.stop)
    img = push(make_image(714, (16 * KiB,) * 4), up, "library/tok-par", "v1")
    mirror = mirror_factory([up])
    assert get(mirror, "/v2/library/tok-par/manifests/v1")[2] == img.raw
    time.sleep(3.5)
    ts.delay = 0.5
    t0 = len(ts.requests())
    layers = img.layer_digests
    with ThreadPoolExecutor(len(layers)) as pool:
        results = list(pool.map(lambda d: get(mirror, f"/v2/library/tok-par/blobs/{d}"), layers))
    for d, (s, _, body) in zip(layers, results):
        assert s == 200 and body == img.blobs[d]
    new = ts.requests()[t0:]
    assert token_scopes(new) == [("repository:library/tok-par:pull",)], \
        f"{len(new)} token requests for {len(layers)} concurrent blob GETs: {token_scopes(new)}"


# -- 3. HTTPS upstream, ca_file, HTTPS_PROXY -----------------------------------------------------------
@pytest.fixture
def tls_up(tmp_dir, cleanup, make_image, push):
    """A TLS docker-registry on 127.0.0.1 whose token issuer is HTTPS too, both with certificates
    from a throw-away CA; library/tls:v1 pushed. Returns (up, token server, ca, image)."""
    ca = TestCA(os.path.join(tmp_dir, "ca"))
    ts = TlsTokenServer(os.path.join(tmp_dir, "token-tls"), ca.server_context("token")).start()
    cleanup.append(ts.stop)
    cert, key = ca.issue("registry")
    up = ConfiguredUpstream(os.path.join(tmp_dir, "up"), ts, "registry.docker.io",
                            tls=(cert, key, ca.cert_path)).start()
    cleanup.append(up.stop)
    img = push(make_image(721, (32 * KiB, 48 * KiB)), up, "library/tls", "v1")
    return up, ts, ca, img


def test_https_upstream_untrusted_without_ca_file(tls_up, mirror_factory):
    """Without ca_file the system CAs do not trust the test CA: the mirror answers 5xx with a
    spec error body, the registry saw only a failed TLS handshake (no HTTP request), and the
    mirror keeps serving."""
    up, ts, ca, img = tls_up
    mirror = mirror_factory([{"name": "docker.io", "url": up.url}])
    m0, t0 = up.mark(), len(ts.requests())
    s, _, body = get(mirror, "/v2/library/tls/manifests/v1")
    assert_error(s, body, range(500, 600))
    s, _, body = get(mirror, f"/v2/library/tls/blobs/{img.blob_digests[0]}")
    assert_error(s, body, range(500, 600))
    assert since(up, m0) == []
    assert ts.requests()[t0:] == []
    wait_until(lambda: "TLS handshake error" in up.log_text(), 5,
               what="the registry to log the refused handshake")
    assert get(mirror, "/v2/")[0] == 200


def test_https_upstream_with_ca_file(tls_up, mirror_factory):
    """With ca_file = the test CA, pulls work; the registry and the (HTTPS) token issuer both saw
    the mirror's requests, so ca_file covers the token service too."""
    up, ts, ca, img = tls_up
    mirror = mirror_factory([{"name": "docker.io", "url": up.url, "ca_file": ca.cert_path}])
    m0, t0 = up.mark(), len(ts.requests())
    pull_all(mirror, img, "library/tls", "v1")
    reqs = since(up, m0)
    assert count(reqs, method="GET", kind="manifests", status=200) == 1, reqs
    assert sum(count(reqs, method="GET", kind="blobs", ref=d, status=200)
               for d in img.blob_digests) == len(img.blob_digests), reqs
    assert token_scopes(ts.requests()[t0:]) == [("repository:library/tls:pull",)]


def test_https_upstream_through_connect_proxy(tls_up, mirror_factory, cleanup):
    """With HTTPS_PROXY (and no NO_PROXY) in the mirror's environment, the HTTPS registry and the
    HTTPS token issuer are reached through CONNECT tunnels: pulls work, the proxy logged CONNECT
    127.0.0.1:<registry port> (and the token issuer's), and nothing else."""
    up, ts, ca, img = tls_up
    proxy = ConnectProxy()
    cleanup.append(proxy.stop)
    mirror = mirror_factory([{"name": "docker.io", "url": up.url, "ca_file": ca.cert_path}],
                            start=False)
    start_mirror_with_env(mirror, {"HTTPS_PROXY": proxy.url})
    m0 = up.mark()
    pull_all(mirror, img, "library/tls", "v1")
    assert count(since(up, m0), status=200) == 1 + len(img.blob_digests)
    targets = set(proxy.connects())
    print("proxy saw:", proxy.log, "registry port", up.port, "token port", ts.port)
    assert f"127.0.0.1:{up.port}" in targets, proxy.log
    assert targets <= {f"127.0.0.1:{up.port}", f"127.0.0.1:{ts.port}"}, proxy.log
    assert all(m == "CONNECT" for m, _ in proxy.log), proxy.log


# -- 4. Basic auth ----------------------------------------------------------------------------------
@pytest.fixture
def basic_up(tmp_dir, token_server, cleanup, make_image, push):
    up = ConfiguredUpstream(os.path.join(tmp_dir, "up"), token_server, "basic")
    up.use_htpasswd({"pushuser": "pushpass", "mirroruser": "mirrorpass"}).start()
    cleanup.append(up.stop)
    img = push(make_image(731, (16 * KiB, 40 * KiB)), up, "library/basic", "v1")
    return up, img


def test_basic_auth_upstream_with_credentials(basic_up, token_server, mirror_factory):
    """An upstream challenging with Basic: with username/password configured, manifest and blobs
    come through; the registry (which only answers 200 to a valid htpasswd user) refused at most
    the first request, and no token was asked for."""
    up, img = basic_up
    mirror = mirror_factory([{"name": "docker.io", "url": up.url, "username": "mirroruser",
                              "password": "mirrorpass"}])
    m0, t0 = up.mark(), len(token_server.requests())
    pull_all(mirror, img, "library/basic", "v1")
    reqs = since(up, m0)
    assert count(reqs, status=401) <= 1, reqs
    assert len(non_401(reqs)) == 1 + len(img.blob_digests), reqs
    assert all(st == 200 for _, _, st in non_401(reqs)), reqs
    assert token_server.requests()[t0:] == []


@pytest.mark.parametrize("creds", [None, ("mirroruser", "wrong")], ids=["none", "wrong"])
def test_basic_auth_upstream_refused(basic_up, mirror_factory, creds):
    """Without (or with wrong) credentials the upstream's 401 becomes a 404 or 5xx with a spec
    error body, after a bounded number of attempts, and the mirror keeps serving."""
    up, img = basic_up
    cfg = {"name": "docker.io", "url": up.url}
    if creds:
        cfg.update(username=creds[0], password=creds[1])
    mirror = mirror_factory([cfg])
    m0 = up.mark()
    s, _, body = get(mirror, "/v2/library/basic/manifests/v1")
    assert s == 404 or 500 <= s < 600, (s, body)
    assert_error(s, body, s)
    s, _, body = get(mirror, f"/v2/library/basic/blobs/{img.blob_digests[0]}")
    assert s == 404 or 500 <= s < 600, (s, body)
    assert_error(s, body, s)
    reqs = since(up, m0)
    assert reqs and all(st == 401 for _, _, st in reqs), reqs
    assert len(reqs) <= 4, f"too many attempts: {reqs}"
    assert get(mirror, "/v2/")[0] == 200


# -- 5. dead upstream ---------------------------------------------------------------------------------
def test_blackhole_upstream_answers_an_error_not_a_hang(cleanup, mirror_factory):
    """An upstream that accepts connections and never answers: with connect/low_speed 2s a
    manifest GET and a blob GET each get a 5xx spec error (within 30 s), the blackhole did get
    the connections, and the mirror still answers /v2/ afterwards."""
    bh = Blackhole()
    cleanup.append(bh.stop)
    mirror = mirror_factory([{"name": "docker.io", "url": bh.url}],
                            extra={"timeouts": {"connect": "2s", "low_speed": "2s"}})
    for path in ("/v2/library/dead/manifests/latest",
                 "/v2/library/dead/blobs/sha256:" + "ab" * 32):
        t = time.monotonic()
        try:
            s, _, body, _ = mirror.request("GET", path, {"Accept": "*/*"}, timeout=30)
        except socket.timeout:
            pytest.fail(f"{path}: no answer within 30 s")
        assert_error(s, body, range(500, 600))
        print(f"{path}: {s} after {time.monotonic() - t:.1f}s")
    assert bh.accepted >= 1
    assert get(mirror, "/v2/")[0] == 200


def test_blackhole_token_service_answers_an_error_not_a_hang(token_server, tmp_dir, cleanup,
                                                            mirror_factory):
    """A registry whose token realm accepts connections and never answers: the manifest GET gets
    a 5xx spec error within 30 s, the registry saw the (refused) manifest GET, the blackhole got
    the token request's connection, and the mirror still answers /v2/."""
    bh = Blackhole()
    cleanup.append(bh.stop)
    realm = SimpleNamespace(url=bh.url + "/token", issuer=token_server.issuer,
                            cert_path=token_server.cert_path)
    up = Upstream(os.path.join(tmp_dir, "up"), realm, "registry.docker.io").start()
    cleanup.append(up.stop)
    mirror = mirror_factory([up], extra={"timeouts": {"connect": "2s", "low_speed": "2s"}})
    m0 = up.mark()
    try:
        s, _, body, _ = mirror.request("GET", "/v2/library/dead/manifests/latest",
                                       {"Accept": "*/*"}, timeout=30)
    except socket.timeout:
        pytest.fail("no answer within 30 s")
    assert_error(s, body, range(500, 600))
    assert count(since(up, m0), method="GET", kind="manifests", status=401) >= 1
    assert bh.accepted >= 1
    assert get(mirror, "/v2/")[0] == 200


@pytest.mark.parametrize("kind", ["manifests", "blobs"])
def test_upstream_stalling_mid_body_does_not_hang_the_client(kind, cleanup, mirror_factory):
    """An upstream that sends a 200 with Content-Length 100000, 1000 bytes of body and then
    nothing: within 30 s the client gets a 5xx spec error or a response cut short (never a
    complete 200), nothing is stored for the digest, and the mirror still answers /v2/."""
    ctype = (b"application/vnd.docker.distribution.manifest.v2+json" if kind == "manifests"
             else b"application/octet-stream")
    bh = Blackhole(reply=b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype
                   + b"\r\nContent-Length: 100000\r\n\r\n{" + b" " * 999)
    cleanup.append(bh.stop)
    mirror = mirror_factory([{"name": "docker.io", "url": bh.url}],
                            extra={"timeouts": {"connect": "2s", "low_speed": "2s"}})
    digest = "sha256:" + "cd" * 32
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=30)
    try:
        conn.request("GET", f"/v2/library/stall/{kind}/{digest}", headers={"Accept": "*/*"})
        resp = conn.getresponse()
        try:
            body, cut = resp.read(), False
        except (http.client.IncompleteRead, ConnectionResetError):
            body, cut = b"", True
    except socket.timeout:
        pytest.fail(f"{kind}: no complete answer within 30 s")
    finally:
        conn.close()
    print(f"{kind}: status {resp.status}, {'cut short' if cut else f'{len(body)} bytes'}")
    if resp.status == 200:
        assert cut, f"a complete 200 of {len(body)} bytes from a stalled upstream"
    else:
        assert_error(resp.status, body, range(500, 600))
    assert bh.accepted >= 1
    assert not mirror_has(mirror, digest)
    assert get(mirror, "/v2/")[0] == 200
