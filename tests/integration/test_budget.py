# SPDX-License-Identifier: Apache-2.0
"""One client cannot spend the upstream's pull budget: a narrow Accept, missing tags, cold
digests, HEADs and a 429's Retry-After all cost the upstream at most one request per distinct
answer (a manifest GET per (tag, digest) change, a HEAD per revalidate_after), whatever the
client loops over. The upstream's own request log is the evidence."""

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import assert_error, get, since
from scripted import (DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Reply, Scripted, digest_of,
                      image_manifest)
from upstream import count

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def _mirror(mirror_factory, up, **kw):
    kw.setdefault("revalidate_after", "1m")
    return mirror_factory([{"name": "docker.io", "url": up.url}], **kw)


def _negotiating(up, repo, tag, get_delay=0.0):
    """Serves repo:tag as an OCI index to clients that take one, else as its amd64 docker
    manifest (as Docker Hub does), each GET after get_delay seconds; returns (index, docker
    manifest)."""
    plat, _ = image_manifest(b'{"architecture":"amd64"}', [b"l1"], DOCKER_MANIFEST)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": digest_of(plat), "size": len(plat),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()

    def answer(req):
        if req.method == "GET" and get_delay:
            time.sleep(get_delay)
        accept = req.header("accept", "")
        body, t = (index, OCI_INDEX) if (OCI_INDEX in accept or not accept) \
            else (plat, DOCKER_MANIFEST)
        return Reply(200, [("Content-Type", t), ("Docker-Content-Digest", digest_of(body))], body)
    up.route("*", rf"/v2/{repo}/manifests/{tag}", answer)
    up.manifest(repo, None, plat)
    up.manifest(repo, None, index)
    return index, plat


def test_a_narrow_accept_is_answered_from_the_cache_per_accept_class(mirror_factory):
    up = Scripted()
    try:
        index, plat = _negotiating(up, "team/app", "1")
        m = _mirror(mirror_factory, up)
        s, h, body = get(m, "/v2/team/app/manifests/1")
        assert s == 200 and body == index
        for _ in range(30):
            s, h, body = get(m, "/v2/team/app/manifests/1", headers={"Accept": DOCKER_MANIFEST})
            assert s == 200 and body == plat and h["content-type"] == DOCKER_MANIFEST
            s, h, body = get(m, "/v2/team/app/manifests/1",
                             headers={"Accept": f"{DOCKER_MANIFEST}, {DOCKER_LIST}"})
            assert s == 200 and body == plat
        # the full class still gets the index
        s, h, body = get(m, "/v2/team/app/manifests/1")
        assert s == 200 and body == index
        gets = up.requests("GET", "/manifests/")
        assert len(gets) <= 2, [(r.path, r.header("accept")) for r in gets]
        assert len(up.requests("HEAD", "/manifests/")) <= 3  # one per Accept class
    finally:
        up.stop()


def test_missing_tags_and_digests_are_asked_upstream_once(mirror_factory):
    up = Scripted()
    try:
        m = _mirror(mirror_factory, up)  # the default negative_ttl (30 s) outlasts the test
        cold = "sha256:" + "ab" * 32
        for _ in range(25):
            for path in ("/v2/team/app/manifests/nope", f"/v2/team/app/manifests/{cold}"):
                s, h, body = get(m, path)
                assert_error(s, body, 404, "MANIFEST_UNKNOWN")
            s, h, body = get(m, f"/v2/team/app/blobs/{cold}")
            assert_error(s, body, 404, "BLOB_UNKNOWN")
            s, h, body = get(m, f"/v2/team/app/blobs/{cold}", method="HEAD")
            assert s == 404
        assert len(up.requests(path="/manifests/nope")) == 1
        assert len(up.requests(path=f"/manifests/{cold}")) == 1
        assert len(up.requests(path=f"/blobs/{cold}")) == 1
    finally:
        up.stop()


def test_a_missing_tag_is_found_once_negative_ttl_has_passed(mirror_factory):
    up = Scripted()
    try:
        m = _mirror(mirror_factory, up, extra={"cache": {"negative_ttl": "1s"}})
        s, h, body = get(m, "/v2/team/app/manifests/late")
        assert_error(s, body, 404, "MANIFEST_UNKNOWN")
        body, _ = image_manifest(b'{"os":"linux"}', [b"late"])
        up.manifest("team/app", "late", body)
        up.manifest("team/other", "late", body)
        # another repository is not blocked by this one's 404
        s, h, got = get(m, "/v2/team/other/manifests/late")
        assert s == 200 and got == body
        time.sleep(1.3)
        s, h, got = get(m, "/v2/team/app/manifests/late")
        assert s == 200 and got == body
    finally:
        up.stop()


def test_a_429_retry_after_pauses_that_upstream_and_cached_content_is_still_served(
        mirror_factory):
    up = Scripted()
    try:
        body, blobs = image_manifest(b'{"os":"linux"}', [b"cached"])
        up.manifest("team/app", "1", body)
        for data in blobs.values():
            up.blob(data)
        m = _mirror(mirror_factory, up, revalidate_after="1s")
        s, h, got = get(m, "/v2/team/app/manifests/1")
        assert s == 200 and got == body
        for d in blobs:
            assert get(m, f"/v2/team/app/blobs/{d}")[0] == 200
        up.route("*", r"/v2/.+/(manifests|blobs)/.*",
                 lambda req: Reply.error(429, "TOOMANYREQUESTS", [("Retry-After", "3")]))
        time.sleep(1.2)
        mark = len(up.log)
        refused = 0
        for i in range(40):
            s, h, got = get(m, f"/v2/team/app/manifests/cold{i % 4}")
            assert_error(s, got, 429, "TOOMANYREQUESTS")
            assert 0 < int(h["retry-after"]) <= 3
            refused += 1
            s, h, got = get(m, f"/v2/team/app/blobs/sha256:{'cd' * 32}", method="HEAD")
            assert s == 429
            # what is cached is still served
            s, h, got = get(m, "/v2/team/app/manifests/1")
            assert s == 200 and got == body
        asked = [r for r in up.log[mark:] if "/v2/team/" in r.path]
        assert len(asked) <= 2, [(r.method, r.path) for r in asked]
        # the pause ends with Retry-After
        time.sleep(3.2)
        s, h, got = get(m, "/v2/team/app/manifests/cold0")
        assert len([r for r in up.log[mark:] if r.path.endswith("/cold0")]) >= 1
    finally:
        up.stop()


def test_heads_of_an_uncached_blob_are_shared_and_remembered(mirror_factory):
    up = Scripted()
    data = os.urandom(4096)
    release = threading.Event()

    def slow(req):
        release.wait(5)
        return Reply(200, [("Content-Type", "application/octet-stream"),
                           ("Docker-Content-Digest", digest_of(data)),
                           ("Content-Length", str(len(data)))], b"")
    try:
        d = digest_of(data)
        up.route("HEAD", rf"/v2/team/app/blobs/{d}", slow)
        m = _mirror(mirror_factory, up)
        with ThreadPoolExecutor(20) as pool:
            futs = [pool.submit(get, m, f"/v2/team/app/blobs/{d}", "HEAD") for _ in range(40)]
            time.sleep(1.0)
            release.set()
            results = [f.result() for f in futs]
        for s, h, _ in results:
            assert s == 200 and int(h["content-length"]) == len(data)
        for _ in range(40):
            s, h, _ = get(m, f"/v2/team/app/blobs/{d}", method="HEAD")
            assert s == 200 and int(h["content-length"]) == len(data)
        assert len(up.requests("HEAD", "/blobs/")) == 1
        assert not up.requests("GET", "/blobs/")
    finally:
        release.set()
        up.stop()


def test_a_client_head_of_an_uncached_tag_is_a_head_upstream(mirror_factory):
    up = Scripted()
    try:
        body, _ = image_manifest(b'{"os":"linux"}', [b"h"])
        d = up.manifest("team/app", "1", body)
        m = _mirror(mirror_factory, up)
        for _ in range(30):
            s, h, got = get(m, "/v2/team/app/manifests/1", method="HEAD")
            assert s == 200 and h["docker-content-digest"] == d
            assert int(h["content-length"]) == len(body) and h["content-type"] == OCI_MANIFEST
        assert not up.requests("GET", "/manifests/")
        assert len(up.requests("HEAD", "/manifests/")) == 1
        # a GET then costs one GET, and later ones nothing
        for _ in range(5):
            s, h, got = get(m, "/v2/team/app/manifests/1")
            assert s == 200 and got == body
        assert len(up.requests("GET", "/manifests/")) == 1
    finally:
        up.stop()


def test_an_upstream_that_answers_every_tag_cannot_grow_the_index_without_bound(
        mirror_factory):
    up = Scripted()
    try:
        body, _ = image_manifest(b'{"os":"linux"}', [b"any"])
        d = digest_of(body)
        up.route("*", r"/v2/team/app/manifests/.*",
                 lambda req: Reply(200, [("Content-Type", OCI_MANIFEST),
                                         ("Docker-Content-Digest", d)], body))
        up.route("*", r"/v2/team/app/tags/list", lambda req: Reply(503, [], b""))
        m = _mirror(mirror_factory, up, extra={"cache": {"max_tags_per_repository": 20}})
        for i in range(60):
            s, h, got = get(m, f"/v2/team/app/manifests/t{i}")
            assert s == 200
        s, h, got = get(m, "/v2/team/app/tags/list")
        assert s == 200
        tags = json.loads(got)["tags"]
        assert len(tags) <= 20 and "t59" in tags
        assert "forgot the least recently validated" in m.log_text()
        # and in the database: a restart loads no more than the cap
        m.stop()
        m.start()
        s, h, got = get(m, "/v2/team/app/tags/list")
        assert s == 200
        tags = json.loads(got)["tags"]
        assert len(tags) <= 20 and "t59" in tags
    finally:
        up.stop()


# ---- the done-when bound: a hostile client for a bounded time ----

ACCEPTS = [None, "*/*", "application/json", OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST,
           DOCKER_LIST, f"{DOCKER_MANIFEST}, {DOCKER_LIST}", f"{OCI_MANIFEST};q=0.5, */*;q=0.1",
           f"{OCI_INDEX}, {DOCKER_LIST}, {OCI_MANIFEST}, {DOCKER_MANIFEST}",
           "text/html", f"{OCI_INDEX};q=0, {DOCKER_MANIFEST}"]


def _hostile(m, seconds, tags, rng):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        kind = rng.randrange(5)
        method = rng.choice(("GET", "HEAD"))
        accept = rng.choice(ACCEPTS)
        headers = {"Accept": accept} if accept else {}
        if kind <= 1:
            path = f"/v2/team/app/manifests/{rng.choice(tags)}"
        elif kind == 2:
            path = f"/v2/team/app/manifests/missing{rng.randrange(5)}"
        elif kind == 3:
            path = f"/v2/team/app/manifests/sha256:{rng.randrange(4):064x}"
        else:
            path = f"/v2/team/app/blobs/sha256:{rng.randrange(4):064x}"
        get(m, path, method=method, headers=headers)
    return n


def test_a_hostile_client_cannot_raise_upstream_requests_above_the_bound(mirror_factory):
    """Against the scripted upstream (which negotiates like Docker Hub): per tag, at most one
    manifest GET per distinct digest it answered with; per (path, Accept class) at most one
    HEAD per revalidate_after (2 s here) plus one; cold digests and missing tags once each
    per negative_ttl (the default 30 s, longer than the run)."""
    up = Scripted()
    try:
        index, plat = _negotiating(up, "team/app", "multi")
        single, _ = image_manifest(b'{"os":"linux"}', [b"single"])
        up.manifest("team/app", "single", single)
        m = _mirror(mirror_factory, up, revalidate_after="2s")  # negative_ttl 30 s
        seconds = 5
        rng = random.Random(10)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: _hostile(m, seconds, ["multi", "single"],
                                             random.Random(rng.random())), range(4)))
        gets = up.requests("GET", "/manifests/")
        heads = up.requests("HEAD", "/manifests/")
        by_path = {}
        for r in gets:
            by_path.setdefault(r.path, []).append(r)
        # a tag: one GET per digest it can resolve to (the index and the platform manifest)
        assert len(by_path.get("/v2/team/app/manifests/multi", [])) <= 2, by_path
        assert len(by_path.get("/v2/team/app/manifests/single", [])) <= 1, by_path
        for path, reqs in by_path.items():
            if "/missing" in path or "/sha256:" in path:
                assert len(reqs) <= 1, (path, len(reqs))
        # HEADs: the mirror sends one Accept per class, so (path, Accept) is (tag, class)
        windows = seconds // 2 + 2
        by_class = {}
        for r in heads:
            by_class.setdefault((r.path, r.header("accept")), []).append(r)
        for (path, accept), reqs in by_class.items():
            bound = 1 if ("/missing" in path or "/sha256:" in path) else windows
            assert len(reqs) <= bound, (path, accept, len(reqs))
        blob_reqs = up.requests(path="/blobs/")
        assert len(blob_reqs) <= 8, len(blob_reqs)  # 4 cold digests, HEAD and GET
    finally:
        up.stop()


def test_a_hostile_client_against_a_real_registry_costs_one_get_per_tag(
        mirror_factory, up, make_image, push):
    img = push(make_image(1010), up, "library/budget", "v1")
    m = mirror_factory([up], revalidate_after="2s")
    mark = up.mark()
    rng = random.Random(11)
    accepts = [None, "*/*", DOCKER_MANIFEST, f"{DOCKER_MANIFEST}, {DOCKER_LIST}",
               f"{OCI_INDEX}, {DOCKER_LIST}, {OCI_MANIFEST}, {DOCKER_MANIFEST}",
               f"{DOCKER_MANIFEST};q=0.9, */*;q=0.1"]
    end = time.monotonic() + 4
    while time.monotonic() < end:
        accept = rng.choice(accepts)
        headers = {"Accept": accept} if accept else {}
        method = rng.choice(("GET", "HEAD"))
        k = rng.randrange(4)
        if k == 0:
            path = "/v2/library/budget/manifests/v1"
        elif k == 1:
            path = f"/v2/library/budget/manifests/{img.digest}"
        elif k == 2:
            path = f"/v2/library/budget/manifests/gone{rng.randrange(3)}"
        else:
            path = f"/v2/library/budget/blobs/sha256:{rng.randrange(3):064x}"
        s, h, body = get(m, path, method=method, headers=headers)
        if "gone" in path or "/blobs/" in path:
            assert s == 404
        else:
            assert s == 200
    reqs = since(up, mark)
    # at most one GET for the (tag, digest) and one for the digest itself
    assert count(reqs, method="GET", kind="manifests", ref="v1") <= 1
    assert count(reqs, method="GET", kind="manifests", ref=img.digest) <= 1
    assert count(reqs, method="HEAD", kind="manifests", ref="v1") <= 4  # one per 2 s
    for i in range(3):
        assert count(reqs, kind="manifests", ref=f"gone{i}", status=404) <= 1
        assert count(reqs, kind="blobs", ref=f"sha256:{i:064x}") <= 1


def test_two_narrow_classes_asking_at_once_share_one_get_of_the_digest(mirror_factory):
    """Two Accept classes that resolve a tag to the same manifest, both cold and asked at once
    (the upstream slow to answer a GET): their HEADs both name a digest nobody has, and one GET
    fetches it for both."""
    up = Scripted()
    try:
        index, plat = _negotiating(up, "team/app", "slow", get_delay=0.8)
        m = _mirror(mirror_factory, up)
        s, _, body = get(m, "/v2/team/app/manifests/slow")
        assert s == 200 and body == index
        narrow = [DOCKER_MANIFEST, f"{DOCKER_MANIFEST}, {DOCKER_LIST}",
                  f"{OCI_INDEX};q=0, {DOCKER_MANIFEST}"]
        with ThreadPoolExecutor(len(narrow)) as pool:
            got = list(pool.map(lambda a: get(m, "/v2/team/app/manifests/slow",
                                              headers={"Accept": a}), narrow))
        for s, h, body in got:
            assert s == 200 and body == plat and h["content-type"] == DOCKER_MANIFEST
        gets = up.requests("GET", "/manifests/")
        # the index once, the platform manifest once (by tag or by digest)
        assert len(gets) == 2, [(r.path, r.header("accept")) for r in gets]
    finally:
        up.stop()


# ---- the HEAD bound holds per tag, across Accept classes ----

TYPES = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST]
# every Accept class: the full one (no Accept, and all four types) and the 15 narrow ones
CLASSES = [None] + [", ".join(t for i, t in enumerate(TYPES) if bits & (1 << i))
                    for bits in range(1, 16)]


class _Moving:
    """repo:tag negotiated as Docker Hub does (an OCI index to clients that take one, else its
    amd64 docker manifest), and moved to a new index and platform manifest by move()."""

    def __init__(self, up, repo, tag):
        self.up, self.repo, self.version = up, repo, 0
        self.move()
        up.route("*", rf"/v2/{repo}/manifests/{tag}", self._answer)

    def move(self):
        self.version += 1
        plat, _ = image_manifest(b'{"architecture":"amd64","v":%d}' % self.version,
                                 [b"l%d" % self.version], DOCKER_MANIFEST)
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": digest_of(plat), "size": len(plat),
             "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
        self.up.manifest(self.repo, None, plat)
        self.up.manifest(self.repo, None, index)
        self.index, self.plat = index, plat

    def _answer(self, req):
        accept = req.header("accept", "")
        index, plat = self.index, self.plat
        body, t = (index, OCI_INDEX) if (OCI_INDEX in accept or not accept) \
            else (plat, DOCKER_MANIFEST)
        return Reply(200, [("Content-Type", t), ("Docker-Content-Digest", digest_of(body))], body)

    def expected(self, accept):
        return self.index if accept is None or OCI_INDEX in accept else self.plat


def _cycle_classes(m, path, seconds, moving=None, move_at=None, classes=CLASSES):
    """One client asking path with every Accept class in turn, GET and HEAD, for `seconds`;
    moves the tag once at move_at seconds. Returns the elapsed time."""
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        if moving and move_at is not None and time.monotonic() - start >= move_at:
            moving.move()
            move_at = None
        accept = classes[i % len(classes)]
        method = "HEAD" if (i // len(classes)) % 2 else "GET"
        i += 1
        s, h, body = get(m, path, method=method, headers={"Accept": accept} if accept else {})
        assert s == 200, (accept, method, s, body)
    return time.monotonic() - start


def _check_bound(up, path, elapsed, revalidate_s, moves, distinct_digests):
    heads = up.requests("HEAD", rf"{path}$")
    windows = int(elapsed / revalidate_s)
    # one HEAD per revalidate_after for the tag, whatever the Accept; one per class when it is
    # first asked and when the tag moved
    bound = windows + 1 + len(CLASSES) * (1 + moves)
    assert len(heads) <= bound, (len(heads), bound, windows,
                                 sorted({r.header("accept") for r in heads}, key=str))
    gets = up.requests("GET", rf"{path}$") + up.requests("GET", r"/manifests/sha256:")
    assert len(gets) <= distinct_digests, [(r.path, r.header("accept")) for r in gets]
    return len(heads), bound


@pytest.mark.parametrize("with_full", [True, False], ids=["with-full", "narrow-only"])
def test_cycling_every_accept_class_costs_one_head_per_revalidate_after(mirror_factory,
                                                                         with_full):
    """With the full class among them, or only the narrow ones (the tag itself is then known
    by a HEAD alone)."""
    up = Scripted()
    try:
        moving = _Moving(up, "team/app", "multi")
        m = _mirror(mirror_factory, up, revalidate_after="1s")
        classes = CLASSES if with_full else [a for a in CLASSES if a and a.count(",") < 3]
        elapsed = _cycle_classes(m, "/v2/team/app/manifests/multi", 6, classes=classes)
        n, bound = _check_bound(up, "/v2/team/app/manifests/multi", elapsed, 1, 0, 2)
        print(f"HEADs {n} (bound {bound}) in {elapsed:.1f} s")
        # every class still gets its own answer
        for accept in CLASSES:
            s, h, body = get(m, "/v2/team/app/manifests/multi",
                             headers={"Accept": accept} if accept else {})
            assert s == 200 and body == moving.expected(accept), accept
    finally:
        up.stop()


def test_cycling_every_accept_class_across_a_tag_move(mirror_factory):
    up = Scripted()
    try:
        moving = _Moving(up, "team/app", "multi")
        m = _mirror(mirror_factory, up, revalidate_after="1s")
        elapsed = _cycle_classes(m, "/v2/team/app/manifests/multi", 6, moving, move_at=3)
        assert moving.version == 2
        time.sleep(1.3)  # past revalidate_after: every class's next answer is the new one
        for accept in CLASSES:
            for method in ("GET", "HEAD"):
                s, h, body = get(m, "/v2/team/app/manifests/multi", method=method,
                                 headers={"Accept": accept} if accept else {})
                want = moving.expected(accept)
                assert s == 200 and h["docker-content-digest"] == digest_of(want), \
                    (accept, method)
                if method == "GET":
                    assert body == want, accept
        n, bound = _check_bound(up, "/v2/team/app/manifests/multi", elapsed + 1.3, 1, 1, 4)
        print(f"HEADs {n} (bound {bound}) in {elapsed:.1f} s")
    finally:
        up.stop()


@pytest.mark.parametrize("with_full,late", [(True, False), (False, False), (False, True)],
                         ids=["with-full", "narrow-only", "joins-an-overdue-head"])
def test_a_stale_accept_class_is_served_while_the_upstream_hangs(mirror_factory, with_full,
                                                                  late):
    """An Accept class's answer past revalidate_after, the upstream hung: the class is answered
    from the cache within revalidate_timeout (+ slack), whether the tag itself has a cached
    manifest or is known by a HEAD alone, and also when the tag's own HEAD (a client's, with
    nothing cached to serve) is already overdue; the hung upstream saw one manifest request."""
    up = Scripted()
    try:
        moving = _Moving(up, "team/app", "multi")
        m = _mirror(mirror_factory, up, revalidate_after="1s",
                    extra={"cache": {"revalidate_timeout": "1s"}})
        if with_full:
            assert get(m, "/v2/team/app/manifests/multi", headers={})[0] == 200
        else:
            assert get(m, "/v2/team/app/manifests/multi", method="HEAD",
                       headers={"Accept": DOCKER_LIST})[0] == 200
        narrow = {"Accept": DOCKER_MANIFEST}
        s, h, body = get(m, "/v2/team/app/manifests/multi", headers=narrow)
        assert s == 200 and body == moving.plat
        time.sleep(1.3)
        up.route("*", r"/v2/team/app/manifests/.*", lambda req: Reply.hang())
        mark = len(up.log)
        if late:
            # a client's HEAD of the tag itself, which has no cached manifest: it waits
            threading.Thread(target=get, args=(m, "/v2/team/app/manifests/multi", "HEAD", {}),
                             daemon=True).start()
            time.sleep(1.6)  # past revalidate_timeout
        t = time.monotonic()
        s, h, body = get(m, "/v2/team/app/manifests/multi", headers=narrow)
        took = time.monotonic() - t
        assert s == 200 and body == moving.plat
        assert took < 8, f"a stale Accept class with the upstream hung took {took:.1f} s"
        for _ in range(3):
            s, h, body = get(m, "/v2/team/app/manifests/multi", headers=narrow)
            assert s == 200 and body == moving.plat
        asked = [r for r in up.log[mark:] if "/manifests/" in r.path]
        assert len(asked) <= 1, [(r.method, r.path, r.header("accept")) for r in asked]
    finally:
        up.stop()


def test_cycling_every_accept_class_against_a_real_registry(mirror_factory, up, make_image,
                                                            push):
    img = push(make_image(1011), up, "library/classes", "v1")
    m = mirror_factory([up], revalidate_after="1s")
    mark = up.mark()
    seen = {}
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < 5:
        accept = CLASSES[i % len(CLASSES)]
        method = "HEAD" if (i // len(CLASSES)) % 2 else "GET"
        i += 1
        s, h, body = get(m, "/v2/library/classes/manifests/v1", method=method,
                         headers={"Accept": accept} if accept else {})
        seen.setdefault((accept, method), set()).add(s)
        if accept is None or img.media_type in accept:
            assert s == 200 and h["docker-content-digest"] == img.digest, (accept, method, s)
    elapsed = time.monotonic() - start
    reqs = since(up, mark)
    heads = count(reqs, method="HEAD", kind="manifests", ref="v1")
    bound = int(elapsed) + 1 + len(CLASSES)
    assert heads <= bound, (heads, bound, seen)
    assert count(reqs, method="GET", kind="manifests") <= 2, seen
    print(f"HEADs {heads} (bound {bound}) in {elapsed:.1f} s; statuses {seen}")
