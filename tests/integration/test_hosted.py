# SPDX-License-Identifier: Apache-2.0
"""Hosted repositories: the LAN's own images pushed with authentication (buildah, skopeo), pulled
anonymously, never sent upstream, never evicted by the GC."""

import hashlib
import json
import os
import subprocess

import pytest

import clients
from helpers import assert_error, get, since
from images import skopeo, verify_oci_layout
from test_auth import ALICE, BOB, basic, make_users

CREDS = ":".join(ALICE)


def hosted_mirror(mirror_factory, up, tmp_dir, scheme="basic", **cache):
    extra = {"auth": {"htpasswd": make_users(tmp_dir, ALICE, BOB), "realm": "Hosted",
                      "push_users": ["alice"], "scheme": scheme},
             "hosted": ["search-hub", "team/*"]}
    if cache:
        extra["cache"] = cache
    return mirror_factory([up], extra=extra)


def skopeo_push(img, port, ref, creds=CREDS):
    args = ["copy", "--all", "--preserve-digests", "--dest-tls-verify=false"]
    if creds:
        args += ["--dest-creds", creds]
    return skopeo(*args, f"dir:{img.layout}.dir", f"docker://127.0.0.1:{port}/{ref}")


def test_skopeo_push_then_anonymous_pull(mirror_factory, up, make_image, tmp_dir):
    """A push user pushes a multi-arch image with skopeo; anyone pulls it back byte for byte;
    the upstream never hears of it; tags/list and DELETE work."""
    img = make_image(100, (128 * 1024, 32 * 1024), fmt="oci", multi_arch=True)
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    mark = up.mark()
    skopeo_push(img, m.port, "team/app:v1")
    skopeo_push(img, m.port, "team/app:v2")
    # anonymous pull of what was pushed
    s, h, body = get(m, "/v2/team/app/manifests/v1", headers={})
    assert s == 200 and body == img.raw and h["docker-content-digest"] == img.digest
    assert h["content-type"] == img.media_type
    for d in img.blob_digests:
        s, _, data = get(m, f"/v2/team/app/blobs/{d}", accept=False)
        assert s == 200 and "sha256:" + hashlib.sha256(data).hexdigest() == d
    out = os.path.join(tmp_dir, "pulled")
    clients.skopeo_copy_from_mirror(m.port, "team/app:v1", out, ["--preserve-digests", "--all"])
    verify_oci_layout(out, img.digest)
    s, _, body = get(m, "/v2/team/app/tags/list", headers={})
    assert s == 200 and json.loads(body) == {"name": "team/app", "tags": ["v1", "v2"]}
    s, h, body = get(m, "/v2/team/app/tags/list?n=1", headers={})
    assert json.loads(body)["tags"] == ["v1"] and "rel=\"next\"" in h["link"]
    assert since(up, mark) == [], "a hosted repository went upstream"
    # delete a tag
    s, _, _ = get(m, "/v2/team/app/manifests/v2", method="DELETE", headers=basic(*ALICE))
    assert s == 202
    assert get(m, "/v2/team/app/manifests/v2", headers={})[0] == 404
    assert get(m, "/v2/team/app/manifests/v1", headers={})[0] == 200


def test_push_refusals(mirror_factory, up, make_image, tmp_dir):
    """No credentials: refused with the challenge; a user outside push_users: refused; a push
    into a proxied repository: refused; a manifest referencing missing blobs: refused."""
    img = make_image(101, (16 * 1024,), fmt="oci")
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    for creds in (None, ":".join(BOB)):
        try:
            skopeo_push(img, m.port, "search-hub:v1", creds=creds)
            raise AssertionError(f"push with {creds} succeeded")
        except RuntimeError as e:
            assert "401" in str(e) or "403" in str(e) or "denied" in str(e).lower() or \
                "unauthorized" in str(e).lower() or "authentication required" in str(e), str(e)
    assert get(m, "/v2/search-hub/manifests/v1", headers={})[0] == 404
    s, _, body = get(m, "/v2/library/proxied/blobs/uploads/", method="POST",
                     headers=basic(*ALICE))
    assert_error(s, body, 405, "UNSUPPORTED")
    manifest = json.dumps({"schemaVersion": 2, "mediaType":
                           "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": "sha256:" + "1" * 64, "size": 2},
                           "layers": []}).encode()
    h = dict(basic(*ALICE), **{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    from mirror import request
    s, _, body, _ = request(m.port, "PUT", "/v2/search-hub/manifests/bad", h, body=manifest)
    assert_error(s, body, 400, "MANIFEST_BLOB_UNKNOWN")


def test_chunked_upload_with_resume_and_digest_check(mirror_factory, up, tmp_dir):
    """POST, PATCH in two chunks (Content-Range), status GET, PUT with the digest; a wrong digest
    is refused and nothing is stored."""
    from mirror import request
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    auth = basic(*ALICE)
    data = os.urandom(300 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    s, h, _, _ = request(m.port, "POST", "/v2/team/chunks/blobs/uploads/", auth)
    assert s == 202 and h["location"].startswith("/v2/team/chunks/blobs/uploads/")
    loc = h["location"]
    s, h, _, _ = request(m.port, "PATCH", loc, dict(auth, **{"Content-Range": "0-99999"}),
                         body=data[:100000])
    assert s == 202 and h["range"] == "0-99999"
    s, h, _, _ = request(m.port, "PATCH", loc, dict(auth, **{"Content-Range": "5-10"}),
                         body=b"x" * 6)
    assert s == 416
    s, h, _, _ = request(m.port, "GET", loc, auth)
    assert s == 204 and h["range"] == "0-99999"
    s, h, _, _ = request(m.port, "PATCH", loc, dict(auth, **{"Content-Range":
                                                            f"100000-{len(data) - 1}"}),
                         body=data[100000:])
    assert s == 202
    s, h, _, _ = request(m.port, "PUT", loc + "?digest=" + digest, auth)
    assert s == 201 and h["docker-content-digest"] == digest
    s, _, body = get(m, f"/v2/team/chunks/blobs/{digest}", accept=False, headers={})
    assert s == 200 and body == data
    # monolithic with a wrong digest
    wrong = "sha256:" + "0" * 64
    s, _, body, _ = request(m.port, "POST", f"/v2/team/chunks/blobs/uploads/?digest={wrong}",
                            auth, body=b"hello")
    assert_error(s, body, 400, "DIGEST_INVALID")
    assert not os.path.exists(m.file_for(wrong))
    # an upload cancelled is gone
    s, h, _, _ = request(m.port, "POST", "/v2/team/chunks/blobs/uploads/", auth)
    cancel = h["location"]
    assert request(m.port, "DELETE", cancel, auth)[0] == 204
    s, _, body, _ = request(m.port, "GET", cancel, auth)
    assert_error(s, body, 404, "BLOB_UPLOAD_UNKNOWN")
    # cross-repository mount of a blob the registry has
    s, h, _, _ = request(m.port, "POST",
                         f"/v2/search-hub/blobs/uploads/?mount={digest}&from=team/chunks", auth)
    assert s == 201 and h["location"] == f"/v2/search-hub/blobs/{digest}"


@pytest.mark.engines
@pytest.mark.parametrize("scheme", ["basic", "token"])
def test_buildah_push_with_credentials(mirror_factory, up, make_image, tmp_dir, scheme):
    """The seed's case: buildah pushes with --creds to a mirror that allows anonymous pulls.
    basic: the ping answers 200 with the Basic challenge, so buildah sends the credentials;
    token: buildah fetches a token for them from the mirror's endpoint."""
    img = make_image(102, (64 * 1024,), fmt="oci")
    m = hosted_mirror(mirror_factory, up, tmp_dir, scheme=scheme)
    root = os.path.join(tmp_dir, "buildah")
    base = ["buildah", "--storage-driver", "vfs", "--root", os.path.join(root, "root"),
            "--runroot", os.path.join(root, "run")]
    r = subprocess.run(base + ["pull", f"oci:{img.layout}:latest"], capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.strip().splitlines()[-1]
    target = f"docker://127.0.0.1:{m.port}/search-hub:latest"
    # refused without credentials, and for a user outside push_users
    for creds in ([], ["--creds", ":".join(BOB)]):
        r = subprocess.run(base + ["push", "--tls-verify=false", *creds, image_id, target],
                           capture_output=True, text=True, timeout=180)
        assert r.returncode != 0, r.stdout + r.stderr
    assert get(m, "/v2/search-hub/manifests/latest", headers={})[0] == 404
    r = subprocess.run(base + ["push", "--tls-verify=false", "--creds", CREDS, image_id, target],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    s, _, body = get(m, "/v2/search-hub/manifests/latest", headers={})
    assert s == 200
    doc = json.loads(body)
    for layer in doc["layers"] + [doc["config"]]:
        assert get(m, f"/v2/search-hub/blobs/{layer['digest']}", accept=False,
                   headers={})[0] == 200
    pings = [e for e in m.entries() if e.path == "/v2/"]
    if scheme == "basic":
        assert pings and all(e.status == 200 for e in pings)
    else:  # every push fetched a token; bob's was refused at the upload (not a push user)
        seen = m.entries()
        assert pings and {e.status for e in pings} <= {200, 401}
        assert len([e for e in seen if e.path.startswith("/v2/token") and e.status == 200]) >= 2
        assert any(e.status == 403 and e.path.endswith("/blobs/uploads/") for e in seen)


def test_hosted_content_survives_gc(mirror_factory, up, make_image, push, tmp_dir):
    """A GC that evicts everything cached leaves hosted content alone."""
    cached = push(make_image(103, (32 * 1024,)), up, "library/cached", "v1")
    own = make_image(104, (48 * 1024,), fmt="oci")
    m = hosted_mirror(mirror_factory, up, tmp_dir, ttl="1s", gc_interval="1s")
    skopeo_push(own, m.port, "team/keep:v1")
    assert get(m, f"/v2/library/cached/manifests/{cached.digest}")[0] == 200
    import time
    deadline = time.monotonic() + 30
    while os.path.exists(m.file_for(cached.digest)):
        assert time.monotonic() < deadline, "the cached manifest was never evicted"
        time.sleep(0.5)
    time.sleep(3)
    for d in own.blob_digests + [own.digest]:
        assert os.path.exists(m.file_for(d)), f"hosted {d} was evicted"
    assert get(m, "/v2/team/keep/manifests/v1", headers={})[0] == 200


def test_docker_login_and_push_with_challenging_ping(dockerd, mirror_factory, up, make_image,
                                                     tmp_dir):
    """auth.ping: challenge. Docker only sends credentials after a 401 on the ping: with it,
    `docker login` refuses a wrong password and `docker push` into a hosted repository works;
    anonymous skopeo pulls still work. (Docker's own anonymous pulls through registry-mirrors
    need the default open ping: it gives up on a 401 ping without credentials.)"""
    img = make_image(105, (32 * 1024,))
    m = mirror_factory([up], extra={
        "auth": {"htpasswd": make_users(tmp_dir, ALICE), "realm": "Hosted", "ping": "challenge"},
        "hosted": ["team/*"]})
    env = dict(os.environ, DOCKER_CONFIG=os.path.join(tmp_dir, "docker-cli"))

    def docker(*args, stdin=None):
        return clients.run([clients.DOCKER, "-H", f"unix://{dockerd.sock}", *args], check=False,
                           env=env, timeout=180, input=stdin)

    s, h, body = get(m, "/v2/", headers={})
    assert_error(s, body, 401, "UNAUTHORIZED")
    assert h["www-authenticate"] == 'Basic realm="Hosted"'
    target = f"127.0.0.1:{m.port}/team/dpush:v1"
    archive = os.path.join(tmp_dir, "image.tar")
    skopeo("copy", f"dir:{img.layout}.dir", f"docker-archive:{archive}:{target}")
    r = docker("load", "-i", archive)
    assert r.returncode == 0, r.stdout + r.stderr
    r = docker("login", f"127.0.0.1:{m.port}", "-u", "alice", "--password-stdin", stdin="wrong")
    assert r.returncode != 0, r.stdout + r.stderr
    r = docker("login", f"127.0.0.1:{m.port}", "-u", ALICE[0], "--password-stdin", stdin=ALICE[1])
    assert r.returncode == 0, r.stdout + r.stderr
    r = docker("push", target)
    assert r.returncode == 0, r.stdout + r.stderr
    s, _, body = get(m, "/v2/team/dpush/manifests/v1", headers={})
    assert s == 200
    assert clients.skopeo_inspect_raw(m.port, "team/dpush:v1") == body


def test_gc_hosted_collects_only_unreferenced_content(mirror_factory, up, make_image, tmp_dir):
    """After a hosted manifest is deleted, `regcache gc --hosted` removes it and the blobs only it
    used (once older than the push grace period), and leaves a still-tagged image whole."""
    import sqlite3
    import time
    from mirror import regcache, request
    gone = make_image(106, (40 * 1024, 24 * 1024), fmt="oci")
    kept = make_image(107, (20 * 1024,), fmt="oci")
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    skopeo_push(gone, m.port, "team/gone:v1")
    skopeo_push(kept, m.port, "team/kept:v1")
    s, _, _, _ = request(m.port, "DELETE", f"/v2/team/gone/manifests/{gone.digest}",
                         basic(*ALICE))
    assert s == 202
    assert get(m, "/v2/team/gone/manifests/v1", headers={})[0] == 404
    time.sleep(3)  # the index writes are flushed
    db = sqlite3.connect(os.path.join(m.storage, "regcache.db"), timeout=10)
    db.execute("UPDATE blobs SET first_cached_ms = first_cached_ms - 7200000")
    db.commit()
    db.close()
    r = regcache("gc", "--hosted", "-c", m.config_path, "--dry-run")
    assert r.returncode == 0 and "would collect 4 unreferenced" in r.stdout, r.stdout + r.stderr
    assert os.path.exists(m.file_for(gone.digest))
    r = regcache("gc", "--hosted", "-c", m.config_path)
    assert r.returncode == 0 and "collected 4" in r.stdout, r.stdout + r.stderr
    for d in gone.blob_digests + [gone.digest]:
        assert not os.path.exists(m.file_for(d)), d
    for d in kept.blob_digests + [kept.digest]:
        assert os.path.exists(m.file_for(d)), d
    assert get(m, "/v2/team/kept/manifests/v1", headers={})[0] == 200


def test_docker_pulls_anonymously_logs_in_and_pushes_with_token_scheme(
        dockerd, mirror_factory, up, make_image, push, docker_mirror_port, tmp_dir):
    """auth.scheme: token on dockerd's registry-mirrors address: Docker pulls anonymously
    through the mirror (fetching an anonymous token), `docker login` refuses a wrong password
    and accepts the right one, and `docker push` into a hosted repository works, all on one
    address. Anonymous skopeo pulls the pushed image; anonymous pushes are refused."""
    pulled = push(make_image(121, (48 * 1024,), fmt="docker"), up, "library/tokpull", "v1")
    own = make_image(122, (40 * 1024,))
    m = mirror_factory([up], port=docker_mirror_port, extra={
        "auth": {"htpasswd": make_users(tmp_dir, ALICE, BOB), "realm": "Hosted",
                 "scheme": "token", "push_users": ["alice"]},
        "hosted": ["team/*"]})
    env = dict(os.environ, DOCKER_CONFIG=os.path.join(tmp_dir, "docker-cli"))

    def docker(*args, stdin=None):
        return clients.run([clients.DOCKER, "-H", f"unix://{dockerd.sock}", *args], check=False,
                           env=env, timeout=180, input=stdin)

    try:
        r = docker("pull", "library/tokpull:v1")
        assert r.returncode == 0, r.stdout + r.stderr
        assert any(d.endswith("@" + pulled.digest)
                   for d in dockerd.repo_digests("library/tokpull:v1"))
        seen = m.entries()
        assert any(e.path.startswith("/v2/token") and e.status == 200 for e in seen)
        assert any(e.path.startswith("/v2/library/tokpull/manifests/") and e.status == 200
                   for e in seen)

        target = f"127.0.0.1:{m.port}/team/tokpush:v1"
        archive = os.path.join(tmp_dir, "image.tar")
        skopeo("copy", f"dir:{own.layout}.dir", f"docker-archive:{archive}:{target}")
        assert docker("load", "-i", archive).returncode == 0
        r = docker("push", target)
        assert r.returncode != 0, "an anonymous docker push went through"
        r = docker("login", f"127.0.0.1:{m.port}", "-u", "alice", "--password-stdin",
                   stdin="wrong")
        assert r.returncode != 0, r.stdout + r.stderr
        r = docker("login", f"127.0.0.1:{m.port}", "-u", BOB[0], "--password-stdin",
                   stdin=BOB[1])
        assert r.returncode == 0, r.stdout + r.stderr
        r = docker("push", target)
        assert r.returncode != 0, "bob is not a push user"
        r = docker("login", f"127.0.0.1:{m.port}", "-u", ALICE[0], "--password-stdin",
                   stdin=ALICE[1])
        assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stdout + r.stderr
        r = docker("push", target)
        assert r.returncode == 0, r.stdout + r.stderr
        s, _, body = get(m, "/v2/team/tokpush/manifests/v1", headers={})
        assert s == 200
        assert clients.skopeo_inspect_raw(m.port, "team/tokpush:v1") == body
        try:
            skopeo_push(own, m.port, "team/anon:v1", creds=None)
            raise AssertionError("an anonymous skopeo push went through")
        except RuntimeError as e:
            assert "unauthorized" in str(e).lower(), e
    finally:
        docker("rmi", "-f", "library/tokpull:v1", target)



def test_upload_bodies_are_not_bound_by_the_manifest_limit(mirror_factory, up, make_image,
                                                          tmp_dir):
    """limits.max_manifest_size bounds manifests, not blob uploads: with it at 16 KiB a push of
    a 300 KiB layer (in one PATCH and monolithically) still goes through whole."""
    img = make_image(124, (300 * 1024,), fmt="oci")
    m = mirror_factory([up], extra={
        "auth": {"htpasswd": make_users(tmp_dir, ALICE), "push_users": ["alice"]},
        "hosted": ["team/*"], "limits": {"max_manifest_size": "16KiB"}})
    skopeo_push(img, m.port, "team/small-limit:v1")
    layer = img.layer_digests[0]
    s, _, data = get(m, f"/v2/team/small-limit/blobs/{layer}", accept=False, headers={})
    assert s == 200 and "sha256:" + hashlib.sha256(data).hexdigest() == layer


def test_pushed_index_survives_a_restart(mirror_factory, up, make_image, tmp_dir):
    """A multi-arch index pushed into a hosted repository is served whole after a restart: the
    index's own PUT (which holds what it names) does not turn its platform manifests into plain
    blobs in the index database."""
    img = make_image(104, (16 * 1024,), fmt="oci", multi_arch=True)
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    skopeo_push(img, m.port, "team/multi:v1")
    assert m.stop() == 0
    m.start()
    for child in img.manifests:
        s, h, body = get(m, f"/v2/team/multi/manifests/{child.digest}", headers={})
        assert s == 200 and body == child.raw, (child.digest, s)
    out = os.path.join(tmp_dir, "after-restart")
    clients.skopeo_copy_from_mirror(m.port, "team/multi:v1", out, ["--preserve-digests", "--all"])
    verify_oci_layout(out, img.digest)
