# SPDX-License-Identifier: Apache-2.0
"""Access control: users from a bcrypt htpasswd file, anonymous pulls, pushes for listed users,
and a ping that always announces Basic auth (so that buildah, podman and skopeo send their
credentials: the seed's "authentication required" after a successful login)."""

import base64
import json
import os
import signal
import subprocess
import time

import clients
from helpers import assert_config_refused, assert_error, get
from mirror import REGCACHE

ALICE, BOB = ("alice", "alice-pass"), ("bob", "bob-pass")


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def passwd(path, user, password):
    r = subprocess.run([*REGCACHE, "passwd", path, user], input=password + "\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r


def make_users(tmp_dir, *users):
    path = os.path.join(tmp_dir, "htpasswd")
    for u, p in users:
        passwd(path, u, p)
    return path


def auth_mirror(mirror_factory, up, htpasswd, **auth):
    return mirror_factory([up], extra={"auth": {"htpasswd": htpasswd, "realm": "Test Realm",
                                                **auth}})


def test_passwd_writes_bcrypt_that_htpasswd_accepts(tmp_dir):
    """`regcache passwd` creates and updates entries with bcrypt hashes that Apache's htpasswd
    verifies; other users' lines are kept."""
    path = make_users(tmp_dir, ALICE, BOB)
    lines = open(path).read().splitlines()
    assert [l.split(":")[0] for l in lines] == ["alice", "bob"]
    assert all(l.split(":", 1)[1].startswith("$2y$10$") for l in lines)
    assert subprocess.run(["htpasswd", "-vb", path, *ALICE], capture_output=True).returncode == 0
    passwd(path, "alice", "changed")
    assert subprocess.run(["htpasswd", "-vb", path, "alice", "changed"],
                          capture_output=True).returncode == 0
    assert subprocess.run(["htpasswd", "-vb", path, *ALICE], capture_output=True).returncode != 0
    assert subprocess.run(["htpasswd", "-vb", path, *BOB], capture_output=True).returncode == 0
    r = subprocess.run([*REGCACHE, "passwd", path, "bad:name"], input="x\n", capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0


def test_ping_and_credentials_with_anonymous_pulls(mirror_factory, up, make_image, push,
                                                   tmp_dir):
    """anonymous: pull. The ping answers 200 with the Basic challenge to anyone, 401 (with the
    challenge and the API version header) to wrong credentials, 200 to right ones; anonymous
    pulls work; /healthz needs nothing."""
    img = push(make_image(90, (32 * 1024,)), up, "library/open", "v1")
    m = auth_mirror(mirror_factory, up, make_users(tmp_dir, ALICE, BOB))
    s, h, _ = get(m, "/v2/", headers={})
    assert s == 200
    assert h["www-authenticate"] == 'Basic realm="Test Realm"'
    s, h, body = get(m, "/v2/", headers=basic("alice", "wrong"))
    assert_error(s, body, 401, "UNAUTHORIZED")
    assert h["www-authenticate"] == 'Basic realm="Test Realm"'
    assert h["docker-distribution-api-version"] == "registry/2.0"
    s, h, body = get(m, "/v2/", headers=basic("nobody", "x"))
    assert s == 401
    s, h, _ = get(m, "/v2/", headers=basic(*ALICE))
    assert s == 200 and h["www-authenticate"] == 'Basic realm="Test Realm"'
    # empty Basic credentials (what skopeo sends without a login) count as anonymous
    assert get(m, "/v2/", headers={"Authorization": "Basic Og=="})[0] == 200
    # anonymous pull, and a pull with credentials
    assert get(m, f"/v2/library/open/manifests/{img.digest}", headers={})[0] == 200
    assert get(m, f"/v2/library/open/manifests/{img.digest}", headers=basic(*BOB))[0] == 200
    # wrong credentials are refused even where anonymous access would do
    s, h, body = get(m, f"/v2/library/open/manifests/{img.digest}", headers=basic("bob", "no"))
    assert_error(s, body, 401, "UNAUTHORIZED")
    s, _, body = get(m, "/healthz", headers={})
    assert s == 200 and body == b"ok\n"


def test_pushes_need_a_push_user(mirror_factory, up, tmp_dir):
    """A push without credentials gets 401 with the challenge; by a user outside push_users 403
    DENIED; by a push user into a proxied repository 405 UNSUPPORTED."""
    m = auth_mirror(mirror_factory, up, make_users(tmp_dir, ALICE, BOB), push_users=["alice"])
    path = "/v2/library/x/blobs/uploads/"
    s, h, body = get(m, path, method="POST", headers={})
    assert_error(s, body, 401, "UNAUTHORIZED")
    assert h["www-authenticate"] == 'Basic realm="Test Realm"'
    s, _, body = get(m, path, method="POST", headers=basic(*BOB))
    assert_error(s, body, 403, "DENIED")
    s, _, body = get(m, path, method="POST", headers=basic(*ALICE))
    assert_error(s, body, 405, "UNSUPPORTED")


def test_anonymous_none_requires_login_everywhere(mirror_factory, up, make_image, push, tmp_dir):
    img = push(make_image(91, (32 * 1024,)), up, "library/closed", "v1")
    m = auth_mirror(mirror_factory, up, make_users(tmp_dir, ALICE), anonymous="none")
    s, h, body = get(m, "/v2/", headers={})
    assert_error(s, body, 401, "UNAUTHORIZED")
    assert h["www-authenticate"] == 'Basic realm="Test Realm"'
    s, _, body = get(m, f"/v2/library/closed/manifests/{img.digest}", headers={})
    assert_error(s, body, 401, "UNAUTHORIZED")
    assert get(m, f"/v2/library/closed/manifests/{img.digest}", headers=basic(*ALICE))[0] == 200
    assert get(m, "/healthz", headers={})[0] == 200


def test_users_reload_on_change_and_sighup(mirror_factory, up, tmp_dir):
    """A user added to the file can log in without a restart; a user with a non-bcrypt hash is
    left out with a log line naming it; SIGHUP re-reads the file too."""
    path = make_users(tmp_dir, ALICE)
    m = auth_mirror(mirror_factory, up, path)
    assert get(m, "/v2/", headers=basic(*BOB))[0] == 401
    passwd(path, *BOB)
    deadline = time.monotonic() + 20
    while get(m, "/v2/", headers=basic(*BOB))[0] != 200:
        assert time.monotonic() < deadline, "the new user was never accepted"
        time.sleep(0.5)
    with open(path, "a") as f:
        f.write("carol:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n")  # sha1 "test": refused
    m.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "user 'carol' skipped" not in m.log_text():
        assert time.monotonic() < deadline, m.log_text()[-2000:]
        time.sleep(0.2)
    assert get(m, "/v2/", headers=basic("carol", "test"))[0] == 401
    assert get(m, "/v2/", headers=basic(*ALICE))[0] == 200


def test_config_errors_for_auth(tmp_dir):
    assert_config_refused(tmp_dir, "auth:\n  htpasswd: /nonexistent/htpasswd\n",
                          "bad.yml:2: auth.htpasswd")
    assert_config_refused(tmp_dir,
                          f"auth:\n  htpasswd: {make_users(tmp_dir, ALICE)}\n  anonymous: maybe\n",
                          "bad.yml:3: auth.anonymous")


def test_docker_login(dockerd, mirror_factory, up, tmp_dir):
    """`docker login` against a mirror that allows anonymous pulls succeeds with the right
    password. (Docker only sends credentials after a 401 on the ping, so against a 200 ping it
    cannot tell a wrong password: with `anonymous: none` it can, see the next test.)"""
    m = auth_mirror(mirror_factory, up, make_users(tmp_dir, ALICE))
    env = dict(os.environ, DOCKER_CONFIG=os.path.join(tmp_dir, "docker-cli"))
    r = clients.run([clients.DOCKER, "-H", f"unix://{dockerd.sock}", "login",
                     f"127.0.0.1:{m.port}", "-u", ALICE[0], "--password-stdin"],
                    input=ALICE[1], check=False, env=env, timeout=60)
    assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stdout + r.stderr


def test_docker_login_wrong_password_refused(dockerd, mirror_factory, up, tmp_dir):
    """With `anonymous: none` the ping challenges, docker sends the credentials, and a wrong
    password is refused while the right one logs in."""
    m = auth_mirror(mirror_factory, up, make_users(tmp_dir, ALICE), anonymous="none")
    env = dict(os.environ, DOCKER_CONFIG=os.path.join(tmp_dir, "docker-cli"))

    def login(user, password):
        return clients.run([clients.DOCKER, "-H", f"unix://{dockerd.sock}", "login",
                            f"127.0.0.1:{m.port}", "-u", user, "--password-stdin"],
                           input=password, check=False, env=env, timeout=60)

    r = login("alice", "wrong")
    assert r.returncode != 0, r.stdout + r.stderr
    r = login(*ALICE)
    assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stdout + r.stderr
    statuses = {e.status for e in m.entries() if e.path == "/v2/"}
    assert {200, 401} <= statuses


def bearer(token):
    return {"Authorization": "Bearer " + token}


def test_token_scheme_endpoint_and_challenges(mirror_factory, up, make_image, push, tmp_dir):
    """auth.scheme: token. The ping challenges with Bearer and an absolute token realm built
    from the Host header; the endpoint issues anonymous tokens and user tokens for the right
    password only; a token opens what its holder may do, a forged or tampered one nothing; a
    401 names the scope the request needs."""
    img = push(make_image(120, (16 * 1024,)), up, "library/tok", "v1")
    m = auth_mirror(mirror_factory, up, make_users(tmp_dir, ALICE), scheme="token")
    s, h, body = get(m, "/v2/", headers={})
    assert_error(s, body, 401, "UNAUTHORIZED")
    assert h["www-authenticate"] == (f'Bearer realm="http://127.0.0.1:{m.port}/v2/token",'
                                     'service="Test Realm"')
    s, h, _ = get(m, "/v2/", headers={"X-Forwarded-Proto": "https", "Host": "hub.lan"})
    assert h["www-authenticate"].startswith('Bearer realm="https://hub.lan/v2/token"')

    s, h, body = get(m, "/v2/token?service=Test+Realm&scope=repository:library/tok:pull",
                     headers={})
    assert s == 200 and h["cache-control"] == "no-store", body
    anon = json.loads(body)
    assert anon["token"] == anon["access_token"] and anon["expires_in"] > 0
    s, h, body = get(m, "/v2/token", headers=basic("alice", "wrong"))
    assert_error(s, body, 401, "UNAUTHORIZED")
    assert h["www-authenticate"] == 'Basic realm="Test Realm"'
    s, _, body = get(m, "/v2/token?scope=repository:team/x:pull,push", headers=basic(*ALICE))
    assert s == 200
    user = json.loads(body)["token"]
    assert user != anon["token"]
    assert get(m, "/v2/token", method="POST", headers={})[0] == 405

    assert get(m, "/v2/", headers=bearer(anon["token"]))[0] == 200
    assert get(m, "/v2/", headers=bearer(user))[0] == 200
    s, _, body = get(m, "/v2/library/tok/manifests/v1", headers={**bearer(anon["token"]),
                                                               "Accept": img.media_type})
    assert s == 200 and body == img.raw
    # an anonymous token does not open a push; the challenge names the push scope
    s, h, body = get(m, "/v2/team/x/blobs/uploads/", method="POST",
                     headers=bearer(anon["token"]))
    assert_error(s, body, 401, "UNAUTHORIZED")
    assert 'scope="repository:team/x:pull,push"' in h["www-authenticate"]
    # tampering with either half, or a token from another mirror's key, gets 401
    head, _, mac = user.partition(".")
    forged = base64.urlsafe_b64encode(b"v1 99999999999 alice").decode().rstrip("=") + "." + mac
    for bad in (forged, head + "." + mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB"), "x.y",
                "garbage"):
        s, h, body = get(m, "/v2/library/tok/manifests/v1", headers=bearer(bad))
        assert_error(s, body, 401, "UNAUTHORIZED")
        assert 'scope="repository:library/tok:pull"' in h["www-authenticate"]
    key = os.path.join(m.storage, "token.key")
    assert os.stat(key).st_mode & 0o777 == 0o600 and os.path.getsize(key) == 32
    # the key survives a restart, so tokens held by clients stay valid
    assert m.stop() == 0
    m.start()
    assert get(m, "/v2/", headers=bearer(user))[0] == 200


def test_token_of_a_removed_user_is_refused(mirror_factory, up, tmp_dir):
    path = make_users(tmp_dir, ALICE, BOB)
    m = auth_mirror(mirror_factory, up, path, scheme="token")
    s, _, body = get(m, "/v2/token", headers=basic(*BOB))
    token = json.loads(body)["token"]
    assert get(m, "/v2/", headers=bearer(token))[0] == 200
    with open(path) as f:
        kept = [l for l in f if not l.startswith("bob:")]
    with open(path, "w") as f:
        f.writelines(kept)
    deadline = time.monotonic() + 15
    while get(m, "/v2/", headers=bearer(token))[0] != 401:
        assert time.monotonic() < deadline, "bob's token still works after his removal"
        time.sleep(0.3)


def test_token_config_errors(tmp_dir):
    users = make_users(tmp_dir, ALICE)
    assert_config_refused(tmp_dir, f"auth:\n  htpasswd: {users}\n  scheme: digest\n",
                          "bad.yml:3: auth.scheme")
    assert_config_refused(tmp_dir, f"auth:\n  htpasswd: {users}\n  token_realm: /v2/token\n",
                          "bad.yml:3: auth.token_realm")
