# SPDX-License-Identifier: Apache-2.0
"""Offline bundles: `regcache export` on a mirror that reaches the upstream, `regcache import` on
one that reaches nothing, then real clients (skopeo, dockerd) pulling from the offline one.
Checked against the upstream's access log (what export fetched), the bundle's bytes, the offline
mirror's log (hit or stale, nothing failed) and its index."""

import hashlib
import json
import os
import sqlite3
import tarfile
import time

import clients
import procs
from helpers import blob_gets, since
from images import skopeo, verify_oci_layout
from mirror import regcache
from test_auth import ALICE, BOB, make_users
from test_hosted import skopeo_push


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def export(mirror, *args):
    p = regcache("export", *args, "-c", mirror.config_path, timeout=180)
    assert p.returncode == 0, p.stderr
    return p


def import_bundle(mirror, path, ok=True):
    p = regcache("import", path, "-c", mirror.config_path, timeout=180)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def bundle_members(path):
    """{name: bytes} of every regular file in the bundle, after checking each blob's digest."""
    out = {}
    with tarfile.open(path) as t:
        for m in t.getmembers():
            if m.isfile():
                out[m.name] = t.extractfile(m).read()
    for name, data in out.items():
        if name.startswith("blobs/sha256/"):
            assert sha256(data) == "sha256:" + name[13:], f"{name} in {path} does not verify"
    return out


def bundle_index(path):
    return json.loads(bundle_members(path)["index.json"])


def bundle_blobs(path):
    return {"sha256:" + n[13:] for n in bundle_members(path) if n.startswith("blobs/sha256/")}


def offline_mirror(mirror_factory, port=None, extra=None):
    """A mirror whose only upstream (docker.io) is a port nobody listens on; not started."""
    dead = f"http://127.0.0.1:{procs.free_port()}"
    return mirror_factory([{"name": "docker.io", "url": dead}], port=port, extra=extra,
                          start=False)


def all_digests(img):
    """Every manifest and blob digest of an image (all platforms)."""
    out = {img.digest} | {m.digest for m in img.manifests} | set(img.blob_digests)
    return out


def served_ok(mirror, repos):
    """The offline mirror's log for repos: every answer 200 and a hit or stale."""
    entries = [e for e in mirror.entries() if any(f"/v2/{r}/" in e.path for r in repos)]
    assert entries, mirror.log_text()[-3000:]
    bad = [e for e in entries if e.status != 200 or e.cache not in ("hit", "stale")]
    assert not bad, bad
    return entries


def db_rows(mirror, sql):
    con = sqlite3.connect(os.path.join(mirror.storage, "regcache.db"))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_bundle_carries_images_to_a_mirror_without_upstream(mirror_factory, up, make_image, push,
                                                            tmp_dir, dockerd,
                                                            docker_mirror_port):
    """Mirror A has two images cached and one not; export fetches the missing one through A's
    pull path (the upstream's log shows its blobs fetched once, the cached ones not at all).
    The bundle is an OCI layout skopeo reads. Mirror B, whose upstream is a closed port, imports
    it; skopeo (every platform, digests preserved) and dockerd (registry-mirrors) pull all of it
    from B, byte for byte; B's log shows only hits and stale tags."""
    multi = push(make_image(300, (96 * 1024, 32 * 1024), fmt="oci", multi_arch=True), up,
                 "library/bmulti", "3.19")
    single = push(make_image(301, (128 * 1024,), fmt="docker"), up, "library/bsingle", "1")
    fresh = push(make_image(302, (160 * 1024,), fmt="docker"), up, "org/bfresh", "1")
    a = mirror_factory([up])
    for ref in ("library/bmulti:3.19", "library/bsingle:1"):
        dest = os.path.join(tmp_dir, "a-" + ref.replace("/", "-").replace(":", "-"))
        clients.skopeo_copy_from_mirror(a.port, ref, dest, ["--all", "--preserve-digests"])
    mark = up.mark()
    out = os.path.join(tmp_dir, "bundle.tar")
    p = export(a, "bmulti:3.19", "docker.io/library/bsingle:1", "org/bfresh:1", "-o", out)
    assert "3 images" in p.stdout, p.stdout
    gets = blob_gets(since(up, mark))
    assert {d: gets[d] for d in fresh.blob_digests} == {d: 1 for d in fresh.blob_digests}
    assert sum(gets[d] for d in multi.blob_digests + single.blob_digests) == 0, gets
    # the bundle: every digest of the three images, index.json naming them in full
    assert bundle_blobs(out) == all_digests(multi) | all_digests(single) | all_digests(fresh)
    entries = {e["annotations"]["io.containerd.image.name"]: e
               for e in bundle_index(out)["manifests"]}
    assert set(entries) == {"docker.io/library/bmulti:3.19", "docker.io/library/bsingle:1",
                            "docker.io/org/bfresh:1"}
    e = entries["docker.io/library/bsingle:1"]
    assert e["digest"] == single.digest
    assert e["annotations"]["org.opencontainers.image.ref.name"] == "docker.io/library/bsingle:1"
    assert e["annotations"]["io.regcache.upstream"] == "docker.io"
    assert e["annotations"]["io.regcache.repository"] == "library/bsingle"
    assert e["annotations"]["io.regcache.media-type"] == single.media_type
    raw = skopeo("inspect", "--raw", f"oci-archive:{out}:docker.io/library/bmulti:3.19").stdout
    assert raw.encode() == multi.raw
    # B: nothing upstream reachable at all
    b = offline_mirror(mirror_factory, port=docker_mirror_port)
    p = import_bundle(b, out)
    assert "3 images" in p.stdout, p.stdout
    # the tags carry A's validation time: once B's revalidate_after (1 s) has passed, B has to
    # ask its upstream, cannot, and serves them stale (on a fast machine they are hits before)
    time.sleep(1.2)
    b.start()
    for img, ref in ((multi, "library/bmulti:3.19"), (single, "library/bsingle:1"),
                     (fresh, "org/bfresh:1")):
        dest = os.path.join(tmp_dir, "fromb-" + ref.replace("/", "-").replace(":", "-"))
        clients.skopeo_copy_from_mirror(b.port, ref, dest, ["--all", "--preserve-digests"])
        verify_oci_layout(dest, img.digest)
        for d in img.blob_digests:
            assert os.path.exists(os.path.join(dest, "blobs", "sha256", d[7:])), d
        assert clients.skopeo_inspect_raw(b.port, ref) == img.raw
    try:
        dockerd.docker("pull", "library/bsingle:1")
        digests = dockerd.repo_digests("library/bsingle:1")
        assert any(d.endswith("@" + single.digest) for d in digests), digests
    finally:
        dockerd.docker("rmi", "-f", "library/bsingle:1", check=False)
    entries = served_ok(b, ["library/bmulti", "library/bsingle", "org/bfresh"])
    assert any(e.cache == "stale" for e in entries)  # tags: the upstream could not be asked


def test_platform_export_keeps_the_index_and_only_that_platform(mirror_factory, up, make_image,
                                                                 push, tmp_dir):
    """--platform linux/amd64 of a two-platform index: the bundle holds the index byte for byte
    (its digest, so the tag's, unchanged), the amd64 manifest and its blobs, nothing of arm64.
    The offline mirror serves the tag and amd64; arm64 is not there to serve."""
    img = push(make_image(310, (64 * 1024,), fmt="oci", multi_arch=True), up, "library/plat", "1")
    a = mirror_factory([up])
    out = os.path.join(tmp_dir, "amd64.tar")
    export(a, "plat:1", "--platform", "linux/amd64", "-o", out)
    amd, arm = img.manifest_for("amd64"), img.manifest_for("arm64")
    members = bundle_members(out)
    assert members["blobs/sha256/" + img.digest[7:]] == img.raw
    assert bundle_blobs(out) == {img.digest, amd.digest, amd.config.digest,
                                 *[l.digest for l in amd.layers]}
    (entry,) = bundle_index(out)["manifests"]
    assert entry["digest"] == img.digest
    assert entry["annotations"]["io.regcache.platforms"] == "linux/amd64"
    b = offline_mirror(mirror_factory)
    import_bundle(b, out)
    b.start()
    assert clients.skopeo_inspect_raw(b.port, "library/plat:1") == img.raw
    dest = os.path.join(tmp_dir, "amd64")
    clients.skopeo_copy_from_mirror(b.port, "library/plat:1", dest,
                                    ["--override-arch", "amd64", "--override-os", "linux"])
    with open(os.path.join(dest, "index.json")) as f:
        top = json.load(f)["manifests"][0]["digest"]
    assert top == amd.digest
    s, _, _, _ = b.request("GET", f"/v2/library/plat/manifests/{arm.digest}",
                           headers={"Accept": img.media_type})
    assert s != 200
    assert get_status(b, f"/v2/library/plat/blobs/{arm.layers[0].digest}") != 200


def get_status(mirror, path):
    return mirror.request("GET", path)[0]


def test_since_leaves_out_what_the_first_bundle_holds(mirror_factory, up, make_image, push,
                                                      tmp_dir):
    """The second bundle (--since the first) names both images but holds only the new one's
    digests; imported in order into an offline mirror, both are served. Imported alone into an
    empty mirror it is refused, naming what is missing, and stores nothing."""
    old = push(make_image(320, (64 * 1024, 32 * 1024), fmt="oci"), up, "library/sold", "1")
    new = push(make_image(321, (48 * 1024,), fmt="oci", multi_arch=True), up, "library/snew", "1")
    a = mirror_factory([up])
    first, second = os.path.join(tmp_dir, "first.tar"), os.path.join(tmp_dir, "second.tar")
    export(a, "sold:1", "-o", first)
    mark = up.mark()
    p = export(a, "sold:1", "snew:1", "--since", first, "-o", second)
    assert "left out" in p.stdout, p.stdout
    assert bundle_blobs(first) == all_digests(old)
    assert bundle_blobs(second) == all_digests(new)
    names = {e["annotations"]["io.containerd.image.name"] for e in bundle_index(second)["manifests"]}
    assert names == {"docker.io/library/sold:1", "docker.io/library/snew:1"}
    # the old image's blobs were not fetched again for the second bundle
    assert sum(blob_gets(since(up, mark))[d] for d in old.blob_digests) == 0
    # the second alone: refused, naming a digest it lacks, nothing stored
    c = offline_mirror(mirror_factory)
    p = import_bundle(c, second, ok=False)
    assert p.returncode != 0
    assert old.digest in p.stderr and "neither in the bundle nor in the store" in p.stderr, p.stderr
    assert not any(os.path.exists(c.file_for(d)) for d in all_digests(new)), "stored anyway"
    # in order: everything
    b = offline_mirror(mirror_factory)
    import_bundle(b, first)
    p = import_bundle(b, second)
    b.start()
    for img, ref in ((old, "library/sold:1"), (new, "library/snew:1")):
        dest = os.path.join(tmp_dir, "b-" + ref.replace("/", "-").replace(":", "-"))
        clients.skopeo_copy_from_mirror(b.port, ref, dest, ["--all", "--preserve-digests"])
        verify_oci_layout(dest, img.digest)
    served_ok(b, ["library/sold", "library/snew"])


def test_tampered_bundle_is_refused_and_stores_nothing(mirror_factory, up, make_image, push,
                                                       tmp_dir):
    """One flipped byte in one layer: the import fails naming that digest; the store holds no
    file under it, nor anything else the bundle brought, and the index no tag."""
    img = push(make_image(330, (64 * 1024, 64 * 1024), fmt="oci"), up, "library/tamper", "1")
    a = mirror_factory([up])
    out = os.path.join(tmp_dir, "good.tar")
    export(a, "tamper:1", "-o", out)
    victim = img.manifests[0].layers[1].digest
    with tarfile.open(out) as t:
        offset = t.getmember("blobs/sha256/" + victim[7:]).offset_data
    bad = os.path.join(tmp_dir, "bad.tar")
    with open(out, "rb") as f:
        data = bytearray(f.read())
    data[offset + 1000] ^= 0x01
    with open(bad, "wb") as f:
        f.write(data)
    b = offline_mirror(mirror_factory)
    p = import_bundle(b, bad, ok=False)
    assert p.returncode != 0
    assert victim in p.stderr and "do not hash" in p.stderr, p.stderr
    assert not any(os.path.exists(b.file_for(d)) for d in all_digests(img)), "stored anyway"
    assert db_rows(b, "SELECT * FROM tags") == []
    # the good bundle still imports into the same store
    import_bundle(b, out)
    assert db_rows(b, "SELECT repo, tag, digest FROM tags") == [("library/tamper", "1", img.digest)]


def test_hosted_image_lands_as_hosted(mirror_factory, up, make_image, tmp_dir):
    """A hosted image exported from mirror A is imported into B as B's own hosted image: held,
    tagged as a push would be, served by B without any upstream, never a cached tag."""
    img = make_image(340, (64 * 1024,), fmt="oci", multi_arch=True)
    users = make_users(tmp_dir, ALICE, BOB)
    a = mirror_factory([up], extra={"auth": {"htpasswd": users, "push_users": ["alice"]},
                                     "hosted": ["team/*"]})
    skopeo_push(img, a.port, "team/app:1")
    out = os.path.join(tmp_dir, "hosted.tar")
    export(a, "team/app:1", "-o", out)
    (entry,) = bundle_index(out)["manifests"]
    assert entry["annotations"]["io.regcache.kind"] == "hosted"
    assert entry["annotations"]["io.regcache.repository"] == "team/app"
    assert entry["annotations"]["io.containerd.image.name"] == f"127.0.0.1:{a.port}/team/app:1"
    # B does not host team/*: refused by name
    plain = offline_mirror(mirror_factory)
    p = import_bundle(plain, out, ok=False)
    assert p.returncode != 0 and "hosted" in p.stderr and "team/app" in p.stderr, p.stderr
    b = offline_mirror(mirror_factory, extra={"hosted": ["team/*"]})
    import_bundle(b, out)
    assert db_rows(b, "SELECT repo, tag, digest FROM hosted_tags") == [("team/app", "1",
                                                                         img.digest)]
    held = {d for (d,) in db_rows(b, "SELECT digest FROM hosted_blobs WHERE repo = 'team/app'")}
    assert held == all_digests(img)
    assert db_rows(b, "SELECT * FROM tags") == []
    b.start()
    dest = os.path.join(tmp_dir, "hosted-b")
    clients.skopeo_copy_from_mirror(b.port, "team/app:1", dest, ["--all", "--preserve-digests"])
    verify_oci_layout(dest, img.digest)


def test_reimport_changes_nothing_and_a_served_store_is_refused(mirror_factory, up, make_image,
                                                                push, tmp_dir):
    """Importing the same bundle again stores nothing and leaves every table of the index as it
    was; an import into a store a daemon serves is refused (its in-memory index would not see
    it) and changes nothing either."""
    img = push(make_image(350, (64 * 1024,), fmt="oci", multi_arch=True), up, "library/again", "1")
    a = mirror_factory([up])
    out = os.path.join(tmp_dir, "again.tar")
    export(a, "again:1", "-o", out)
    b = offline_mirror(mirror_factory)
    import_bundle(b, out)

    def snapshot():
        tables = [t for (t,) in db_rows(b, "SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(db_rows(b, f"SELECT * FROM {t}")) for t in tables}, \
            sorted(os.listdir(os.path.join(b.storage, "blobs", "sha256")))

    before = snapshot()
    p = import_bundle(b, out)
    assert " 0 stored" in p.stdout and "0 tags and 0 manifests new" in p.stdout, p.stdout
    assert snapshot() == before
    b.start()
    p = import_bundle(b, out, ok=False)
    assert p.returncode != 0 and "daemon serves it" in p.stderr, p.stderr
    assert clients.skopeo_inspect_raw(b.port, "library/again:1") == img.raw


def test_progress_on_a_terminal_and_the_summary(mirror_factory, up, make_image, push, tmp_dir):
    """On a terminal (a pty from script(1)) export and import draw a progress line (count,
    bytes, rate); piped they draw none; both end with a summary line."""
    import shlex
    import subprocess
    from mirror import REGCACHE
    push(make_image(360, (4 << 20, 4 << 20), fmt="oci"), up, "library/prog", "1")
    a = mirror_factory([up])
    out = os.path.join(tmp_dir, "prog.tar")
    cmd = " ".join(shlex.quote(x) for x in [*REGCACHE, "export", "prog:1", "-o", out, "-c",
                                            a.config_path])
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert b"\r\x1b[Kexport: 0/3 blobs, 0 B of 8.0 MiB, " in p.stdout, p.stdout
    assert b"1 image, 1 manifests, 3 blobs;" in p.stdout, p.stdout
    piped = export(a, "prog:1", "-o", out)
    assert piped.stderr == "" and "\r" not in piped.stdout
    b = offline_mirror(mirror_factory)
    cmd = " ".join(shlex.quote(x) for x in [*REGCACHE, "import", out, "-c", b.config_path])
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert b"\r\x1b[Kimport: " in p.stdout and b"/s" in p.stdout, p.stdout
    assert b"; 4 stored (8.0 MiB)" in p.stdout, p.stdout
