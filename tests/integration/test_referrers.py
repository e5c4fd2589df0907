# SPDX-License-Identifier: Apache-2.0
"""The referrers API (OCI distribution spec v1.1) of hosted repositories: manifests pushed with
a subject are listed as an image index, filtered by artifactType, kept as manifests are pushed
and deleted, and across restarts; never upstream."""

import json

from helpers import assert_error, get, since
from mirror import request
from ocipush import (OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, artifact, digest_of,
                     push_artifact, push_image, put_manifest)
from test_auth import ALICE, basic
from test_hosted import hosted_mirror

AUTH = basic(*ALICE)
SIG = "application/vnd.example.sig"
SBOM = "application/vnd.example.sbom+json"


def referrers(m, repo, digest, query=""):
    s, h, body = get(m, f"/v2/{repo}/referrers/{digest}{query}", headers={})
    assert s == 200, (s, body[:300])
    assert h["content-type"] == OCI_INDEX
    doc = json.loads(body)
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == OCI_INDEX
    return doc["manifests"], h


def test_referrers_listed_filtered_deleted_and_kept_across_restart(mirror_factory, up, tmp_dir):
    """An image and two artifacts naming it (a signature with annotations, an SBOM whose type
    comes only from its config) are listed with mediaType, digest, size, artifactType and
    annotations; ?artifactType= filters and says so; the PUT carried OCI-Subject; HEAD has the
    same headers; a deleted artifact leaves the list; a restart keeps it; nothing went
    upstream."""
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    mark = up.mark()
    image_raw, _ = push_image(m, "team/app", "v1", AUTH, seed=1)
    image = digest_of(image_raw)
    assert referrers(m, "team/app", image)[0] == []

    sig_doc, sig_blobs = artifact(image_raw, SIG, b"signature bytes",
                                  annotations={"org.example.signer": "alice"})
    s, h, body, sig_raw = push_artifact(m, "team/app", AUTH, sig_doc, sig_blobs)
    assert s == 201, (s, body[:300])
    assert h.get("oci-subject") == image
    sig = digest_of(sig_raw)
    # the type of this one is its config's media type (no artifactType member)
    sbom_doc, sbom_blobs = artifact(image_raw, None, b'{"sbom":1}', config_type=SBOM,
                                    with_artifact_type=False)
    s, h, body, sbom_raw = push_artifact(m, "team/app", AUTH, sbom_doc, sbom_blobs, ref="sbom")
    assert s == 201 and h.get("oci-subject") == image, (s, body[:300])
    sbom = digest_of(sbom_raw)
    # a manifest without a subject is nobody's referrer, and gets no OCI-Subject
    other_raw, _ = push_image(m, "team/app", "v2", AUTH, seed=2)

    got, h = referrers(m, "team/app", image)
    assert "oci-filters-applied" not in h
    by_digest = {d["digest"]: d for d in got}
    assert set(by_digest) == {sig, sbom}, got
    assert by_digest[sig] == {"mediaType": OCI_MANIFEST, "digest": sig, "size": len(sig_raw),
                              "artifactType": SIG,
                              "annotations": {"org.example.signer": "alice"}}
    assert by_digest[sbom] == {"mediaType": OCI_MANIFEST, "digest": sbom,
                               "size": len(sbom_raw), "artifactType": SBOM}

    got, h = referrers(m, "team/app", image, f"?artifactType={SIG}")
    assert h.get("oci-filters-applied") == "artifactType"
    assert [d["digest"] for d in got] == [sig]
    got, h = referrers(m, "team/app", image, "?artifactType=application%2Fvnd.example.sbom%2Bjson")
    assert [d["digest"] for d in got] == [sbom] and h.get("oci-filters-applied") == "artifactType"
    got, _ = referrers(m, "team/app", image, "?artifactType=application/none")
    assert got == []
    # HEAD: the same headers, no body
    s, hh, hbody, _ = request(m.port, "HEAD", f"/v2/team/app/referrers/{image}", {})
    _, gh, gbody = get(m, f"/v2/team/app/referrers/{image}", headers={})
    assert s == 200 and hbody == b""
    assert hh["content-type"] == OCI_INDEX and hh["content-length"] == gh["content-length"]
    # another subject, another repository, an unknown digest: empty lists, still 200
    assert referrers(m, "team/app", digest_of(other_raw))[0] == []
    assert referrers(m, "team/other", image)[0] == []
    assert referrers(m, "team/app", "sha256:" + "e" * 64)[0] == []
    # a bad digest
    s, _, body = get(m, "/v2/team/app/referrers/sha256:nothex", headers={})
    assert_error(s, body, 400, "DIGEST_INVALID")

    # the signature is deleted: gone from the list; the SBOM stays
    s, _, _, _ = request(m.port, "DELETE", f"/v2/team/app/manifests/{sig}", AUTH)
    assert s == 202
    assert [d["digest"] for d in referrers(m, "team/app", image)[0]] == [sbom]
    # deleting only the SBOM's tag leaves the manifest, so it is still a referrer
    s, _, _, _ = request(m.port, "DELETE", "/v2/team/app/manifests/sbom", AUTH)
    assert s == 202
    assert [d["digest"] for d in referrers(m, "team/app", image)[0]] == [sbom]

    # pushed again, the signature is back; then a restart keeps both
    s, _, _, _ = put_manifest(m, "team/app", sig, sig_raw, AUTH, media_type=OCI_MANIFEST)
    assert s == 201
    before = referrers(m, "team/app", image)[0]
    assert {d["digest"] for d in before} == {sig, sbom}
    assert m.stop() == 0
    m.start()
    after = referrers(m, "team/app", image)[0]
    assert sorted(after, key=lambda d: d["digest"]) == sorted(before, key=lambda d: d["digest"])
    got, h = referrers(m, "team/app", image, f"?artifactType={SIG}")
    assert [d["digest"] for d in got] == [sig] and h.get("oci-filters-applied") == "artifactType"
    # ... and a deletion after the restart holds across the next one
    assert request(m.port, "DELETE", f"/v2/team/app/manifests/{sbom}", AUTH)[0] == 202
    assert m.stop() == 0
    m.start()
    assert [d["digest"] for d in referrers(m, "team/app", image)[0]] == [sig]
    assert since(up, mark) == [], "a hosted repository went upstream"


def test_referrer_pushed_before_its_subject(mirror_factory, up, tmp_dir):
    """A subject need not exist yet (the spec: MUST accept): the artifact is listed at once,
    and the subject pushed afterwards is pulled as usual."""
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    config = b'{"architecture":"amd64","os":"linux"}'
    future = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
              "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config),
                         "size": len(config)}, "layers": []}
    future_raw = json.dumps(future, separators=(",", ":")).encode()
    doc, blobs = artifact(future_raw, SIG, b"early signature")
    s, h, body, raw = push_artifact(m, "search-hub", AUTH, doc, blobs)
    assert s == 201, (s, body[:300])
    assert h["oci-subject"] == digest_of(future_raw)
    got, _ = referrers(m, "search-hub", digest_of(future_raw))
    assert [d["digest"] for d in got] == [digest_of(raw)]
    assert got[0]["artifactType"] == SIG
    # the artifact itself is served by digest
    s, h, body = get(m, f"/v2/search-hub/manifests/{digest_of(raw)}", headers={})
    assert s == 200 and body == raw and h["content-type"] == OCI_MANIFEST


def test_referrers_of_an_index_subject_and_an_index_referrer(mirror_factory, up, tmp_dir):
    """An index may be a subject, and an index may refer to one: its descriptor then has no
    artifactType unless the index names one (the spec: never a config's, it has none)."""
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    image_raw, _ = push_image(m, "team/idx", "v1", AUTH, seed=3)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest_of(image_raw),
                            "size": len(image_raw)}],
             "subject": {"mediaType": OCI_MANIFEST, "digest": digest_of(image_raw),
                         "size": len(image_raw)}}
    s, h, body, raw = put_manifest(m, "team/idx", "bundle", index, AUTH)
    assert s == 201 and h["oci-subject"] == digest_of(image_raw), (s, body[:300])
    got, _ = referrers(m, "team/idx", digest_of(image_raw))
    assert got == [{"mediaType": OCI_INDEX, "digest": digest_of(raw), "size": len(raw)}]
    # empty config types are not artifact types of their own: artifactType wins over it
    doc, blobs = artifact(image_raw, SIG, b"x", config_type=OCI_EMPTY)
    assert push_artifact(m, "team/idx", AUTH, doc, blobs)[0] == 201
    got, _ = referrers(m, "team/idx", digest_of(image_raw), f"?artifactType={SIG}")
    assert len(got) == 1 and got[0]["artifactType"] == SIG


def test_long_referrers_list_is_paged_with_link(mirror_factory, up, tmp_dir):
    """Referrers whose descriptors pass 1 MiB together are answered in pages: each page is a
    whole index, the Link names the next (filter kept), and the pages together hold every
    referrer once."""
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    image_raw, _ = push_image(m, "team/many", "v1", AUTH, seed=4)
    image = digest_of(image_raw)
    pushed = set()
    for i in range(4):  # about 400 KiB of annotations each
        doc, blobs = artifact(image_raw, SIG, b"sig %d" % i,
                              annotations={"note": ("%d" % i) * (400 * 1024)})
        s, _, body, raw = push_artifact(m, "team/many", AUTH, doc, blobs)
        assert s == 201, (s, body[:200])
        pushed.add(digest_of(raw))
    seen, url, pages = [], f"/v2/team/many/referrers/{image}?artifactType={SIG}", 0
    while url:
        got, h = referrers(m, "team/many", image, url[url.index("?"):])
        assert got and h.get("oci-filters-applied") == "artifactType"
        seen += [d["digest"] for d in got]
        pages += 1
        link = h.get("link")
        url = link[1:link.index(">")] if link else None
        if url:
            assert url.startswith(f"/v2/team/many/referrers/{image}?last=") and link.endswith(
                '>; rel="next"') and "artifactType=" in url
        assert pages <= 4
    assert pages >= 2
    assert sorted(seen) == sorted(pushed) and len(seen) == len(set(seen))


def test_skopeo_pushes_an_artifact_with_a_subject(mirror_factory, up, tmp_dir):
    """A real client: skopeo copies an artifact manifest (empty config, a subject) into a
    hosted repository byte for byte; the mirror lists it as the image's referrer."""
    import os
    from images import skopeo
    m = hosted_mirror(mirror_factory, up, tmp_dir)
    image_raw, _ = push_image(m, "team/sk", "v1", AUTH, seed=5)
    doc, blobs = artifact(image_raw, SIG, b"signed by skopeo",
                          annotations={"org.example.tool": "skopeo"})
    raw = json.dumps(doc, separators=(",", ":")).encode()
    layout = os.path.join(tmp_dir, "sig.dir")
    os.makedirs(layout)
    with open(os.path.join(layout, "version"), "w") as f:
        f.write("Directory Transport Version: 1.1\n")
    with open(os.path.join(layout, "manifest.json"), "wb") as f:
        f.write(raw)
    for d, data in blobs.items():
        with open(os.path.join(layout, d.split(":", 1)[1]), "wb") as f:
            f.write(data)
    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds",
           ":".join(ALICE), f"dir:{layout}", f"docker://127.0.0.1:{m.port}/team/sk:sig")
    s, _, body = get(m, "/v2/team/sk/manifests/sig", headers={"Accept": OCI_MANIFEST})
    assert s == 200 and body == raw
    got, _ = referrers(m, "team/sk", digest_of(image_raw))
    assert got == [{"mediaType": OCI_MANIFEST, "digest": digest_of(raw), "size": len(raw),
                    "artifactType": SIG, "annotations": {"org.example.tool": "skopeo"}}]
    put = [e for e in m.entries() if e.method == "PUT" and e.path == "/v2/team/sk/manifests/sig"]
    assert put and put[-1].status == 201
