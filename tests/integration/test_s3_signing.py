# SPDX-License-Identifier: Apache-2.0
"""The project's SigV4 signer (s3/sigv4.c, through build/tests/s3_sign) against a real S3:
Ceph's radosgw on loopback (rgw.py). What the store tier relies on: a PUT whose
x-amz-content-sha256 is the blob's digest is stored, and refused with nothing stored when the
bytes do not match; If-None-Match: * lets one writer win; keys needing encoding, parameters
without a value (?uploads=), sorted parameters, Range, presigned URLs, a tampered or expired
signature refused. Marked `once`: it starts Ceph (about 10 s)."""

import hashlib
import html
import http.client
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import mirror
import rgw

pytestmark = [pytest.mark.once,
              pytest.mark.skipif(not rgw.available(), reason="Ceph's packages are not installed")]

SIGNER = os.path.join(os.path.dirname(mirror.REGCACHE[0]), "tests", "s3_sign")
BUCKET = "regcache-signing"


@pytest.fixture(scope="module")
def s3(tmp_root):
    d = os.path.join(tmp_root, "rgw-signing")
    os.makedirs(d, exist_ok=True)
    server = rgw.Rgw(d, memstore_bytes=1 << 30).start()
    yield server
    server.stop()


def sign(method, host, path, payload_sha, query=(), headers=(), when=None, presign=None):
    env = dict(os.environ, S3_ACCESS_KEY=rgw.ACCESS_KEY, S3_SECRET_KEY=rgw.SECRET_KEY)
    if when is not None:
        env["S3_TIME"] = str(int(when))
    argv = [SIGNER, "presign" if presign else "sign", method, host, path,
            str(presign) if presign else payload_sha]
    argv += [f"q:{k}={v}" for k, v in query] + [f"h:{k}:{v}" for k, v in headers]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=10, check=True)
    if presign:
        return out.stdout.strip()
    return dict(line.split(": ", 1) for line in out.stdout.strip().splitlines())


def request(s3, method, path, body=b"", query=(), headers=None, payload_sha=None, tamper=False):
    """One signed request; payload_sha defaults to the body's real hash."""
    host = f"127.0.0.1:{s3.port}"
    sha = payload_sha or hashlib.sha256(body).hexdigest()
    hdrs = dict(headers or {})
    hdrs["x-amz-content-sha256"] = sha
    added = sign(method, host, path, sha, query, hdrs.items())
    if tamper:
        added["Authorization"] = added["Authorization"][:-1] + (
            "0" if added["Authorization"][-1] != "0" else "1")
    hdrs.update(added)
    qs = "&".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}"
                  for k, v in query)
    url = urllib.parse.quote(path, safe="/") + (("?" + qs) if qs else "")
    conn = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=30)
    try:
        conn.request(method, url, body=body if method in ("PUT", "POST") else None, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def blob_key(data):
    h = hashlib.sha256(data).hexdigest()
    return f"/{BUCKET}/blobs/sha256/{h[:2]}/{h}", h


@pytest.fixture(scope="module")
def bucket(s3):
    status, body, _ = request(s3, "PUT", f"/{BUCKET}")
    assert status == 200, body
    return BUCKET


def test_put_with_the_digest_and_one_writer(s3, bucket):
    data = os.urandom(100_000)
    key, digest = blob_key(data)
    status, body, _ = request(s3, "PUT", key, data, headers={"If-None-Match": "*"})
    assert status == 200, body
    status, got, hdrs = request(s3, "GET", key)
    assert status == 200 and got == data
    # a second writer of the same key loses: 412, the object unchanged
    status, _, _ = request(s3, "PUT", key, data, headers={"If-None-Match": "*"})
    assert status == 412
    status, got, _ = request(s3, "GET", key, headers={"Range": "bytes=10-19"})
    assert status == 206 and got == data[10:20]
    status, _, hdrs = request(s3, "HEAD", key)
    assert status == 200 and int(hdrs["Content-Length"]) == len(data)


def test_wrong_bytes_are_refused_and_nothing_stored(s3, bucket):
    good = os.urandom(50_000)
    key, digest = blob_key(good)
    bad = bytearray(good)
    bad[12345] ^= 1
    status, body, _ = request(s3, "PUT", key, bytes(bad), payload_sha=digest,
                              headers={"If-None-Match": "*"})
    assert status == 400 and b"XAmzContentSHA256Mismatch" in body, body
    status, _, _ = request(s3, "HEAD", key)
    assert status == 404


def test_tampered_and_expired_signatures_are_refused(s3, bucket):
    status, body, _ = request(s3, "GET", f"/{BUCKET}", query=[("list-type", "2")], tamper=True)
    assert status == 403 and b"SignatureDoesNotMatch" in body, body
    data = b"presigned\n"
    key, _ = blob_key(data)
    assert request(s3, "PUT", key, data)[0] == 200
    host = f"127.0.0.1:{s3.port}"
    url = f"http://{host}" + sign("GET", host, key, None, presign=60)
    assert urllib.request.urlopen(url, timeout=10).read() == data
    old = f"http://{host}" + sign("GET", host, key, None, presign=60, when=time.time() - 7200)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(old, timeout=10)
    assert e.value.code == 403
    # the signature covers the path: the same query on another key is refused
    other = url.replace(key, blob_key(b"other")[0])
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(other, timeout=10)
    assert e.value.code == 403


def test_keys_needing_encoding_and_sorted_listing(s3, bucket):
    key = f"/{BUCKET}/odd keys/a b+c=d&é~_.-"
    assert request(s3, "PUT", key, b"odd")[0] == 200
    status, got, _ = request(s3, "GET", key)
    assert status == 200 and got == b"odd"
    # parameters given out of order are signed sorted; the answer lists the key
    status, body, _ = request(s3, "GET", f"/{BUCKET}",
                              query=[("prefix", "odd keys/"), ("list-type", "2"),
                                     ("max-keys", "5")])
    assert status == 200, body
    keys = [html.unescape(k.decode()) for k in re.findall(rb"<Key>([^<]*)</Key>", body)]
    assert keys == ["odd keys/a b+c=d&é~_.-"]


def test_multipart_parameters_without_values(s3, bucket):
    key = f"/{BUCKET}/uploads/abandoned"
    status, body, _ = request(s3, "POST", key, query=[("uploads", "")])
    assert status == 200, body
    upload_id = re.search(rb"<UploadId>([^<]+)</UploadId>", body).group(1).decode()
    status, body, _ = request(s3, "GET", f"/{BUCKET}", query=[("uploads", "")])
    assert status == 200 and upload_id.encode() in body
    status, _, _ = request(s3, "DELETE", key, query=[("uploadId", upload_id)])
    assert status == 204
    status, body, _ = request(s3, "GET", f"/{BUCKET}", query=[("uploads", "")])
    assert status == 200 and upload_id.encode() not in body
