#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Builds a synthetic regcache store of N files for the scale measurements (bench/scale/).

    /usr/bin/python3 bench/scale/synth.py --files 100000 --out /tmp/scale-100k [--bin build/regcache]

The store is what pull-through would leave: for every four files, one image (a config, two
layers and its manifest) with one tag, in 1,000 repositories of the first upstream
(docker.io); last accesses spread over the past six days, so a TTL of 7d evicts nothing and a
shorter one evicts the oldest first. The schema is the binary's own (it serves once on an empty
store, then stops); the rows are written in one transaction. Prints a JSON summary: files,
bytes, tags, and the digests of a sample of blobs, manifests and tags (sample.json) for hit
benchmarks."""
import argparse
import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REPOS = 1000
SAMPLE = 2000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_schema(binary, storage, workdir):
    """Serves once on the empty store so that the binary creates its own schema."""
    port = free_port()
    cfg = os.path.join(workdir, "mirror.yml")
    with open(cfg, "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\nstorage: {storage}\n"
                "upstreams:\n  - name: docker.io\n    url: http://127.0.0.1:9\n")
    log = open(os.path.join(workdir, "init.log"), "w")
    proc = subprocess.Popen([binary, "serve", "-c", cfg], stdout=log, stderr=log)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except Exception:
                if proc.poll() is not None:
                    sys.exit(f"regcache exited while creating the schema: see {log.name}")
                time.sleep(0.1)
        else:
            sys.exit("regcache did not start")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return cfg


def write_blob(root, data):
    hexd = hashlib.sha256(data).hexdigest()
    d = os.path.join(root, "blobs", "sha256", hexd[:2])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hexd), "wb") as f:
        f.write(data)
    return "sha256:" + hexd


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, required=True, help="files in the store (multiple of 4)")
    ap.add_argument("--out", required=True, help="directory to create (storage/ inside)")
    ap.add_argument("--bin", default="build/regcache")
    ap.add_argument("--layer-bytes", type=int, default=512, help="size of each layer file")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    storage = os.path.join(a.out, "storage")
    os.makedirs(storage, exist_ok=True)
    init_schema(os.path.abspath(a.bin), storage, a.out)

    now_ms = int(time.time() * 1000)
    six_days = 6 * 86400 * 1000
    blobs, manifests, tags, repo_blobs = [], [], [], []
    sample = {"blobs": [], "manifests": [], "tags": []}
    images = a.files // 4
    total = 0
    pad = b"x" * max(0, a.layer_bytes - 40)
    for i in range(images):
        repo = f"library/synth{i % REPOS}"
        tag = f"t{i // REPOS}"
        seen = now_ms - rnd.randrange(six_days)
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "synthetic": i}).encode()
        cd = write_blob(storage, cfg)
        layers = []
        for k in range(2):
            data = b"synthetic layer %d.%d\n" % (i, k) + pad
            layers.append((write_blob(storage, data), len(data)))
        man = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(cfg)},
            "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": n} for d, n in layers],
        }, separators=(",", ":")).encode()
        md = write_blob(storage, man)
        for d, n, t in [(cd, len(cfg), OCI_CONFIG), *[(d, n, OCI_LAYER) for d, n in layers],
                        (md, len(man), OCI_MANIFEST)]:
            blobs.append((d, n, t, seen, seen))
            repo_blobs.append(("docker.io", repo, d))
            total += n
        manifests.append((md, OCI_MANIFEST, len(man)))
        tags.append(("docker.io", repo, tag, md, OCI_MANIFEST, seen))
        if len(sample["tags"]) < SAMPLE and rnd.random() < SAMPLE * 4 / max(a.files, 1):
            sample["tags"].append([repo, tag])
            sample["manifests"].append([repo, md])
            sample["blobs"].append([repo, layers[0][0]])
        if i and i % 50000 == 0:
            print(f"synth: {i * 4} files", file=sys.stderr)

    db = sqlite3.connect(os.path.join(storage, "regcache.db"))
    db.execute("PRAGMA synchronous=OFF")
    with db:
        db.executemany("INSERT OR IGNORE INTO blobs (digest, size, media_type, first_cached_ms,"
                       " last_access_ms) VALUES (?,?,?,?,?)", blobs)
        db.executemany("INSERT OR IGNORE INTO manifests (digest, media_type, size)"
                       " VALUES (?,?,?)", manifests)
        db.executemany("INSERT OR REPLACE INTO tags (upstream, repo, tag, digest, media_type,"
                       " validated_ms) VALUES (?,?,?,?,?,?)", tags)
        db.executemany("INSERT OR IGNORE INTO repo_blobs (upstream, repo, digest)"
                       " VALUES (?,?,?)", repo_blobs)
    db.close()
    with open(os.path.join(a.out, "sample.json"), "w") as f:
        json.dump(sample, f)
    print(json.dumps({"files": len(blobs), "bytes": total, "tags": len(tags),
                      "storage": storage, "config": os.path.join(a.out, "mirror.yml"),
                      "sample": os.path.join(a.out, "sample.json")}))


if __name__ == "__main__":
    main()
