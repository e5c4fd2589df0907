# SPDX-License-Identifier: Apache-2.0
"""The status page at / and under /ui/, in real headless Chromium (Debian's chromium, driven over
the DevTools protocol): what it shows against what the cache holds, no console errors or failed
requests, no upstream request caused by any view, markup in a pushed manifest shown as text,
screenshots at desktop and phone widths, and who may read it (ui.access, auth)."""

import json
import os
import re
import shutil
import tempfile
import urllib.parse

import pytest

from cdp import Browser
from helpers import get, sha256, wait_until
from ocipush import OCI_INDEX, OCI_MANIFEST, descriptor, push_blob, put_manifest
from scripted import image_manifest
from test_auth import ALICE, BOB, basic, make_users
from upstream import count

MARKUP = "<img src=x onerror=\"document.body.dataset.pwned='1'\">"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
FIRST_DIGEST = "document.querySelector('table.tags a.digest').dataset.digest"
UPSTREAMS_DRAWN = "document.querySelector('table.upstreams') !== null"
DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")


@pytest.fixture
def browser():
    b = Browser()
    try:
        yield b
    finally:
        b.close()


def pull(m, repo, img, tag):
    """Pulls an image over HTTP like a client: the tag, each platform's manifest, every blob."""
    s, _, body = get(m, f"/v2/{repo}/manifests/{tag}")
    assert s == 200, body[:300]
    assert sha256(body) == img.digest
    if img.multi:
        for man in img.manifests:
            s, _, body = get(m, f"/v2/{repo}/manifests/{man.digest}")
            assert s == 200 and sha256(body) == man.digest
    for d in img.blob_digests:
        s, _, data = get(m, f"/v2/{repo}/blobs/{d}", accept=False)
        assert s == 200 and sha256(data) == d


def push_hostile(m, repo, auth):
    """A hosted image whose layer media type and title annotation carry markup, and an index
    whose platform does; returns (image manifest digest, index digest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = os.urandom(3000)
    push_blob(m, repo, config, auth)
    push_blob(m, repo, layer, auth)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor(OCI_CONFIG, config),
           "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+" + MARKUP, layer)],
           "annotations": {"org.opencontainers.image.title": MARKUP}}
    s, _, body, raw = put_manifest(m, repo, "img", doc, auth)
    assert s == 201, (s, body[:300])
    # its second platform names a layer: the page must not read that blob as a manifest
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [dict(descriptor(OCI_MANIFEST, raw),
                                platform={"os": MARKUP, "architecture": "amd64"}),
                           dict(descriptor(OCI_MANIFEST, layer),
                                platform={"os": "linux", "architecture": "arm64"})]}
    s, _, body, iraw = put_manifest(m, repo, "v1", index, auth)
    assert s == 201, (s, body[:300])
    return sha256(raw), sha256(iraw), len(layer)


def api(m, path, **params):
    q = urllib.parse.urlencode(params)
    s, h, body = get(m, f"/ui/api/{path}" + (f"?{q}" if q else ""), accept=False)
    assert s == 200, (path, s, body[:300])
    assert h["content-type"] == "application/json"
    return json.loads(body)


def outcomes(m):
    """(hits, misses, bytes served from the cache, bytes through an upstream) as the mirror's
    access log shows them for manifest and blob requests."""
    hits = misses = from_cache = from_upstream = 0
    for e in m.entries():
        _, method, path, status, size, outcome = e
        if "/manifests/" not in path and "/blobs/" not in path:
            continue
        if outcome in ("hit", "stale"):
            hits += 1
            from_cache += size
        elif outcome in ("miss", "fill"):
            misses += 1
            from_upstream += size
    return hits, misses, from_cache, from_upstream


def texts(b, selector):
    return b.evaluate(f"[...document.querySelectorAll({json.dumps(selector)})]"
                      ".map(e => e.textContent)")


def no_horizontal_scroll(b):
    return b.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_page_shows_the_cache_and_never_asks_upstream(mirror_factory, up, make_image, push, tmp_dir,
                                                      browser):
    """After two images are pulled through the mirror and one pushed to a hosted repository, the
    page in Chromium shows every repository, each tag's digest, each image's layers with their
    sizes and the hit ratio the mirror's log implies; no view logs an error, fails a request or
    causes any upstream request; markup pushed in a manifest appears as text and creates no
    element. Screenshots at desktop and phone widths, light and dark."""
    single = push(make_image(901, (96 * 1024, 40 * 1024)), up, "library/busybox", "1.36")
    multi = push(make_image(902, (48 * 1024,), fmt="oci", multi_arch=True), up, "myorg/tool", "v2")
    m = mirror_factory([up], extra={"auth": {"htpasswd": make_users(tmp_dir, ALICE), "realm": "R"},
                                    "hosted": ["lan/*"]})
    pull(m, "busybox", single, "1.36")
    pull(m, "myorg/tool", multi, "v2")
    pull(m, "busybox", single, "1.36")  # hits this time
    evil_image, evil_index, evil_layer_size = push_hostile(m, "lan/evil", basic(*ALICE))
    hits, misses, from_cache, from_upstream = outcomes(m)
    assert hits and misses and from_cache and from_upstream
    # the index's counters and access times are written every 2 s
    # the index's counters and access times are written every 2 s; the first GC runs 5 s after
    # the start
    wait_until(lambda: api(m, "summary")["hits"] == hits and
               api(m, "summary")["misses"] == misses and
               api(m, "summary")["gc_runs"] and
               api(m, "repositories")["total"] == 3, timeout=15, what="the index flushed")
    mark = up.mark()
    shots = tempfile.mkdtemp(prefix="status-page-", dir=tmp_dir)
    base = f"http://127.0.0.1:{m.port}"
    b = browser

    # ---- the overview ----
    b.viewport(1280, 800)
    b.navigate(base + "/", ready="document.querySelector('#repos table') !== null")
    summary = api(m, "summary")
    repos = texts(b, "#repos a.repo")
    assert sorted(repos) == ["lan/evil", "library/busybox", "myorg/tool"], repos
    assert b.evaluate("document.getElementById('card-hits').dataset.hits") == str(hits)
    assert b.evaluate("document.getElementById('card-hits').dataset.misses") == str(misses)
    ratio_text = b.evaluate("document.querySelector('#card-hits .card-big').textContent")
    assert ratio_text == f"{hits / (hits + misses) * 100:.1f}\u00a0%", (ratio_text, hits, misses)
    assert f"{hits} hits · {misses} misses" in b.evaluate(
        "document.getElementById('card-hits').textContent")
    assert summary["store"]["free"], "no free space figure"
    # the upstream sent each manifest and blob once: what a first pull of each image costs
    fetched = sum(len(img.raw) + sum(len(man.raw) for man in img.manifests if img.multi) +
                  sum(len(img.blobs[d]) for d in img.blob_digests) for img in (single, multi))
    assert (summary["bytes_from_cache"], summary["bytes_from_upstream"]) == \
        (from_cache, fetched)
    assert from_upstream == fetched
    assert b.evaluate("document.getElementById('card-served').dataset.cache") == str(from_cache)
    assert b.evaluate("document.getElementById('card-served').dataset.upstream") == \
        str(from_upstream)
    upstream_names = texts(b, "table.upstreams strong")
    assert upstream_names == ["docker.io"]
    assert b.evaluate("document.querySelectorAll('table.gc tbody tr:not(.empty)').length") == \
        len(summary["gc_runs"]) >= 1
    counts = texts(b, "#card-counts dd")
    assert counts == [str(summary["counts"][k]) for k in ("repositories", "tags", "manifests",
                                                           "blobs")]
    assert summary["counts"]["repositories"] == 3 and summary["counts"]["tags"] == 4
    b.screenshot(os.path.join(shots, "overview-desktop.png"))
    assert no_horizontal_scroll(b)
    b.viewport(1280, 800, dark=True)
    b.screenshot(os.path.join(shots, "overview-desktop-dark.png"))
    b.viewport(390, 844, mobile=True)
    b.pump(0.3)
    assert no_horizontal_scroll(b), "the overview scrolls sideways at 390 px"
    b.screenshot(os.path.join(shots, "overview-phone.png"))
    b.viewport(1280, 800)

    # sorting and filtering, in the page
    b.evaluate("document.querySelector('button.sort[data-sort=bytes]').click()")
    b.wait_for("document.querySelector('button.sort[data-sort=bytes].active') !== null")
    by_size = texts(b, "#repos a.repo")
    sizes = {r["name"]: r["bytes"] for r in api(m, "repositories")["repositories"]}
    assert by_size == sorted(sizes, key=lambda n: (-sizes[n], n)), (by_size, sizes)
    b.evaluate("const s = document.getElementById('repo-search'); s.value = 'tool';"
               "s.dispatchEvent(new Event('input'))")
    b.wait_for("[...document.querySelectorAll('#repos a.repo')].length === 1")
    assert texts(b, "#repos a.repo") == ["myorg/tool"]

    # ---- a repository: its tags ----
    b.navigate(base + "/#/repository?upstream=docker.io&name=library%2Fbusybox",
               ready="document.querySelector('table.tags tbody a.digest') !== null")
    assert texts(b, "table.tags .tag") == ["1.36"]
    assert b.evaluate(FIRST_DIGEST) == single.digest
    b.navigate(base + "/#/repository?upstream=docker.io&name=myorg%2Ftool",
               ready="document.querySelector('table.tags .chip') !== null")
    assert b.evaluate(FIRST_DIGEST) == multi.digest
    assert sorted(texts(b, "table.tags .chip")) == ["linux/amd64", "linux/arm64"]
    b.screenshot(os.path.join(shots, "repository-desktop.png"))

    # ---- an image: its layers ----
    man = multi.manifest_for("arm64")
    b.navigate(base + f"/#/manifest?digest={man.digest}",
               ready="document.querySelector('table.layers') !== null")
    layer_rows = b.evaluate("[...document.querySelectorAll('table.layers tbody tr')].slice(1)"
                            ".map(r => [r.querySelector('.digest').dataset.digest,"
                            " Number(r.querySelector('.size').dataset.size)])")
    assert layer_rows == [[l.digest, l.size] for l in man.layers]
    b.screenshot(os.path.join(shots, "image-desktop.png"))
    b.viewport(390, 844, mobile=True)
    b.pump(0.3)
    assert no_horizontal_scroll(b), "the image view scrolls sideways at 390 px"
    b.screenshot(os.path.join(shots, "image-phone.png"))
    b.viewport(1280, 800)

    # ---- markup in a hosted manifest is text ----
    for path in ("repository?hosted=1&name=lan%2Fevil", f"manifest?digest={evil_image}",
                 f"manifest?digest={evil_index}"):
        s, _, raw = get(m, "/ui/api/" + path, accept=False)
        assert s == 200 and b"<" not in raw and b"\\u003cimg" in raw, raw[:300]
    b.navigate(base + "/#/repository?hosted=1&name=lan%2Fevil",
               ready="document.querySelector('table.tags .chip') !== null")
    assert texts(b, "table.tags .chip") == [MARKUP + "/amd64", "linux/arm64"]
    tags = api(m, "repository", hosted=1, name="lan/evil")["tags"]
    v1 = next(t for t in tags if t["tag"] == "v1")
    assert [p["stored"] for p in v1["platforms"]] == [True, False], v1
    assert v1["size"] == 3000 + len(json.dumps({"architecture": "amd64", "os": "linux"})), v1
    b.navigate(base + f"/#/manifest?digest={evil_index}",
               ready="document.querySelector('table.platforms') !== null")
    assert texts(b, "table.platforms .platform") == [MARKUP + "/amd64", "linux/arm64"]
    b.screenshot(os.path.join(shots, "markup-index-desktop.png"))
    b.navigate(base + f"/#/manifest?digest={evil_image}",
               ready="document.querySelector('table.layers') !== null")
    assert MARKUP in texts(b, "table.layers .mt")[1]
    assert texts(b, ".annotation") == [MARKUP]
    b.screenshot(os.path.join(shots, "markup-image-desktop.png"))
    assert b.evaluate("document.querySelectorAll('img').length") == 1, "an element was created"
    assert b.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    b.pump(0.5)
    assert b.evaluate("document.body.dataset.pwned") is None, "the markup ran"

    # ---- nothing went wrong, nothing went upstream ----
    assert b.problems() == [], b.problems()
    assert any("/ui/api/manifest" in u for u in b.requests())
    after = up.since(mark)
    assert after == [], f"the page caused upstream requests: {after}"

    # the screenshots for the README
    if os.environ.get("REGCACHE_UPDATE_SCREENSHOTS"):
        os.makedirs(DOCS, exist_ok=True)
        shutil.copy(os.path.join(shots, "overview-desktop.png"),
                    os.path.join(DOCS, "status-page.png"))
        shutil.copy(os.path.join(shots, "overview-phone.png"),
                    os.path.join(DOCS, "status-page-phone.png"))
    for name in os.listdir(shots):
        assert os.path.getsize(os.path.join(shots, name)) > 10000, f"{name} is nearly empty"
    print("screenshots in", shots)


def test_page_headers_and_policy(mirror):
    """The page sends a strict policy (no inline script), nosniff and no-cache; its script is
    pinned by hash; the API is JSON that is never stored; / and /ui/ are the same page."""
    s, h, body = get(mirror, "/", accept=False)
    assert s == 200 and h["content-type"].startswith("text/html")
    csp = h["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert h["x-content-type-options"] == "nosniff"
    assert h["cache-control"] == "no-cache"
    # nothing inline: no script element with a body, no handler attribute, no style attribute
    assert b"<script>" not in body and not re.search(rb"\son[a-z]+=", body)
    assert b" style=" not in body and b"<style" not in body
    s2, _, body2 = get(mirror, "/ui/", accept=False)
    assert s2 == 200 and body2 == body
    src = body.split(b'<script src="', 1)[1].split(b'"', 1)[0].decode()
    s, h, js = get(mirror, src, accept=False)
    assert s == 200 and h["content-type"].startswith("text/javascript")
    assert "immutable" in h["cache-control"]
    s, h, _ = get(mirror, "/ui/app.js", accept=False)
    assert s == 200 and h["cache-control"] == "no-cache"
    s, h, body = get(mirror, "/ui/api/summary", accept=False)
    assert s == 200 and h["cache-control"] == "no-store"
    assert h["x-content-type-options"] == "nosniff"
    assert h["content-security-policy"] == "sandbox"
    s, _, body = get(mirror, "/ui/api/manifest?digest=sha256:" + "0" * 64, accept=False)
    assert s == 404
    s, _, body = get(mirror, "/ui/api/repository?upstream=nope&name=x", accept=False)
    assert s == 400
    s, _, _ = get(mirror, "/ui/nothing-here", accept=False)
    assert s == 404
    s, h, _ = get(mirror, "/ui/api/summary", method="DELETE", accept=False)
    assert s == 405


def test_page_follows_auth_and_ui_access(mirror_factory, up, tmp_dir):
    """With anonymous pulls off, the page and its API need credentials (401 with a Basic
    challenge a browser answers), as pulls do; with anonymous pulls on anyone reads it;
    ui.access: push limits it to push users; off serves no page."""
    users = make_users(tmp_dir, ALICE, BOB)
    closed = mirror_factory([up], extra={"auth": {"htpasswd": users, "anonymous": "none",
                                                  "realm": "Mirror"}})
    for path in ("/", "/ui/", "/ui/app.js", "/ui/api/summary", "/ui/api/repositories"):
        s, h, body = get(closed, path, accept=False)
        assert s == 401, (path, s)
        assert h["www-authenticate"] == 'Basic realm="Mirror"', h
        s, h, body = get(closed, path, headers=basic(*ALICE))
        assert s == 200, (path, s, body[:200])
    s, _, _ = get(closed, "/ui/api/summary", headers=basic("alice", "wrong"))
    assert s == 401

    token = mirror_factory([up], extra={"auth": {"htpasswd": users, "anonymous": "none",
                                                 "scheme": "token", "realm": "Mirror"}})
    s, h, _ = get(token, "/ui/", accept=False)
    assert s == 401 and h["www-authenticate"].startswith("Basic "), h
    s, _, _ = get(token, "/ui/", headers=basic(*ALICE))
    assert s == 200

    open_ = mirror_factory([up], extra={"auth": {"htpasswd": users}})
    for path in ("/", "/ui/api/summary"):
        s, _, _ = get(open_, path, accept=False)
        assert s == 200, path

    pushers = mirror_factory([up], extra={"auth": {"htpasswd": users, "push_users": ["alice"]},
                                          "ui": {"access": "push"}})
    s, h, _ = get(pushers, "/ui/api/summary", accept=False)
    assert s == 401 and "www-authenticate" in h
    s, _, _ = get(pushers, "/ui/api/summary", headers=basic(*BOB))
    assert s == 403
    s, _, _ = get(pushers, "/ui/api/summary", headers=basic(*ALICE))
    assert s == 200

    off = mirror_factory([up], extra={"ui": {"access": "off"}})
    for path in ("/", "/ui/", "/ui/api/summary"):
        s, _, _ = get(off, path, accept=False)
        assert s == 404, path
    assert get(off, "/v2/", accept=False)[0] == 200


def test_repositories_are_filtered_sorted_and_paged(mirror_factory, up, tmp_dir, browser):
    """Sixty hosted repositories: the API pages them (limit capped), filters and sorts them in
    the daemon, and the page shows 50 at a time with a working Next."""
    auth = basic(*ALICE)
    m = mirror_factory([up], extra={"auth": {"htpasswd": make_users(tmp_dir, ALICE)},
                                    "hosted": ["lan/*"]})
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    for i in range(60):
        repo = f"lan/r{i:02d}"
        layer = bytes([i]) * (1000 + 10 * i)
        push_blob(m, repo, config, auth)
        push_blob(m, repo, layer, auth)
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": descriptor(OCI_CONFIG, config),
               "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)]}
        s, _, body, _ = put_manifest(m, repo, "v1", doc, auth)
        assert s == 201, body[:200]
    wait_until(lambda: api(m, "repositories")["total"] == 60, timeout=10, what="60 repositories")
    first = api(m, "repositories", limit=50)
    assert [r["name"] for r in first["repositories"]] == [f"lan/r{i:02d}" for i in range(50)]
    rest = api(m, "repositories", limit=50, offset=50)
    assert [r["name"] for r in rest["repositories"]] == [f"lan/r{i:02d}" for i in range(50, 60)]
    assert api(m, "repositories", limit=100000)["limit"] == 500
    assert [r["name"] for r in api(m, "repositories", q="R1")["repositories"]] == \
        [f"lan/r1{i}" for i in range(10)]
    biggest = api(m, "repositories", sort="bytes", order="desc", limit=3)["repositories"]
    assert [r["name"] for r in biggest] == ["lan/r59", "lan/r58", "lan/r57"]
    assert all(r["hosted"] and r["tags"] == 1 for r in first["repositories"])
    s, h, body = get(m, "/ui/api/repositories", method="HEAD", accept=False)
    assert s == 200 and body == b"" and int(h["content-length"]) > 1000

    b = browser
    b.viewport(1280, 800)
    b.navigate(f"http://127.0.0.1:{m.port}/",
               ready="document.querySelectorAll('#repos a.repo').length === 50")
    assert "1–50 of 60" in b.evaluate("document.querySelector('#repos .pager').textContent")
    b.evaluate("[...document.querySelectorAll('#repos .pager button')].pop().click()")
    b.wait_for("document.querySelectorAll('#repos a.repo').length === 10")
    assert texts(b, "#repos a.repo")[0] == "lan/r50"
    assert b.problems() == [], b.problems()


def test_upstream_budget_and_429_are_shown(mirror_factory, browser):
    """An upstream that announces Docker Hub's ratelimit-* headers, then answers 429: the page
    shows the budget it announced (and that it is nearly spent) and when the 429 came."""
    from scripted import Reply, Scripted
    up = Scripted()
    try:
        body, blobs = image_manifest(b'{"architecture":"amd64","os":"linux"}', [b"layer-1"])
        up.manifest("library/app", "1", body, headers=[
            ("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", "7;w=21600"),
            ("docker-ratelimit-source", "203.0.113.9")])
        up.route("GET", r"/v2/library/app/manifests/2",
                 lambda req: Reply.error(429, "TOOMANYREQUESTS", [("Retry-After", "1")]))
        m = mirror_factory([{"name": "docker.io", "url": up.url}])
        assert get(m, "/v2/app/manifests/1")[0] == 200
        s = api(m, "summary")["upstreams"][0]
        assert (s["limit"], s["remaining"], s["window_s"]) == (100, 7, 21600), s
        assert s["last_429"] is None, s
        b = browser
        b.viewport(1280, 800)
        b.navigate(f"http://127.0.0.1:{m.port}/", ready=UPSTREAMS_DRAWN)
        budget = b.evaluate("document.querySelector('table.upstreams .budget').textContent")
        assert "7 of 100 left per 6 h" in budget, budget
        assert b.evaluate("document.querySelector('table.upstreams .budget .bar.bad') !== null")
        assert get(m, "/v2/app/manifests/2")[0] == 429
        s = api(m, "summary")["upstreams"][0]
        assert s["last_429"] and s["remaining"] == 0, s
        seen = len(up.log)
        b.navigate(f"http://127.0.0.1:{m.port}/", ready=UPSTREAMS_DRAWN)
        budget = b.evaluate("document.querySelector('table.upstreams .budget').textContent")
        assert "0 of 100 left per 6 h" in budget, budget
        last = b.evaluate("document.querySelector('table.upstreams tbody tr td:last-child time')"
                          ".getAttribute('datetime')")
        assert last and last.endswith("Z"), last
        assert len(up.log) == seen, "the page view reached the upstream"
        assert b.problems() == [], b.problems()
    finally:
        up.stop()


def test_page_shows_prefetch_runs_and_what_is_pinned(mirror_factory, up, make_image, push,
                                                     tmp_dir, browser):
    """A pin list and a prefetch glob: the summary's JSON has the prefetch runs (the first one's
    manifest and blob GETs are what the upstream's log shows) and each upstream's last run; the
    repository JSON marks a pinned tag with its reason (pin or prefetch) and an unlisted one as
    not pinned; in Chromium the runs table, the upstream's last run, and the pinned badge with
    its reason appear."""
    kept = push(make_image(1470, (24 * 1024,)), up, "library/kept", "v1")
    warm = push(make_image(1471, (16 * 1024, 8 * 1024)), up, "library/warm", "v2")
    loose = push(make_image(1472, (8 * 1024,)), up, "library/loose", "v1")
    mark = up.mark()
    m = mirror_factory([up], extra={"pin": ["library/kept:v1"],
                                    "prefetch": {"references": ["library/warm:v*"],
                                                 "schedule": "3s"}})
    pull(m, "library/kept", kept, "v1")
    pull(m, "library/loose", loose, "v1")
    wait_until(lambda: len(api(m, "summary")["prefetch_runs"]) >= 1, timeout=30,
               what="a prefetch run recorded")
    s = api(m, "summary")
    first = s["prefetch_runs"][-1]
    warm_reqs = [r for r in up.since(mark) if "/library/warm/" in r[1]]
    assert first["trigger"] == "scheduled" and first["upstreams"] == "docker.io"
    assert first["result"] == "ok" and first["stopped"] is None, first
    assert first["gets"] == 1 == count(warm_reqs, method="GET", kind="manifests"), warm_reqs
    assert first["blobs"] == len(warm.blob_digests) == count(warm_reqs, method="GET",
                                                             kind="blobs")
    assert first["bytes"] == sum(len(warm.blobs[d]) for d in warm.blob_digests)
    last = s["upstreams"][0]["last_prefetch"]
    assert last and last["started"] == s["prefetch_runs"][0]["started"], (last, s)

    def pinned(repo):
        return [t["pinned"] for t in api(m, "repository", upstream="docker.io",
                                         name=repo)["tags"]]
    assert pinned("library/kept") == ["pin: library/kept:v1"]
    assert pinned("library/warm") == ["prefetch: library/warm:v*"]
    assert pinned("library/loose") == [None]

    b = browser
    b.viewport(1280, 800)
    base = f"http://127.0.0.1:{m.port}"
    b.navigate(base + "/", ready="document.querySelector('table.prefetch tbody tr') !== null")
    rows = b.evaluate("document.querySelectorAll('table.prefetch tbody tr:not(.empty)').length")
    assert rows >= 1, rows
    first_row = texts(b, "table.prefetch tbody tr")[0]
    assert "scheduled" in first_row and "ok" in first_row and "docker.io" in first_row, first_row
    assert texts(b, "table.upstreams .last-prefetch .badge") == ["ok"]
    b.screenshot(os.path.join(tmp_dir, "prefetch-overview.png"), full=True)
    b.navigate(base + "/#/repository?upstream=docker.io&name=library%2Fkept",
               ready="document.querySelector('table.tags .badge.pinned') !== null")
    assert texts(b, "table.tags .badge.pinned") == ["pinned"]
    assert texts(b, "table.tags .pin-reason") == ["pin: library/kept:v1"]
    b.screenshot(os.path.join(tmp_dir, "pinned-tag.png"))
    b.navigate(base + "/#/repository?upstream=docker.io&name=library%2Floose",
               ready="document.querySelector('table.tags tbody a.digest') !== null")
    assert texts(b, "table.tags .badge.pinned") == []
    assert b.problems() == [], b.problems()
