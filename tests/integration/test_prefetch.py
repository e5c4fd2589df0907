# SPDX-License-Identifier: Apache-2.0
"""prefetch: a list of tag globs and digests kept warm on a schedule, within the pull budget,
with the upstream's access log as the witness: HEADs for tags that did not move, GETs only for
what changed, never below the reserve of ratelimit-remaining, nothing at all while the upstream
is down; what it keeps is pinned against the size cap; `regcache prefetch` runs it once."""

import hashlib
import os
import re

import pytest

from faultproxy import FaultProxy
from helpers import get, since, wait_until
from images import ACCEPT_ALL
from upstream import blob_gets, count

ACCEPT = ", ".join(ACCEPT_ALL)
RUN_RE = re.compile(r"prefetch \((scheduled|manual)\): (\d+) references, (\d+) tags checked, "
                    r"(\d+) HEADs, (\d+) GETs, (\d+) blobs .*?; (\w+)(.*)")


def stored(mirror):
    out = set()
    root = os.path.join(mirror.storage, "blobs", "sha256")
    if os.path.isdir(root):
        for shard in os.listdir(root):
            for name in os.listdir(os.path.join(root, shard)):
                out.add("sha256:" + name)
    return out


def everything(img):
    return {img.digest, *[m.digest for m in img.manifests], *img.blob_digests}


def runs(mirror):
    """Every prefetch run the mirror logged, as match objects."""
    return [m for m in (RUN_RE.search(l) for l in mirror.log_text().splitlines()) if m]


def wait_runs(mirror, n, timeout=30):
    wait_until(lambda: len(runs(mirror)) >= n, timeout=timeout, what=f"{n} prefetch runs")
    return runs(mirror)


def manifest_requests(reqs):
    return [(m, p) for m, p, st in reqs if "/manifests/" in p and st != 401]


def test_glob_and_digest_kept_warm_across_a_tag_move(mirror_factory, up, make_image, push):
    """prefetch [library/pg:16*, library/fixed@<digest>] every 2s: the first runs fetch both
    16.x images and the digest's, not 15; later rounds send only HEADs for the tags (no manifest
    or blob GET); a push moving 16.2 costs one manifest GET and only its new blobs; with the
    upstream stopped, the mirror answers 16.2 with the new digest."""
    a = push(make_image(1401, (64 * 1024,)), up, "library/pg", "16.1")
    b = push(make_image(1402, (64 * 1024, 16 * 1024)), up, "library/pg", "16.2")
    old = push(make_image(1403, (32 * 1024,)), up, "library/pg", "15")
    fixed = push(make_image(1404, (48 * 1024,), multi_arch=True), up, "library/fixed", "v1")
    m = mirror_factory([up], extra={"prefetch": {
        "references": ["library/pg:16*", f"library/fixed@{fixed.digest}"], "schedule": "2s"}})
    wait_until(lambda: everything(a) | everything(b) | everything(fixed) <= stored(m),
               timeout=30, what="the listed images in the store")
    assert not (everything(old) - everything(a) - everything(b)) & stored(m)

    n = len(wait_runs(m, 2))
    mark = up.mark()
    wait_runs(m, n + 3)
    reqs = since(up, mark)
    mreqs = manifest_requests(reqs)
    assert mreqs, "no tag was revalidated"
    assert all(meth == "HEAD" for meth, _ in mreqs), mreqs
    assert {p.rsplit("/", 1)[1] for _, p in mreqs} <= {"16.1", "16.2"}, mreqs
    assert not blob_gets(reqs), reqs

    new = push(make_image(1405, (64 * 1024, 24 * 1024)), up, "library/pg", "16.2")
    mark = up.mark()
    wait_until(lambda: everything(new) <= stored(m), timeout=30, what="the moved tag's image")
    n = len(runs(m))
    wait_runs(m, n + 1)  # the run that fetched it has ended
    reqs = since(up, mark)
    gets = [p for meth, p in manifest_requests(reqs) if meth == "GET"]
    assert gets == ["/v2/library/pg/manifests/16.2"], gets
    fetched = set(blob_gets(reqs))
    assert fetched <= set(new.blob_digests) - set(b.blob_digests) - set(a.blob_digests), fetched

    up.stop()
    try:
        s, h, body = get(m, "/v2/library/pg/manifests/16.2", headers={"Accept": ACCEPT})
        assert s == 200
        assert "sha256:" + hashlib.sha256(body).hexdigest() == new.digest
    finally:
        up.start()
