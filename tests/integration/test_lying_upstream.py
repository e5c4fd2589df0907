# SPDX-License-Identifier: Apache-2.0
"""An upstream (or a hop in front of it) that lies about a manifest's digest: the mirror never
stores or serves bytes under a digest they do not hash to, and a tag it already has stays
served as it was last verified."""

import time

from faultproxy import FaultProxy
from helpers import assert_error, get, mirror_has, since
from upstream import count

LIE = "sha256:" + "0" * 64


def test_a_lying_digest_leaves_the_cached_tag_served_and_nothing_stored(
        mirror_factory, up, make_image, push):
    old = push(make_image(970), up, "library/liar", "v1")
    proxy = FaultProxy(up.port)
    try:
        m = mirror_factory([{"name": "docker.io", "url": proxy.url}], revalidate_after="1s")
        s, h, body = get(m, "/v2/library/liar/manifests/v1")
        assert s == 200 and body == old.raw
        new = push(make_image(971), up, "library/liar", "v1")
        # every answer now claims a digest its bytes do not have (the last header wins)
        proxy.extra_headers = [("Docker-Content-Digest", LIE)]
        time.sleep(1.2)
        mark = up.mark()
        s, h, body = get(m, "/v2/library/liar/manifests/v1")
        assert s == 200 and body == old.raw and h["docker-content-digest"] == old.digest
        assert m.entries()[-1].cache == "stale"
        assert count(since(up, mark), method="GET", kind="manifests") == 1
        assert not mirror_has(m, new.digest) and not mirror_has(m, LIE)
        assert "do not hash to " + LIE in m.log_text()
        # a tag the mirror never had: refused, nothing stored
        other = push(make_image(972), up, "library/liar", "cold")
        s, h, body = get(m, "/v2/library/liar/manifests/cold")
        assert_error(s, body, 502)
        assert not mirror_has(m, other.digest)
        # honest again: the moved tag is picked up and verified
        proxy.extra_headers = []
        time.sleep(1.2)
        s, h, body = get(m, "/v2/library/liar/manifests/v1")
        assert s == 200 and body == new.raw and h["docker-content-digest"] == new.digest
    finally:
        proxy.stop()
