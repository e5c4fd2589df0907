# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the regcache integration suite.

Session-scoped: the token issuer, built image layouts, containerd and dockerd (slow to start).
Per-test: upstream registries and mirrors, so every test starts from a cold cache and an empty
upstream access log. Everything runs on 127.0.0.1; all processes are killed at the end.
"""

import atexit
import dataclasses
import os
import shutil
import signal
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import clients  # noqa: E402
import images  # noqa: E402
import procs  # noqa: E402
import tlsproxy  # noqa: E402
from mirror import Mirror  # noqa: E402
from token_server import TokenServer  # noqa: E402
from upstream import Upstream  # noqa: E402

TEST_TIMEOUT = int(os.environ.get("REGCACHE_TEST_TIMEOUT", "240"))


# -- cleanup when killed: SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C so fixtures tear down
def _on_term(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


signal.signal(signal.SIGTERM, _on_term)
atexit.register(procs.kill_all)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "once: builds or installs a package or image of its own (a release build), or starts "
        "a Ceph cluster, so the sanitizer phase of tests/run.sh leaves it out (-m 'not once')")
    config.addinivalue_line(
        "markers",
        "engines: drives a real container engine (dockerd, containerd, podman, buildah; set on "
        "every test that uses the dockerd or containerd fixture) through request paths the rest "
        "of the suite covers, so the sanitizer phases of tests/run.sh leave it out "
        "(-m 'not engines'); the plain phase runs it")


ENGINE_FIXTURES = {"dockerd", "containerd"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engines)
    config.addinivalue_line(
        "markers",
        "time_limit(seconds): this test's limit (its fixtures' setup included) when longer than "
        "REGCACHE_TEST_TIMEOUT, e.g. for a module fixture that builds an image first")


# -- a per-test timeout of our own (SIGALRM in the main thread) ----------------------------------
class TestTimeout(Exception):
    pass


def _limit(item):
    """REGCACHE_TEST_TIMEOUT, or the test's time_limit marker when that is longer."""
    marker = item.get_closest_marker("time_limit")
    return max(TEST_TIMEOUT, int(marker.args[0])) if marker else TEST_TIMEOUT


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    limit = _limit(item)

    def _on_alarm(signum, frame):
        raise TestTimeout(f"test exceeded {limit}s (REGCACHE_TEST_TIMEOUT or its time_limit)")

    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the item so fixtures can print logs after a failure."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


# -- session infrastructure ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def tmp_root():
    d = tempfile.mkdtemp(prefix="rcit", dir="/tmp")
    yield d
    procs.kill_all()
    if not os.environ.get("REGCACHE_KEEP_TMP"):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def token_server(tmp_root):
    ts = TokenServer(os.path.join(tmp_root, "token")).start()
    yield ts
    ts.stop()


@pytest.fixture
def tmp_dir(tmp_root, request):
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in request.node.name)[:40]
    return tempfile.mkdtemp(prefix=safe + "-", dir=tmp_root)


@pytest.fixture
def upstream_factory(tmp_dir, token_server):
    """make(service="...") -> a started docker-registry; all are stopped after the test."""
    made = []

    def make(service="upstream"):
        u = Upstream(os.path.join(tmp_dir, f"up{len(made)}"), token_server, service).start()
        made.append(u)
        return u

    yield make
    for u in made:
        if u.proc:
            u.stop()


@pytest.fixture
def up(upstream_factory):
    """The test's first upstream (the mirror's docker.io)."""
    return upstream_factory("registry.docker.io")


@pytest.fixture(scope="session")
def image_cache(tmp_root):
    return {}


@pytest.fixture
def make_image(tmp_root, image_cache):
    """make_image(seed, layer_sizes=(...), fmt="docker"|"oci", multi_arch=False) -> Image.
    Layouts are built once per session; each call returns an independent copy."""

    def make(seed, layer_sizes=(64 * 1024,), fmt="docker", multi_arch=False):
        key = (seed, tuple(layer_sizes), fmt, multi_arch)
        if key not in image_cache:
            path = os.path.join(tmp_root, "images", "-".join(map(str, [seed, fmt, int(multi_arch),
                                                                       *layer_sizes])))
            image_cache[key] = images.build_image(path, seed, layer_sizes, fmt, multi_arch)
        return dataclasses.replace(image_cache[key])

    return make


@pytest.fixture
def push():
    """push(image, upstream, "repo", "tag") -> image with repo/tag set."""
    return images.push


@pytest.fixture
def mirror_factory(tmp_dir, request):
    """make(upstreams=[up, ...] or [{"name", "url", ...}], port=None, revalidate_after="1s",
    extra=None, start=True, names=None) -> Mirror. Upstream objects are named docker.io,
    quay.io, ... in order unless `names` is given. At teardown every mirror still running gets
    SIGTERM and must exit 0 within 15 s."""
    made = []

    def make(upstreams, port=None, revalidate_after="1s", extra=None, start=True, names=None):
        names = names or ["docker.io", "quay.io", "ghcr.io", "example.org"]
        ups = [u if isinstance(u, dict) else {"name": names[i], "url": u.url}
               for i, u in enumerate(upstreams)]
        m = Mirror(os.path.join(tmp_dir, f"mirror{len(made)}"), ups, port=port,
                   revalidate_after=revalidate_after, extra=extra)
        made.append(m)
        return m.start() if start else m

    yield make
    problems = []
    for m in made:
        if _failed(request):
            try:
                sys.stderr.write(f"\n--- regcache log tail ({m.log_path}) ---\n"
                                 + "\n".join(m.log_text().splitlines()[-40:]) + "\n")
            except OSError:
                pass
        if m.proc is not None:
            status = m.stop(timeout=15)
            if status != 0:
                problems.append(f"regcache on :{m.port} exited with {status} after SIGTERM "
                                f"(None = still running after 15 s)")
    assert not problems, "; ".join(problems)


@pytest.fixture
def mirror(mirror_factory, up):
    """A regcache with `up` as its only (docker.io) upstream, revalidate_after 1s."""
    return mirror_factory([up])


# -- real clients (session-scoped; a failure to start them fails the tests using them) -----------
@pytest.fixture(scope="session")
def containerd(tmp_root):
    c = clients.Containerd()
    yield c
    c.stop()
    shutil.rmtree(c.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_mirror_port():
    """The port dockerd's registry-mirrors points at; tests start their mirror on it."""
    return procs.free_port()


@pytest.fixture(scope="session")
def docker_proxy():
    """dockerd's HTTPS proxy. It connects names under .test to 127.0.0.1: dockerd treats every
    registry on 127.0.0.0/8 as insecure (no certificate check), but not one it only knows by a
    name it cannot resolve, so through this proxy a loopback mirror gets a verified TLS pull."""
    p = tlsproxy.ConnectProxy(names={"regcache.test": "127.0.0.1"})
    yield p
    p.stop()


@pytest.fixture(scope="session")
def dockerd(containerd, docker_mirror_port, docker_proxy):
    d = clients.Dockerd(containerd, docker_mirror_port, https_proxy=docker_proxy.url)
    yield d
    d.stop()
    shutil.rmtree(d.dir, ignore_errors=True)
