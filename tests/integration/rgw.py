# SPDX-License-Identifier: Apache-2.0
"""Ceph's radosgw on loopback: a real S3 for the store tier's tests.

One monitor, one OSD on memstore (objects in RAM), one radosgw (beast) on 127.0.0.1, no
authentication between the daemons, pool size 1. `Rgw(directory).start()` brings it up
(4-13 s here) with an S3 user (ACCESS_KEY / SECRET_KEY); `stop()` stops radosgw, then the OSD,
then the monitor (in any other order radosgw hangs for about two minutes)."""

import os
import shutil
import socket
import subprocess
import time
import uuid

import procs

ACCESS_KEY = "REGCACHETESTACCESS01"
SECRET_KEY = "regcache-test-secret-key-0123456789abcdef"
BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "ceph", "monmaptool", "radosgw-admin")


def available():
    return all(shutil.which(b) for b in BINARIES)


class Rgw:
    def __init__(self, directory, memstore_bytes=2 << 30):
        self.dir = directory
        self.fsid = str(uuid.uuid4())
        self.mon_port = procs.free_port()
        self.port = procs.free_port()
        self.conf = os.path.join(directory, "ceph.conf")
        self.memstore_bytes = memstore_bytes
        self.procs = []
        self.url = f"http://127.0.0.1:{self.port}"

    def _write_conf(self):
        d = self.dir
        with open(self.conf, "w") as f:
            f.write(f"""[global]
fsid = {self.fsid}
mon host = 127.0.0.1:{self.mon_port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
pid file = {d}/run/$name.pid
ms bind ipv4 = true
ms bind ipv6 = false
public addr = 127.0.0.1
[mon.a]
mon data = {d}/mon
mon addr = 127.0.0.1:{self.mon_port}
[osd.0]
osd data = {d}/osd
osd objectstore = memstore
memstore device bytes = {self.memstore_bytes}
osd max object name len = 256
osd max object namespace len = 64
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{self.port}
rgw data = {d}/rgw
rgw dns name = 127.0.0.1
log file = {d}/log/rgw.log
""")

    def _ceph(self, *args, timeout=30):
        return subprocess.run(["ceph", "-c", self.conf, *args], capture_output=True, text=True,
                              timeout=timeout)

    def _start(self, argv, name):
        p = procs.Proc(argv, os.path.join(self.dir, "log", name + ".out"))
        self.procs.append(p)
        return p

    def start(self, timeout=90):
        d = self.dir
        for sub in ("run", "log", "mon", "osd", "rgw"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        self._write_conf()
        monmap = os.path.join(d, "monmap")
        subprocess.run(["monmaptool", "--create", "--fsid", self.fsid, "--addv", "a",
                        f"[v1:127.0.0.1:{self.mon_port}]", monmap], check=True,
                       capture_output=True)
        subprocess.run(["ceph-mon", "-c", self.conf, "--mkfs", "-i", "a", "--monmap", monmap],
                       check=True, capture_output=True)
        self._start(["ceph-mon", "-c", self.conf, "-i", "a", "-f"], "mon")
        deadline = time.monotonic() + timeout
        while self._ceph("mon", "stat", timeout=10).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("ceph-mon did not answer")
            time.sleep(0.3)
        osd_id = self._ceph("osd", "create").stdout.strip()
        if osd_id != "0":
            raise RuntimeError(f"ceph osd create gave {osd_id!r}")
        subprocess.run(["ceph-osd", "-c", self.conf, "-i", "0", "--mkfs", "--no-mon-config"],
                       check=True, capture_output=True)
        self._ceph("osd", "crush", "add", "osd.0", "1.0", "root=default", "host=loopback")
        self._start(["ceph-osd", "-c", self.conf, "-i", "0", "-f", "--no-mon-config"], "osd")
        while "osd.0 up" not in self._ceph("osd", "dump", timeout=10).stdout:
            if time.monotonic() > deadline:
                raise TimeoutError("ceph-osd did not come up")
            time.sleep(0.3)
        self._start(["radosgw", "-c", self.conf, "-n", "client.rgw", "-f"], "rgw")
        while not procs.port_open(self.port):
            if time.monotonic() > deadline or not self.procs[-1].alive():
                raise TimeoutError("radosgw did not listen\n" + self.procs[-1].tail())
            time.sleep(0.3)
        r = subprocess.run(["radosgw-admin", "-c", self.conf, "-n", "client.rgw", "user",
                            "create", "--uid=regcache", "--display-name=regcache",
                            f"--access-key={ACCESS_KEY}", f"--secret={SECRET_KEY}"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("radosgw-admin user create: " + r.stderr)
        return self

    def stop(self):
        # radosgw first, then the OSD, then the monitor
        for p in reversed(self.procs):
            p.stop(timeout=20)
        self.procs = []

    def log(self, name="rgw"):
        try:
            with open(os.path.join(self.dir, "log", name + ".log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""
