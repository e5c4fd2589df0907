# SPDX-License-Identifier: Apache-2.0
"""prefetch: a list of tag globs and digests kept warm on a schedule, within the pull budget,
with the upstream's access log as the witness: HEADs for tags that did not move, GETs only for
what changed, never below the reserve of ratelimit-remaining, nothing at all while the upstream
is down; what it keeps is pinned against the size cap; `regcache prefetch` runs it once."""

import hashlib
import json
import os
import re

import pytest

from faultproxy import FaultProxy
from helpers import get, since, wait_until
from helpers import stored_digests as stored
from images import ACCEPT_ALL
from mirror import regcache
from upstream import blob_gets, count

ACCEPT = ", ".join(ACCEPT_ALL)
RUN_RE = re.compile(r"prefetch \((scheduled|command)\): (\d+) references, (\d+) tags checked, "
                    r"(\d+) HEADs, (\d+) GETs, (\d+) blobs .*?; (\w+)(.*)")


def everything(img):
    return {img.digest, *[m.digest for m in img.manifests], *img.blob_digests}


def runs(mirror):
    """Every prefetch run the mirror logged, as match objects."""
    return [m for m in (RUN_RE.search(l) for l in mirror.log_text().splitlines()) if m]


def wait_runs(mirror, n, timeout=30):
    wait_until(lambda: len(runs(mirror)) >= n, timeout=timeout, what=f"{n} prefetch runs")
    return runs(mirror)


def manifest_requests(reqs):
    return [(m, p) for m, p, st in reqs if "/manifests/" in p and st != 401]


def test_glob_and_digest_kept_warm_across_a_tag_move(mirror_factory, up, make_image, push):
    """prefetch [library/pg:16*, library/fixed@<digest>] every 2s: the first runs fetch both
    16.x images and the digest's, not 15; later rounds send only HEADs for the tags (no manifest
    or blob GET); a push moving 16.2 costs one manifest GET and only its new blobs; with the
    upstream stopped, the mirror answers 16.2 with the new digest."""
    a = push(make_image(1401, (64 * 1024,)), up, "library/pg", "16.1")
    b = push(make_image(1402, (64 * 1024, 16 * 1024)), up, "library/pg", "16.2")
    old = push(make_image(1403, (32 * 1024,)), up, "library/pg", "15")
    fixed = push(make_image(1404, (48 * 1024,), multi_arch=True), up, "library/fixed", "v1")
    m = mirror_factory([up], extra={"prefetch": {
        "references": ["library/pg:16*", f"library/fixed@{fixed.digest}"], "schedule": "2s"}})
    wait_until(lambda: everything(a) | everything(b) | everything(fixed) <= stored(m),
               timeout=30, what="the listed images in the store")
    assert not (everything(old) - everything(a) - everything(b)) & stored(m)

    n = len(wait_runs(m, 2))
    mark = up.mark()
    wait_runs(m, n + 3)
    reqs = since(up, mark)
    mreqs = manifest_requests(reqs)
    assert mreqs, "no tag was revalidated"
    assert all(meth == "HEAD" for meth, _ in mreqs), mreqs
    assert {p.rsplit("/", 1)[1] for _, p in mreqs} <= {"16.1", "16.2"}, mreqs
    assert not blob_gets(reqs), reqs

    new = push(make_image(1405, (64 * 1024, 24 * 1024)), up, "library/pg", "16.2")
    mark = up.mark()
    wait_until(lambda: everything(new) <= stored(m), timeout=30, what="the moved tag's image")
    n = len(runs(m))
    wait_runs(m, n + 1)  # the run that fetched it has ended
    reqs = since(up, mark)
    gets = [p for meth, p in manifest_requests(reqs) if meth == "GET"]
    assert gets == ["/v2/library/pg/manifests/16.2"], gets
    fetched = set(blob_gets(reqs))
    assert fetched <= set(new.blob_digests) - set(b.blob_digests) - set(a.blob_digests), fetched

    up.stop()
    try:
        s, h, body = get(m, "/v2/library/pg/manifests/16.2", headers={"Accept": ACCEPT})
        assert s == 200
        assert "sha256:" + hashlib.sha256(body).hexdigest() == new.digest
    finally:
        up.start()


@pytest.fixture
def budget_proxy(up):
    """A FaultProxy in front of `up` announcing a pull budget of 100 that falls by one with
    every manifest GET (as Docker Hub counts pulls)."""
    p = FaultProxy(up.port)
    state = {"remaining": 100}

    def headers_for(method, path):
        if method == "GET" and "/manifests/" in path:
            state["remaining"] -= 1
        return [("ratelimit-limit", "100;w=21600"),
                ("ratelimit-remaining", f"{state['remaining']};w=21600")]

    p.headers_for = headers_for
    p.state = state
    yield p
    p.stop()


def proxy_manifest_gets(proxy):
    return sum(1 for m, p, st in proxy.requests() if m == "GET" and "/manifests/" in p
               and st != 401)


def test_prefetch_never_spends_the_reserve_and_the_lan_still_pulls(mirror_factory, up,
                                                                   budget_proxy, make_image,
                                                                   push):
    """The upstream announces 100 pulls left, one less per manifest GET; prefetch of 8 images
    with reserve 96: it stops with ratelimit-remaining at 96 (4 manifest GETs at most), says so,
    and a client's own pull of another image still gets through."""
    imgs = [push(make_image(1410 + i, (8 * 1024,)), up, "library/many", f"t{i}")
            for i in range(8)]
    lan = push(make_image(1420, (8 * 1024,)), up, "library/lan", "v1")
    m = mirror_factory([{"name": "docker.io", "url": budget_proxy.url}], extra={"prefetch": {
        "references": ["library/many:t*"], "schedule": "2s", "reserve": 96}})
    wait_until(lambda: any(r.group(7) == "budget" for r in runs(m)), timeout=30,
               what="a run stopped by the budget")
    n = len(runs(m))
    wait_runs(m, n + 2)  # more rounds spend nothing more
    assert budget_proxy.state["remaining"] >= 96, budget_proxy.state
    assert proxy_manifest_gets(budget_proxy) <= 4
    assert "reserve" in [r for r in runs(m) if r.group(7) == "budget"][0].group(8)
    assert sum(everything(i) <= stored(m) for i in imgs) < len(imgs)
    s, _, body = get(m, "/v2/library/lan/manifests/v1", headers={"Accept": ACCEPT})
    assert s == 200, body[:200]
    assert "sha256:" + hashlib.sha256(body).hexdigest() == lan.digest


def test_max_pulls_per_window_bounds_a_run(mirror_factory, up, make_image, push):
    """max_pulls_per_window 2 with a schedule of 20s: the run fetches two of five tags, stops
    for the budget, and the upstream saw exactly two manifest GETs."""
    for i in range(5):
        push(make_image(1430 + i, (8 * 1024,)), up, "library/capped", f"t{i}")
    mark = up.mark()
    m = mirror_factory([up], extra={"prefetch": {
        "references": ["library/capped:t*"], "schedule": "20s", "max_pulls_per_window": 2}})
    r = wait_runs(m, 1, timeout=40)[0]
    assert r.group(7) == "budget" and "max_pulls_per_window" in r.group(8), r.group(0)
    assert r.group(5) == "2", r.group(0)
    reqs = since(up, mark)
    assert count(reqs, method="GET", kind="manifests") == 2, reqs


def test_nothing_is_asked_of_a_down_upstream(mirror_factory, up, make_image, push):
    """The upstream (behind a proxy that logs every request) stops, and a client's request
    marks it down: the next prefetch runs are skipped saying so, and no request for a manifest,
    blob or tags list reaches the proxy from them (only the health probe's /v2/)."""
    img = push(make_image(1440, (8 * 1024,)), up, "library/downed", "v1")
    proxy = FaultProxy(up.port)
    try:
        m = mirror_factory([{"name": "docker.io", "url": proxy.url}], extra={"prefetch": {
            "references": ["library/downed:v1"], "schedule": "2s"}})
        wait_until(lambda: everything(img) <= stored(m), timeout=30, what="the image")
        up.stop()
        try:
            get(m, "/v2/library/other/manifests/v1", headers={"Accept": ACCEPT})
            wait_until(lambda: any(r.group(7) == "down" for r in runs(m)), timeout=30,
                       what="a run skipped for the upstream being down")
            seen = len(proxy.requests())
            n = len(runs(m))
            wait_runs(m, n + 2)
            later = [r for r in runs(m)[n:]]
            assert all(r.group(7) == "down" and r.group(4) == "0" and r.group(5) == "0"
                       for r in later), [r.group(0) for r in later]
            asked = [(meth, p) for meth, p, _ in proxy.requests()[seen:]
                     if p.split("?")[0] != "/v2/"]
            assert asked == [], asked
        finally:
            up.start()
    finally:
        proxy.stop()


def test_prefetched_content_survives_a_size_cap(mirror_factory, up, make_image, push):
    """cache.max_size 1KiB: an image a client pulled is evicted, the prefetched one stays whole
    (its index, every platform and every blob)."""
    kept = push(make_image(1450, (64 * 1024,), multi_arch=True), up, "library/warm", "v1")
    other = push(make_image(1451, (64 * 1024,)), up, "library/cold", "v1")
    m = mirror_factory([up], extra={"cache": {"max_size": "1KiB", "gc_interval": "1s"},
                                    "prefetch": {"references": ["library/warm:v1"],
                                                 "schedule": "2s"}})
    wait_until(lambda: everything(kept) <= stored(m), timeout=30, what="the prefetched image")
    s, _, body = get(m, "/v2/library/cold/manifests/v1", headers={"Accept": ACCEPT})
    assert s == 200
    for d in other.blob_digests:
        assert get(m, f"/v2/library/cold/blobs/{d}", accept=False)[0] == 200
    wait_until(lambda: not everything(other) & stored(m), timeout=20, what="the cold image evicted")
    assert everything(kept) <= stored(m)


def test_each_run_is_recorded_and_shown_by_stats(mirror_factory, up, make_image, push):
    """Two tags under a glob, a schedule of 3s, for three runs: then, with the daemon stopped
    (every run it logged has been written), `regcache stats --json` has the last run as the log
    line says it, and totals whose manifest GETs, HEADs and blob GETs are what the upstream's
    access log shows (bytes: the blobs it sent); the text form says the same."""
    a = push(make_image(1460, (24 * 1024,)), up, "library/rec", "t1")
    b = push(make_image(1461, (16 * 1024, 8 * 1024)), up, "library/rec", "t2")
    mark = up.mark()
    m = mirror_factory([up], extra={"prefetch": {"references": ["library/rec:t*"],
                                                 "schedule": "3s"}})
    wait_runs(m, 3, timeout=60)
    assert m.stop() == 0
    logged = runs(m)
    reqs = since(up, mark)
    st = json.loads(regcache("stats", "-c", m.config_path, "--json").stdout)["prefetch"]
    last, totals = st["last_run"], st["totals"]
    r = logged[-1]
    assert last["trigger"] == "scheduled" and last["upstreams"] == "docker.io"
    assert (last["references"], last["tags"], last["heads"], last["gets"], last["blobs"],
            last["result"]) == (int(r.group(2)), int(r.group(3)), int(r.group(4)),
                                int(r.group(5)), int(r.group(6)), r.group(7)), (last, r.group(0))
    assert last["result"] == "ok" and last["stopped"] is None and last["error"] is None
    assert last["tags"] == 2 and last["gets"] == 0 and last["blobs"] == 0, last
    assert totals["runs"] == len(logged) and totals["stopped"] == 0
    assert totals["gets"] == count(reqs, method="GET", kind="manifests") == 2, (totals, reqs)
    assert totals["heads"] == count(reqs, method="HEAD", kind="manifests"), (totals, reqs)
    assert totals["heads"] == sum(int(x.group(4)) for x in logged) >= 2 * (len(logged) - 1)
    fetched = blob_gets(reqs)
    assert all(n == 1 for n in fetched.values()), fetched
    assert set(fetched) == set(a.blob_digests) | set(b.blob_digests)
    assert totals["blobs"] == len(fetched)
    sizes = {**a.blobs, **b.blobs}
    assert totals["bytes"] == sum(len(sizes[d]) for d in fetched)
    assert totals["tags"] == 2 * len(logged) and totals["errors"] == 0
    text = regcache("stats", "-c", m.config_path).stdout
    assert re.search(r"last prefetch run: \S+ \(scheduled, docker\.io; \d+ ms\)", text), text
    assert (f"2 tags checked, {last['heads']} HEADs, 0 GETs, 0 blobs (0 B), 0 errors; ok"
            in text), text
    assert re.search(rf"prefetch totals: +{len(logged)} runs \(0 stopped early\) since \S+: "
                     rf"{2 * len(logged)} tags checked, {totals['heads']} HEADs, 2 GETs, "
                     rf"{len(fetched)} blobs", text), text


def prefetch_cmd(m, *refs):
    return regcache("prefetch", *refs, "-c", m.config_path, timeout=120)


def on_pty(*args):
    """Runs regcache with args on a terminal (a pty from script(1)): (status, output bytes)."""
    import shlex
    import subprocess
    from mirror import REGCACHE
    cmd = " ".join(shlex.quote(x) for x in [*REGCACHE, *args])
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def test_prefetch_command_warms_then_costs_only_heads(mirror_factory, up, make_image, push):
    """`regcache prefetch` of an unlisted multi-arch tag against the running daemon: on a pty it
    draws a progress line and prints the run's figures, exits 0, and every manifest and blob is
    in the store, each fetched once; run again with nothing changed, the upstream's access log
    shows one manifest HEAD and nothing else for it; stats records it as a command run; the
    socket is the daemon user's only (0600); the unlisted tag is not pinned."""
    img = push(make_image(1480, (96 * 1024, 32 * 1024), multi_arch=True), up, "library/cmd",
               "v1")
    m = mirror_factory([up], revalidate_after="0s")
    sock = os.path.join(m.storage, "prefetch.sock")
    st = os.stat(sock)
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == os.getuid(), oct(st.st_mode)
    mark = up.mark()
    status, out = on_pty("prefetch", "library/cmd:v1", "-c", m.config_path)
    assert status == 0, out
    assert b"\r\x1b[Kprefetch docker.io/library/cmd" in out, out
    n_blobs = len(img.blob_digests)
    assert (f"prefetch (command): 1 references, 1 tags checked, 0 HEADs, "
            f"{1 + len(img.manifests)} GETs, {n_blobs} blobs").encode() in out, out
    assert everything(img) <= stored(m)
    reqs = [r for r in since(up, mark) if "/library/cmd/" in r[1]]
    assert count(reqs, method="GET", kind="manifests") == 1 + len(img.manifests), reqs
    fetched = blob_gets(reqs)
    assert set(fetched) == set(img.blob_digests) and set(fetched.values()) == {1}, fetched

    mark = up.mark()
    r = prefetch_cmd(m, "docker.io/library/cmd:v1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "\r" not in r.stdout + r.stderr  # no progress line when piped
    assert ("1 tags checked, 1 HEADs, 0 GETs, 0 blobs (0 B), 0 errors; ok"
            in r.stdout), r.stdout
    reqs = [(meth, p) for meth, p, s in since(up, mark) if s != 401 and "/library/cmd/" in p]
    assert reqs == [("HEAD", "/v2/library/cmd/manifests/v1")], reqs
    wait_until(lambda: json.loads(regcache("stats", "-c", m.config_path, "--json").stdout)
               ["prefetch"]["totals"]["runs"] == 2, timeout=10, what="both runs recorded")
    last = json.loads(regcache("stats", "-c", m.config_path, "--json").stdout)["prefetch"]
    assert last["last_run"]["trigger"] == "command" and last["last_run"]["heads"] == 1, last
    assert last["totals"]["gets"] == 1 + len(img.manifests), last
    listing = regcache("ls", "-c", m.config_path).stdout
    assert "library/cmd" in listing and "PINNED" not in listing, listing  # warmed, not pinned


def test_prefetch_command_budget_bad_references_and_no_daemon(mirror_factory, up, make_image,
                                                              push, tmp_dir):
    """max_pulls_per_window 1 and a glob of three tags: the command exits 1 saying the budget
    stopped it, and the upstream saw one manifest GET. A reference that does not parse exits 2
    naming it, as does a request straight to the socket (the daemon checks too); with no daemon
    on the storage directory the command exits 2 saying so."""
    for i in range(3):
        push(make_image(1490 + i, (8 * 1024,)), up, "library/few", f"t{i}")
    m = mirror_factory([up], extra={"prefetch": {"max_pulls_per_window": 1}})
    mark = up.mark()
    r = prefetch_cmd(m, "library/few:t*")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "; budget: stopped, max_pulls_per_window" in r.stdout, r.stdout
    assert count(since(up, mark), method="GET", kind="manifests") == 1

    r = prefetch_cmd(m, "library/Bad_Name:v1")
    assert r.returncode == 2 and "library/Bad_Name" in r.stderr, r.stderr
    r = prefetch_cmd(m, "library/ok:v1", "library/ok:v1:v2")
    assert r.returncode == 2 and "library/ok:v1:v2" in r.stderr, r.stderr
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(os.path.join(m.storage, "prefetch.sock"))
    s.sendall(b"library/UPPER:x\n\n")
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        answer += chunk
    s.close()
    assert answer.startswith(b"error bad ") and b"UPPER" in answer, answer

    cfg = os.path.join(tmp_dir, "nodaemon.yml")
    with open(cfg, "w") as f:
        f.write(f"storage: {os.path.join(tmp_dir, 'empty-store')}\n"
                f"upstreams:\n  - name: docker.io\n    url: {up.url}\n")
    r = regcache("prefetch", "library/few:t0", "-c", cfg)
    assert r.returncode == 2 and "no daemon is running" in r.stderr, r.stderr


def test_prefetch_socket_refuses_another_user(mirror_factory, up, make_image, push):
    """Another user (nobody), with the directories open to it: the 0600 socket refuses its
    connect; made 0666, the daemon still answers nothing (the peer's uid is checked), logs the
    refusal, and nothing is fetched."""
    import subprocess
    push(make_image(1495, (8 * 1024,)), up, "library/theirs", "v1")
    m = mirror_factory([up])
    sock = os.path.join(m.storage, "prefetch.sock")
    d = m.storage
    while d != "/tmp":
        os.chmod(d, os.stat(d).st_mode | 0o711)
        d = os.path.dirname(d)
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "s.settimeout(10)\n"
             "try:\n"
             "    s.connect(sys.argv[1])\n"
             "except OSError as e:\n"
             "    print('connect:', e.strerror); sys.exit(0)\n"
             "try:\n"
             "    s.sendall(b'library/theirs:v1\\n\\n')\n"
             "    got = s.recv(4096)\n"
             "except (ConnectionResetError, BrokenPipeError):\n"
             "    got = b''\n"
             "print('answer:', repr(got))\n")

    def as_nobody():
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "/usr/bin/python3", "-c", probe, sock], capture_output=True,
                              text=True, timeout=30)
    mark = up.mark()
    r = as_nobody()
    assert r.stdout.strip() == "connect: Permission denied", r.stdout + r.stderr
    os.chmod(sock, 0o666)
    r = as_nobody()
    assert r.stdout.strip() == "answer: b''", r.stdout + r.stderr
    wait_until(lambda: "refused a connection" in m.log_text(), timeout=10, what="the refusal")
    assert [p for _, p, _ in since(up, mark) if "/library/theirs/" in p] == []
