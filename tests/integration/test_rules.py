# SPDX-License-Identifier: Apache-2.0
"""Pull rules against the token-auth docker-registry upstream: what they deny is 403 DENIED
naming the rule for skopeo, containerd and dockerd, and is never asked upstream; what they allow
still pulls; a denied image's config and layers are not served through an allowed repository
name by digest (the upstream is asked through that name and answers 404); per-user rules with
htpasswd users and a group."""

import json
import os
import subprocess

import threading

import pytest

import clients
from helpers import assert_error, get, since, wait_until
from switchproxy import SwitchProxy
from test_auth import ALICE, BOB, basic, make_users

BANNED = "library/banned"


def rules_mirror(mirror_factory, up, rules, **extra):
    return mirror_factory([up], extra={"rules": rules,
                                       "metrics": {"allow": ["127.0.0.1/32"]}, **extra})


def upstream_asked(up, mark, repo):
    return [r for r in since(up, mark) if f"/v2/{repo}/" in r[1]]


def denials(mirror):
    s, _, body = get(mirror, "/metrics", headers={})
    assert s == 200
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("regcache_rule_denials_total{"):
            name, value = line.rsplit(" ", 1)
            out[name.split('"')[1]] = int(value)
    return out


def test_denied_image_is_refused_for_skopeo_and_containerd(mirror_factory, up, make_image, push,
                                                           containerd, tmp_dir):
    """Rule 1 denies library/banned: a direct GET is 403 DENIED naming the rule, skopeo and ctr
    fail, the access log says denied, the metric counts them, and the upstream never hears of
    the image; library/open still pulls with both clients."""
    push(make_image(301, (32 * 1024,)), up, BANNED, "v1")
    ok = push(make_image(302, (32 * 1024,), fmt="oci"), up, "library/open", "v1")
    m = rules_mirror(mirror_factory, up, [{"deny": "docker.io/library/banned"},
                                          {"allow": "docker.io/library/*"}])
    assert denials(m) == {"default": 0, "1": 0, "2": 0}
    mark = up.mark()
    s, _, body = get(m, f"/v2/{BANNED}/manifests/v1")
    assert_error(s, body, 403, "DENIED")
    assert "denied by rule 1 (deny docker.io/library/banned:*)" in body.decode()
    s, _, body = get(m, f"/v2/{BANNED}/tags/list")
    assert_error(s, body, 403, "DENIED")
    with pytest.raises(RuntimeError):
        clients.skopeo_copy_from_mirror(m.port, f"{BANNED}:v1", os.path.join(tmp_dir, "sk"))
    with pytest.raises(RuntimeError):
        containerd.pull(f"docker.io/{BANNED}:v1", m.port, "rulesdeny")
    entries = [e for e in m.entries() if f"/v2/{BANNED}/" in e.path]
    assert entries and all(e.status == 403 and e.cache == "denied" for e in entries), entries
    assert denials(m)["1"] == len(entries)
    assert upstream_asked(up, mark, BANNED) == []
    # allowed: both clients pull it
    clients.skopeo_copy_from_mirror(m.port, "library/open:v1", os.path.join(tmp_dir, "ok"))
    containerd.pull("docker.io/library/open:v1", m.port, "rulesallow")
    assert containerd.image_digest("docker.io/library/open:v1", "rulesallow") == ok.digest
    containerd.ctr("images", "rm", "docker.io/library/open:v1", namespace="rulesallow")
    s, _, body = get(m, "/v2/_catalog")
    assert s == 200 and json.loads(body)["repositories"] == ["library/open"]


@pytest.mark.once
def test_denied_image_is_refused_for_dockerd(dockerd, mirror_factory, up, make_image, push,
                                             docker_mirror_port):
    """dockerd (registry-mirrors) gets 403 DENIED for a denied image; an allowed one pulls."""
    push(make_image(303, (32 * 1024,)), up, BANNED, "v1")
    ok = push(make_image(304, (32 * 1024,)), up, "library/dkopen", "v1")
    m = mirror_factory([up], port=docker_mirror_port,
                       extra={"rules": [{"deny": "docker.io/library/banned"}]})
    mark = up.mark()
    r = dockerd.docker("pull", f"{BANNED}:v1", check=False)
    assert r.returncode != 0
    entries = [e for e in m.entries() if f"/v2/{BANNED}/" in e.path]
    assert entries and all(e.status == 403 for e in entries), entries
    assert upstream_asked(up, mark, BANNED) == []
    try:
        dockerd.docker("pull", "library/dkopen:v1")
        assert any(d.endswith("@" + ok.digest) for d in dockerd.repo_digests("library/dkopen:v1"))
    finally:
        dockerd.docker("rmi", "-f", "library/dkopen:v1", check=False)


def test_private_layers_do_not_leak_through_an_allowed_name(mirror_factory, up, make_image, push,
                                                            tmp_dir):
    """alice (group team) may pull private/app; anonymous and bob may not. Once alice's pull
    cached it, anonymous asks for its config, layers and manifest by digest under library/open
    (allowed): GET and HEAD are 404, the upstream was asked through library/open, and no cached
    byte is served. Under its own name alice's pull of them is a cache hit."""
    priv = push(make_image(305, (48 * 1024, 16 * 1024)), up, "private/app", "v1")
    push(make_image(306, (16 * 1024,)), up, "library/open", "v1")
    htpasswd = make_users(tmp_dir, ALICE, BOB)
    m = rules_mirror(mirror_factory, up,
                     {"groups": {"team": ["alice"]},
                      "list": [{"allow": "docker.io/private/*", "users": ["@team"]},
                               {"deny": "*/private/*"}],
                      "default": "allow"},
                     auth={"htpasswd": htpasswd})
    clients.skopeo_copy_from_mirror(m.port, "private/app:v1", os.path.join(tmp_dir, "a"),
                                    ["--src-creds", "%s:%s" % ALICE])
    for who in ({}, basic(*BOB)):
        s, _, body = get(m, "/v2/private/app/manifests/v1", headers=who)
        assert_error(s, body, 403, "DENIED")
        assert "denied by rule 2 (deny */private/*:*)" in body.decode()
    man = priv.manifests[0]
    digests = [man.config.digest] + [l.digest for l in man.layers]
    mark = up.mark()
    for d in digests:
        for method in ("GET", "HEAD"):
            s, _, body = get(m, f"/v2/library/open/blobs/{d}", method=method, headers={})
            assert s == 404, (method, d, s)
            if method == "GET":
                assert_error(s, body, 404, "BLOB_UNKNOWN")
                assert d.encode() not in body or b"errors" in body
    s, _, body = get(m, f"/v2/library/open/manifests/{priv.digest}")
    assert_error(s, body, 404, "MANIFEST_UNKNOWN")
    asked = upstream_asked(up, mark, "library/open")
    for d in digests:
        assert any(r[1].endswith("/blobs/" + d) and r[2] == 404 for r in asked), asked
    assert any(r[1].endswith("/manifests/" + priv.digest) and r[2] == 404 for r in asked), asked
    assert upstream_asked(up, mark, "private/app") == []
    # under its own name, for alice: served from the cache, the upstream not asked
    mark = up.mark()
    for d in digests:
        s, _, body = get(m, f"/v2/private/app/blobs/{d}", headers=basic(*ALICE))
        assert s == 200
    assert [r for r in since(up, mark) if "/blobs/" in r[1]] == []
    s, _, body = get(m, "/v2/_catalog", headers={})
    assert "private/app" not in json.loads(body)["repositories"]
    s, _, body = get(m, "/v2/_catalog", headers=basic(*ALICE))
    assert "private/app" in json.loads(body)["repositories"]


def test_allow_list_of_tags_admits_their_content_only(mirror_factory, up, make_image, push,
                                                      tmp_dir):
    """default deny and allow library/multi:v1 only: skopeo pulls v1 with every platform (its
    child manifests and layers come by digest); v2 is denied by the default, and v2's manifest
    asked by digest is denied too (the repository is not known to reference it)."""
    v1 = push(make_image(307, (16 * 1024,), fmt="oci", multi_arch=True), up, "library/multi", "v1")
    v2 = push(make_image(308, (16 * 1024,), fmt="oci"), up, "library/multi", "v2")
    m = rules_mirror(mirror_factory, up, {"default": "deny",
                                          "list": [{"allow": "docker.io/library/multi:v1"}]})
    clients.skopeo_copy_from_mirror(m.port, "library/multi:v1", os.path.join(tmp_dir, "v1"),
                                    ["--all", "--preserve-digests"])
    s, _, body = get(m, "/v2/library/multi/manifests/v2")
    assert_error(s, body, 403, "DENIED")
    assert "denied by the default rule" in body.decode()
    s, _, body = get(m, f"/v2/library/multi/manifests/{v2.digest}")
    assert_error(s, body, 403, "DENIED")
    s, _, _ = get(m, f"/v2/library/multi/manifests/{v1.manifests[1].digest}")
    assert s == 200
    assert denials(m)["default"] == 2


def test_rules_config_errors(tmp_dir):
    """Unknown action, bad glob, unknown group: refused at start with file:line: key."""
    from helpers import assert_config_refused
    assert_config_refused(tmp_dir, "rules:\n  - permit: docker.io/x\n", ":2:", "rules[1].permit",
                          "unknown action")
    assert_config_refused(tmp_dir, "rules:\n  - deny: docker.io/a[b\n", ":2:", "rules[1].deny",
                          "unclosed")
    assert_config_refused(tmp_dir, "rules:\n  list:\n    - allow: docker.io/x\n"
                          "      users: ['@ops']\n", ":4:", "rules.list[1].users",
                          "unknown group")


def test_stop_with_a_confirmation_in_flight_is_clean(mirror_factory, up, make_image, push):
    """A cached layer asked under another allowed repository needs the upstream's word (a HEAD
    through that name); with the upstream hung, SIGTERM during that HEAD ends the daemon with
    status 0 once the drain's grace has passed (under the sanitizers: nothing leaks)."""
    img = push(make_image(331, (24 * 1024,)), up, "library/first", "v1")
    proxy = SwitchProxy(up.port)
    try:
        m = mirror_factory([{"name": "docker.io", "url": proxy.url}],
                           extra={"rules": [{"allow": "docker.io/library/*"}],
                                  "timeouts": {"shutdown_grace": "1s", "first_byte": "30s"}})
        s, _, _ = get(m, "/v2/library/first/manifests/v1")
        assert s == 200
        layer = img.blob_digests[-1]
        s, _, _ = get(m, f"/v2/library/first/blobs/{layer}", accept=False)
        assert s == 200
        proxy.set_mode("hang")
        answers = []
        def ask():
            try:
                answers.append(get(m, f"/v2/library/second/blobs/{layer}", accept=False)[0])
            except OSError:
                answers.append("closed")  # the drain closed it unanswered
        t = threading.Thread(target=ask)
        t.daemon = True
        t.start()
        wait_until(lambda: any(f"/v2/library/second/blobs/{layer}" in p
                               for _, p, _ in proxy.requests()),
                   timeout=10, what="the HEAD through library/second to reach the upstream")
        assert m.stop(timeout=20) == 0
        t.join(timeout=10)
        assert answers != [200], answers  # never the cached bytes without the upstream's word
    finally:
        proxy.stop()
