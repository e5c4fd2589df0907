# SPDX-License-Identifier: Apache-2.0
"""Retention: an upstream's own max_size evicts only that upstream's content; content whose tag
was deleted upstream is kept while it is pulled by digest, and expires once it is not."""

import hashlib
import os
import sqlite3
import time

import yaml

from helpers import assert_config_refused, blob_gets, get, index_tag, upstream_calls, wait_until
from images import ACCEPT_ALL
from mirror import regcache
from rawpush import Pusher
from test_purge import pull, refs_flushed, stored

ACCEPT = ", ".join(ACCEPT_ALL)


def upstream_bytes(mirror, upstream):
    """Bytes of the stored files that repositories of upstream (only) referenced."""
    db = sqlite3.connect(f"file:{os.path.join(mirror.storage, 'regcache.db')}?mode=ro", uri=True,
                         timeout=10)
    try:
        return db.execute(
            "SELECT coalesce(sum(size), 0) FROM blobs WHERE digest IN (SELECT digest FROM"
            " repo_blobs GROUP BY digest HAVING count(DISTINCT upstream) = 1 AND"
            " min(upstream) = ?)", (upstream,)).fetchone()[0]
    finally:
        db.close()


def test_upstream_max_size_evicts_only_that_upstreams_content(mirror_factory, upstream_factory,
                                                              make_image, push):
    """quay.io has max_size 500KiB, docker.io none. Three ~200 KiB images from each: the daemon
    evicts quay.io's least recently used image as the third comes in (down to 90 % of its cap)
    and nothing of docker.io's, older though they are. `regcache gc` with a 300KiB cap evicts
    the next one. What went is fetched again from quay.io only."""
    hub, quay = upstream_factory("registry.docker.io"), upstream_factory("quay")
    hub_imgs = [push(make_image(410 + i, (200 * 1024,)), hub, f"library/h{i}", "v1")
                for i in range(3)]
    quay_imgs = [push(make_image(420 + i, (200 * 1024,)), quay, f"team/q{i}", "v1")
                 for i in range(3)]
    ups = [{"name": "docker.io", "url": hub.url},
           {"name": "quay.io", "url": quay.url, "max_size": "500KiB"}]
    m = mirror_factory(ups, extra={"cache": {"ttl": "0", "gc_interval": "1h"}})
    for i, img in enumerate(hub_imgs):  # docker.io's are the oldest of all
        pull(m, img, f"library/h{i}")
    for i, img in enumerate(quay_imgs):
        pull(m, img, f"quay.io/team/q{i}")
    q0, q1, q2 = quay_imgs
    files = lambda img: img.blob_digests + [img.digest]  # noqa: E731
    wait_until(lambda: not any(d in stored(m) for d in files(q0)), what="q0 to be evicted")
    for i, img in enumerate(hub_imgs):
        refs_flushed(m, f"library/h{i}", files(img))
    have = stored(m)
    for img in [q1, q2] + hub_imgs:
        assert all(d in have for d in files(img))
    assert upstream_bytes(m, "quay.io") <= 500 * 1024 * 9 // 10
    assert "gc (size): evicted 3 of" in open(m.log_path).read()

    with open(m.config_path) as f:
        doc = yaml.safe_load(f)
    doc["upstreams"][1]["max_size"] = "300KiB"
    operator = os.path.join(m.dir, "operator.yml")
    with open(operator, "w") as f:
        yaml.safe_dump(doc, f)
    r = regcache("gc", "-c", operator)
    assert r.returncode == 0, r.stderr
    assert "evicted 3 of" in r.stdout and "3 of those for an upstream's own max_size" in r.stdout
    have = stored(m)
    assert not any(d in have for d in files(q1)), r.stdout
    for img in [q2] + hub_imgs:
        assert all(d in have for d in files(img)), r.stdout

    hub_mark, quay_mark = hub.mark(), quay.mark()
    for i, img in enumerate(hub_imgs):
        pull(m, img, f"library/h{i}")
    for i in (2, 0, 1):
        pull(m, quay_imgs[i], f"quay.io/team/q{i}")
    assert not blob_gets(upstream_calls(hub, hub_mark))
    gets = blob_gets(upstream_calls(quay, quay_mark))
    assert dict(gets) == {d: 1 for d in q0.blob_digests + q1.blob_digests}, gets


def test_upstream_max_size_is_checked(tmp_dir):
    assert_config_refused(tmp_dir, "upstreams:\n  - name: quay.io\n    url: https://quay.io\n"
                          "    max_size: lots\n", "bad.yml:4", "upstreams[0].max_size",
                          "invalid size")


def delete_upstream_manifest(up, token_server, repo, digest):
    token = token_server.make_token(up.service, [f"repository:{repo}:pull,delete"], "pushuser")
    s, _, body = Pusher(up.port).request("DELETE", f"/v2/{repo}/manifests/{digest}",
                                         headers={"Authorization": "Bearer " + token})
    assert s == 202, (s, body)


def pull_by_digest(mirror, img, repo):
    s, _, body = get(mirror, f"/v2/{repo}/manifests/{img.digest}", headers={"Accept": ACCEPT})
    assert s == 200, body[:300]
    assert "sha256:" + hashlib.sha256(body).hexdigest() == img.digest
    for d in img.blob_digests:
        s, _, data = get(mirror, f"/v2/{repo}/blobs/{d}", accept=False)
        assert s == 200 and "sha256:" + hashlib.sha256(data).hexdigest() == d


def test_content_of_a_tag_deleted_upstream_is_kept_while_pulled_by_digest(
        mirror_factory, up, token_server, make_image, push):
    """The tag is deleted upstream: its revalidation (a 404) drops the tag, 404 to the client,
    but keeps its manifest and blobs. With the upstream stopped they are served by digest; a GC
    with a 5 s TTL keeps them while they are pulled, and evicts them once they are not."""
    img = push(make_image(430, (64 * 1024,)), up, "library/gone", "v1")
    m = mirror_factory([up], extra={"cache": {"ttl": "0", "gc_interval": "1h"}})
    pull(m, img, "library/gone")
    refs_flushed(m, "library/gone", img.blob_digests + [img.digest])
    delete_upstream_manifest(up, token_server, "library/gone", img.digest)
    time.sleep(1.2)  # past revalidate_after (1 s)
    mark = up.mark()
    s, _, _ = get(m, "/v2/library/gone/manifests/v1", headers={"Accept": ACCEPT})
    assert s == 404
    calls = upstream_calls(up, mark)
    assert any(p.endswith("/library/gone/manifests/v1") and st == 404 for _, p, st in calls), calls
    wait_until(lambda: index_tag(m, "library/gone", "v1") is None, what="the tag to go")
    assert all(d in stored(m) for d in img.blob_digests + [img.digest])

    up.stop()
    with open(m.config_path) as f:
        doc = yaml.safe_load(f)
    doc["cache"]["ttl"] = "5s"
    operator = os.path.join(m.dir, "operator.yml")
    with open(operator, "w") as f:
        yaml.safe_dump(doc, f)
    for _ in range(4):  # pulled every second for 8 s: always used within the TTL
        pull_by_digest(m, img, "library/gone")
        time.sleep(1)
        pull_by_digest(m, img, "library/gone")
        time.sleep(1)
        r = regcache("gc", "-c", operator)
        assert r.returncode == 0, r.stderr
        assert all(d in stored(m) for d in img.blob_digests + [img.digest]), r.stdout
    time.sleep(8)  # unused for longer than the TTL (access times reach the index within 2 s)
    r = regcache("gc", "-c", operator)
    assert r.returncode == 0, r.stderr
    assert not any(d in stored(m) for d in img.blob_digests + [img.digest]), r.stdout
    s, _, _ = get(m, f"/v2/library/gone/manifests/{img.digest}", headers={"Accept": ACCEPT})
    assert s != 200  # gone from the cache, and the upstream is down
