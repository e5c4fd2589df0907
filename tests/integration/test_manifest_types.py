# SPDX-License-Identifier: Apache-2.0
"""An upstream's manifest is cached and served only when it is one: a manifest media type, and a
JSON object whose mediaType (when it has one) is that type. An HTML page, a redirect target's
secret or a body that names text/html is refused with 502 MANIFEST_INVALID and nothing is
stored; a tag already cached stays served as it was last verified."""

import json
import os
import time

import pytest

from helpers import assert_error, get
from scripted import (DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Reply, Scripted, digest_of,
                      image_manifest)

MANIFEST_TYPES = {OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST,
                  "application/vnd.docker.distribution.manifest.list.v2+json"}


def _serve(up, repo, tag, body, content_type):
    d = digest_of(body)

    def answer(req):
        return Reply(200, [("Content-Type", content_type), ("Docker-Content-Digest", d)], body)
    for ref in (tag, d):
        up.route("*", rf"/v2/{repo}/manifests/{ref}", answer)
    return d


def _stored(m, digest):
    return os.path.exists(m.file_for(digest))


HTML = b"<html><script>alert(document.cookie)</script></html>"
OCI_BODY, _ = image_manifest(b'{"os":"linux"}', [b"x"])
NO_TYPE = json.dumps({"schemaVersion": 2,
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": digest_of(b"{}"), "size": 2},
                      "layers": []}).encode()

REFUSED = [
    ("html page", HTML, "text/html"),
    ("html page as a manifest type", HTML, OCI_MANIFEST),
    ("manifest json as text/html", OCI_BODY, "text/html"),
    ("body naming text/html", json.dumps({"schemaVersion": 2, "mediaType": "text/html",
                                          "config": {}, "layers": []}).encode(),
     "application/json"),
    ("body naming another manifest type", OCI_BODY, DOCKER_MANIFEST),
    ("docker type without mediaType", NO_TYPE, DOCKER_MANIFEST),
    ("a JSON array", b"[1,2,3]", OCI_MANIFEST),
    ("schema 1", json.dumps({"schemaVersion": 1, "name": "x", "tag": "1",
                             "fsLayers": []}).encode(),
     "application/vnd.docker.distribution.manifest.v1+prettyjws"),
    ("an index without manifests", json.dumps({"schemaVersion": 2,
                                                "mediaType": OCI_INDEX}).encode(), OCI_INDEX),
]


@pytest.mark.parametrize("what,body,ctype", REFUSED, ids=[r[0] for r in REFUSED])
def test_an_upstream_answer_that_is_not_a_manifest_is_refused_and_not_stored(
        mirror_factory, what, body, ctype):
    up = Scripted()
    try:
        d = _serve(up, "team/app", "1", body, ctype)
        m = mirror_factory([{"name": "docker.io", "url": up.url}])
        for path in ("/v2/team/app/manifests/1", f"/v2/team/app/manifests/{d}"):
            for method in ("GET", "HEAD"):
                s, h, got = get(m, path, method=method)
                assert s in (404, 502), (what, path, method, s)
                assert h.get("content-type", "").split(";")[0] not in ("text/html",) \
                    or s != 200
                if method == "GET":
                    assert_error(s, got, (404, 502), "MANIFEST_INVALID", "MANIFEST_UNKNOWN")
        assert not _stored(m, d)
        assert "not a manifest" in m.log_text()
        # refused once, not asked again at every pull
        assert len(up.requests("GET", "/manifests/1")) <= 1
    finally:
        up.stop()


def test_a_manifest_whose_type_the_upstream_did_not_say_is_served_as_its_own(mirror_factory):
    up = Scripted()
    try:
        d = _serve(up, "team/app", "1", NO_TYPE, "application/json")
        m = mirror_factory([{"name": "docker.io", "url": up.url}])
        s, h, got = get(m, "/v2/team/app/manifests/1")
        assert s == 200 and got == NO_TYPE and h["content-type"] == OCI_MANIFEST
        assert h["docker-content-digest"] == d
        # an OCI 1.1 artifact: an image manifest with an artifactType
        art = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "artifactType": "application/vnd.example.sbom",
                          "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                     "digest": digest_of(b"{}"), "size": 2},
                          "layers": []}).encode()
        d2 = _serve(up, "team/app", "sbom", art, OCI_MANIFEST)
        s, h, got = get(m, "/v2/team/app/manifests/sbom")
        assert s == 200 and got == art and h["content-type"] == OCI_MANIFEST
        assert h["docker-content-digest"] == d2
    finally:
        up.stop()


def test_a_cached_tag_that_turns_into_html_stays_served_as_verified(mirror_factory):
    up = Scripted()
    try:
        _serve(up, "team/app", "1", OCI_BODY, OCI_MANIFEST)
        m = mirror_factory([{"name": "docker.io", "url": up.url}], revalidate_after="1s")
        s, h, got = get(m, "/v2/team/app/manifests/1")
        assert s == 200 and got == OCI_BODY
        d = _serve(up, "team/app", "1", HTML, "text/html")
        time.sleep(1.2)
        s, h, got = get(m, "/v2/team/app/manifests/1")
        assert s == 200 and got == OCI_BODY and h["content-type"] == OCI_MANIFEST
        assert not _stored(m, d)
    finally:
        up.stop()
