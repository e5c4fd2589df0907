# SPDX-License-Identifier: Apache-2.0
"""Real registry clients: containerd (+ ctr with a hosts dir), dockerd with registry-mirrors,
and skopeo. Sockets live under short /tmp paths (unix socket paths are limited to 108 bytes)."""

import json
import os
import subprocess
import tempfile

import procs

DOCKER = "/usr/bin/docker"  # Debian's docker.io client (another `docker` may come first on PATH)

CONTAINERD_CONFIG = """\
version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[debug]
  address = "{d}/dbg.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"""


def run(argv, timeout=180, check=True, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


class Containerd:
    """A private containerd; ctr talks to it through `sock`."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ctd", dir="/tmp")
        self.sock = os.path.join(self.dir, "c.sock")
        self.config = os.path.join(self.dir, "config.toml")
        with open(self.config, "w") as f:
            f.write(CONTAINERD_CONFIG.format(d=self.dir))
        self.log = os.path.join(self.dir, "containerd.log")
        self.proc = procs.Proc(["containerd", "--config", self.config], self.log)
        procs.wait_for(lambda: run(["ctr", "-a", self.sock, "version"], timeout=10,
                                   check=False).returncode == 0,
                       30, "containerd to answer", interval=0.3, proc=self.proc)

    def ctr(self, *args, timeout=180, check=True, namespace="default"):
        return run(["ctr", "-a", self.sock, "-n", namespace, *args], timeout=timeout, check=check)

    def hosts_dir(self, mirror_port):
        """A --hosts-dir that sends docker.io pulls to the mirror. The fallback `server` is a
        closed loopback port so a broken mirror never makes containerd leave this machine."""
        d = tempfile.mkdtemp(prefix="hosts", dir=self.dir)
        os.makedirs(os.path.join(d, "docker.io"))
        with open(os.path.join(d, "docker.io", "hosts.toml"), "w") as f:
            f.write('server = "https://127.0.0.1:9"\n\n'
                    f'[host."http://127.0.0.1:{mirror_port}"]\n'
                    '  capabilities = ["pull", "resolve"]\n')
        return d

    def pull(self, ref, mirror_port, namespace, platform=None, all_platforms=False):
        """`ctr images pull` through the mirror into its own namespace (a fresh content store
        view, so nothing is shared with earlier pulls except containerd's content by digest)."""
        args = ["images", "pull", "--hosts-dir", self.hosts_dir(mirror_port),
                "--snapshotter", "native"]
        if all_platforms:
            args.append("--all-platforms")
        elif platform:
            args += ["--platform", platform]
        return self.ctr(*args, ref, namespace=namespace)

    def image_digest(self, ref, namespace):
        """The target digest `ctr images ls` shows for ref."""
        out = self.ctr("images", "ls", namespace=namespace).stdout.splitlines()
        for line in out[1:]:
            cols = line.split()
            if cols and cols[0] == ref:
                return next(c for c in cols if c.startswith("sha256:"))
        raise AssertionError(f"{ref} not in ctr images ls:\n" + "\n".join(out))

    def stop(self):
        self.proc.stop(timeout=15)


class Dockerd:
    """A private dockerd (vfs, no networking) using `containerd`, with registry-mirrors set to
    http://127.0.0.1:mirror_port (the mirror must be started on that port by the test).
    With https_proxy, HTTPS to names other than loopback addresses goes through that proxy.
    With config, dockerd reads that daemon.json instead (it must have BASE_CONFIG's keys), and
    with namespace it keeps its containers and images in containerd namespaces of that name, so
    that it shares `containerd` with another dockerd."""

    BASE_CONFIG = {"storage-driver": "vfs", "iptables": False, "ip6tables": False,
                   "ip-masq": False, "bridge": "none"}

    def __init__(self, containerd, mirror_port=None, https_proxy=None, config=None,
                 namespace=None):
        self.dir = tempfile.mkdtemp(prefix="dkd", dir="/tmp")
        self.mirror_port = mirror_port
        self.sock = os.path.join(self.dir, "d.sock")
        cfg = config
        if cfg is None:
            cfg = os.path.join(self.dir, "daemon.json")
            with open(cfg, "w") as f:
                json.dump(dict(self.BASE_CONFIG,
                               **{"registry-mirrors": [f"http://127.0.0.1:{mirror_port}"]}), f)
        self.log = os.path.join(self.dir, "dockerd.log")
        ns = [f"--containerd-namespace={namespace}",
              f"--containerd-plugins-namespace={namespace}-plugins"] if namespace else []
        self.proc = procs.Proc(
            ["dockerd", "--config-file", cfg, "--data-root", os.path.join(self.dir, "data"),
             "--exec-root", os.path.join(self.dir, "exec"),
             "--pidfile", os.path.join(self.dir, "dockerd.pid"), "-H", f"unix://{self.sock}",
             f"--containerd={containerd.sock}", *ns], self.log,
            env=dict(os.environ, HTTPS_PROXY=https_proxy) if https_proxy else None)
        procs.wait_for(lambda: self.docker("version", check=False, timeout=10).returncode == 0,
                       60, "dockerd to answer", interval=0.5, proc=self.proc)

    def docker(self, *args, timeout=180, check=True):
        return run([DOCKER, "-H", f"unix://{self.sock}", *args], timeout=timeout, check=check)

    def repo_digests(self, ref):
        out = self.docker("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout
        return json.loads(out)

    def stop(self):
        self.proc.stop(timeout=20)


def skopeo_copy_from_mirror(mirror_port, ref, dest_dir, extra=()):
    """`skopeo copy docker://127.0.0.1:PORT/ref oci:dest_dir:latest` (ref is repo:tag or
    repo@digest); returns the finished process."""
    return run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", *extra,
                f"docker://127.0.0.1:{mirror_port}/{ref}", f"oci:{dest_dir}:latest"])


def skopeo_inspect_raw(mirror_port, ref):
    """The manifest bytes skopeo gets for ref through the mirror."""
    p = subprocess.run(["skopeo", "--insecure-policy", "inspect", "--raw", "--tls-verify=false",
                        f"docker://127.0.0.1:{mirror_port}/{ref}"],
                       capture_output=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"skopeo inspect failed: {p.stderr.decode(errors='replace')}")
    return p.stdout
