# SPDX-License-Identifier: Apache-2.0
"""The harness itself, without regcache: the token issuer, docker-registry's token auth and
access log, and the image generator. If these fail, every other result is suspect."""

import base64
import gzip
import hashlib
import json
import os
import urllib.error
import urllib.request

import jwt
import pytest

import images
from helpers import upstream_log
from upstream import blob_gets, count


def _token(ts, scope, creds=None, service="svc"):
    req = urllib.request.Request(f"{ts.url}?service={service}&scope={scope}")
    if creds:
        req.add_header("Authorization", "Basic " + base64.b64encode(creds.encode()).decode())
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def test_token_issuer_grants_and_logs(token_server):
    """Anonymous callers get pull only, the push user gets pull+push, wrong passwords get 401;
    tokens are RS256 with x5c and the documented claims; every request is logged."""
    before = len(token_server.requests())
    anon = _token(token_server, "repository:library/a:pull,push")
    assert anon["token"] == anon["access_token"] and anon["expires_in"] == 300
    assert "issued_at" in anon
    header = jwt.get_unverified_header(anon["token"])
    assert header["alg"] == "RS256" and header["x5c"]
    claims = jwt.decode(anon["token"], token_server.key.public_key(), algorithms=["RS256"],
                        audience="svc", issuer=token_server.issuer)
    assert claims["access"] == [{"type": "repository", "name": "library/a", "actions": ["pull"]}]
    assert {"iss", "sub", "aud", "exp", "nbf", "iat", "jti"} <= set(claims)
    user = _token(token_server, "repository:library/a:pull,push", "pushuser:pushpass")
    claims = jwt.decode(user["token"], options={"verify_signature": False})
    assert claims["access"][0]["actions"] == ["pull", "push"] and claims["sub"] == "pushuser"
    with pytest.raises(urllib.error.HTTPError) as e:
        _token(token_server, "repository:library/a:pull", "pushuser:wrong")
    assert e.value.code == 401
    log = token_server.requests()[before:]
    assert [r["auth"] for r in log] == [False, True, True]
    assert [r["status"] for r in log] == [200, 200, 401]


def test_upstream_token_auth_and_access_log(up, token_server):
    """docker-registry accepts the issuer's tokens (x5c chain against rootcertbundle), refuses
    anonymous writes, and its access log parses into (method, path, status)."""
    url = f"{up.url}/v2/library/x/tags/list"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url)
    assert e.value.code == 401 and "Bearer realm" in e.value.headers["WWW-Authenticate"]
    tok = _token(token_server, "repository:library/x:pull", service=up.service)["token"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer " + tok}))
    assert e.value.code == 404  # authorised, the repository just does not exist
    post = urllib.request.Request(f"{up.url}/v2/library/x/blobs/uploads/", method="POST",
                                  headers={"Authorization": "Bearer " + tok})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(post)
    assert e.value.code == 401  # a pull-only token cannot push
    reqs = upstream_log(up)
    assert ("GET", "/v2/library/x/tags/list", 401) in reqs
    assert ("GET", "/v2/library/x/tags/list", 404) in reqs
    assert count(reqs, method="POST") == 0 and count(reqs, method="POST", status=401) == 1


@pytest.mark.parametrize("fmt,multi", [("docker", False), ("oci", True)])
def test_image_generator_and_push(up, make_image, push, tmp_dir, fmt, multi):
    """Layouts are deterministic per seed, layers match the config's diff_ids, and a push lands
    byte-identical upstream (same manifest digest, every blob downloadable and correct)."""
    img = make_image(1, (64 * 1024, 70 * 1024), fmt=fmt, multi_arch=multi)
    again = images.build_image(os.path.join(tmp_dir, "again"), 1, (64 * 1024, 70 * 1024), fmt,
                               multi)
    assert again.digest == img.digest
    images.verify_oci_layout(img.layout, img.digest)
    media = images.MEDIA[fmt]
    assert img.media_type == (media["index"] if multi else media["manifest"])
    assert len(img.manifests) == (2 if multi else 1)
    for m in img.manifests:
        cfg = json.loads(img.blobs[m.config.digest])
        assert m.config.media_type == media["config"]
        assert cfg["architecture"] == m.platform["architecture"]
        diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(img.blobs[l.digest])).hexdigest()
                    for l in m.layers]
        assert cfg["rootfs"]["diff_ids"] == diff_ids
        assert all(l.media_type == media["layer"] for l in m.layers)
    push(img, up, "library/gen", "t")
    mark = up.mark()
    tok = _token_for(up, "library/gen")
    for d in img.blob_digests:
        req = urllib.request.Request(f"{up.url}/v2/library/gen/blobs/{d}",
                                     headers={"Authorization": "Bearer " + tok})
        with urllib.request.urlopen(req) as r:
            assert "sha256:" + hashlib.sha256(r.read()).hexdigest() == d
    assert dict(blob_gets(upstream_log(up)[mark:])) == {d: 1 for d in img.blob_digests}


def _token_for(up, repo):
    with urllib.request.urlopen(f"{up.realm}?service={up.service}&scope=repository:{repo}:pull") as r:
        return json.load(r)["token"]


def test_upstream_stop_and_start_keeps_content(up, make_image, push):
    """An upstream can be stopped (port closed) and started again with its content intact."""
    img = push(make_image(2), up, "library/restart", "t")
    up.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{up.url}/v2/", timeout=2)
    up.start()
    tok = _token_for(up, "library/restart")
    req = urllib.request.Request(f"{up.url}/v2/library/restart/manifests/t",
                                 headers={"Authorization": "Bearer " + tok,
                                          "Accept": images.DOCKER_MANIFEST})
    with urllib.request.urlopen(req) as r:
        assert r.read() == img.raw
