# SPDX-License-Identifier: Apache-2.0
"""Registry API basics over plain HTTP, checked against what the upstream serves and logs."""

import json
import socket

import pytest

import images
from helpers import (ACCEPT_HEADER, assert_error, blob_gets, get, mirror_has, read_response,
                     sha256, since, wait_until)
from mirror import request as raw_request


@pytest.fixture
def pushed(up, make_image, push):
    """One multi-layer Docker-schema2 image upstream as library/basic:v1."""
    return push(make_image(10, (64 * 1024, 300 * 1024)), up, "library/basic", "v1")


def test_v2_ping(mirror):
    """GET /v2/ answers 200 with the API version header."""
    status, headers, _ = get(mirror, "/v2/")
    assert status == 200
    assert headers.get("docker-distribution-api-version") == "registry/2.0"


@pytest.mark.parametrize("fmt,multi", [("docker", False), ("oci", False), ("docker", True),
                                       ("oci", True)])
def test_manifest_get_head_by_tag_and_digest(mirror, up, make_image, push, fmt, multi):
    """Manifest GET/HEAD by tag and by digest return the upstream's exact bytes with digest,
    exact media type, length and ETag; HEAD has the same headers and no body."""
    img = push(make_image(11, (64 * 1024,), fmt=fmt, multi_arch=multi), up, "library/mf", "t1")
    for ref in ("t1", img.digest):
        status, h, body = get(mirror, f"/v2/library/mf/manifests/{ref}")
        assert status == 200
        assert body == img.raw and sha256(body) == img.digest
        assert h["docker-content-digest"] == img.digest
        assert h["content-type"] == img.media_type
        assert int(h["content-length"]) == len(img.raw)
        assert img.digest in h.get("etag", "")
        hstatus, hh, hbody, resp = raw_request(
            mirror.port, "HEAD", f"/v2/library/mf/manifests/{ref}", {"Accept": ACCEPT_HEADER})
        assert hstatus == 200 and hbody == b""
        for k in ("docker-content-digest", "content-type", "content-length", "etag"):
            assert hh.get(k) == h.get(k), f"HEAD {k}: {hh.get(k)!r} != GET {h.get(k)!r}"
    # Single-platform manifests of an index are reachable by digest too.
    for m in img.manifests:
        status, h, body = get(mirror, f"/v2/library/mf/manifests/{m.digest}")
        assert status == 200 and body == m.raw and h["content-type"] == m.media_type


def test_blob_get_and_ranges_cached_and_cold(mirror, up, pushed):
    """Blob GET returns the exact bytes; Range gives 206 with Content-Range on a cached blob and
    on a cold one; a range past the end gives 416 (cached and cold)."""
    l0, l1 = pushed.manifests[0].layers
    data0, data1 = pushed.blobs[l0.digest], pushed.blobs[l1.digest]
    # Cold blob, ranged request first.
    s, h, body = get(mirror, f"/v2/library/basic/blobs/{l1.digest}", headers={"Range": "bytes=100-4195"})
    assert s == 206, (s, body[:200])
    assert h["content-range"] == f"bytes 100-4195/{len(data1)}"
    assert body == data1[100:4196]
    # Full GET, then ranges on the now-cached blob.
    s, h, body = get(mirror, f"/v2/library/basic/blobs/{l0.digest}", accept=False)
    assert s == 200 and body == data0 and h["docker-content-digest"] == l0.digest
    assert int(h["content-length"]) == len(data0)
    for rng, first, last in (("bytes=0-0", 0, 0), ("bytes=1000-", 1000, len(data0) - 1),
                             ("bytes=-500", len(data0) - 500, len(data0) - 1)):
        s, h, body = get(mirror, f"/v2/library/basic/blobs/{l0.digest}", headers={"Range": rng})
        assert s == 206, (rng, s)
        assert h["content-range"] == f"bytes {first}-{last}/{len(data0)}"
        assert body == data0[first:last + 1]
    s, h, _ = get(mirror, f"/v2/library/basic/blobs/{l0.digest}",
                  headers={"Range": f"bytes={len(data0)}-"})
    assert s == 416 and h.get("content-range") == f"bytes */{len(data0)}"
    # Unsatisfiable range on a cold blob (the config has not been fetched yet).
    cfg = pushed.manifests[0].config
    s, h, _ = get(mirror, f"/v2/library/basic/blobs/{cfg.digest}",
                  headers={"Range": f"bytes={cfg.size + 10}-"})
    assert s == 416 and h.get("content-range") == f"bytes */{cfg.size}"


def test_tags_list_upstream_first_then_cached_when_down(mirror, up, make_image, push):
    """tags/list comes from the upstream (tags never pulled through the mirror are listed); with
    the upstream down the mirror still lists the tags it has cached."""
    img = make_image(12)
    for tag in ("a", "b", "c"):
        push(img, up, "library/tagged", tag)
    mark = up.mark()
    s, _, body = get(mirror, "/v2/library/tagged/tags/list")
    assert s == 200
    assert {"a", "b", "c"} <= set(json.loads(body)["tags"])
    assert any(m == "GET" and p.startswith("/v2/library/tagged/tags/list") and st == 200
               for m, p, st in since(up, mark))
    assert get(mirror, "/v2/library/tagged/manifests/a")[0] == 200
    up.stop()
    s, _, body = get(mirror, "/v2/library/tagged/tags/list")
    assert s == 200, body
    assert "a" in json.loads(body)["tags"]


def test_catalog_lists_cached_repositories(mirror, up, make_image, push):
    """_catalog lists the repositories the mirror has cached, and not others."""
    img = make_image(13)
    push(img, up, "library/cat-one", "1")
    push(img, up, "library/cat-two", "1")
    push(img, up, "library/cat-never", "1")
    assert get(mirror, "/v2/library/cat-one/manifests/1")[0] == 200
    assert get(mirror, "/v2/library/cat-two/manifests/1")[0] == 200
    s, _, body = get(mirror, "/v2/_catalog")
    assert s == 200
    repos = json.loads(body)["repositories"]

    def listed(name):
        return any(r in (f"library/{name}", f"docker.io/library/{name}") for r in repos)

    assert listed("cat-one") and listed("cat-two"), repos
    assert not listed("cat-never"), repos


@pytest.mark.parametrize("method,path", [
    ("POST", "/v2/library/basic/blobs/uploads/"),
    ("PUT", "/v2/library/basic/manifests/v2"),
    ("DELETE", "/v2/library/basic/manifests/v1"),
    ("PATCH", "/v2/library/basic/blobs/uploads/abc"),
])
def test_writes_are_unsupported(mirror, up, pushed, method, path):
    """Push, PUT and DELETE get 405 with an UNSUPPORTED spec error and never reach upstream."""
    mark = up.mark()
    payload = b"{}" if method in ("PUT", "PATCH") else None
    s, _, body, _ = raw_request(mirror.port, method, path, {"Content-Type": "application/json"},
                                body=payload)
    assert_error(s, body, 405, "UNSUPPORTED")
    assert not [r for r in since(up, mark) if r[0] == method]
    assert get(mirror, "/v2/library/basic/manifests/v1")[0] == 200


def test_unknown_manifest_and_blob(mirror, up, pushed):
    """Unknown tags/digests/repositories give 404 MANIFEST_UNKNOWN / BLOB_UNKNOWN."""
    missing = "sha256:" + "0" * 64
    s, _, body = get(mirror, "/v2/library/basic/manifests/nope")
    assert_error(s, body, 404, "MANIFEST_UNKNOWN")
    s, _, body = get(mirror, f"/v2/library/basic/manifests/{missing}")
    assert_error(s, body, 404, "MANIFEST_UNKNOWN")
    s, _, body = get(mirror, "/v2/library/no-such-repo/manifests/v1")
    assert_error(s, body, 404, "MANIFEST_UNKNOWN", "NAME_UNKNOWN")
    s, _, body = get(mirror, f"/v2/library/basic/blobs/{missing}")
    assert_error(s, body, 404, "BLOB_UNKNOWN")
    assert get(mirror, f"/v2/library/basic/blobs/{missing}", method="HEAD")[0] == 404


def test_accept_repeated_headers_and_comma_lists(mirror, up, make_image, push):
    """A manifest list is served whether the client sends Accept as repeated header lines (as
    skopeo and dockerd do) or as one comma-separated list (as containerd does)."""
    img = push(make_image(14, multi_arch=True), up, "library/acc", "v1")
    repeated = [("Accept", t) for t in (images.DOCKER_MANIFEST, images.OCI_MANIFEST,
                                        images.DOCKER_LIST, images.OCI_INDEX)]
    comma = {"Accept": f"{images.DOCKER_MANIFEST}, {images.DOCKER_LIST}, */*"}
    for headers in (repeated, comma, repeated):
        s, h, body = get(mirror, "/v2/library/acc/manifests/v1", headers=headers)
        assert s == 200 and body == img.raw and h["content-type"] == images.DOCKER_LIST


def test_head_uncached_blob_is_upstream_head_only(mirror, up, pushed):
    """HEAD of an uncached blob gives its size and digest via one upstream HEAD, without
    downloading it."""
    layer = pushed.manifests[0].layers[1]
    mark = up.mark()
    s, h, body = get(mirror, f"/v2/library/basic/blobs/{layer.digest}", method="HEAD", accept=False)
    assert s == 200 and body == b""
    assert int(h["content-length"]) == layer.size
    assert h.get("docker-content-digest") == layer.digest
    reqs = since(up, mark)
    assert any(m == "HEAD" and p.endswith(layer.digest) and st == 200 for m, p, st in reqs), reqs
    assert blob_gets(reqs)[layer.digest] == 0
    assert not mirror_has(mirror, layer.digest)


def test_blob_cached_via_one_repo_serves_another(mirror, up, make_image, push):
    """A blob fetched through repo A is served for repo B from the cache: no upstream blob GET."""
    img = make_image(15, (128 * 1024,))
    push(img, up, "library/repo-a", "1")
    push(img, up, "library/repo-b", "1")
    layer = img.layer_digests[0]
    assert get(mirror, f"/v2/library/repo-a/blobs/{layer}")[2] == img.blobs[layer]
    wait_until(lambda: mirror_has(mirror, layer), timeout=10, what="the blob to be stored")
    mark = up.mark()
    s, _, body = get(mirror, f"/v2/library/repo-b/blobs/{layer}")
    assert s == 200 and body == img.blobs[layer]
    assert blob_gets(since(up, mark))[layer] == 0


def test_keep_alive_serves_several_requests_on_one_connection(mirror, pushed):
    """Several requests (ping, manifest, HEAD, blob) share one persistent connection."""
    conn = mirror.conn()
    layer = pushed.manifests[0].layers[0]
    first_sock = None
    for method, path in (("GET", "/v2/"), ("GET", "/v2/library/basic/manifests/v1"),
                         ("HEAD", "/v2/library/basic/manifests/v1"),
                         ("GET", f"/v2/library/basic/blobs/{layer.digest}"), ("GET", "/v2/")):
        conn.request(method, path, headers={"Accept": ACCEPT_HEADER})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (path, resp.status)
        assert not resp.will_close, f"server closed the connection after {method} {path}"
        first_sock = first_sock or conn.sock
        assert conn.sock is first_sock, "a new connection was needed"
    assert body == b"{}" or json.loads(body) == {}
    conn.close()


def test_pipelined_requests_answered_in_order(mirror, pushed):
    """Two GETs written in one send are answered in order on the same connection."""
    layer = pushed.manifests[0].layers[0]
    req = (f"GET /v2/library/basic/manifests/v1 HTTP/1.1\r\nHost: x\r\nAccept: {ACCEPT_HEADER}\r\n\r\n"
           f"GET /v2/library/basic/blobs/{layer.digest} HTTP/1.1\r\nHost: x\r\n\r\n"
           f"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
    with socket.create_connection(("127.0.0.1", mirror.port), timeout=30) as s:
        s.sendall(req.encode())
        f = s.makefile("rb")
        s1, h1, b1 = read_response(f)
        s2, h2, b2 = read_response(f)
        s3, _, _ = read_response(f)
    assert (s1, s2, s3) == (200, 200, 200)
    assert b1 == pushed.raw and h1["docker-content-digest"] == pushed.digest
    assert b2 == pushed.blobs[layer.digest]


def test_request_log_lines(mirror, pushed):
    """Each request is logged as `<ts> <ip> <METHOD> <path+query> <status> <bytes> <ms>ms
    <cache>`: cold content is a miss/fill, warm content a hit, the ping has no cache state."""
    layer = pushed.manifests[0].layers[0]
    paths = ["/v2/library/basic/manifests/v1?ns=docker.io", f"/v2/library/basic/blobs/{layer.digest}"]
    assert get(mirror, "/v2/")[0] == 200
    for _ in range(2):
        for p in paths:
            assert get(mirror, p)[0] == 200
    entries = mirror.entries()
    for p, size in zip(paths, (len(pushed.raw), layer.size)):
        mine = [e for e in entries if e.path == p]
        assert len(mine) == 2, (p, entries)
        assert mine[0].cache in ("miss", "fill") and mine[1].cache == "hit", mine
        assert all(e.ip == "127.0.0.1" and e.method == "GET" and e.status == 200 and e.size == size
                   for e in mine), mine
    assert any(e.path == "/v2/" and e.cache == "-" for e in entries), entries
