# SPDX-License-Identifier: Apache-2.0
"""Replicas in a cluster (the `cluster` section) in front of Debian's docker-registry with
token auth: a miss is asked of its owner among the members, so the upstream's access log shows
one GET per blob and manifest however the clients are spread; members' requests are
authenticated (the peer endpoint is no open proxy) and never forwarded again; an owner that
dies mid-fill costs at most one more GET; replicas that disagree on the members neither loop
nor crash. Marked `once`: it runs several regcache processes."""

import hashlib
import json
import os
import threading
import time

import pytest

import procs
from helpers import blob_gets, since
from mirror import Mirror, request
from slowproxy import SlowProxy

pytestmark = [pytest.mark.once]

SECRET = "a cluster secret of the tests"
ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


def cluster_extra(ports, self_port, secret=SECRET, members=None):
    urls = [f"http://127.0.0.1:{p}" for p in (members or ports)]
    return {"cluster": {"members": urls, "self": f"http://127.0.0.1:{self_port}",
                        "secret": secret, "probe_interval": "300ms"},
            "metrics": {"allow": ["127.0.0.1/32"]}}


def start_cluster(tmp_dir, upstream_url, n=3, members=None, name="r", extra=None):
    """n replicas listing each other; extra: more config sections for every one."""
    ports = [procs.free_port() for _ in range(n)]
    reps = []
    for i, p in enumerate(ports):
        cfg = cluster_extra(ports, p, members=members and members[i])
        cfg.update(extra or {})
        m = Mirror(os.path.join(tmp_dir, f"{name}{i}"), [{"name": "docker.io", "url": upstream_url}],
                   port=p, extra=cfg)
        reps.append(m)
    for m in reps:
        m.start()
    for m in reps:  # every member answers: each has probed the others at least once
        procs.wait_for(lambda m=m: procs.http_status(m.port, "/readyz") == 200, 20, "ready")
    time.sleep(1.0)
    return reps


def stop_all(reps):
    bad = []
    for m in reps:
        if m.proc is not None:
            st = m.stop(timeout=15)
            if st != 0:
                bad.append((m.port, st))
    return bad


def fetch_image(port, repo, tag):
    """A pull as a client does it: the manifest by tag, then every blob; checks each digest."""
    st, h, body, _ = request(port, "GET", f"/v2/{repo}/manifests/{tag}", {"Accept": ACCEPT})
    assert st == 200, (st, body[:300])
    man = json.loads(body)
    digests = [man["config"]["digest"]] + [layer["digest"] for layer in man["layers"]]
    for d in digests:
        st, _, data, _ = request(port, "GET", f"/v2/{repo}/blobs/{d}", timeout=120)
        assert st == 200, (st, data[:300])
        assert "sha256:" + hashlib.sha256(data).hexdigest() == d
    return digests


def series(m, name):
    """{labels: value} of a series in the mirror's /metrics."""
    st, _, body, _ = request(m.port, "GET", "/metrics")
    assert st == 200
    out = {}
    for line in body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, value = line.rsplit(" ", 1)
            out[key[len(name):]] = float(value)
    return out


def crowd(reps, repo, tag, clients=60):
    """clients pulls of repo:tag started together, spread over the replicas; all must succeed."""
    errors = []
    barrier = threading.Barrier(clients)

    def client(i):
        try:
            barrier.wait()
            fetch_image(reps[i % len(reps)].port, repo, tag)
        except Exception as e:  # noqa: BLE001 - asserted below
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:5]


def manifest_gets(reqs):
    return [p for m, p, s in reqs if m == "GET" and "/manifests/" in p and s == 200]


def test_sixty_clients_over_three_replicas_cost_one_get_per_blob_and_manifest(
        tmp_dir, up, make_image, push):
    img = push(make_image(1401, (2 << 20, 700 * 1024, 90 * 1024), fmt="docker"), up,
               "library/crowd", "v1")
    reps = start_cluster(tmp_dir, up.url)
    try:
        mark = up.mark()
        crowd(reps, "library/crowd", "v1")
        reqs = since(up, mark)
        gets = blob_gets(reqs)
        assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}, gets
        assert manifest_gets(reqs) == ["/v2/library/crowd/manifests/v1"], manifest_gets(reqs)
        # every replica has the blobs in its own store now
        for m in reps:
            for d in img.blob_digests:
                with open(m.file_for(d), "rb") as f:
                    assert hashlib.sha256(f.read()).hexdigest() == d[7:]
        # the members asked each other, and saw each other up
        asked = served = 0
        for m in reps:
            assert series(m, "regcache_cluster_members") == {'{state="up"}': 3,
                                                             '{state="down"}': 0}
            a = series(m, "regcache_cluster_asked_total")
            asked += a['{kind="blob",result="answered"}'] + a['{kind="manifest",result="answered"}']
            assert a['{kind="blob",result="failed"}'] == 0
            served += series(m, "regcache_cluster_peer_requests_total")['{result="served"}']
        assert asked > 0 and served >= asked
    finally:
        assert stop_all(reps) == []


def test_the_peer_endpoint_is_not_an_open_proxy(tmp_dir, up, make_image, push):
    img = push(make_image(1402, (50 * 1024,), fmt="docker"), up, "library/closed", "v1")
    reps = start_cluster(tmp_dir, up.url, n=2)
    try:
        layer = img.blob_digests[-1]
        path = f"/v2/library/closed/blobs/{layer}?ns=docker.io"
        now = int(time.time())
        sender = f"http://127.0.0.1:{reps[1].port}"
        import hmac
        def sign(secret, target, t=now, who=sender, method="GET"):
            mac = hmac.new(secret.encode(), f"v1\n{method}\n{target}\n{t}\n{who}".encode(),
                           hashlib.sha256).hexdigest()
            return f"v1 {who} {t} {mac}"
        mark = up.mark()
        for value in ("v1 garbage", sign("not the cluster secret", path),
                      sign(SECRET, path, t=now - 3600),
                      sign(SECRET, path, who="http://127.0.0.1:1"),
                      sign(SECRET, path.replace("closed", "other"))):
            st, _, body, _ = request(reps[0].port, "GET", path, {"X-Regcache-Peer": value})
            assert st == 403, (value, st)
            assert b"DENIED" in body
        # nothing was asked upstream for the refused requests
        assert blob_gets(since(up, mark))[layer] == 0
        assert "refused a peer request" in reps[0].log_text()
        assert series(reps[0], "regcache_cluster_peer_requests_total")['{result="refused"}'] == 5
        # a correctly signed request is served (a member's)
        st, _, data, _ = request(reps[0].port, "GET", path, {"X-Regcache-Peer": sign(SECRET, path)})
        assert st == 200 and hashlib.sha256(data).hexdigest() == layer[7:]
        # a member may not push
        st, _, _, _ = request(reps[0].port, "POST", "/v2/library/closed/blobs/uploads/",
                              {"X-Regcache-Peer": sign(SECRET, "/v2/library/closed/blobs/uploads/",
                                                       method="POST")})
        assert st in (403, 405)
    finally:
        assert stop_all(reps) == []


def hrw_order(ports, key):
    """The members' order for key, as members.c ranks them."""
    def weight(url):
        return int.from_bytes(hashlib.sha256(f"{url}\n{key}".encode()).digest()[:8], "big")
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    return sorted(range(len(ports)), key=lambda i: (-weight(urls[i]), urls[i]))


def kill_the_owner_mid_fill(reps, up, repo, layer):
    """Four clients on the two replicas that do not own layer fetch it; at a quarter of it at
    every client, the owner is SIGKILLed. Every client must still get the whole blob. Returns
    the owner, the other two and the upstream's blob GETs since the fetches began."""
    order = hrw_order([m.port for m in reps], layer)
    owner, others = reps[order[0]], [reps[i] for i in order[1:]]
    st = request(others[0].port, "GET", f"/v2/{repo}/manifests/v1", {"Accept": ACCEPT})[0]
    assert st == 200
    mark = up.mark()
    got = {}
    errors = []

    def client(m, i):
        try:
            c = m.conn(timeout=120)
            c.request("GET", f"/v2/{repo}/blobs/{layer}")
            r = c.getresponse()
            assert r.status == 200, r.status
            h = hashlib.sha256()
            got[i] = 0
            while chunk := r.read(1 << 16):
                h.update(chunk)
                got[i] += len(chunk)
            assert "sha256:" + h.hexdigest() == layer, "wrong bytes"
        except Exception as e:  # noqa: BLE001 - asserted below
            errors.append(f"client {i} on :{m.port}: {e!r}")

    threads = [threading.Thread(target=client, args=(m, i)) for i, m in enumerate(others * 2)]
    for t in threads:
        t.start()
    procs.wait_for(lambda: got and min(got.values()) >= 16 << 20, 60,
                   "a quarter of the blob at every client")
    owner.proc.kill()
    owner.proc.wait(10)
    owner.proc = None
    for t in threads:
        t.join(180)
    assert not errors, errors
    size = os.path.getsize(up.blob_path(layer))
    assert got == {i: size for i in range(len(threads))}
    for m in others:
        with open(m.file_for(layer), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == layer[7:]
        assert "cut the transfer" in m.log_text()
    return owner, others, blob_gets(since(up, mark))


def test_sigkill_of_the_owner_mid_fill_costs_at_most_one_more_get(tmp_dir, up, make_image,
                                                                   push):
    img = push(make_image(1403, (64 << 20,), fmt="docker"), up, "library/big", "v1")
    layer = img.blob_digests[-1]
    slow = SlowProxy(up.port, rate=8 << 20)
    reps = start_cluster(tmp_dir, slow.url)
    try:
        _, _, gets = kill_the_owner_mid_fill(reps, up, "library/big", layer)
        assert 1 <= gets[layer] <= 2, gets
    finally:
        bad = stop_all(reps)
        slow.close()
        assert bad == []


def test_replicas_that_disagree_on_the_members_neither_loop_nor_crash(tmp_dir, up, make_image,
                                                                      push):
    """A lists A and B, B lists A, B and C (C not running): each may think the other owns a
    blob; a member's request is answered directly, so at most 2 GETs per blob."""
    img = push(make_image(1404, (900 * 1024, 300 * 1024, 40 * 1024), fmt="docker"), up,
               "library/skew", "v1")
    ports = [procs.free_port() for _ in range(3)]
    a = Mirror(os.path.join(tmp_dir, "skew-a"), [{"name": "docker.io", "url": up.url}],
               port=ports[0], extra=cluster_extra(ports[:2], ports[0]))
    b = Mirror(os.path.join(tmp_dir, "skew-b"), [{"name": "docker.io", "url": up.url}],
               port=ports[1], extra=cluster_extra(ports, ports[1]))
    reps = [a.start(), b.start()]
    try:
        time.sleep(1.0)
        mark = up.mark()
        errors = []

        def client(m, i):
            try:
                fetch_image(m.port, "library/skew", "v1")
            except Exception as e:  # noqa: BLE001 - asserted below
                errors.append(f"client {i}: {e!r}")

        threads = [threading.Thread(target=client, args=(reps[i % 2], i)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:5]
        gets = blob_gets(since(up, mark))
        assert all(1 <= gets[d] <= 2 for d in img.blob_digests), gets
        # nothing went around: a member asks another at most once per blob and manifest
        keys = len(img.blob_digests) + 1
        for m in reps:
            asked = [e for e in m.entries() if "ns=docker.io" in e.path]
            assert len(asked) <= keys, asked
    finally:
        assert stop_all(reps) == []


def test_a_bad_cluster_section_is_refused_with_file_line_and_key(tmp_dir):
    from helpers import assert_config_refused
    base = "cluster:\n  members: [http://a:5000, http://b:5000]\n"
    assert_config_refused(tmp_dir, base + "  self: http://c:5000\n  secret: " + "x" * 20 + "\n",
                          "bad.yml:", "cluster.members", "not among the members")
    assert_config_refused(tmp_dir, base + "  self: http://a:5000\n  secret: short\n",
                          "bad.yml:4", "cluster.secret", "at least 16 bytes")
    assert_config_refused(tmp_dir, base + "  secret: " + "x" * 20 + "\n",
                          "bad.yml:2", "cluster", "self is missing")
    assert_config_refused(tmp_dir, "cluster:\n  members: [ftp://a]\n",
                          "bad.yml:2", "cluster.members", "not http(s)://host[:port]")
    assert_config_refused(tmp_dir, base + "  self: http://a:5000\n  secret: " + "x" * 20 +
                          "\n  probe_interval: 5ms\n", "bad.yml:5", "cluster.probe_interval")
    assert_config_refused(tmp_dir, base + "  selff: http://a:5000\n", "bad.yml:3",
                          "cluster.selff", "unknown key")
    assert_config_refused(tmp_dir, "cluster:\n  members: [http://a:5000, http://A:5000/]\n"
                          "  self: http://a:5000\n  secret: " + "x" * 20 + "\n",
                          "cluster.members", "listed twice")


class FakeMember:
    """A member that is not regcache: `hang` accepts connections and never answers; `lie`
    answers every GET and HEAD 200 with the same bytes (none of them a blob's)."""

    def __init__(self, mode):
        import socket
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.asked = []
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                self.asked.append(line.decode().split(" ")[:2])
                if self.mode == "hang":
                    continue
                body = b"not the blob you are looking for\n" * 1000
                method = line.split(b" ")[0]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) +
                          (body if method == b"GET" else b""))
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def owned_by(ports, index, digests):
    return [d for d in digests if hrw_order(ports, d)[0] == index]


def test_a_member_that_hangs_costs_a_bounded_wait_then_nothing(tmp_dir, up, make_image, push):
    img = push(make_image(1405, (200 * 1024, 150 * 1024, 100 * 1024, 50 * 1024), fmt="docker"),
               up, "library/hung", "v1")
    fake = FakeMember("hang")
    port = procs.free_port()
    while not owned_by([port, fake.port], 1, img.blob_digests):
        port = procs.free_port()
    ports = [port, fake.port]
    extra = cluster_extra(ports, port)
    extra["timeouts"] = {"first_byte": "2s"}
    m = Mirror(os.path.join(tmp_dir, "hang"), [{"name": "docker.io", "url": up.url}],
               port=port, extra=extra).start()
    try:
        hung = owned_by(ports, 1, img.blob_digests)
        assert hung, "some blob is the fake member's by HRW"
        mark = up.mark()
        t0 = time.monotonic()
        fetch_image(m.port, "library/hung", "v1")
        assert time.monotonic() - t0 < 30  # each wait bounded by timeouts.first_byte
        asked_before = len(fake.asked)
        assert any("/v2/library/" in a[1] for a in fake.asked), fake.asked  # asked, and hung
        gets = blob_gets(since(up, mark))
        assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}
        # the probes found it down: later misses do not ask it at all
        procs.wait_for(lambda: series(m, "regcache_cluster_members").get('{state="down"}') == 1,
                       20, "the hanging member down")
        img2 = push(make_image(1406, (120 * 1024, 60 * 1024, 30 * 1024), fmt="docker"), up,
                    "library/hung2", "v1")
        asked_before = len(fake.asked)
        assert owned_by(ports, 1, img2.blob_digests)
        fetch_image(m.port, "library/hung2", "v1")
        assert [a for a in fake.asked[asked_before:] if "/v2/library/" in a[1]] == []
    finally:
        st = m.stop()
        fake.close()
        assert st == 0


def test_a_member_that_lies_is_refused_and_the_upstream_asked(tmp_dir, up, make_image, push):
    img = push(make_image(1407, (300 * 1024, 90 * 1024, 40 * 1024, 20 * 1024), fmt="docker"),
               up, "library/liar", "v1")
    fake = FakeMember("lie")
    port = procs.free_port()
    while not owned_by([port, fake.port], 1, img.blob_digests):
        port = procs.free_port()
    ports = [port, fake.port]
    m = Mirror(os.path.join(tmp_dir, "lie"), [{"name": "docker.io", "url": up.url}],
               port=port, extra=cluster_extra(ports, port)).start()
    try:
        lied = owned_by(ports, 1, img.blob_digests)
        assert lied, "some blob is the fake member's by HRW"
        # the manifest too may be the fake's: asked of it, refused (not a manifest), then asked
        # of the upstream; each blob the same way (a client may see a body cut, and retries)
        st, _, body, _ = request(m.port, "GET", "/v2/library/liar/manifests/v1", {"Accept": ACCEPT})
        if st != 200:
            st, _, body, _ = request(m.port, "GET", "/v2/library/liar/manifests/v1",
                                     {"Accept": ACCEPT})
        assert st == 200
        for d in img.blob_digests:
            for attempt in range(2):
                try:
                    st, _, data, _ = request(m.port, "GET", f"/v2/library/liar/blobs/{d}")
                except Exception:  # noqa: BLE001 - a body cut short: the retry below
                    continue
                if st == 200 and hashlib.sha256(data).hexdigest() == d[7:]:
                    break
            else:
                raise AssertionError(f"{d} never served right")
        for d in img.blob_digests:
            with open(m.file_for(d), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == d[7:]
        assert "sent sha256:" in m.log_text()
        assert series(m, "regcache_cluster_asked_total")['{kind="blob",result="failed"}'] >= len(lied)
    finally:
        st = m.stop()
        fake.close()
        assert st == 0
