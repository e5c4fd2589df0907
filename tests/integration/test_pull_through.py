# SPDX-License-Identifier: Apache-2.0
"""Pull-through semantics: what a manifest request costs upstream, revalidation after
cache.revalidate_after, moved tags, and serving stale content while the upstream is down."""

import time

from helpers import assert_error, blob_gets, get, manifest_gets, since, wait_until
from upstream import count

PATH = "/v2/library/pt/manifests/v1"


def test_cold_tag_costs_one_upstream_get_and_warm_costs_nothing(mirror_factory, up, make_image,
                                                                 push):
    """A cold manifest-by-tag request makes exactly one upstream manifest GET; repeating it
    within revalidate_after (here 1h) makes no upstream request at all."""
    img = push(make_image(20), up, "library/pt", "v1")
    mirror = mirror_factory([up], revalidate_after="1h")
    mark = up.mark()
    s, h, body = get(mirror, PATH)
    assert s == 200 and body == img.raw
    reqs = since(up, mark)
    assert manifest_gets(reqs) == 1, reqs
    mark = up.mark()
    for method in ("GET", "HEAD", "GET"):
        s, h, _ = get(mirror, PATH, method=method)
        assert s == 200 and h["docker-content-digest"] == img.digest
    assert count(since(up, mark), kind="manifests") == 0
    # By digest it is immutable: no upstream traffic either.
    assert get(mirror, f"/v2/library/pt/manifests/{img.digest}")[0] == 200
    assert count(since(up, mark)) == 0


def test_revalidation_is_a_head_when_unchanged(mirror, up, make_image, push):
    """After revalidate_after (1s) the mirror revalidates a tag with one upstream HEAD and, the
    digest being unchanged, no GET."""
    img = push(make_image(21), up, "library/pt", "v1")
    assert get(mirror, PATH)[0] == 200
    time.sleep(1.5)
    mark = up.mark()
    s, h, body = get(mirror, PATH)
    assert s == 200 and body == img.raw
    reqs = since(up, mark)
    assert manifest_gets(reqs, "HEAD") == 1, reqs
    assert manifest_gets(reqs, "GET") == 0, reqs


def test_moved_tag_is_picked_up_after_revalidate_after(mirror, up, make_image, push):
    """When the tag moves upstream, the mirror serves the new digest once revalidate_after has
    passed (and the new image's bytes)."""
    old = push(make_image(22), up, "library/pt", "v1")
    assert get(mirror, PATH)[2] == old.raw
    new = push(make_image(23), up, "library/pt", "v1")
    assert new.digest != old.digest
    time.sleep(1.5)
    s, h, body = get(mirror, PATH)
    assert s == 200 and h["docker-content-digest"] == new.digest and body == new.raw
    # The old image stays reachable by digest.
    s, _, body = get(mirror, f"/v2/library/pt/manifests/{old.digest}")
    assert s == 200 and body == old.raw


def test_stale_content_served_while_upstream_down(mirror, up, make_image, push):
    """With the upstream stopped, a cached tag is still served (stale on error) past
    revalidate_after, and so are its cached blobs; an uncached blob is not invented."""
    img = push(make_image(24, (64 * 1024, 100 * 1024)), up, "library/pt", "v1")
    assert get(mirror, PATH)[0] == 200
    cached = img.manifests[0].layers[0].digest
    assert get(mirror, f"/v2/library/pt/blobs/{cached}")[2] == img.blobs[cached]
    up.stop()
    time.sleep(1.5)
    s, h, body = get(mirror, PATH)
    assert s == 200 and body == img.raw and h["docker-content-digest"] == img.digest
    s, _, body = get(mirror, f"/v2/library/pt/blobs/{cached}")
    assert s == 200 and body == img.blobs[cached]
    uncached = img.manifests[0].layers[1].digest
    s, _, body = get(mirror, f"/v2/library/pt/blobs/{uncached}")
    assert s >= 400 and body != img.blobs[uncached]


def test_mirror_starts_while_upstream_down_then_serves(mirror_factory, up, make_image, push):
    """A mirror started while its upstream is down starts and answers /v2/; once the upstream
    is back, it serves the image."""
    img = push(make_image(25), up, "library/pt", "v1")
    up.stop()
    mirror = mirror_factory([up])  # waits for /v2/ == 200
    s, _, body = get(mirror, PATH)
    assert s >= 500 or s == 404, (s, body)
    assert get(mirror, "/v2/")[0] == 200
    up.start()
    wait_until(lambda: get(mirror, PATH)[2] == img.raw, timeout=15,
               what="the mirror to serve the image once the upstream is up")
    layer = img.layer_digests[0]
    assert get(mirror, f"/v2/library/pt/blobs/{layer}")[2] == img.blobs[layer]


def test_upstream_404_is_404(mirror, up, make_image, push):
    """Tags, digests and blobs the upstream does not have are 404 with the spec error codes,
    and the mirror asked the upstream about each."""
    push(make_image(26), up, "library/pt", "v1")
    mark = up.mark()
    s, _, body = get(mirror, "/v2/library/pt/manifests/missing")
    assert_error(s, body, 404, "MANIFEST_UNKNOWN")
    missing = "sha256:" + "ab" * 32
    s, _, body = get(mirror, f"/v2/library/pt/blobs/{missing}")
    assert_error(s, body, 404, "BLOB_UNKNOWN")
    reqs = since(up, mark)
    assert count(reqs, kind="manifests", ref="missing", status=404) >= 1, reqs
    assert count(reqs, kind="blobs", ref=missing, status=404) >= 1, reqs


def test_blobs_of_a_pulled_image_are_fetched_once(mirror, up, make_image, push):
    """Fetching every blob of an image twice costs one upstream GET per blob."""
    img = push(make_image(27, (64 * 1024, 96 * 1024, 128 * 1024)), up, "library/pt", "v1")
    mark = up.mark()
    for _ in range(2):
        for d in img.blob_digests:
            s, h, body = get(mirror, f"/v2/library/pt/blobs/{d}")
            assert s == 200 and body == img.blobs[d]
    gets = blob_gets(since(up, mark))
    assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}
