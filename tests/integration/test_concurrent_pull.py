# SPDX-License-Identifier: Apache-2.0
"""A dozen clients pull the same cold image at once: the upstream serves each blob and each
manifest exactly once (registry:2 in proxy mode fetches every blob twice on a cold pull, and
does not merge concurrent misses)."""

import os
import threading

import clients
from helpers import blob_gets, since
from images import verify_oci_layout

CLIENTS = 12


def test_dozen_concurrent_cold_pulls_cost_each_blob_once(mirror, up, make_image, push, tmp_dir):
    img = push(make_image(70, (1024 * 1024, 3 * 1024 * 1024, 256 * 1024), fmt="oci",
                          multi_arch=True), up, "library/crowd", "v1")
    mark = up.mark()
    errors = []
    barrier = threading.Barrier(CLIENTS)

    def pull(i):
        out = os.path.join(tmp_dir, f"copy{i}")
        try:
            barrier.wait()
            clients.skopeo_copy_from_mirror(mirror.port, "library/crowd:v1", out,
                                            ["--preserve-digests", "--all"])
            verify_oci_layout(out, img.digest)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=pull, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors

    reqs = since(up, mark)
    gets = blob_gets(reqs)
    assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}
    manifest_gets = [p for m, p, s in reqs if m == "GET" and "/manifests/" in p and s == 200]
    # the index by tag once, then each platform's manifest once
    assert sorted(manifest_gets) == sorted(
        ["/v2/library/crowd/manifests/v1"] +
        [f"/v2/library/crowd/manifests/{m.digest}" for m in img.manifests]), manifest_gets
