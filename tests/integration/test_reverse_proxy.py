# SPDX-License-Identifier: Apache-2.0
"""The nginx example in packaging/reverse-proxy/ in front of the mirror: the auth challenge on
the ping survives, credentials pass through, and pulls (cold blobs streamed, warm ones) work."""

import hashlib
import os
import re
import subprocess

import pytest

import clients
import procs
from helpers import blob_gets, get, since
from images import skopeo, verify_oci_layout
from mirror import REPO_ROOT
from test_auth import ALICE, basic, make_users

EXAMPLE = os.path.join(REPO_ROOT, "packaging", "reverse-proxy", "nginx.conf")


@pytest.fixture
def nginx_for(tmp_dir):
    """nginx_for(mirror) -> port: runs the packaged example (TLS lines dropped, listening on a
    loopback port) in front of the mirror."""
    started = []

    def start(mirror):
        port = procs.free_port()
        text = open(EXAMPLE).read()
        text = re.sub(r"listen 443 ssl;", f"listen 127.0.0.1:{port};", text)
        text = re.sub(r"\n\s*ssl_certificate\S*\s+[^;]+;", "", text)
        text = text.replace("server 127.0.0.1:5000;", f"server 127.0.0.1:{mirror.port};")
        d = os.path.join(tmp_dir, f"nginx{port}")
        os.makedirs(d)
        with open(os.path.join(d, "site.conf"), "w") as f:
            f.write(text)
        main = f"""
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
"""
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(main)
        proc = procs.Proc(["nginx", "-c", os.path.join(d, "nginx.conf")],
                          os.path.join(d, "stdout.log"))
        started.append(proc)
        procs.wait_for(lambda: procs.http_status(port, "/healthz") == 200, 20,
                       "nginx in front of regcache", proc=proc)
        return port

    yield start
    for p in started:
        p.stop(timeout=10)


class Via:
    """Looks like a Mirror to the helpers, but talks to nginx."""

    def __init__(self, port):
        self.port = port


def test_nginx_example_keeps_the_challenge_and_streams_pulls(nginx_for, mirror_factory, up,
                                                             make_image, push, tmp_dir):
    img = push(make_image(95, (8 * 1024 * 1024, 64 * 1024), fmt="oci"), up, "library/proxied",
               "v1")
    m = mirror_factory([up], extra={"auth": {"htpasswd": make_users(tmp_dir, ALICE),
                                             "realm": "Behind nginx"},
                                    "hosted": ["team/*"]})
    via = Via(nginx_for(m))

    s, h, _ = get(via, "/v2/", headers={})
    assert s == 200 and h["www-authenticate"] == 'Basic realm="Behind nginx"'
    s, h, _ = get(via, "/v2/", headers=basic("alice", "wrong"))
    assert s == 401 and h["www-authenticate"] == 'Basic realm="Behind nginx"'
    assert h["docker-distribution-api-version"] == "registry/2.0"
    assert get(via, "/v2/", headers=basic(*ALICE))[0] == 200

    # a cold blob streams through nginx and costs the upstream one GET
    mark = up.mark()
    layer = img.layer_digests[0]
    s, _, body = get(via, f"/v2/library/proxied/blobs/{layer}", accept=False)
    assert s == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == layer
    assert blob_gets(since(up, mark))[layer] == 1

    # a real client through nginx, with credentials
    out = os.path.join(tmp_dir, "copy")
    clients.run(["skopeo", "copy", "--src-tls-verify=false", "--src-creds", ":".join(ALICE),
                 "--preserve-digests", f"docker://127.0.0.1:{via.port}/library/proxied:v1",
                 f"oci:{out}:latest"], timeout=180)
    verify_oci_layout(out, img.digest)
    # the credentials reached regcache (it verified them: a 200 for the authenticated ping)
    assert any(e.path == "/v2/" and e.status == 200 for e in m.entries())

    # a push through nginx into a hosted repository (an 8 MiB layer, streamed), pulled back
    own = make_image(96, (8 * 1024 * 1024,), fmt="oci")
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", ":".join(ALICE),
           "--preserve-digests", f"dir:{own.layout}.dir",
           f"docker://127.0.0.1:{via.port}/team/pushed:v1")
    s, _, body = get(via, "/v2/team/pushed/manifests/v1", headers={})
    assert s == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == own.digest
    layer = own.layer_digests[0]
    s, _, data = get(via, f"/v2/team/pushed/blobs/{layer}", accept=False, headers={})
    assert s == 200 and "sha256:" + hashlib.sha256(data).hexdigest() == layer
    uploads = [e for e in m.entries() if "/team/pushed/blobs/uploads/" in e.path]
    assert uploads and all(e.status in (201, 202) for e in uploads), uploads



def test_nginx_example_with_token_scheme(nginx_for, mirror_factory, up, make_image, tmp_dir):
    """auth.scheme: token behind the nginx example: the token realm names nginx's address (the
    Host header it keeps), so a client that only reaches nginx fetches its token there; a push
    with credentials and an anonymous pull go through."""
    m = mirror_factory([up], extra={"auth": {"htpasswd": make_users(tmp_dir, ALICE),
                                             "realm": "Behind nginx", "scheme": "token"},
                                    "hosted": ["team/*"]})
    via = Via(nginx_for(m))
    s, h, _ = get(via, "/v2/", headers={})
    assert s == 401 and h["www-authenticate"] == (
        f'Bearer realm="http://127.0.0.1:{via.port}/v2/token",service="Behind nginx"')
    own = make_image(97, (256 * 1024,), fmt="oci")
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", ":".join(ALICE),
           "--preserve-digests", f"dir:{own.layout}.dir",
           f"docker://127.0.0.1:{via.port}/team/tok:v1")
    out = os.path.join(tmp_dir, "copy")
    clients.run(["skopeo", "copy", "--src-tls-verify=false", "--preserve-digests",
                 f"docker://127.0.0.1:{via.port}/team/tok:v1", f"oci:{out}:latest"], timeout=180)
    verify_oci_layout(out, own.digest)
    tokens = [e for e in m.entries() if e.path.startswith("/v2/token")]
    assert tokens and all(e.status == 200 for e in tokens)


def test_example_configs_are_valid(tmp_dir):
    """nginx accepts the example's syntax (with its TLS files swapped for a test pair)."""
    key = os.path.join(tmp_dir, "k.pem")
    crt = os.path.join(tmp_dir, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "1", "-subj", "/CN=registry.example.lan"],
                   check=True, capture_output=True, timeout=60)
    text = open(EXAMPLE).read()
    text = text.replace("/etc/ssl/certs/registry.example.lan.pem", crt)
    text = text.replace("/etc/ssl/private/registry.example.lan.key", key)
    site = os.path.join(tmp_dir, "site.conf")
    with open(site, "w") as f:
        f.write(text)
    main = os.path.join(tmp_dir, "nginx.conf")
    with open(main, "w") as f:
        f.write(f"pid {tmp_dir}/n.pid; error_log {tmp_dir}/e.log; events {{}} "
                f"http {{ include {site}; }}\n")
    r = subprocess.run(["nginx", "-t", "-c", main], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
