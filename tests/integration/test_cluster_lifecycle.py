# SPDX-License-Identifier: Apache-2.0
"""Lifecycle across replicas that share one radosgw bucket (the suite starts and stops Ceph),
with Debian's docker-registry as the upstream and TTLs and intervals of seconds:

- a blob pulled only through replica B (within the TTL, again and again) is kept in the bucket
  by the GC leader A, whose own store never saw it, while a blob nobody pulled past the TTL
  goes (object and marker); a fresh replica then gets the kept one from the bucket, no upstream
  GET. With markers off (s3.access_interval: 0) the same pulls do not keep it;
- over s3.max_size, the least recently pulled across the replicas goes, and only it;
- one leader: of two replicas only one runs the bucket GC; SIGKILLed, the other takes the
  lease once it expired;
- what the leader's pin list reaches stays past the TTL;
- a member's request (a miss forwarded to the blob's owner in a cluster) writes the owner's
  marker;
- what is pushed to a hosted repository stays (its holds);
- a lease replaced behind the leader's back (its If-Match renewal refused) ends its lead;
- a victim pulled between the listing and its deletion is kept (a relay holds the leader's
  re-check until the pull's marker is written);
- N pulls of a blob on one replica within s3.access_interval write one marker, and a restart
  writes one more only for what is served after it.
Marked `once`: it starts Ceph and several regcache processes."""

import hashlib
import os
import time

import pytest

import procs
import rgw
from helpers import blob_gets, since
from mirror import Mirror, request
from test_auth import ALICE, BOB, make_users
from test_cluster import cluster_extra, fetch_image, hrw_order, series, stop_all
from test_hosted import skopeo_push
from test_s3_client import rgw_with_bucket, tool
from test_s3_tier import TcpRelay, blob_key

pytestmark = [pytest.mark.once,
              pytest.mark.skipif(not rgw.available(), reason="Ceph's packages are not installed")]

BUCKET = "regcache-life"
REPO = "library/life"


@pytest.fixture(scope="module")
def s3(tmp_root):
    yield from rgw_with_bucket(tmp_root, "rgw-life", BUCKET)


def marker_key(d):
    return f"access/sha256/{d[7:9]}/{d[7:]}"


def hold_key(d):
    return f"hold/sha256/{d[7:9]}/{d[7:]}"


def replica(tmp_dir, up, name, endpoint, prefix, port=None, s3_more=None, cache=None,
            pin=None, more=None):
    section = {"endpoint": endpoint, "bucket": BUCKET, "access_key": rgw.ACCESS_KEY,
               "secret_key": rgw.SECRET_KEY, "prefix": prefix, "gc_lease": "3s",
               "access_interval": "1s"}
    section.update(s3_more or {})
    extra = {"s3": section, "metrics": {"allow": ["127.0.0.1/32"]},
             "cache": dict({"gc_interval": "1s"}, **(cache or {}))}
    if pin:
        extra["pin"] = pin
    extra.update(more or {})
    return Mirror(os.path.join(tmp_dir, name), [{"name": "docker.io", "url": up.url}],
                  port=port, extra=extra)


def objects(s3, prefix):
    """{key under the prefix: (size, LastModified)} of everything in the bucket under prefix."""
    p = tool(s3, "list", prefix, env={"S3_BUCKET": BUCKET}, bucket=BUCKET)
    assert p.returncode == 0, p.stdout + p.stderr
    out = {}
    for line in p.stdout.decode().splitlines():
        words = line.split()
        if len(words) == 3 and words[0].startswith(prefix):
            out[words[0][len(prefix):]] = (int(words[1]), int(words[2]))
    return out


def get_blob(m, d):
    st, _, data, _ = request(m.port, "GET", f"/v2/{REPO}/blobs/{d}", timeout=60)
    assert st == 200, (st, data[:200])
    assert "sha256:" + hashlib.sha256(data).hexdigest() == d


def value(m, name, labels=""):
    return series(m, name).get(labels, 0.0)


def leader(m):
    return value(m, "regcache_s3_gc_lease_held") == 1


def runs(m):
    return sum(series(m, "regcache_s3_gc_runs_total").values())


def start_leader(m):
    m.start()
    procs.wait_for(lambda: leader(m), 20, "the first replica holding the GC lease")
    return m


def kept_through_another_replica(s3, tmp_dir, up, img, prefix, interval):
    """A leads, B alone pulls `kept` every second for longer than the TTL and the GC rounds
    need, `gone` is pulled once; then a fresh replica C pulls `kept`. Returns (what is left in
    the bucket, C's upstream GETs of kept, A's evicted objects)."""
    kept, gone = img.layer_digests
    more = {"access_interval": interval, "ttl": "6s"}
    a = start_leader(replica(tmp_dir, up, prefix.strip("/") + "-a", s3.url, prefix, s3_more=more))
    b = replica(tmp_dir, up, prefix.strip("/") + "-b", s3.url, prefix, s3_more=more).start()
    reps = [a, b]
    try:
        for d in (kept, gone):
            get_blob(b, d)
        procs.wait_for(lambda: {blob_key(kept), blob_key(gone)} <= set(objects(s3, prefix)),
                       30, "both written behind")
        written = objects(s3, prefix)[blob_key(kept)][1]
        # past the TTL since the write and a few GC rounds more, kept pulled through B only
        while time.time() < written + 6 + 6:
            get_blob(b, kept)
            time.sleep(1.0)
        procs.wait_for(lambda: blob_key(gone) not in objects(s3, prefix), 20,
                       "the blob nobody pulled evicted")
        left = objects(s3, prefix)
        assert marker_key(gone) not in left
        assert value(b, "regcache_s3_gc_evicted_objects_total") == 0  # B never led
        assert runs(b) == 0
        assert not os.path.exists(a.file_for(kept))  # A's own store never had it
        c = replica(tmp_dir, up, prefix.strip("/") + "-c", s3.url, prefix, s3_more=more).start()
        reps.append(c)
        mark = up.mark()
        get_blob(c, kept)
        return left, blob_gets(since(up, mark))[kept], \
            value(a, "regcache_s3_gc_evicted_objects_total")
    finally:
        assert stop_all(reps) == []


def test_a_blob_pulled_through_another_replica_is_kept_in_the_bucket(s3, tmp_dir, up,
                                                                     make_image, push):
    img = push(make_image(1501, (150 * 1024, 160 * 1024), fmt="docker"), up, REPO, "kept")
    kept, gone = img.layer_digests
    left, upstream_gets, evicted = kept_through_another_replica(s3, tmp_dir, up, img, "keep/",
                                                                "1s")
    assert blob_key(kept) in left and marker_key(kept) in left
    assert left[marker_key(kept)][0] == 0  # a zero-byte marker
    assert left[marker_key(kept)][1] > left[blob_key(kept)][1]  # pulled after it was written
    assert upstream_gets == 0  # from the bucket
    assert evicted >= 1


def test_without_markers_the_same_pulls_do_not_keep_it(s3, tmp_dir, up, make_image, push):
    """The test above with s3.access_interval 0: the leader sees only when the blob was
    written, so it goes past the TTL however often B served it, and C fetches it upstream."""
    img = push(make_image(1502, (150 * 1024, 160 * 1024), fmt="docker"), up, REPO, "nomark")
    kept, gone = img.layer_digests
    left, upstream_gets, _ = kept_through_another_replica(s3, tmp_dir, up, img, "nomark/", "0")
    assert blob_key(kept) not in left and marker_key(kept) not in left
    assert upstream_gets == 1


def test_the_size_cap_evicts_the_least_recently_pulled_across_replicas(s3, tmp_dir, up,
                                                                        make_image, push):
    img = push(make_image(1503, (100 * 1024, 101 * 1024, 102 * 1024), fmt="docker"), up, REPO,
               "cap")
    b1, b2, b3 = img.layer_digests
    prefix = "cap/"
    a = start_leader(replica(tmp_dir, up, "cap-a", s3.url, prefix))
    b = replica(tmp_dir, up, "cap-b", s3.url, prefix).start()
    reps = [a, b]
    try:
        for d in (b1, b2, b3):
            get_blob(a, d)
        procs.wait_for(lambda: {blob_key(d) for d in (b1, b2, b3)} <= set(objects(s3, prefix)),
                       30, "all three written behind")
        # pulled last: b2 on B, then b3 on A, then b1 on B, a second and more apart
        for m, d in ((b, b2), (a, b3), (b, b1)):
            time.sleep(1.2)
            get_blob(m, d)

        def markers_in_order():
            o = objects(s3, prefix)
            t = [o.get(marker_key(d), (0, 0))[1] for d in (b2, b3, b1)]
            return t[0] < t[1] < t[2]
        procs.wait_for(markers_in_order, 15, "the three markers in the order of the pulls")
        assert stop_all(reps) == []
        sizes = {d: objects(s3, prefix)[blob_key(d)][0] for d in (b1, b2, b3)}
        total = sum(sizes.values())
        # over the cap by less than b2 (down to 90 % of the cap): b2 alone goes
        cap = total - sizes[b2] // 2
        assert total - cap * 9 // 10 <= sizes[b2]
        a = replica(tmp_dir, up, "cap-a", s3.url, prefix, port=a.port,
                    s3_more={"max_size": str(cap)})
        reps = [start_leader(a)]
        procs.wait_for(lambda: blob_key(b2) not in objects(s3, prefix), 30, "b2 evicted")
        n = runs(a)
        procs.wait_for(lambda: runs(a) >= n + 2, 20, "two more bucket GC runs")
        o = objects(s3, prefix)
        assert blob_key(b1) in o and blob_key(b3) in o
        assert marker_key(b2) not in o and marker_key(b1) in o and marker_key(b3) in o
        assert value(a, "regcache_s3_gc_evicted_objects_total") == 1
        assert value(a, "regcache_s3_gc_evicted_bytes_total") == sizes[b2]
    finally:
        assert stop_all(reps) == []


def test_one_leader_and_a_takeover_once_its_lease_expired(s3, tmp_dir, up):
    prefix = "lead/"
    reps = [replica(tmp_dir, up, f"lead-{i}", s3.url, prefix).start() for i in range(2)]
    try:
        procs.wait_for(lambda: sum(leader(m) for m in reps) == 1, 20, "one leader")
        first = next(m for m in reps if leader(m))
        other = next(m for m in reps if m is not first)
        n = runs(first)
        procs.wait_for(lambda: runs(first) >= n + 3, 20, "the leader's bucket GC runs")
        assert runs(other) == 0 and not leader(other)
        assert sum("holds the bucket GC lease" in m.log_text() for m in reps) == 1
        first.proc.kill()
        first.proc = None
        killed = time.monotonic()
        procs.wait_for(lambda: leader(other), 20, "the other replica taking the lease")
        taken = time.monotonic() - killed
        procs.wait_for(lambda: runs(other) >= 1, 20, "the new leader's bucket GC")
        assert "was not renewed" in other.log_text()
        # not before the lease (3s) could have expired: at most one renewal (1s) before the kill
        assert taken >= 1.5, taken
    finally:
        assert stop_all(reps) == []


def test_what_the_leader_pins_stays_in_the_bucket(s3, tmp_dir, up, make_image, push):
    """The pin list of the leader keeps an image's blobs in the bucket past the TTL; a blob
    written at the same time and not pinned goes."""
    pinned = push(make_image(1506, (110 * 1024,), fmt="docker"), up, REPO, "pinned")
    loose = push(make_image(1507, (111 * 1024,), fmt="docker"), up, REPO, "loose")
    prefix = "pins/"
    a = start_leader(replica(tmp_dir, up, "pins-a", s3.url, prefix, s3_more={"ttl": "4s"},
                             pin=[f"{REPO}:pinned"]))
    reps = [a]
    try:
        fetch_image(a.port, REPO, "pinned")
        get_blob(a, loose.layer_digests[0])
        want = {blob_key(d) for d in pinned.blob_digests + loose.layer_digests}
        procs.wait_for(lambda: want <= set(objects(s3, prefix)), 30, "written behind")
        procs.wait_for(lambda: blob_key(loose.layer_digests[0]) not in objects(s3, prefix), 30,
                       "the loose blob evicted")
        o = objects(s3, prefix)
        assert {blob_key(d) for d in pinned.blob_digests} <= set(o)
        line = a.log_text().split("s3 gc: evicted 1 of 3 blob objects")[1].split("\n")[0]
        assert "; 2 pinned;" in line, line
    finally:
        assert stop_all(reps) == []


def test_a_lease_replaced_behind_the_leaders_back_ends_its_lead(s3, tmp_dir, up):
    """Its renewal (If-Match of its last ETag) gets 412 from radosgw: it stops leading at once,
    and takes the lease again only once the replacement went unrenewed for s3.gc_lease."""
    prefix = "steal/"
    a = start_leader(replica(tmp_dir, up, "steal-a", s3.url, prefix))
    reps = [a]
    try:
        body = b"holder: someone else\n"
        p = tool(s3, "put", prefix + "gc/lease", hashlib.sha256(body).hexdigest(), "nomatch",
                 stdin=body, env={"S3_BUCKET": BUCKET}, bucket=BUCKET)
        assert p.returncode == 0, p.stdout + p.stderr
        procs.wait_for(lambda: not leader(a), 10, "the leader stepping down")
        assert "taken over by another replica" in a.log_text()
        procs.wait_for(lambda: leader(a), 20, "the lease taken again after it expired")
        assert "the bucket GC lease of someone else was not renewed" in a.log_text()
    finally:
        assert stop_all(reps) == []


def test_hosted_content_stays_in_the_bucket(s3, tmp_dir, up, make_image, push):
    """A push into a hosted repository writes a hold beside each object: the bucket GC keeps
    them past the TTL (the local GC never evicts hosted content either), and a pulled blob
    written at the same time goes."""
    img = make_image(1508, (100 * 1024,), fmt="oci")
    loose = push(make_image(1509, (101 * 1024,), fmt="docker"), up, REPO, "loose2")
    prefix = "hosted/"
    more = {"auth": {"htpasswd": make_users(tmp_dir, ALICE, BOB), "realm": "Hosted",
                     "push_users": ["alice"], "scheme": "basic"},
            "hosted": ["team/*"]}
    a = replica(tmp_dir, up, "hosted-a", s3.url, prefix, s3_more={"ttl": "4s"}, more=more)
    a.start()
    reps = [a]
    try:
        procs.wait_for(lambda: "holds the bucket GC lease" in a.log_text(), 20, "the lease")
        skopeo_push(img, a.port, "team/kept:v1")
        get_blob(a, loose.layer_digests[0])
        hosted = img.blob_digests + [img.digest]
        want = {blob_key(d) for d in hosted + loose.layer_digests}
        procs.wait_for(lambda: want <= set(objects(s3, prefix)), 30, "written behind")
        procs.wait_for(lambda: blob_key(loose.layer_digests[0]) not in objects(s3, prefix), 30,
                       "the pulled blob evicted")
        o = objects(s3, prefix)
        assert {blob_key(d) for d in hosted} <= set(o)
        assert {hold_key(d) for d in hosted} <= set(o)
        assert all(o[hold_key(d)][0] == 0 for d in hosted)
    finally:
        assert stop_all(reps) == []


def test_holds_written_while_the_store_is_away_are_written_once_it_is_back(
        s3, tmp_dir, up, make_image, push):
    """A push while the store refuses every connection: the holds wait in the persisted
    write-behind queue like the blobs, survive a restart, and are written once the store is
    back, so the bucket GC cannot take the pushed blobs for unused ones."""
    img = make_image(1511, (100 * 1024,), fmt="oci")
    prefix = "holdaway/"
    relay = TcpRelay(s3.port)
    relay.refusing = True
    more = {"auth": {"htpasswd": make_users(tmp_dir, ALICE, BOB), "realm": "Hosted",
                     "push_users": ["alice"], "scheme": "basic"},
            "hosted": ["team/*"]}
    a = replica(tmp_dir, up, "holdaway-a", f"http://127.0.0.1:{relay.port}", prefix,
                s3_more={"gc_lease": "0"}, more=more)
    a.start()
    try:
        skopeo_push(img, a.port, "team/away:v1")
        hosted = img.blob_digests + [img.digest]
        time.sleep(1)
        assert not {hold_key(d) for d in hosted} & set(objects(s3, prefix))
        assert a.stop() == 0
        relay.refusing = False
        a.start()
        procs.wait_for(lambda: {hold_key(d) for d in hosted} <= set(objects(s3, prefix)), 40,
                       "the holds written after the restart, once the store is back")
        assert {blob_key(d) for d in hosted} <= set(objects(s3, prefix))
    finally:
        relay.stop()
        assert stop_all([a]) == []


def test_a_members_request_writes_the_owners_marker(s3, tmp_dir, up, make_image, push):
    """In a cluster, a miss on one replica is served by the blob's owner (a member's request):
    the owner, which no client asked, writes the blob's marker, and so does the replica that
    answered the client."""
    img = push(make_image(1510, (100 * 1024,), fmt="docker"), up, REPO, "peer")
    ports = [procs.free_port() for _ in range(2)]
    reps = [replica(tmp_dir, up, f"peer-{i}", s3.url, "peer/", port=p, s3_more={"gc_lease": "0"},
                    more=cluster_extra(ports, p)) for i, p in enumerate(ports)]
    for m in reps:
        m.start()
    try:
        procs.wait_for(lambda: all(b"regcache_cluster_members{state=\"up\"} 2" in
                                   request(m.port, "GET", "/metrics")[2] for m in reps), 20,
                       "both members up")
        d = img.layer_digests[0]
        owner = reps[hrw_order(ports, d)[0]]
        asker = next(m for m in reps if m is not owner)
        get_blob(asker, d)  # the asker asks the owner
        written = '{result="written"}'
        for m in reps:
            procs.wait_for(lambda m=m: value(m, "regcache_s3_access_markers_total", written) == 1,
                           15, "a marker from each")
        assert marker_key(d) in objects(s3, "peer/")
        answered = '{kind="blob",result="answered"}'
        assert value(owner, "regcache_cluster_asked_total", answered) == 0  # asked nobody
        assert value(asker, "regcache_cluster_asked_total", answered) == 1
    finally:
        assert stop_all(reps) == []


def test_a_victim_pulled_between_listing_and_deletion_is_kept(s3, tmp_dir, up, make_image,
                                                              push):
    img = push(make_image(1504, (120 * 1024,), fmt="docker"), up, REPO, "race")
    v = img.layer_digests[0]
    prefix = "race/"
    # the leader's re-check of v's marker (a HEAD) waits at the relay while B pulls v
    relay = TcpRelay(s3.port, hold=f"HEAD /{BUCKET}/{prefix}{marker_key(v)} ".encode())
    more = {"ttl": "5s"}
    a = start_leader(replica(tmp_dir, up, "race-a", f"http://127.0.0.1:{relay.port}", prefix,
                             s3_more=more))
    b = replica(tmp_dir, up, "race-b", s3.url, prefix, s3_more=more,
                cache={"ttl": "1h"}).start()
    reps = [a, b]
    try:
        get_blob(b, v)
        procs.wait_for(lambda: blob_key(v) in objects(s3, prefix), 30, "written behind")
        assert relay.held.wait(40), "the leader never re-checked the expired blob"
        assert blob_key(v) in objects(s3, prefix)
        n = value(b, "regcache_s3_access_markers_total", '{result="written"}')
        get_blob(b, v)  # a hit in B's store: a new marker
        procs.wait_for(lambda: value(b, "regcache_s3_access_markers_total",
                                     '{result="written"}') == n + 1, 15, "B's new marker")
        relay.release.set()
        procs.wait_for(lambda: "1 kept as pulled since the listing" in a.log_text(), 15,
                       "the run that kept it")
        o = objects(s3, prefix)
        assert blob_key(v) in o and marker_key(v) in o
        assert value(a, "regcache_s3_gc_evicted_objects_total") == 0
    finally:
        relay.stop()
        assert stop_all(reps) == []


def test_pulls_within_the_interval_write_one_marker(s3, tmp_dir, up, make_image, push):
    img = push(make_image(1505, (90 * 1024, 91 * 1024), fmt="docker"), up, REPO, "marks")
    d, other = img.layer_digests
    prefix = "marks/"
    more = {"access_interval": "1h"}
    m = replica(tmp_dir, up, "marks-a", s3.url, prefix, s3_more=more).start()
    reps = [m]
    written = '{result="written"}'
    try:
        get_blob(m, other)  # a second digest, served once: one marker of its own
        for _ in range(10):
            get_blob(m, d)
        procs.wait_for(lambda: value(m, "regcache_s3_access_markers_total", written) == 2, 15,
                       "the markers written")
        time.sleep(1.0)
        for _ in range(10):
            get_blob(m, d)
        time.sleep(1.0)
        assert value(m, "regcache_s3_access_markers_total", written) == 2
        o = objects(s3, prefix)
        assert o[marker_key(d)][0] == 0 and marker_key(other) in o
        # a restart forgets when markers were written: one more for d, served again, and
        # none for what is not served
        assert stop_all(reps) == []
        m.start()
        for _ in range(10):
            get_blob(m, d)
        procs.wait_for(lambda: value(m, "regcache_s3_access_markers_total", written) == 1, 15,
                       "d's marker after the restart")
        time.sleep(1.0)
        assert value(m, "regcache_s3_access_markers_total", written) == 1
    finally:
        assert stop_all(reps) == []
