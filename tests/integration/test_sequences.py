# SPDX-License-Identifier: Apache-2.0
"""Long sequences of pulls against one tag, checked at every step: what the client got, the exact
manifest requests the upstream saw (method and count; auth probes and 401s aside) and what the
mirror's index holds. A tag that did not move costs one HEAD per revalidation and never a
second GET; a moved tag costs one GET per move; a restart changes neither; an upstream that is
stopped, hung or rate-limited leaves cached tags answering from the cache at once (outcome
`stale`) with the latest digest the mirror saw, while a cold miss fails cleanly within
`timeouts.first_byte`.

The hung upstream is a SwitchProxy between mirror and upstream; a stopped one is `up.stop()`.
Timing bounds are generous: each catches a wait of 30 s or more, not a slow machine."""

import concurrent.futures
import json
import os
import threading
import time

import pytest

from clients import run
from helpers import (assert_error, get, index_tag, index_tag_after, since, upstream_calls,
                     wait_until, wall_ms)
from images import sha256
from mirror import regcache, wait_settled
from switchproxy import SwitchProxy

REPO = "library/seq"
TAG_PATH = f"/v2/{REPO}/manifests/v1"


def manifest_calls(calls):
    """The manifest requests among upstream_calls(): (method, reference, status)."""
    return [(m, p.split("?", 1)[0].rsplit("/", 1)[1], st) for m, p, st in calls
            if "/manifests/" in p]


def pull_tag(m, img, path=TAG_PATH):
    """One manifest GET by tag through the mirror: it must be exactly img's manifest."""
    s, h, body = get(m, path)
    assert s == 200, (s, body[:300])
    assert h.get("docker-content-digest") == img.digest and body == img.raw, \
        (h.get("docker-content-digest"), img.digest)
    assert h.get("content-type") == img.media_type
    return h


def last_outcome(m, path=TAG_PATH, method="GET"):
    """The request-log outcome (hit, miss, fill, stale, -) of the latest request for path."""
    for e in reversed(m.entries()):
        if e.method == method and e.path == path:
            return e.cache
    raise AssertionError(f"no {method} {path} in the mirror's log")


def assert_index(m, img, since_ms, step):
    row = index_tag_after(m, REPO, "v1", since_ms)
    assert row[0] == img.digest and row[1] == img.media_type, \
        f"step {step}: the index holds {row[:2]!r} for {REPO}:v1, expected " \
        f"{(img.digest, img.media_type)!r}"


def skopeo_copy_dir(port, ref, dest, timeout=120):
    """`skopeo copy docker://127.0.0.1:PORT/ref dir:dest` (digests preserved); returns the
    seconds it took. The copy must be complete: every file hashes to its name."""
    t0 = time.monotonic()
    run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", "--preserve-digests",
         f"docker://127.0.0.1:{port}/{ref}", f"dir:{dest}"], timeout=timeout)
    return time.monotonic() - t0


def assert_dir_copy(dest, img):
    with open(os.path.join(dest, "manifest.json"), "rb") as f:
        assert sha256(f.read()) == img.digest
    for d in img.blob_digests:
        with open(os.path.join(dest, d[7:]), "rb") as f:
            assert f.read() == img.blobs[d], f"{d} in {dest}"


@pytest.fixture
def switch(up):
    """A SwitchProxy in front of `up` (the mirror's docker.io is the proxy); left in "pass"
    at the end so that nothing is held while the mirror stops."""
    p = SwitchProxy(up.port)
    yield p
    p.set_mode("pass")
    p.stop()


def proxied(switch):
    return [{"name": "docker.io", "url": switch.url}]


# -- 1. an unchanged tag, pulled again and again -------------------------------------------------
def test_unchanged_tag_costs_one_get_then_one_head_per_pull(up, mirror_factory, make_image,
                                                            push):
    """revalidate_after 0s: every pull revalidates. Pull 1 costs the one manifest GET, every
    later pull exactly one HEAD and nothing else, and after each pull the index row of the tag
    still holds its digest and media type (a revalidation that found the same digest once
    blanked it, so that every other pull cost a GET and the tag could not be served stale)."""
    img = push(make_image(901), up, REPO, "v1")
    m = mirror_factory([up], revalidate_after="0s")
    for i in range(1, 9):
        mark, t0 = up.mark(), wall_ms()
        pull_tag(m, img)
        want = [("GET" if i == 1 else "HEAD", "v1", 200)]
        calls = upstream_calls(up, mark)
        got = manifest_calls(calls)
        assert got == want, f"pull {i}: the upstream saw {got}, expected {want}"
        assert len(calls) == 1, f"pull {i}: the upstream saw {calls}"
        assert_index(m, img, t0, f"pull {i}")
        assert last_outcome(m) == ("miss" if i == 1 else "hit"), f"pull {i}"


# -- 2. a tag that moves -------------------------------------------------------------------------
def test_tag_moved_k_times_costs_k_plus_one_gets(up, mirror_factory, make_image, push):
    """The tag is moved upstream 3 times. After each move the next pull answers the new digest
    at once with one HEAD and one GET (of the tag or the new digest); a pull after it costs
    one HEAD. 4 GETs in all, each step's answer the newest digest, and the index follows."""
    imgs = [make_image(910 + j) for j in range(4)]
    push(imgs[0], up, REPO, "v1")
    m = mirror_factory([up], revalidate_after="0s")
    mark, t0 = up.mark(), wall_ms()
    pull_tag(m, imgs[0])
    got = manifest_calls(upstream_calls(up, mark))
    assert got == [("GET", "v1", 200)], got
    assert_index(m, imgs[0], t0, "first pull")
    seen = list(got)  # every manifest request of the mirror's steps
    for j in range(1, 4):
        push(imgs[j], up, REPO, "v1")
        mark, t0 = up.mark(), wall_ms()
        pull_tag(m, imgs[j])
        got = manifest_calls(upstream_calls(up, mark))
        assert [c[0] for c in got] == ["HEAD", "GET"], f"move {j}: {got}"
        assert got[1][1] in ("v1", imgs[j].digest) and got[1][2] == 200, f"move {j}: {got}"
        assert_index(m, imgs[j], t0, f"move {j}")
        seen += got
        mark, t0 = up.mark(), wall_ms()
        pull_tag(m, imgs[j])
        got = manifest_calls(upstream_calls(up, mark))
        assert got == [("HEAD", "v1", 200)], f"pull after move {j}: {got}"
        assert_index(m, imgs[j], t0, f"pull after move {j}")
        seen += got
    assert [c[0] for c in seen].count("GET") == 3 + 1, seen


# -- 3. a restart in the middle -----------------------------------------------------------------
def test_restart_in_an_unchanged_tag_sequence_changes_nothing(up, mirror_factory, make_image,
                                                              push):
    """3 pulls, a clean restart of the mirror, 3 more pulls: still one HEAD per pull after the
    first GET, no GET after the restart, and the index row intact across it."""
    img = push(make_image(920), up, REPO, "v1")
    m = mirror_factory([up], revalidate_after="0s")
    for i in range(1, 7):
        if i == 4:
            assert m.stop() == 0
            row = index_tag(m, REPO, "v1")  # the daemon is stopped: what it left on disk
            assert row and row[0] == img.digest and row[1] == img.media_type, row
            m.start()
        mark, t0 = up.mark(), wall_ms()
        pull_tag(m, img)
        want = [("GET" if i == 1 else "HEAD", "v1", 200)]
        got = manifest_calls(upstream_calls(up, mark))
        assert got == want, f"pull {i} ({'after' if i >= 4 else 'before'} the restart): " \
            f"the upstream saw {got}, expected {want}"
        assert_index(m, img, t0, f"pull {i}")


# -- 4. a moved tag with the upstream stopped ----------------------------------------------------
def test_moved_tag_served_stale_with_upstream_stopped_also_after_restart(up, mirror_factory,
                                                                         make_image, push):
    """The tag moves once and is revalidated (same digest) once more; then the upstream stops.
    The mirror answers the latest digest it saw (200, outcome stale), and again after its own
    restart with the upstream still stopped. When the upstream is back, the tag answers
    fresh again (a hit after a HEAD) without a GET."""
    a, b = make_image(930), make_image(931)
    push(a, up, REPO, "v1")
    m = mirror_factory([up], revalidate_after="0s")
    pull_tag(m, a)
    push(b, up, REPO, "v1")
    pull_tag(m, b)  # moved: HEAD + GET
    mark, t0 = up.mark(), wall_ms()
    pull_tag(m, b)  # same digest: HEAD only
    assert manifest_calls(upstream_calls(up, mark)) == [("HEAD", "v1", 200)]
    assert_index(m, b, t0, "revalidation before the outage")

    up.stop()
    for step in ("upstream stopped", "upstream stopped, again"):
        t = time.monotonic()
        pull_tag(m, b)
        assert time.monotonic() - t < 8, step
        assert last_outcome(m) == "stale", step
    assert m.stop() == 0
    m.start()
    for step in ("after the mirror's restart", "after the mirror's restart, again"):
        t = time.monotonic()
        pull_tag(m, b)
        assert time.monotonic() - t < 8, step
        assert last_outcome(m) == "stale", step
    row = index_tag(m, REPO, "v1")
    assert row and row[:2] == (b.digest, b.media_type), row

    up.start()
    mark = up.mark()

    def fresh():
        pull_tag(m, b)
        return last_outcome(m) == "hit"

    wait_until(fresh, timeout=20, interval=0.5, what="a fresh answer once the upstream is back")
    got = manifest_calls(upstream_calls(up, mark))
    assert got and all(c == ("HEAD", "v1", 200) for c in got), got


# -- 5. a hung upstream --------------------------------------------------------------------------
@pytest.mark.parametrize("revalidate_timeout", [None, "1s"], ids=["default-2s", "1s"])
def test_hung_upstream_answers_cached_tag_within_revalidate_timeout(up, switch, mirror_factory,
                                                                    make_image, push,
                                                                    tmp_dir,
                                                                    revalidate_timeout):
    """The upstream accepts connections and never answers. A cached tag past revalidate_after
    is answered from the cache within revalidate_timeout (+ slack), and every later answer (and
    the cached tags list) at once; a whole skopeo copy of the image completes from the cache. The hung upstream saw one
    manifest request (the HEAD that timed out) and no blob request. When the upstream is back
    and the tag was moved meanwhile, the new digest is served within revalidate_after + the
    probe interval (+ slack), with one GET for it."""
    img, moved = make_image(940, (96 * 1024, 32 * 1024)), make_image(941)
    push(img, up, REPO, "v1")
    extra = {"cache": {"revalidate_timeout": revalidate_timeout}} if revalidate_timeout else None
    m = mirror_factory(proxied(switch), revalidate_after="1s", extra=extra)
    skopeo_copy_dir(m.port, f"{REPO}:v1", os.path.join(tmp_dir, "warm"))
    assert_dir_copy(os.path.join(tmp_dir, "warm"), img)
    assert get(m, f"/v2/{REPO}/tags/list", accept=False)[0] == 200
    time.sleep(1.5)  # past revalidate_after

    switch.set_mode("hang")
    pmark = len(switch.requests())
    t = time.monotonic()
    pull_tag(m, img)
    first = time.monotonic() - t
    assert first < 8, f"first cached answer with the upstream hung took {first:.1f} s"
    assert last_outcome(m) == "stale"
    later = []
    for _ in range(5):
        t = time.monotonic()
        pull_tag(m, img)
        later.append(time.monotonic() - t)
        assert last_outcome(m) == "stale"
    assert max(later) < 2, f"later cached answers took {later}"
    t = time.monotonic()
    s, _, body = get(m, f"/v2/{REPO}/tags/list", accept=False)
    assert s == 200 and json.loads(body)["tags"] == ["v1"], (s, body[:200])
    assert time.monotonic() - t < 2
    dest = os.path.join(tmp_dir, "hung")
    took = skopeo_copy_dir(m.port, f"{REPO}:v1", dest, timeout=90)
    assert took < 15, f"a cached skopeo copy with the upstream hung took {took:.1f} s"
    assert_dir_copy(dest, img)
    wait_until(lambda: "upstream docker.io: down (" in m.log_text(), timeout=5,
               what="the down transition in the mirror's log")
    hung = [(meth, p.split("?", 1)[0]) for meth, p, _ in switch.requests()[pmark:]]
    assert [x for x in hung if x[1] != "/v2/"] == [("HEAD", TAG_PATH)], hung
    assert all(x == ("GET", "/v2/") for x in hung if x[1] == "/v2/"), hung

    push(moved, up, REPO, "v1")  # straight to the upstream, not through the proxy
    mark = up.mark()
    switch.set_mode("pass")
    t = time.monotonic()

    def new_digest():
        s, h, _ = get(m, TAG_PATH)
        return s == 200 and h.get("docker-content-digest") == moved.digest

    wait_until(new_digest, timeout=20, interval=0.2, what="the moved tag's new digest")
    took = time.monotonic() - t
    assert took < 1 + 1 + 6, f"the new digest came {took:.1f} s after the upstream was back"
    pull_tag(m, moved)
    wait_until(lambda: "upstream docker.io: up again after" in m.log_text(), timeout=5,
               what="the up transition in the mirror's log")
    gets = [c for c in manifest_calls(upstream_calls(up, mark)) if c[0] == "GET"]
    assert len(gets) == 1 and gets[0][1] in ("v1", moved.digest), gets
    assert not [c for c in upstream_calls(up, mark) if "/blobs/" in c[1]]


def test_cold_miss_with_upstream_hung_fails_within_first_byte(up, switch, mirror_factory,
                                                              make_image, push):
    """timeouts.first_byte 3s. With the upstream hung, a tag never cached gets a 5xx with a
    spec error body within first_byte (+ slack), both before anything marked the upstream
    down and after a cached tag's revalidation did; each cold request did reach the upstream."""
    img = push(make_image(950), up, REPO, "v1")
    m = mirror_factory(proxied(switch), revalidate_after="1s",
                       extra={"timeouts": {"first_byte": "3s"}})
    pull_tag(m, img)
    switch.set_mode("hang")
    for step, tag in (("hung, not yet down", "cold1"), ("after a stale answer", "cold2")):
        if tag == "cold2":
            time.sleep(1.2)  # past revalidate_after
            pull_tag(m, img)
            assert last_outcome(m) == "stale"
        pmark = len(switch.requests())
        t = time.monotonic()
        s, h, body = get(m, f"/v2/{REPO}/manifests/{tag}")
        took = time.monotonic() - t
        assert_error(s, body, range(500, 600))
        assert took < 3 + 6, f"{step}: the cold miss failed after {took:.1f} s"
        assert any(p.split("?", 1)[0] == f"/v2/{REPO}/manifests/{tag}"
                   for _, p, _ in switch.requests()[pmark:]), f"{step}: never went upstream"


# -- 6. a rate-limited upstream ------------------------------------------------------------------
def test_rate_limited_upstream_serves_cached_tags_and_429s_cold_ones(up, switch, mirror_factory,
                                                                     make_image, push):
    """Every upstream answer is 429 TOOMANYREQUESTS (Retry-After: 60). A cached tag past
    revalidate_after is served stale with its blobs, repeatedly, costing one upstream manifest
    request (the HEAD that got the first 429: the upstream is down after it); a cold tag gets 429 TOOMANYREQUESTS with a Retry-After; the upstream
    itself sees nothing."""
    img = push(make_image(960), up, REPO, "v1")
    push(make_image(961), up, REPO, "cold")
    m = mirror_factory(proxied(switch), revalidate_after="1s")
    pull_tag(m, img)
    for d in img.blob_digests:
        assert get(m, f"/v2/{REPO}/blobs/{d}", accept=False)[2] == img.blobs[d]
    time.sleep(1.5)
    switch.set_mode("429")
    mark, pmark = up.mark(), len(switch.requests())
    for i in range(4):
        pull_tag(m, img)
        assert last_outcome(m) == "stale", f"pull {i + 1}"
        for d in img.blob_digests:
            s, _, body = get(m, f"/v2/{REPO}/blobs/{d}", accept=False)
            assert s == 200 and body == img.blobs[d]
        time.sleep(0.6)
    s, h, body = get(m, f"/v2/{REPO}/manifests/cold")
    assert_error(s, body, 429, "TOOMANYREQUESTS")
    assert h.get("retry-after", "").isdigit() and int(h["retry-after"]) > 0, h
    # the proxy notes a request it answers itself after the answer: let its log settle
    seen = [(meth, p.split("?", 1)[0]) for meth, p, _ in
            wait_settled(switch.requests, quiet=0.5)[pmark:]]
    assert [x for x in seen if x[1] == TAG_PATH] == [("HEAD", TAG_PATH)], seen
    assert not [x for x in seen if "/blobs/" in x[1]], seen
    # the 429's Retry-After has not passed: the cold tag is refused without asking again
    assert not [x for x in seen if x[1].endswith("/manifests/cold")], seen
    assert since(up, mark) == []


# -- 7. many clients at once ---------------------------------------------------------------------
def test_concurrent_pulls_of_an_expired_tag_cost_one_head(up, mirror_factory, make_image, push):
    """20 clients at once pull a tag past revalidate_after (3 s): all get the manifest, and the
    upstream sees exactly one HEAD and no GET (those that came after the HEAD answered find
    the tag freshly validated). Twice, for the index row written by the first round."""
    img = push(make_image(970), up, REPO, "v1")
    m = mirror_factory([up], revalidate_after="3s")
    pull_tag(m, img)
    for rnd in range(2):
        time.sleep(3.3)
        mark, t0 = up.mark(), wall_ms()
        barrier = threading.Barrier(20)

        def one(_):
            barrier.wait(10)
            return get(m, TAG_PATH)

        with concurrent.futures.ThreadPoolExecutor(20) as ex:
            results = list(ex.map(one, range(20)))
        for s, h, body in results:
            assert s == 200 and body == img.raw and h["docker-content-digest"] == img.digest
        got = manifest_calls(upstream_calls(up, mark))
        assert got == [("HEAD", "v1", 200)], f"round {rnd + 1}: {got}"
        assert_index(m, img, t0, f"round {rnd + 1}")


# -- 8. what stats says ------------------------------------------------------------------------
def upstream_states(m):
    r = regcache("stats", "-c", m.config_path, "--json")
    assert r.returncode == 0, r.stderr
    return {u["name"]: u for u in json.loads(r.stdout).get("upstreams", [])}


def test_stats_shows_the_upstream_down_then_up(up, switch, mirror_factory, make_image, push):
    """A cached tag revalidated against a refusing upstream marks it down (stats: state down,
    a reason, since when); once the upstream answers again the probe marks it up."""
    img = push(make_image(980), up, REPO, "v1")
    m = mirror_factory(proxied(switch), revalidate_after="1s")
    pull_tag(m, img)
    time.sleep(1.3)
    switch.set_mode("refuse")
    pull_tag(m, img)
    assert last_outcome(m) == "stale"
    st = wait_until(lambda: upstream_states(m).get("docker.io", {}).get("state") == "down"
                    and upstream_states(m)["docker.io"], timeout=10, what="stats: down")
    assert st["reason"] and st["since"], st
    switch.set_mode("pass")
    wait_until(lambda: upstream_states(m).get("docker.io", {}).get("state") == "up",
               timeout=15, what="stats: up again")
    assert "upstream docker.io: up again after" in m.log_text()
