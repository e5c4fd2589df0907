# SPDX-License-Identifier: Apache-2.0
"""Hosted repositories against hostile pushers and readers: what a push may store and how it
is served back, routing that an explicit upstream decides, upload sessions that are abandoned
by the thousand, pushes that would fill the disk, blobs read through a repository that does
not hold them, and an empty catalog (under the sanitizer build too)."""

import json
import os
import socket
import time

import pytest

from helpers import assert_error, get, wait_until
from mirror import request
from ocipush import OCI_MANIFEST, digest_of, push_blob, push_image, put_manifest
from scripted import Scripted, image_manifest
from test_auth import ALICE, BOB, basic, make_users

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def scripted():
    """make() -> a started scripted upstream; all are stopped after the test."""
    made = []

    def make():
        s = Scripted()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def open_mirror(mirror_factory, ups, tmp_dir, hosted=("team/*",), auth=True, names=None,
                **hosted_keys):
    """A mirror with hosted patterns (and hosted.* keys when given); alice and bob may push."""
    extra = {"hosted": {"repositories": list(hosted), **hosted_keys} if hosted_keys
             else list(hosted)}
    if auth:
        extra["auth"] = {"htpasswd": make_users(tmp_dir, ALICE, BOB)}
    return mirror_factory(ups, extra=extra, names=names)


def config_blob(seed):
    return json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()


# -- item 5: a push stores and serves manifest media types only --------------------------------

def test_manifest_push_of_another_media_type_is_refused(mirror_factory, scripted, tmp_dir):
    """A PUT whose Content-Type is text/html (a stored XSS once served back), or whose body's
    mediaType is not a manifest's or disagrees with the Content-Type, or whose body is not a
    JSON object, is 400 MANIFEST_INVALID and nothing is tagged; manifest types are taken."""
    up = scripted()
    m = open_mirror(mirror_factory, [up], tmp_dir)
    auth = basic(*ALICE)
    cfg = config_blob(5)
    push_blob(m, "team/app", cfg, auth)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": digest_of(cfg), "size": len(cfg)}, "layers": []}
    html = {"schemaVersion": 2, "config": doc["config"], "layers": [],
            "x": "<script>alert(1)</script>"}
    refusals = [
        ("html", html, "text/html"),
        ("html2", dict(html, mediaType="text/html"), "text/html"),
        ("inner", dict(html, mediaType="text/html"), OCI_MANIFEST),
        ("json", html, "application/json"),
        ("mismatch", doc, DOCKER_MANIFEST),
        ("array", b'[{"mediaType":"%s"}]' % OCI_MANIFEST.encode(), OCI_MANIFEST),
    ]
    for tag, body, ctype in refusals:
        s, _, rbody, _ = put_manifest(m, "team/app", tag, body, auth, media_type=ctype)
        assert_error(s, rbody, 400, "MANIFEST_INVALID")
        s, h, _ = get(m, f"/v2/team/app/manifests/{tag}", headers={})
        assert s == 404, (tag, s, h.get("content-type"))
    # what is a manifest still goes in, and comes back with its type; a Content-Type with
    # parameters or in capitals is taken in its canonical spelling
    s, _, rbody, raw = put_manifest(m, "team/app", "v1", doc, auth,
                                    media_type=OCI_MANIFEST.upper() + "; charset=utf-8")
    assert s == 201, rbody
    s, h, body = get(m, "/v2/team/app/manifests/v1", headers={})
    assert s == 200 and body == raw and h["content-type"] == OCI_MANIFEST
    # no Content-Type: the body's mediaType decides; neither: an OCI image manifest
    docker_doc = dict(doc, mediaType=DOCKER_MANIFEST)
    raw = json.dumps(docker_doc).encode()
    s, _, rbody, _ = request(m.port, "PUT", "/v2/team/app/manifests/v2", auth, body=raw)
    assert s == 201, rbody
    assert get(m, "/v2/team/app/manifests/v2", headers={})[1]["content-type"] == DOCKER_MANIFEST
    assert up.requests(path="/team/") == []


# -- item 13: an explicit upstream never reaches hosted content --------------------------------

def test_explicit_upstream_is_never_answered_from_hosted(mirror_factory, scripted, tmp_dir):
    """team/app is hosted; team/app?ns=quay.example and /v2/quay.example/team/app name the
    upstream quay.example and get its image (asked there), never the hosted one; a push with
    an explicit upstream is refused, and without one it still goes to hosted."""
    hub, quay = scripted(), scripted()
    quay_digest, quay_raw, _ = quay.image("team/app", "v1")
    m = open_mirror(mirror_factory, [hub, quay], tmp_dir, hosted=("team/*", "quay.example/*"),
                    names=["docker.io", "quay.example"])
    assert "pattern 'quay.example/*' is never used" in m.log_text()
    auth = basic(*ALICE)
    hosted_raw, _ = push_image(m, "team/app", "v1", auth, seed=13)
    s, _, body = get(m, "/v2/team/app/manifests/v1")
    assert s == 200 and body == hosted_raw
    for path in ("/v2/team/app/manifests/v1?ns=quay.example",
                 "/v2/quay.example/team/app/manifests/v1"):
        s, h, body = get(m, path)
        assert s == 200, (path, s, body[:200])
        assert body == quay_raw and h["docker-content-digest"] == quay_digest, path
    assert len(quay.requests(path=r"^/v2/team/app/manifests/")) >= 1
    # an ns naming no upstream is not hosted either
    s, _, body = get(m, "/v2/team/app/manifests/v1?ns=nowhere.example")
    assert_error(s, body, 404, "NAME_UNKNOWN")
    # pushes through an explicit upstream are refused, like any push into a proxied repository
    s, _, body, _ = request(m.port, "POST", "/v2/team/app/blobs/uploads/?ns=quay.example", auth)
    assert_error(s, body, 405, "UNSUPPORTED")
    s, _, body, _ = request(m.port, "POST", "/v2/quay.example/team/app/blobs/uploads/", auth)
    assert_error(s, body, 405, "UNSUPPORTED")
    assert hub.requests(path="/team/") == []


# -- item 19: an empty catalog -----------------------------------------------------------------

def test_empty_catalog_is_listed(mirror_factory, scripted, tmp_dir):
    """Nothing cached, nothing hosted: _catalog answers an empty list, paged or not (the
    sanitizer build runs this too: sorting no names must not touch a NULL array)."""
    up = scripted()
    for hosted in (("team/*",), ()):
        m = open_mirror(mirror_factory, [up], tmp_dir, hosted=hosted, auth=False) if hosted \
            else mirror_factory([up])
        for q in ("", "?n=10", "?n=0", "?last=zzz", "?n=1&last=a"):
            s, h, body = get(m, "/v2/_catalog" + q, headers={})
            assert s == 200, (q, body)
            assert json.loads(body) == {"repositories": []} and "link" not in h, q
        m.stop()
        assert "runtime error" not in m.log_text() and "AddressSanitizer" not in m.log_text()


# -- item 9: abandoned upload sessions ---------------------------------------------------------

def upload_fds(m):
    """Descriptors the mirror holds on upload files (store tmp/)."""
    fd_dir = f"/proc/{m.proc.pid}/fd"
    tmp = os.path.join(m.storage, "tmp")
    n = 0
    for fd in os.listdir(fd_dir):
        try:
            n += os.readlink(os.path.join(fd_dir, fd)).startswith(tmp + "/")
        except OSError:
            pass
    return n


def upload_files(m):
    return len(os.listdir(os.path.join(m.storage, "tmp")))


def test_upload_sessions_are_capped_per_user_and_hold_no_descriptors(mirror_factory, scripted,
                                                                     tmp_dir):
    """One user's POSTs that are never followed up stop at the per-client cap (default 64) with
    429 TOOMANYREQUESTS and a Retry-After, while another user still starts sessions and pushes;
    the open sessions hold no descriptor; a session then goes on (PATCH, PUT) as usual."""
    up = scripted()
    m = open_mirror(mirror_factory, [up], tmp_dir)
    alice, bob = basic(*ALICE), basic(*BOB)
    for i in range(64):
        s, h, body, _ = request(m.port, "POST", "/v2/team/app/blobs/uploads/", alice)
        assert s == 202, (i, s, body)
        if i == 0:
            first = h["location"]
    s, h, body, _ = request(m.port, "POST", "/v2/team/app/blobs/uploads/", alice)
    assert_error(s, body, 429, "TOOMANYREQUESTS")
    assert int(h["retry-after"]) > 0
    assert upload_fds(m) == 0, "idle upload sessions hold descriptors"
    # another user is not affected
    s, _, body, _ = request(m.port, "POST", "/v2/team/other/blobs/uploads/", bob)
    assert s == 202, body
    push_blob(m, "team/other", b"bob's layer", bob)
    # an idle session reopens its file on the next request
    data = os.urandom(100 * 1024)
    s, h, body, _ = request(m.port, "PATCH", first, dict(alice, **{"Content-Range":
                                                                    f"0-{len(data) - 1}"}),
                            body=data)
    assert s == 202 and h["range"] == f"0-{len(data) - 1}", body
    assert upload_fds(m) == 0
    s, _, body, _ = request(m.port, "PUT", f"{first}?digest={digest_of(data)}", alice)
    assert s == 201, body
    assert get(m, f"/v2/team/app/blobs/{digest_of(data)}", headers={})[2] == data
    # with one session done, alice may start one more
    assert request(m.port, "POST", "/v2/team/app/blobs/uploads/", alice)[0] == 202


def test_idle_upload_sessions_expire(mirror_factory, scripted, tmp_dir):
    """With hosted.upload_timeout 2s, sessions nobody continues are gone (their temporary files
    too: 404 BLOB_UPLOAD_UNKNOWN afterwards) and their owner may start new ones; a session in
    use is kept alive by its requests."""
    up = scripted()
    m = open_mirror(mirror_factory, [up], tmp_dir, upload_timeout="2s", max_uploads_per_client=5)
    alice = basic(*ALICE)
    locs = []
    for _ in range(5):
        s, h, _, _ = request(m.port, "POST", "/v2/team/app/blobs/uploads/", alice)
        assert s == 202
        locs.append(h["location"])
    assert request(m.port, "POST", "/v2/team/app/blobs/uploads/", alice)[0] == 429
    assert upload_files(m) == 5
    # one of them is kept going
    kept, sent = locs[0], 0
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        s, _, body, _ = request(m.port, "PATCH", kept, dict(alice, **{"Content-Range":
                                                                       f"{sent}-{sent}"}),
                                body=b"x")
        assert s == 202, body
        sent += 1
        time.sleep(0.5)
    wait_until(lambda: upload_files(m) == 1, timeout=10, what="idle sessions expired")
    for loc in locs[1:]:
        s, _, body, _ = request(m.port, "GET", loc, alice)
        assert_error(s, body, 404, "BLOB_UPLOAD_UNKNOWN")
    s, h, _, _ = request(m.port, "GET", kept, alice)
    assert s == 204 and h["range"] == f"0-{sent - 1}"
    assert request(m.port, "POST", "/v2/team/app/blobs/uploads/", alice)[0] == 202
    assert "upload sessions idle" in m.log_text()


# -- item 20: a repository serves, mounts and references only what it holds --------------------

def test_blobs_are_read_and_mounted_only_through_a_repository_holding_them(
        mirror_factory, scripted, tmp_dir):
    """A blob pushed to team/a is 404 BLOB_UNKNOWN through team/b (and so is a blob cached from
    an upstream); a mount from a repository that does not hold it is an ordinary upload session
    (202), from one that does a 201, after which team/b serves it, across a restart too; a
    manifest of team/c naming team/a's blob is 400 MANIFEST_BLOB_UNKNOWN."""
    up = scripted()
    cached = b"a layer cached from the upstream"
    up.blob(cached)
    m = open_mirror(mirror_factory, [up], tmp_dir)
    auth = basic(*ALICE)
    data = os.urandom(4096)
    d = push_blob(m, "team/a", data, auth)
    assert get(m, f"/v2/team/a/blobs/{d}", headers={})[2] == data
    for method in ("GET", "HEAD"):
        s, _, body = get(m, f"/v2/team/b/blobs/{d}", method=method, headers={})
        assert s == 404, (method, s)
        if method == "GET":
            assert_error(s, body, 404, "BLOB_UNKNOWN")
    # a blob the cache holds is not hosted content
    cd = digest_of(cached)
    assert get(m, f"/v2/library/x/blobs/{cd}", headers={})[2] == cached
    assert_error(*get(m, f"/v2/team/a/blobs/{cd}", headers={})[::2], 404, "BLOB_UNKNOWN")
    # mounts
    for src in ("team/nothing", "library/x", "team/b"):
        s, h, body, _ = request(m.port, "POST",
                                f"/v2/team/b/blobs/uploads/?mount={d}&from={src}", auth)
        assert s == 202 and "/blobs/uploads/" in h["location"], (src, s, body)
    assert get(m, f"/v2/team/b/blobs/{d}", headers={})[0] == 404
    s, h, body, _ = request(m.port, "POST", f"/v2/team/b/blobs/uploads/?mount={d}&from=team/a",
                            auth)
    assert s == 201 and h["location"] == f"/v2/team/b/blobs/{d}", body
    assert get(m, f"/v2/team/b/blobs/{d}", headers={})[2] == data
    # a manifest may only use what its repository holds
    cfg = config_blob(20)
    push_blob(m, "team/c", cfg, auth)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": digest_of(cfg), "size": len(cfg)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
                       "size": len(data)}]}
    s, _, body, _ = put_manifest(m, "team/c", "v1", doc, auth)
    assert_error(s, body, 400, "MANIFEST_BLOB_UNKNOWN")
    assert get(m, f"/v2/team/c/blobs/{d}", headers={})[0] == 404
    push_blob(m, "team/c", data, auth)
    s, _, body, _ = put_manifest(m, "team/c", "v1", doc, auth)
    assert s == 201, body
    # what each repository holds survives a restart
    m.stop()
    m.start()
    assert get(m, f"/v2/team/b/blobs/{d}", headers={})[2] == data
    assert get(m, f"/v2/team/c/blobs/{d}", headers={})[2] == data
    assert get(m, f"/v2/team/c/blobs/{digest_of(cfg)}", headers={})[2] == cfg
    assert get(m, f"/v2/team/d/blobs/{d}", headers={})[0] == 404


# -- item 10: pushes do not fill the disk ------------------------------------------------------

def chunked_patch(m, loc, auth, pieces):
    """A PATCH whose body goes chunked (no Content-Length): (status, headers, body)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=30)
    try:
        conn.request("PATCH", loc, body=iter(pieces), headers=dict(auth),
                     encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_pushes_stop_at_min_free(mirror_factory, scripted, tmp_dir):
    """With cache.min_free above the free space, a blob push (monolithic, PATCH, chunked PATCH)
    and a manifest push are 507 with a spec error, nothing is stored, and the session is left
    as it was."""
    up = scripted()
    st = os.statvfs(tmp_dir)
    free = st.f_bavail * st.f_frsize
    extra_min_free = {"cache": {"min_free": str(free + (8 << 30))}}
    m = mirror_factory([up], extra={"hosted": ["team/*"], **extra_min_free,
                                    "auth": {"htpasswd": make_users(tmp_dir, ALICE)}})
    auth = basic(*ALICE)
    data = os.urandom(64 * 1024)
    d = digest_of(data)
    s, _, body, _ = request(m.port, "POST", f"/v2/team/app/blobs/uploads/?digest={d}", auth,
                            body=data)
    assert_error(s, body, 507, "DENIED")
    assert not os.path.exists(m.file_for(d))
    s, h, _, _ = request(m.port, "POST", "/v2/team/app/blobs/uploads/", auth)
    assert s == 202
    loc = h["location"]
    s, _, body, _ = request(m.port, "PATCH", loc, dict(auth, **{"Content-Range": "0-65535"}),
                            body=data)
    assert_error(s, body, 507, "DENIED")
    s, _, body = chunked_patch(m, loc, auth, [data[:30000], data[30000:]])
    assert_error(s, body, 507, "DENIED")
    s, h, _, _ = request(m.port, "GET", loc, auth)
    assert s == 204 and h["range"] == "0--1"
    s, _, body, _ = put_manifest(m, "team/app", "v1", {"schemaVersion": 2,
                                                       "mediaType": OCI_MANIFEST,
                                                       "layers": []}, auth)
    assert_error(s, body, 507, "DENIED")
    assert get(m, "/v2/team/app/manifests/v1", headers={})[0] == 404


def test_hosted_max_size_caps_hosted_content(mirror_factory, scripted, tmp_dir):
    """hosted.max_size 1MiB: blobs go in until the total would pass it, then 507 (a chunked
    body as its bytes arrive, a sized one before any is read); the cap counts what the store
    held at start."""
    up = scripted()
    m = open_mirror(mirror_factory, [up], tmp_dir, max_size="1MiB")
    auth = basic(*ALICE)
    first = os.urandom(600 * 1024)
    push_blob(m, "team/app", first, auth)
    second = os.urandom(600 * 1024)
    s, _, body, _ = request(m.port, "POST",
                            f"/v2/team/app/blobs/uploads/?digest={digest_of(second)}", auth,
                            body=second)
    assert_error(s, body, 507, "DENIED")
    s, h, _, _ = request(m.port, "POST", "/v2/team/app/blobs/uploads/", auth)
    loc = h["location"]
    pieces = [second[i:i + 64 * 1024] for i in range(0, len(second), 64 * 1024)]
    s, _, body = chunked_patch(m, loc, auth, pieces)
    assert_error(s, body, 507, "DENIED")
    assert not os.path.exists(m.file_for(digest_of(second)))
    # a small one still fits; a mount adds no bytes
    push_blob(m, "team/app", os.urandom(100 * 1024), auth)
    s, _, body, _ = request(m.port, "POST", f"/v2/team/other/blobs/uploads/?mount="
                            f"{digest_of(first)}&from=team/app", auth)
    assert s == 201, body
    m.stop()
    m.start()
    s, _, body, _ = request(m.port, "POST",
                            f"/v2/team/app/blobs/uploads/?digest={digest_of(second)}", auth,
                            body=second)
    assert_error(s, body, 507, "DENIED")
    assert "hosted.max_size" in m.log_text()


def test_pushes_never_fill_a_small_filesystem(mirror_factory, scripted, tmp_dir):
    """On a 48 MiB tmpfs with cache.min_free 16MiB, pushes of 4 MiB blobs go in until the next
    would cross min_free, then 507; the filesystem keeps its 16 MiB (less one piece in flight)
    and the index still saves: every blob stored, the last one included, is known after a
    restart. (A push once the disk is at min_free may be refused too: the index's own writes
    use the space kept free, which is what it is kept for.)"""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    import subprocess
    mnt = os.path.join(tmp_dir, "small")
    os.makedirs(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", mnt]).returncode:
        pytest.skip("cannot mount a tmpfs")
    try:
        up = scripted()
        m = mirror_factory([up], extra={"hosted": ["team/*"], "storage": mnt,
                                        "cache": {"min_free": "16MiB"},
                                        "auth": {"htpasswd": make_users(tmp_dir, ALICE)}})
        auth = basic(*ALICE)
        push_image(m, "team/app", "before", auth)
        stored = refused = 0
        kept = []
        for i in range(12):
            data = os.urandom(4 << 20)
            s, h, body, _ = request(m.port, "POST", "/v2/team/app/blobs/uploads/", auth)
            loc = h["location"]
            s, _, body = chunked_patch(m, loc, auth,
                                       [data[j:j + (1 << 20)] for j in range(0, len(data),
                                                                                1 << 20)])
            if s == 507:
                assert_error(s, body, 507, "DENIED")
                refused += 1
                continue
            assert s == 202, body
            s, _, body, _ = request(m.port, "PUT", f"{loc}?digest={digest_of(data)}", auth)
            assert s == 201, body
            stored += 1
            kept.append(digest_of(data))
        st = os.statvfs(mnt)
        assert stored >= 4 and refused >= 1, (stored, refused)
        assert st.f_bavail * st.f_frsize >= (16 << 20) - (2 << 20), st
        # the index still took writes near the limit: after a restart every stored blob is
        # still held by the repository (that is read from the index), and the tag is there
        m.stop()
        m.start()
        assert get(m, "/v2/team/app/manifests/before", headers={})[0] == 200
        for d in kept:
            assert get(m, f"/v2/team/app/blobs/{d}", method="HEAD", headers={})[0] == 200, d
        m.stop()
    finally:
        subprocess.run(["umount", "-l", mnt])
