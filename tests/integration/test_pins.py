# SPDX-License-Identifier: Apache-2.0
"""pin: what the listed references reach (an index's child manifests, every config and layer)
survives a size cap that evicts everything else, is shown by `regcache ls`, and becomes
evictable once it is no longer listed."""

import hashlib
import os

import yaml

from helpers import get, wait_until
from helpers import stored_digests as stored
from images import ACCEPT_ALL
from mirror import regcache

ACCEPT = ", ".join(ACCEPT_ALL)


def pull(mirror, img, repo, tag):
    """Every manifest (the index and each platform's) and every blob, digests checked."""
    s, _, body = get(mirror, f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
    assert s == 200, body[:300]
    assert "sha256:" + hashlib.sha256(body).hexdigest() == img.digest
    if img.multi:
        for m in img.manifests:
            s, _, body = get(mirror, f"/v2/{repo}/manifests/{m.digest}",
                             headers={"Accept": ACCEPT})
            assert s == 200, body[:300]
    for d in img.blob_digests:
        s, _, data = get(mirror, f"/v2/{repo}/blobs/{d}", accept=False)
        assert s == 200, (d, data[:200])
        assert "sha256:" + hashlib.sha256(data).hexdigest() == d


def metric(mirror, name):
    """The value of an unlabelled series in the mirror's /metrics."""
    s, _, body = get(mirror, "/metrics", headers={})
    assert s == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError(f"{name} not in /metrics")


def everything(img):
    return {img.digest, *[m.digest for m in img.manifests], *img.blob_digests}


def set_pins(mirror, pins):
    with open(mirror.config_path) as f:
        doc = yaml.safe_load(f)
    if pins is None:
        doc.pop("pin", None)
    else:
        doc["pin"] = pins
    with open(mirror.config_path, "w") as f:
        yaml.safe_dump(doc, f)


def test_size_cap_evicts_all_but_what_is_pinned_until_it_is_unlisted(mirror_factory, up,
                                                                     make_image, push):
    """cache.max_size 1KiB with gc every second: an unlisted image is evicted entirely; a
    multi-arch image pinned by tag glob and a single image pinned by digest keep every manifest
    and blob; `regcache ls` marks their tags PINNED with the reason. After a restart without
    the pin list, the size cap evicts them too."""
    multi = push(make_image(1301, (96 * 1024, 32 * 1024), multi_arch=True), up,
                 "library/keepme", "v1.2")
    single = push(make_image(1302, (64 * 1024,)), up, "library/bydigest", "v1")
    other = push(make_image(1303, (128 * 1024,)), up, "library/other", "v1")
    m = mirror_factory([up], extra={
        "cache": {"max_size": "1KiB", "gc_interval": "1s"},
        "pin": ["docker.io/library/keepme:v1.*", f"library/bydigest@{single.digest}"],
    })
    pull(m, multi, "library/keepme", "v1.2")
    pull(m, single, "library/bydigest", "v1")
    pull(m, other, "library/other", "v1")
    wait_until(lambda: not everything(other) & stored(m), timeout=20,
               what="the unlisted image to be evicted")
    have = stored(m)
    assert everything(multi) <= have, everything(multi) - have
    assert everything(single) <= have, everything(single) - have

    ls = regcache("ls", "-c", m.config_path)
    assert ls.returncode == 0, ls.stderr
    keep_line = [l for l in ls.stdout.splitlines() if multi.digest in l]
    assert keep_line and "PINNED pin: docker.io/library/keepme:v1.*" in keep_line[0], ls.stdout
    assert f"pin: library/bydigest@{single.digest}" in ls.stdout, ls.stdout

    # an operator's gc honours the same list
    gc = regcache("gc", "-c", m.config_path)
    assert gc.returncode == 0, gc.stderr
    assert everything(multi) | everything(single) <= stored(m)

    assert m.stop() == 0
    set_pins(m, None)
    m.start()
    wait_until(lambda: not (everything(multi) | everything(single)) & stored(m), timeout=20,
               what="the unlisted images to be evicted")


def test_bad_pin_reference_is_a_config_error(tmp_dir):
    """A reference that is no reference names file, line and key."""
    path = os.path.join(tmp_dir, "bad.yml")
    with open(path, "w") as f:
        f.write("storage: /tmp/x\npin:\n  - 'library/alpine:3 20'\n")
    r = regcache("check-config", "-c", path)
    assert r.returncode != 0
    assert "bad.yml:3: pin" in r.stderr, r.stderr


def test_purge_keeps_what_is_pinned(mirror_factory, up, make_image, push):
    """`regcache purge` of a pinned image's repository keeps every pinned file (and says so),
    a pinned digest named by itself is refused, and an unpinned image in the same repository
    goes; the upstream is asked again only for what went."""
    pinned = push(make_image(1311, (48 * 1024,)), up, "library/held", "v1")
    loose = push(make_image(1312, (40 * 1024,)), up, "library/held", "v2")
    m = mirror_factory([up], extra={"pin": ["library/held:v1"],
                                    "metrics": {"allow": ["127.0.0.1/32"]}})
    pull(m, pinned, "library/held", "v1")
    pull(m, loose, "library/held", "v2")
    assert everything(pinned) | everything(loose) <= stored(m)

    r = regcache("purge", pinned.blob_digests[-1], "-c", m.config_path)
    assert r.returncode != 0, r.stdout
    assert "pinned" in (r.stderr + r.stdout), (r.stdout, r.stderr)
    assert everything(pinned) <= stored(m)

    sizes = {d: os.path.getsize(m.file_for(d)) for d in everything(loose)}
    r = regcache("purge", "docker.io/library/held", "-c", m.config_path)
    assert r.returncode == 0, r.stderr
    assert "(pinned)" in r.stdout, r.stdout
    have = stored(m)
    assert everything(pinned) <= have, everything(pinned) - have
    gone = everything(loose) - everything(pinned)
    assert not gone & have, have
    # the command returned once the daemon had read the journal: it counted what went
    assert metric(m, "regcache_purged_files_total") == len(gone)
    assert metric(m, "regcache_purged_bytes_total") == sum(sizes[d] for d in gone)


def test_pinned_content_stays_while_gc_runs_under_concurrent_pulls(mirror_factory, up,
                                                                   make_image, push):
    """A 1 KiB cap and a GC every second while two clients pull at once: one pulls a pinned
    image again and again, the other a stream of unlisted images that each push the store over
    the cap. Every answer is whole; the upstream sends each pinned blob exactly once (it is
    never evicted and fetched again), the unlisted images go; with the upstream stopped the
    pinned image is still served in full."""
    import threading

    from helpers import blob_gets, upstream_calls

    held = push(make_image(1321, (256 * 1024, 64 * 1024)), up, "library/steady", "v1")
    others = [push(make_image(1330 + i, (160 * 1024,)), up, f"library/churn{i}", "v1")
              for i in range(6)]
    m = mirror_factory([up], extra={"cache": {"max_size": "1KiB", "gc_interval": "1s"},
                                    "pin": ["library/steady:v1"],
                                    "metrics": {"allow": ["127.0.0.1/32"]}})
    mark = up.mark()
    errors = []
    done = threading.Event()

    def pull_pinned():
        try:
            while not done.is_set():
                pull(m, held, "library/steady", "v1")
        except Exception as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=pull_pinned)
    t.start()
    try:
        for i, img in enumerate(others):
            pull(m, img, f"library/churn{i}", "v1")
            wait_until(lambda: not set(img.blob_digests) & stored(m), timeout=20,
                       what=f"churn{i} to be evicted")
    finally:
        done.set()
        t.join(timeout=60)
    assert not errors, errors
    gets = blob_gets(upstream_calls(up, mark))
    for d in held.blob_digests:
        assert gets[d] == 1, (d, gets[d])
    assert everything(held) <= stored(m)
    pinned_bytes = sum(os.path.getsize(m.file_for(d)) for d in everything(held))
    wait_until(lambda: metric(m, "regcache_gc_pinned_bytes") == pinned_bytes and
               metric(m, "regcache_gc_pinned_files") == len(everything(held)), timeout=10,
               what="a GC to report what it kept for the pin list")
    up.stop()
    pull(m, held, "library/steady", "v1")
