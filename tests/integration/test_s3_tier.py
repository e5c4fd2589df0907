# SPDX-License-Identifier: Apache-2.0
"""The S3 tier in the blob path, against Ceph's radosgw on loopback and Debian's
docker-registry as the upstream: a mirror writes what it fetched behind into the bucket; a
second mirror with an empty store gets every blob from the bucket, and the upstream's log shows
no blob GET of its; an object with the wrong bytes under a blob's key is refused and the blob
fetched upstream once; a bucket that is not there costs pulls nothing; commits that failed
while the store was away are written once it is back, and after a restart (graceful or
SIGKILL) with no new pull; hosted pushes and imported bundles are written behind; a blob HEAD
is answered from the bucket; the janitor aborts abandoned multipart uploads; the regcache_s3_*
metrics count it all; a bucket that accepts connections and never answers costs a pull a
bounded delay; 30 concurrent misses of one blob cost one bucket GET and one upstream GET.
Marked `once`: it starts Ceph."""

import hashlib
import http.client
import json
import os
import socket
import threading
import time

import pytest
import yaml

import clients
import procs
import rgw
from helpers import blob_gets, since
from test_auth import ALICE, BOB, make_users
from test_bundle import export, import_bundle, offline_mirror
from test_hosted import skopeo_push
from test_metrics import scrape
from test_s3_signing import request
from test_s3_client import rgw_with_bucket, uploads
from test_s3_sync import bucket_keys, get_object

pytestmark = [pytest.mark.once,
              pytest.mark.skipif(not rgw.available(), reason="Ceph's packages are not installed")]

BUCKET = "regcache-sync"  # the name test_s3_sync's helpers list


@pytest.fixture(scope="module")
def s3(tmp_root):
    yield from rgw_with_bucket(tmp_root, "rgw-tier", BUCKET)


class TcpRelay:
    """Bytes both ways between 127.0.0.1:port and the target; while `refusing`, a connection
    is closed as soon as it is accepted (the store is away); while `stalling`, it is kept open
    and never read nor answered (a store that hangs). With `hold`, the first request that
    begins with those bytes waits, once `held` is set, until `release` is set."""

    def __init__(self, target_port, hold=None):
        self.target_port = target_port
        self.refusing = False
        self.stalling = False
        self.hold = hold
        self.held = threading.Event()
        self.release = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.open = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.refusing:
                c.close()
                continue
            if self.stalling:
                self.open.append(c)
                continue
            u = socket.create_connection(("127.0.0.1", self.target_port))
            self.open += [c, u]
            threading.Thread(target=self._pipe, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False), daemon=True).start()

    def _pipe(self, a, b, requests):
        try:
            while data := a.recv(65536):
                if (requests and self.hold and not self.held.is_set() and
                        data.startswith(self.hold)):
                    self.held.set()
                    self.release.wait(30)
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.release.set()
        self.sock.close()
        for s in self.open:
            s.close()


def tier(s3, endpoint=None, bucket=BUCKET, **more):
    section = {"endpoint": endpoint or s3.url, "bucket": bucket, "access_key": rgw.ACCESS_KEY,
               "secret_key": rgw.SECRET_KEY, "part_size": "5MiB"}
    section.update(more)
    return {"s3": section}


def with_metrics(extra):
    port = procs.free_port()
    return port, dict(extra, metrics={"listen": f"127.0.0.1:{port}"})


def blob_key(d):
    return f"blobs/sha256/{d[7:9]}/{d[7:]}"


def manifest_key(d):
    return f"manifests/sha256/{d[7:9]}/{d[7:]}"


def tag_key(repo, tag, upstream="docker.io"):
    return f"tags/{upstream}/{repo}/{tag}"


def object_exists(s3, key):
    return request(s3, "HEAD", f"/{BUCKET}/{key}")[0] == 200


def wait_in_bucket(s3, digests, timeout=30):
    want = {blob_key(d) for d in digests}
    procs.wait_for(lambda: want <= set(bucket_keys(s3)), timeout,
                   "the write-behind of every blob")


def pull(m, ref, tmp_dir, name):
    dest = os.path.join(tmp_dir, name)
    clients.skopeo_copy_from_mirror(m.port, ref, dest, [])
    return dest


def stored(m, d):
    with open(m.file_for(d), "rb") as f:
        return f.read()


def test_a_second_replica_gets_blobs_from_the_bucket_not_the_upstream(s3, tmp_dir, up,
                                                                      mirror_factory,
                                                                      make_image, push):
    img = push(make_image(420, (6 << 20, 200 * 1024), fmt="docker"), up, "library/tiered", "1")
    a = mirror_factory([up], extra=tier(s3))
    mark = up.mark()
    pull(a, "library/tiered:1", tmp_dir, "a")
    gets = blob_gets(since(up, mark))
    assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}
    wait_in_bucket(s3, img.blob_digests)
    for d in img.blob_digests:  # the copy in the bucket is the blob
        assert hashlib.sha256(get_object(s3, blob_key(d))).hexdigest() == d[7:]
    b = mirror_factory([up], extra=tier(s3))
    mark = up.mark()
    pull(b, "library/tiered:1", tmp_dir, "b")
    gets = blob_gets(since(up, mark))
    assert sum(gets[d] for d in img.blob_digests) == 0, gets
    for d in img.blob_digests:
        assert hashlib.sha256(stored(b, d)).hexdigest() == d[7:]
    # and B, a hit now, keeps serving them with the bucket gone from its path
    a.stop()


def test_wrong_bytes_in_the_bucket_are_refused(s3, tmp_dir, up, mirror_factory, make_image,
                                               push):
    img = push(make_image(421, (300 * 1024,), fmt="docker"), up, "library/liar", "1")
    layer = img.blob_digests[-1]
    status, _, _ = request(s3, "PUT", f"/{BUCKET}/{blob_key(layer)}", body=b"not the layer")
    assert status == 200
    m = mirror_factory([up], extra=tier(s3))
    mark = up.mark()
    pull(m, "library/liar:1", tmp_dir, "liar")
    assert blob_gets(since(up, mark))[layer] == 1
    assert hashlib.sha256(stored(m, layer)).hexdigest() == layer[7:]
    assert "the s3 tier sent" in m.log_text()


def test_a_missing_bucket_or_an_absent_store_costs_pulls_nothing(s3, tmp_dir, up,
                                                                 mirror_factory, make_image,
                                                                 push):
    img = push(make_image(422, (100 * 1024,), fmt="docker"), up, "library/nobucket", "1")
    dead = f"http://127.0.0.1:{procs.free_port()}"
    for extra in (tier(s3, bucket="no-such-bucket"), tier(s3, endpoint=dead)):
        m = mirror_factory([up], extra=extra)
        mark = up.mark()
        pull(m, "library/nobucket:1", tmp_dir, f"nb-{m.port}")
        gets = blob_gets(since(up, mark))
        assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}
        for d in img.blob_digests:
            assert hashlib.sha256(stored(m, d)).hexdigest() == d[7:]
        m.stop()


def test_commits_drain_once_the_store_is_back(s3, tmp_dir, up, mirror_factory, make_image,
                                              push):
    """The mirror's endpoint is a TCP relay to radosgw that drops connections at first."""
    img = push(make_image(423, (150 * 1024, 90 * 1024), fmt="docker"), up, "library/drain", "1")
    proxy = TcpRelay(s3.port)
    proxy.refusing = True
    try:
        m = mirror_factory([up], extra=tier(s3, endpoint=f"http://127.0.0.1:{proxy.port}"))
        pull(m, "library/drain:1", tmp_dir, "drain")
        procs.wait_for(lambda: "trying again" in m.log_text(), 20, "a failed write-behind")
        assert not {blob_key(d) for d in img.blob_digests} & set(bucket_keys(s3))
        proxy.refusing = False
        wait_in_bucket(s3, img.blob_digests, timeout=40)
    finally:
        proxy.stop()


def set_endpoint(m, endpoint):
    with open(m.config_path) as f:
        cfg = yaml.safe_load(f)
    cfg["s3"]["endpoint"] = endpoint
    with open(m.config_path, "w") as f:
        yaml.safe_dump(cfg, f)


@pytest.mark.parametrize("how", ["graceful", "sigkill"])
def test_write_behind_survives_a_restart(s3, tmp_dir, up, mirror_factory, make_image, push,
                                         how):
    """The bucket is away while the mirror pulls; the mirror stops (SIGTERM, or SIGKILL) with
    nothing written; started again with the bucket reachable it writes every blob of the pull,
    its manifest and its tag's record into the bucket, with no new pull (the upstream sees no
    request)."""
    seed = 424 if how == "graceful" else 425
    img = push(make_image(seed, (130 * 1024, 70 * 1024), fmt="docker"), up,
               f"library/restart-{how}", "1")
    proxy = TcpRelay(s3.port)
    proxy.refusing = True
    try:
        m = mirror_factory([up], extra=tier(s3, endpoint=f"http://127.0.0.1:{proxy.port}"))
        pull(m, f"library/restart-{how}:1", tmp_dir, how)
        procs.wait_for(lambda: "trying again" in m.log_text(), 20, "a failed write-behind")
        time.sleep(0.5)  # the index's write batch is on the thread pool, not on a timer
        if how == "graceful":
            assert m.stop() == 0
        else:
            m.proc.kill()
            m.proc = None
        assert not {blob_key(d) for d in img.blob_digests} & set(bucket_keys(s3))
    finally:
        proxy.stop()
    set_endpoint(m, s3.url)
    mark = up.mark()
    m.start()
    wait_in_bucket(s3, img.blob_digests, timeout=40)
    for d in img.blob_digests:
        assert hashlib.sha256(get_object(s3, blob_key(d))).hexdigest() == d[7:]
    # the manifest and the tag's record were queued too (the record once the index has loaded)
    repo = f"library/restart-{how}"
    procs.wait_for(lambda: object_exists(s3, tag_key(repo, "1")), 30, "the tag record")
    assert get_object(s3, manifest_key(img.digest)) == img.raw
    assert json.loads(get_object(s3, tag_key(repo, "1")))["digest"] == img.digest
    assert "left to write into the bucket by the last run" in m.log_text()
    assert since(up, mark) == [], "the restart asked the upstream"
    # written: the next start has nothing left
    m.stop()
    m.start()
    time.sleep(1)
    assert m.log_text().count("left to write into the bucket by the last run") == 1
    m.stop()


def test_hosted_pushes_are_written_behind(s3, tmp_dir, up, mirror_factory, make_image):
    """A push into a hosted repository: its blobs and its manifest land in the bucket."""
    img = make_image(426, (110 * 1024, 40 * 1024), fmt="oci")
    extra = {"auth": {"htpasswd": make_users(tmp_dir, ALICE, BOB), "realm": "Hosted",
                      "push_users": ["alice"], "scheme": "basic"},
             "hosted": ["team/*"], **tier(s3)}
    m = mirror_factory([up], extra=extra)
    skopeo_push(img, m.port, "team/tiered:v1")
    wait_in_bucket(s3, img.blob_digests + [img.digest])
    assert get_object(s3, blob_key(img.digest)) == img.raw
    for d in img.blob_digests:
        assert hashlib.sha256(get_object(s3, blob_key(d))).hexdigest() == d[7:]


def test_an_imported_bundle_is_written_behind_at_the_next_start(s3, tmp_dir, up,
                                                                mirror_factory, make_image,
                                                                push):
    """A bundle imported (offline) into a mirror with the tier: its next start writes the
    imported content into the bucket."""
    img = push(make_image(427, (120 * 1024,), fmt="docker"), up, "library/bundled", "1")
    a = mirror_factory([up])
    pull(a, "library/bundled:1", tmp_dir, "bundled")
    out = os.path.join(tmp_dir, "bundle.tar")
    export(a, "library/bundled:1", "-o", out)
    a.stop()
    b = offline_mirror(mirror_factory, extra=tier(s3))
    import_bundle(b, out)
    assert not {blob_key(d) for d in img.blob_digests} & set(bucket_keys(s3))
    b.start()
    wait_in_bucket(s3, img.blob_digests + [img.digest])
    b.stop()


def test_a_blob_head_is_answered_from_the_bucket(s3, tmp_dir, up, mirror_factory):
    """L1 lacks the blob: the bucket answers the HEAD (size and digest), the upstream is not
    asked; a blob the bucket lacks too goes on to the upstream (404 here)."""
    data = os.urandom(77 * 1024)
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    status, _, _ = request(s3, "PUT", f"/{BUCKET}/{blob_key(d)}", body=data)
    assert status == 200
    port, extra = with_metrics(tier(s3))
    m = mirror_factory([up], extra=extra)
    mark = up.mark()
    status, headers, _, _ = m.request("HEAD", f"/v2/library/headed/blobs/{d}")
    assert status == 200, status
    assert int(headers["content-length"]) == len(data)
    assert headers["docker-content-digest"] == d
    assert not os.path.exists(m.file_for(d)), "a HEAD downloads nothing"
    assert [r for r in since(up, mark) if d in r[1]] == []
    assert scrape(port).get("regcache_s3_requests_total", op="head", result="ok") == 1
    absent = "sha256:" + hashlib.sha256(b"nowhere at all").hexdigest()
    status, _, _, _ = m.request("HEAD", f"/v2/library/headed/blobs/{absent}")
    assert status == 404
    assert "HEAD" in [r[0] for r in since(up, mark) if absent in r[1]]
    assert scrape(port).get("regcache_s3_requests_total", op="head", result="not_found") == 1


def start_upload(s3, key):
    status, body, _ = request(s3, "POST", f"/{BUCKET}/{key}", query=[("uploads", "")])
    assert status == 200, body


def test_the_janitor_aborts_abandoned_uploads(s3, tmp_dir, up, mirror_factory):
    """An upload begun and never completed: kept while younger than
    s3.abandoned_upload_after (the default, 24h, here), aborted once older (2s here), and
    counted."""
    key = "blobs/sha256/00/abandoned-by-a-crashed-writer"
    start_upload(s3, key)
    port, extra = with_metrics(tier(s3))
    m = mirror_factory([up], extra=extra)
    procs.wait_for(lambda: scrape(port).get("regcache_s3_requests_total", op="list_uploads",
                                            result="ok") >= 1, 20, "the janitor's listing")
    assert [u for u in uploads(s3, "blobs/sha256/00/", bucket=BUCKET) if u[0] == key], "aborted too young"
    assert scrape(port).get("regcache_s3_janitor_aborts_total") == 0
    m.stop()
    time.sleep(2.5)
    port, extra = with_metrics(tier(s3, abandoned_upload_after="2s"))
    m = mirror_factory([up], extra=extra)
    procs.wait_for(lambda: not [u for u in uploads(s3, "blobs/sha256/00/", bucket=BUCKET) if u[0] == key], 20,
                   "the abandoned upload aborted")
    assert scrape(port).get("regcache_s3_janitor_aborts_total") >= 1
    assert "aborted the abandoned upload of " + key in m.log_text()
    # and one begun while the mirror runs goes within a few rounds (every 2 s here)
    key2 = "blobs/sha256/00/abandoned-while-running"
    start_upload(s3, key2)
    procs.wait_for(lambda: not [u for u in uploads(s3, "blobs/sha256/00/", bucket=BUCKET) if u[0] == key2],
                   30, "the second abandoned upload aborted")


def test_tier_metrics_count_requests_bytes_and_the_queue(s3, tmp_dir, up, mirror_factory,
                                                         make_image, push):
    img = push(make_image(428, (250 * 1024, 60 * 1024), fmt="docker"), up, "library/counted",
               "1")
    n = len(img.blob_digests)
    # gc_lease 0: neither mirror asks for the bucket GC's lease (test_cluster_lifecycle)
    port, extra = with_metrics(tier(s3, gc_lease="0"))
    a = mirror_factory([up], extra=extra)
    pull(a, "library/counted:1", tmp_dir, "counted-a")
    sizes = sum(os.path.getsize(a.file_for(d)) for d in img.blob_digests)
    wait_in_bucket(s3, img.blob_digests)
    procs.wait_for(lambda: scrape(port).get("regcache_s3_write_behind_queue") == 0, 20,
                   "the queue drained")
    procs.wait_for(lambda: scrape(port).get("regcache_s3_access_markers_total",
                                            result="written") == n, 20, "a marker per blob")
    s = scrape(port)
    assert s.get("regcache_s3_requests_total", op="get", result="not_found") == n
    # the blobs, their markers, the manifest and its tag's record
    assert s.get("regcache_s3_requests_total", op="put", result="ok") == n + n + 2
    assert s.get("regcache_s3_bytes_total", direction="written") >= sizes
    assert s.get("regcache_s3_bytes_total", direction="read") == 0
    port_b, extra_b = with_metrics(tier(s3, gc_lease="0"))
    b = mirror_factory([up], extra=extra_b)
    pull(b, "library/counted:1", tmp_dir, "counted-b")
    procs.wait_for(lambda: scrape(port_b).get("regcache_s3_access_markers_total",
                                              result="written") == n, 20, "b's markers")
    # B confirmed the tag upstream itself: it writes the record (the manifest is there already)
    procs.wait_for(lambda: scrape(port_b).get("regcache_s3_shared_total", kind="tag", op="write",
                                              result="ok") == 1, 20, "B's tag record")
    s = scrape(port_b)
    assert s.get("regcache_s3_requests_total", op="get", result="ok") == n
    assert s.get("regcache_s3_bytes_total", direction="read") == sizes
    assert s.get("regcache_s3_requests_total", op="put", result="ok") == n + 1  # markers, record
    assert s.get("regcache_s3_requests_total", op="put", result="exists") == 1


def test_a_hanging_bucket_costs_pulls_a_bounded_delay(s3, tmp_dir, up, mirror_factory,
                                                      make_image, push):
    """The endpoint accepts connections and never answers: each fill gives up on the bucket
    after the client's stall timeout and takes the blob from the upstream."""
    img = push(make_image(429, (90 * 1024, 30 * 1024), fmt="docker"), up, "library/hung", "1")
    proxy = TcpRelay(s3.port)
    proxy.stalling = True
    try:
        port, extra = with_metrics(tier(s3, endpoint=f"http://127.0.0.1:{proxy.port}"))
        m = mirror_factory([up], extra=extra)
        mark = up.mark()
        t0 = time.monotonic()
        pull(m, "library/hung:1", tmp_dir, "hung")
        took = time.monotonic() - t0
        assert took < 90, f"a pull took {took:.0f} s with the bucket hanging"
        gets = blob_gets(since(up, mark))
        assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}
        for d in img.blob_digests:
            assert hashlib.sha256(stored(m, d)).hexdigest() == d[7:]
        assert scrape(port).get("regcache_s3_requests_total", op="get", result="timeout") >= 1
        m.stop()
    finally:
        proxy.stop()


def concurrent_gets(m, path, n):
    bodies, errors = [None] * n, []
    barrier = threading.Barrier(n)

    def one(i):
        try:
            c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=120)
            barrier.wait(30)
            c.request("GET", path)
            r = c.getresponse()
            bodies[i] = (r.status, r.read())
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    return bodies


def test_a_flood_of_misses_costs_one_bucket_get_and_one_upstream_get(s3, tmp_dir, up,
                                                                     mirror_factory,
                                                                     make_image, push):
    """30 clients at once for one cold blob: one GET of the bucket (404) and one upstream GET;
    30 at once for a blob only the bucket holds: one bucket GET, none upstream."""
    img = push(make_image(430, (3 << 20,), fmt="docker"), up, "library/flood", "1")
    layer = img.layer_digests[0]
    only = os.urandom(900 * 1024)
    only_d = "sha256:" + hashlib.sha256(only).hexdigest()
    status, _, _ = request(s3, "PUT", f"/{BUCKET}/{blob_key(only_d)}", body=only)
    assert status == 200
    port, extra = with_metrics(tier(s3, gc_lease="0"))  # no GETs of the GC's lease
    m = mirror_factory([up], extra=extra)
    mark = up.mark()
    for status, body in concurrent_gets(m, f"/v2/library/flood/blobs/{layer}", 30):
        assert status == 200 and body == img.blobs[layer]
    assert blob_gets(since(up, mark))[layer] == 1
    s = scrape(port)
    assert s.total("regcache_s3_requests_total", op="get") == 1
    assert s.get("regcache_s3_requests_total", op="get", result="not_found") == 1
    mark = up.mark()
    for status, body in concurrent_gets(m, f"/v2/library/flood/blobs/{only_d}", 30):
        assert status == 200 and body == only
    assert blob_gets(since(up, mark))[only_d] == 0
    s = scrape(port)
    assert s.total("regcache_s3_requests_total", op="get") == 2
    assert s.get("regcache_s3_requests_total", op="get", result="ok") == 1
