# SPDX-License-Identifier: Apache-2.0
"""`regcache health`: a container HEALTHCHECK without curl. It asks the configured listener's
/readyz on loopback (https with tls.cert), prints one line and exits 0 (healthy) or 1."""

import os
import socket
import subprocess
import time

import yaml

import procs
from helpers import wait_until
from mirror import REGCACHE
from test_probes import plant_unknown_blobs
from test_tls import make_cert


def health(*args, env=None, timeout=30):
    """(exit status, stdout, stderr) of `regcache health ARGS`."""
    r = subprocess.run([*REGCACHE, "health", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    return r.returncode, r.stdout, r.stderr


def write_config(tmp_dir, name, cfg):
    path = os.path.join(tmp_dir, name)
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def probe_lines(m):
    return [e for e in m.entries() if e.path.startswith("/readyz")]


def test_healthy_against_a_running_mirror(mirror_factory, up):
    """The configured listener answers /readyz 200: one `healthy:` line, exit 0, and the mirror
    logged the probe (so the answer came from it)."""
    m = mirror_factory([up], extra={"log": {"access_probes": True}})
    rc, out, err = health("-c", m.config_path)
    assert rc == 0, (out, err)
    assert out == f"healthy: http://127.0.0.1:{m.port}/readyz answered 200\n", out
    got = probe_lines(m)
    assert [(e.method, e.status) for e in got] == [("GET", 200)], got
    # --url asks exactly that URL (a bare one gets /readyz)
    rc, out, _ = health("--url", f"http://127.0.0.1:{m.port}")
    assert rc == 0 and out.startswith(f"healthy: http://127.0.0.1:{m.port}/readyz "), out
    rc, out, _ = health("--url", f"http://127.0.0.1:{m.port}/v2/no/such/manifests/x")
    assert rc == 1 and "answered 404" in out, out


def test_a_wildcard_v6_listener_is_asked_on_the_v6_loopback(mirror_factory, up):
    """listen [::]:P is asked at [::1]:P (skipped where the host has no IPv6 loopback)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        import pytest
        pytest.skip("no IPv6 loopback here")
    m = mirror_factory([up], start=False)
    with open(m.config_path) as f:
        cfg = yaml.safe_load(f)
    cfg["listen"] = f"[::]:{m.port}"
    with open(m.config_path, "w") as f:
        yaml.safe_dump(cfg, f)
    m.start()
    rc, out, err = health("-c", m.config_path)
    assert rc == 0, (out, err)
    assert out == f"healthy: http://[::1]:{m.port}/readyz answered 200\n", out


def test_unhealthy_when_nothing_listens(tmp_dir):
    """No listener on the configured port: exit 1 and a line that says it could not connect."""
    port = procs.free_port()
    path = write_config(tmp_dir, "m.yml", {"listen": f":{port}",
                                           "storage": os.path.join(tmp_dir, "s")})
    rc, out, err = health("-c", path)
    assert rc == 1, (out, err)
    assert out.startswith(f"unhealthy: http://127.0.0.1:{port}/readyz: "), out
    assert "connect" in out.lower() and out.count("\n") == 1, out


def test_unhealthy_when_the_listener_never_answers(tmp_dir):
    """A socket that accepts (the kernel's backlog) but never answers: --timeout bounds the
    wait and the line says it timed out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        t0 = time.monotonic()
        rc, out, _ = health("--url", f"http://127.0.0.1:{port}/readyz", "--timeout", "700ms")
        took = time.monotonic() - t0
    assert rc == 1 and out.startswith(f"unhealthy: http://127.0.0.1:{port}/readyz: "), out
    assert "timed out" in out.lower(), out
    assert 0.6 <= took < 5, took


def test_healthy_while_the_store_is_walked_in_the_background(mirror_factory, up):
    """After an unclean stop the store is walked in the background while serving: /readyz is
    200 meanwhile, so health exits 0 at once; the walk still removes what does not match its
    name."""
    m = mirror_factory([up], start=False)
    plant_unknown_blobs(m.storage, 12, 64 << 20)
    m.start(wait=False)
    procs.wait_for(lambda: procs.port_open(m.port), 20, "the listener", proc=m.proc)
    rc, out, _ = health("-c", m.config_path, "--timeout", "2s")
    assert (rc, out) == (0, f"healthy: http://127.0.0.1:{m.port}/readyz answered 200\n")
    procs.wait_for(lambda: "12 corrupt removed" in m.log_text(), 120, "the walk's end",
                   proc=m.proc)
    assert health("-c", m.config_path, "--timeout", "2s")[0] == 0


def test_tls_listener_is_asked_over_https_without_a_proxy(mirror_factory, up, tmp_dir):
    """tls.cert set: https, the self-signed certificate accepted (it talks to itself), and a
    proxy in the environment is not used."""
    _, crt, key = make_cert(os.path.join(tmp_dir, "certs"), "health")
    m = mirror_factory([up], start=False, extra={"tls": {"cert": crt, "key": key},
                                                  "log": {"access_probes": True}})
    m.start(wait=False)
    procs.wait_for(lambda: procs.port_open(m.port), 20, "the TLS listener", proc=m.proc)
    dead_proxy = f"http://127.0.0.1:{procs.free_port()}"
    env = dict(os.environ, https_proxy=dead_proxy, HTTPS_PROXY=dead_proxy, ALL_PROXY=dead_proxy,
               http_proxy=dead_proxy)
    result = wait_until(lambda: (lambda r: r if r[0] == 0 else None)(
        health("-c", m.config_path, env=env)), timeout=20, what="healthy over https")
    assert result[1] == f"healthy: https://127.0.0.1:{m.port}/readyz answered 200\n", result
    assert any(e.status == 200 for e in probe_lines(m))
    # plain http to the TLS port is not an answer
    rc, out, _ = health("--url", f"http://127.0.0.1:{m.port}/readyz", "--timeout", "2s")
    assert rc == 1 and out.startswith("unhealthy: "), out


def test_a_bad_config_file_is_a_config_error(tmp_dir):
    """A bad -c file: exit 1 with the file, line and key on stderr, nothing asked; a missing
    one names the file; a usage error is exit 2."""
    path = os.path.join(tmp_dir, "bad.yml")
    with open(path, "w") as f:
        f.write("listen: :5000\ncache:\n  revalidate_after: x\n")
    rc, out, err = health("-c", path)
    assert rc == 1 and out == "", (out, err)
    assert f"{path}:3: cache.revalidate_after: invalid duration 'x'" in err, err
    rc, out, err = health("-c", os.path.join(tmp_dir, "missing.yml"))
    assert rc == 1 and out == "" and "missing.yml" in err, (out, err)
    for args in (["--timeout", "soon"], ["--url", "ftp://x/readyz"], ["--bogus"], ["-c"]):
        rc, out, err = health(*args)
        assert rc == 2 and out == "" and err, (args, out, err)
