# SPDX-License-Identifier: Apache-2.0
"""The S3 tier in the blob path, against Ceph's radosgw on loopback and Debian's
docker-registry as the upstream: a mirror writes what it fetched behind into the bucket; a
second mirror with an empty store gets every blob from the bucket, and the upstream's log shows
no blob GET of its; an object with the wrong bytes under a blob's key is refused and the blob
fetched upstream once; a bucket that is not there costs pulls nothing; commits that failed
while the store was away are written once it is back. Marked `once`: it starts Ceph."""

import hashlib
import os
import socket
import threading

import pytest

import clients
import procs
import rgw
from helpers import blob_gets, since
from test_s3_signing import request
from test_s3_client import rgw_with_bucket
from test_s3_sync import bucket_keys, get_object

pytestmark = [pytest.mark.once,
              pytest.mark.skipif(not rgw.available(), reason="Ceph's packages are not installed")]

BUCKET = "regcache-sync"  # the name test_s3_sync's helpers list


@pytest.fixture(scope="module")
def s3(tmp_root):
    yield from rgw_with_bucket(tmp_root, "rgw-tier", BUCKET)


class TcpRelay:
    """Bytes both ways between 127.0.0.1:port and the target; while `refusing`, a connection
    is closed as soon as it is accepted (the store is away)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.refusing = False
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.open = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.refusing:
                c.close()
                continue
            u = socket.create_connection(("127.0.0.1", self.target_port))
            self.open += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.sock.close()
        for s in self.open:
            s.close()


def tier(s3, endpoint=None, bucket=BUCKET):
    return {"s3": {"endpoint": endpoint or s3.url, "bucket": bucket,
                   "access_key": rgw.ACCESS_KEY, "secret_key": rgw.SECRET_KEY,
                   "part_size": "5MiB"}}


def blob_key(d):
    return f"blobs/sha256/{d[7:9]}/{d[7:]}"


def wait_in_bucket(s3, digests, timeout=30):
    want = {blob_key(d) for d in digests}
    procs.wait_for(lambda: want <= set(bucket_keys(s3)), timeout,
                   "the write-behind of every blob")


def pull(m, ref, tmp_dir, name):
    dest = os.path.join(tmp_dir, name)
    clients.skopeo_copy_from_mirror(m.port, ref, dest, [])
    return dest


def stored(m, d):
    with open(m.file_for(d), "rb") as f:
        return f.read()


def test_a_second_replica_gets_blobs_from_the_bucket_not_the_upstream(s3, tmp_dir, up,
                                                                      mirror_factory,
                                                                      make_image, push):
    img = push(make_image(420, (6 << 20, 200 * 1024), fmt="docker"), up, "library/tiered", "1")
    a = mirror_factory([up], extra=tier(s3))
    mark = up.mark()
    pull(a, "library/tiered:1", tmp_dir, "a")
    gets = blob_gets(since(up, mark))
    assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}
    wait_in_bucket(s3, img.blob_digests)
    for d in img.blob_digests:  # the copy in the bucket is the blob
        assert hashlib.sha256(get_object(s3, blob_key(d))).hexdigest() == d[7:]
    b = mirror_factory([up], extra=tier(s3))
    mark = up.mark()
    pull(b, "library/tiered:1", tmp_dir, "b")
    gets = blob_gets(since(up, mark))
    assert sum(gets[d] for d in img.blob_digests) == 0, gets
    for d in img.blob_digests:
        assert hashlib.sha256(stored(b, d)).hexdigest() == d[7:]
    # and B, a hit now, keeps serving them with the bucket gone from its path
    a.stop()


def test_wrong_bytes_in_the_bucket_are_refused(s3, tmp_dir, up, mirror_factory, make_image,
                                               push):
    img = push(make_image(421, (300 * 1024,), fmt="docker"), up, "library/liar", "1")
    layer = img.blob_digests[-1]
    status, _, _ = request(s3, "PUT", f"/{BUCKET}/{blob_key(layer)}", body=b"not the layer")
    assert status == 200
    m = mirror_factory([up], extra=tier(s3))
    mark = up.mark()
    pull(m, "library/liar:1", tmp_dir, "liar")
    assert blob_gets(since(up, mark))[layer] == 1
    assert hashlib.sha256(stored(m, layer)).hexdigest() == layer[7:]
    assert "the s3 tier sent" in m.log_text()


def test_a_missing_bucket_or_an_absent_store_costs_pulls_nothing(s3, tmp_dir, up,
                                                                 mirror_factory, make_image,
                                                                 push):
    img = push(make_image(422, (100 * 1024,), fmt="docker"), up, "library/nobucket", "1")
    dead = f"http://127.0.0.1:{procs.free_port()}"
    for extra in (tier(s3, bucket="no-such-bucket"), tier(s3, endpoint=dead)):
        m = mirror_factory([up], extra=extra)
        mark = up.mark()
        pull(m, "library/nobucket:1", tmp_dir, f"nb-{m.port}")
        gets = blob_gets(since(up, mark))
        assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}
        for d in img.blob_digests:
            assert hashlib.sha256(stored(m, d)).hexdigest() == d[7:]
        m.stop()


def test_commits_drain_once_the_store_is_back(s3, tmp_dir, up, mirror_factory, make_image,
                                              push):
    """The mirror's endpoint is a TCP relay to radosgw that drops connections at first."""
    img = push(make_image(423, (150 * 1024, 90 * 1024), fmt="docker"), up, "library/drain", "1")
    proxy = TcpRelay(s3.port)
    proxy.refusing = True
    try:
        m = mirror_factory([up], extra=tier(s3, endpoint=f"http://127.0.0.1:{proxy.port}"))
        pull(m, "library/drain:1", tmp_dir, "drain")
        procs.wait_for(lambda: "trying again" in m.log_text(), 20, "a failed write-behind")
        assert not {blob_key(d) for d in img.blob_digests} & set(bucket_keys(s3))
        proxy.refusing = False
        wait_in_bucket(s3, img.blob_digests, timeout=40)
    finally:
        proxy.stop()
