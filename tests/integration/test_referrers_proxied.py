# SPDX-License-Identifier: Apache-2.0
"""The referrers API for proxied repositories: asked upstream (another regcache's hosted
repository has the API) and cached like a tag, read through the sha256-<hex> tag schema from an
upstream without the API (Debian's docker-registry), filtered by artifactType, and answered from
the cache when the upstream is gone."""

import json
import time
import urllib.parse

import images
import rawpush
from helpers import assert_error, get, since
from upstream import count

SIG = "application/vnd.example.signature.v1"
SBOM = "application/spdx+json"


def referrers(mirror, repo, digest, artifact_type=None, method="GET"):
    path = f"/v2/{repo}/referrers/{digest}"
    if artifact_type:
        path += "?artifactType=" + urllib.parse.quote(artifact_type, safe="")
    return get(mirror, path, method=method, accept=False)


def index_of(status, headers, body):
    assert status == 200, (status, body[:300])
    assert headers["content-type"] == "application/vnd.oci.image.index.v1+json"
    doc = json.loads(body)
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == rawpush.OCI_INDEX
    return doc["manifests"]


def referrer_requests(reqs):
    return sum(1 for m, p, s in reqs if "/referrers/" in p and s != 401)


def test_tag_schema_fallback_is_read_filtered_cached_and_served_offline(
        mirror_factory, up, token_server, make_image, push):
    img = push(make_image(950), up, "library/signed", "v1")
    pusher = rawpush.Pusher(up.port, token_server, up.service)
    sig, sig_raw = rawpush.push_artifact(pusher, "library/signed", img, SIG, b"signature",
                                         {"org.example.signer": "ci"})
    sbom, sbom_raw = rawpush.push_artifact(pusher, "library/signed", img, SBOM, b"{}")
    descs = [rawpush.descriptor(sig, sig_raw, SIG, {"org.example.signer": "ci"}),
             rawpush.descriptor(sbom, sbom_raw, SBOM)]
    tag, _ = rawpush.push_tag_schema_index(pusher, "library/signed", img.digest, descs)
    # cosign's own tags: sha256-<hex>.sig next to the image
    cosign_tag = img.digest.replace(":", "-") + ".sig"
    cosign, cosign_raw = rawpush.push_artifact(pusher, "library/signed", img, SIG, b"cosign",
                                               tag=cosign_tag)
    mirror = mirror_factory([up], revalidate_after="1h")

    # no referrers at all for a subject without the tag: an empty index, not an error
    other = push(make_image(951), up, "library/signed", "other")
    assert index_of(*referrers(mirror, "signed", other.digest)) == []

    mark = up.mark()
    got = index_of(*referrers(mirror, "signed", img.digest))
    assert {d["digest"] for d in got} == {sig, sbom}
    by = {d["digest"]: d for d in got}
    assert by[sig]["artifactType"] == SIG and by[sig]["annotations"] == {
        "org.example.signer": "ci"}
    reqs = since(up, mark)
    # the upstream was asked for its API once (404), then for the fallback tag once
    assert referrer_requests(reqs) == 1, reqs
    assert count(reqs, method="GET", kind="manifests", ref=tag) == 1, reqs

    s, h, body = referrers(mirror, "signed", img.digest, SIG)
    assert h.get("oci-filters-applied") == "artifactType"
    assert [d["digest"] for d in index_of(s, h, body)] == [sig]
    s, h, body = referrers(mirror, "signed", img.digest, "application/x-none")
    assert index_of(s, h, body) == [] and h.get("oci-filters-applied") == "artifactType"
    s, h, body = referrers(mirror, "signed", img.digest, method="HEAD")
    assert s == 200 and body == b""
    # within revalidate_after: nothing more upstream
    mark = up.mark()
    index_of(*referrers(mirror, "signed", img.digest))
    assert since(up, mark) == []

    # the signature pulls through like any manifest, and its sha256-<hex> tag like any tag
    s, h, body = get(mirror, f"/v2/signed/manifests/{sig}")
    assert s == 200 and body == sig_raw
    s, h, body = get(mirror, f"/v2/signed/manifests/{tag}")
    assert s == 200 and json.loads(body)["manifests"] == descs
    s, h, body = get(mirror, f"/v2/signed/manifests/{cosign_tag}")
    assert s == 200 and body == cosign_raw and h["docker-content-digest"] == cosign

    # offline, then offline after a restart: the cached answer
    up.stop()
    assert {d["digest"] for d in index_of(*referrers(mirror, "signed", img.digest))} == {sig, sbom}
    mirror.stop()
    mirror.start()
    s, h, body = referrers(mirror, "signed", img.digest, SBOM)
    assert [d["digest"] for d in index_of(s, h, body)] == [sbom]
    # never asked, upstream gone: a spec error, not an empty list that would be a lie
    s, h, body = referrers(mirror, "signed", "sha256:" + "ab" * 32)
    assert_error(s, body, range(500, 600))


def test_referrers_revalidate_like_a_tag_and_are_stale_when_the_upstream_fails(
        mirror_factory, up, token_server, make_image, push):
    img = push(make_image(952), up, "library/resigned", "v1")
    pusher = rawpush.Pusher(up.port, token_server, up.service)
    sig, sig_raw = rawpush.push_artifact(pusher, "library/resigned", img, SIG, b"one")
    rawpush.push_tag_schema_index(pusher, "library/resigned", img.digest,
                                  [rawpush.descriptor(sig, sig_raw, SIG)])
    mirror = mirror_factory([up], revalidate_after="1s")
    assert [d["digest"] for d in index_of(*referrers(mirror, "resigned", img.digest))] == [sig]
    # a second signature arrives upstream; after revalidate_after the mirror sees it
    sig2, sig2_raw = rawpush.push_artifact(pusher, "library/resigned", img, SIG, b"two")
    rawpush.push_tag_schema_index(pusher, "library/resigned", img.digest,
                                  [rawpush.descriptor(sig, sig_raw, SIG),
                                   rawpush.descriptor(sig2, sig2_raw, SIG)])
    time.sleep(1.5)
    got = index_of(*referrers(mirror, "resigned", img.digest))
    assert {d["digest"] for d in got} == {sig, sig2}
    up.stop()
    time.sleep(1.5)
    got = index_of(*referrers(mirror, "resigned", img.digest))
    assert {d["digest"] for d in got} == {sig, sig2}
    assert mirror.entries()[-1].cache == "stale"


def test_invalid_referrers_digest_is_refused_without_asking_upstream(mirror, up):
    mark = up.mark()
    s, h, body = get(mirror, "/v2/library/x/referrers/sha256:nothex", accept=False)
    assert_error(s, body, 400, "DIGEST_INVALID")
    assert since(up, mark) == []


def test_referrers_api_of_an_upstream_regcache_is_asked_once_cached_and_served_offline(
        mirror_factory, make_image, tmp_dir):
    """The upstream is another regcache whose hosted repository has the referrers API: the
    mirror asks that API (not the tag schema), caches the answer like a tag, filters it itself
    and serves it with the upstream gone, also after a restart."""
    lan = mirror_factory([{"name": "docker.io", "url": "http://127.0.0.1:9"}],
                         extra={"hosted": ["team/*"]})
    img = make_image(955)
    images.skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                  f"dir:{img.layout}.dir", f"docker://127.0.0.1:{lan.port}/team/app:v1")
    pusher = rawpush.Pusher(lan.port)
    sig, sig_raw = rawpush.push_artifact(pusher, "team/app", img, SIG, b"lan-signature",
                                         {"org.example.signer": "lan"})
    mirror = mirror_factory([{"name": "lan", "url": f"http://127.0.0.1:{lan.port}"}],
                            revalidate_after="2s")
    asked = len(lan.entries())
    got = index_of(*referrers(mirror, "team/app", img.digest))
    assert [(d["digest"], d["artifactType"]) for d in got] == [(sig, SIG)]
    assert got[0]["annotations"] == {"org.example.signer": "lan"}
    seen = [e for e in lan.entries()[asked:] if "/referrers/" in e.path or "/manifests/" in e.path]
    assert [e.path for e in seen] == [f"/v2/team/app/referrers/{img.digest}"], seen
    s, h, body = referrers(mirror, "team/app", img.digest, SBOM)
    assert index_of(s, h, body) == [] and h.get("oci-filters-applied") == "artifactType"
    # a second referrer upstream shows after revalidate_after, with one more request
    sbom, _ = rawpush.push_artifact(pusher, "team/app", img, SBOM, b"{}")
    time.sleep(2.3)
    asked = len(lan.entries())
    got = index_of(*referrers(mirror, "team/app", img.digest))
    assert {d["digest"] for d in got} == {sig, sbom}
    assert sum("/referrers/" in e.path for e in lan.entries()[asked:]) == 1
    # the upstream gone, then the mirror restarted: still answered, from the cache
    lan.stop()
    time.sleep(2.3)
    assert {d["digest"] for d in index_of(*referrers(mirror, "team/app", img.digest))} == {
        sig, sbom}
    mirror.stop()
    mirror.start()
    s, h, body = referrers(mirror, "team/app", img.digest, SIG)
    assert [d["digest"] for d in index_of(s, h, body)] == [sig]
