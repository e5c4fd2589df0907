# SPDX-License-Identifier: Apache-2.0
"""The container image (packaging/image/build.sh), built once for this module: its config keeps
the registry:2 image's contract (port, volume, entrypoint, command, config path) and adds a
non-root user, a HEALTHCHECK and OCI labels; its root filesystem, unpacked with umoci and run in
a chroot as the image's user (no container runtime works in this sandbox), serves pulls through
a real upstream and reports healthy; and the image itself round-trips through a hosted
repository by digest."""

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile

import pytest
import yaml

import clients
import procs
from helpers import blob_gets, since, wait_until
from images import skopeo, verify_oci_layout
from mirror import REPO_ROOT
from test_hosted import CREDS, hosted_mirror

# The build compiles a release build from scratch (on two loaded cores, minutes) inside the
# first test's time: these tests get 900 s each instead of the suite's 240 s.
pytestmark = [pytest.mark.once, pytest.mark.time_limit(900)]

CONFIG = "/etc/regcache/mirror.yml"
MAX_COMPRESSED = 16 << 20  # the layer was 10.7 MB when measured; this catches a stray copy
MAX_UNPACKED = 40 << 20


class Built:
    """What build.sh left: the two archives, the version, and the docker-archive's parts."""

    def __init__(self, dist, version, output):
        self.version = version
        self.output = output
        self.docker = os.path.join(dist, f"regcache-image-{version}.tar")
        self.oci = os.path.join(dist, f"regcache-image-{version}.oci.tar")
        with tarfile.open(self.docker) as t:
            self.manifest = json.load(t.extractfile("manifest.json"))[0]
            self.config_raw = t.extractfile(self.manifest["Config"]).read()
            self.layer_raw = t.extractfile(self.manifest["Layers"][0]).read()
        self.config = json.loads(self.config_raw)
        self.image_id = "sha256:" + hashlib.sha256(self.config_raw).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_root):
    work = tempfile.mkdtemp(prefix="image-", dir=tmp_root)
    dist = os.path.join(work, "dist")
    r = subprocess.run([os.path.join(REPO_ROOT, "packaging", "image", "build.sh"),
                        "--dist", dist, "--build-dir", os.path.join(work, "build"),
                        "--storage", os.path.join(work, "storage")],
                       capture_output=True, text=True, timeout=840)
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    m = re.search(r"^image: localhost/regcache:(\S+),", r.stdout, re.M)
    assert m, r.stdout
    yield Built(dist, m.group(1), r.stdout)
    shutil.rmtree(work, ignore_errors=True)


def user_of(config):
    uid, gid = (int(x) for x in config["config"]["User"].split(":"))
    return uid, gid


def unpack(built, directory):
    """umoci unpack of the OCI archive: (rootfs path, the runtime config's process)."""
    layout, bundle = os.path.join(directory, "layout"), os.path.join(directory, "bundle")
    os.makedirs(layout)
    with tarfile.open(built.oci) as t:
        t.extractall(layout)
    clients.run(["umoci", "unpack", "--image", f"{layout}:{built.version}", bundle])
    with open(os.path.join(bundle, "config.json")) as f:
        process = json.load(f)["process"]
    return os.path.join(bundle, "rootfs"), process


def test_the_image_keeps_the_registry_contract_with_a_user_a_healthcheck_and_labels(built):
    cfg = built.config["config"]
    assert cfg["ExposedPorts"] == {"5000/tcp": {}}
    assert cfg["Volumes"] == {"/var/lib/regcache": {}}
    assert cfg["Entrypoint"] == ["regcache"]
    assert cfg["Cmd"] == ["serve", "-c", CONFIG]
    uid, gid = user_of(built.config)
    assert uid != 0 and gid != 0
    hc = cfg["Healthcheck"]
    assert hc["Test"] == ["CMD", "regcache", "health", "-c", CONFIG]
    # Docker's durations are nanoseconds; the check's own --timeout is 3 s, Docker's must be more
    assert hc["Interval"] == 30 * 10**9 and hc["Timeout"] > 3 * 10**9 and hc["Retries"] >= 1
    assert hc["StartPeriod"] >= 60 * 10**9
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == built.version
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.title"] == "regcache"
    assert labels["org.opencontainers.image.description"]
    assert labels["org.opencontainers.image.source"]
    created = labels["org.opencontainers.image.created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created), created
    assert built.config["created"].startswith(created[:-1])
    assert len(built.manifest["Layers"]) == 1

    # skopeo finds the same config in the archive (--raw: its OCI view drops Healthcheck)
    seen = skopeo("inspect", "--config", "--raw", f"docker-archive:{built.docker}").stdout
    assert seen.encode() == built.config_raw
    # the OCI archive: the same layer and contract, without a HEALTHCHECK (OCI has none)
    oci = json.loads(skopeo("inspect", "--config", f"oci-archive:{built.oci}:{built.version}")
                     .stdout)
    assert oci["rootfs"]["diff_ids"] == built.config["rootfs"]["diff_ids"]
    for key in ("ExposedPorts", "Volumes", "Entrypoint", "Cmd", "User", "Labels"):
        assert oci["config"][key] == cfg[key], key
    assert "Healthcheck" not in oci["config"]


def test_the_root_filesystem_holds_the_binary_what_it_needs_and_no_shell(built, tmp_dir):
    uid, gid = user_of(built.config)
    layer = tarfile.open(fileobj=io.BytesIO(built.layer_raw))
    members = {m.name.lstrip("./").rstrip("/"): m for m in layer.getmembers()}
    state = members["var/lib/regcache"]
    assert state.isdir() and (state.uid, state.gid) == (uid, gid) and state.mode & 0o777 == 0o700
    others = [n for n, m in members.items() if (m.uid, m.gid) != (0, 0) and n != state.name]
    assert others == [], others
    assert members["usr/bin/regcache"].mode & 0o777 == 0o755
    assert [n for n in members if n.startswith("usr/bin/")] == ["usr/bin/regcache"]
    for shell in ("usr/bin/sh", "usr/bin/bash", "usr/bin/busybox", "usr/bin/apt"):
        assert shell not in members
    for needed in ("etc/ssl/certs/ca-certificates.crt", "usr/share/zoneinfo/Europe/Berlin",
                   "usr/share/doc/regcache/LICENSE", "var/lib/dpkg/status.d/libcurl4",
                   "usr/share/doc/libcurl4/copyright"):
        assert needed in members, needed
    passwd = layer.extractfile(members["etc/passwd"]).read().decode()
    assert f"regcache:x:{uid}:{gid}:" in passwd
    assert f"regcache:x:{gid}:" in layer.extractfile(members["etc/group"]).read().decode()
    conf = yaml.safe_load(layer.extractfile(members["etc/regcache/mirror.yml"]))
    assert conf["listen"] == ":5000" and conf["storage"] == "/var/lib/regcache"

    # every library the binary loads is in the image: it runs in a chroot of it alone
    rootfs, _ = unpack(built, tmp_dir)
    r = clients.run(["chroot", f"--userspec={uid}:{gid}", rootfs, "regcache", "--version"])
    assert r.stdout == f"regcache {built.version}\n"
    r = clients.run(["chroot", f"--userspec={uid}:{gid}", rootfs, "regcache", "check-config",
                     "-c", CONFIG])
    assert "listen :5000, storage /var/lib/regcache" in r.stdout

    # the sizes, against a bound that catches a stray copy of half of /usr
    unpacked = sum(m.size for m in layer.getmembers() if m.isfile())
    with tarfile.open(built.oci) as t:
        index = json.load(t.extractfile("index.json"))
        manifest = json.load(t.extractfile(
            "blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
    compressed = manifest["layers"][0]["size"]
    print(f"\nimage {built.version}: compressed layer {compressed} bytes, "
          f"unpacked {unpacked} bytes")
    assert compressed < MAX_COMPRESSED and unpacked < MAX_UNPACKED, (compressed, unpacked)
    assert f"compressed layer: {compressed} bytes" in built.output


def test_the_unpacked_image_serves_pulls_as_its_user_and_says_healthy(built, up, make_image,
                                                                      push, tmp_dir):
    """The image's entrypoint and command, run in a chroot of its root filesystem as its user
    with only listen and the upstream changed: skopeo pulls through it, the upstream is asked
    once per blob, `regcache health` inside says healthy, and what it wrote in the volume
    belongs to the image's user."""
    img = push(make_image(140, (192 * 1024, 48 * 1024), fmt="oci"), up, "library/app", "v1")
    rootfs, process = unpack(built, tmp_dir)
    uid, gid = process["user"]["uid"], process["user"]["gid"]
    assert (uid, gid) == user_of(built.config)
    assert process["args"] == ["regcache", "serve", "-c", CONFIG]
    conf_path = os.path.join(rootfs, CONFIG.lstrip("/"))
    with open(conf_path) as f:
        conf = yaml.safe_load(f)
    port = procs.free_port()
    conf["listen"] = f"127.0.0.1:{port}"
    conf["upstreams"] = [{"name": "docker.io", "url": up.url}]
    with open(conf_path, "w") as f:
        yaml.safe_dump(conf, f)
    env = dict(e.split("=", 1) for e in process["env"])
    proc = procs.Proc(["chroot", f"--userspec={uid}:{gid}", rootfs, *process["args"]],
                      os.path.join(tmp_dir, "image-serve.log"), env=env)
    try:
        procs.wait_for(lambda: procs.http_status(port, "/readyz") == 200, 30,
                       "the image's regcache", proc=proc)
        with open(f"/proc/{proc.pid}/status") as f:
            ids = dict(line.split(":", 1) for line in f if line.startswith(("Uid", "Gid")))
        assert ids["Uid"].split() == [str(uid)] * 4 and ids["Gid"].split() == [str(gid)] * 4

        mark = up.mark()
        out = os.path.join(tmp_dir, "pulled")
        clients.skopeo_copy_from_mirror(port, "library/app:v1", out, ["--preserve-digests"])
        verify_oci_layout(out, img.digest)
        gets = wait_until(lambda: (lambda g: g if len(g) == len(img.blob_digests) else None)(
            blob_gets(since(up, mark))), timeout=15, what="the upstream's blob GETs")
        assert gets == {d: 1 for d in img.blob_digests}, gets

        r = clients.run(["chroot", f"--userspec={uid}:{gid}", rootfs, "regcache", "health",
                         "-c", CONFIG], check=False, env=env)
        assert (r.returncode, r.stdout) == (0, f"healthy: http://127.0.0.1:{port}/readyz "
                                                "answered 200\n"), r
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(20)
        proc.kill()
    assert status == 0, proc.tail()

    volume = os.path.join(rootfs, "var", "lib", "regcache")
    wrong = []
    for dirpath, dirnames, filenames in os.walk(volume):
        for name in [""] + dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_uid, st.st_gid) != (uid, gid):
                wrong.append((os.path.join(dirpath, name), st.st_uid, st.st_gid))
    assert wrong == [], wrong
    for d in img.blob_digests:
        hexd = d.split(":")[1]
        assert os.path.exists(os.path.join(volume, "blobs", "sha256", hexd[:2], hexd)), d
    assert os.path.exists(os.path.join(volume, "regcache.db"))


def test_the_image_round_trips_through_a_hosted_repository_by_digest(built, mirror_factory, up,
                                                                    tmp_dir):
    """skopeo pushes the docker-archive into a hosted repository; pulled back by digest it is
    the same image (the config, HEALTHCHECK included, byte for byte) and nothing went
    upstream."""
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    mark = up.mark()
    ref = f"127.0.0.1:{m.port}/team/regcache"
    digest_file = os.path.join(tmp_dir, "digest")
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, "--digestfile", digest_file,
           f"docker-archive:{built.docker}", f"docker://{ref}:{built.version}", timeout=300)
    digest = open(digest_file).read().strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest

    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}@{digest}").stdout
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digest
    manifest = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["digest"] == built.image_id
    tag_raw = skopeo("inspect", "--raw", "--tls-verify=false",
                     f"docker://{ref}:{built.version}").stdout
    assert tag_raw == raw

    back = os.path.join(tmp_dir, "back.tar")
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}@{digest}",
           f"docker-archive:{back}", timeout=300)
    with tarfile.open(back) as t:
        got = json.load(t.extractfile("manifest.json"))[0]
        config_raw = t.extractfile(got["Config"]).read()
        layer = t.extractfile(got["Layers"][0]).read()
    assert config_raw == built.config_raw
    assert "sha256:" + hashlib.sha256(layer).hexdigest() == built.config["rootfs"]["diff_ids"][0]
    assert since(up, mark) == [], "a hosted push or pull went upstream"
