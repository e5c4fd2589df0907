# SPDX-License-Identifier: Apache-2.0
"""OCI distribution spec v1.1 points, for hosted and proxied repositories alike: one blob
answer (416 with Content-Range), a reference that is neither a tag nor a digest, manifests
whose subject is not there yet, and _catalog pagination."""

import json
import os

import pytest

from helpers import assert_error, get, since
from mirror import request
from ocipush import (OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, artifact, descriptor,
                     digest_of, push_artifact, push_blob, push_image, put_manifest)
from test_auth import ALICE, basic
from test_hosted import hosted_mirror

AUTH = basic(*ALICE)
BLOB_HEADERS = ("content-type", "docker-content-digest", "etag", "accept-ranges")


def test_hosted_and_proxied_blobs_answer_alike(mirror_factory, up, make_image, push, tmp_dir):
    """The same blob, proxied and hosted: HEAD, 200, 206 and 416 carry the same status and
    headers, and both 416s say `Content-Range: bytes */N`."""
    img = push(make_image(130, (5000,), fmt="oci"), up, "library/same", "v1")
    layer = img.layer_digests[0]
    data = img.blobs[layer]
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    assert push_blob(m, "team/same", data, AUTH) == layer
    proxied, hosted = f"/v2/library/same/blobs/{layer}", f"/v2/team/same/blobs/{layer}"
    assert get(m, proxied, accept=False)[0] == 200  # cached now
    for method, headers, status in (("HEAD", {}, 200), ("GET", {}, 200),
                                    ("GET", {"Range": "bytes=10-99"}, 206),
                                    ("GET", {"Range": "bytes=-10"}, 206),
                                    ("GET", {"Range": f"bytes={len(data)}-"}, 416)):
        answers = []
        for path in (proxied, hosted):
            s, h, body, _ = request(m.port, method, path, headers)
            assert s == status, (path, method, headers, s, body[:200])
            answers.append((h, body))
        (ph, pbody), (hh, hbody) = answers
        assert pbody == hbody, (method, headers)
        if status == 416:
            assert ph["content-range"] == hh["content-range"] == f"bytes */{len(data)}"
            assert_error(416, hbody, 416, "BLOB_UNKNOWN")
            continue
        for k in BLOB_HEADERS + ("content-length", "content-range"):
            assert ph.get(k) == hh.get(k), (method, headers, k, ph.get(k), hh.get(k))
    assert get(m, hosted, headers={"Range": "bytes=10-99"})[2] == data[10:100]


@pytest.mark.parametrize("reference", [".INVALID_MANIFEST_NAME", "-dash", "t" * 129, "a+b"])
def test_reference_neither_tag_nor_digest_is_manifest_unknown(mirror_factory, up, tmp_dir,
                                                              reference):
    """GET and HEAD of manifests/<reference> with a reference that is neither a valid tag nor
    a digest: 404 MANIFEST_UNKNOWN, proxied and hosted, and nothing asked upstream; a PUT of
    one into a hosted repository: 400 MANIFEST_INVALID."""
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    mark = up.mark()
    for repo in ("library/alpine", "team/app", "search-hub"):
        s, _, body = get(m, f"/v2/{repo}/manifests/{reference}")
        assert_error(s, body, 404, "MANIFEST_UNKNOWN")
        s, h, body, _ = request(m.port, "HEAD", f"/v2/{repo}/manifests/{reference}", {})
        assert s == 404 and body == b""
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    s, _, body, _ = put_manifest(m, "team/app", reference, raw, AUTH, media_type=OCI_INDEX)
    assert_error(s, body, 400, "MANIFEST_INVALID")
    # a proxied repository is read-only whatever the reference
    s, _, body, _ = put_manifest(m, "library/alpine", reference, raw, AUTH, media_type=OCI_INDEX)
    assert_error(s, body, 405, "UNSUPPORTED")
    assert since(up, mark) == [], "an invalid reference went upstream"


def test_subject_need_not_exist_but_config_layers_and_entries_must(mirror_factory, up,
                                                                   tmp_dir):
    """A manifest whose subject is not in the repository is accepted (201, OCI-Subject); one
    whose config, layer, index entry or artifact blob is missing is refused with
    MANIFEST_BLOB_UNKNOWN; a descriptor without a valid digest is MANIFEST_INVALID."""
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    absent = b'{"not":"pushed"}'
    doc, blobs = artifact(absent, "application/vnd.example.sig", b"sig")
    s, h, body, raw = push_artifact(m, "team/subj", AUTH, doc, blobs)
    assert s == 201, (s, body[:300])
    assert h["oci-subject"] == digest_of(absent)
    assert h["docker-content-digest"] == digest_of(raw)
    assert get(m, f"/v2/team/subj/manifests/{digest_of(raw)}", headers={})[0] == 200
    # a plain image: no OCI-Subject
    image_raw, image = push_image(m, "team/subj", "v1", AUTH)
    s, h, _, _ = put_manifest(m, "team/subj", "v1-again", image_raw, AUTH)
    assert s == 201 and "oci-subject" not in h

    missing = os.urandom(64)
    config = image["config"]
    cases = {
        "config": {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": descriptor(OCI_CONFIG, missing), "layers": []},
        "layer": {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                  "layers": [descriptor(OCI_LAYER, missing)]},
        "entry": {"schemaVersion": 2, "mediaType": OCI_INDEX,
                  "manifests": [descriptor(OCI_MANIFEST, missing)]},
        "blob": {"mediaType": "application/vnd.oci.artifact.manifest.v1+json",
                 "artifactType": "application/vnd.example",
                 "blobs": [descriptor(OCI_LAYER, missing)]},
    }
    for what, bad in cases.items():
        s, _, body, _ = put_manifest(m, "team/subj", what, bad, AUTH)
        assert_error(s, body, 400, "MANIFEST_BLOB_UNKNOWN")
        assert get(m, f"/v2/team/subj/manifests/{what}", headers={})[0] == 404
    for what, bad in {
        "nodigest": {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                     "config": {"mediaType": OCI_CONFIG, "size": 2}, "layers": []},
        "badsubject": dict(image, subject={"mediaType": OCI_MANIFEST, "digest": "sha256:xyz",
                                           "size": 1}),
        "notobject": [1, 2],
    }.items():
        s, _, body, _ = put_manifest(m, "team/subj", what, bad, AUTH, media_type=OCI_MANIFEST)
        assert_error(s, body, 400, "MANIFEST_INVALID")
    # a digest-looking string elsewhere (annotations) is nothing the registry must have
    noted = dict(image, annotations={"digest": "sha256:" + "d" * 64})
    assert put_manifest(m, "team/subj", "noted", noted, AUTH)[0] == 201


def test_catalog_pages_with_n_last_and_link(mirror_factory, up, make_image, push, tmp_dir):
    """_catalog lists cached and hosted repositories, sorted, each once; n and last page it,
    with a Link to the next page while more remain (none on the last)."""
    img = make_image(131, (4096,))
    for name in ("cat-b", "cat-d", "cat-f"):
        push(img, up, f"library/{name}", "1")
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    for name in ("cat-b", "cat-d", "cat-f"):
        assert get(m, f"/v2/library/{name}/manifests/1")[0] == 200
    push_image(m, "search-hub", "v1", AUTH)
    push_image(m, "team/cat-c", "v1", AUTH)
    push_image(m, "team/cat-c", "v2", AUTH, seed=1)
    s, h, body = get(m, "/v2/_catalog", headers={})
    assert s == 200 and "link" not in h
    everything = json.loads(body)["repositories"]
    assert everything == sorted(set(everything)), everything
    for name in ("search-hub", "team/cat-c"):
        assert name in everything, everything
    assert sum(1 for r in everything if r.endswith("cat-b") or r.endswith("cat-d")
               or r.endswith("cat-f")) == 3, everything

    seen, url, pages = [], "/v2/_catalog?n=2", 0
    while url:
        s, h, body = get(m, url, headers={})
        assert s == 200, (url, body[:200])
        page = json.loads(body)["repositories"]
        assert 1 <= len(page) <= 2, page
        seen += page
        pages += 1
        link = h.get("link")
        if link:
            assert link.startswith("</v2/_catalog?n=2&last=") and link.endswith('>; rel="next"')
            assert link[len("</v2/_catalog?n=2&last="):-len('>; rel="next"')] == page[-1]
            url = link[1:link.index(">")]
        else:
            url = None
        assert pages <= len(everything)
    assert seen == everything
    assert pages == (len(everything) + 1) // 2
    s, h, body = get(m, f"/v2/_catalog?last={everything[-2]}", headers={})
    assert json.loads(body)["repositories"] == everything[-1:] and "link" not in h
    s, h, body = get(m, f"/v2/_catalog?n={len(everything)}", headers={})
    assert json.loads(body)["repositories"] == everything and "link" not in h
