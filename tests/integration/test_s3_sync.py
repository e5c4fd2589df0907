# SPDX-License-Identifier: Apache-2.0
"""regcache s3-sync against Ceph's radosgw on loopback: a mirror's store, filled by real pulls,
goes into the bucket under the store's own keys, byte for byte; a second run sends nothing;
a local file whose bytes no longer match its name is refused by the store, reported, and not
stored; --dry-run stores nothing; a bad `s3` section names file, line and key. Marked `once`:
it starts Ceph (about 10 s)."""

import hashlib
import os

import pytest
import yaml

import clients
import rgw
from mirror import regcache
from test_s3_client import rgw_with_bucket, tool, uploads
from test_s3_signing import request

pytestmark = [pytest.mark.once,
              pytest.mark.skipif(not rgw.available(), reason="Ceph's packages are not installed")]

BUCKET = "regcache-sync"


@pytest.fixture(scope="module")
def s3(tmp_root):
    yield from rgw_with_bucket(tmp_root, "rgw-sync", BUCKET)


def s3_section(s3, tmp_dir, **more):
    secret = os.path.join(tmp_dir, "s3-secret")
    with open(secret, "w") as f:
        f.write(rgw.SECRET_KEY + "\n")
    os.chmod(secret, 0o600)
    section = {"endpoint": s3.url, "bucket": BUCKET, "access_key": rgw.ACCESS_KEY,
               "secret_key_file": secret, "part_size": "5MiB"}
    section.update(more)
    return {"s3": section}


def bucket_keys(s3):
    p = tool(s3, "list", "blobs/", bucket=BUCKET, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return {ln.split()[0]: int(ln.split()[1]) for ln in p.stdout.decode().splitlines()
            if ln.startswith("blobs/")}


def get_object(s3, key):
    status, body, _ = request(s3, "GET", f"/{BUCKET}/{key}")
    assert status == 200, body
    return body


def local_blobs(m):
    root = os.path.join(m.storage, "blobs", "sha256")
    out = {}
    for shard in os.listdir(root):
        for name in os.listdir(os.path.join(root, shard)):
            out[f"blobs/sha256/{shard}/{name}"] = os.path.join(root, shard, name)
    return out


def sync(m, *args):
    return regcache("s3-sync", "-c", m.config_path, *args, timeout=300)


def test_sync_copies_the_store_once_and_refuses_wrong_bytes(s3, tmp_dir, mirror_factory, up,
                                                           make_image, push):
    # one layer above the part size: it goes as a multipart upload
    img = push(make_image(410, (7 << 20, 96 * 1024), fmt="docker"), up, "library/syncme", "1")
    m = mirror_factory([up])  # no s3 section while it pulls: nothing is written behind
    clients.skopeo_copy_from_mirror(m.port, "library/syncme:1",
                                    os.path.join(tmp_dir, "pulled"), [])
    m.stop()
    with open(m.config_path) as f:
        cfg = yaml.safe_load(f)
    cfg.update(s3_section(s3, tmp_dir))
    with open(m.config_path, "w") as f:
        yaml.safe_dump(cfg, f)
    local = local_blobs(m)
    assert len(local) >= 3  # config and two layers
    p = sync(m, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert f"{len(local)} to store" in p.stdout, p.stdout
    assert not bucket_keys(s3)
    p = sync(m)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"{len(local)} stored" in p.stdout, p.stdout
    keys = bucket_keys(s3)
    assert set(keys) == set(local)
    for key, path in local.items():
        body = get_object(s3, key)
        assert body == open(path, "rb").read()
        assert hashlib.sha256(body).hexdigest() == key.rsplit("/", 1)[1]
    assert not uploads(s3, "blobs/", bucket=BUCKET)
    # again: everything is listed as there, nothing is sent
    p = sync(m)
    assert p.returncode == 0, p.stderr
    assert f"{len(local)} already there, 0 stored" in p.stdout, p.stdout
    # a local file that rotted: the store refuses it, the run says which, nothing is stored
    victim = img.blob_digests[1]
    vkey = f"blobs/sha256/{victim[7:9]}/{victim[7:]}"
    status, _, _ = request(s3, "DELETE", f"/{BUCKET}/{vkey}")
    assert status == 204
    with open(local[vkey], "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 1]))
    p = sync(m)
    assert p.returncode == 1, p.stdout
    assert victim in p.stderr and "does not match its digest" in p.stderr, p.stderr
    assert "1 failed" in p.stdout
    assert vkey not in bucket_keys(s3)


def test_bad_s3_sections_name_file_line_and_key(tmp_dir, mirror_factory, up, s3):
    for section, want in (({"endpoint": "ftp://x"}, "s3.endpoint"),
                          ({"endpoint": "http://h/path"}, "s3.endpoint"),
                          ({"bucket": "a/b"}, "s3.bucket"),
                          ({"part_size": "1MiB"}, "s3.part_size"),
                          ({"secret_key": "x"}, "not both"),
                          ({"colour": "blue"}, "s3.colour: unknown key")):
        m = mirror_factory([up], extra=s3_section(s3, tmp_dir, **section), start=False)
        p = sync(m)
        assert p.returncode == 1, p.stdout
        assert f"{m.config_path}:" in p.stderr and want in p.stderr, p.stderr
    m = mirror_factory([up], extra={"s3": {"endpoint": s3.url, "access_key": "a",
                                           "secret_key": "b"}}, start=False)
    p = sync(m)
    assert p.returncode == 1 and "bucket is missing" in p.stderr, p.stderr
    m = mirror_factory([up], start=False)
    p = sync(m)
    assert p.returncode == 1 and "no s3 section" in p.stderr, p.stderr
    p = regcache("s3-sync", "--jobs", "0")
    assert p.returncode == 2
