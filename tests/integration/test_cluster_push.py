# SPDX-License-Identifier: Apache-2.0
"""Pushes to hosted repositories of a cluster through a load balancer that hands every request
to the next replica (HAProxy, balance roundrobin, no connection reuse): each replica relays a
repository's requests to the member that holds it, so the upload sessions, manifests and tags
meet on one replica. skopeo and a hand-made chunked push (PATCHes of 4 MiB, a 12 MiB layer)
succeed, and every replica then serves the same bytes; an unauthenticated push is refused as on
one node, and forged relays (a wrong secret, a member's signature without a user claim, a
claim the signature does not cover) store nothing; a holder killed mid-upload fails the
client's request, and a retried push goes to its successor. Marked `once`: several regcache
processes and HAProxy."""

import hashlib
import hmac
import http.client
import json
import os
import random
import signal
import socket
import time

import pytest

import procs
from helpers import assert_error
from mirror import request
from test_auth import ALICE, BOB, basic, make_users
from test_cluster import SECRET, hrw_order, series, start_cluster, stop_all
from test_hosted import skopeo_push

pytestmark = [pytest.mark.once]

REPO = "team/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CHUNK = 4 << 20


def hosted_extra(tmp_dir):
    return {"auth": {"htpasswd": make_users(tmp_dir, ALICE, BOB), "realm": "Hosted",
                     "push_users": ["alice"]},
            "hosted": ["team/*"]}


class Balancer:
    """HAProxy in front of the replicas: every request to the next one up (health-checked on
    /readyz), never over a connection another request used."""

    def __init__(self, tmp_dir, reps):
        self.port = procs.free_port()
        d = os.path.join(tmp_dir, "haproxy")
        os.makedirs(d, exist_ok=True)
        servers = "\n".join(f"  server r{i} 127.0.0.1:{m.port} check inter 300ms fall 1 rise 2"
                            for i, m in enumerate(reps))
        cfg = os.path.join(d, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
  maxconn 200
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  option http-server-close
  http-reuse never
  retries 2
  option redispatch
frontend registry
  bind 127.0.0.1:{self.port}
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /readyz
{servers}
""")
        self.proc = procs.Proc(["/usr/sbin/haproxy", "-db", "-f", cfg],
                               os.path.join(d, "out.log"))
        procs.wait_for(lambda: procs.http_status(self.port, "/healthz") == 200, 20, "haproxy",
                       proc=self.proc)

    def close(self):
        self.proc.stop()


@pytest.fixture
def cluster(tmp_dir, up):
    reps = start_cluster(tmp_dir, up.url, extra=hosted_extra(tmp_dir))
    lb = Balancer(tmp_dir, reps)
    yield reps, lb
    lb.close()
    assert stop_all(reps) == []


def holder_order(reps, repo=REPO):
    return [reps[i] for i in hrw_order([m.port for m in reps], f"hosted/{repo}")]


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Push:
    """The distribution API's upload by hand over one keep-alive connection (the balancer still
    hands each request to another replica): POST, PATCHes of CHUNK bytes with Content-Range,
    PUT with the digest, then the manifest."""

    def __init__(self, port, creds=ALICE):
        self.port = port
        self.auth = basic(*creds) if creds else {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers=dict(self.auth, **(headers or {})))
        r = self.conn.getresponse()
        data = r.read()
        if r.getheader("connection", "").lower() == "close":
            self.conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def blob(self, repo, data):
        s, h, b = self.call("POST", f"/v2/{repo}/blobs/uploads/")
        assert s == 202, (s, b)
        loc, uuids = h["location"], {h["docker-upload-uuid"]}
        assert loc.startswith(f"/v2/{repo}/blobs/uploads/"), loc
        for at in range(0, len(data), CHUNK):
            piece = data[at:at + CHUNK]
            s, h, b = self.call("PATCH", loc, piece, {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{at}-{at + len(piece) - 1}"})
            assert s == 202, (s, b)
            assert h["range"] == f"0-{at + len(piece) - 1}", h
            loc = h["location"]
            uuids.add(h["docker-upload-uuid"])
        assert len(uuids) == 1
        s, h, b = self.call("GET", loc)
        assert s == 204 and h["range"] == f"0-{len(data) - 1}", (s, h, b)
        sep = "&" if "?" in loc else "?"
        s, h, b = self.call("PUT", f"{loc}{sep}digest={sha(data)}")
        assert s == 201, (s, b)
        assert h["docker-content-digest"] == sha(data)
        assert h["location"] == f"/v2/{repo}/blobs/{sha(data)}"
        return sha(data)

    def image(self, repo, tag, layers):
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers",
                                        "diff_ids": [sha(x) for x in layers]}}).encode()
        descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                  "digest": self.blob(repo, x), "size": len(x)} for x in layers]
        cfg = {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": self.blob(repo, config), "size": len(config)}
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                          "layers": descs}, indent=2).encode()
        s, h, b = self.call("PUT", f"/v2/{repo}/manifests/{tag}", raw,
                            {"Content-Type": OCI_MANIFEST})
        assert s == 201, (s, b)
        assert h["docker-content-digest"] == sha(raw)
        return raw, [cfg["digest"]] + [d["digest"] for d in descs]


def pull(port, repo, tag):
    """(manifest bytes, its digest header, {digest: blob bytes}) straight from one replica,
    anonymously."""
    s, h, raw, _ = request(port, "GET", f"/v2/{repo}/manifests/{tag}", {"Accept": OCI_MANIFEST})
    assert s == 200, (port, s, raw[:300])
    man = json.loads(raw)
    blobs = {}
    for d in [man["config"]["digest"]] + [x["digest"] for x in man["layers"]]:
        s, _, data, _ = request(port, "GET", f"/v2/{repo}/blobs/{d}", timeout=120)
        assert s == 200 and sha(data) == d, (port, d, s)
        blobs[d] = data
        s, bh, _, _ = request(port, "HEAD", f"/v2/{repo}/blobs/{d}")
        assert s == 200 and int(bh["content-length"]) == len(data)
    return raw, h["docker-content-digest"], blobs


def upload_requests(m, repo):
    return [e for e in m.entries() if e.path.startswith(f"/v2/{repo}/blobs/uploads/")]


def test_a_push_spread_over_the_replicas_succeeds_and_every_replica_serves_it(cluster,
                                                                              make_image):
    reps, lb = cluster
    holder = holder_order(reps)[0]
    others = [m for m in reps if m is not holder]
    rnd = random.Random(1501)
    layers = [rnd.randbytes(12 << 20), rnd.randbytes(700 * 1024), rnd.randbytes(3000)]
    raw, digests = Push(lb.port).image(REPO, "v1", layers)
    # a real client, chunked PATCHes of unknown length included
    img = make_image(1502, (9 << 20, 200 * 1024), fmt="oci")
    skopeo_push(img, lb.port, f"{REPO}:skopeo")

    for m in reps:
        got_raw, got_digest, blobs = pull(m.port, REPO, "v1")
        assert got_raw == raw and got_digest == sha(raw)
        assert sorted(blobs) == sorted(digests)
        assert [blobs[d] for d in digests[1:]] == layers
        s, h, body, _ = request(m.port, "GET", f"/v2/{REPO}/manifests/skopeo",
                                {"Accept": img.media_type})
        assert s == 200 and body == img.raw and h["docker-content-digest"] == img.digest
        s, _, body, _ = request(m.port, "GET", f"/v2/{REPO}/tags/list")
        assert s == 200 and json.loads(body) == {"name": REPO, "tags": ["skopeo", "v1"]}
        # a range of the big layer, relayed with its 206
        s, h, part, _ = request(m.port, "GET", f"/v2/{REPO}/blobs/{digests[1]}",
                                {"Range": "bytes=1000-1999"})
        assert s == 206 and part == layers[0][1000:2000], (s, h)

    # the requests of one upload session came in at every replica, and the others relayed
    # theirs (the holder logs them too, as it answered them)
    def sessions(m, relayed):
        return {e.path.split("/")[-1].split("?")[0] for e in upload_requests(m, REPO)
                if e.method in ("PATCH", "PUT", "GET") and (e.cache == "relayed") == relayed}
    spread = sessions(holder, False)
    for m in others:
        spread &= sessions(m, True)
    assert spread, "no upload session had requests at every replica"
    for m in others:
        relayed = series(m, "regcache_cluster_relayed_total")
        assert relayed['{result="answered"}'] > 0, relayed
        assert relayed['{result="failed"}'] == 0
    assert series(holder, "regcache_cluster_relayed_total")['{result="answered"}'] == 0
    # the holder answered them as alice, and its store alone has the blobs
    assert any(" - alice [" in line and "PATCH /v2/team/app/blobs/uploads/" in line
               for line in holder.log_text().splitlines())
    for d in digests + list(img.blob_digests):
        assert os.path.exists(holder.file_for(d)), d
        for m in others:
            assert not os.path.exists(m.file_for(d)), (m.port, d)


def claim(receiver, who="user alice", nonce=None):
    """An X-Regcache-Relay value: a fresh nonce, the member it is for, whom it claims."""
    return f"{nonce or os.urandom(16).hex()} {receiver} {who}"


def sign(secret, method, target, sender, relay=None, t=None):
    t = int(time.time()) if t is None else t
    msg = f"v1\n{method}\n{target}\n{t}\n{sender}" + (f"\nrelay\n{relay}" if relay else "")
    mac = hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()
    return f"v1 {sender} {t} {mac}"


def test_refused_pushes_through_a_replica_and_forged_relays_store_nothing(cluster):
    reps, lb = cluster
    order = holder_order(reps)
    holder, other = order[0], order[1]
    data = b"a blob nobody may store " * 100
    digest = sha(data)
    target = f"/v2/{REPO}/blobs/uploads/?digest={digest}"
    # no credentials, or a user who may not push: refused by the replica the client reached,
    # as on one node
    s, h, body, _ = request(other.port, "POST", target, body=data)
    assert_error(s, body, 401, "UNAUTHORIZED")
    assert h["www-authenticate"].startswith("Basic")
    s, _, body, _ = request(other.port, "POST", target, basic(*BOB), body=data)
    assert_error(s, body, 403, "DENIED")
    assert series(other, "regcache_cluster_relayed_total")['{result="answered"}'] == 0

    member = f"http://127.0.0.1:{other.port}"
    to = f"http://127.0.0.1:{holder.port}"
    alice, bob = claim(to), claim(to, "user bob")
    forged = [
        ({"X-Regcache-Peer": "v1 garbage", "X-Regcache-Relay": alice}, 403),
        ({"X-Regcache-Peer": sign("not the cluster secret", "POST", target, member, alice),
          "X-Regcache-Relay": alice}, 403),
        # a member's own signature, no claim: a member may not push
        ({"X-Regcache-Peer": sign(SECRET, "POST", target, member)}, 403),
        # a claim the signature does not cover, or another one than it covers
        ({"X-Regcache-Peer": sign(SECRET, "POST", target, member),
          "X-Regcache-Relay": alice}, 403),
        ({"X-Regcache-Peer": sign(SECRET, "POST", target, member, bob),
          "X-Regcache-Relay": alice}, 403),
        ({"X-Regcache-Peer": sign(SECRET, "POST", target, member, alice, t=1),
          "X-Regcache-Relay": alice}, 403),
        # a claim of the old form, with no nonce and no receiver
        ({"X-Regcache-Peer": sign(SECRET, "POST", target, member, "user alice"),
          "X-Regcache-Relay": "user alice"}, 403),
        # correctly signed, but meant for another member
        ({"X-Regcache-Peer": sign(SECRET, "POST", target, member, claim(member)),
          "X-Regcache-Relay": claim(member)}, 403),
        # a correct claim of a user who may not push, and of anonymous
        ({"X-Regcache-Peer": sign(SECRET, "POST", target, member, bob),
          "X-Regcache-Relay": bob}, 403),
    ]
    anon = claim(to, "anonymous")
    forged.append(({"X-Regcache-Peer": sign(SECRET, "POST", target, member, anon),
                    "X-Regcache-Relay": anon}, 401))
    for headers, want in forged:
        s, _, body, _ = request(holder.port, "POST", target, headers, body=data)
        assert s == want, (headers, s, body)
    for m in reps:
        assert not os.path.exists(m.file_for(digest))
        assert request(m.port, "HEAD", f"/v2/{REPO}/blobs/{digest}")[0] == 404
    assert series(holder, "regcache_cluster_peer_requests_total")['{result="refused"}'] >= 7
    # the same request correctly signed for alice is taken: what was refused was the forgery
    ok_claim = claim(to)
    ok = {"X-Regcache-Peer": sign(SECRET, "POST", target, member, ok_claim),
          "X-Regcache-Relay": ok_claim}
    s, h, body, _ = request(holder.port, "POST", target, ok, body=data)
    assert s == 201 and h["docker-content-digest"] == digest, (s, body)
    # the very same headers once more (a relay seen on the wire, sent again): refused
    s, _, body, _ = request(holder.port, "POST", target, ok, body=data)
    assert_error(s, body, 403, "DENIED")
    assert "a relay sent again" in holder.log_text()
    # a claim is good for hosted repositories only
    path = "/v2/library/alpine/manifests/latest"
    c = claim(to)
    s, _, body, _ = request(holder.port, "GET", path, {
        "X-Regcache-Peer": sign(SECRET, "GET", path, member, c), "X-Regcache-Relay": c})
    assert_error(s, body, 403, "DENIED")


def test_a_holder_killed_mid_upload_fails_the_request_and_a_retry_goes_to_its_successor(
        cluster):
    reps, lb = cluster
    order = holder_order(reps)
    holder, successor, third = order
    p = Push(lb.port)
    s, h, b = p.call("POST", f"/v2/{REPO}/blobs/uploads/")
    assert s == 202, (s, b)
    loc = h["location"]
    # a 32 MiB PATCH through a replica that relays it, sent slowly; the holder dies midway
    size = 32 << 20
    sock = socket.create_connection(("127.0.0.1", third.port), timeout=60)
    head = (f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nAuthorization: {basic(*ALICE)['Authorization']}"
            f"\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n")
    sock.sendall(head.encode())
    sent = 0
    piece = os.urandom(1 << 20)
    answer = b""
    try:
        while sent < size:
            if sent == 8 << 20:
                holder.proc.kill()
                holder.proc.wait(10)
                holder.proc = None
            sock.sendall(piece)
            sent += len(piece)
            time.sleep(0.02)
    except OSError:
        pass  # the replica may close at once
    try:
        sock.settimeout(30)
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError:
        pass
    sock.close()
    # a failed request: the 503, or the connection reset before the client read it (the
    # replica closes on the unread rest of the body); never a 202
    assert answer == b"" or (answer.startswith(b"HTTP/1.1 503") and b"UNAVAILABLE" in answer), \
        answer[:300]
    assert series(third, "regcache_cluster_relayed_total")['{result="failed"}'] >= 1
    # both survivors see the holder down, then the push is retried through the balancer
    for m in (successor, third):
        procs.wait_for(lambda m=m: series(m, "regcache_cluster_members").get(
            '{state="down"}') == 1, 20, f"the holder down at :{m.port}")
    time.sleep(1.0)  # HAProxy's check has taken it out of the rotation
    rnd = random.Random(1503)
    layers = [rnd.randbytes(9 << 20), rnd.randbytes(1000)]
    raw, digests = Push(lb.port).image(REPO, "v2", layers)
    for m in (successor, third):
        got_raw, got_digest, blobs = pull(m.port, REPO, "v2")
        assert got_raw == raw and got_digest == sha(raw)
    for d in digests:
        assert os.path.exists(successor.file_for(d)), d
        assert not os.path.exists(third.file_for(d)), d


def test_a_holder_that_stops_answering_gets_the_client_a_503(cluster):
    """The holder takes the relayed request and then sends nothing (SIGSTOP): the relay gives
    up after its stall time, marks the holder down and answers 503, rather than holding the
    client (and its buffers) for ever."""
    reps, _ = cluster
    order = holder_order(reps)
    holder, other = order[0], order[2]
    holder.proc.send_signal(signal.SIGSTOP)
    try:
        try:
            s, _, body, _ = request(other.port, "GET", f"/v2/{REPO}/tags/list",
                                    basic(*ALICE), timeout=90)
        except (socket.timeout, TimeoutError):
            pytest.fail("the relay to a stopped holder never answered (90 s)")
        assert_error(s, body, 503, "UNAVAILABLE")
        assert series(other, "regcache_cluster_relayed_total")['{result="failed"}'] >= 1
    finally:
        holder.proc.send_signal(signal.SIGCONT)
