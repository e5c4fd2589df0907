# SPDX-License-Identifier: Apache-2.0
"""HTTPS on the listener: a certificate clients verify, TLS 1.2+ only, reload on SIGHUP."""

import os
import shutil
import signal
import ssl
import subprocess
import time

import clients
from images import verify_oci_layout
from helpers import assert_config_refused


def make_cert(directory, name):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl from Debian)."""
    os.makedirs(directory, exist_ok=True)
    ca_key, ca = os.path.join(directory, f"{name}-ca.key"), os.path.join(directory, f"{name}-ca.crt")
    key, csr = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.csr")
    crt, ext = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.ext")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=60)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
        "-days", "2", "-subj", f"/CN={name} test CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=127.0.0.1")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:regcache.test\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "2", "-extfile", ext)
    return ca, crt, key


def served_cert(port):
    return ssl.get_server_certificate(("127.0.0.1", port))


def test_tls_serves_verified_pulls_and_reloads(mirror_factory, up, make_image, push, tmp_dir):
    img = push(make_image(110, (256 * 1024,), fmt="oci"), up, "library/secure", "v1")
    certs = os.path.join(tmp_dir, "certs")
    ca1, crt1, key1 = make_cert(certs, "one")
    live_crt, live_key = os.path.join(certs, "live.crt"), os.path.join(certs, "live.key")
    shutil.copy(crt1, live_crt)
    shutil.copy(key1, live_key)
    m = mirror_factory([up], start=False, extra={"tls": {"cert": live_crt, "key": live_key}})
    # the fixture's readiness probe speaks plain HTTP: start and wait on TLS ourselves
    m.start(wait=False)
    ctx = ssl.create_default_context(cafile=ca1)
    deadline = time.monotonic() + 20
    while True:
        try:
            import http.client
            c = http.client.HTTPSConnection("127.0.0.1", m.port, context=ctx, timeout=5)
            c.request("GET", "/v2/")
            r = c.getresponse()
            assert r.status == 200 and r.getheader("Docker-Distribution-Api-Version")
            c.close()
            break
        except (ConnectionError, OSError):
            assert time.monotonic() < deadline, m.log_text()[-2000:]
            time.sleep(0.2)

    # skopeo verifies the certificate against the CA in its cert dir
    cert_dir = os.path.join(tmp_dir, "skopeo-certs")
    os.makedirs(cert_dir)
    shutil.copy(ca1, os.path.join(cert_dir, "ca.crt"))
    out = os.path.join(tmp_dir, "copy")
    clients.run(["skopeo", "copy", "--src-cert-dir", cert_dir, "--preserve-digests",
                 f"docker://127.0.0.1:{m.port}/library/secure:v1", f"oci:{out}:latest"],
                timeout=180)
    verify_oci_layout(out, img.digest)
    # without the CA it refuses
    r = clients.run(["skopeo", "inspect", "--raw", f"docker://127.0.0.1:{m.port}/library/secure:v1"],
                    check=False, timeout=60)
    assert r.returncode != 0 and "certificate" in r.stderr.lower(), r.stderr

    # old protocols are refused
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.minimum_version = ssl.TLSVersion.TLSv1
    try:
        import socket
        with socket.create_connection(("127.0.0.1", m.port), timeout=5) as s:
            with old.wrap_socket(s):
                raise AssertionError("a TLS 1.1 handshake succeeded")
    except ssl.SSLError:
        pass

    # SIGHUP picks up a new certificate; the mirror keeps serving, and a connection opened
    # before the reload goes on working
    import http.client
    kept = http.client.HTTPSConnection("127.0.0.1", m.port, context=ctx, timeout=10)
    kept.request("GET", "/v2/")
    assert kept.getresponse().read() is not None
    before = served_cert(m.port)
    ca2, crt2, key2 = make_cert(certs, "two")
    shutil.copy(crt2, live_crt)
    shutil.copy(key2, live_key)
    m.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while served_cert(m.port) == before:
        assert time.monotonic() < deadline, "the certificate was not reloaded"
        time.sleep(0.2)
    kept.request("GET", f"/v2/library/secure/manifests/{img.digest}")
    resp = kept.getresponse()
    assert resp.status == 200 and resp.read() == img.raw
    kept.close()
    shutil.copy(ca2, os.path.join(cert_dir, "ca.crt"))
    r = clients.run(["skopeo", "inspect", "--raw", "--cert-dir", cert_dir,
                     f"docker://127.0.0.1:{m.port}/library/secure:v1"], timeout=60)
    assert r.stdout.encode() == img.raw


def test_tls_config_errors(tmp_dir):
    ca, crt, key = make_cert(os.path.join(tmp_dir, "c"), "x")
    assert_config_refused(tmp_dir, f"tls:\n  cert: {crt}\n", "bad.yml", "tls.key")
    assert_config_refused(tmp_dir, f"tls:\n  cert: {crt}\n  key: /nonexistent.key\n",
                          "bad.yml:3: tls.key")


def test_dockerd_verifies_the_certificate_with_certs_d(dockerd, docker_proxy, mirror_factory,
                                                       up, make_image, push, tmp_dir):
    """dockerd pulls from the mirror over HTTPS and checks its certificate against
    certs.d/<host:port>/ca.crt: with the wrong CA there the pull fails on the certificate and no
    request reaches the mirror; with the right one it succeeds.

    dockerd treats every registry on 127.0.0.0/8 as insecure and skips the check, so the mirror
    is named regcache.test, a name dockerd cannot resolve (and so treats as secure), and dockerd
    reaches it through its HTTPS proxy, which connects that name to 127.0.0.1."""
    img = push(make_image(111, (64 * 1024,)), up, "library/dtls", "v1")
    certs = os.path.join(tmp_dir, "certs")
    ca, crt, key = make_cert(certs, "docker")
    wrong_ca, _, _ = make_cert(certs, "other")
    m = mirror_factory([up], start=False, extra={"tls": {"cert": crt, "key": key}})
    m.start(wait=False)
    deadline = time.monotonic() + 20
    while True:
        try:
            served_cert(m.port)
            break
        except OSError:
            assert time.monotonic() < deadline, m.log_text()[-2000:]
            time.sleep(0.2)
    host = f"regcache.test:{m.port}"
    host_dir = f"/etc/docker/certs.d/{host}"
    os.makedirs(host_dir, exist_ok=True)
    ref = f"{host}/library/dtls:v1"
    try:
        shutil.copy(wrong_ca, os.path.join(host_dir, "ca.crt"))
        r = dockerd.docker("pull", ref, check=False)
        assert r.returncode != 0, r.stdout
        assert "certificate" in r.stderr and "unknown authority" in r.stderr, r.stderr
        assert host in docker_proxy.connects()
        assert not [e for e in m.entries() if "/library/dtls/" in e.path]

        shutil.copy(ca, os.path.join(host_dir, "ca.crt"))
        r = dockerd.docker("pull", ref, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert any(d.endswith("@" + img.digest) for d in dockerd.repo_digests(ref))
        entries = [e for e in m.entries() if "/library/dtls/" in e.path]
        assert entries and all(e.status == 200 for e in entries), entries
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)
        dockerd.docker("rmi", ref, check=False)
