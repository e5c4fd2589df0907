# SPDX-License-Identifier: Apache-2.0
"""Access control against hostile clients: a flood of random Basic credentials, user names found
by timing, a login checked while its user is removed, passwords bcrypt would cut short.

Nothing here asserts a time: what a flood must not do (starve cached reads, push good logins
out of the cache) is asserted through answers and the mirror's log; how fast hits stay under a
flood is measured by the bench (`bench/run --only bcrypt-flood`)."""

import base64
import http.client
import os
import secrets
import signal
import subprocess
import threading
import time

from helpers import assert_config_refused, assert_error, error_codes
from mirror import REGCACHE

ALICE, BOB = ("alice", "alice-pass"), ("bob", "bob-pass")


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bcrypt_line(user, password, cost):
    """An htpasswd line made by Apache's htpasswd at the given bcrypt cost."""
    r = subprocess.run(["htpasswd", "-nbB", "-C", str(cost), user, password],
                       capture_output=True, text=True, timeout=120, check=True)
    return r.stdout.strip() + "\n"


def write_users(path, *lines):
    with open(path + ".new", "w") as f:
        f.write("".join(lines))
    os.replace(path + ".new", path)
    return path


class Client:
    """A keep-alive connection to the mirror from a chosen loopback source address."""

    def __init__(self, port, source="127.0.0.1", timeout=60):
        self.port, self.source, self.timeout = port, source, timeout
        self.conn = None

    def request(self, path, headers=None, method="GET"):
        for attempt in range(2):  # the mirror may close a keep-alive connection: reconnect once
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout,
                                                       source_address=(self.source, 0))
            try:
                self.conn.request(method, path, headers=headers or {})
                resp = self.conn.getresponse()
                body = resp.read()
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
                if hdrs.get("connection", "").lower() == "close":
                    self.close()
                return resp.status, hdrs, body
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def wait_for_log(m, text, timeout=20):
    deadline = time.monotonic() + timeout
    while text not in m.log_text():
        assert time.monotonic() < deadline, f"no {text!r} in the log: " + m.log_text()[-2000:]
        time.sleep(0.1)


def auth_mirror(mirror_factory, up, htpasswd, log_level=None, **auth):
    extra = {"auth": {"htpasswd": htpasswd, **auth}}
    if log_level:
        extra["log"] = {"level": log_level}
    return mirror_factory([up], extra=extra)


def test_bcrypt_flood_from_one_address_gets_429_while_hits_and_other_logins_go_on(
        mirror_factory, up, make_image, push, tmp_dir):
    """One client sends random Basic credentials as fast as it is answered while another reads
    a cached blob: every read is answered in full; after auth.max_failures (default 10) wrong
    passwords the flooding address gets 429 TOOMANYREQUESTS with a Retry-After (half a second
    late), and no more bcrypt runs for it; a good login remembered still works from there, and a good login from
    another address works, remembered or not."""
    img = push(make_image(301, (256 * 1024,)), up, "library/flood", "v1")
    layer = max(img.blobs, key=lambda d: len(img.blobs[d]))
    path = write_users(os.path.join(tmp_dir, "htpasswd"), bcrypt_line(*ALICE, 10),
                       bcrypt_line(*BOB, 10))
    m = auth_mirror(mirror_factory, up, path)
    blob = f"/v2/library/flood/blobs/{layer}"
    reader = Client(m.port, "127.0.0.1")
    s, _, body = reader.request(blob)
    assert s == 200 and body == img.blobs[layer]
    good = Client(m.port, "127.0.0.2")
    assert good.request("/v2/", basic(*ALICE))[0] == 200  # alice's verdict is now remembered

    flood_statuses, flood_answers, stop = [], [], threading.Event()

    def flood(source):
        """Up to 150 fresh credentials, until 5 of them got 429 (each comes 0.5 s late)."""
        c = Client(m.port, source)
        refused = 0
        try:
            for i in range(150):
                if stop.is_set() or refused == 5:
                    return
                user = "alice" if i % 2 else "u" + secrets.token_hex(4)
                s, h, body = c.request("/v2/", basic(user, secrets.token_hex(8)))
                flood_statuses.append(s)
                if s == 429:
                    refused += 1
                    flood_answers.append((h, body))
        finally:
            c.close()

    flooders = [threading.Thread(target=flood, args=("127.0.0.9",)) for _ in range(3)]
    for t in flooders:
        t.start()
    try:
        for _ in range(30):  # cached reads while the flood goes on
            s, _, body = reader.request(blob)
            assert s == 200 and body == img.blobs[layer]
    finally:
        for t in flooders:
            t.join(timeout=120)
        stop.set()
    assert not any(t.is_alive() for t in flooders)
    reader.close()

    assert set(flood_statuses) <= {401, 429}, set(flood_statuses)
    assert flood_statuses.count(429) == 15, flood_statuses
    assert flood_statuses.count(401) <= 10 + 3, flood_statuses
    h, body = flood_answers[-1]
    assert error_codes(body) == ["TOOMANYREQUESTS"], body
    assert 1 <= int(h["retry-after"]) <= 60
    # the flood cost at most max_failures bcrypt runs, and the checks that were already queued
    log = m.log_text()
    assert log.count("wrong credentials for user") <= 10 + 3, log[-3000:]
    assert "127.0.0.9: too many wrong passwords" in log

    # from the flooding address: a remembered good login still works, a new one waits
    flooder = Client(m.port, "127.0.0.9")
    assert flooder.request("/v2/", basic(*ALICE))[0] == 200
    s, h, body = flooder.request("/v2/", basic(*BOB))
    assert_error(s, body, 429, "TOOMANYREQUESTS")
    flooder.close()
    # from another address: remembered and fresh good logins, and wrong ones get 401
    other = Client(m.port, "127.0.0.3")
    assert other.request("/v2/", basic(*ALICE))[0] == 200
    assert other.request("/v2/", basic(*BOB))[0] == 200
    s, _, body = other.request("/v2/", basic("bob", "wrong"))
    assert_error(s, body, 401, "UNAUTHORIZED")
    other.close()
    good.close()


def test_good_login_stays_remembered_through_5000_wrong_credentials(mirror_factory, up, tmp_dir):
    """5000 distinct wrong credentials (more than the 4096 verdicts remembered), from 625
    addresses that each stay under the per-address limit, do not push out a good login:
    alice's password is checked with bcrypt once (the mirror logs each check at debug level),
    not again after the flood. Cost-4 hashes keep the 5000 checks cheap."""
    path = write_users(os.path.join(tmp_dir, "htpasswd"), bcrypt_line(*ALICE, 4))
    m = auth_mirror(mirror_factory, up, path, log_level="debug")
    c = Client(m.port)
    assert c.request("/v2/", basic(*ALICE))[0] == 200
    statuses = []

    def flood(part):
        for a in range(part * 157, min(625, part * 157 + 157)):  # 8 each from 127.0.<x>.<y>
            fc = Client(m.port, f"127.0.{10 + a // 200}.{1 + a % 200}")
            try:
                for i in range(8):
                    statuses.append(fc.request("/v2/", basic(f"nobody{a}-{i}", "x"))[0])
            finally:
                fc.close()

    threads = [threading.Thread(target=flood, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert len(statuses) == 5000 and set(statuses) == {401}, set(statuses)
    assert c.request("/v2/", basic(*ALICE))[0] == 200
    c.close()
    log = m.log_text()
    assert log.count("checking a password of user 'nobody") == 5000
    assert log.count("checking a password of user 'alice'") == 1, log[-2000:]


def test_logins_past_the_bcrypt_queue_get_503(mirror_factory, up, tmp_dir):
    """At most 64 distinct credentials wait for bcrypt: 100 sent at once get 401 for those
    checked and 503 UNAVAILABLE with Retry-After: 1 for the rest, never an unbounded queue; a
    good login works afterwards."""
    path = write_users(os.path.join(tmp_dir, "htpasswd"), bcrypt_line(*ALICE, 8))
    m = auth_mirror(mirror_factory, up, path)  # wrong passwords count once checked: too late
    answers, go = [], threading.Event()

    def login(i):
        c = Client(m.port)
        try:
            c.request("/healthz")  # connected before the burst
            go.wait(30)
            answers.append(c.request("/v2/", basic(f"nobody{i}", "x")))
        finally:
            c.close()

    threads = [threading.Thread(target=login, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    go.set()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    statuses = [s for s, _, _ in answers]
    assert len(statuses) == 100 and set(statuses) <= {401, 503}, statuses
    assert 64 <= statuses.count(401) < 100, statuses
    busy = [(h, body) for s, h, body in answers if s == 503]
    assert all(h["retry-after"] == "1" and error_codes(body) == ["UNAVAILABLE"]
               for h, body in busy), busy[:1]
    # the 64 wrong ones checked now count against the address; another one logs in
    assert Client(m.port, "127.0.0.2").request("/v2/", basic(*ALICE))[0] == 200


def test_unknown_users_cost_what_the_file_costs_and_weak_hashes_are_warned(
        mirror_factory, up, tmp_dir):
    """A wrong user name must take as long as a wrong password: unknown users are checked
    against a hash of the file's highest cost (logged at load and per check), and a file with
    hashes under cost 10 (Apache's `htpasswd -B` writes 5) is warned about, naming the user."""
    path = write_users(os.path.join(tmp_dir, "htpasswd"), bcrypt_line(*ALICE, 5))
    m = auth_mirror(mirror_factory, up, path, log_level="debug")
    log = m.log_text()
    assert "user 'alice' has a bcrypt hash of cost 5, under 10" in log, log
    assert "unknown users are checked at bcrypt cost 5" in log, log
    assert Client(m.port).request("/v2/", basic("nobody", "x"))[0] == 401
    wait_for_log(m, "checking a password of user 'nobody' from 127.0.0.1 at bcrypt cost 5")

    # a file of mixed costs: unknown users pay the highest
    write_users(path, bcrypt_line(*ALICE, 5), bcrypt_line(*BOB, 11))
    m.proc.send_signal(signal.SIGHUP)
    wait_for_log(m, "unknown users are checked at bcrypt cost 11")
    assert Client(m.port).request("/v2/", basic("nobody2", "x"))[0] == 401
    wait_for_log(m, "checking a password of user 'nobody2' from 127.0.0.1 at bcrypt cost 11")
    assert Client(m.port).request("/v2/", basic(*BOB))[0] == 200


def test_removed_user_is_refused_at_once_even_while_being_checked(mirror_factory, up, tmp_dir):
    """A user removed from the file (SIGHUP) is refused at once: a remembered login is not
    trusted any more, and a login whose bcrypt check was still running during the reload is
    not remembered as good. A slow (cost 14) hash keeps the check running across the reload."""
    slow = ("carol", "carol-pass")
    path = write_users(os.path.join(tmp_dir, "htpasswd"), bcrypt_line(*ALICE, 4),
                       bcrypt_line(*slow, 14))
    m = auth_mirror(mirror_factory, up, path)
    assert Client(m.port).request("/v2/", basic(*ALICE))[0] == 200  # remembered

    result = {}

    def login():
        result["status"] = Client(m.port, timeout=120).request("/v2/", basic(*slow))[0]

    t = threading.Thread(target=login)
    t.start()
    time.sleep(0.3)  # the check is under way (it takes about a second at cost 14)
    write_users(path, bcrypt_line(*BOB, 4))
    m.proc.send_signal(signal.SIGHUP)
    wait_for_log(m, "loaded, 1 users")
    s, _, body = Client(m.port).request("/v2/", basic(*ALICE))
    assert_error(s, body, 401, "UNAUTHORIZED")  # remembered, but no longer in the file
    t.join(timeout=120)
    assert not t.is_alive() and "status" in result
    s, _, body = Client(m.port, timeout=120).request("/v2/", basic(*slow))
    assert_error(s, body, 401, "UNAUTHORIZED")  # its check was never remembered as good
    assert Client(m.port).request("/v2/", basic(*BOB))[0] == 200


def test_passwd_refuses_passwords_bcrypt_would_cut_short(tmp_dir):
    """bcrypt ignores every byte past 72: `regcache passwd` refuses a longer password (it
    would seem stronger than it is) and writes nothing; 72 bytes are accepted."""
    path = os.path.join(tmp_dir, "htpasswd")
    r = subprocess.run([*REGCACHE, "passwd", path, "alice"], input="x" * 73 + "\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "72" in r.stderr, r.stdout + r.stderr
    assert not os.path.exists(path) or "alice:" not in open(path).read()
    r = subprocess.run([*REGCACHE, "passwd", path, "alice"], input="y" * 72 + "\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert subprocess.run(["htpasswd", "-vb", path, "alice", "y" * 72],
                          capture_output=True).returncode == 0


def test_config_errors_for_auth_limits(tmp_dir):
    users = write_users(os.path.join(tmp_dir, "htpasswd"), bcrypt_line(*ALICE, 4))
    assert_config_refused(tmp_dir, f"auth:\n  htpasswd: {users}\n  verify_threads: 0\n",
                          "bad.yml:3: auth.verify_threads")
    assert_config_refused(tmp_dir, f"auth:\n  htpasswd: {users}\n  max_failures: lots\n",
                          "bad.yml:3: auth.max_failures")
