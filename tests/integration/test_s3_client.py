# SPDX-License-Identifier: Apache-2.0
"""The store tier's S3 client (s3/client.c, through build/tests/s3_tool, on a libuv loop and the
upstream client's curl multi as in the daemon) against Ceph's radosgw on loopback: a blob's PUT
carries its digest and If-None-Match, so wrong bytes are refused with nothing stored and a
second writer learns the object is there; multipart uploads hash each part and complete only
when the whole file matches its digest (else they are aborted and leave nothing); GET, Range,
HEAD, DELETE; listings page by page; uploads in progress listed and aborted; a key prefix;
a store that refuses the keys or is not there. Marked `once`: it starts Ceph (about 10 s)."""

import hashlib
import os
import subprocess

import pytest

import mirror
import rgw
from test_s3_signing import request

pytestmark = [pytest.mark.once,
              pytest.mark.skipif(not rgw.available(), reason="Ceph's packages are not installed")]

TOOL = os.path.join(os.path.dirname(mirror.REGCACHE[0]), "tests", "s3_tool")
BUCKET = "regcache-client"
MIB = 1 << 20


def rgw_with_bucket(tmp_root, name, bucket):
    """A module fixture's body: radosgw in tmp_root/name with the bucket made, stopped after."""
    d = os.path.join(tmp_root, name)
    os.makedirs(d, exist_ok=True)
    server = rgw.Rgw(d, memstore_bytes=1 << 30).start()
    status, body, _ = request(server, "PUT", f"/{bucket}")
    assert status == 200, body
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(tmp_root):
    yield from rgw_with_bucket(tmp_root, "rgw-client", BUCKET)


def tool_env(s3, bucket=BUCKET, env=None):
    """s3_tool's environment for radosgw s3 and bucket (no prefix, the default part size),
    with env's settings over it: the one place the S3 test modules build it."""
    e = dict(os.environ, S3_ENDPOINT=s3.url, S3_BUCKET=bucket, S3_ACCESS_KEY=rgw.ACCESS_KEY,
             S3_SECRET_KEY=rgw.SECRET_KEY)
    e.pop("S3_PREFIX", None)
    e.pop("S3_PART_SIZE", None)
    e.update(env or {})
    return e


def tool(s3, *args, stdin=None, env=None, timeout=120, bucket=BUCKET):
    return subprocess.run([TOOL, *args], input=stdin, capture_output=True,
                          env=tool_env(s3, bucket, env), timeout=timeout)


def fields(p):
    """The first line of s3_tool's answer as a dict (status, result, code, length, etag)."""
    words = p.stdout.decode().splitlines()[-2].split()
    return dict(zip(words[::2], words[1::2]))


def blob(tmp_dir, name, data):
    path = os.path.join(tmp_dir, name)
    with open(path, "wb") as f:
        f.write(data)
    h = hashlib.sha256(data).hexdigest()
    return path, h, f"blobs/sha256/{h[:2]}/{h}"


def uploads(s3, prefix="", bucket=BUCKET):
    """The multipart uploads in progress under prefix: [key, upload_id, initiated] lists."""
    p = tool(s3, "uploads", prefix, bucket=bucket)
    assert p.returncode == 0, p.stdout + p.stderr
    return [line.split() for line in p.stdout.decode().splitlines()[:-2]]


def test_put_file_get_range_head_delete(s3, tmp_dir):
    data = os.urandom(300 * 1024)
    path, h, key = blob(tmp_dir, "a", data)
    p = tool(s3, "put-file", key, path, h)
    assert p.returncode == 0, p.stdout + p.stderr
    # one writer wins: the second is told the object is there (the store's 412)
    p = tool(s3, "put-file", key, path, h)
    assert p.returncode == 3 and fields(p)["status"] == "412", p.stdout
    out = os.path.join(tmp_dir, "a.out")
    p = tool(s3, "get", key, out)
    assert p.returncode == 0, p.stdout
    assert open(out, "rb").read() == data
    p = tool(s3, "get", key, out, "1000", "1999")
    assert p.returncode == 0 and fields(p)["status"] == "206", p.stdout
    assert open(out, "rb").read() == data[1000:2000]
    p = tool(s3, "get", key, out, str(len(data) - 10))
    assert open(out, "rb").read() == data[-10:]
    p = tool(s3, "head", key)
    assert p.returncode == 0 and fields(p)["length"] == str(len(data)), p.stdout
    p = tool(s3, "delete", key)
    assert p.returncode == 0, p.stdout
    p = tool(s3, "head", key)
    assert p.returncode == 4 and fields(p)["status"] == "404", p.stdout
    p = tool(s3, "get", key, out)
    assert p.returncode == 4 and fields(p)["code"] == "NoSuchKey", p.stdout
    assert open(out, "rb").read() == b""  # an error body is never taken for the object


def test_wrong_bytes_are_refused_and_nothing_is_stored(s3, tmp_dir):
    data = os.urandom(64 * 1024)
    _, h, key = blob(tmp_dir, "b", data)
    changed = bytearray(data)
    changed[5000] ^= 1
    p = tool(s3, "put", key, h, stdin=bytes(changed))
    assert p.returncode == 5, p.stdout + p.stderr
    assert fields(p)["code"] == "XAmzContentSHA256Mismatch"
    assert tool(s3, "head", key).returncode == 4
    # the same through put-file: a file that is not what its name says
    path = os.path.join(tmp_dir, "b-changed")
    with open(path, "wb") as f:
        f.write(changed)
    assert tool(s3, "put-file", key, path, h).returncode == 5
    assert tool(s3, "head", key).returncode == 4


def test_multipart_upload_checks_every_part_and_the_whole(s3, tmp_dir):
    part = {"S3_PART_SIZE": str(5 * MIB)}
    data = os.urandom(12 * MIB + 12345)  # three parts, the last short
    path, h, key = blob(tmp_dir, "m", data)
    p = tool(s3, "put-file", key, path, h, env=part)
    assert p.returncode == 0, p.stdout + p.stderr
    out = os.path.join(tmp_dir, "m.out")
    assert tool(s3, "get", key, out).returncode == 0
    assert hashlib.sha256(open(out, "rb").read()).hexdigest() == h
    assert not uploads(s3, "blobs/"), "a completed upload is not left in progress"
    # stored already: asked first (completing would overwrite), no upload begun
    p = tool(s3, "put-file", key, path, h, env=part)
    assert p.returncode == 3, p.stdout
    assert not uploads(s3, "blobs/")


def test_multipart_upload_of_wrong_bytes_is_aborted(s3, tmp_dir):
    part = {"S3_PART_SIZE": str(5 * MIB)}
    good = os.urandom(11 * MIB)
    _, h, key = blob(tmp_dir, "good", good)
    bad = bytearray(good)
    bad[9 * MIB] ^= 0x80  # in the second part: every part verifies, the whole does not
    path = os.path.join(tmp_dir, "bad")
    with open(path, "wb") as f:
        f.write(bad)
    p = tool(s3, "put-file", key, path, h, env=part)
    assert p.returncode == 5, p.stdout + p.stderr
    assert "hashed to" in p.stdout.decode()
    assert tool(s3, "head", key).returncode == 4
    assert not uploads(s3, "blobs/"), "the parts were left behind"


def test_a_cancelled_upload_leaves_nothing(s3, tmp_dir):
    part = {"S3_PART_SIZE": str(5 * MIB)}
    data = os.urandom(40 * MIB)
    path, h, key = blob(tmp_dir, "c", data)
    p = tool(s3, "cancel-file", key, path, h, "300", env=part)
    assert p.returncode == 0 and b"cancelled" in p.stdout, p.stdout + p.stderr
    assert tool(s3, "head", key).returncode == 4
    assert not uploads(s3, "blobs/")


def test_listing_pages_and_prefix(s3, tmp_dir):
    env = {"S3_PREFIX": "site-a/"}
    keys = set()
    for i in range(7):
        _, h, key = blob(tmp_dir, f"l{i}", b"list %d" % i)
        p = tool(s3, "put", key, h, stdin=b"list %d" % i, env=env)
        assert p.returncode == 0, p.stdout
        keys.add(key)
    p = tool(s3, "list", "blobs/", "3", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.decode().splitlines()
    listed = {ln.split()[0]: ln.split() for ln in lines if ln.startswith("blobs/")}
    assert set(listed) == keys  # the prefix is the client's: keys come back without it
    assert all(int(v[1]) == 6 and int(v[2]) > 1_600_000_000 for v in listed.values())
    assert "pages 3" in lines
    # the prefix is really in the store's key
    status, body, _ = request(s3, "HEAD", f"/{BUCKET}/site-a/{sorted(keys)[0]}")
    assert status == 200
    assert tool(s3, "head", sorted(keys)[0]).returncode == 4  # without the prefix: not there


def test_uploads_in_progress_listed_and_aborted(s3):
    key = "blobs/sha256/00/abandoned"
    status, body, _ = request(s3, "POST", f"/{BUCKET}/{key}", query=[("uploads", "")])
    assert status == 200, body
    found = [u for u in uploads(s3, "blobs/sha256/00/") if u[0] == key]
    assert len(found) == 1 and int(found[0][2]) > 1_600_000_000, found
    p = tool(s3, "abort", key, found[0][1])
    assert p.returncode == 0, p.stdout
    assert not [u for u in uploads(s3, "blobs/sha256/00/") if u[0] == key]


def test_refused_keys_and_absent_store(s3, tmp_dir):
    p = tool(s3, "head", "blobs/x", env={"S3_SECRET_KEY": "not-the-secret"})
    assert p.returncode == 1 and fields(p)["status"] == "403", p.stdout
    p = tool(s3, "list", "", env={"S3_SECRET_KEY": "not-the-secret"})
    assert p.returncode == 1 and fields(p)["code"] == "SignatureDoesNotMatch", p.stdout
    import procs
    p = tool(s3, "get", "blobs/x", os.path.join(tmp_dir, "x"),
             env={"S3_ENDPOINT": f"http://127.0.0.1:{procs.free_port()}"})
    assert p.returncode == 1 and fields(p)["status"] == "0", p.stdout
    p = tool(s3, "head", "k", env={"S3_ENDPOINT": "ftp://127.0.0.1"})
    assert p.returncode == 2 and b"endpoint" in p.stderr
