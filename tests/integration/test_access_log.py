# SPDX-License-Identifier: Apache-2.0
"""The logs an operator's tools read: the daemon's log as JSON (every line parses, whatever a
client sent), the access log as JSON and as the Combined Log Format with its fields being what
was sent and answered, X-Request-Id and X-Cache on answers, whose X-Forwarded-For is believed
(log.trusted_proxies), and probes left out of the access log."""

import base64
import codecs
import json
import re
import time

from helpers import get, parse_raw, raw_exchange, since, wait_settled, wait_until
from upstream import count
from test_auth import ALICE, basic, make_users

# A user agent and a referer no log line may be broken by: quotes, a backslash, a tab, bytes
# that are not UTF-8, and something that looks like the next fields. (Control bytes other than
# tab are refused by the parser with a 400: that line must parse too.)
HOSTILE_UA = b'evil\t"agent\\" 200 99 "x" "y" \xff\xfe\xc3('
HOSTILE_REF = b'http://x/"\\\xe2\x82'

# Combined Log Format: client ident user [time] "request" status bytes "referer" "agent" ...
CLF_RE = re.compile(r'^(\S+) (\S+) (\S+) \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000)\] '
                    r'"([^"\\]*(?:\\.[^"\\]*)*)" (\d{3}) (\d+|-) '
                    r'"([^"\\]*(?:\\.[^"\\]*)*)" "([^"\\]*(?:\\.[^"\\]*)*)"(.*)$')


# regcache replaces each byte of ill-formed UTF-8 by U+FFFD
codecs.register_error("per_byte", lambda e: ("\ufffd" * (e.end - e.start), e.end))


def as_logged(b):
    return b.decode("utf-8", errors="per_byte")


def raw_request(m, method, target, headers):
    """One request with exactly these header bytes; (status, headers, body)."""
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\n".encode()
    for k, v in headers:
        head += k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()) + b"\r\n"
    head += b"Connection: close\r\n\r\n"
    return parse_raw(raw_exchange(m.port, head))


def log_lines(m):
    """Every line of the mirror's stderr as bytes, once it stopped growing."""
    def read():
        with open(m.log_path, "rb") as f:
            return f.read()
    return wait_settled(read, quiet=0.3).split(b"\n")[:-1]


def json_lines(m):
    """Every line parsed as JSON (strict UTF-8 first): fails on the first that does not."""
    out = []
    for line in log_lines(m):
        try:
            out.append(json.loads(line.decode("utf-8")))
        except (UnicodeDecodeError, ValueError) as e:
            raise AssertionError(f"a log line does not parse ({e}): {line!r}")
    return out


def access(m):
    return [x for x in json_lines(m) if x.get("log") == "access"]


def unescape_clf(s):
    r"""A quoted CLF field back to bytes: \" \\ and \xHH."""
    out, i = bytearray(), 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1] == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        elif s[i] == "\\":
            out += s[i + 1].encode()
            i += 2
        else:
            out += s[i].encode()
            i += 1
    return bytes(out)


def test_json_logs_parse_line_by_line_and_carry_what_was_sent(mirror_factory, up, make_image,
                                                              push, tmp_dir):
    img = push(make_image(1101), up, "library/logged", "v1")
    m = mirror_factory([up], extra={"log": {"format": "json"},
                                    "auth": {"htpasswd": make_users(tmp_dir, ALICE)}})
    auth = basic(*ALICE)["Authorization"]
    mark = up.mark()
    # an authenticated pull of the manifest, with a hostile user agent and referer
    s, h, body = raw_request(m, "GET", "/v2/library/logged/manifests/v1",
                             [("Authorization", auth), ("User-Agent", HOSTILE_UA),
                              ("Referer", HOSTILE_REF), ("Accept", img.media_type)])
    assert s == 200 and h["x-cache"] == "MISS", (s, h)
    manifest_id = h["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", manifest_id)
    # the blob, anonymously: a miss, then a hit
    layer = img.layer_digests[0]
    s1, h1, b1 = get(m, f"/v2/library/logged/blobs/{layer}", accept=False)
    s2, h2, b2 = get(m, f"/v2/library/logged/blobs/{layer}", accept=False)
    assert s1 == s2 == 200 and b1 == b2
    assert h1["x-cache"] in ("MISS", "FILL") and h2["x-cache"] == "HIT"
    assert len({manifest_id, h1["x-request-id"], h2["x-request-id"]}) == 3
    # hostile bytes in places the daemon's own log quotes: a user name with a wrong password
    evil = b'ev"il\\\x01\xff'
    cred = base64.b64encode(evil + b":wrong").decode()
    s3, _, _ = raw_request(m, "GET", "/v2/library/logged/manifests/v1",
                           [("Authorization", "Basic " + cred)])
    assert s3 == 401
    # a control byte in a header: refused by the parser, and logged
    s5, _, _ = raw_request(m, "GET", "/v2/", [("User-Agent", b"a\x01b\x7f")])
    assert s5 == 400
    # a target with quotes and a backslash in it
    s4, _, _ = raw_request(m, "GET", '/v2/x"y\\z/manifests/%ff', [])
    assert s4 in (400, 404)
    wait_until(lambda: any("wrong credentials" in x.get("msg", "") for x in json_lines(m)),
               what="the wrong password in the log")

    lines = json_lines(m)  # every line parses
    daemon = [x for x in lines if x.get("log") != "access"]
    assert daemon and all(set(x) == {"time", "level", "msg"} for x in daemon), daemon[:3]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", x["time"]) for x in lines)
    assert any("serving HTTP" in x["msg"] and x["level"] == "info" for x in daemon)
    wrong = [x for x in daemon if "wrong credentials" in x["msg"]]
    assert wrong and wrong[0]["level"] == "warn" and 'ev"il\\' in wrong[0]["msg"], wrong

    acc = access(m)
    by_id = {x["request_id"]: x for x in acc}
    e = by_id[manifest_id]
    assert e["method"] == "GET" and e["target"] == "/v2/library/logged/manifests/v1"
    assert e["protocol"] == "HTTP/1.1" and e["status"] == 200 and e["bytes"] == len(body)
    assert e["user"] == "alice" and e["upstream"] == "docker.io" and e["outcome"] == "miss"
    assert e["client"] == "127.0.0.1" and e["peer"] == "127.0.0.1" and e["note"] is None
    assert e["user_agent"] == as_logged(HOSTILE_UA)
    assert e["referer"] == as_logged(HOSTILE_REF)
    assert isinstance(e["duration"], float) and 0 <= e["duration"] < 30
    b = by_id[h1["x-request-id"]]
    assert b["user"] is None and b["bytes"] == len(b1) and b["outcome"] in ("miss", "fill")
    assert b["referer"] is None
    assert by_id[h2["x-request-id"]]["outcome"] == "hit"
    assert any(x["status"] == 401 and x["user"] is None for x in acc)
    assert any(x["target"] == '/v2/x"y\\z/manifests/%ff' for x in acc)
    # what the upstream saw: one manifest GET and one blob GET for all of the above
    reqs = since(up, mark)
    assert count(reqs, method="GET", kind="manifests") == 1, reqs
    assert count(reqs, method="GET", kind="blobs") == 1, reqs


def test_text_access_log_is_the_combined_log_format(mirror_factory, up, make_image, push,
                                                    tmp_dir):
    img = push(make_image(1102), up, "library/clf", "v1")
    m = mirror_factory([up], extra={"auth": {"htpasswd": make_users(tmp_dir, ALICE)}})
    s, h, body = raw_request(m, "GET", "/v2/library/clf/manifests/v1",
                             [("Authorization", basic(*ALICE)["Authorization"]),
                              ("User-Agent", HOSTILE_UA), ("Referer", HOSTILE_REF),
                              ("Accept", img.media_type)])
    assert s == 200
    s2, h2, _ = raw_request(m, "HEAD", "/v2/library/clf/manifests/v1", [])
    s3, h3, _ = raw_request(m, "GET", "/v2/library/nope/manifests/v1", [("User-Agent", "plain")])
    assert s2 == 200 and s3 == 404
    raw = [x.decode("ascii") for x in log_lines(m)]  # escaped: the text log is pure ASCII
    matched = [CLF_RE.match(x) for x in raw]
    got = {mt.group(10).split(" id=")[1].split()[0]: mt for mt in matched if mt}
    assert len(got) == 3, raw[-5:]
    mt = got[h["x-request-id"]]
    assert mt.group(1) == "127.0.0.1" and mt.group(2) == "-" and mt.group(3) == "alice"
    assert mt.group(5) == "GET /v2/library/clf/manifests/v1 HTTP/1.1"
    assert mt.group(6) == "200" and int(mt.group(7)) == len(body)
    assert unescape_clf(mt.group(8)) == HOSTILE_REF and unescape_clf(mt.group(9)) == HOSTILE_UA
    extra = dict(kv.split("=", 1) for kv in mt.group(10).split())
    assert extra["upstream"] == "docker.io" and extra["outcome"] == "miss"
    assert float(extra["rt"]) >= 0 and extra["note"] == "-" and extra["peer"] == "127.0.0.1"
    mh = got[h2["x-request-id"]]
    assert mh.group(3) == "-" and mh.group(5).startswith("HEAD ") and mh.group(7) == "0"
    assert mh.group(8) == "-" and mh.group(9) == "-"  # absent headers
    assert "outcome=hit" in mh.group(10)
    assert got[h3["x-request-id"]].group(6) == "404"
    # the request time is the time the request came in, in UTC
    when = time.strptime(mt.group(4), "%d/%b/%Y:%H:%M:%S +0000")
    assert abs(time.mktime(when) - time.mktime(time.gmtime())) < 120


def test_x_cache_miss_then_hit_then_stale(mirror_factory, up, make_image, push):
    img = push(make_image(1103), up, "library/xcache", "v1")
    m = mirror_factory([up], revalidate_after="0s")
    mark = up.mark()
    s, h, _ = get(m, "/v2/library/xcache/manifests/v1")
    assert s == 200 and h["x-cache"] == "MISS"
    assert count(since(up, mark), method="GET", kind="manifests") == 1
    mark = up.mark()
    s, h, _ = get(m, "/v2/library/xcache/manifests/" + img.digest)
    assert s == 200 and h["x-cache"] == "HIT"
    assert since(up, mark) == []
    s, h, _ = get(m, "/v2/library/xcache/tags/list")
    assert s == 200 and h["x-cache"] in ("MISS", "HIT")
    layer = img.layer_digests[0]
    s, h, _ = get(m, f"/v2/library/xcache/blobs/{layer}", accept=False)
    assert s == 200 and h["x-cache"] in ("MISS", "FILL")
    mark = up.mark()
    s, h, _ = get(m, f"/v2/library/xcache/blobs/{layer}", accept=False)
    assert s == 200 and h["x-cache"] == "HIT"
    assert since(up, mark) == []
    # the upstream is gone: the tag is answered from the cache, and says so
    up.stop()
    s, h, _ = get(m, "/v2/library/xcache/manifests/v1")
    assert s == 200 and h["x-cache"] == "STALE" and h["docker-content-digest"] == img.digest
    assert m.entries()[-1].cache == "stale"
    # answers with no cache behind them carry none
    s, h, _ = get(m, "/v2/")
    assert s == 200 and "x-cache" not in h and re.fullmatch(r"[0-9a-f]{16}", h["x-request-id"])


def test_hosted_answers_carry_no_x_cache(mirror_factory, up):
    m = mirror_factory([up], extra={"hosted": ["team/*"]})
    s, h, _ = get(m, "/v2/team/none/manifests/v1")
    assert s == 404 and "x-cache" not in h and h["x-request-id"]


def test_forwarded_for_is_believed_from_trusted_proxies_only(mirror_factory, up):
    plain = mirror_factory([up], extra={"log": {"format": "json"}})
    behind = mirror_factory([up], extra={"log": {"format": "json",
                                                 "trusted_proxies": ["127.0.0.0/8", "::1"]}})
    xff = [("X-Forwarded-For", "1.1.1.1, 203.0.113.9"), ("X-Forwarded-For", "198.51.100.7"),
           ("X-Request-Id", "from-the-proxy-42")]
    s, h, _ = raw_request(plain, "GET", "/v2/", xff)
    assert s == 200 and h["x-request-id"] != "from-the-proxy-42"
    e = access(plain)[-1]
    assert e["client"] == "127.0.0.1" and e["request_id"] == h["x-request-id"]

    s, h, _ = raw_request(behind, "GET", "/v2/", xff)
    assert s == 200 and h["x-request-id"] == "from-the-proxy-42"
    e = access(behind)[-1]
    # the rightmost entry the trusted proxy wrote; the ones a client sent are not believed
    assert e["client"] == "198.51.100.7" and e["peer"] == "127.0.0.1"
    assert e["request_id"] == "from-the-proxy-42"
    # a chain of trusted hops: the leftmost is the client; a malformed id is replaced
    s, h, _ = raw_request(behind, "GET", "/v2/", [("X-Forwarded-For", "127.0.0.5, 127.0.0.9"),
                                                  ("X-Request-Id", "bad id!")])
    assert s == 200 and re.fullmatch(r"[0-9a-f]{16}", h["x-request-id"])
    assert access(behind)[-1]["client"] == "127.0.0.5"
    s, h, _ = raw_request(behind, "GET", "/v2/", [("X-Forwarded-For", "unknown")])
    assert access(behind)[-1]["client"] == "127.0.0.1"  # no address: the peer stands


def test_wrong_passwords_count_by_the_client_behind_a_trusted_proxy(mirror_factory, up,
                                                                    tmp_dir):
    m = mirror_factory([up], extra={"auth": {"htpasswd": make_users(tmp_dir, ALICE),
                                             "max_failures": 2},
                                    "log": {"trusted_proxies": ["127.0.0.1/32"]}})
    def wrong(i):  # fresh each time: a wrong password already judged is not judged again
        return ("Authorization", basic("alice", f"nope{i}")["Authorization"])
    for i in range(2):
        s, _, _ = raw_request(m, "GET", "/v2/", [wrong(i), ("X-Forwarded-For", "203.0.113.1")])
        assert s == 401
    s, h, _ = raw_request(m, "GET", "/v2/", [wrong(9), ("X-Forwarded-For", "203.0.113.1")])
    assert s == 429 and int(h["retry-after"]) >= 1
    # another client behind the same proxy is not locked out with it
    s, _, _ = raw_request(m, "GET", "/v2/", [("Authorization", basic(*ALICE)["Authorization"]),
                                             ("X-Forwarded-For", "203.0.113.2")])
    assert s == 200
    assert "from 203.0.113.1" in m.log_text()


def test_probes_and_metrics_are_left_out_unless_asked_for(mirror_factory, up):
    quiet = mirror_factory([up], extra={"log": {"format": "json"}})
    loud = mirror_factory([up], extra={"log": {"format": "json", "access_probes": True}})
    off = mirror_factory([up], extra={"log": {"format": "json", "access": False}})
    paths = ["/healthz", "/livez", "/readyz", "/metrics", "/readyz?verbose"]
    for m in (quiet, loud, off):
        for p in paths:
            get(m, p, accept=False)
        assert get(m, "/v2/")[0] == 200
    # each line is written once its answer is out, by the loop that answered it: wait for them
    # all, in any order (requests on different connections may be answered by different loops)
    wait_until(lambda: "/v2/" in [x["target"] for x in access(quiet)], what="quiet's /v2/")
    assert [x["target"] for x in access(quiet)] == ["/v2/"]
    wait_until(lambda: all(p in [x["target"] for x in access(loud)] for p in paths + ["/v2/"]),
               what="every line of loud")
    assert {x["target"] for x in access(loud)} == set(paths + ["/v2/"])
    assert access(off) == []
    assert any(x.get("msg", "").startswith("regcache ") for x in json_lines(off))


def test_a_client_that_hangs_up_is_noted(mirror_factory, up):
    """A request waiting on a stuck upstream whose client goes away: logged with its note."""
    import socket
    from switchproxy import SwitchProxy
    proxy = SwitchProxy(up.port, mode="hang")
    try:
        m = mirror_factory([{"name": "docker.io", "url": proxy.url}],
                           extra={"log": {"format": "json"}})
        with socket.create_connection(("127.0.0.1", m.port), timeout=5) as s:
            s.sendall(b"GET /v2/library/stuck/manifests/v1 HTTP/1.1\r\nHost: m\r\n"
                      b"User-Agent: leaver\r\n\r\n")
            wait_until(lambda: proxy.held() >= 1, what="the upstream request to hang")
        gone = wait_until(lambda: [x for x in access(m) if x["user_agent"] == "leaver"],
                          what="the access line of the client that left")
        assert gone[0]["note"] == "client-gone" and gone[0]["status"] == 0, gone
        assert gone[0]["upstream"] == "docker.io"
    finally:
        proxy.stop()
