# SPDX-License-Identifier: Apache-2.0
"""Single flight is shared only where the answer is the same: a blob or manifest by digest within
one upstream, and an upstream lacking it in one repository says nothing of another. A request
through a repository (or an upstream) that lacks a digest never fails a concurrent pull of the
same digest through one that has it, and each upstream's answer keeps its own media type."""

import os
import threading
import time

from helpers import assert_error, get
from scripted import OCI_MANIFEST, Reply, Scripted, digest_of, image_manifest


def _slow_404(release, code):
    """A handler that holds its answer until release is set (at most 10 s), then says 404."""
    def answer(req):
        release.wait(10)
        return Reply.error(404, code)
    return answer


def _in_thread(fn):
    out = {}

    def run():
        out["r"] = fn()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _wait_for(pred, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_a_blob_one_upstream_lacks_is_still_pulled_through_another(mirror_factory):
    data = os.urandom(64 * 1024)
    d = digest_of(data)
    release = threading.Event()
    bad, good = Scripted(), Scripted()
    try:
        bad.route("GET", rf"/v2/team/app/blobs/{d}", _slow_404(release, "BLOB_UNKNOWN"))
        good.blob(data)
        m = mirror_factory([{"name": "docker.io", "url": bad.url},
                            {"name": "quay.io", "url": good.url}])
        t1, r1 = _in_thread(lambda: get(m, f"/v2/team/app/blobs/{d}"))
        assert _wait_for(lambda: bad.requests("GET", "/blobs/"))
        t2, r2 = _in_thread(lambda: get(m, f"/v2/team/app/blobs/{d}?ns=quay.io"))
        # the good upstream is asked while the bad one still holds its answer
        _wait_for(lambda: good.requests("GET", "/blobs/"), timeout=2)
        release.set()
        t1.join(20)
        t2.join(20)
        assert_error(r1["r"][0], r1["r"][2], 404, "BLOB_UNKNOWN")
        s, h, body = r2["r"]
        assert s == 200 and body == data
        assert len(good.requests("GET", f"/v2/team/app/blobs/{d}")) == 1
    finally:
        release.set()
        bad.stop()
        good.stop()


def test_a_blob_missing_in_one_repository_is_retried_through_the_other(mirror_factory):
    data = os.urandom(32 * 1024)
    d = digest_of(data)
    release = threading.Event()
    up = Scripted()
    try:
        up.route("GET", rf"/v2/team/empty/blobs/{d}", _slow_404(release, "BLOB_UNKNOWN"))
        up.blob(data, repo="team/app")
        m = mirror_factory([{"name": "docker.io", "url": up.url}])
        t1, r1 = _in_thread(lambda: get(m, f"/v2/team/empty/blobs/{d}"))
        assert _wait_for(lambda: up.requests("GET", "/team/empty/blobs/"))
        t2, r2 = _in_thread(lambda: get(m, f"/v2/team/app/blobs/{d}"))
        time.sleep(1.0)  # the second pull joins the first one's fill
        release.set()
        t1.join(20)
        t2.join(20)
        assert_error(r1["r"][0], r1["r"][2], 404, "BLOB_UNKNOWN")
        s, h, body = r2["r"]
        assert s == 200 and body == data, (s, body[:200])
        # its own repository was asked, once
        assert len(up.requests("GET", f"/v2/team/app/blobs/{d}")) == 1
    finally:
        release.set()
        up.stop()


def test_a_manifest_by_digest_missing_in_one_repository_is_retried_through_the_other(
        mirror_factory):
    body, _ = image_manifest(b'{"os":"linux"}', [b"layer"])
    d = digest_of(body)
    release = threading.Event()
    up = Scripted()
    try:
        up.route("GET", rf"/v2/team/empty/manifests/{d}", _slow_404(release, "MANIFEST_UNKNOWN"))
        up.manifest("team/app", None, body)
        m = mirror_factory([{"name": "docker.io", "url": up.url}])
        t1, r1 = _in_thread(lambda: get(m, f"/v2/team/empty/manifests/{d}"))
        assert _wait_for(lambda: up.requests("GET", "/team/empty/manifests/"))
        t2, r2 = _in_thread(lambda: get(m, f"/v2/team/app/manifests/{d}"))
        time.sleep(1.0)
        release.set()
        t1.join(20)
        t2.join(20)
        assert_error(r1["r"][0], r1["r"][2], 404, "MANIFEST_UNKNOWN")
        s, h, got = r2["r"]
        assert s == 200 and got == body and h["content-type"] == OCI_MANIFEST
        assert len(up.requests("GET", f"/v2/team/app/manifests/{d}")) == 1
    finally:
        release.set()
        up.stop()


def test_one_upstreams_media_type_for_a_digest_is_not_served_for_another(mirror_factory):
    """The hostile upstream answers first, as text/html; the other upstream's pull of the same
    digest gets its own answer, as the manifest type it is."""
    body, _ = image_manifest(b'{"os":"linux"}', [b"layer2"])
    d = digest_of(body)
    release = threading.Event()
    bad, good = Scripted(), Scripted()
    try:
        def html(req):
            release.wait(10)
            return Reply(200, [("Content-Type", "text/html"), ("Docker-Content-Digest", d)], body)
        bad.route("GET", rf"/v2/team/app/manifests/{d}", html)
        good.manifest("team/app", None, body)
        m = mirror_factory([{"name": "docker.io", "url": bad.url},
                            {"name": "quay.io", "url": good.url}])
        t1, r1 = _in_thread(lambda: get(m, f"/v2/team/app/manifests/{d}"))
        assert _wait_for(lambda: bad.requests("GET", "/manifests/"))
        t2, r2 = _in_thread(lambda: get(m, f"/v2/team/app/manifests/{d}?ns=quay.io"))
        _wait_for(lambda: good.requests("GET", "/manifests/"), timeout=2)
        release.set()
        t1.join(20)
        t2.join(20)
        s, h, got = r2["r"]
        assert s == 200 and got == body and h["content-type"] == OCI_MANIFEST
        assert len(good.requests("GET", f"/v2/team/app/manifests/{d}")) == 1
        s1, h1, b1 = r1["r"]
        assert h1.get("content-type", "").split(";")[0] != "text/html"
        # and later pulls through either upstream never see text/html
        for path in (f"/v2/team/app/manifests/{d}", f"/v2/team/app/manifests/{d}?ns=quay.io"):
            s, h, _ = get(m, path)
            assert h.get("content-type", "").split(";")[0] != "text/html"
    finally:
        release.set()
        bad.stop()
        good.stop()
