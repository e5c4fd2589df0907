# SPDX-License-Identifier: Apache-2.0
"""Real clients pulling through the mirror: skopeo, containerd's ctr (with a hosts dir, which adds
?ns=docker.io), and dockerd (registry-mirrors). Each checks what the client ended up with, the
mirror's request log, and the upstream's access log."""

import os
import time

import pytest

import clients
from helpers import blob_gets, manifest_gets, since
from images import verify_oci_layout


def _blob_gets_for(img, reqs):
    gets = blob_gets(reqs)
    return {d: gets[d] for d in img.blob_digests}


def _since_fetched(up, mark, img, timeout=15.0):
    """The upstream's log since mark, once it shows a GET of each of img's blobs (or the
    timeout passed): on a loaded machine its lines can trail the responses for longer than
    the log takes to look settled."""
    deadline = time.monotonic() + timeout
    while True:
        reqs = since(up, mark)
        if all(n >= 1 for n in _blob_gets_for(img, reqs).values()) or time.monotonic() > deadline:
            return reqs


@pytest.mark.parametrize("multi", [False, True], ids=["single", "multi"])
def test_skopeo_copy_through_mirror(mirror, up, make_image, push, tmp_dir, multi):
    """skopeo copies an OCI image (single-arch, or every platform of an index) through the
    mirror with digests intact and every blob verified; the cold pull costs each blob exactly
    one upstream GET and a second pull into another directory costs none."""
    img = push(make_image(40, (64 * 1024, 256 * 1024), fmt="oci", multi_arch=multi), up,
               "library/skop", "v1")
    extra = ["--preserve-digests"] + (["--all"] if multi else [])
    mark = up.mark()
    out1 = os.path.join(tmp_dir, "copy1")
    clients.skopeo_copy_from_mirror(mirror.port, "library/skop:v1", out1, extra)
    verify_oci_layout(out1, img.digest)
    for d in img.blob_digests:
        assert os.path.exists(os.path.join(out1, "blobs", "sha256", d[7:])), d
    assert _blob_gets_for(img, _since_fetched(up, mark, img)) == {d: 1 for d in img.blob_digests}
    mark = up.mark()
    out2 = os.path.join(tmp_dir, "copy2")
    clients.skopeo_copy_from_mirror(mirror.port, f"library/skop@{img.digest}", out2, extra)
    verify_oci_layout(out2, img.digest)
    assert sum(blob_gets(since(up, mark)).values()) == 0
    raw = clients.skopeo_inspect_raw(mirror.port, "library/skop:v1")
    assert raw == img.raw


@pytest.mark.parametrize("multi", [False, True], ids=["single", "all-platforms"])
def test_ctr_pull_with_hosts_dir(containerd, mirror, up, make_image, push, multi, request):
    """ctr pulls docker.io/library/NAME:TAG through the mirror (hosts.toml); every request
    carries ns=docker.io, `ctr images ls` shows the upstream digest and each blob was fetched
    from upstream once. A later skopeo pull costs no upstream blob GETs."""
    img = push(make_image(41, (64 * 1024, 128 * 1024), fmt="oci", multi_arch=multi), up,
               "library/ctrimg", "v1")
    ref = "docker.io/library/ctrimg:v1"
    ns = "t" + request.node.callspec.id.replace("-", "")
    mark = up.mark()
    containerd.pull(ref, mirror.port, ns, all_platforms=multi)
    assert containerd.image_digest(ref, ns) == img.digest
    entries = [e for e in mirror.entries() if "/library/ctrimg/" in e.path]
    assert entries, mirror.log_text()[-2000:]
    assert all("ns=docker.io" in e.path for e in entries), [e.path for e in entries]
    assert all(e.status == 200 for e in entries), entries
    reqs = _since_fetched(up, mark, img)
    assert manifest_gets(reqs) >= 1
    assert _blob_gets_for(img, reqs) == {d: 1 for d in img.blob_digests}
    mark = up.mark()
    raw = clients.skopeo_inspect_raw(mirror.port, "library/ctrimg:v1")
    assert raw == img.raw
    out = os.path.join(mirror.dir, "skopeo-after-ctr")
    clients.skopeo_copy_from_mirror(mirror.port, "library/ctrimg:v1", out,
                                    ["--preserve-digests"] + (["--all"] if multi else []))
    assert sum(blob_gets(since(up, mark)).values()) == 0
    containerd.ctr("images", "rm", ref, namespace=ns)


@pytest.mark.parametrize("multi", [False, True], ids=["single", "list"])
def test_dockerd_pull_through_registry_mirror(dockerd, containerd, mirror_factory, up, make_image,
                                              push, docker_mirror_port, multi, request):
    """dockerd (registry-mirrors) pulls library/NAME:TAG through the mirror; RepoDigests holds
    the upstream digest; then ctr pulls the same image and the upstream sees no blob GETs."""
    name = "dkimg" + ("list" if multi else "one")
    img = push(make_image(42, (64 * 1024, 192 * 1024), fmt="docker", multi_arch=multi), up,
               f"library/{name}", "v1")
    mirror = mirror_factory([up], port=docker_mirror_port)
    mark = up.mark()
    try:
        dockerd.docker("pull", f"library/{name}:v1")
        digests = dockerd.repo_digests(f"library/{name}:v1")
        assert any(d.endswith("@" + img.digest) for d in digests), digests
        assert any(e.path.startswith(f"/v2/library/{name}/manifests/") for e in mirror.entries())
        reqs = since(up, mark)
        wanted = [m.config.digest for m in img.manifests[:1]] + \
            [l.digest for l in img.manifests[0].layers]  # dockerd pulls linux/amd64 only
        gets = blob_gets(reqs)
        assert {d: gets[d] for d in wanted} == {d: 1 for d in wanted}
    finally:
        dockerd.docker("rmi", "-f", f"library/{name}:v1", check=False)
    mark = up.mark()
    ns = "dk" + request.node.callspec.id
    containerd.pull(f"docker.io/library/{name}:v1", mirror.port, ns, platform="linux/amd64")
    assert containerd.image_digest(f"docker.io/library/{name}:v1", ns) == img.digest
    assert sum(blob_gets(since(up, mark)).values()) == 0
    containerd.ctr("images", "rm", f"docker.io/library/{name}:v1", namespace=ns)
