# SPDX-License-Identifier: Apache-2.0
"""Start-up that does not grow with the store: a clean restart trusts the index (no walk of the
store), an unclean one (SIGKILL) serves at once and walks the store in the background, adopting
the files the index does not know and dropping the rows whose file is gone."""

import hashlib
import os
import sqlite3
import time

import pytest

from helpers import get, wait_until
from scripted import Scripted
from test_probes import plant_unknown_blobs, probe

RECORD = "clean-shutdown"


@pytest.fixture
def scripted():
    up = Scripted()
    yield up
    up.stop()


def blob_row(m, digest):
    db = sqlite3.connect(f"file:{os.path.join(m.storage, 'regcache.db')}?mode=ro", uri=True,
                         timeout=5)
    try:
        return db.execute("SELECT size FROM blobs WHERE digest = ?", (digest,)).fetchone()
    finally:
        db.close()


def log_since(m, mark):
    return m.log_text()[mark:]


def kill(m):
    m.proc.kill()
    m.proc = None


def test_clean_restart_trusts_the_index_and_skips_the_walk(mirror_factory, scripted):
    """SIGTERM leaves the clean-shutdown record; the next start takes it away, says it trusts
    the index, and does not walk the store (a file planted meanwhile is left alone); after a
    SIGKILL there is no record and the walk runs (and removes the planted file)."""
    digest, _, _ = scripted.image("library/app", "1")
    m = mirror_factory([scripted])
    assert get(m, "/v2/library/app/manifests/1")[0] == 200
    assert m.stop() == 0
    assert os.path.isfile(os.path.join(m.storage, RECORD))
    planted = plant_unknown_blobs(m.storage, 1, 4096)

    mark = len(m.log_text())
    m.start()
    wait_until(lambda: "integrity check" in log_since(m, mark), timeout=20, what="the check")
    log = log_since(m, mark)
    assert "stopped cleanly last time: the index is trusted, the store is not walked" in log
    assert not os.path.exists(os.path.join(m.storage, RECORD)), "a crash now would trust it"
    assert "walked in the background" not in log and "corrupt removed" not in log
    assert os.path.exists(planted[0]), "the store was walked"
    s, h, _ = get(m, "/v2/library/app/manifests/1")
    assert s == 200 and h["docker-content-digest"] == digest

    kill(m)
    assert not os.path.exists(os.path.join(m.storage, RECORD))
    mark = len(m.log_text())
    m.start()
    wait_until(lambda: "(walked in the background in" in log_since(m, mark), timeout=30,
               what="the background walk")
    assert "no record of a clean stop" in log_since(m, mark)
    assert "1 corrupt removed" in log_since(m, mark)
    assert not os.path.exists(planted[0])


def test_sigkill_restart_serves_while_walking_and_adopts_and_drops(mirror_factory, scripted):
    """After a SIGKILL the mirror answers at once while the store is walked (/readyz names the
    walk, a pull works meanwhile); the walk adopts a good file the index does not know, drops
    the row of a file that is gone (the blob is fetched again, whole), and removes the ones
    that do not match their name."""
    layer = os.urandom(50000)
    digest, _, blobs = scripted.image("library/app", "1", layers=(layer,))
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    m = mirror_factory([scripted])
    assert get(m, "/v2/library/app/manifests/1")[0] == 200
    assert get(m, f"/v2/library/app/blobs/{layer_digest}")[0] == 200
    wait_until(lambda: blob_row(m, layer_digest), timeout=10, what="the layer's row")
    kill(m)

    os.remove(m.file_for(layer_digest))  # a row without its file
    good = b"a good file the index does not know\n"
    good_digest = "sha256:" + hashlib.sha256(good).hexdigest()
    path = m.file_for(good_digest)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(good)
    planted = plant_unknown_blobs(m.storage, 16, 64 << 20)  # a walk that takes a while

    mark = len(m.log_text())
    m.start(wait=False)
    wait_until(lambda: probe(m)[0] == 200, timeout=20, what="/readyz 200")
    before = probe(m, "/readyz?verbose")[1]
    s, h, _ = get(m, "/v2/library/app/manifests/1")
    after = probe(m, "/readyz?verbose")[1]
    assert s == 200 and h["docker-content-digest"] == digest
    assert "walking the store in the background" in before, before
    assert "walking the store in the background" in after, "the pull came after the walk"

    wait_until(lambda: "(walked in the background in" in log_since(m, mark), timeout=120,
               what="the background walk")
    log = log_since(m, mark)
    assert "1 adopted" in log and "16 corrupt removed" in log, log[-2000:]
    assert "1 index rows without a file dropped" in log
    assert blob_row(m, good_digest) == (len(good),)
    assert blob_row(m, layer_digest) is None
    assert not any(os.path.exists(p) for p in planted)
    assert probe(m, "/readyz?verbose")[1].startswith("[+]ping ok\n[+]startup ok\n")
    # the dropped one is a miss, fetched again whole
    gets = len(scripted.requests("GET", f"/blobs/{layer_digest}"))
    s, _, body = get(m, f"/v2/library/app/blobs/{layer_digest}")
    assert s == 200 and body == layer
    assert len(scripted.requests("GET", f"/blobs/{layer_digest}")) == gets + 1
    # and a clean stop now leaves the record
    assert m.stop() == 0
    assert os.path.isfile(os.path.join(m.storage, RECORD))
