# SPDX-License-Identifier: Apache-2.0
"""Moving from registry:2: `regcache import-registry` adopts the storage of a docker-registry
that ran in proxy mode (filled by real pulls through it), `regcache convert-config` turns its
config.yml into a mirror.yml. The upstream's access log shows what the import saved."""

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import time

import pytest
import yaml

import clients
import procs
from helpers import get, since
from images import skopeo, verify_oci_layout
from mirror import REGCACHE, regcache
from upstream import blob_gets, count

PROXY_CONFIG = """\
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
  secret: proxy-test-secret
proxy:
  remoteurl: {remote}
  username: pushuser
  password: pushpass
"""


class ProxyCache:
    """A docker-registry in proxy mode in front of the upstream fixture (the users' setup),
    its storage in directory/storage; pulls go through it with skopeo."""

    def __init__(self, directory, upstream):
        self.dir = directory
        self.root = os.path.join(directory, "storage")
        self.v2 = os.path.join(self.root, "docker", "registry", "v2")
        self.port = procs.free_port()
        self.config = os.path.join(directory, "config.yml")
        os.makedirs(directory, exist_ok=True)
        with open(self.config, "w") as f:
            f.write(PROXY_CONFIG.format(root=self.root, port=self.port, remote=upstream.url))
        self.proc = procs.Proc(["docker-registry", "serve", self.config],
                               os.path.join(directory, "registry.log"))
        procs.wait_for(lambda: procs.http_status(self.port) in (200, 401), 20,
                       f"proxying docker-registry on :{self.port}", proc=self.proc)

    def pull(self, ref, all_platforms=True):
        out = os.path.join(self.dir, "pulled-" + re.sub(r"[^a-z0-9]", "_", ref))
        extra = ["--all"] if all_platforms else []
        clients.run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", *extra,
                     f"docker://127.0.0.1:{self.port}/{ref}", f"oci:{out}:latest"])
        return out

    def data(self, digest):
        hexd = digest.split(":", 1)[1]
        return os.path.join(self.v2, "blobs", "sha256", hexd[:2], hexd, "data")

    def stop(self, digests):
        """Stops it once every digest's data file is there (blobs are stored as they stream)."""
        procs.wait_for(lambda: all(os.path.exists(self.data(d)) for d in digests), 30,
                       "the proxy cache to store every blob")
        self.proc.stop(timeout=10)


def fill_proxy_cache(tmp_dir, up, make_image, push):
    """Three images pushed to the upstream and pulled through a proxying docker-registry: a
    Docker image, a multi-platform OCI index (all platforms) and a Docker list pulled for one
    platform only (as most pulls are). Returns (cache, [(image, ref, all_platforms, digests)])."""
    a = push(make_image(9100, (96 * 1024, 32 * 1024)), up, "library/alpine", "3.19")
    b = push(make_image(9101, (64 * 1024,), fmt="oci", multi_arch=True), up, "org/team/app", "v1")
    c = push(make_image(9102, (48 * 1024,), multi_arch=True), up, "library/busybox", "1.36")
    cache = ProxyCache(os.path.join(tmp_dir, "registry2"), up)
    pulled = []
    for img, all_platforms in ((a, True), (b, True), (c, False)):
        ref = f"{img.repo}:{img.tag}"
        cache.pull(ref, all_platforms)
        if all_platforms:
            digests = [img.digest] + [m.digest for m in img.manifests] + img.blob_digests
        else:
            m = img.manifest_for("amd64")
            digests = [img.digest, m.digest, m.config.digest] + [l.digest for l in m.layers]
        pulled.append((img, ref, all_platforms, digests))
    cache.stop([d for p in pulled for d in p[3]])
    return cache, pulled


def import_registry(*args, timeout=120):
    return regcache("import-registry", *args, timeout=timeout)


def summary(out):
    """The figures of the summary line."""
    m = re.search(r"import-registry: (\d+) repositories \((\d+) hosted\), (\d+) tags \((\d+) new\), "
                  r"(\d+) manifests \((\d+) new\), blobs (\d+) linked \([^)]*\), (\d+) copied "
                  r"\([^)]*\), (\d+) already present, (\d+) skipped corrupt, (\d+) missing", out)
    assert m, out
    keys = ["repos", "hosted", "tags", "tags_new", "manifests", "manifests_new", "linked",
            "copied", "present", "corrupt", "missing"]
    return dict(zip(keys, map(int, m.groups())))


def pull_through(mirror, ref, dest, all_platforms):
    extra = ["--preserve-digests"] + (["--all"] if all_platforms else [])
    clients.skopeo_copy_from_mirror(mirror.port, ref, dest, extra)


def store_files(storage):
    """digest -> (inode, size, mtime) of every file in a regcache store."""
    out = {}
    top = os.path.join(storage, "blobs", "sha256")
    for shard in sorted(os.listdir(top)):
        for name in sorted(os.listdir(os.path.join(top, shard))):
            st = os.stat(os.path.join(top, shard, name))
            out["sha256:" + name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def db_dump(storage):
    with sqlite3.connect(os.path.join(storage, "regcache.db")) as db:
        return list(db.iterdump())


def assert_store_verified(storage):
    """Every file under a digest's name hashes to it (nothing partial or corrupt)."""
    top = os.path.join(storage, "blobs", "sha256")
    for shard in os.listdir(top):
        for name in os.listdir(os.path.join(top, shard)):
            with open(os.path.join(top, shard, name), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == name, f"{name} is corrupt"


# -- import of a proxy cache --------------------------------------------------------------------

def test_imported_proxy_cache_is_served_without_upstream_gets(mirror_factory, up, make_image,
                                                             push, tmp_dir):
    """A registry:2 proxy cache is imported (blobs hard-linked: same inode), and regcache then
    serves every image pulled through registry:2 with no blob and no manifest GET upstream
    (a tag's revalidation HEAD is allowed), digests verified; by digest too."""
    cache, pulled = fill_proxy_cache(tmp_dir, up, make_image, push)
    m = mirror_factory([up], start=False)
    r = import_registry(cache.root, "-c", m.config_path, "--upstream", "docker.io")
    assert r.returncode == 0, r.stdout + r.stderr
    s = summary(r.stdout)
    all_blobs = {d for _, _, _, ds in pulled for d in ds} - {
        x for img, _, _, _ in pulled for x in [img.digest] + [mm.digest for mm in img.manifests]}
    assert s["repos"] == 3 and s["tags"] == 3 and s["tags_new"] == 3, s
    assert s["linked"] == len(all_blobs) and s["copied"] == 0 and s["corrupt"] == 0, s
    assert "restart regcache" in r.stdout
    for d in all_blobs:
        src, dst = os.stat(cache.data(d)), os.stat(m.file_for(d))
        assert src.st_ino == dst.st_ino and dst.st_nlink == 2, f"{d} was not hard-linked"
        assert (dst.st_mode & 0o777) == 0o600
    assert_store_verified(m.storage)

    m.start()
    mark = up.mark()
    for img, ref, all_platforms, digests in pulled:
        out = os.path.join(tmp_dir, "via-regcache-" + img.repo.replace("/", "_"))
        pull_through(m, ref, out, all_platforms)
        if all_platforms:
            verify_oci_layout(out, img.digest)
        else:
            verify_oci_layout(out)
        raw = clients.skopeo_inspect_raw(m.port, ref)
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == img.digest
        s_, h, _ = get(m, f"/v2/{img.repo}/manifests/{img.digest}")
        assert s_ == 200 and h["docker-content-digest"] == img.digest
    reqs = since(up, mark)
    assert blob_gets(reqs) == {}, reqs
    assert count(reqs, "GET", "manifests") == 0, reqs
    # ls shows them under the upstream
    ls = regcache("ls", "-c", m.config_path).stdout
    for img, _, _, _ in pulled:
        assert f"docker.io/{img.repo}" in ls, ls


def test_second_import_changes_nothing(mirror_factory, up, make_image, push, tmp_dir):
    """Run again on the same directory: 0 new, nothing copied or linked, store and index byte for
    byte as they were (access times included); DIR may name docker/registry/v2 itself."""
    cache, _ = fill_proxy_cache(tmp_dir, up, make_image, push)
    m = mirror_factory([up], start=False)
    first = import_registry(cache.root, "-c", m.config_path)
    assert first.returncode == 0, first.stderr
    files, dump = store_files(m.storage), db_dump(m.storage)
    time.sleep(1.1)  # a rewritten access time would differ
    again = import_registry(cache.v2, "-c", m.config_path)
    assert again.returncode == 0, again.stderr
    s = summary(again.stdout)
    assert s["tags_new"] == 0 and s["manifests_new"] == 0 and s["linked"] == 0 and \
        s["copied"] == 0 and s["present"] == summary(first.stdout)["linked"], again.stdout
    assert "nothing new" in again.stdout
    assert store_files(m.storage) == files
    assert db_dump(m.storage) == dump


def test_corrupt_blob_is_skipped_and_fetched_from_upstream(mirror_factory, up, make_image, push,
                                                          tmp_dir):
    """One byte flipped in one layer's data file: that blob is reported (digest and path) and
    skipped, everything else imported, exit status 3; a pull through regcache then fetches just
    that blob upstream and the client gets the right bytes."""
    cache, pulled = fill_proxy_cache(tmp_dir, up, make_image, push)
    img, ref, all_platforms, _ = pulled[0]
    bad = img.manifests[0].layers[0].digest
    path = cache.data(bad)
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    m = mirror_factory([up], start=False)
    r = import_registry(cache.root, "-c", m.config_path)
    assert r.returncode == 3, r.stdout + r.stderr
    assert bad in r.stderr and path in r.stderr and "corrupt" in r.stderr, r.stderr
    s = summary(r.stdout)
    assert s["corrupt"] == 1 and s["tags"] == 3, s
    assert not os.path.exists(m.file_for(bad))
    for d in img.blob_digests:
        if d != bad:
            assert os.path.exists(m.file_for(d)), d
    assert_store_verified(m.storage)

    m.start()
    mark = up.mark()
    out = os.path.join(tmp_dir, "after-corrupt")
    pull_through(m, ref, out, all_platforms)
    verify_oci_layout(out, img.digest)
    reqs = since(up, mark)
    assert blob_gets(reqs) == {bad: 1}, reqs
    assert count(reqs, "GET", "manifests") == 0, reqs


def test_import_across_filesystems_copies(mirror_factory, up, make_image, push, tmp_dir):
    """With the store on another filesystem (a tmpfs) every blob is copied and verified, none
    linked; the mirror serves them without upstream GETs."""
    cache, pulled = fill_proxy_cache(tmp_dir, up, make_image, push)
    mnt = os.path.join(tmp_dir, "tmpfs")
    os.makedirs(mnt)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", mnt],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        m = mirror_factory([up], start=False, extra={"storage": os.path.join(mnt, "store")})
        r = import_registry(cache.root, "-c", m.config_path)
        assert r.returncode == 0, r.stdout + r.stderr
        s = summary(r.stdout)
        assert s["linked"] == 0 and s["copied"] > 0, s
        m.storage = os.path.join(mnt, "store")
        for d in pulled[0][0].blob_digests:
            st = os.stat(m.file_for(d))
            assert st.st_nlink == 1 and st.st_ino != os.stat(cache.data(d)).st_ino
        assert_store_verified(m.storage)
        m.start()
        mark = up.mark()
        img, ref, all_platforms, _ = pulled[1]
        out = os.path.join(tmp_dir, "from-tmpfs")
        pull_through(m, ref, out, all_platforms)
        verify_oci_layout(out, img.digest)
        assert blob_gets(since(up, mark)) == {}
        m.stop()
        m.proc = None
    finally:
        subprocess.run(["umount", mnt], capture_output=True)


def test_import_refused_while_a_daemon_serves_the_store(mirror_factory, up, make_image, push,
                                                        tmp_dir):
    """The daemon holds the store: the import refuses (its index would not be seen until a
    restart) and says what to do; stopped, the import goes ahead."""
    cache, _ = fill_proxy_cache(tmp_dir, up, make_image, push)
    m = mirror_factory([up])
    r = import_registry(cache.root, "-c", m.config_path)
    assert r.returncode == 1 and "daemon serves it" in r.stderr and "stop it" in r.stderr, r.stderr
    assert os.listdir(os.path.join(m.storage, "blobs", "sha256")) == []
    m.stop()
    m.proc = None
    r = import_registry(cache.root, "-c", m.config_path)
    assert r.returncode == 0, r.stderr


# -- interruption -------------------------------------------------------------------------------

def add_plain_blobs(cache, repo, n, size=4096):
    """n more blobs of repo in the registry:2 layout (as a push would leave them: data file and
    layer link), to make an import long enough to interrupt."""
    digests = []
    for i in range(n):
        data = os.urandom(size)
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        os.makedirs(os.path.dirname(cache.data(d)), exist_ok=True)
        with open(cache.data(d), "wb") as f:
            f.write(data)
        link = os.path.join(cache.v2, "repositories", repo, "_layers", "sha256", d[7:])
        os.makedirs(link, exist_ok=True)
        with open(os.path.join(link, "link"), "w") as f:
            f.write(d)
        digests.append(d)
    return digests


def stored_count(storage):
    top = os.path.join(storage, "blobs", "sha256")
    try:
        return sum(len(os.listdir(os.path.join(top, s))) for s in os.listdir(top))
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_import_resumes(mirror_factory, up, make_image, push, tmp_dir, sig):
    """An import stopped half-way (kill -9, or Ctrl-C: exit 130 and a message) leaves only
    verified files under digests; the next run finishes the job without redoing what was done,
    and the one after finds nothing new."""
    cache, pulled = fill_proxy_cache(tmp_dir, up, make_image, push)
    extra = add_plain_blobs(cache, "library/alpine", 3000)
    m = mirror_factory([up], start=False)
    p = subprocess.Popen([*REGCACHE, "import-registry", cache.root, "-c", m.config_path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.wait_for(lambda: stored_count(m.storage) >= 200 or p.poll() is not None, 60,
                   "the import to be under way")
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    done = stored_count(m.storage)
    assert p.returncode in (-9, 130), (p.returncode, out, err)
    assert done < len(extra), "the import finished before it could be interrupted"
    if sig == signal.SIGINT:
        assert p.returncode == 130 and "run it again to finish" in err, err
    assert_store_verified(m.storage)
    r = import_registry(cache.root, "-c", m.config_path, timeout=200)
    assert r.returncode == 0, r.stdout + r.stderr
    s = summary(r.stdout)
    assert s["present"] >= done - 20 and s["linked"] + s["present"] >= len(extra), s
    for d in extra[:50] + extra[-50:]:
        assert os.path.exists(m.file_for(d))
    assert_store_verified(m.storage)
    again = summary(import_registry(cache.root, "-c", m.config_path, timeout=200).stdout)
    assert again["linked"] == 0 and again["copied"] == 0 and again["tags_new"] == 0, again
    m.start()
    mark = up.mark()
    img, ref, all_platforms, _ = pulled[0]
    out_dir = os.path.join(tmp_dir, "after-resume")
    pull_through(m, ref, out_dir, all_platforms)
    verify_oci_layout(out_dir, img.digest)
    assert blob_gets(since(up, mark)) == {}


# -- hosted -------------------------------------------------------------------------------------

def test_hosted_import(mirror_factory, up, make_image, push, tmp_dir):
    """--hosted 'org/*' imports org/team/app as a hosted repository: served without any upstream
    request, listed in _catalog under its own name, and pushed over like any hosted one;
    without a matching `hosted` pattern in the config the import refuses and says what to add."""
    cache, pulled = fill_proxy_cache(tmp_dir, up, make_image, push)
    img, ref, _, _ = pulled[1]
    plain = mirror_factory([up], start=False)
    r = import_registry(cache.root, "-c", plain.config_path, "--hosted", "org/*")
    assert r.returncode == 2 and "org/team/app" in r.stderr and 'hosted:\n  - "org/*"' in r.stderr
    m = mirror_factory([up], start=False, extra={"hosted": ["org/*"]})
    r = import_registry(cache.root, "-c", m.config_path, "--hosted", "org/*")
    assert r.returncode == 0, r.stdout + r.stderr
    assert summary(r.stdout)["hosted"] == 1
    m.start()
    mark = up.mark()
    out = os.path.join(tmp_dir, "hosted-pull")
    clients.skopeo_copy_from_mirror(m.port, ref, out, ["--preserve-digests", "--all"])
    verify_oci_layout(out, img.digest)
    s, _, body = get(m, "/v2/_catalog")
    repos = json.loads(body)["repositories"]
    assert "org/team/app" in repos and "library/alpine" in repos, repos
    s, _, body = get(m, "/v2/org/team/app/tags/list")
    assert s == 200 and json.loads(body)["tags"] == ["v1"]
    # pushed over: a new tag, and v1 moved to another image
    other = make_image(9103, (16 * 1024,), fmt="oci")
    for tag in ("v2", "v1"):
        skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
               f"dir:{other.layout}.dir", f"docker://127.0.0.1:{m.port}/org/team/app:{tag}")
    s, h, _ = get(m, "/v2/org/team/app/manifests/v1")
    assert s == 200 and h["docker-content-digest"] == other.digest
    s, _, body = get(m, "/v2/org/team/app/tags/list")
    assert json.loads(body)["tags"] == ["v1", "v2"]
    s, h, _ = get(m, f"/v2/org/team/app/manifests/{img.digest}")
    assert s == 200
    assert since(up, mark) == [], "a hosted repository went upstream"


# -- convert-config -----------------------------------------------------------------------------

USERS_CONFIG = """\
version: 0.1
log:
  level: info
  formatter: json
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: redis
  maintenance:
    uploadpurging:
      enabled: true
http:
  addr: :5000
  host: https://mirror.example.org
  secret: a-secret
  headers:
    X-Content-Type-Options: [nosniff]
  tls:
    certificate: /etc/registry/tls/fullchain.pem
    key: /etc/registry/tls/key.pem
  debug:
    addr: :5001
auth:
  htpasswd:
    realm: Registry Realm
    path: /etc/registry/htpasswd
redis:
  addr: redis:6379
  db: 0
health:
  storagedriver:
    enabled: true
    interval: 10s
notifications:
  endpoints:
    - name: listener
      url: https://listener.example.org/event
proxy:
  remoteurl: https://registry-1.docker.io
  username: hubuser
  password: hubpassword
  ttl: 72h
"""


def test_convert_config_of_a_users_proxy_config(tmp_dir):
    """A realistic registry:2 proxy config becomes a mirror.yml check-config accepts, with the
    upstream, listener, TLS, htpasswd auth and TTL carried over and a warning naming the line of
    every key that is not."""
    src = os.path.join(tmp_dir, "config.yml")
    with open(src, "w") as f:
        f.write(USERS_CONFIG)
    out = os.path.join(tmp_dir, "mirror.yml")
    r = regcache("convert-config", src, "-o", out)
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        text = f.read()
    cfg = yaml.safe_load(text)
    assert cfg["upstreams"] == [{"name": "docker.io", "url": "https://registry-1.docker.io",
                                 "username": "hubuser", "password": "hubpassword"}]
    assert cfg["listen"] == ":5000"
    assert cfg["log"] == {"level": "info", "format": "json"}
    assert cfg["auth"]["anonymous"] == "none"
    assert cfg["tls"] == {"cert": "/etc/registry/tls/fullchain.pem",
                          "key": "/etc/registry/tls/key.pem"}
    assert cfg["auth"]["htpasswd"] == "/etc/registry/htpasswd"
    assert cfg["auth"]["realm"] == "Registry Realm"
    assert cfg["cache"]["ttl"] == "72h"
    assert cfg["storage"] != "/var/lib/registry"
    assert "import-registry /var/lib/registry" in r.stderr
    assert os.stat(out).st_mode & 0o777 == 0o600  # it holds the upstream's password
    lines = USERS_CONFIG.splitlines()

    def line_of(key_text):
        return next(i + 1 for i, line in enumerate(lines) if line.strip().startswith(key_text))

    for key, needle in [("storage.delete", "delete:"), ("storage.cache", "cache:"),
                        ("storage.maintenance", "maintenance:"), ("http.secret", "secret:"),
                        ("http.headers", "headers:"), ("http.debug", "debug:"),
                        ("redis", "redis:"), ("health", "health:"),
                        ("notifications", "notifications:"), ("log.fields", "fields:"),
                        ("http.host", "host:")]:
        want = f"config.yml:{line_of(needle)}: {key}"
        assert want in r.stderr, (want, r.stderr)
    # the files it names do not exist here: point them at real ones for check-config
    for path in ("/etc/registry/tls/fullchain.pem", "/etc/registry/tls/key.pem",
                 "/etc/registry/htpasswd"):
        assert path in text
    cfg["tls"] = None
    del cfg["tls"]
    users = os.path.join(tmp_dir, "htpasswd")
    with open(users, "w") as f:
        f.write("")
    cfg["auth"]["htpasswd"] = users
    cfg["storage"] = os.path.join(tmp_dir, "new-store")
    checked = os.path.join(tmp_dir, "checked.yml")
    with open(checked, "w") as f:
        yaml.safe_dump(cfg, f)
    c = regcache("check-config", "-c", checked)
    assert c.returncode == 0, c.stderr
    # stdout by default, the same document
    r2 = regcache("convert-config", src)
    assert r2.returncode == 0 and r2.stdout == text


def test_convert_config_output_passes_check_config_as_is(tmp_dir):
    """A minimal proxy config (ghcr.io, no auth) converts to a file check-config takes as it
    is; bad input is refused with the file and line."""
    src = os.path.join(tmp_dir, "config.yml")
    with open(src, "w") as f:
        f.write("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: "
                f"{tmp_dir}/old\nhttp:\n  addr: 127.0.0.1:5001\nproxy:\n"
                "  remoteurl: https://ghcr.io\n")
    out = os.path.join(tmp_dir, "mirror.yml")
    r = regcache("convert-config", src, "-o", out)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(open(out))
    assert cfg["upstreams"] == [{"name": "ghcr.io", "url": "https://ghcr.io"}]
    assert cfg["listen"] == "127.0.0.1:5001"
    c = regcache("check-config", "-c", out)
    assert c.returncode == 0, c.stdout + c.stderr
    bad = os.path.join(tmp_dir, "bad.yml")
    with open(bad, "w") as f:
        f.write("version: 0.1\nproxy:\n  remoteurl: [unclosed\n")
    r = regcache("convert-config", bad)
    assert r.returncode == 1 and "bad.yml:" in r.stderr and r.stdout == ""
