# SPDX-License-Identifier: Apache-2.0
"""`regcache client-config`: the files it writes make the real clients pull from every upstream
through the mirror. Two upstreams (docker.io and quay.io, each a docker-registry with token
auth); dockerd, containerd's ctr and podman each pull with nothing but the generated
configuration, and the mirror's access log and the upstreams' show the way the pulls went.
k3s is not installed here: its registries.yaml is parsed and turned into the hosts.toml files
k3s's agent writes from it, which ctr then pulls with. Then --write itself: merges, backups,
idempotence, and files it refuses to touch."""

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import tomllib

import pytest
import yaml

import clients
import procs
from helpers import blob_gets, since, wait_until
from mirror import regcache

DAEMON_JSON = "etc/docker/daemon.json"
CERTS_D = "etc/containerd/certs.d"
PODMAN_DROP_IN = "etc/containers/registries.conf.d/50-regcache.conf"
K3S_REGISTRIES = "etc/rancher/k3s/registries.yaml"


@pytest.fixture
def two(upstream_factory, mirror_factory, make_image, push):
    """A mirror of docker.io (upstream a, library/ccimg:v1) and quay.io (upstream b,
    org/ccapp:1); single-arch images, as dockerd and podman pull one platform."""
    a = upstream_factory("registry.docker.io")
    b = upstream_factory("quay.io-test")
    img_a = push(make_image(60, (64 * 1024, 96 * 1024)), a, "library/ccimg", "v1")
    img_b = push(make_image(61, (80 * 1024,), fmt="oci"), b, "org/ccapp", "1")
    mirror = mirror_factory([a, b])
    return mirror, a, b, img_a, img_b


def client_config(mirror, client, *args, url=None, check=True):
    p = regcache("client-config", client, "--mirror", url or f"http://127.0.0.1:{mirror.port}",
                 "-c", mirror.config_path, *args)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def fetched_once(up, mark, img, timeout=15.0):
    """Waits until the upstream's log shows a GET of each of img's blobs since mark (its lines
    trail the responses) and asserts each was fetched exactly once."""
    def counts():
        gets = blob_gets(since(up, mark))
        return {d: gets[d] for d in img.blob_digests}
    try:
        wait_until(lambda: all(counts().values()), timeout=timeout, what="upstream blob GETs")
    except AssertionError:
        pass
    assert counts() == {d: 1 for d in img.blob_digests}


def mirror_paths(mirror):
    return [e.path for e in mirror.entries() if e.status == 200]


def snapshot(root):
    """Every file under root: relative path -> bytes."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


# -- docker --------------------------------------------------------------------------------------
def test_docker_daemon_json_merged_and_dockerd_pulls_through_mirror(two, containerd, tmp_dir):
    """An existing daemon.json (dockerd's own settings and two more keys) gets registry-mirrors
    and insecure-registries merged in, every other key kept and the old file backed up; the
    dockerd that runs on that file, reloaded with SIGHUP as the command says, pulls
    library/ccimg from Docker Hub through the mirror, and quay.io's org/ccapp by the mirror's
    name with the upstream in the path, as stderr tells."""
    mirror, a, b, img_a, img_b = two
    root = os.path.join(tmp_dir, "root")
    path = os.path.join(root, DAEMON_JSON)
    os.makedirs(os.path.dirname(path))
    before = dict(clients.Dockerd.BASE_CONFIG, **{"max-concurrent-downloads": 2,
                                                   "labels": ["site=\"lab\" \\ 1"]})
    with open(path, "w") as f:
        json.dump(before, f)
    with open(path, "rb") as f:
        before_bytes = f.read()
    dockerd = clients.Dockerd(containerd, config=path, namespace="ccmoby")
    try:
        p = client_config(mirror, "docker", "--write", "--root", root)
        backups = glob.glob(path + ".regcache-backup-*")
        assert len(backups) == 1, p.stderr
        with open(backups[0], "rb") as f:
            assert f.read() == before_bytes
        assert f"the previous version is {backups[0]}" in p.stderr
        with open(path) as f:
            after = json.load(f)
        mirror_url = f"http://127.0.0.1:{mirror.port}"
        assert after == dict(before, **{"registry-mirrors": [mirror_url],
                                        "insecure-registries": [f"127.0.0.1:{mirror.port}"]})
        assert list(after)[:len(before)] == list(before)  # the keys keep their order
        assert f"docker pull 127.0.0.1:{mirror.port}/quay.io/REPOSITORY:TAG" in p.stderr
        assert "systemctl reload docker" in p.stderr

        dockerd.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: mirror_url in dockerd.docker(
            "info", "--format", "{{json .RegistryConfig.Mirrors}}").stdout, timeout=20,
            what="dockerd to reload registry-mirrors")

        mark_a, mark_b = a.mark(), b.mark()
        dockerd.docker("pull", "library/ccimg:v1")
        assert any(d.endswith("@" + img_a.digest) for d in dockerd.repo_digests("library/ccimg:v1"))
        ref_b = f"127.0.0.1:{mirror.port}/quay.io/org/ccapp:1"
        dockerd.docker("pull", ref_b)
        assert any(d.endswith("@" + img_b.digest) for d in dockerd.repo_digests(ref_b))
        paths = mirror_paths(mirror)
        for d in img_a.blob_digests:
            assert f"/v2/library/ccimg/blobs/{d}" in paths, paths
        for d in img_b.blob_digests:
            assert f"/v2/quay.io/org/ccapp/blobs/{d}" in paths, paths
        fetched_once(a, mark_a, img_a)
        fetched_once(b, mark_b, img_b)
    finally:
        dockerd.docker("rmi", "-f", "library/ccimg:v1",
                       f"127.0.0.1:{mirror.port}/quay.io/org/ccapp:1", check=False)
        dockerd.stop()
        shutil.rmtree(dockerd.dir, ignore_errors=True)


def test_docker_without_hub_first_leaves_registry_mirrors_out(upstream_factory, mirror_factory,
                                                               tmp_dir):
    """dockerd's mirror requests name no upstream and so reach the first one: with quay.io
    first, registry-mirrors would send Docker Hub pulls to quay.io, so it is left out and
    stderr says why; insecure-registries is still there for pulls by the mirror's name."""
    up = upstream_factory("quay.io-test")
    mirror = mirror_factory([up, {"name": "docker.io", "url": up.url}],
                            names=["quay.io"], start=False)
    root = os.path.join(tmp_dir, "root")
    p = client_config(mirror, "docker", "--write", "--root", root)
    with open(os.path.join(root, DAEMON_JSON)) as f:
        doc = json.load(f)
    assert doc == {"insecure-registries": [f"127.0.0.1:{mirror.port}"]}
    assert "registry-mirrors left out" in p.stderr and "'quay.io'" in p.stderr
    assert f"docker pull 127.0.0.1:{mirror.port}/docker.io/REPOSITORY:TAG" in p.stderr


# -- containerd ----------------------------------------------------------------------------------
def test_containerd_hosts_dir_pulls_both_upstreams_through_mirror(two, containerd, tmp_dir):
    """The written certs.d has docker.io/ and quay.io/ hosts.toml files; ctr --hosts-dir with it
    pulls from both upstreams through the mirror (every request with ns=<registry>), each blob
    fetched from its upstream once; stderr tells about config_path."""
    mirror, a, b, img_a, img_b = two
    root = os.path.join(tmp_dir, "root")
    p = client_config(mirror, "containerd", "--write", "--root", root)
    certs = os.path.join(root, CERTS_D)
    assert sorted(os.listdir(certs)) == ["docker.io", "quay.io"]
    for name, up in (("docker.io", a), ("quay.io", b)):
        with open(os.path.join(certs, name, "hosts.toml"), "rb") as f:
            doc = tomllib.load(f)
        assert doc == {"server": up.url,
                       "host": {f"http://127.0.0.1:{mirror.port}":
                                {"capabilities": ["pull", "resolve"]}}}
    assert 'config_path = "/etc/containerd/certs.d"' in p.stderr
    mark_a, mark_b = a.mark(), b.mark()
    for ref, img in (("docker.io/library/ccimg:v1", img_a), ("quay.io/org/ccapp:1", img_b)):
        containerd.ctr("images", "pull", "--hosts-dir", certs, "--snapshotter", "native", ref,
                       namespace="ccctr")
        assert containerd.image_digest(ref, "ccctr") == img.digest
    paths = mirror_paths(mirror)
    for d in img_a.blob_digests:
        assert f"/v2/library/ccimg/blobs/{d}?ns=docker.io" in paths, paths
    for d in img_b.blob_digests:
        assert f"/v2/org/ccapp/blobs/{d}?ns=quay.io" in paths, paths
    fetched_once(a, mark_a, img_a)
    fetched_once(b, mark_b, img_b)
    containerd.ctr("images", "rm", "docker.io/library/ccimg:v1", "quay.io/org/ccapp:1",
                   namespace="ccctr")


# -- podman --------------------------------------------------------------------------------------
def _podman_pull(storage, drop_in_dir, ref):
    """`podman pull ref` with storage of its own, reading the generated drop-in from where
    podman reads drop-ins: in a private mount namespace the written directory is bound over
    /etc/containers/registries.conf.d. Where mounts are not allowed, the drop-in is given as
    podman's whole registries.conf (CONTAINERS_REGISTRIES_CONF) instead."""
    podman = ["podman", "--root", os.path.join(storage, "root"),
              "--runroot", os.path.join(storage, "run"), "--tmpdir",
              os.path.join(storage, "tmp"), "--storage-driver", "vfs",
              "--events-backend", "none", "--cgroup-manager", "cgroupfs"]
    system = "/etc/containers/registries.conf.d"
    can_mount = os.path.isdir(system) and subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "--bind", drop_in_dir, system],
        capture_output=True).returncode == 0
    if can_mount:
        script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                drop_in_dir, system, *podman, "pull", ref]
        env = None
    else:
        argv = [*podman, "pull", ref]
        env = dict(os.environ, CONTAINERS_REGISTRIES_CONF=os.path.join(
            drop_in_dir, "50-regcache.conf"))
    clients.run(argv, env=env)
    digest = clients.run([*podman, "image", "inspect", "--format", "{{.Digest}}", ref]).stdout
    return digest.strip()


@pytest.mark.engines
def test_podman_drop_in_pulls_both_upstreams_through_mirror(two, tmp_dir):
    """The written registries.conf.d drop-in makes `podman pull` of docker.io/... and
    quay.io/... go to the mirror with the upstream's name in the path, each blob fetched from
    its upstream once, and the images podman stores have the upstream digests."""
    mirror, a, b, img_a, img_b = two
    root = os.path.join(tmp_dir, "root")
    client_config(mirror, "podman", "--write", "--root", root)
    path = os.path.join(root, PODMAN_DROP_IN)
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    hp = f"127.0.0.1:{mirror.port}"
    assert doc == {"registry": [
        {"prefix": "docker.io", "location": a.url[len("http://"):], "insecure": True,
         "mirror": [{"location": f"{hp}/docker.io", "insecure": True}]},
        {"prefix": "quay.io", "location": b.url[len("http://"):], "insecure": True,
         "mirror": [{"location": f"{hp}/quay.io", "insecure": True}]}]}
    mark_a, mark_b = a.mark(), b.mark()
    storage = tempfile.mkdtemp(prefix="pm", dir="/tmp")  # podman's runroot: 50 bytes at most
    try:
        assert _podman_pull(storage, os.path.dirname(path), "docker.io/library/ccimg:v1") == \
            img_a.digest
        assert _podman_pull(storage, os.path.dirname(path), "quay.io/org/ccapp:1") == \
            img_b.digest
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    paths = mirror_paths(mirror)
    for d in img_a.blob_digests:
        assert f"/v2/docker.io/library/ccimg/blobs/{d}" in paths, paths
    for d in img_b.blob_digests:
        assert f"/v2/quay.io/org/ccapp/blobs/{d}" in paths, paths
    fetched_once(a, mark_a, img_a)
    fetched_once(b, mark_b, img_b)


# -- k3s -----------------------------------------------------------------------------------------
def test_k3s_registries_yaml_mirrors_every_upstream(two, containerd, tmp_dir):
    """registries.yaml parses and, in k3s's documented shape, sends docker.io and quay.io to the
    mirror; the hosts.toml files k3s's agent makes from such a file (one per mirror, the
    endpoints as hosts) let ctr pull from both upstreams through the mirror."""
    mirror, a, b, img_a, img_b = two
    root = os.path.join(tmp_dir, "root")
    client_config(mirror, "k3s", "--write", "--root", root)
    with open(os.path.join(root, K3S_REGISTRIES)) as f:
        doc = yaml.safe_load(f)
    url = f"http://127.0.0.1:{mirror.port}"
    assert doc == {"mirrors": {"docker.io": {"endpoint": [url]},
                               "quay.io": {"endpoint": [url]}}}
    certs = os.path.join(tmp_dir, "k3s-certs.d")
    for name, m in doc["mirrors"].items():
        os.makedirs(os.path.join(certs, name))
        with open(os.path.join(certs, name, "hosts.toml"), "w") as f:
            for ep in m["endpoint"]:
                f.write(f'[host."{ep}"]\n  capabilities = ["pull", "resolve"]\n')
    mark_a, mark_b = a.mark(), b.mark()
    for ref, img in (("docker.io/library/ccimg:v1", img_a), ("quay.io/org/ccapp:1", img_b)):
        containerd.ctr("images", "pull", "--hosts-dir", certs, "--snapshotter", "native", ref,
                       namespace="cck3s")
        assert containerd.image_digest(ref, "cck3s") == img.digest
    paths = mirror_paths(mirror)
    assert any(p.startswith("/v2/library/ccimg/manifests/v1?ns=docker.io") for p in paths)
    assert any(p.startswith("/v2/org/ccapp/manifests/1?ns=quay.io") for p in paths)
    fetched_once(a, mark_a, img_a)
    fetched_once(b, mark_b, img_b)
    containerd.ctr("images", "rm", "docker.io/library/ccimg:v1", "quay.io/org/ccapp:1",
                   namespace="cck3s")


def test_k3s_skip_verify_for_an_https_mirror(upstream_factory, mirror_factory):
    """With an https:// mirror and --skip-verify, configs.<mirror host>.tls says
    insecure_skip_verify; endpoints are https."""
    up = upstream_factory("registry.docker.io")
    mirror = mirror_factory([up, {"name": "ghcr.io", "url": up.url}], start=False)
    p = client_config(mirror, "k3s", "--skip-verify", url="https://Mirror.Example.org:8443/")
    doc = yaml.safe_load(p.stdout)
    assert doc["mirrors"] == {"docker.io": {"endpoint": ["https://mirror.example.org:8443"]},
                              "ghcr.io": {"endpoint": ["https://mirror.example.org:8443"]}}
    assert doc["configs"] == {"mirror.example.org:8443": {"tls": {"insecure_skip_verify": True}}}


# -- --write itself ------------------------------------------------------------------------------
def test_write_twice_keeps_one_backup_per_replaced_file_and_changes_nothing(two, tmp_dir):
    """Files of every client under one root, two of them there before with other content: the
    first --write backs up exactly those two; a second --write says "unchanged" for each file
    and changes nothing, backups included. A third run for another mirror replaces them again,
    each with a backup of its own (distinct names even within one second)."""
    mirror, *_ = two
    root = os.path.join(tmp_dir, "root")
    hosts = os.path.join(root, CERTS_D, "docker.io", "hosts.toml")
    k3s = os.path.join(root, K3S_REGISTRIES)
    for path, text in ((hosts, 'server = "https://registry-1.docker.io"\n'),
                       (k3s, "mirrors: {}\n")):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    os.chmod(k3s, 0o600)
    for client in ("docker", "containerd", "podman", "k3s"):
        client_config(mirror, client, "--write", "--root", root)
    first = snapshot(root)
    backups = sorted(p for p in first if ".regcache-backup-" in p)
    assert len(backups) == 2, backups
    assert backups[0].startswith(os.path.relpath(hosts, root) + ".regcache-backup-")
    assert backups[1].startswith(os.path.relpath(k3s, root) + ".regcache-backup-")
    assert first[backups[1]] == b"mirrors: {}\n"
    assert os.stat(k3s).st_mode & 0o777 == 0o600  # a replaced file keeps its mode
    assert not [p for p in first if ".regcache-new-" in p]
    for client in ("docker", "containerd", "podman", "k3s"):
        p = client_config(mirror, client, "--write", "--root", root)
        written = [l for l in p.stderr.splitlines() if l.startswith(f"regcache: {root}")]
        assert written and all(l.endswith(": unchanged") for l in written), p.stderr
    assert snapshot(root) == first
    for client in ("containerd", "k3s"):
        client_config(mirror, client, "--write", "--root", root, url="http://127.0.0.2:5000")
    third = snapshot(root)
    assert len([p for p in third if p.startswith(os.path.relpath(k3s, root) + ".regcache-b")]) == 2
    assert len([p for p in third if p.startswith(os.path.relpath(hosts, root) + ".regcache-b")]) == 2
    assert b"127.0.0.2:5000" in third[os.path.relpath(k3s, root)]


@pytest.mark.parametrize("text", ['{"debug": true,}', '["a"]', '{"registry-mirrors": "x"}',
                                  '{"insecure-registries": [1]}', '{"a": 1} {"b": 2}',
                                  '{"a": 1, "a": 2}', '\n\n{"a": tru}'],
                         ids=["trailing-comma", "not-object", "mirrors-string", "insecure-number",
                              "two-documents", "duplicate-key", "bad-literal"])
def test_bad_daemon_json_refused_untouched(two, tmp_dir, text):
    """A daemon.json that does not parse, or whose lists are not lists of strings, is refused:
    exit 1, a message naming the file (and the line where it can), the file unchanged, no
    backup and no temporary file left."""
    mirror, *_ = two
    root = os.path.join(tmp_dir, "root")
    path = os.path.join(root, DAEMON_JSON)
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write(text)
    st = os.stat(path)
    for extra in ((), ("--write",)):
        p = client_config(mirror, "docker", "--root", root, *extra, check=False)
        assert p.returncode == 1, p.stderr
        assert f"{path}:" in p.stderr and "left as it is" in p.stderr, p.stderr
        assert p.stdout == ""
    if text.startswith("\n\n"):
        assert f"{path}:3: not valid JSON" in p.stderr
    with open(path) as f:
        assert f.read() == text
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert os.listdir(os.path.dirname(path)) == ["daemon.json"]


def test_printed_output_is_what_write_writes(two, tmp_dir):
    """Without --write nothing is written; stdout is daemon.json itself for docker, and for the
    others each file after a '# PATH' line, the same bytes --write puts there."""
    mirror, *_ = two
    root = os.path.join(tmp_dir, "root")
    p = client_config(mirror, "docker", "--root", root)
    assert not os.path.exists(root)
    assert json.loads(p.stdout)["registry-mirrors"] == [f"http://127.0.0.1:{mirror.port}"]
    assert f"printed {root}/{DAEMON_JSON}; --write puts it in place" in p.stderr
    printed = {}
    for client in ("containerd", "podman", "k3s"):
        out = client_config(mirror, client, "--root", root).stdout
        for chunk in ("\n" + out).split(f"\n# {root}/")[1:]:
            rel, _, body = chunk.partition("\n")
            printed[rel] = body
    for client in ("docker", "containerd", "podman", "k3s"):
        client_config(mirror, client, "--write", "--root", root)
    written = snapshot(root)
    assert set(written) - {DAEMON_JSON} == set(printed)
    for rel, body in printed.items():
        # the files are separated by one blank line when printed
        assert written[rel].decode() in (body, body[:-1]), rel


def test_values_are_escaped_for_each_format(upstream_factory, mirror_factory, tmp_dir):
    """An upstream URL with a quote and a backslash in it (a valid config value) reads back
    unchanged from the TOML, YAML and JSON written."""
    up = upstream_factory("registry.docker.io")
    odd = up.url + '/x"y\\z'
    mirror = mirror_factory([{"name": "docker.io", "url": up.url},
                             {"name": "odd.example", "url": odd}], start=False)
    root = os.path.join(tmp_dir, "root")
    for client in ("containerd", "podman", "k3s", "docker"):
        client_config(mirror, client, "--write", "--root", root)
    with open(os.path.join(root, CERTS_D, "odd.example", "hosts.toml"), "rb") as f:
        assert tomllib.load(f)["server"] == odd
    with open(os.path.join(root, PODMAN_DROP_IN), "rb") as f:
        regs = tomllib.load(f)["registry"]
    assert regs[1]["location"] == odd[len("http://"):]
    with open(os.path.join(root, K3S_REGISTRIES)) as f:
        assert set(yaml.safe_load(f)["mirrors"]) == {"docker.io", "odd.example"}
    with open(os.path.join(root, DAEMON_JSON)) as f:
        json.load(f)


# -- command-line errors -------------------------------------------------------------------------
@pytest.mark.parametrize("url,why", [
    ("mirror.lan:5000", "must start with http:// or https://"),
    ("ftp://mirror.lan", "must start with http:// or https://"),
    ("http://", "missing host"),
    ("http://:5000", "missing host"),
    ("http://mirror.lan:0", "port must be a number from 1 to 65535"),
    ("http://mirror.lan:65536", "port must be a number from 1 to 65535"),
    ("http://mirror.lan:50x", "port must be a number from 1 to 65535"),
    ("http://mirror.lan/v2", "a path is not allowed"),
    ("http://mirror.lan?x=1", "a query or fragment is not allowed"),
    ("http://user:pw@mirror.lan", "user information"),
    ("http://mir ror.lan", "spaces, control and non-ASCII characters"),
    ("http://mirror_lan", "is not a valid host name"),
    ("http://-mirror.lan", "is not a valid host name"),
    ("http://[::1", "closing ']'"),
    ("http://[zz]:5000", "not an IPv6 address"),
])
def test_bad_mirror_url_is_a_usage_error(mirror_factory, up, url, why):
    mirror = mirror_factory([up], start=False)
    p = client_config(mirror, "containerd", url=url, check=False)
    assert p.returncode == 2, p.stderr
    assert f"--mirror '{url}': " in p.stderr and why in p.stderr, p.stderr
    assert "usage: regcache client-config" in p.stderr
    assert p.stdout == ""


def test_good_mirror_urls(mirror_factory, up):
    """A trailing slash is dropped and the host lowercased; IPv6 with a port is taken."""
    mirror = mirror_factory([up], start=False)
    for url, want in (("HTTP://Mirror.LAN:5000/", "http://mirror.lan:5000"),
                      ("https://[::1]:8443", "https://[::1]:8443"),
                      ("http://10.1.2.3", "http://10.1.2.3")):
        p = client_config(mirror, "k3s", url=url)
        assert yaml.safe_load(p.stdout)["mirrors"]["docker.io"]["endpoint"] == [want], p.stdout


@pytest.mark.parametrize("args,why", [
    (["client-config", "dockr", "--mirror", "http://m:5000"], "unknown client 'dockr'"),
    (["client-config", "--mirror", "http://m:5000"], "name a client"),
    (["client-config", "podman"], "--mirror URL is required"),
    (["client-config", "podman", "--mirror", "http://m:5000", "--bogus"],
     "unexpected argument '--bogus'"),
    (["client-config", "k3s", "--mirror", "http://m:5000", "--skip-verify"],
     "--skip-verify is for an https:// mirror"),
], ids=["unknown-client", "no-client", "no-mirror", "unknown-option", "skip-verify-http"])
def test_command_line_errors_exit_2(args, why):
    p = regcache(*args)
    assert p.returncode == 2 and why in p.stderr, (p.returncode, p.stderr)
    assert "usage: regcache client-config" in p.stderr


def test_config_errors_exit_1(tmp_dir):
    bad = os.path.join(tmp_dir, "bad.yml")
    with open(bad, "w") as f:
        f.write("upstreams:\n  - name: Docker.io\n    url: https://registry-1.docker.io\n")
    p = regcache("client-config", "docker", "--mirror", "http://m:5000", "-c", bad)
    assert p.returncode == 1 and f"{bad}:2" in p.stderr, p.stderr
