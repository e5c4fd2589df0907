# SPDX-License-Identifier: Apache-2.0
"""Several event loops (workers: N): each accepts connections and answers the hits the first
loop taught it; everything else is handed to the first loop. What a long run costs the upstream
stays what it is with one loop, hits count once in the metrics and the index wherever they were
served, and nothing a worker kept outlives a purge, a moved tag or the upstream's word.

Each test opens many keep-alive connections at once, so that every loop accepts some (the
per-loop response counts in /metrics show it), then asserts what the clients got, what the
upstream saw and what the mirror recorded."""

import http.client
import json
import threading
import time

import pytest

from helpers import blob_gets, since, wait_until
from mirror import regcache, request
from ocipush import push_image
from test_auth import ALICE, BOB, basic, make_users
from test_metrics import scrape

CONNS = 16
ACCEPT = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.oci.image.index.v1+json"])


def open_conns(m, n=CONNS):
    return [http.client.HTTPConnection("127.0.0.1", m.port, timeout=30) for _ in range(n)]


def ask(conn, path, method="GET"):
    conn.request(method, path, headers={"Accept": ACCEPT})
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def on_every_conn(conns, fn):
    """Runs fn(i, conn) on every connection at once (each on its own thread); returns the
    errors."""
    errors = []

    def run(i, c):
        try:
            fn(i, c)
        except Exception as e:  # noqa: BLE001 - collected and asserted by the caller
            errors.append(f"connection {i}: {e!r}")

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def per_loop(m):
    """{loop: responses finished} from the mirror's /metrics."""
    s = scrape(m.port)
    return {int(dict(ls)["loop"]): v for (name, ls), v in s.samples.items()
            if name == "regcache_loop_responses_total"}


def hits_total(m):
    s = scrape(m.port)
    return (s.get("registry_proxy_hits_total", type="blob"),
            s.get("registry_proxy_hits_total", type="manifest"))


@pytest.fixture
def two_loops(mirror_factory, up):
    return mirror_factory([up], revalidate_after="1h",
                          extra={"workers": 2, "metrics": {"allow": ["127.0.0.1/32"]}})


def test_hits_on_every_loop_cost_the_upstream_nothing_and_count_once(two_loops, up, make_image,
                                                                    push):
    """A cold pull, then 16 connections x 20 rounds of the tag, the manifest by digest and each
    blob (GET and HEAD): the upstream sees nothing after the cold pull, both loops answered
    hits, and the hits in /metrics and in the index's count are exactly the requests made."""
    m = two_loops
    img = push(make_image(901, (64 * 1024, 300 * 1024, 4 * 1024)), up, "library/wk", "v1")
    conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=30)
    s, _, body = ask(conn, "/v2/library/wk/manifests/v1")
    assert s == 200 and body == img.raw
    for d in img.blob_digests:
        s, _, body = ask(conn, f"/v2/library/wk/blobs/{d}")
        assert s == 200 and body == img.blobs[d], d
    conn.close()
    wait_until(lambda: json.loads(regcache("stats", "-c", m.config_path, "--json").stdout)
               ["misses"] >= 1, what="the cold pull's misses in the index")
    mark = up.mark()
    blob0, man0 = hits_total(m)
    loops0 = per_loop(m)
    rounds = 20

    def hit(i, c):
        for _ in range(rounds):
            s, h, body = ask(c, "/v2/library/wk/manifests/v1")
            assert s == 200 and body == img.raw and h["docker-content-digest"] == img.digest
            s, _, body = ask(c, f"/v2/library/wk/manifests/{img.digest}")
            assert s == 200 and body == img.raw
            s, h, _ = ask(c, f"/v2/library/wk/manifests/{img.digest}", "HEAD")
            assert s == 200 and int(h["content-length"]) == len(img.raw)
            for d in img.blob_digests:
                s, _, body = ask(c, f"/v2/library/wk/blobs/{d}")
                assert s == 200 and body == img.blobs[d], (d, s)
                s, h, _ = ask(c, f"/v2/library/wk/blobs/{d}", "HEAD")
                assert s == 200 and int(h["content-length"]) == len(img.blobs[d])
            # a range, from whichever loop holds the connection
            d = img.layer_digests[1]
            c.request("GET", f"/v2/library/wk/blobs/{d}", headers={"Range": "bytes=100-199"})
            r = c.getresponse()
            assert r.status == 206 and r.read() == img.blobs[d][100:200]

    conns = open_conns(m)
    assert not on_every_conn(conns, hit)
    for c in conns:
        c.close()

    assert since(up, mark) == [], "hits went upstream"
    loops = per_loop(m)
    assert set(loops) == {0, 1}, loops
    assert loops[1] - loops0.get(1, 0) > 0, f"the worker loop answered nothing: {loops}"
    n_blob = CONNS * rounds * (2 * len(img.blob_digests) + 1)
    n_man = CONNS * rounds * 3
    blob1, man1 = hits_total(m)
    assert (blob1 - blob0, man1 - man0) == (n_blob, n_man)
    # the index counts them too: the workers' visits reached the first loop
    want = json.loads(regcache("stats", "-c", m.config_path, "--json").stdout)["hits"]
    wait_until(lambda: json.loads(regcache("stats", "-c", m.config_path, "--json").stdout)
               ["hits"] >= n_blob + n_man, timeout=20, what=f"hits in the index ({want})")


def test_a_cold_storm_over_both_loops_costs_one_get_per_blob(mirror_factory, up, make_image,
                                                            push):
    """20 clients on connections of their own pull the same cold image at once (the tag, then
    every blob), while both loops accept them: each blob and the manifest cost one upstream GET."""
    m = mirror_factory([up], extra={"workers": 2, "metrics": {"allow": ["127.0.0.1/32"]}})
    img = push(make_image(902, (2 * 1024 * 1024, 512 * 1024, 8 * 1024)), up, "library/storm",
               "v1")
    mark = up.mark()
    barrier = threading.Barrier(20)

    def pull(i, c):
        barrier.wait()
        s, _, body = ask(c, "/v2/library/storm/manifests/v1")
        assert s == 200 and body == img.raw
        for d in reversed(img.blob_digests) if i % 2 else img.blob_digests:
            s, _, body = ask(c, f"/v2/library/storm/blobs/{d}")
            assert s == 200 and body == img.blobs[d], (d, s)

    conns = open_conns(m, 20)
    assert not on_every_conn(conns, pull)
    for c in conns:
        c.close()
    reqs = since(up, mark)
    gets = blob_gets(reqs)
    assert {d: gets.get(d, 0) for d in img.blob_digests} == {d: 1 for d in img.blob_digests}
    manifest_gets = [p for meth, p, s in reqs if meth == "GET" and "/manifests/" in p and s == 200]
    assert manifest_gets == ["/v2/library/storm/manifests/v1"], manifest_gets
    assert per_loop(m).get(1, 0) > 0 or per_loop(m).get(0, 0) >= 20 * 4


def test_a_purge_reaches_what_workers_kept(two_loops, up, make_image, push):
    """Blobs and the manifest hit on every connection (so that both loops were taught them),
    then the tag is purged and the upstream stopped: no connection gets the purged bytes from
    any loop any more; every request is answered as for content the mirror does not have."""
    m = two_loops
    img = push(make_image(903, (32 * 1024, 16 * 1024)), up, "library/gone", "v1")
    conns = open_conns(m)

    def warm(i, c):
        for _ in range(3):
            s, _, body = ask(c, "/v2/library/gone/manifests/v1")
            assert s == 200 and body == img.raw
            for d in img.blob_digests:
                s, _, body = ask(c, f"/v2/library/gone/blobs/{d}")
                assert s == 200 and body == img.blobs[d]

    assert not on_every_conn(conns, warm)
    assert per_loop(m).get(1, 0) > 0
    r = regcache("purge", "docker.io/library/gone:v1", "-c", m.config_path, timeout=60)
    assert r.returncode == 0, r.stderr
    up.stop()

    def after(i, c):
        for path in ["/v2/library/gone/manifests/v1", f"/v2/library/gone/manifests/{img.digest}"]:
            s, _, body = ask(c, path)
            assert s != 200 and body != img.raw, (path, s)
        for d in img.blob_digests:
            s, _, body = ask(c, f"/v2/library/gone/blobs/{d}")
            assert s != 200 and body != img.blobs[d], (d, s)

    # the purge is applied by the daemon within its watch interval
    deadline = time.monotonic() + 20
    while True:
        errors = on_every_conn(conns, after)
        if not errors or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not errors, errors
    for c in conns:
        c.close()


def test_a_moved_tag_reaches_every_loop_within_one_revalidation(mirror_factory, up, make_image,
                                                                push):
    """With revalidate_after 2s, 16 connections ask for the tag 10 times a second. The tag
    costs at most one upstream HEAD per 2 s in all (not per loop or connection); once it moves
    upstream, every connection gets the new digest within one revalidation, and none goes back
    to the old one."""
    m = mirror_factory([up], revalidate_after="2s",
                       extra={"workers": 2, "metrics": {"allow": ["127.0.0.1/32"]}})
    v1 = push(make_image(904, (8 * 1024,)), up, "library/moving", "v1")
    conns = open_conns(m)
    mark = up.mark()
    start = time.monotonic()
    moved_at = []
    seen = {}

    def poll(i, c):
        last = None
        while time.monotonic() - start < 9:
            s, h, body = ask(c, "/v2/library/moving/manifests/v1")
            assert s == 200, s
            d = h["docker-content-digest"]
            if last and last != v1.digest and d == v1.digest:
                raise AssertionError("went back to the old digest")
            if d != v1.digest and i not in seen:
                seen[i] = time.monotonic()
            last = d
            time.sleep(0.1)

    def mover():
        time.sleep(4)
        v2 = push(make_image(905, (8 * 1024,)), up, "library/moving", "v1")
        moved_at.append((time.monotonic(), v2.digest))

    t = threading.Thread(target=mover)
    t.start()
    errors = on_every_conn(conns, poll)
    t.join(60)
    assert not errors, errors
    for c in conns:
        c.close()
    when, _ = moved_at[0]
    assert len(seen) == CONNS, seen
    assert max(seen.values()) - when < 2 + 1.5, (max(seen.values()) - when)
    calls = [(meth, p, s) for meth, p, s in since(up, mark) if "/manifests/v1" in p]
    heads = [c for c in calls if c[0] == "HEAD" and c[2] == 200]
    # 9 s at one HEAD per 2 s, plus the push's own requests
    assert len(heads) <= 6, calls
    assert per_loop(m).get(1, 0) > 0


def test_hosted_hits_on_every_loop_follow_each_push_and_delete(mirror_factory, up, tmp_dir):
    """A hosted image hit on 16 connections (both loops answer), then pushed again under the same
    tag: every connection gets the new manifest at once; then the tag is deleted: every one gets
    404, from whichever loop holds it. Nothing goes upstream."""
    m = mirror_factory([up], extra={
        "workers": 2, "metrics": {"allow": ["127.0.0.1/32"]},
        "auth": {"htpasswd": make_users(tmp_dir, ALICE, BOB), "push_users": ["alice"]},
        "hosted": ["team/*"]})
    auth = basic(*ALICE)
    raw1, doc1 = push_image(m, "team/app", "v1", auth, seed=1)
    mark = up.mark()
    conns = open_conns(m)
    layer = doc1["layers"][0]["digest"]

    def hits(want_raw):
        def run(i, c):
            for _ in range(10):
                s, _, body = ask(c, "/v2/team/app/manifests/v1")
                assert s == 200 and body == want_raw, s
                s, _, body = ask(c, f"/v2/team/app/blobs/{layer}")
                assert s == 200 and len(body) == 2048, s
        return run

    before = per_loop(m).get(1, 0)
    assert not on_every_conn(conns, hits(raw1))
    assert per_loop(m).get(1, 0) > before, "the worker loop answered no hosted hit"

    raw2, _ = push_image(m, "team/app", "v1", auth, seed=2)
    assert raw2 != raw1

    def moved(i, c):
        for _ in range(3):
            s, _, body = ask(c, "/v2/team/app/manifests/v1")
            assert s == 200 and body == raw2, "a loop answered the tag's old manifest"

    assert not on_every_conn(conns, moved)
    s, _, _, _ = request(m.port, "DELETE", "/v2/team/app/manifests/v1", auth)
    assert s == 202, s

    def deleted(i, c):
        s, _, body = ask(c, "/v2/team/app/manifests/v1")
        assert s == 404, (s, body[:100])

    assert not on_every_conn(conns, deleted)
    for c in conns:
        c.close()
    assert since(up, mark) == []


def conns_per_loop(m):
    """{loop: connections open on it} from /metrics (the scrape's own connection among them)."""
    s = scrape(m.port)
    return {int(dict(ls)["loop"]): v for (name, ls), v in s.samples.items()
            if name == "regcache_loop_connections"}


def test_a_crowd_of_connections_is_spread_evenly_over_the_loops(mirror_factory, up):
    """60 connections opened at once, before any loop accepted one (a load generator, a CI
    farm's daemons after a restart): each loop is given 15, whichever woke first, since a
    connection stays on its loop and a loop left with more serves each of them slower for as
    long as they last. Half of them hang up, some with a reset: every loop gives their slots
    back, and the next crowd fills the loops with the fewest first."""
    import socket
    import struct
    m = mirror_factory([up], extra={"workers": 4, "metrics": {"allow": ["127.0.0.1/32"]}})
    conns = [socket.create_connection(("127.0.0.1", m.port), timeout=10) for _ in range(60)]
    for c in conns:  # each answered: accepted and placed
        c.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    for c in conns:
        assert c.recv(4096).startswith(b"HTTP/1.1 200"), "a connection was not answered"
    placed = conns_per_loop(m)
    assert sorted(placed) == [0, 1, 2, 3], placed
    assert sum(placed.values()) == 61, placed  # with the scrape's
    assert max(placed.values()) - min(placed.values()) <= 1, placed

    for i, c in enumerate(conns[:30]):
        if i % 2:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    wait_until(lambda: sum(conns_per_loop(m).values()) == 31, 10, what="the closed ones' slots")
    left = conns_per_loop(m)
    more = [socket.create_connection(("127.0.0.1", m.port), timeout=10) for _ in range(30)]
    for c in more:
        c.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.recv(4096).startswith(b"HTTP/1.1 200")
    placed = conns_per_loop(m)
    assert sum(placed.values()) == 61, (left, placed)
    assert max(placed.values()) - min(placed.values()) <= 1, (left, placed)
    for c in conns[30:] + more:
        c.close()
    wait_until(lambda: sum(conns_per_loop(m).values()) == 1, 10, what="every slot given back")
    assert scrape(m.port).get("regcache_connections_open") == 1


def test_clients_that_hang_up_while_their_request_changes_loops(two_loops):
    """400 clients send a request the first loop answers (so that a worker hands it over) and
    hang up at once, some with a reset: the mirror stays up and serves the next client."""
    import socket
    import struct
    m = two_loops
    for i in range(400):
        s = socket.create_connection(("127.0.0.1", m.port), timeout=5)
        path = ["/v2/", "/readyz", "/v2/library/x/tags/list", "/metrics"][i % 4]
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    assert m.proc.alive()
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
    s, _, _ = ask(c, "/v2/")
    assert s == 200
    c.close()


def ask_as(conn, path, auth, method="GET"):
    conn.request(method, path, headers={"Accept": ACCEPT, **auth})
    resp = conn.getresponse()
    return resp.status, resp.read()


def pull_all(img, repo, auth, rounds, want):
    """fn(i, conn) for on_every_conn: rounds of the tag, the manifest by digest and each blob
    as auth, each answered with status want (and the right bytes when 200)."""
    def run(i, c):
        for _ in range(rounds):
            for path, data in [(f"/v2/{repo}/manifests/v1", img.raw),
                               (f"/v2/{repo}/manifests/{img.digest}", img.raw),
                               *[(f"/v2/{repo}/blobs/{d}", img.blobs[d])
                                 for d in img.blob_digests]]:
                s, body = ask_as(c, path, auth)
                assert s == want, (path, s, body[:200])
                assert s != 200 or body == data, path
    return run


@pytest.mark.parametrize("scheme", ["token", "basic"])
def test_authenticated_pulls_are_answered_on_every_loop_for_their_caller_only(
        mirror_factory, up, make_image, push, tmp_dir, scheme):
    """auth with anonymous: none, and a rule that lets alice alone pull private/*. alice (a
    token, or Basic credentials) pulls on 16 connections: both loops answer her, and the
    upstream sees nothing after the cold pull. On the same warm keys, from connections of
    both loops, bob is denied (403), anonymous callers and forged or wrong credentials are
    refused (401), every time, bob even once his own pulls of library/open made him known on
    every loop. Once alice is removed from the users file, no loop answers her any more."""
    img = push(make_image(910, (64 * 1024, 4 * 1024)), up, "private/app", "v1")
    other = push(make_image(911, (8 * 1024,)), up, "library/open", "v1")
    users = make_users(tmp_dir, ALICE, BOB)
    m = mirror_factory([up], revalidate_after="1h", extra={
        "workers": 2, "metrics": {"allow": ["127.0.0.1/32"]},
        "auth": {"htpasswd": users, "realm": "Test Realm", "scheme": scheme,
                 "anonymous": "none"},
        "rules": {"list": [{"allow": "docker.io/private/*", "users": ["alice"]},
                           {"deny": "*/private/*"}]}})

    def credentials(who):
        if scheme == "basic":
            return basic(*who)
        s, _, body, _ = request(m.port, "GET", "/v2/token?scope=repository:private/app:pull",
                                basic(*who))
        assert s == 200, body
        return {"Authorization": "Bearer " + json.loads(body)["token"]}

    alice, bob = credentials(ALICE), credentials(BOB)
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=30)
    assert not on_every_conn([c], pull_all(img, "private/app", alice, 1, 200))
    assert not on_every_conn([c], pull_all(other, "library/open", bob, 1, 200))
    c.close()
    mark = up.mark()
    loops0 = per_loop(m)
    conns = open_conns(m)
    assert not on_every_conn(conns, pull_all(img, "private/app", alice, 10, 200))
    assert since(up, mark) == [], "alice's hits went upstream"
    loops = per_loop(m)
    assert loops[1] - loops0.get(1, 0) > 0, f"the worker loop answered nothing: {loops}"

    # bob pulls what he may, on every connection: both loops know him now
    assert not on_every_conn(conns, pull_all(other, "library/open", bob, 3, 200))
    # the same keys, warm on both loops, for callers who may not have them
    forged = ({"Authorization": "Bearer " + alice["Authorization"][7:-2] + "xx"}
              if scheme == "token" else basic("alice", "wrong"))
    for who, want in ((bob, 403), ({}, 401), (forged, 401)):
        assert not on_every_conn(conns, pull_all(img, "private/app", who, 2, want)), who
    # and alice still
    assert not on_every_conn(conns, pull_all(img, "private/app", alice, 1, 200))

    # alice leaves the users file: every loop refuses her within the reload
    with open(users) as f:
        kept = [line for line in f if not line.startswith("alice:")]
    with open(users, "w") as f:
        f.writelines(kept)
    wait_until(lambda: all(ask_as(c, "/v2/private/app/manifests/v1", alice)[0] == 401
                           for c in conns), timeout=15, what="alice refused on every connection")
    assert not on_every_conn(conns, pull_all(img, "private/app", alice, 2, 401))
    for c in conns:
        c.close()
    assert since(up, mark) == []


def test_a_token_stops_opening_pulls_on_every_loop_when_it_expires(mirror_factory, up,
                                                                   make_image, push, tmp_dir):
    """auth.scheme: token, anonymous: none. A token for alice that expires in 3 s (signed with
    the mirror's own key, as its endpoint would sign it) opens her pulls on both loops; once it
    has expired, every connection is refused (401), whichever loop holds it."""
    import base64
    import hashlib
    import hmac
    import os
    img = push(make_image(912, (16 * 1024,)), up, "library/exp", "v1")
    m = mirror_factory([up], revalidate_after="1h", extra={
        "workers": 2, "metrics": {"allow": ["127.0.0.1/32"]},
        "auth": {"htpasswd": make_users(tmp_dir, ALICE), "realm": "Test Realm",
                 "scheme": "token", "anonymous": "none"}})
    with open(os.path.join(m.storage, "token.key"), "rb") as f:
        key = f.read()

    def b64(data):
        return base64.urlsafe_b64encode(data).decode().rstrip("=")
    expires = int(time.time()) + 3
    payload = f"v1 {expires} alice".encode()
    token = b64(payload) + "." + b64(hmac.new(key, payload, hashlib.sha256).digest())
    auth = {"Authorization": "Bearer " + token}
    loops0 = per_loop(m)
    conns = open_conns(m)
    assert not on_every_conn(conns, pull_all(img, "library/exp", auth, 3, 200))
    assert time.time() < expires, "the pulls took longer than the token's life"
    assert per_loop(m)[1] - loops0.get(1, 0) > 0
    time.sleep(max(0.0, expires - time.time()) + 0.2)
    assert not on_every_conn(conns, pull_all(img, "library/exp", auth, 2, 401))
    for c in conns:
        c.close()


def test_a_child_mirrors_pulls_are_answered_on_every_loop_and_a_loop_on_none(
        mirror_factory, up, make_image, push):
    """Requests carrying Via (a child mirror pulling through this one): hits are answered on
    both loops and cost the upstream nothing; a Via that names this mirror (a loop of mirrors)
    or passes too many proxies is refused with 508 on every connection, the warm ones too."""
    m = mirror_factory([up], revalidate_after="1h",
                       extra={"workers": 2, "metrics": {"allow": ["127.0.0.1/32"]},
                              "instance_id": "parent-under-test"})
    img = push(make_image(913, (16 * 1024,)), up, "library/tier", "v1")
    child = {"Via": "1.1 child-mirror-a:5000"}
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=30)
    assert not on_every_conn([c], pull_all(img, "library/tier", child, 1, 200))
    c.close()
    mark = up.mark()
    loops0 = per_loop(m)
    conns = open_conns(m)
    assert not on_every_conn(conns, pull_all(img, "library/tier", child, 5, 200))
    assert per_loop(m)[1] - loops0.get(1, 0) > 0, "the worker loop answered nothing"
    assert since(up, mark) == []
    looped = {"Via": "1.1 child-mirror-a:5000, 1.1 parent-under-test"}
    hops = {"Via": ", ".join(f"1.1 hop{i}" for i in range(9))}
    for via in (looped, hops):
        assert not on_every_conn(conns, pull_all(img, "library/tier", via, 2, 508)), via
    for c in conns:
        c.close()


def test_a_sigterm_while_handed_requests_wait_on_a_hung_upstream(mirror_factory, up, make_image,
                                                                  push):
    """Every loop's connections ask for a tag whose revalidation is due while the upstream
    hangs (each request handed to the first loop, which asks upstream); SIGTERM comes, and only
    then does the upstream answer. The handed requests are still finished, though their own
    loops have nothing left to serve: every client gets its manifest (a hit: the same digest),
    the upstream saw HEADs and no GET, and the process exits 0 (under the sanitizers: with
    nothing leaked)."""
    from lateproxy import LateProxy
    from procs import http_status
    import signal
    img = push(make_image(81), up, "library/late", "v1")
    proxy = LateProxy(up.port, mode="pass")
    try:
        m = mirror_factory([{"name": "docker.io", "url": proxy.url}], revalidate_after="2s",
                           extra={"workers": 2, "metrics": {"allow": ["127.0.0.1/32"]},
                                  "cache": {"revalidate_timeout": "60s"},
                                  "timeouts": {"shutdown_grace": "60s"}})
        conns = open_conns(m, 8)
        path = "/v2/library/late/manifests/v1"

        def first(i, c):
            s, h, _ = ask(c, path)
            assert s == 200 and h["docker-content-digest"] == img.digest, (s, h)

        assert on_every_conn(conns, first) == []
        placed = conns_per_loop(m)
        assert placed.get(0, 0) >= 2 and placed.get(1, 0) >= 2, placed  # with the scrape's
        time.sleep(2.5)  # every loop's lesson of the tag is past revalidate_after
        proxy.set_mode("hang")
        mark = len(proxy.requests())
        results = {}

        def again(i, c):
            try:
                results[i] = ask(c, path)
            except Exception as e:  # noqa: BLE001 - asserted below
                results[i] = repr(e)

        threads = [threading.Thread(target=again, args=(i, c)) for i, c in enumerate(conns)]
        for t in threads:
            t.start()
        wait_until(lambda: proxy.held() >= 1, 20, what="a revalidation held by the upstream")
        time.sleep(0.5)  # the others' requests reach the first loop and wait on it
        m.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: http_status(m.port, "/readyz", timeout=1) == 503, 10,
                   what="the mirror to say it is not ready")
        time.sleep(1.0)  # the worker loop, with no connection of its own left, ends
        proxy.set_mode("pass")
        for t in threads:
            t.join(60)
        for i, r in results.items():
            assert not isinstance(r, str), (i, r)
            s, h, body = r
            assert s == 200 and h["docker-content-digest"] == img.digest and body == img.raw, \
                (i, s, h)
        assert len(results) == len(conns)
        asked = [(meth, p) for meth, p, _ in proxy.requests()[mark:] if "/manifests/" in p]
        assert asked and all(meth == "HEAD" for meth, _ in asked), asked
        for c in conns:
            c.close()
        assert m.proc.wait(60) == 0
        m.proc = None  # stopped: the fixture has nothing left to do
    finally:
        proxy.stop()
