# SPDX-License-Identifier: Apache-2.0
"""A hostile storage directory and a full disk: links planted in place of shard directories and
blobs, FIFOs planted as blobs, a storage root others can write, running as root, secrets in the
config, the modes of a fresh store, and a fill that would eat the space kept by cache.min_free.

Each test plants its trap, then asserts what the client got, what the upstream saw and what is
left on disk outside the store."""

import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import threading
import time

import pytest
import yaml

import procs
from helpers import wait_until
from mirror import REGCACHE, regcache, request
from rawpush import sha256
from registry_variants import ConfiguredUpstream, start_mirror_with_env
from scripted import Reply, Scripted, digest_of

KiB, MiB = 1024, 1024 * 1024


@pytest.fixture
def scripted():
    up = Scripted()
    yield up
    up.stop()


def hexof(digest):
    return digest.split(":", 1)[1]


def shard_path(m, digest):
    return os.path.join(m.storage, "blobs", "sha256", hexof(digest)[:2])


def serve_refused(m):
    """Runs `regcache serve` on m's config; returns its stderr once it exits (it must, and with
    a failure); one that is still serving after 10 s fails the test."""
    proc = subprocess.Popen([*REGCACHE, "serve", "-c", m.config_path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("regcache started serving on that storage")
    assert proc.returncode != 0, err
    assert "Sanitizer" not in err and "runtime error" not in err, err
    return err


def listing(directory):
    """{name: bytes} of the regular files in directory."""
    out = {}
    for name in sorted(os.listdir(directory)):
        p = os.path.join(directory, name)
        if os.path.isfile(p) and not os.path.islink(p):
            with open(p, "rb") as f:
                out[name] = f.read()
    return out


def outside_dir(tmp_dir, secret):
    """A directory outside the store holding a 0600 secret named like its digest (so that it
    even passes a re-hash) and a victim file."""
    d = os.path.join(tmp_dir, "outside")
    os.makedirs(d)
    p = os.path.join(d, hexof(digest_of(secret)))
    with open(p, "wb") as f:
        f.write(secret)
    os.chmod(p, 0o600)
    with open(os.path.join(d, "victim"), "w") as f:
        f.write("keep me")
    return d


def plant_link(m, digest, target):
    """Plants the link once the mirror's background walk of the store is over (/readyz 200):
    a walk still going would remove it as a stray entry and the test would try nothing."""
    if m.proc is not None:
        procs.wait_for(lambda: procs.http_status(m.port, "/readyz") == 200, 20,
                       "store walked")
    os.makedirs(os.path.join(m.storage, "blobs", "sha256"), exist_ok=True)
    link = shard_path(m, digest)
    if os.path.isdir(link) and not os.path.islink(link):
        shutil.rmtree(link)
    os.symlink(target, link)
    return link


# -- item 12: links -------------------------------------------------------------------------------
def test_get_through_a_symlinked_shard_does_not_serve_a_file_from_outside(
        mirror_factory, scripted, tmp_dir):
    """blobs/sha256/<shard> is a link to a directory holding a 0600 secret under the name of its
    digest: a GET of that digest answers an error or 404, never the secret's bytes."""
    secret = b"root:$6$secret-hash:19000:0:99999:7:::\n"
    outside = outside_dir(tmp_dir, secret)
    before = listing(outside)
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}])
    digest = digest_of(secret)
    plant_link(m, digest, outside)

    s, _, body, _ = m.request("GET", f"/v2/library/app/blobs/{digest}")
    assert s != 200 and secret not in body, (s, body[:200])
    s, h, body, _ = m.request("HEAD", f"/v2/library/app/blobs/{digest}")
    assert s != 200, (s, h)
    assert listing(outside) == before
    assert "symbolic link" in m.log_text()
    assert procs.http_status(m.port, "/healthz") == 200


def test_push_into_a_symlinked_shard_writes_nothing_into_its_target(mirror_factory, scripted,
                                                                     tmp_dir):
    """A hosted push of a blob whose shard directory is a link (think /etc/cron.d) fails, and the
    link's target holds exactly what it held before."""
    outside = outside_dir(tmp_dir, b"unrelated")
    before = listing(outside)
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}], extra={"hosted": ["team/*"]})
    payload = b"* * * * * root /tmp/evil\n"
    digest = sha256(payload)
    plant_link(m, digest, outside)

    s, h, body, _ = m.request("POST", "/v2/team/app/blobs/uploads/")
    assert s == 202, (s, body)
    loc = h["location"]
    sep = "&" if "?" in loc else "?"
    conn = m.conn()
    conn.request("PUT", f"{loc}{sep}digest={digest}", body=payload,
                 headers={"Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status >= 400, resp.status
    assert listing(outside) == before, "the push wrote through the link"
    # a monolithic POST the same
    s, _, body, _ = request(m.port, "POST", f"/v2/team/app/blobs/uploads/?digest={digest}",
                            headers={"Content-Type": "application/octet-stream"}, body=payload)
    assert s >= 400, (s, body)
    assert listing(outside) == before
    assert not os.listdir(os.path.join(m.storage, "tmp"))


def test_startup_reconcile_deletes_nothing_through_a_symlinked_shard(mirror_factory, scripted,
                                                                     tmp_dir):
    """The walk of the store after an unclean stop goes without following links: every file in
    the linked directory survives, the link itself is removed, and the digest is not adopted."""
    secret = b"a file that is not the mirror's"
    outside = outside_dir(tmp_dir, secret)
    os.makedirs(os.path.join(outside, "sub"))
    before = listing(outside)
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}])
    m.proc.kill()  # unclean: the next start walks the store
    m.proc = None
    assert not os.path.exists(os.path.join(m.storage, "clean-shutdown"))
    link = plant_link(m, digest_of(secret), outside)
    mark = len(m.log_text())
    m.start()
    wait_until(lambda: "(walked in the background in" in m.log_text()[mark:], timeout=30,
               what="the walk of the store")

    assert listing(outside) == before, "reconcile deleted files outside the store"
    assert os.path.isdir(os.path.join(outside, "sub"))
    assert not os.path.lexists(link)
    s, _, body, _ = m.request("GET", f"/v2/library/app/blobs/{digest_of(secret)}")
    assert s == 404 and secret not in body, (s, body[:200])


def test_a_linked_blob_is_never_served_and_the_link_target_survives(mirror_factory, scripted,
                                                                    tmp_dir):
    """A blob file that is a link to a file outside: the GET goes to the upstream as for an
    absent blob (the link's bytes are never served), and its target stays."""
    secret = b"linked secret"
    outside = outside_dir(tmp_dir, secret)
    before = listing(outside)
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}])
    digest = digest_of(secret)
    shard = shard_path(m, digest)
    os.makedirs(shard, mode=0o700, exist_ok=True)
    os.symlink(os.path.join(outside, hexof(digest)), os.path.join(shard, hexof(digest)))
    s, _, body, _ = m.request("GET", f"/v2/library/app/blobs/{digest}")
    assert s == 404 and secret not in body, (s, body[:200])
    assert scripted.requests(method="GET", path=r"/blobs/")  # asked upstream instead
    assert listing(outside) == before


# -- item 12: FIFOs -------------------------------------------------------------------------------
def test_fifos_planted_as_blobs_do_not_hang_the_thread_pool(mirror_factory, scripted):
    """20 FIFOs (more than the 16 pool threads) planted under blob names: each GET answers
    (404: treated as absent) and a real cold blob is still fetched and served."""
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}])
    real = os.urandom(64 * KiB)
    real_digest = scripted.blob(real)
    fifos = []
    for i in range(20):
        d = digest_of(b"fifo %d" % i)
        shard = shard_path(m, d)
        os.makedirs(shard, mode=0o700, exist_ok=True)
        p = os.path.join(shard, hexof(d))
        os.mkfifo(p, 0o600)
        fifos.append((d, p))
    results = {}

    def get_one(d):
        try:
            results[d] = m.request("GET", f"/v2/library/app/blobs/{d}", timeout=8)[0]
        except (OSError, TimeoutError) as e:
            results[d] = repr(e)

    try:
        threads = [threading.Thread(target=get_one, args=(d,)) for d, _ in fifos]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert all(results.get(d) == 404 for d, _ in fifos), results
        s, _, body, _ = m.request("GET", f"/v2/library/app/blobs/{real_digest}", timeout=8)
        assert s == 200 and body == real
    finally:
        for _, p in fifos:  # release pool threads a broken mirror left waiting on them
            try:
                os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


# -- item 12: modes of the storage root -----------------------------------------------------------
@pytest.mark.parametrize("mode,who", [(0o777, "all users"), (0o770, "its group"),
                                      (0o1777, "all users")], ids=["0777", "0770", "1777"])
def test_a_storage_root_others_can_write_is_refused(mirror_factory, scripted, mode, who):
    """Like sshd's StrictModes: serve refuses to start on a storage root a group or everybody can
    write, naming the path and its mode; nothing is created in it."""
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}], start=False)
    os.makedirs(m.storage)
    os.chmod(m.storage, mode)
    err = serve_refused(m)
    assert m.storage in err and f"{mode:04o}" in err and who in err, err
    assert not os.path.exists(os.path.join(m.storage, "regcache.db"))


def test_a_writable_parent_of_the_storage_root_is_refused(mirror_factory, scripted, tmp_dir):
    """A parent others can write (and not sticky, unlike /tmp) lets them swap the root: refused."""
    parent = os.path.join(tmp_dir, "shared")
    os.makedirs(parent)
    os.chmod(parent, 0o777)
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}], start=False)
    with open(m.config_path) as f:
        cfg = yaml.safe_load(f)
    cfg["storage"] = os.path.join(parent, "store")
    with open(m.config_path, "w") as f:
        yaml.safe_dump(cfg, f)
    err = serve_refused(m)
    assert parent in err and "0777" in err, err


# -- item 12: privileges ----------------------------------------------------------------------------
def status_ids(pid):
    ids = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid"):
                ids[key] = [int(v) for v in value.split()]
    return ids


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_user_drops_privileges_after_binding(scripted):
    """`user: nobody`: the process runs as nobody (real, effective, saved and filesystem uid and
    gid), the storage root it creates and the database belong to nobody, and it serves a fill."""
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="rc-user-", dir="/tmp")
    os.chmod(base, 0o755)  # nobody must reach its storage
    proc = None
    try:
        port = procs.free_port()
        storage = os.path.join(base, "store")
        config = os.path.join(base, "mirror.yml")
        with open(config, "w") as f:
            yaml.safe_dump({"listen": f"127.0.0.1:{port}", "storage": storage, "user": "nobody",
                            "upstreams": [{"name": "docker.io", "url": scripted.url}]}, f)
        os.chmod(config, 0o600)  # read before dropping: only root can read it
        data = os.urandom(32 * KiB)
        digest = scripted.blob(data)
        proc = procs.Proc([*REGCACHE, "serve", "-c", config], os.path.join(base, "log"))
        procs.wait_for(lambda: procs.http_status(port, "/healthz") == 200, 20, "regcache",
                       proc=proc)
        ids = status_ids(proc.pid)
        assert ids["Uid"] == [nobody.pw_uid] * 4, ids
        assert ids["Gid"] == [nobody.pw_gid] * 4, ids
        s, _, body, _ = request(port, "GET", f"/v2/library/app/blobs/{digest}")
        assert s == 200 and body == data
        st = os.stat(storage)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, 0o700)
        assert os.stat(os.path.join(storage, "regcache.db")).st_uid == nobody.pw_uid
        with open(os.path.join(base, "log")) as f:
            log = f.read()
        assert "running as user nobody" in log and "running as root" not in log
        proc.send_signal(15)
        assert proc.wait(15) == 0, proc.tail()
        proc = None
    finally:
        if proc:
            proc.send_signal(15)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as root to see the warning")
def test_running_as_root_without_user_warns(mirror_factory, scripted):
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}])
    assert "running as root" in m.log_text()


def test_user_that_does_not_exist_is_a_config_error(mirror_factory, scripted):
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}], start=False,
                       extra={"user": "no-such-user-here"})
    r = regcache("check-config", "-c", m.config_path)
    assert r.returncode != 0
    assert "regcache.yml:" in r.stderr and "user: no such user 'no-such-user-here'" in r.stderr, \
        r.stderr


# -- item 18: modes of a fresh store ----------------------------------------------------------------
def test_a_fresh_store_is_private(mirror_factory, scripted):
    """Whatever the umask (here 000 for the mirror), the storage root and every directory in it
    are 0700, blobs, the database and its WAL files 0600."""
    data = os.urandom(16 * KiB)
    digest = scripted.blob(data)
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}], start=False)
    old = os.umask(0)
    try:
        m.start()
    finally:
        os.umask(old)
    s, _, body, _ = m.request("GET", f"/v2/library/app/blobs/{digest}")
    assert s == 200 and body == data
    assert m.stop() == 0
    bad = []
    for top, dirs, files in os.walk(m.storage):
        for d in dirs:
            p = os.path.join(top, d)
            if stat.S_IMODE(os.lstat(p).st_mode) != 0o700:
                bad.append((p, oct(os.lstat(p).st_mode)))
        for name in files:
            p = os.path.join(top, name)
            if stat.S_IMODE(os.lstat(p).st_mode) != 0o600:
                bad.append((p, oct(os.lstat(p).st_mode)))
    assert stat.S_IMODE(os.stat(m.storage).st_mode) == 0o700, oct(os.stat(m.storage).st_mode)
    assert os.path.exists(m.file_for(digest))
    assert os.path.exists(os.path.join(m.storage, "regcache.db"))
    assert not bad, bad


# -- item 18: password_file -------------------------------------------------------------------------
@pytest.fixture
def cleanup():
    fns = []
    yield fns
    for fn in reversed(fns):
        fn()


@pytest.fixture
def basic_up(tmp_dir, token_server, cleanup, make_image, push):
    up = ConfiguredUpstream(os.path.join(tmp_dir, "up"), token_server, "basic")
    up.use_htpasswd({"pushuser": "pushpass", "mirroruser": "mirrorpass"}).start()
    cleanup.append(up.stop)
    img = push(make_image(1801, (16 * KiB,)), up, "library/basic", "v1")
    return up, img


def write_secret(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def pull_manifest_ok(m, img):
    s, _, body, _ = m.request("GET", "/v2/library/basic/manifests/v1",
                              headers={"Accept": img.media_type})
    assert s == 200 and body == img.raw, (s, body[:200])


def test_password_file_relative_to_the_config(basic_up, mirror_factory):
    """password_file: secret.txt (next to the config, 0600, ending in a newline) logs in to a
    Basic-auth upstream; nothing warns."""
    up, img = basic_up
    m = mirror_factory([{"name": "docker.io", "url": up.url, "username": "mirroruser",
                         "password_file": "secret.txt"}], start=False)
    write_secret(os.path.join(m.dir, "secret.txt"), "mirrorpass\n")
    m.start()
    pull_manifest_ok(m, img)
    assert "can be read by all users" not in m.log_text()


def test_password_file_from_systemd_credentials(basic_up, mirror_factory, tmp_dir):
    """password_file: %d/upstream-pass reads $CREDENTIALS_DIRECTORY/upstream-pass, as systemd's
    LoadCredential= provides it."""
    up, img = basic_up
    creds = os.path.join(tmp_dir, "credentials")
    os.makedirs(creds, mode=0o700)
    write_secret(os.path.join(creds, "upstream-pass"), "mirrorpass", 0o400)
    m = mirror_factory([{"name": "docker.io", "url": up.url, "username": "mirroruser",
                         "password_file": "%d/upstream-pass"}], start=False)
    start_mirror_with_env(m, {"CREDENTIALS_DIRECTORY": creds})
    pull_manifest_ok(m, img)
    r = regcache("check-config", "-c", m.config_path)
    assert r.returncode != 0 and "CREDENTIALS_DIRECTORY" in r.stderr, r.stderr
    assert "regcache.yml:" in r.stderr and "upstreams[0].password_file" in r.stderr, r.stderr


def test_password_file_errors_name_file_line_and_key(mirror_factory, scripted):
    m = mirror_factory([{"name": "docker.io", "url": scripted.url, "username": "u",
                         "password_file": "missing.txt"}], start=False)
    r = regcache("check-config", "-c", m.config_path)
    assert r.returncode != 0
    assert "regcache.yml:" in r.stderr and "upstreams[0].password_file: cannot read" in r.stderr \
        and "missing.txt" in r.stderr, r.stderr
    # world-readable: a warning naming the file, line and key, and it still loads
    write_secret(os.path.join(m.dir, "missing.txt"), "pw\n", 0o644)
    r = regcache("check-config", "-c", m.config_path)
    assert r.returncode == 0, r.stderr
    assert "upstreams[0].password_file" in r.stderr and "can be read by all users" in r.stderr \
        and "0644" in r.stderr, r.stderr
    # empty, or both given
    write_secret(os.path.join(m.dir, "missing.txt"), "\n")
    r = regcache("check-config", "-c", m.config_path)
    assert r.returncode != 0 and "is empty" in r.stderr, r.stderr


def test_inline_password_in_a_world_readable_config_warns(mirror_factory, scripted):
    m = mirror_factory([{"name": "docker.io", "url": scripted.url, "username": "u",
                         "password": "p"}], start=False)
    os.chmod(m.config_path, 0o644)
    r = regcache("check-config", "-c", m.config_path)
    assert r.returncode == 0, r.stderr
    assert "upstreams[0].password" in r.stderr and "password_file" in r.stderr, r.stderr
    os.chmod(m.config_path, 0o600)
    r = regcache("check-config", "-c", m.config_path)
    assert "password_file" not in r.stderr, r.stderr


# -- item 16: cache.min_free while writing ----------------------------------------------------------
@pytest.fixture
def small_fs(tmp_dir):
    """A 24 MiB tmpfs (mode 0700) for the storage; skipped where mounting is not allowed."""
    mnt = os.path.join(tmp_dir, "fs")
    os.makedirs(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", mnt],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", mnt], capture_output=True)


def free_bytes(path):
    v = os.statvfs(path)
    return v.f_bavail * v.f_frsize


def chunked(data, piece=64 * KiB):
    out = bytearray()
    for i in range(0, len(data), piece):
        part = data[i:i + piece]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


def mirror_on(mirror_factory, scripted, storage, extra=None):
    m = mirror_factory([{"name": "docker.io", "url": scripted.url}], start=False,
                       extra={"cache": {"min_free": "14MiB"}, **(extra or {})})
    with open(m.config_path) as f:
        cfg = yaml.safe_load(f)
    cfg["storage"] = storage
    with open(m.config_path, "w") as f:
        yaml.safe_dump(cfg, f)
    m.storage = storage
    return m.start()


@pytest.mark.parametrize("length", ["chunked", "content-length"])
def test_a_fill_stops_at_min_free(mirror_factory, scripted, small_fs, length):
    """On a 24 MiB filesystem with cache.min_free 14MiB, a 12 MiB blob (announced or not) does
    not fit above the reserve: the client gets an error rather than the blob, no partial file
    is left, the free space never went below what min_free keeps (give or take one check
    interval), and a small blob afterwards is stored and served, its index row saved."""
    big = os.urandom(12 * MiB)
    digest = digest_of(big)
    headers = [("Content-Type", "application/octet-stream")]
    if length == "chunked":
        scripted.route("GET", rf"/v2/.+/blobs/{digest}", lambda req: Reply(
            200, [*headers, ("Transfer-Encoding", "chunked")], chunked(big)))
    else:
        scripted.blob(big)
    m = mirror_on(mirror_factory, scripted, small_fs)
    lowest = [free_bytes(small_fs)]
    done = threading.Event()

    def watch():
        while not done.is_set():
            lowest[0] = min(lowest[0], free_bytes(small_fs))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        try:
            s, _, body, _ = m.request("GET", f"/v2/library/app/blobs/{digest}", timeout=30)
        except Exception as e:  # noqa: BLE001 - a response cut short is an error too
            s, body = repr(e), b""
    finally:
        done.set()
        watcher.join()
    whole = body == big
    assert not whole, "the whole blob was stored past min_free"
    assert s != 200 or len(body) < len(big), s
    assert scripted.requests(method="GET", path=r"/blobs/")
    assert not os.path.exists(m.file_for(digest))
    assert os.listdir(os.path.join(small_fs, "tmp")) == []
    assert lowest[0] >= 14 * MiB - 2 * MiB, f"free space went down to {lowest[0]} bytes"

    small = os.urandom(64 * KiB)
    sd = scripted.blob(small)
    s, _, body, _ = m.request("GET", f"/v2/library/app/blobs/{sd}")
    assert s == 200 and body == small
    assert m.stop() == 0
    db = sqlite3.connect(os.path.join(small_fs, "regcache.db"))
    try:
        assert db.execute("SELECT count(*) FROM blobs WHERE digest = ?", (sd,)).fetchone() == (1,)
    finally:
        db.close()


def test_a_push_stops_at_min_free(mirror_factory, scripted, small_fs):
    """A hosted push of a 12 MiB blob onto the same filesystem (24 MiB, min_free 14MiB) is
    refused with an error, leaves no partial upload behind, and a small push afterwards works."""
    m = mirror_on(mirror_factory, scripted, small_fs, extra={"hosted": ["team/*"]})
    big = os.urandom(12 * MiB)
    digest = sha256(big)
    try:
        s, _, body, _ = request(m.port, "POST", f"/v2/team/app/blobs/uploads/?digest={digest}",
                                headers={"Content-Type": "application/octet-stream"}, body=big,
                                timeout=30)
    except OSError as e:  # the mirror may close the connection before reading it all
        s, body = repr(e), b""
    assert s != 201 and s != 202, (s, body[:300])
    assert not os.path.exists(m.file_for(digest))
    assert os.listdir(os.path.join(small_fs, "tmp")) == []
    assert free_bytes(small_fs) >= 14 * MiB
    small = os.urandom(16 * KiB)
    s, _, body, _ = request(m.port, "POST",
                            f"/v2/team/app/blobs/uploads/?digest={sha256(small)}",
                            headers={"Content-Type": "application/octet-stream"}, body=small)
    assert s == 201, (s, body)
