# SPDX-License-Identifier: Apache-2.0
"""Test images built in pure Python and pushed to an upstream with skopeo.

build_image() writes an OCI image layout (oci-layout, index.json, blobs/sha256/...) holding a
single-arch image or a two-platform index (linux/amd64 + linux/arm64). Layers are gzip'd tars of
seeded random bytes, so the same seed gives the same digests. fmt="docker" uses Docker schema2
media types throughout (dockerd 20.10 pulls those best); fmt="oci" uses OCI media types.

push() copies the layout to an upstream with `skopeo copy --preserve-digests --all`, so what
lands upstream is byte-identical to the layout; the returned Image records every digest and the
exact manifest bytes, and push() checks them against what the upstream then serves.
"""

import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import tarfile
from dataclasses import dataclass, field

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MEDIA = {
    "oci": dict(manifest=OCI_MANIFEST, index=OCI_INDEX, config=OCI_CONFIG, layer=OCI_LAYER),
    "docker": dict(manifest=DOCKER_MANIFEST, index=DOCKER_LIST, config=DOCKER_CONFIG,
                   layer=DOCKER_LAYER),
}
# Every manifest type a registry client may ask for.
ACCEPT_ALL = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST]


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Blob:
    digest: str
    size: int
    media_type: str


@dataclass
class Manifest:
    """One image manifest: its bytes, and the blobs it references."""
    digest: str
    media_type: str
    raw: bytes
    config: Blob
    layers: list
    platform: dict = None


@dataclass
class Image:
    """What build_image() made: `digest`/`media_type`/`raw` are the top-level manifest (an index
    for multi-arch); `manifests` the single-arch manifests; `blobs` every blob's bytes."""
    layout: str
    fmt: str
    digest: str
    media_type: str
    raw: bytes
    manifests: list
    blobs: dict = field(default_factory=dict)  # digest -> bytes
    repo: str = None
    tag: str = None

    @property
    def multi(self):
        return self.media_type in (OCI_INDEX, DOCKER_LIST)

    @property
    def layer_digests(self):
        return [l.digest for m in self.manifests for l in m.layers]

    @property
    def blob_digests(self):
        """Layers and configs of every platform (no manifests)."""
        out = []
        for m in self.manifests:
            for b in [m.config] + m.layers:
                if b.digest not in out:
                    out.append(b.digest)
        return out

    def manifest_for(self, arch):
        return next(m for m in self.manifests if m.platform and m.platform["architecture"] == arch)


def _canonical(obj):
    return json.dumps(obj, indent=3).encode()


class _Layout:
    """Writes content-addressed blobs into an OCI layout directory."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.blobs = {}

    def put(self, data, media_type):
        digest = sha256(data)
        with open(os.path.join(self.path, "blobs", "sha256", digest[7:]), "wb") as f:
            f.write(data)
        self.blobs[digest] = data
        return Blob(digest, len(data), media_type)

    def write_index(self, descriptor, tag):
        # containers/image only looks at index.json entries with OCI media types; the blob
        # itself may be Docker schema2 (skopeo then goes by the manifest's own mediaType).
        desc = dict(descriptor)
        desc["mediaType"] = {DOCKER_MANIFEST: OCI_MANIFEST, DOCKER_LIST: OCI_INDEX}.get(
            desc["mediaType"], desc["mediaType"])
        desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [desc]}, f)


def make_layer(rng, size, name="data.bin"):
    """(gzip'd tar, uncompressed tar) of one file of `size` seeded random bytes."""
    content = rng.randbytes(size)
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, 0, 0o644
        tar.addfile(info, io.BytesIO(content))
    raw = tar_buf.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=1) as g:
        g.write(raw)
    return gz.getvalue(), raw


def _build_manifest(layout, media, rng, layer_sizes, arch, label):
    layers, diff_ids = [], []
    for i, size in enumerate(layer_sizes):
        gz, raw = make_layer(rng, size, name=f"layer{i}-{arch}.bin")
        layers.append(layout.put(gz, media["layer"]))
        diff_ids.append(sha256(raw))
    config = {
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/true"], "Labels": {"regcache.test": label}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                    for i in range(len(layers))],
    }
    cfg = layout.put(_canonical(config), media["config"])
    manifest = {
        "schemaVersion": 2,
        "mediaType": media["manifest"],
        "config": {"mediaType": cfg.media_type, "digest": cfg.digest, "size": cfg.size},
        "layers": [{"mediaType": l.media_type, "digest": l.digest, "size": l.size} for l in layers],
    }
    raw = _canonical(manifest)
    blob = layout.put(raw, media["manifest"])
    return Manifest(blob.digest, media["manifest"], raw, cfg, layers,
                    {"architecture": arch, "os": "linux"})


def build_image(path, seed, layer_sizes=(64 * 1024,), fmt="docker", multi_arch=False, tag="latest",
                label=None):
    """Writes an OCI layout for one image (or a linux/amd64+arm64 index) at path; returns Image."""
    media = MEDIA[fmt]
    rng = random.Random(seed)
    layout = _Layout(path)
    label = label or f"seed-{seed}"
    archs = ["amd64", "arm64"] if multi_arch else ["amd64"]
    manifests = [_build_manifest(layout, media, rng, layer_sizes, a, label) for a in archs]
    if multi_arch:
        index = {
            "schemaVersion": 2,
            "mediaType": media["index"],
            "manifests": [{"mediaType": m.media_type, "digest": m.digest, "size": len(m.raw),
                           "platform": m.platform} for m in manifests],
        }
        raw = _canonical(index)
        top = layout.put(raw, media["index"])
        media_type = media["index"]
    else:
        top = Blob(manifests[0].digest, len(manifests[0].raw), manifests[0].media_type)
        raw, media_type = manifests[0].raw, manifests[0].media_type
    layout.write_index({"mediaType": media_type, "digest": top.digest, "size": top.size}, tag)
    _write_dir_transport(path + ".dir", raw, manifests if multi_arch else [], layout.blobs)
    return Image(path, fmt, top.digest, media_type, raw, manifests, layout.blobs, tag=tag)


def _write_dir_transport(path, top_raw, instances, blobs):
    """The same image in containers/image's `dir:` format, which keeps any media type byte for
    byte (its oci: source cannot preserve a Docker manifest list's digest)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "version"), "w") as f:
        f.write("Directory Transport Version: 1.1\n")
    with open(os.path.join(path, "manifest.json"), "wb") as f:
        f.write(top_raw)
    for m in instances:
        with open(os.path.join(path, m.digest[7:] + ".manifest.json"), "wb") as f:
            f.write(m.raw)
    for digest, data in blobs.items():
        with open(os.path.join(path, digest[7:]), "wb") as f:
            f.write(data)


def skopeo(*args, timeout=180):
    """Runs skopeo; returns CompletedProcess, raising with its output on failure."""
    cmd = ["skopeo", "--insecure-policy", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def push(image, upstream, repo, tag=None, creds="pushuser:pushpass"):
    """Pushes image (an OCI layout) to upstream as repo:tag, digests preserved, and checks that
    the upstream now serves the exact manifest bytes; returns the image with repo/tag set."""
    tag = tag or image.tag
    skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds,
           f"dir:{image.layout}.dir", f"docker://{upstream.host}/{repo}:{tag}")
    landed = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds,
                    f"docker://{upstream.host}/{repo}:{tag}").stdout.encode()
    if sha256(landed) != image.digest:
        raise AssertionError(f"upstream holds {sha256(landed)} for {repo}:{tag}, "
                             f"expected {image.digest}")
    image.repo, image.tag = repo, tag
    return image


def verify_oci_layout(path, expected_digest=None):
    """Checks that every blob in an OCI layout hashes to its name; returns index.json's top
    manifest digest (and asserts it equals expected_digest when given)."""
    blob_dir = os.path.join(path, "blobs", "sha256")
    for name in os.listdir(blob_dir):
        with open(os.path.join(blob_dir, name), "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        assert got == name, f"blob {name} in {path} hashes to {got}"
    with open(os.path.join(path, "index.json")) as f:
        index = json.load(f)
    top = index["manifests"][0]["digest"]
    if expected_digest is not None:
        assert top == expected_digest, f"{path} holds {top}, expected {expected_digest}"
    return top
