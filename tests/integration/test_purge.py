# SPDX-License-Identifier: Apache-2.0
"""`regcache purge` next to a running daemon: a tag and what only it reaches, a whole
repository, one digest; --dry-run; what is not cached; a response in progress keeps its bytes
while the daemon stops serving what went (the upstream's access log shows the refetch)."""

import hashlib
import os
import socket
import sqlite3

import images
import pytest

from helpers import (blob_gets, get, index_tag, raw_get_headers, read_rest, upstream_calls,
                     wait_until)
from helpers import stored_digests as stored
from images import ACCEPT_ALL
from mirror import regcache

ACCEPT = ", ".join(ACCEPT_ALL)


def pull(mirror, img, repo, tag="v1"):
    """Manifest by tag, then every blob, each digest checked."""
    s, _, body = get(mirror, f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
    assert s == 200, body[:300]
    assert "sha256:" + hashlib.sha256(body).hexdigest() == img.digest
    for d in img.blob_digests:
        s, _, data = get(mirror, f"/v2/{repo}/blobs/{d}", accept=False)
        assert s == 200, (d, data[:200])
        assert "sha256:" + hashlib.sha256(data).hexdigest() == d


def index_rows(mirror):
    """The index's tags, blobs, manifests and references, read-only."""
    db = sqlite3.connect(f"file:{os.path.join(mirror.storage, 'regcache.db')}?mode=ro", uri=True,
                         timeout=10)
    try:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall())
                for t in ("tags", "manifests", "repo_blobs")} | {
            "blobs": sorted(db.execute("SELECT digest, size FROM blobs").fetchall())}
    finally:
        db.close()


def refs_flushed(mirror, repo, digests):
    """Waits until the index records repo as referencing every digest (written every 2 s)."""
    def done():
        got = {d for _, r, d in index_rows(mirror)["repo_blobs"] if r == repo}
        return set(digests) <= got
    wait_until(done, timeout=15, what=f"the references of {repo}")


def purge(mirror, *args):
    return regcache("purge", *args, "-c", mirror.config_path, timeout=60)


def sibling(tmp_dir, seed, layer_sizes, label):
    """An image whose first layers are those of make_image(seed, layer_sizes) (same seed), with
    a config of its own."""
    return images.build_image(os.path.join(tmp_dir, f"img-{seed}-{label}"), seed, layer_sizes,
                              label=label)


def test_purge_of_a_tag_removes_what_only_it_reaches(mirror_factory, up, tmp_dir, push):
    """app:v1 and other:v1 share a layer. --dry-run lists what would go and changes neither the
    store nor the index; the purge removes app:v1's manifest, config and own layer, keeps the
    shared layer and all of other:v1, and the daemon stops serving what went: the next pull of
    app:v1 asks the upstream for the tag, the manifest and the two removed blobs only."""
    app = push(sibling(tmp_dir, 401, (96 * 1024, 48 * 1024), "app"), up, "library/app", "v1")
    other = push(sibling(tmp_dir, 401, (96 * 1024,), "other"), up, "library/other", "v1")
    shared = app.layer_digests[0]
    assert shared == other.layer_digests[0]
    own = [d for d in app.blob_digests if d != shared]
    m = mirror_factory([up], extra={"cache": {"ttl": "0", "gc_interval": "1h"}})
    pull(m, app, "library/app")
    pull(m, other, "library/other")
    refs_flushed(m, "library/app", app.blob_digests + [app.digest])
    refs_flushed(m, "library/other", other.blob_digests + [other.digest])
    assert index_tag(m, "library/app", "v1")

    files, rows = stored(m), index_rows(m)
    r = purge(m, "docker.io/library/app:v1", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would remove tag docker.io/library/app:v1" in r.stdout, r.stdout
    for d in own + [app.digest]:
        assert d in r.stdout, (d, r.stdout)
    assert shared not in r.stdout and other.digest not in r.stdout
    assert "1 shared with other cached content kept" in r.stdout, r.stdout
    assert stored(m) == files and index_rows(m) == rows

    r = purge(m, "docker.io/library/app:v1")
    assert r.returncode == 0, r.stderr
    assert "removed tag docker.io/library/app:v1" in r.stdout, r.stdout
    size = sum(len(app.blobs[d]) for d in own) + len(app.raw)
    assert f"removed 1 tag and {len(own) + 1} files" in r.stdout, r.stdout
    assert "freed" in r.stdout
    after = stored(m)
    assert not any(d in after for d in own + [app.digest])
    assert shared in after and other.digest in after
    assert all(d in after for d in other.blob_digests)
    assert files - after == set(own + [app.digest])
    assert index_tag(m, "library/app", "v1") is None
    assert size > 0

    mark = up.mark()
    pull(m, app, "library/app")
    pull(m, other, "library/other")
    calls = upstream_calls(up, mark)
    gets = blob_gets(calls)
    assert {d: gets[d] for d in own} == {d: 1 for d in own}, calls
    assert gets[shared] == 0 and not any(gets[d] for d in other.blob_digests), calls
    assert any(meth == "GET" and "/library/app/manifests/" in p for meth, p, _ in calls), calls
    # other:v1 is only revalidated (a HEAD): nothing of it is fetched again
    assert not any(meth == "GET" and "/library/other/" in p for meth, p, _ in calls), calls


def test_purge_of_a_repository_and_of_a_digest(mirror_factory, up, make_image, push):
    """A repository purge removes all its tags and their content, nothing of another repository;
    a digest purge removes that one blob and the next pull fetches only it; a purge of what is
    not cached says so and exits non-zero, changing nothing."""
    v1 = push(make_image(402, (64 * 1024,)), up, "team/gone", "v1")
    v2 = push(make_image(403, (64 * 1024,)), up, "team/gone", "v2")
    keep = push(make_image(404, (64 * 1024, 32 * 1024)), up, "team/keep", "v1")
    m = mirror_factory([up], extra={"cache": {"ttl": "0", "gc_interval": "1h"}})
    pull(m, v1, "team/gone", "v1")
    pull(m, v2, "team/gone", "v2")
    pull(m, keep, "team/keep")
    refs_flushed(m, "team/gone", v1.blob_digests + v2.blob_digests)
    refs_flushed(m, "team/keep", keep.blob_digests)

    r = purge(m, "docker.io/team/gone")
    assert r.returncode == 0, r.stderr
    assert "removed 2 tags and 6 files" in r.stdout, r.stdout
    after = stored(m)
    assert not any(d in after for d in v1.blob_digests + v2.blob_digests + [v1.digest, v2.digest])
    assert all(d in after for d in keep.blob_digests + [keep.digest])
    ls = regcache("ls", "-c", m.config_path)
    assert "team/gone" not in ls.stdout and "docker.io/team/keep" in ls.stdout, ls.stdout
    mark = up.mark()
    s, _, _ = get(m, "/v2/team/gone/manifests/v2", headers={"Accept": ACCEPT})
    assert s == 200
    assert any(p.endswith("/team/gone/manifests/v2") for _, p, _ in upstream_calls(up, mark))
    # the repository's reference to the manifest pulled again is written in the background:
    # it lands before the dry run's snapshot, not between that and the check
    refs_flushed(m, "team/gone", [v2.digest])

    victim = keep.layer_digests[1]
    files, rows = stored(m), index_rows(m)
    r = purge(m, victim, "--dry-run")
    assert r.returncode == 0 and victim in r.stdout, r.stdout + r.stderr
    assert stored(m) == files and index_rows(m) == rows
    r = purge(m, victim)
    assert r.returncode == 0, r.stderr
    assert f"removed blob {victim}" in r.stdout and "removed 0 tags and 1 file" in r.stdout
    assert stored(m) == files - {victim}
    mark = up.mark()
    pull(m, keep, "team/keep")
    gets = blob_gets(upstream_calls(up, mark))
    assert gets[victim] == 1 and sum(gets.values()) == 1, gets

    files = stored(m)
    for target in ("docker.io/team/never:v1", "docker.io/team/never",
                   "sha256:" + "0" * 64, "docker.io/team/keep:v9"):
        r = purge(m, target)
        assert r.returncode != 0, (target, r.stdout)
        assert "not cached" in r.stderr, (target, r.stderr)
    r = purge(m, "no-slash-and-no-digest")
    assert r.returncode == 2 and "expected upstream/repository" in r.stderr, r.stderr
    assert stored(m) == files


@pytest.mark.once
def test_purge_under_a_concurrent_pull_keeps_the_response_whole(mirror_factory, up, make_image,
                                                               push):
    """A client reading a cached 64 MiB layer slowly while its image is purged gets every byte
    (the digest checks); once the purge has returned, the mirror no longer serves the layer from
    its cache: the upstream's access log shows a new GET of it."""
    img = push(make_image(405, (64 * 1024 * 1024,)), up, "library/big", "v1")
    layer = img.layer_digests[0]
    size = len(img.blobs[layer])
    m = mirror_factory([up], extra={"cache": {"ttl": "0", "gc_interval": "1h"}})
    pull(m, img, "library/big")
    refs_flushed(m, "library/big", img.blob_digests)

    s = socket.create_connection(("127.0.0.1", m.port), timeout=60)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    header, body = raw_get_headers(s, f"/v2/library/big/blobs/{layer}")
    assert header.startswith(b"HTTP/1.1 200")
    h = hashlib.sha256(body)
    got = len(body)
    assert got < size // 2, "the response should still be in progress"
    r = purge(m, "docker.io/library/big:v1")
    assert r.returncode == 0, r.stderr
    assert layer in r.stdout and "warning" not in r.stderr, r.stdout + r.stderr
    assert layer not in stored(m)
    read_rest(s, h, got, size)
    s.close()
    assert "sha256:" + h.hexdigest() == layer

    mark = up.mark()
    s, _, data = get(m, f"/v2/library/big/blobs/{layer}", accept=False)
    assert s == 200 and "sha256:" + hashlib.sha256(data).hexdigest() == layer
    assert blob_gets(upstream_calls(up, mark))[layer] == 1
    assert "forgot 1 tags" in open(m.log_path).read()
