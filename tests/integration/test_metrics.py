# SPDX-License-Identifier: Apache-2.0
"""GET /metrics: the Prometheus text exposition, checked with Debian's promtool, against what the
upstream's access log saw, and for who may read it (metrics.listen, metrics.allow)."""

import http.client
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor


import procs
from helpers import assert_error, get, since, wait_until
from mirror import request
from scripted import Reply, Scripted, digest_of, image_manifest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HANDLERS = ["base", "catalog", "manifest", "blob", "tags", "blob_upload", "blob_upload_chunk",
            "referrers"]
UPSTREAM_ACCESS_RE = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]+\] "(\S+) (\S+) HTTP/[\d.]+" (\d{3}) (\d+|-)')

# every family the mirror exports, and its type
FAMILIES = {
    "registry_proxy_requests_total": "counter",
    "registry_proxy_hits_total": "counter",
    "registry_proxy_misses_total": "counter",
    "registry_proxy_pulled_bytes_total": "counter",
    "registry_proxy_pushed_bytes_total": "counter",
    "registry_http_requests_total": "counter",
    "registry_http_request_duration_seconds": "histogram",
    "registry_http_response_size_bytes": "histogram",
    "registry_http_in_flight_requests": "gauge",
    "regcache_upstream_requests_total": "counter",
    "regcache_upstream_bytes_total": "counter",
    "regcache_upstream_request_duration_seconds": "histogram",
    "regcache_upstream_ratelimit_limit": "gauge",
    "regcache_upstream_ratelimit_remaining": "gauge",
    "regcache_upstream_ratelimit_window_seconds": "gauge",
    "regcache_upstream_429_total": "counter",
    "regcache_upstream_last_429_timestamp_seconds": "gauge",
    "regcache_upstream_up": "gauge",
    "regcache_upstream_state_since_timestamp_seconds": "gauge",
    "regcache_fills_in_flight": "gauge",
    "regcache_fill_joins_total": "counter",
    "regcache_fill_resumes_total": "counter",
    "regcache_served_bytes_total": "counter",
    "regcache_loop_responses_total": "counter",
    "regcache_store_bytes": "gauge",
    "regcache_store_max_bytes": "gauge",
    "regcache_filesystem_free_bytes": "gauge",
    "regcache_cached_blobs": "gauge",
    "regcache_cached_manifests": "gauge",
    "regcache_cached_tags": "gauge",
    "regcache_gc_runs_total": "counter",
    "regcache_gc_evicted_bytes_total": "counter",
    "regcache_gc_last_run_timestamp_seconds": "gauge",
    "regcache_gc_pinned_files": "gauge",
    "regcache_gc_pinned_bytes": "gauge",
    "regcache_purged_files_total": "counter",
    "regcache_purged_bytes_total": "counter",
    "regcache_gc_last_success_timestamp_seconds": "gauge",
    "regcache_index_writes_pending": "gauge",
    "regcache_connections_open": "gauge",
    "regcache_connections_refused_total": "counter",
    "regcache_tls_handshakes_total": "counter",
    "regcache_build_info": "gauge",
    "regcache_s3_requests_total": "counter",
    "regcache_s3_bytes_total": "counter",
    "regcache_s3_write_behind_queue": "gauge",
    "regcache_s3_janitor_aborts_total": "counter",
    "regcache_s3_shared_total": "counter",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
}

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def unescape(v):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


class Scrape:
    """A parsed exposition: families (name -> type) and samples ((name, labels) -> value)."""

    def __init__(self, text):
        self.text = text
        self.types, self.samples = {}, {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
                continue
            if line.startswith("#"):
                continue
            m = SAMPLE_RE.match(line)
            assert m, f"not a sample line: {line!r}"
            labels = {}
            if m.group(2):
                rest = m.group(2)
                for lm in LABEL_RE.finditer(rest):
                    labels[lm.group(1)] = unescape(lm.group(2))
            key = (m.group(1), tuple(sorted(labels.items())))
            assert key not in self.samples, f"series twice: {line!r}"
            self.samples[key] = float(m.group(3))

    def get(self, name, **labels):
        """The value of one series; fails when it does not exist."""
        key = (name, tuple(sorted(labels.items())))
        assert key in self.samples, f"no series {name}{labels}"
        return self.samples[key]

    def total(self, name, **labels):
        """The sum over every series of name whose labels include the given ones."""
        return sum(v for (n, ls), v in self.samples.items()
                   if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))

    def label_values(self):
        return [v for (_, ls) in self.samples for _, v in ls]


def scrape(port):
    status, headers, body, _ = request(port, "GET", "/metrics")
    assert status == 200, (status, body[:300])
    assert headers["content-type"] == CONTENT_TYPE
    return Scrape(body.decode())


def metrics_mirror(mirror_factory, ups, **kw):
    """A mirror serving /metrics on a port of its own; returns (mirror, metrics port)."""
    port = procs.free_port()
    extra = kw.pop("extra", {})
    extra["metrics"] = {"listen": f"127.0.0.1:{port}", **extra.get("metrics", {})}
    return mirror_factory(ups, extra=extra, **kw), port


def upstream_access(up, mark):
    """(method, path, status, bytes) of each upstream access log line past mark."""
    out = []
    with open(up.log_path, errors="replace") as f:
        for line in f:
            m = UPSTREAM_ACCESS_RE.match(line)
            if m:
                size = 0 if m.group(4) == "-" else int(m.group(4))
                out.append((m.group(1), m.group(2), int(m.group(3)), size))
    return out[mark:]


def pull(mirror, img):
    """Pulls img (single-arch) through the mirror by tag: its manifest, then every blob."""
    s, _, body = get(mirror, f"/v2/{img.repo}/manifests/{img.tag}")
    assert s == 200 and body == img.raw
    for digest in img.blob_digests:
        s, _, body = get(mirror, f"/v2/{img.repo}/blobs/{digest}")
        assert s == 200 and body == img.blobs[digest], (digest, s)


def test_promtool_accepts_a_real_scrape(mirror_factory, up, make_image, push):
    """After some traffic (histograms and labels filled in), Debian's promtool accepts the
    exposition with no lint problem at all."""
    img = push(make_image(1100), up, "library/promtool", "v1")
    mirror, port = metrics_mirror(mirror_factory, [up])
    pull(mirror, img)
    pull(mirror, img)
    assert get(mirror, "/v2/library/nothere/manifests/v1")[0] == 404
    s = scrape(port)
    assert s.get("registry_proxy_hits_total", type="blob") > 0
    r = subprocess.run(["promtool", "check", "metrics"], input=s.text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


def test_every_series_exists_at_zero_on_a_fresh_mirror(mirror_factory, up, upstream_factory):
    """A fresh mirror with two upstreams exposes every family, with the bounded label
    combinations already there and at 0; scraping asks the upstreams nothing."""
    other = upstream_factory("quay")
    mark_up, mark_other = up.mark(), other.mark()
    mirror, port = metrics_mirror(mirror_factory, [up, other],
                                  extra={"cache": {"max_size": "1GiB"}})
    s = scrape(port)
    for name, kind in FAMILIES.items():
        assert s.types.get(name) == kind, (name, s.types.get(name))
    for t in ("blob", "manifest"):
        for name in ("registry_proxy_requests_total", "registry_proxy_hits_total",
                     "registry_proxy_misses_total", "registry_proxy_pulled_bytes_total",
                     "registry_proxy_pushed_bytes_total", "regcache_fill_joins_total"):
            assert s.get(name, type=t) == 0, (name, t)
        assert s.get("regcache_fills_in_flight", type=t) == 0
    for outcome in ("resumed", "restarted", "gave_up"):
        assert s.get("regcache_fill_resumes_total", outcome=outcome) == 0
    for name in ("regcache_gc_pinned_files", "regcache_gc_pinned_bytes",
                 "regcache_purged_files_total", "regcache_purged_bytes_total",
                 "regcache_s3_write_behind_queue", "regcache_s3_janitor_aborts_total"):
        assert s.get(name) == 0, name
    for op in ("get", "head", "put", "put_part", "abort_upload"):
        for result in ("ok", "not_found", "timeout"):
            assert s.get("regcache_s3_requests_total", op=op, result=result) == 0
    assert s.total("regcache_s3_bytes_total") == 0
    assert s.total("regcache_s3_shared_total") == 0
    for h in HANDLERS:
        assert s.get("registry_http_in_flight_requests", handler=h) == 0
        assert s.get("registry_http_response_size_bytes_count", handler=h) == 0
        assert s.get("registry_http_response_size_bytes_bucket", handler=h, le="+Inf") == 0
        for method in ("get", "head"):
            assert s.get("registry_http_requests_total", code="200", handler=h,
                         method=method) == 0
            assert s.get("registry_http_request_duration_seconds_count", handler=h,
                         method=method) == 0
            assert s.get("registry_http_request_duration_seconds_bucket", handler=h,
                         method=method, le="0.005") == 0
    for name in ("docker.io", "quay.io"):
        for method in ("get", "head"):
            for code in ("2xx", "3xx", "4xx", "5xx", "none"):
                assert s.get("regcache_upstream_requests_total", upstream=name, method=method,
                             code=code) == 0
        for fam in ("regcache_upstream_bytes_total", "regcache_upstream_ratelimit_limit",
                    "regcache_upstream_ratelimit_remaining", "regcache_upstream_429_total",
                    "regcache_upstream_last_429_timestamp_seconds",
                    "regcache_upstream_request_duration_seconds_count"):
            assert s.get(fam, upstream=name) == 0, (fam, name)
        assert s.get("regcache_upstream_up", upstream=name) == 1
        assert s.get("regcache_upstream_state_since_timestamp_seconds", upstream=name) > 1e9
    for result in ("ok", "failed"):
        assert s.get("regcache_tls_handshakes_total", result=result) == 0
    for reason in ("ttl", "size"):
        assert s.get("regcache_gc_evicted_bytes_total", reason=reason) == 0
    for name in ("regcache_store_bytes", "regcache_cached_blobs", "regcache_cached_manifests",
                 "regcache_cached_tags", "regcache_connections_refused_total"):
        assert s.get(name) == 0, name
    assert s.get("regcache_store_max_bytes") == 1 << 30
    assert s.get("regcache_filesystem_free_bytes") > 0
    builds = [dict(ls) for (n, ls) in s.samples if n == "regcache_build_info"]
    assert len(builds) == 1 and re.fullmatch(r"\d+\.\d+\.\d+.*", builds[0]["version"])
    assert s.total("regcache_build_info") == 1
    assert s.get("process_start_time_seconds") > 1e9
    assert s.get("process_open_fds") > 0 and s.get("process_max_fds") > 0
    assert s.get("process_resident_memory_bytes") > 0
    # the scrape itself is no registry request, and costs the upstreams nothing
    s2 = scrape(port)
    assert s2.total("registry_http_requests_total") == 0
    assert since(up, mark_up) == [] and since(other, mark_other) == []


def test_counts_equal_what_the_upstream_saw(mirror_factory, up, make_image, push):
    """After a scripted set of pulls (two repositories, each pulled cold then warm), the hits,
    misses, pulled bytes and upstream requests in the scrape are exactly what the upstream's
    access log shows and what the clients got."""
    a = push(make_image(1101, (40 * 1024, 70 * 1024)), up, "library/alpha", "v1")
    b = push(make_image(1102, (50 * 1024,)), up, "team/beta", "v2")
    mirror, port = metrics_mirror(mirror_factory, [up], revalidate_after="1h")
    mark = up.mark()
    for img in (a, b):
        pull(mirror, img)  # cold: every request a miss
    for img in (a, b):
        pull(mirror, img)  # warm: every request a hit
    assert get(mirror, f"/v2/{a.repo}/manifests/{a.tag}", method="HEAD")[0] == 200  # a hit
    since(up, mark)  # the upstream's log has settled
    seen = upstream_access(up, mark)
    # an upstream exchange is counted when its transfer ends, which may be a moment after the
    # client had its last byte
    s = wait_until(lambda: (lambda sc: sc if sc.get(
        "regcache_upstream_request_duration_seconds_count", upstream="docker.io") >= len(seen)
        else None)(scrape(port)), timeout=10, what="every upstream exchange counted")

    n_blobs = len(a.blob_digests) + len(b.blob_digests)
    blob_bytes = sum(len(i.blobs[d]) for i in (a, b) for d in i.blob_digests)
    manifest_bytes = len(a.raw) + len(b.raw)
    assert s.get("registry_proxy_requests_total", type="blob") == 2 * n_blobs
    assert s.get("registry_proxy_misses_total", type="blob") == n_blobs
    assert s.get("registry_proxy_hits_total", type="blob") == n_blobs
    assert s.get("registry_proxy_requests_total", type="manifest") == 5
    assert s.get("registry_proxy_misses_total", type="manifest") == 2
    assert s.get("registry_proxy_hits_total", type="manifest") == 3

    # pulled bytes: the bodies of the upstream's 200 answers to GETs, as its log counts them
    up_blob = [r for r in seen if r[0] == "GET" and "/blobs/" in r[1] and r[2] == 200]
    up_manifest = [r for r in seen if r[0] == "GET" and "/manifests/" in r[1] and r[2] == 200]
    assert len(up_blob) == n_blobs and len(up_manifest) == 2, seen
    assert s.get("registry_proxy_pulled_bytes_total", type="blob") == \
        sum(r[3] for r in up_blob) == blob_bytes
    assert s.get("registry_proxy_pulled_bytes_total", type="manifest") == \
        sum(r[3] for r in up_manifest) == manifest_bytes
    assert s.get("registry_proxy_pushed_bytes_total", type="blob") == 2 * blob_bytes
    assert s.get("regcache_served_bytes_total", source="cache") == blob_bytes + manifest_bytes
    assert s.get("regcache_served_bytes_total", source="upstream") == blob_bytes + manifest_bytes

    # every exchange with the upstream, 401s of the token dance included, by method and class
    for method in ("GET", "HEAD"):
        lines = [r for r in seen if r[0] == method]
        for cls in ("2xx", "3xx", "4xx", "5xx"):
            want = sum(1 for r in lines if r[2] // 100 == int(cls[0]))
            assert s.get("regcache_upstream_requests_total", upstream="docker.io",
                         method=method.lower(), code=cls) == want, (method, cls, seen)
        assert s.get("regcache_upstream_requests_total", upstream="docker.io",
                     method=method.lower(), code="none") == 0
    assert s.get("regcache_upstream_request_duration_seconds_count", upstream="docker.io") == \
        len(seen)
    assert s.get("regcache_upstream_bytes_total", upstream="docker.io") >= \
        blob_bytes + manifest_bytes

    # the registry front's own view
    assert s.get("registry_http_requests_total", code="200", handler="blob", method="get") == \
        2 * n_blobs
    assert s.get("registry_http_requests_total", code="200", handler="manifest",
                 method="get") == 4
    assert s.get("registry_http_requests_total", code="200", handler="manifest",
                 method="head") == 1
    assert s.get("registry_http_response_size_bytes_sum", handler="blob") == 2 * blob_bytes
    assert s.get("registry_http_request_duration_seconds_count", handler="blob",
                 method="get") == 2 * n_blobs
    for h in HANDLERS:
        assert s.get("registry_http_in_flight_requests", handler=h) == 0

    # what is cached
    assert s.get("regcache_cached_blobs") == n_blobs
    assert s.get("regcache_cached_manifests") == 2
    assert s.get("regcache_cached_tags") == 2
    assert s.get("regcache_store_bytes") == blob_bytes + manifest_bytes
    assert s.get("regcache_fills_in_flight", type="blob") == 0


def test_metrics_listen_serves_it_and_the_main_listener_404s_by_default(mirror_factory, up):
    """metrics.listen serves /metrics (and nothing else); without metrics.allow the main listener
    answers /metrics 404 as any unknown path, so it is off there by default."""
    mirror, port = metrics_mirror(mirror_factory, [up])
    assert scrape(port).get("regcache_upstream_up", upstream="docker.io") == 1
    status, headers, _, _ = request(port, "HEAD", "/metrics")
    assert status == 200 and headers["content-type"] == CONTENT_TYPE
    status, _, body, _ = request(port, "GET", "/v2/")
    assert_error(status, body, 404)
    status, _, body, _ = request(port, "POST", "/metrics", body=b"x")
    assert_error(status, body, 405)
    status, _, body = get(mirror, "/metrics")
    assert_error(status, body, 404)
    assert b"registry_" not in body

    plain = mirror_factory([up])  # neither key: no metrics anywhere
    status, _, body = get(plain, "/metrics")
    assert_error(status, body, 404)
    assert b"registry_" not in body


def test_metrics_allow_governs_the_main_listener(mirror_factory, up):
    """With metrics.allow, the main listener serves /metrics to peers inside the ranges and
    answers 403 with a spec error body to everyone else (here 127.0.0.1 outside the list)."""
    inside = mirror_factory([up], extra={"metrics": {"allow": ["10.0.0.0/8", "127.0.0.0/8"]}})
    status, headers, body = get(inside, "/metrics")
    assert status == 200 and headers["content-type"] == CONTENT_TYPE
    assert Scrape(body.decode()).get("regcache_upstream_up", upstream="docker.io") == 1

    outside = mirror_factory([up], extra={"metrics": {"allow": ["10.0.0.0/8", "::1"]}})
    status, _, body = get(outside, "/metrics")
    assert_error(status, body, 403, "DENIED")
    assert b"registry_" not in body
    # the registry API is not affected
    assert get(outside, "/v2/")[0] == 200


def test_no_label_value_names_a_repository_or_digest(mirror_factory, up, make_image, push):
    """After pulls from several repositories (and a 404 for another), no label value carries a
    repository name, a name component or a digest: every label is bounded."""
    repos = ["library/zebrafinch", "quokkateam/narwhal", "deep/ocelot/tapir"]
    imgs = [push(make_image(1110 + i), up, repo, "v1") for i, repo in enumerate(repos)]
    mirror, port = metrics_mirror(mirror_factory, [up])
    for img in imgs:
        pull(mirror, img)
    assert get(mirror, "/v2/library/wombatmissing/manifests/v1")[0] == 404
    assert get(mirror, "/v2/library/zebrafinch/tags/list")[0] == 200
    s = scrape(port)
    words = {w for r in repos + ["library/wombatmissing"] for w in r.split("/")} - {"library"}
    digests = {d.split(":")[1][:12] for img in imgs for d in list(img.blobs) + [img.digest]}
    for v in s.label_values():
        assert not any(w in v for w in words), v
        assert not any(d in v for d in digests), v
    assert "zebrafinch" not in s.text and "ocelot" not in s.text
    labels = {k for (_, ls) in s.samples for k, _ in ls}
    assert labels <= {"type", "code", "handler", "method", "le", "upstream", "source", "result",
                      "reason", "version", "outcome", "rule", "op", "direction", "kind",
                      "loop"}, labels


def test_upstream_state_follows_its_health(mirror_factory, up, make_image, push):
    """An upstream that stops answering shows as down (regcache_upstream_up 0, a recent state
    change, unanswered requests under code="none"), and up again once it answers."""
    img = push(make_image(1120), up, "library/downup", "v1")
    mirror, port = metrics_mirror(mirror_factory, [up])
    pull(mirror, img)
    before = scrape(port)
    assert before.get("regcache_upstream_up", upstream="docker.io") == 1
    up.stop()
    time.sleep(1.2)  # past revalidate_after (1s): the tag is asked upstream again
    assert get(mirror, f"/v2/{img.repo}/manifests/{img.tag}")[0] == 200  # stale
    s = scrape(port)
    assert s.get("regcache_upstream_up", upstream="docker.io") == 0
    assert s.get("regcache_upstream_state_since_timestamp_seconds", upstream="docker.io") > \
        before.get("regcache_upstream_state_since_timestamp_seconds", upstream="docker.io")
    assert s.total("regcache_upstream_requests_total", upstream="docker.io", code="none") >= 1
    up.start()
    wait_until(lambda: scrape(port).get("regcache_upstream_up", upstream="docker.io") == 1,
               timeout=40, what="the upstream back up in the metrics")


def test_pull_budget_and_429s_as_the_upstream_announced_them(mirror_factory):
    """The budget a scripted upstream announces (Docker Hub's ratelimit-limit and -remaining
    headers) is what the gauges show, and each of its 429s is counted with its time."""
    up = Scripted()
    try:
        budget = [("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", "76;w=21600")]
        body, blobs = image_manifest(b'{"os":"linux"}', [b"budgeted"])
        up.manifest("team/app", "1", body, headers=budget)
        for data in blobs.values():
            up.blob(data)
        mirror, port = metrics_mirror(mirror_factory, [{"name": "docker.io", "url": up.url}],
                                      revalidate_after="1h")
        s0 = scrape(port)
        assert s0.get("regcache_upstream_ratelimit_limit", upstream="docker.io") == 0
        assert get(mirror, "/v2/team/app/manifests/1")[0] == 200
        s = scrape(port)
        assert s.get("regcache_upstream_ratelimit_limit", upstream="docker.io") == 100
        assert s.get("regcache_upstream_ratelimit_remaining", upstream="docker.io") == 76
        assert s.get("regcache_upstream_ratelimit_window_seconds", upstream="docker.io") == 21600
        assert s.get("regcache_upstream_429_total", upstream="docker.io") == 0

        up.route("*", r"/v2/.+/manifests/cold",
                 lambda req: Reply.error(429, "TOOMANYREQUESTS", [("Retry-After", "1")]))
        t0 = time.time()
        status, _, body = get(mirror, "/v2/team/app/manifests/cold")
        assert_error(status, body, 429, "TOOMANYREQUESTS")
        s = scrape(port)
        asked = len(up.requests(path=r"/manifests/cold$"))
        assert asked == 1
        assert s.get("regcache_upstream_429_total", upstream="docker.io") == asked
        assert t0 - 1 <= s.get("regcache_upstream_last_429_timestamp_seconds",
                               upstream="docker.io") <= time.time() + 1
        assert s.get("regcache_upstream_ratelimit_remaining", upstream="docker.io") == 0
        assert s.get("regcache_upstream_ratelimit_limit", upstream="docker.io") == 100
        assert s.get("regcache_upstream_requests_total", upstream="docker.io", method="get",
                     code="4xx") == asked
        # cached content is still served, and counted as a hit
        assert get(mirror, "/v2/team/app/manifests/1")[0] == 200
        assert scrape(port).get("registry_proxy_hits_total", type="manifest") == 1
    finally:
        up.stop()


def test_tls_handshakes_are_counted_by_result(mirror_factory, up, tmp_dir):
    """Each completed TLS handshake counts once as ok (whatever follows it: TLS 1.3 tickets, a
    close); a client that offers only TLS 1.1 (refused with a fatal alert) counts as failed."""
    from test_tls import make_cert
    ca, crt, key = make_cert(os.path.join(tmp_dir, "certs"), "metrics")
    port = procs.free_port()
    mirror = mirror_factory([up], start=False, extra={
        "tls": {"cert": crt, "key": key}, "metrics": {"listen": f"127.0.0.1:{port}"}})
    mirror.start(wait=False)
    procs.wait_for(lambda: procs.http_status(port, "/metrics") == 200, 20, "metrics.listen")
    ctx = ssl.create_default_context(cafile=ca)
    for _ in range(3):
        c = http.client.HTTPSConnection("127.0.0.1", mirror.port, context=ctx, timeout=10)
        c.request("GET", "/v2/")
        assert c.getresponse().status == 200
        c.close()
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{mirror.port}",
                        "-tls1_1"], input="", capture_output=True, text=True, timeout=30)
    assert r.returncode != 0  # refused
    # a client speaking plain HTTP to the TLS port gets no alert: not counted either way
    assert procs.http_status(mirror.port, "/v2/") in (None, 400)
    s = wait_until(lambda: (lambda sc: sc if sc.get("regcache_tls_handshakes_total",
                                                    result="failed") >= 1 else None)(
        scrape(port)), timeout=10, what="the refused handshake counted")
    assert s.get("regcache_tls_handshakes_total", result="ok") == 3
    assert s.get("regcache_tls_handshakes_total", result="failed") == 1


def test_connections_open_and_refused(mirror_factory, up):
    """Connections held open show in regcache_connections_open; one past
    limits.max_connections is refused (503) and counted."""
    mirror, port = metrics_mirror(mirror_factory, [up],
                                  extra={"limits": {"max_connections": 3}})
    # the start-up probe's connection is gone first, then each one is in before the next
    wait_until(lambda: scrape(port).get("regcache_connections_open") == 0, timeout=10,
               what="no connection open")
    held = []
    try:
        for n in range(1, 4):
            held.append(socket.create_connection(("127.0.0.1", mirror.port), timeout=10))
            wait_until(lambda: scrape(port).get("regcache_connections_open") == n, timeout=10,
                       what=f"{n} connections open")
        with socket.create_connection(("127.0.0.1", mirror.port), timeout=10) as extra:
            extra.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert extra.recv(100).startswith(b"HTTP/1.1 503")
        s = scrape(port)
        assert s.get("regcache_connections_refused_total") == 1
        assert s.get("regcache_connections_open") == 3
    finally:
        for c in held:
            c.close()
    wait_until(lambda: scrape(port).get("regcache_connections_open") == 0, timeout=10,
               what="the connections closed")


def test_the_store_figures_stay_exact_while_a_gc_run_overlaps_fills(mirror_factory):
    """Four clients fill cold blobs without a pause until the first scheduled GC run is over.
    A run reads the index's totals on the database thread and sets the figures when it is
    done: a file stored meanwhile is not in what it read, yet must not be lost from the
    figures. Read right after that run, before the next one could set them afresh, the blob
    count and the store's bytes are exactly what was pulled."""
    up = Scripted()
    try:
        blobs = {}
        for i in range(20000):
            data = b"figures %d " % i + os.urandom(16)
            blobs[digest_of(data)] = data

        def answer(req):
            data = blobs.get(req.path.rsplit("/", 1)[1])
            if data is None:
                return Reply.error(404, "BLOB_UNKNOWN")
            return Reply(200, [("Content-Type", "application/octet-stream"),
                               ("Docker-Content-Digest", digest_of(data))], data)
        up.route("*", r"/v2/team/figures/blobs/.+", answer)
        m, port = metrics_mirror(mirror_factory, [{"name": "docker.io", "url": up.url}],
                                 extra={"cache": {"gc_interval": "4s"}})  # runs at 4 s, 8 s
        digests = list(blobs)
        pulled = []
        lock = threading.Lock()
        ran = threading.Event()

        def pull(k):
            for d in digests[k::4]:
                if ran.is_set():
                    return
                s, _, body = get(m, f"/v2/team/figures/blobs/{d}", accept=False)
                assert s == 200 and body == blobs[d]
                with lock:
                    pulled.append(d)

        def watch():
            wait_until(lambda: "gc (scheduled):" in m.log_text(), timeout=30,
                       what="the first GC run", interval=0.02)
            time.sleep(0.05)  # fills go on after it too
            ran.set()
        with ThreadPoolExecutor(5) as pool:
            jobs = [pool.submit(pull, k) for k in range(4)] + [pool.submit(watch)]
            for j in jobs:
                j.result()
        assert 0 < len(pulled) < len(digests)
        def settled():  # every fill committed
            now = scrape(port)
            return now.get("regcache_fills_in_flight", type="blob") == 0 and now
        s = wait_until(settled, timeout=10, interval=0.02, what="the fills committed")
        assert m.log_text().count("gc (scheduled):") == 1  # no later run set them afresh
        assert (s.get("regcache_cached_blobs"), s.get("regcache_store_bytes")) == \
            (len(pulled), sum(len(blobs[d]) for d in pulled))
    finally:
        up.stop()
