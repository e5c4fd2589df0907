# SPDX-License-Identifier: Apache-2.0
"""Upstream health as an operator sees it: the transitions in the log, each upstream's state in
`regcache stats`, the probe that brings a down upstream back (and never costs a pull), and two
upstreams whose health is kept apart."""

import json
import time

from helpers import get, since, wait_until
from mirror import regcache
from switchproxy import SwitchProxy
from upstream import count


def states(mirror):
    r = regcache("stats", "-c", mirror.config_path, "--json")
    assert r.returncode == 0, r.stderr
    return {x["name"]: x for x in json.loads(r.stdout)["upstreams"]}


def test_down_and_back_in_the_log_and_stats_with_probes_that_cost_no_pull(
        mirror_factory, up, make_image, push):
    img = push(make_image(960), up, "library/health", "v1")
    proxy = SwitchProxy(up.port)
    try:
        m = mirror_factory([{"name": "docker.io", "url": proxy.url}], revalidate_after="1s")
        assert get(m, "/v2/library/health/manifests/v1")[0] == 200
        wait_until(lambda: states(m).get("docker.io", {}).get("state") == "up",
                   what="stats to show docker.io up")
        proxy.set_mode("refuse")
        time.sleep(1.2)
        s, h, body = get(m, "/v2/library/health/manifests/v1")
        assert s == 200 and h["docker-content-digest"] == img.digest
        assert m.entries()[-1].cache == "stale"
        assert "upstream docker.io: down (" in m.log_text()
        st = wait_until(lambda: states(m)["docker.io"]["state"] == "down" and states(m),
                        what="stats to show docker.io down")["docker.io"]
        assert st["reason"] and st["since"].endswith("Z")
        # while down: answered at once, and only probes (GET /v2/) reach the proxy
        pmark = len(proxy.requests())
        for _ in range(5):
            t = time.monotonic()
            assert get(m, "/v2/library/health/manifests/v1")[0] == 200
            assert time.monotonic() - t < 1.0
        time.sleep(2.5)
        seen = proxy.requests()[pmark:]
        assert seen and all(p == "/v2/" for _, p, _ in seen), seen
        assert len(seen) <= 4, seen  # one probe per second at most
        # back: a probe brings it up, then a pull revalidates with one HEAD
        mark = up.mark()
        proxy.set_mode("pass")
        wait_until(lambda: "upstream docker.io: up again after" in m.log_text(), timeout=10,
                   what="the probe to bring docker.io back")
        wait_until(lambda: states(m)["docker.io"]["state"] == "up", what="stats: up")
        time.sleep(1.1)
        assert get(m, "/v2/library/health/manifests/v1")[0] == 200
        reqs = since(up, mark)
        assert count(reqs, method="GET", kind="manifests") == 0, reqs
        assert count(reqs, method="HEAD", kind="manifests") == 1, reqs
        text = regcache("stats", "-c", m.config_path).stdout
        assert "upstreams:" in text and "docker.io" in text, text
    finally:
        proxy.stop()


def test_one_upstream_down_leaves_the_other_up(mirror_factory, upstream_factory, make_image,
                                               push):
    a = upstream_factory("registry.docker.io")
    b = upstream_factory("quay.io")
    img_a = push(make_image(961), a, "library/one", "v1")
    img_b = push(make_image(962), b, "org/two", "v1")
    m = mirror_factory([a, b], revalidate_after="0s")
    assert get(m, "/v2/library/one/manifests/v1")[0] == 200
    assert get(m, "/v2/quay.io/org/two/manifests/v1")[0] == 200
    a.stop()
    assert get(m, "/v2/library/one/manifests/v1")[0] == 200
    assert m.entries()[-1].cache == "stale"
    mark = b.mark()
    s, h, _ = get(m, "/v2/quay.io/org/two/manifests/v1")
    assert s == 200 and h["docker-content-digest"] == img_b.digest
    assert m.entries()[-1].cache == "hit"
    assert count(since(b, mark), method="HEAD", kind="manifests") == 1
    st = wait_until(lambda: states(m)["docker.io"]["state"] == "down" and states(m),
                    what="stats: docker.io down")
    assert st["quay.io"]["state"] == "up"
    assert img_a.digest
