# SPDX-License-Identifier: Apache-2.0
"""Routing between two upstreams: by ?ns=, by /v2/<upstream-name>/ path prefix, and by default
(first upstream); Docker Hub's implicit library/ prefix; per-upstream credentials."""

import pytest

from helpers import get, since
from upstream import count


@pytest.fixture
def two(upstream_factory, mirror_factory, make_image, push):
    """docker.io -> upstream A, quay.io -> upstream B (with credentials); org/app:1 differs
    between the two, and A also has library/alpinex:t."""
    a = upstream_factory("registry.docker.io")
    b = upstream_factory("quay.io-test")
    img_a = push(make_image(50), a, "org/app", "1")
    img_b = push(make_image(51), b, "org/app", "1")
    alp = push(make_image(52), a, "library/alpinex", "t")
    mirror = mirror_factory([{"name": "docker.io", "url": a.url},
                             {"name": "quay.io", "url": b.url, "username": "pushuser",
                              "password": "pushpass"}])
    return mirror, a, b, img_a, img_b, alp


def test_ns_query_selects_upstream(two):
    """?ns=quay.io reaches the second upstream (and says so in OCI-Namespace); ?ns=docker.io the
    first."""
    mirror, a, b, img_a, img_b, _ = two
    ma, mb = a.mark(), b.mark()
    s, h, body = get(mirror, "/v2/org/app/manifests/1?ns=quay.io")
    assert s == 200 and body == img_b.raw
    assert h.get("oci-namespace") == "quay.io"
    assert count(since(b, mb), method="GET", kind="manifests") == 1
    assert count(since(a, ma), kind="manifests") == 0
    s, h, body = get(mirror, "/v2/org/app/manifests/1?ns=docker.io")
    assert s == 200 and body == img_a.raw
    layer = img_b.layer_digests[0]
    s, _, body = get(mirror, f"/v2/org/app/blobs/{layer}?ns=quay.io")
    assert s == 200 and body == img_b.blobs[layer]


def test_path_prefix_selects_upstream(two):
    """/v2/quay.io/org/app/... reaches upstream B's org/app."""
    mirror, a, b, img_a, img_b, _ = two
    ma = a.mark()
    s, h, body = get(mirror, "/v2/quay.io/org/app/manifests/1")
    assert s == 200 and body == img_b.raw and h["docker-content-digest"] == img_b.digest
    layer = img_b.layer_digests[0]
    assert get(mirror, f"/v2/quay.io/org/app/blobs/{layer}")[2] == img_b.blobs[layer]
    assert count(since(a, ma)) == 0


def test_default_route_is_first_upstream(two):
    """Without ns or prefix, org/app comes from the first upstream."""
    mirror, a, b, img_a, img_b, _ = two
    mb = b.mark()
    s, h, body = get(mirror, "/v2/org/app/manifests/1")
    assert s == 200 and body == img_a.raw
    assert count(since(b, mb)) == 0


def test_docker_io_single_component_names_get_library_prefix(two):
    """/v2/docker.io/alpinex/manifests/t reaches upstream repository library/alpinex."""
    mirror, a, b, _, _, alp = two
    ma = a.mark()
    s, _, body = get(mirror, "/v2/docker.io/alpinex/manifests/t")
    assert s == 200 and body == alp.raw
    reqs = since(a, ma)
    assert count(reqs, kind="manifests") >= 1
    assert all(p.startswith("/v2/library/alpinex/") for _, p, _ in reqs if p != "/v2/"), reqs


def test_configured_credentials_are_used_for_tokens(two, token_server):
    """The quay.io upstream's username/password are sent to the token issuer; the anonymous
    docker.io upstream sends none."""
    mirror, a, b, img_a, img_b, _ = two
    before = len(token_server.requests())
    assert get(mirror, "/v2/org/app/manifests/1?ns=quay.io")[0] == 200
    assert get(mirror, "/v2/org/app/manifests/1")[0] == 200
    new = token_server.requests()[before:]
    by_service = {}
    for r in new:
        by_service.setdefault(r["query"].get("service", [""])[0], []).append(r)
    assert by_service.get("quay.io-test"), new
    assert all(r["auth"] and r["user"] == "pushuser" for r in by_service["quay.io-test"])
    assert by_service.get("registry.docker.io"), new
    assert not any(r["auth"] for r in by_service["registry.docker.io"])
    for r in new:
        assert r["query"]["scope"] and all(":org/app:" in s or ":library/" in s
                                           for s in r["query"]["scope"]), r



def test_tags_pagination_link_follows_the_clients_route(upstream_factory, mirror_factory):
    """An upstream's tags/list Link names its own path (org/app); the mirror's names the path the
    client used (the quay.io/ prefix, or ?ns=), so following it stays on that upstream. (The
    distribution registry 2.8 does not paginate tags; a proxy in front of it answers tags/list
    the way Docker Hub does, n at a time with a Link.)"""
    import json
    import re
    from faultproxy import FaultProxy
    a, b = upstream_factory("registry.docker.io"), upstream_factory("quay.io-test")
    tags = ["1", "2", "3"]

    def paginate(method, path):
        m = re.fullmatch(r"/v2/org/app/tags/list\?(.*)", path)
        if method != "GET" or not m:
            return None
        q = dict(kv.split("=", 1) for kv in m.group(1).split("&") if "=" in kv)
        rest = [t for t in tags if "last" not in q or t > q["last"]]
        page = rest[:int(q.get("n", "100"))]
        headers = [("Content-Type", "application/json")]
        if len(page) < len(rest):
            headers.append(("Link", f'</v2/org/app/tags/list?last={page[-1]}&n={q["n"]}>; '
                                    'rel="next"'))
        return 200, headers, json.dumps({"name": "org/app", "tags": page}).encode()

    proxy = FaultProxy(b.port)
    try:
        proxy.answer = paginate
        mirror = mirror_factory([{"name": "docker.io", "url": a.url},
                                 {"name": "quay.io", "url": proxy.url}])
        check_links(mirror, proxy, tags)
    finally:
        proxy.stop()


def check_links(mirror, proxy, tags):
    import json
    import re

    def follow(path):
        seen, links = [], []
        while path:
            s, h, body = get(mirror, path, accept=False)
            assert s == 200, body
            seen += json.loads(body)["tags"]
            path = None
            if "link" in h:
                links.append(h["link"])
                m = re.fullmatch(r'<(/v2/[^>]+)>; rel="next"', h["link"])
                assert m, h["link"]
                path = m.group(1)
        return seen, links

    seen, links = follow("/v2/quay.io/org/app/tags/list?n=1")
    assert seen == tags
    assert links[0] == '</v2/quay.io/org/app/tags/list?n=1&last=1>; rel="next"'
    seen, links = follow("/v2/org/app/tags/list?n=2&ns=quay.io")
    assert seen == tags
    assert links == ['</v2/org/app/tags/list?n=2&last=2&ns=quay.io>; rel="next"']
    assert all(p.startswith("/v2/org/app/tags/list?") for _, p, _ in proxy.requests())
