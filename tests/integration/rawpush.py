# SPDX-License-Identifier: Apache-2.0
"""Pushes hand-made blobs and manifests to a registry with the distribution API itself (no
client tool): for artifacts skopeo cannot make, such as a signature whose `subject` names an
image, or the `sha256-<hex>` referrers index of the tag schema. Works against docker-registry
with token auth (a token from the test issuer for pushuser) and against regcache's hosted
repositories (Basic credentials, or none)."""

import base64
import hashlib
import http.client
import json
import urllib.parse

EMPTY_CONFIG = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Pusher:
    def __init__(self, port, token_server=None, service=None, user="pushuser",
                 password="pushpass", basic=None):
        self.port = port
        self.token_server = token_server
        self.service = service
        self.user, self.password = user, password
        self.basic = basic  # "user:pass" for a registry that takes Basic credentials

    def _auth(self, repo):
        if self.basic:
            return "Basic " + base64.b64encode(self.basic.encode()).decode()
        if not self.token_server:
            return None
        token = self.token_server.make_token(self.service, [f"repository:{repo}:pull,push"],
                                             self.user)
        return "Bearer " + token

    def request(self, method, path, body=None, headers=None, repo=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        auth = self._auth(repo) if repo else None
        if auth:
            h["Authorization"] = auth
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def blob(self, repo, data):
        digest = sha256(data)
        s, h, b = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo)
        assert s == 202, (s, b)
        loc = h["location"]
        parts = urllib.parse.urlsplit(loc)
        path = parts.path + ("?" + parts.query if parts.query else "")
        sep = "&" if "?" in path else "?"
        s, h, b = self.request("PUT", f"{path}{sep}digest={digest}", body=data,
                               headers={"Content-Type": "application/octet-stream"}, repo=repo)
        assert s == 201, (s, b)
        return digest

    def manifest(self, repo, ref, raw, media_type):
        """PUTs raw as repo:ref (a tag or its digest); returns (status, headers, body)."""
        return self.request("PUT", f"/v2/{repo}/manifests/{ref}", body=raw,
                            headers={"Content-Type": media_type}, repo=repo)


def artifact(subject_digest, subject_size, subject_type, artifact_type, payload,
             annotations=None):
    """(raw manifest, its layer bytes): an OCI artifact manifest with an empty config, one
    layer (payload) and a subject."""
    m = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256(EMPTY_CONFIG), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sha256(payload),
                    "size": len(payload)}],
        "subject": {"mediaType": subject_type, "digest": subject_digest, "size": subject_size},
    }
    if annotations:
        m["annotations"] = annotations
    return json.dumps(m, indent=2).encode(), payload


def push_artifact(pusher, repo, subject, artifact_type, payload, annotations=None, tag=None):
    """Pushes an artifact referring to subject (an images.Image); returns (digest, raw)."""
    raw, layer = artifact(subject.digest, len(subject.raw), subject.media_type, artifact_type,
                          payload, annotations)
    pusher.blob(repo, EMPTY_CONFIG)
    pusher.blob(repo, layer)
    digest = sha256(raw)
    s, h, b = pusher.manifest(repo, tag or digest, raw, OCI_MANIFEST)
    assert s == 201, (s, b)
    return digest, raw


def descriptor(digest, raw, artifact_type, annotations=None):
    d = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw),
         "artifactType": artifact_type}
    if annotations:
        d["annotations"] = annotations
    return d


def push_tag_schema_index(pusher, repo, subject_digest, descriptors):
    """The tag schema's fallback: an image index tagged sha256-<hex> listing the referrers."""
    idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                      "manifests": descriptors}).encode()
    tag = subject_digest.replace(":", "-")
    s, h, b = pusher.manifest(repo, tag, idx, OCI_INDEX)
    assert s == 201, (s, b)
    return tag, idx
