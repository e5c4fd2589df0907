# SPDX-License-Identifier: Apache-2.0
"""Tiered mirrors: a child regcache whose upstream is a parent regcache (upstreams[].parent), in
front of Debian's docker-registry. What a pull costs each tier (the upstream's and the parent's
access logs), the ns the child passes on so the parent picks the same upstream, the Via that
refuses loops of mirrors with 508, and a parent that is down, draining (503) or failing (500):
the child serves what it had stale and answers 503, never 404, for what it never had, while a
parent's real 404 stays a 404."""

import socket
import time

import pytest

from faultproxy import FaultProxy
from helpers import assert_error, get, mirror_has, since, wait_until
from upstream import blob_gets, count

import procs


def parent_of(up, mirror_factory, **kw):
    return mirror_factory([up], revalidate_after=kw.pop("revalidate_after", "1h"), **kw)


def child_of(parent_url, mirror_factory, names=("docker.io",), **kw):
    return mirror_factory([{"name": n, "url": parent_url, "parent": True} for n in names],
                          revalidate_after=kw.pop("revalidate_after", "1h"), **kw)


def pull(m, repo, img, query=""):
    """The manifest and every blob of img through m; asserts the bytes."""
    q = f"?{query}" if query else ""
    s, h, body = get(m, f"/v2/{repo}/manifests/{img.tag}{q}")
    assert s == 200 and body == img.raw, (s, body[:300])
    for d in img.blob_digests:
        s, _, body = get(m, f"/v2/{repo}/blobs/{d}{q}")
        assert s == 200 and body == img.blobs[d], (d, s, body[:300])


def test_a_pull_through_the_child_fills_both_tiers_once(upstream_factory, mirror_factory,
                                                         make_image, push):
    """One upstream GET per blob and for the manifest; the parent and the child both keep it; a
    second pull through the child costs the parent nothing, and a pull through the parent
    afterwards costs the upstream nothing."""
    up = upstream_factory("registry.docker.io")
    img = push(make_image(1100, layer_sizes=(300 * 1024, 70 * 1024)), up, "team/app", "1")
    parent = parent_of(up, mirror_factory)
    child = child_of(f"http://127.0.0.1:{parent.port}", mirror_factory)
    mark = up.mark()
    pull(child, "team/app", img)
    reqs = since(up, mark)
    assert count(reqs, method="GET", kind="manifests") == 1, reqs
    assert blob_gets(reqs) == {d: 1 for d in img.blob_digests}, reqs
    for d in img.blob_digests:
        assert mirror_has(parent, d) and mirror_has(child, d)
    # what the child asked the parent: every request names the parent's upstream (ns)
    asked = [e for e in parent.entries() if e.path.startswith("/v2/team/app/")]
    assert asked and all(e.path.endswith("?ns=docker.io") for e in asked), asked
    n_parent = len(parent.entries())

    pull(child, "team/app", img)
    assert len(parent.entries()) == n_parent, parent.entries()[n_parent:]
    assert all(e.cache == "hit" for e in child.entries()[-len(img.blob_digests) - 1:])

    mark = up.mark()
    pull(parent, "team/app", img)
    assert count(since(up, mark)) == 0, since(up, mark)


def test_the_child_sends_ns_and_via(upstream_factory, mirror_factory, make_image, push):
    """Between child and parent: ?ns=<upstream name> on manifest and blob requests, and a Via
    naming the child, "1.1 <host>:<port>"; the parent's own upstream request carries the
    child's entry and then its own."""
    up = upstream_factory("registry.docker.io")
    img = push(make_image(1101), up, "team/via", "1")
    before_up = FaultProxy(up.port)
    try:
        parent = mirror_factory([{"name": "docker.io", "url": before_up.url}],
                                revalidate_after="1h")
        between = FaultProxy(parent.port)
        try:
            child = child_of(between.url, mirror_factory)
            pull(child, "team/via", img)
            heads = [(m, p, dict((k.lower(), v) for k, v in h)) for m, p, h in between.heads]
            api = [x for x in heads if x[1].startswith("/v2/team/via/")]
            assert api and all(p.endswith("ns=docker.io") for _, p, _ in api), api
            host = socket.gethostname()
            assert all(h.get("via") == f"1.1 {host}:{child.port}" for _, _, h in api), api
            chained = [dict((k.lower(), v) for k, v in h) for m, p, h in before_up.heads
                       if p.startswith("/v2/team/via/")]
            want = f"1.1 {host}:{child.port}, 1.1 {host}:{parent.port}"
            assert chained and all(h.get("via") == want for h in chained), chained
        finally:
            between.stop()
    finally:
        before_up.stop()


def test_two_upstreams_of_the_parent_through_ns(upstream_factory, mirror_factory, make_image,
                                                push):
    """The parent has docker.io (A) and quay.io (B), both with org/app:1 (different images); the
    child has both as parent upstreams. ?ns=quay.io and the /v2/quay.io/ prefix at the child
    reach B's image, and only B; without ns, A's."""
    a = upstream_factory("registry.docker.io")
    b = upstream_factory("quay.io-test")
    img_a = push(make_image(1102), a, "org/app", "1")
    img_b = push(make_image(1103), b, "org/app", "1")
    parent = mirror_factory([{"name": "docker.io", "url": a.url},
                             {"name": "quay.io", "url": b.url, "username": "pushuser",
                              "password": "pushpass"}], revalidate_after="1h")
    child = child_of(f"http://127.0.0.1:{parent.port}", mirror_factory,
                     names=("docker.io", "quay.io"))
    ma, mb = a.mark(), b.mark()
    pull(child, "org/app", img_b, query="ns=quay.io")
    assert count(since(a, ma)) == 0, since(a, ma)
    reqs = since(b, mb)
    assert count(reqs, method="GET", kind="manifests") == 1
    assert blob_gets(reqs) == {d: 1 for d in img_b.blob_digests}, reqs
    # the path prefix, at the child: the same upstream of the parent, already cached
    s, h, body = get(child, "/v2/quay.io/org/app/manifests/1")
    assert s == 200 and body == img_b.raw
    layer = img_b.layer_digests[0]
    assert get(child, f"/v2/quay.io/org/app/blobs/{layer}")[2] == img_b.blobs[layer]
    # no ns: the first upstream, A
    s, h, body = get(child, "/v2/org/app/manifests/1")
    assert s == 200 and body == img_a.raw
    assert count(since(b, mb), method="GET", kind="manifests") == 1


def loop_requests(m):
    return [e for e in m.entries() if e.path.startswith("/v2/team/")]


def test_a_mirror_that_is_its_own_upstream_answers_508(mirror_factory):
    """Its request comes back with its own Via entry: 508 Loop Detected with a spec error body,
    at once, one looped request per client request, for manifests, blobs and tags alike."""
    port = procs.free_port()
    m = mirror_factory([{"name": "docker.io", "url": f"http://127.0.0.1:{port}"}], port=port)
    digest = "sha256:" + "ab" * 32
    for path in ("/v2/team/self/manifests/1", f"/v2/team/self/blobs/{digest}",
                 "/v2/team/self/tags/list"):
        t = time.monotonic()
        s, h, body = get(m, path)
        assert time.monotonic() - t < 5
        assert_error(s, body, 508, "UNAVAILABLE")
        assert b"loop" in body.lower()
    entries = loop_requests(m)
    assert len(entries) == 6 and all(e.status == 508 for e in entries), entries
    assert get(m, "/healthz")[0] == 200


def test_a_parent_whose_upstream_is_its_child_answers_508(mirror_factory):
    """child -> parent -> child: the child refuses its own request when it comes back, the
    parent passes the 508 on, the client gets it at once; each mirror saw a bounded number of
    requests, and both keep serving."""
    pport, cport = procs.free_port(), procs.free_port()
    parent = mirror_factory([{"name": "docker.io", "url": f"http://127.0.0.1:{cport}"}],
                            port=pport)
    child = child_of(f"http://127.0.0.1:{pport}", mirror_factory, port=cport)
    digest = "sha256:" + "ef" * 32
    paths = ("/v2/team/loop/manifests/1", f"/v2/team/loop/blobs/{digest}",
             "/v2/team/loop/tags/list")
    for m in (child, parent):
        for path in paths:
            t = time.monotonic()
            s, h, body = get(m, path)
            assert time.monotonic() - t < 5, path
            assert_error(s, body, 508, "UNAVAILABLE")
    # through the child: child (the client's), parent, child (refused); through the parent:
    # parent, child, parent (refused); for each path
    assert len(loop_requests(child)) == 9, loop_requests(child)
    assert len(loop_requests(parent)) == 9, loop_requests(parent)
    assert get(child, "/healthz")[0] == 200 and get(parent, "/healthz")[0] == 200


def test_more_than_eight_proxies_in_via_is_refused(mirror_factory, up, make_image, push):
    """A Via of 9 entries (none of them this mirror) is refused with 508 before going upstream;
    8 are fine, and the chain goes upstream with this mirror's entry added."""
    img = push(make_image(1104), up, "team/hops", "1")
    before_up = FaultProxy(up.port)
    try:
        m = mirror_factory([{"name": "docker.io", "url": before_up.url}])
        nine = ", ".join(f"1.1 hop{i}.example" for i in range(9))
        s, h, body = get(m, "/v2/team/hops/manifests/1", headers={"Via": nine})
        assert_error(s, body, 508, "UNAVAILABLE")
        assert not [p for _, p, _ in before_up.heads if p.startswith("/v2/team/")]
        eight = [("Via", "1.1 hop0.example (some proxy, v2)")] + \
            [("Via", f"HTTP/1.1 hop{i}.example") for i in range(1, 8)]
        s, h, body, _ = m.request("GET", "/v2/team/hops/manifests/1",
                                  headers=eight + [("Accept", img.media_type)])
        assert s == 200 and body == img.raw
        sent = [dict((k.lower(), v) for k, v in hd) for _, p, hd in before_up.heads
                if p.startswith("/v2/team/hops/manifests/")]
        want = ", ".join(["1.1 hop0.example"] + [f"HTTP/1.1 hop{i}.example" for i in range(1, 8)]
                         + [f"1.1 {socket.gethostname()}:{m.port}"])
        assert sent and all(x.get("via") == want for x in sent), sent
    finally:
        before_up.stop()


@pytest.fixture
def pulled(upstream_factory, mirror_factory, make_image, push):
    """up -> parent -> FaultProxy -> child (revalidate_after 1s); the child has pulled
    team/app:1; team/app:2 exists upstream but nobody pulled it."""
    up = upstream_factory("registry.docker.io")
    img = push(make_image(1105, layer_sizes=(90 * 1024,)), up, "team/app", "1")
    other = push(make_image(1106), up, "team/app", "2")
    parent = parent_of(up, mirror_factory, revalidate_after="1s")
    proxy = FaultProxy(parent.port)
    child = child_of(proxy.url, mirror_factory, revalidate_after="1s")
    pull(child, "team/app", img)
    yield up, parent, proxy, child, img, other
    proxy.stop()


def assert_serves_stale(child, img):
    time.sleep(1.2)  # past revalidate_after: the tag is revalidated first
    s, h, body = get(child, "/v2/team/app/manifests/1")
    assert s == 200 and body == img.raw, (s, body[:300])
    assert child.entries()[-1].cache == "stale", child.entries()[-1]
    for d in img.blob_digests:
        s, _, body = get(child, f"/v2/team/app/blobs/{d}")
        assert s == 200 and body == img.blobs[d]


def assert_unavailable_for_the_rest(child, other):
    s, h, body = get(child, "/v2/team/app/manifests/2")
    assert_error(s, body, 503, "UNAVAILABLE")
    s, h, body = get(child, f"/v2/team/app/manifests/{other.digest}")
    assert_error(s, body, 503, "UNAVAILABLE")
    s, h, body = get(child, f"/v2/team/app/blobs/{other.layer_digests[0]}")
    assert_error(s, body, 503, "UNAVAILABLE")
    return h


def test_a_stopped_parent_means_stale_and_503(pulled):
    """The parent gone (connection refused): what the child had is served stale, what it never
    had is 503 UNAVAILABLE, never 404."""
    up, parent, proxy, child, img, other = pulled
    parent.stop()
    procs.wait_for(lambda: not procs.port_open(parent.port), 10, "parent closed")
    assert_serves_stale(child, img)
    assert_unavailable_for_the_rest(child, other)
    assert "upstream docker.io: down (" in child.log_text()


@pytest.mark.parametrize("status", [503, 500, 502])
def test_a_parent_answering_5xx_means_stale_and_503(pulled, status):
    """A parent that answers 503 with Retry-After (draining), 500 or 502: the child serves the
    tag and blobs it had stale, and answers 503 for the rest, with the parent's Retry-After."""
    up, parent, proxy, child, img, other = pulled
    headers = [("Retry-After", "7")] if status == 503 else []
    body = b'{"errors":[{"code":"UNAVAILABLE","message":"draining","detail":null}]}'
    proxy.answer = lambda method, path: (status, headers + [
        ("Content-Type", "application/json")], body) if path.startswith("/v2/team/") else None
    assert_serves_stale(child, img)
    h = assert_unavailable_for_the_rest(child, other)
    assert any(o == status for _, p, o in proxy.requests() if p.startswith("/v2/team/app/"))
    if status == 503:
        s, h, body = get(child, "/v2/team/app/manifests/2")
        assert h.get("retry-after") == "7", h


def test_a_parent_whose_upstream_is_down_serves_stale_through_the_child(pulled):
    """The upstream stopped: the parent answers the child's revalidation from its own cache
    (stale), so the child serves the tag; for what neither has, the parent answers 503 and so
    does the child."""
    up, parent, proxy, child, img, other = pulled
    up.stop()
    time.sleep(1.2)
    s, h, body = get(child, "/v2/team/app/manifests/1")
    assert s == 200 and body == img.raw
    wait_until(lambda: any(e.cache == "stale" and e.path.startswith("/v2/team/app/manifests/1")
                           for e in parent.entries()), what="the parent to serve stale")
    assert_unavailable_for_the_rest(child, other)


def test_a_parents_404_is_a_404(pulled):
    """A tag or blob the parent's upstream does not have: 404 at the child, with the spec's
    code, remembered (the parent is not asked again within negative_ttl)."""
    up, parent, proxy, child, img, other = pulled
    s, h, body = get(child, "/v2/team/app/manifests/nope")
    assert_error(s, body, 404, "MANIFEST_UNKNOWN")
    s, h, body = get(child, "/v2/team/app/blobs/sha256:" + "cd" * 32)
    assert_error(s, body, 404, "BLOB_UNKNOWN")
    def nope():
        return [r for r in procs.wait_settled(proxy.requests) if "/manifests/nope" in r[1]]
    n = len(nope())
    assert n >= 1
    s, h, body = get(child, "/v2/team/app/manifests/nope")
    assert_error(s, body, 404, "MANIFEST_UNKNOWN")
    assert len(nope()) == n
