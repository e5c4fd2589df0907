# SPDX-License-Identifier: Apache-2.0
"""Documents to push into a hosted repository and the pushes themselves, on top of
rawpush.py's requests: an OCI image (config and layer first), an artifact whose config type,
artifactType and subject a test chooses, any manifest PUT with its answer's headers (to see
OCI-Subject). Blobs go up monolithically (POST ?digest=), as rawpush's go in two steps."""

import json
import os

from mirror import request
from rawpush import EMPTY_TYPE as OCI_EMPTY
from rawpush import OCI_INDEX, OCI_MANIFEST  # noqa: F401 - re-exported for the tests
from rawpush import sha256 as digest_of

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def descriptor(media_type, data, **extra):
    return dict({"mediaType": media_type, "digest": digest_of(data), "size": len(data)}, **extra)


def push_blob(m, repo, data, auth):
    """Monolithic upload; returns the digest (asserts 201)."""
    d = digest_of(data)
    s, h, body, _ = request(m.port, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}", auth,
                            body=data)
    assert s == 201, (s, body[:300])
    assert h["docker-content-digest"] == d
    return d


def put_manifest(m, repo, ref, doc, auth, media_type=None):
    """PUT of doc (a dict, or bytes as they are); returns (status, headers, body, raw bytes)."""
    raw = doc if isinstance(doc, bytes) else json.dumps(doc, separators=(",", ":")).encode()
    media_type = media_type or (doc.get("mediaType") if isinstance(doc, dict) else None) \
        or OCI_MANIFEST
    s, h, body, _ = request(m.port, "PUT", f"/v2/{repo}/manifests/{ref}",
                            dict(auth, **{"Content-Type": media_type}), body=raw)
    return s, h, body, raw


def push_image(m, repo, ref, auth, seed=0, annotations=None):
    """A one-layer OCI image (config and layer pushed first); returns (manifest bytes, dict)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = os.urandom(2048)
    push_blob(m, repo, config, auth)
    push_blob(m, repo, layer, auth)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor(OCI_CONFIG, config), "layers": [descriptor(OCI_LAYER, layer)]}
    if annotations:
        doc["annotations"] = annotations
    s, _, body, raw = put_manifest(m, repo, ref, doc, auth)
    assert s == 201, (s, body[:300])
    return raw, doc


def artifact(subject_raw, artifact_type, payload, annotations=None, subject_type=OCI_MANIFEST,
             config_type=OCI_EMPTY, with_artifact_type=True):
    """An OCI 1.1 artifact manifest: empty config, one payload layer, a subject. Returns the
    document and the blobs it needs ({digest: bytes})."""
    empty = b"{}"
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor(config_type, empty),
           "layers": [descriptor("application/octet-stream", payload)],
           "subject": descriptor(subject_type, subject_raw)}
    if with_artifact_type:
        doc["artifactType"] = artifact_type
    if annotations:
        doc["annotations"] = annotations
    return doc, {digest_of(empty): empty, digest_of(payload): payload}


def push_artifact(m, repo, auth, doc, blobs, ref=None):
    """Pushes an artifact's blobs, then the manifest by digest (or under ref); returns
    (status, headers, body, manifest bytes)."""
    for data in blobs.values():
        push_blob(m, repo, data, auth)
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return put_manifest(m, repo, ref or digest_of(raw), raw, auth, media_type=doc["mediaType"])
