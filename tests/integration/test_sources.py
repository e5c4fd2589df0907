# SPDX-License-Identifier: Apache-2.0
"""Where the mirror takes its bytes from: the endpoints of one registry (`upstreams[].urls`),
tried in order with a health of their own, and blob sources (`upstreams[].blob_sources`),
other registries asked for blobs by digest before or after the primary. Checked against what
each registry and each endpoint saw (their access logs), the bytes the client got and the
store holds, the log and the metrics. A source that lies is a scripted stand-in; the rest are
real docker-registry upstreams behind switch proxies."""

import json
import os
import re
import time

from clients import skopeo_copy_from_mirror
from helpers import get, sha256, since, wait_until
from images import verify_oci_layout
from mirror import request
from scripted import Reply, Scripted
from switchproxy import SwitchProxy
from upstream import blob_gets, count

REPO = "library/src"
METRICS = {"metrics": {"allow": ["127.0.0.1/32"]}}


def blobs_of(img):
    """The config and layer digests of a single-platform image."""
    doc = json.loads(img.raw)
    return {doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])}


def pull(m, img, repo=REPO):
    """Manifest by tag, then every blob by digest, through the mirror: each must be exact."""
    s, h, body = get(m, f"/v2/{repo}/manifests/{img.tag}")
    assert s == 200 and h.get("docker-content-digest") == img.digest, (s, body[:300])
    for d in blobs_of(img):
        s, _, b = get(m, f"/v2/{repo}/blobs/{d}", accept=False)
        assert s == 200 and sha256(b) == d, (d, s, b[:200])


def stored_ok(m, img):
    for d in blobs_of(img):
        with open(m.file_for(d), "rb") as f:
            assert sha256(f.read()) == d, f"the store's {d} does not verify"


def source_count(m, source, outcome, upstream="docker.io"):
    status, _, body, _ = request(m.port, "GET", "/metrics")
    assert status == 200
    want = (f'regcache_blob_source_requests_total{{upstream="{upstream}",source="{source}",'
            f'outcome="{outcome}"}} ')
    for line in body.decode().splitlines():
        if line.startswith(want):
            return int(float(line[len(want):]))
    raise AssertionError(f"no series {want.strip()} in /metrics")


def proxy_paths(proxy, mark=0, kind=None):
    return [p for _, p, _ in proxy.requests()[mark:] if kind is None or f"/{kind}/" in p]


def test_second_endpoint_serves_while_the_first_refuses_and_the_first_is_back_after_a_probe(
        up, mirror_factory, make_image, push, tmp_dir, token_server):
    img = push(make_image(1301, (48 * 1024, 16 * 1024), fmt="oci"), up, REPO, "v1")
    first, second = SwitchProxy(up.port, mode="refuse"), SwitchProxy(up.port)
    try:
        m = mirror_factory([{"name": "docker.io", "urls": [first.url, second.url]}])
        umark = up.mark()
        out = os.path.join(tmp_dir, "oci1")
        skopeo_copy_from_mirror(m.port, f"{REPO}:v1", out, ["--preserve-digests"])
        verify_oci_layout(out, img.digest)
        # every request went to the second endpoint; the registry saw each blob once
        assert proxy_paths(second, kind="manifests") and \
            set(proxy_paths(second, kind="blobs")) >= {f"/v2/{REPO}/blobs/{d}"
                                                        for d in blobs_of(img)}
        assert all(outcome == "refuse" for _, _, outcome in first.requests())
        assert set(blob_gets(since(up, umark))) == set(blobs_of(img))
        log = m.log_text()
        assert f"endpoint {first.url} down" in log
        assert "upstream docker.io: down" not in log  # one endpoint answered: the upstream is up
        # the first comes back: its probe (GET /v2/) finds it, and it is asked first again
        first.set_mode("pass")
        wait_until(lambda: f"endpoint {first.url} answers again" in m.log_text(),
                   what="the first endpoint's probe to find it back")
        fmark, smark = len(first.requests()), len(second.requests())
        img2 = push(make_image(1302, (32 * 1024,)), up, REPO, "v2")
        tmark = len(token_server.requests())
        pull(m, img2)
        # the token the second endpoint got is the registry's: the first takes it, none is new
        assert [r for r in token_server.requests()[tmark:] if not r["auth"]] == []
        assert set(proxy_paths(first, fmark, "blobs")) == \
            {f"/v2/{REPO}/blobs/{d}" for d in blobs_of(img2)}
        assert proxy_paths(second, smark, "blobs") == []
    finally:
        first.stop()
        second.stop()


def test_a_hung_first_endpoint_costs_first_byte_once_then_is_skipped(up, mirror_factory,
                                                                     make_image, push):
    img = push(make_image(1303, (24 * 1024,)), up, REPO, "v1")
    first, second = SwitchProxy(up.port, mode="hang"), SwitchProxy(up.port)
    try:
        m = mirror_factory([{"name": "docker.io", "urls": [first.url, second.url]}],
                           extra={"timeouts": {"first_byte": "1s"}, **METRICS})
        pull(m, img)
        assert "no answer within 1000 ms (timeouts.first_byte)" in m.log_text()
        assert "upstream docker.io: down" not in m.log_text()
        hung = len(first.requests())
        assert hung >= 1
        img2 = push(make_image(1304, (24 * 1024,)), up, REPO, "v2")
        smark = len(second.requests())
        pull(m, img2)
        # skipped while down: only its probes (GET /v2/) reach it, the pull went to the second
        assert [p for p in proxy_paths(first, hung) if p != "/v2/"] == []
        assert set(proxy_paths(second, smark, "blobs")) == \
            {f"/v2/{REPO}/blobs/{d}" for d in blobs_of(img2)}
    finally:
        first.stop()
        second.stop()


def test_a_hung_first_endpoint_during_a_tag_revalidation_is_not_an_outage(up, mirror_factory,
                                                                           make_image, push):
    """A cached tag whose revalidation hangs at the first endpoint: the client gets the cached
    manifest at cache.revalidate_timeout, but the upstream is not declared down, since the
    request fails over to the second endpoint; once it has, a tag moved upstream is seen there."""
    img = push(make_image(1306, (16 * 1024,)), up, REPO, "v1")
    first, second = SwitchProxy(up.port), SwitchProxy(up.port)
    try:
        m = mirror_factory([{"name": "docker.io", "urls": [first.url, second.url]}],
                           extra={"timeouts": {"first_byte": "3s"},
                                  "cache": {"revalidate_timeout": "500ms"}})
        pull(m, img)
        first.set_mode("hang")
        smark = len(second.requests())
        time.sleep(1.2)  # past revalidate_after (1s): the next GET revalidates
        s, h, _ = get(m, f"/v2/{REPO}/manifests/v1")
        assert s == 200 and h.get("docker-content-digest") == img.digest, (s, h)
        wait_until(lambda: "no answer within 3000 ms (timeouts.first_byte)" in m.log_text(),
                   timeout=10, what="the revalidation to fail over")
        log = m.log_text()
        assert "no answer to a tag revalidation within 500 ms" in log, log[-2000:]
        assert "upstream docker.io: down" not in log, log[-2000:]
        wait_until(lambda: any("/manifests/v1" in p for p in proxy_paths(second, smark)),
                   timeout=10, what="the second endpoint to be asked")
        moved = push(make_image(1307, (16 * 1024,)), up, REPO, "v1")
        wait_until(lambda: get(m, f"/v2/{REPO}/manifests/v1")[1]
                   .get("docker-content-digest") == moved.digest,
                   timeout=15, what="the moved tag to be seen through the second endpoint")
        assert "upstream docker.io: down" not in m.log_text()
    finally:
        first.stop()
        second.stop()


def test_sources_that_cut_and_lie_cost_time_not_the_pull_and_are_logged_and_counted(
        up, mirror_factory, make_image, push):
    img = push(make_image(1305, (3 * 1024 * 1024, 8 * 1024)), up, REPO, "v1")
    cutter, liar = Scripted(), Scripted()
    lies = {}

    def cut(req):
        data = img.blobs[req.path.rsplit("/", 1)[1]]

        def run(sock, server):  # the right bytes, but only half of them
            sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                         + data[:len(data) // 2])
        return Reply(200, [], run)
    cutter.route("GET", r"/v2/.+/blobs/sha256:[0-9a-f]{64}", cut)

    def lie(req):
        d = req.path.rsplit("/", 1)[1]
        wrong = bytes(len(img.blobs[d])) if d in img.blobs else b"nothing"
        lies[d] = sha256(wrong)
        return Reply(200, [("Content-Type", "application/octet-stream"),
                           ("Docker-Content-Digest", d)], wrong)
    liar.route("GET", r"/v2/.+/blobs/sha256:[0-9a-f]{64}", lie)
    try:
        m = mirror_factory([{"name": "docker.io", "url": up.url,
                             "blob_sources": [{"name": "cutter", "url": cutter.url,
                                               "order": "before"},
                                              {"name": "liar", "url": liar.url,
                                               "order": "before"}]}], extra=METRICS)
        umark = up.mark()
        pull(m, img)
        stored_ok(m, img)
        # both asked for every blob, in order, then the primary served each once
        for source in (cutter, liar):
            assert {r.path.rsplit("/", 1)[1] for r in source.requests("GET", "/blobs/")} == \
                set(blobs_of(img))
        assert blob_gets(since(up, umark)) == {d: 1 for d in blobs_of(img)}
        log = m.log_text()
        for d in blobs_of(img):
            assert f"blob source liar sent {lies[d]} for {d}" in log
        assert source_count(m, "liar", "wrong") == len(blobs_of(img))
        assert source_count(m, "cutter", "failed") == len(blobs_of(img))
        assert source_count(m, "liar", "served") + source_count(m, "cutter", "served") == 0
        # a cut source was not marked down (it answered): it is asked again next time
        assert "endpoint " + cutter.url not in log
    finally:
        cutter.stop()
        liar.stop()


def test_order_before_takes_blobs_from_the_source_and_the_rest_from_the_primary(
        up, upstream_factory, mirror_factory, make_image, push, tmp_dir):
    sibling = upstream_factory("sibling")
    img = push(make_image(1306, (56 * 1024, 12 * 1024), fmt="oci"), up, REPO, "v1")
    push(make_image(1306, (56 * 1024, 12 * 1024), fmt="oci"), sibling, REPO, "v1")
    only_primary = push(make_image(1307, (20 * 1024,)), up, REPO, "v2")
    m = mirror_factory([{"name": "docker.io", "url": up.url,
                         "blob_sources": [{"name": "sibling", "url": sibling.url,
                                           "order": "before"}]}], extra=METRICS)
    umark, smark = up.mark(), sibling.mark()
    out = os.path.join(tmp_dir, "oci")
    skopeo_copy_from_mirror(m.port, f"{REPO}:v1", out, ["--preserve-digests"])
    verify_oci_layout(out, img.digest)
    stored_ok(m, img)
    primary = since(up, umark)
    assert count(primary, kind="manifests") >= 1  # tags are resolved at the primary
    assert blob_gets(primary) == {}               # and no blob came from it
    assert blob_gets(since(sibling, smark)) == {d: 1 for d in blobs_of(img)}
    assert count(since(sibling, smark), kind="manifests") == 0
    assert source_count(m, "sibling", "served") == len(blobs_of(img))
    # what the sibling lacks (404 there) comes from the primary
    umark, smark = up.mark(), sibling.mark()
    pull(m, only_primary)
    new = [d for d in blobs_of(only_primary) if d not in blobs_of(img)]
    assert blob_gets(since(up, umark)) == {d: 1 for d in new}
    assert count(since(sibling, smark), method="GET", kind="blobs", status=404) == len(new)
    assert source_count(m, "sibling", "missing") == len(new)


def test_a_blob_source_that_is_down_costs_no_failed_pull_and_is_used_again_once_back(
        up, upstream_factory, mirror_factory, make_image, push):
    sibling = upstream_factory("sibling")
    img = push(make_image(1308, (16 * 1024, 16 * 1024)), up, REPO, "v1")
    later = make_image(1310, (16 * 1024,))
    push(later, up, REPO, "v2")
    push(make_image(1310, (16 * 1024,)), sibling, REPO, "v2")
    gate = SwitchProxy(sibling.port, mode="refuse")
    try:
        m = mirror_factory([{"name": "docker.io", "url": up.url,
                             "blob_sources": [{"name": "gated", "url": gate.url,
                                               "order": "before"}]}], extra=METRICS)
        umark = up.mark()
        pull(m, img)
        stored_ok(m, img)
        assert blob_gets(since(up, umark)) == {d: 1 for d in blobs_of(img)}
        # the first blob found it down; the others skipped it without a request
        failed = source_count(m, "gated", "failed")
        assert failed >= 1
        assert failed + source_count(m, "gated", "skipped") == len(blobs_of(img))
        assert len([p for _, p, _ in gate.requests() if "/blobs/" in p]) == failed
        assert re.search(r"blob source gated failed for sha256:[0-9a-f]{64}", m.log_text())
        assert "upstream docker.io: down" not in m.log_text()
        # back: its probe finds it, and it serves the next pull's blobs
        gate.set_mode("pass")
        wait_until(lambda: f"endpoint {gate.url} answers again" in m.log_text(),
                   what="the source's probe to find it back")
        umark, smark = up.mark(), sibling.mark()
        pull(m, later)
        new = {d for d in blobs_of(later) if d not in blobs_of(img)}
        assert blob_gets(since(sibling, smark)) == {d: 1 for d in new}
        assert blob_gets(since(up, umark)) == {}
        assert source_count(m, "gated", "served") == len(new)
    finally:
        gate.stop()


def test_order_after_serves_what_the_primary_lost_from_the_source_under_its_prefix(
        up, upstream_factory, mirror_factory, make_image, push):
    sibling = upstream_factory("sibling")
    img = push(make_image(1309, (36 * 1024, 28 * 1024), fmt="oci"), up, REPO, "v1")
    push(make_image(1309, (36 * 1024, 28 * 1024), fmt="oci"), sibling, f"hub/{REPO}", "v1")
    layers = [x["digest"] for x in json.loads(img.raw)["layers"]]
    os.remove(up.blob_path(layers[0]))  # the primary lost one layer's bytes
    m = mirror_factory([{"name": "docker.io", "url": up.url,
                         "blob_sources": [{"name": "sibling", "url": sibling.url,
                                           "repository_prefix": "hub"}]}], extra=METRICS)
    umark, smark = up.mark(), sibling.mark()
    pull(m, img)
    stored_ok(m, img)
    # the primary was asked for every blob; the sibling, under its prefix, only for the lost one
    assert set(blob_gets(since(up, umark))) == blobs_of(img)
    assert blob_gets(since(sibling, smark)) == {layers[0]: 1}
    assert count(since(sibling, smark), method="GET", ref=layers[0]) == 1
    assert all(p.startswith(f"/v2/hub/{REPO}/") for _, p, _ in since(sibling, smark)
               if "/blobs/" in p)
    assert source_count(m, "sibling", "served") == 1
