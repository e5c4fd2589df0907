# SPDX-License-Identifier: Apache-2.0
"""Three replicas in a cluster on one radosgw bucket (the suite starts and stops Ceph), in front
of Debian's docker-registry with token auth: 60 clients spread over them cost the upstream one
GET per blob and manifest, the bucket ends with every blob once and no multipart upload left,
and the manifest and tag record written by the tag's owner alone;
an upstream that sends a wrong byte has it refused everywhere (no replica store, no object);
with the store away, pulls go on and the commits drain once it is back. Marked `once`: it
starts Ceph and several regcache processes."""

import hashlib
import json
import os

import pytest

import procs
import rgw
from helpers import blob_gets, since
from mirror import Mirror, request
from slowproxy import SlowProxy
from test_cluster import (cluster_extra, crowd, fetch_image, kill_the_owner_mid_fill,
                          manifest_gets, stop_all, ACCEPT)
from test_s3_client import rgw_with_bucket, tool
from test_metrics import scrape
from test_s3_sync import get_object
from test_s3_tier import TcpRelay, blob_key, manifest_key

pytestmark = [pytest.mark.once,
              pytest.mark.skipif(not rgw.available(), reason="Ceph's packages are not installed")]

BUCKET = "regcache-sync"  # the name test_s3_sync's helpers list


@pytest.fixture(scope="module")
def s3(tmp_root):
    yield from rgw_with_bucket(tmp_root, "rgw-cluster", BUCKET)


def start(tmp_dir, up, endpoint, prefix, n=3, upstream_url=None):
    ports = [procs.free_port() for _ in range(n)]
    reps = []
    for i, p in enumerate(ports):
        extra = cluster_extra(ports, p)
        extra["s3"] = {"endpoint": endpoint, "bucket": BUCKET, "access_key": rgw.ACCESS_KEY,
                       "secret_key": rgw.SECRET_KEY, "part_size": "5MiB", "prefix": prefix}
        reps.append(Mirror(os.path.join(tmp_dir, f"{prefix.strip('/')}{i}"),
                           [{"name": "docker.io", "url": upstream_url or up.url}], port=p,
                           extra=extra))
    for m in reps:
        m.start()
    for m in reps:
        procs.wait_for(lambda m=m: procs.http_status(m.port, "/readyz") == 200, 20, "ready")
    procs.wait_for(lambda: all(b"regcache_cluster_members{state=\"up\"} 3" in
                               request(m.port, "GET", "/metrics")[2] for m in reps), 20,
                   "every member up at every member")
    return reps


def in_bucket(s3, prefix, digests):
    p = tool(s3, "list", prefix + "blobs/", env={"S3_BUCKET": BUCKET})
    assert p.returncode == 0, p.stderr
    keys = {ln.split()[0] for ln in p.stdout.decode().splitlines() if ln.startswith(prefix)}
    return {d for d in digests if prefix + blob_key(d) in keys}


def written(m, kind):
    return scrape(m.port).get("regcache_s3_shared_total", kind=kind, op="write", result="ok")


def uploads_left(s3, prefix):
    p = tool(s3, "uploads", prefix, env={"S3_BUCKET": BUCKET})
    assert p.returncode == 0, p.stderr
    return [ln for ln in p.stdout.decode().splitlines() if ln.startswith(prefix)]


def test_sixty_clients_three_replicas_one_bucket(s3, tmp_dir, up, make_image, push):
    img = push(make_image(1411, (12 << 20, 1 << 20, 70 * 1024), fmt="docker"), up,
               "library/shared", "v1")
    reps = start(tmp_dir, up, s3.url, "sixty/")
    try:
        mark = up.mark()
        crowd(reps, "library/shared", "v1")
        reqs = since(up, mark)
        gets = blob_gets(reqs)
        assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}, gets
        assert manifest_gets(reqs) == ["/v2/library/shared/manifests/v1"]
        # written behind by the blobs' owners: every blob once, verified, nothing half done
        procs.wait_for(lambda: in_bucket(s3, "sixty/", img.blob_digests) ==
                       set(img.blob_digests), 60, "every blob in the bucket")
        for d in img.blob_digests:
            assert hashlib.sha256(get_object(s3, "sixty/" + blob_key(d))).hexdigest() == d[7:]
        assert uploads_left(s3, "sixty/") == []
        # the manifest and the tag's record, written once, by the tag's owner alone
        tag_key = "sixty/tags/docker.io/library/shared/v1"
        procs.wait_for(lambda: all(sum(written(m, k) for m in reps) == 1
                                   for k in ("manifest", "tag")), 30, "the owner's writes")
        assert get_object(s3, "sixty/" + manifest_key(img.digest)) == img.raw
        assert json.loads(get_object(s3, tag_key))["digest"] == img.digest
        assert [m for m in reps if written(m, "tag")] == [m for m in reps if written(m, "manifest")]
        # a fourth replica, never started before, warms up from the bucket, not the upstream
        late = Mirror(os.path.join(tmp_dir, "late"), [{"name": "docker.io", "url": up.url}],
                      extra={"s3": {"endpoint": s3.url, "bucket": BUCKET, "prefix": "sixty/",
                                    "access_key": rgw.ACCESS_KEY, "secret_key": rgw.SECRET_KEY}})
        reps.append(late.start())
        mark = up.mark()
        fetch_image(late.port, "library/shared", "v1")
        assert sum(blob_gets(since(up, mark))[d] for d in img.blob_digests) == 0
    finally:
        assert stop_all(reps) == []


def test_a_wrong_byte_from_the_upstream_is_stored_nowhere(s3, tmp_dir, up, make_image, push):
    img = push(make_image(1412, (300 * 1024,), fmt="docker"), up, "library/rotten", "v1")
    layer = img.blob_digests[-1]
    path = up.blob_path(layer)
    with open(path, "r+b") as f:  # one byte flipped in the upstream's copy
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    reps = start(tmp_dir, up, s3.url, "rotten/")
    try:
        st, _, body, _ = request(reps[0].port, "GET", "/v2/library/rotten/manifests/v1",
                                 {"Accept": ACCEPT})
        assert st == 200
        for m in reps:
            try:
                st, _, data, _ = request(m.port, "GET", f"/v2/library/rotten/blobs/{layer}")
            except Exception:  # noqa: BLE001 - a body cut short is a refusal too
                continue
            assert st != 200, "the whole (wrong) body was answered 200"
        for m in reps:
            assert not os.path.exists(m.file_for(layer))
        assert in_bucket(s3, "rotten/", [layer]) == set()
        assert uploads_left(s3, "rotten/") == []
        assert any("do not match the digest" in m.log_text() for m in reps)
    finally:
        assert stop_all(reps) == []


def test_with_the_store_away_pulls_go_on_and_commits_drain_later(s3, tmp_dir, up, make_image,
                                                                 push):
    img = push(make_image(1413, (400 * 1024, 80 * 1024), fmt="docker"), up, "library/away", "v1")
    relay = TcpRelay(s3.port)
    relay.refusing = True
    reps = start(tmp_dir, up, f"http://127.0.0.1:{relay.port}", "away/")
    try:
        mark = up.mark()
        for m in reps:
            fetch_image(m.port, "library/away", "v1")
        gets = blob_gets(since(up, mark))
        assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}
        assert in_bucket(s3, "away/", img.blob_digests) == set()
        # hits go on with the store away
        for m in reps:
            fetch_image(m.port, "library/away", "v1")
        relay.refusing = False
        procs.wait_for(lambda: in_bucket(s3, "away/", img.blob_digests) ==
                       set(img.blob_digests), 60, "the commits drained")
        assert uploads_left(s3, "away/") == []
    finally:
        bad = stop_all(reps)
        relay.stop()
        assert bad == []


def bucket_objects(s3, prefix):
    p = tool(s3, "list", prefix, env={"S3_BUCKET": BUCKET})
    assert p.returncode == 0, p.stderr
    return [ln.split()[0] for ln in p.stdout.decode().splitlines() if ln.startswith(prefix)]


def test_sigkill_of_the_owner_mid_fill_leaves_no_partial_object(s3, tmp_dir, up, make_image,
                                                                push):
    """The owner of a 64 MiB layer (sent at 8 MiB/s) is SIGKILLed at a quarter of it: at most
    2 upstream GETs for it, 1 for the other blob, and the bucket ends with each blob whole
    (multipart, 5 MiB parts) and no upload left behind."""
    img = push(make_image(1414, (64 << 20, 200 * 1024), fmt="docker"), up, "library/bigs3",
               "v1")
    layer = img.layer_digests[0]
    slow = SlowProxy(up.port, rate=8 << 20)
    reps = start(tmp_dir, up, s3.url, "killed/", upstream_url=slow.url)
    try:
        mark = up.mark()
        owner, others, gets = kill_the_owner_mid_fill(reps, up, "library/bigs3", layer)
        assert 1 <= gets[layer] <= 2, gets
        for m in others:
            fetch_image(m.port, "library/bigs3", "v1")
        gets = blob_gets(since(up, mark))
        assert 1 <= gets[layer] <= 2, gets
        assert {d: gets[d] for d in img.blob_digests if d != layer} == \
            {d: 1 for d in img.blob_digests if d != layer}, gets
        procs.wait_for(lambda: in_bucket(s3, "killed/", img.blob_digests) ==
                       set(img.blob_digests), 90, "every blob in the bucket")
        keys = bucket_objects(s3, "killed/blobs/")
        assert sorted(keys) == sorted("killed/" + blob_key(d) for d in img.blob_digests), keys
        for d in img.blob_digests:
            assert hashlib.sha256(get_object(s3, "killed/" + blob_key(d))).hexdigest() == d[7:]
        procs.wait_for(lambda: uploads_left(s3, "killed/") == [], 30, "no upload left")
    finally:
        bad = stop_all(reps)
        slow.close()
        assert bad == []
