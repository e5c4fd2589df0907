# SPDX-License-Identifier: Apache-2.0
"""The load-balancer configurations in packaging/load-balancer/ in front of two mirrors, as
shipped (only the listen address, the two server addresses and the admin socket's path are
replaced): pulls through HAProxy and nginx arrive byte for byte; one blob digest always goes to
one mirror; the requests of one upload meet on one mirror; a mirror killed with SIGKILL leaves HAProxy's rotation after its health check and
pulls go on (and GETs through nginx are passed to the live mirror), each blob fetched from the upstream at most twice in all; a mirror whose /readyz
is 503 leaves HAProxy's rotation too."""

import hashlib
import os
import signal
import socket
import sqlite3

import pytest

import clients
import procs
from helpers import blob_gets, get, since, wait_until
from images import verify_oci_layout
from mirror import REPO_ROOT, request

pytestmark = pytest.mark.once

SHIPPED = os.path.join(REPO_ROOT, "packaging", "load-balancer")
SERVERS = ("10.0.0.11:5000", "10.0.0.12:5000")


def render(name, mirrors, replace):
    """The shipped file with the server addresses pointed at the mirrors and the given lines
    replaced; each replaced text must be present, so a changed file fails here, not later."""
    text = open(os.path.join(SHIPPED, name)).read()
    for placeholder, m in zip(SERVERS, mirrors):
        assert placeholder in text
        text = text.replace(placeholder, f"127.0.0.1:{m.port}")
    for old, new in replace:
        assert old in text, old
        text = text.replace(old, new)
    return text


class Via:
    """Looks like a Mirror to the helpers, but talks to a balancer."""

    def __init__(self, port):
        self.port = port


@pytest.fixture
def balancers(tmp_dir):
    started = []

    def haproxy(mirrors):
        port = procs.free_port()
        d = os.path.join(tmp_dir, "haproxy")
        os.makedirs(d)
        sock = os.path.join(d, "admin.sock")
        cfg = os.path.join(d, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(render("haproxy.cfg", mirrors, [
                ("bind :443 ssl crt /etc/haproxy/registry.example.lan.pem",
                 f"bind 127.0.0.1:{port}"),
                ("/run/haproxy/regcache-admin.sock", sock),
                ("log /dev/log local0", "log stdout format raw local0")]))
        proc = procs.Proc(["/usr/sbin/haproxy", "-db", "-f", cfg], os.path.join(d, "out.log"))
        started.append(proc)
        procs.wait_for(lambda: procs.http_status(port, "/healthz") == 200, 20, "haproxy",
                       proc=proc)
        return Via(port), sock

    def nginx(mirrors):
        port = procs.free_port()
        d = os.path.join(tmp_dir, "nginx")
        os.makedirs(d)
        with open(os.path.join(d, "site.conf"), "w") as f:
            f.write(render("nginx.conf", mirrors, [
                ("listen 443 ssl;", f"listen 127.0.0.1:{port};"),
                ("    ssl_certificate     /etc/ssl/certs/registry.example.lan.pem;\n", ""),
                ("    ssl_certificate_key /etc/ssl/private/registry.example.lan.key;\n", "")]))
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(f"""
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/site.conf;
}}
""")
        proc = procs.Proc(["nginx", "-c", os.path.join(d, "nginx.conf")],
                          os.path.join(d, "stdout.log"))
        started.append(proc)
        procs.wait_for(lambda: procs.http_status(port, "/healthz") == 200, 20, "nginx",
                       proc=proc)
        return Via(port)

    yield haproxy, nginx
    for p in started:
        p.stop(timeout=10)


def server_states(sock):
    """{server name: status} from HAProxy's admin socket (UP, DOWN, ...)."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b"show stat\n")
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    lines = out.decode().splitlines()
    head = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(head, line.split(","))) for line in lines[1:] if line]
    return {r["svname"]: r["status"].split(" ")[0] for r in rows
            if r["pxname"] == "regcache" and r["svname"] not in ("BACKEND", "FRONTEND")}


def served_by(mirrors, marks, digest):
    """The mirrors (indexes) that logged a GET or HEAD of the blob since their marks."""
    return {i for i, (m, mark) in enumerate(zip(mirrors, marks))
            for e in m.entries()[mark:]
            if e.path.endswith("/blobs/" + digest) and e.method in ("GET", "HEAD")}


def copy(via, ref, out):
    clients.run(["skopeo", "copy", "--src-tls-verify=false", "--preserve-digests",
                 f"docker://127.0.0.1:{via.port}/{ref}", f"oci:{out}:latest"], timeout=60)


def test_two_mirrors_behind_haproxy_and_nginx(balancers, mirror_factory, up, make_image, push,
                                             tmp_dir):
    start_haproxy, start_nginx = balancers
    img = push(make_image(131, (1024 * 1024, 512 * 1024, 256 * 1024, 128 * 1024), fmt="oci"),
               up, "library/spread", "v1")
    blobs = list(img.layer_digests)
    ms = [mirror_factory([up], extra={"log": {"trusted_proxies": ["127.0.0.1"]},
                                       "hosted": ["team/*"]})
          for _ in range(2)]
    hap, sock = start_haproxy(ms)
    ngx = start_nginx(ms)
    wait_until(lambda: set(server_states(sock).values()) == {"UP"}, timeout=15,
               what="both mirrors UP in haproxy")

    # byte for byte through each balancer
    copy(hap, "library/spread:v1", os.path.join(tmp_dir, "via-haproxy"))
    verify_oci_layout(os.path.join(tmp_dir, "via-haproxy"), img.digest)
    copy(ngx, "library/spread:v1", os.path.join(tmp_dir, "via-nginx"))
    verify_oci_layout(os.path.join(tmp_dir, "via-nginx"), img.digest)

    # one digest, one mirror, per balancer: repeated GETs, a HEAD and a Range all land together
    owner = {}
    for via, name in ((hap, "haproxy"), (ngx, "nginx")):
        marks = [len(m.entries()) for m in ms]
        for d in blobs:
            for _ in range(3):
                s, _, body = get(via, f"/v2/library/spread/blobs/{d}", accept=False)
                assert s == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == d
            s, h, _ = get(via, f"/v2/library/spread/blobs/{d}", method="HEAD", accept=False)
            assert s == 200 and h.get("docker-content-digest") == d
            s, h, body = get(via, f"/v2/library/spread/blobs/{d}", accept=False,
                             headers={"Range": "bytes=0-99"})
            assert s == 206 and len(body) == 100, (s, h)
        for d in blobs:
            got = served_by(ms, marks, d)
            assert len(got) == 1, f"{name}: {d} served by mirrors {got}"
            if name == "haproxy":
                owner[d] = got.pop()
    # each balancer appends its peer to X-Forwarded-For; the mirrors trust 127.0.0.1, so they
    # log the address to its left as the client
    for via, client in ((hap, "203.0.113.7"), (ngx, "203.0.113.8")):
        s, _, _ = get(via, "/v2/", headers={"X-Forwarded-For": client})
        assert s == 200
        assert any(e.ip == client and e.path == "/v2/" for m in ms for e in m.entries()), client

    # an upload's POST, PATCH and PUT meet on one mirror (the one holding its session)
    for n in range(4):
        repo = f"team/up{n}"
        data = os.urandom(64 * 1024 + n)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        marks = [len(m.entries()) for m in ms]
        s, h, _, _ = request(hap.port, "POST", f"/v2/{repo}/blobs/uploads/")
        assert s == 202, s
        loc = h["location"]
        s, h, _, _ = request(hap.port, "PATCH", loc, body=data,
                             headers={"Content-Type": "application/octet-stream"})
        assert s == 202, s
        loc = h["location"]
        sep = "&" if "?" in loc else "?"
        s, _, _, _ = request(hap.port, "PUT", f"{loc}{sep}digest={digest}", body=b"")
        assert s == 201, s
        hits = {i for i, (m, mark) in enumerate(zip(ms, marks)) for e in m.entries()[mark:]
                if "/blobs/uploads/" in e.path}
        assert len(hits) == 1, f"{repo}: upload requests on mirrors {hits}"

    # /readyz 503 (the index locked by another process) takes a mirror out of the rotation
    victim = owner[blobs[0]]
    db = sqlite3.connect(os.path.join(ms[victim].storage, "regcache.db"), timeout=10,
                         isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        get(ms[victim], "/v2/library/spread/manifests/v1")  # a change to write
        wait_until(lambda: server_states(sock)[f"regcache{victim + 1}"] == "DOWN", timeout=30,
                   interval=0.3, what="haproxy marks the unready mirror DOWN")
        assert procs.http_status(ms[victim].port, "/readyz") == 503
        marks = [len(m.entries()) for m in ms]
        s, _, _ = get(hap, f"/v2/library/spread/blobs/{blobs[0]}", accept=False)
        assert s == 200 and served_by(ms, marks, blobs[0]) == {1 - victim}
    finally:
        db.execute("ROLLBACK")
        db.close()
    wait_until(lambda: set(server_states(sock).values()) == {"UP"}, timeout=30,
               interval=0.3, what="the mirror back UP in haproxy")

    # SIGKILL one mirror: once its check marks it DOWN, pulls through HAProxy go on
    dead = ms[victim]
    dead.proc.send_signal(signal.SIGKILL)
    dead.proc.wait(10)
    dead.proc = None
    wait_until(lambda: server_states(sock)[f"regcache{victim + 1}"] == "DOWN", timeout=15,
               interval=0.3, what="haproxy marks the killed mirror DOWN")
    copy(hap, "library/spread:v1", os.path.join(tmp_dir, "after-kill"))
    verify_oci_layout(os.path.join(tmp_dir, "after-kill"), img.digest)
    # nginx has no active checks: a GET that meets the dead mirror is passed to the other one
    for d in blobs:
        s, _, body = get(ngx, f"/v2/library/spread/blobs/{d}", accept=False)
        assert s == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == d, s
    gets = blob_gets(since(up, 0))
    assert all(gets[d] <= 2 for d in blobs), gets
    assert all(gets[d] >= 1 for d in blobs), gets
