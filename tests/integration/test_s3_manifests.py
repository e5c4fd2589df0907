# SPDX-License-Identifier: Apache-2.0
"""Manifests and tags shared through the S3 tier, against Ceph's radosgw on loopback and
Debian's docker-registry as the upstream: a pull writes the manifest (under its digest, its
media type as Content-Type) and the tag's record behind into the bucket; a replica that never
saw the tag serves it, stale, from the bucket while its upstream refuses every connection,
answers 503 or 429 (and during the pause a 429 asks for, without asking again), with its blobs from the bucket too and nothing reaching the upstream; a manifest by digest is asked
of the bucket before the upstream; a manifest object or tag record that does not verify is
refused (the client gets the error it got without the tier, never the wrong bytes); over many
revalidations of an unchanged tag its record is written once, and once more when the tag
moves; a purged tag's record leaves the bucket, so no replica serves it from there. Marked
`once`: it starts Ceph."""

import hashlib
import json
import os
import time

import pytest

import clients
import procs
import rgw
from mirror import regcache, request
from switchproxy import SwitchProxy
from test_cluster import ACCEPT, fetch_image
from test_metrics import scrape
from test_s3_client import rgw_with_bucket, tool
from test_s3_signing import request as s3_request
from test_s3_sync import get_object
from test_s3_tier import blob_key, manifest_key, tag_key, tier, with_metrics

pytestmark = [pytest.mark.once,
              pytest.mark.skipif(not rgw.available(), reason="Ceph's packages are not installed")]

BUCKET = "regcache-sync"  # the name test_s3_sync's helpers read


@pytest.fixture(scope="module")
def s3(tmp_root):
    yield from rgw_with_bucket(tmp_root, "rgw-manifests", BUCKET)


def keys(s3, prefix):
    p = tool(s3, "list", prefix, timeout=60, bucket=BUCKET)
    assert p.returncode == 0, p.stdout + p.stderr
    return {ln.split()[0] for ln in p.stdout.decode().splitlines() if ln.startswith(prefix)}


def wait_keys(s3, prefix, want, timeout=30):
    want = {prefix + k for k in want}
    procs.wait_for(lambda: want <= keys(s3, prefix), timeout, f"{sorted(want)} in the bucket")


def shared(port, kind, op, result="ok"):
    return scrape(port).get("regcache_s3_shared_total", kind=kind, op=op, result=result)


def put_object(s3, key, data):
    """Overwrites key with data, as the store's own client would (no check of what it holds)."""
    p = tool(s3, "put", key, hashlib.sha256(data).hexdigest(), "nomatch", stdin=data,
             bucket=BUCKET)
    assert p.returncode == 0, p.stdout + p.stderr


def pulled_by_a(s3, up, mirror_factory, make_image, push, seed, repo, tag, prefix):
    """An image pushed upstream and pulled through replica A: its manifest, tag record and
    blobs in the bucket under prefix. Returns (image, A, A's metrics port)."""
    img = push(make_image(seed, (300 * 1024, 40 * 1024), fmt="docker"), up, repo, tag)
    port, extra = with_metrics(tier(s3, prefix=prefix))
    a = mirror_factory([up], extra=extra)
    fetch_image(a.port, repo, tag)
    wait_keys(s3, prefix, [manifest_key(img.digest), tag_key(repo, tag)] +
              [blob_key(d) for d in img.blob_digests])
    return img, a, port


def replica_behind(proxy, s3, mirror_factory, prefix):
    """Replica C: a store of its own, the same bucket, its upstream behind proxy."""
    port, extra = with_metrics(tier(s3, prefix=prefix))
    c = mirror_factory([{"name": "docker.io", "url": f"http://127.0.0.1:{proxy.port}"}],
                       extra=extra)
    return c, port


def test_a_pull_writes_the_manifest_and_the_tag_record_behind(s3, up, mirror_factory,
                                                              make_image, push):
    img, a, port = pulled_by_a(s3, up, mirror_factory, make_image, push, 1501,
                               "library/written", "1", "written/")
    status, body, headers = s3_request(s3, "GET", f"/{BUCKET}/written/" +
                                       manifest_key(img.digest))
    assert status == 200 and body == img.raw
    assert headers.get("Content-Type") == img.media_type
    rec = json.loads(get_object(s3, "written/" + tag_key("library/written", "1")))
    assert {k: rec[k] for k in ("upstream", "repository", "tag", "digest", "mediaType")} == {
        "upstream": "docker.io", "repository": "library/written", "tag": "1",
        "digest": img.digest, "mediaType": img.media_type}
    assert abs(rec["confirmed"] / 1000 - time.time()) < 120
    procs.wait_for(lambda: shared(port, "tag", "write") == 1, 10, "the tag record counted")
    assert shared(port, "manifest", "write") == 1
    assert scrape(port).total("regcache_s3_shared_total") == 2  # no read, nothing failed


@pytest.mark.parametrize("outage", ["refuse", "503", "429"])
def test_a_replica_that_never_saw_the_tag_serves_it_from_the_bucket_when_the_upstream_is_down(
        s3, tmp_dir, up, mirror_factory, make_image, push, outage):
    repo = "library/shared-tag"
    prefix = f"down-{outage}/"
    img, a, _ = pulled_by_a(s3, up, mirror_factory, make_image, push, 1502, repo, "1", prefix)
    other = push(make_image(1508, (20 * 1024,), fmt="docker"), up, repo, "2")
    st, _, _, _ = request(a.port, "GET", f"/v2/{repo}/manifests/2", {"Accept": ACCEPT})
    assert st == 200
    wait_keys(s3, prefix, [manifest_key(other.digest), tag_key(repo, "2")])
    proxy = SwitchProxy(up.port, mode=outage)
    try:
        c, port = replica_behind(proxy, s3, mirror_factory, prefix)
        mark = up.mark()
        st, h, body, _ = request(c.port, "GET", f"/v2/{repo}/manifests/1", {"Accept": ACCEPT})
        assert st == 200, (st, body[:300])
        assert body == img.raw and h["docker-content-digest"] == img.digest
        assert h["content-type"] == img.media_type
        fetch_image(c.port, repo, "1")  # its blobs from the bucket as well
        assert up.requests()[mark:] == []  # nothing of C's reached the upstream
        assert proxy.requests(), "C asked its upstream first"
        assert "stale from the s3 tier" in c.log_text()
        assert [e.cache for e in c.entries() if e.path == f"/v2/{repo}/manifests/1"][:1] \
            == ["stale"]
        assert shared(port, "tag", "read") == 1 and shared(port, "manifest", "read") == 1
        # stored like a stale cached manifest: asked again, the bucket is not read again
        st, _, body, _ = request(c.port, "GET", f"/v2/{repo}/manifests/1", {"Accept": ACCEPT})
        assert st == 200 and body == img.raw
        assert os.path.exists(c.file_for(img.digest))
        assert shared(port, "tag", "read") == 1
        # another tag: after a 429, during its pause, C asks the upstream nothing
        asked = len(proxy.requests())
        st, _, body, _ = request(c.port, "GET", f"/v2/{repo}/manifests/2", {"Accept": ACCEPT})
        assert st == 200 and body == other.raw
        if outage == "429":
            assert len(proxy.requests()) == asked, proxy.requests()
        assert shared(port, "tag", "read") == 2
        # C fetched nothing from the upstream: it writes nothing behind
        assert shared(port, "manifest", "write") == 0 and shared(port, "tag", "write") == 0
        # a real client through another such replica: skopeo's pull of the tag
        c2, _ = replica_behind(proxy, s3, mirror_factory, prefix)
        dest = os.path.join(tmp_dir, "c2")
        clients.skopeo_copy_from_mirror(c2.port, f"{repo}:1", dest)
        assert os.path.exists(c2.file_for(img.digest))
        assert all(os.path.exists(c2.file_for(d)) for d in img.blob_digests)
        assert up.requests()[mark:] == []
    finally:
        proxy.stop()


def test_a_manifest_by_digest_is_asked_of_the_bucket_first(s3, up, mirror_factory,
                                                          make_image, push):
    repo = "library/by-digest"
    img, a, _ = pulled_by_a(s3, up, mirror_factory, make_image, push, 1503, repo, "1",
                            "digest/")
    proxy = SwitchProxy(up.port, mode="pass")
    try:
        d, port = replica_behind(proxy, s3, mirror_factory, "digest/")
        st, h, body, _ = request(d.port, "GET", f"/v2/{repo}/manifests/{img.digest}",
                                 {"Accept": ACCEPT})
        assert st == 200 and body == img.raw, (st, body[:300])
        assert h["content-type"] == img.media_type
        assert [r for r in proxy.requests() if "/manifests/" in r[1]] == []
        assert shared(port, "manifest", "read") == 1
    finally:
        proxy.stop()


def test_a_manifest_object_or_tag_record_that_does_not_verify_is_refused(
        s3, up, mirror_factory, make_image, push):
    repo = "library/tampered"
    img, a, _ = pulled_by_a(s3, up, mirror_factory, make_image, push, 1504, repo, "1",
                            "tamper/")
    other = push(make_image(1505, (20 * 1024,), fmt="docker"), up, "library/other", "1")
    # the manifest object under img's digest now holds another (valid) manifest's bytes
    put_object(s3, "tamper/" + manifest_key(img.digest), other.raw)
    # a record under tag 2 that names tag 1 (a copy), and one that is not JSON under tag 3
    rec = get_object(s3, "tamper/" + tag_key(repo, "1"))
    put_object(s3, "tamper/" + tag_key(repo, "2"), rec)
    put_object(s3, "tamper/" + tag_key(repo, "3"), b"not json\n")
    proxy = SwitchProxy(up.port, mode="refuse")
    try:
        c, port = replica_behind(proxy, s3, mirror_factory, "tamper/")
        for tag in ("1", "2", "3"):
            st, _, body, _ = request(c.port, "GET", f"/v2/{repo}/manifests/{tag}",
                                     {"Accept": ACCEPT})
            assert st in (502, 503, 504), (tag, st, body[:300])
            assert body != other.raw and body != img.raw
        log = c.log_text()
        assert f"the manifest object of {img.digest} holds bytes that hash to " \
               f"{other.digest}; refused" in log
        assert "its tag is not 2" in log and "it is not JSON" in log
        assert shared(port, "manifest", "read", "refused") == 1
        assert shared(port, "tag", "read", "refused") == 2
        assert not os.path.exists(c.file_for(img.digest))
        assert not os.path.exists(c.file_for(other.digest))
    finally:
        proxy.stop()


def test_tag_records_are_written_once_while_unchanged_and_again_when_the_tag_moves(
        s3, up, mirror_factory, make_image, push):
    repo = "library/revalidated"
    img, a, port = pulled_by_a(s3, up, mirror_factory, make_image, push, 1506, repo, "1",
                               "bounded/")
    procs.wait_for(lambda: shared(port, "tag", "write") == 1, 10, "the first record")
    heads = len([r for r in up.requests() if r[0] == "HEAD" and "/manifests/1" in r[1]])
    for _ in range(8):  # revalidate_after is 1s: each GET after it revalidates with a HEAD
        time.sleep(1.1)
        st, _, body, _ = request(a.port, "GET", f"/v2/{repo}/manifests/1", {"Accept": ACCEPT})
        assert st == 200 and body == img.raw
    assert len([r for r in up.requests() if r[0] == "HEAD" and "/manifests/1" in r[1]]) \
        >= heads + 7, "the tag was revalidated"
    assert shared(port, "tag", "write") == 1
    moved = push(make_image(1507, (30 * 1024,), fmt="docker"), up, repo, "1")
    time.sleep(1.1)
    st, _, body, _ = request(a.port, "GET", f"/v2/{repo}/manifests/1", {"Accept": ACCEPT})
    assert st == 200 and body == moved.raw
    procs.wait_for(lambda: shared(port, "tag", "write") == 2, 10, "the moved tag's record")
    procs.wait_for(lambda: json.loads(get_object(s3, "bounded/" + tag_key(repo, "1")))
                   ["digest"] == moved.digest, 10, "the record names the new digest")
    for _ in range(3):
        time.sleep(1.1)
        request(a.port, "GET", f"/v2/{repo}/manifests/1", {"Accept": ACCEPT})
    assert shared(port, "tag", "write") == 2
    assert shared(port, "manifest", "write") == 2


def test_a_purged_tag_leaves_the_bucket_and_is_served_from_it_no_more(
        s3, up, mirror_factory, make_image, push):
    repo = "library/purged-tag"
    img, a, _ = pulled_by_a(s3, up, mirror_factory, make_image, push, 1509, repo, "1",
                            "purged/")
    r = regcache("purge", f"docker.io/{repo}:1", "-c", a.config_path, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    procs.wait_for(lambda: "purged/" + tag_key(repo, "1") not in keys(s3, "purged/"), 30,
                   "the tag's record deleted from the bucket")
    proxy = SwitchProxy(up.port, mode="refuse")
    try:
        c, port = replica_behind(proxy, s3, mirror_factory, "purged/")
        st, _, body, _ = request(c.port, "GET", f"/v2/{repo}/manifests/1", {"Accept": ACCEPT})
        assert st == 503, (st, body[:300])
        assert shared(port, "tag", "read", "not_found") == 1
    finally:
        proxy.stop()
    # pulled again through A, the tag's record is written again
    fetch_image(a.port, repo, "1")
    wait_keys(s3, "purged/", [tag_key(repo, "1")])
