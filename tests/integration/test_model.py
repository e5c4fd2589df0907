# SPDX-License-Identifier: Apache-2.0
"""A model-based stateful test of the pull-through cache (hypothesis.stateful).

The real mirror (build/regcache, or REGCACHE_BIN) runs against the real upstream (docker-registry
with token auth) through a LateProxy (a SwitchProxy whose held requests go through late when the
route comes back). Hypothesis draws sequences of steps: pull a tag (1-3 times) or a digest, move
a tag upstream (push another image to it), take the upstream down (proxy "refuse", "429",
"hang", or the registry stopped), bring it back, hang the upstream for one pull of a cached tag
and bring it back before the HEAD gives up, restart the mirror on its storage, run `regcache
gc` while it serves, let time pass. After every step the outcome is checked against a small
model of the world:

- upstream: which image each tag points at, which manifests the repository holds by digest,
  and whether it is reachable;
- mirror: which digests of each tag it may have seen last (one, except when a revalidation left
  hanging may have finished in the background), which manifests it stores, and whether it may
  believe the upstream down.

Checks, per step: what the client got (status, Docker-Content-Digest = sha256 of the body =
the expected digest, Content-Type, spec error bodies, the request log's outcome `stale` exactly
for answers from the cache on an upstream failure); what the upstream was asked since the
previous step (its access log: manifest HEADs and GETs by reference, 401s and `GET /v2/` left
out; no blob requests at all); and, after every step, that the SQLite index and the store agree
(every tag row names a digest the mirror got for that tag, with its media type, whose file is
in the store and hashes to its name). After a restart every tag the mirror had fetched has its
row with the digest it last saw.

Settings that keep expectations decidable: `revalidate_after: 0s` (every pull of a cached tag
revalidates), `cache.revalidate_timeout: 1s`, `timeouts.first_byte: 3s`, `cache.ttl: 1h` (a GC
run during the test evicts nothing, so GC steps check that a run beside the daemon disturbs
nothing). Keys the binary under test does not know (an older build) are left out, and with them
the "hang" steps, which need them to finish in bounded time.

Knobs: REGCACHE_MODEL_SEED (default 20261201), REGCACHE_MODEL_EXAMPLES and REGCACHE_MODEL_STEPS
(defaults 9 and 24; 3 examples when REGCACHE_BIN names an ASan build), REGCACHE_MODEL_SHRINK=1
(shrink a failure to a minimal sequence; slow, off by default), REGCACHE_MODEL_REPRODUCE=
"VERSION:BLOB" (replays the `@reproduce_failure('VERSION', b'BLOB')` a failure prints). A
failure prints the seed, the step sequence (`step 3: pull_tag {'tag': 't1', 'times': 2}` lines)
with what each step saw and the mirror's log tail.
"""

import dataclasses
import hashlib
import os
import re
import sqlite3
import time
from collections import Counter

import yaml
from hypothesis import HealthCheck, Phase, given, note, reproduce_failure, seed, settings
from hypothesis.control import current_build_context
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import images
from helpers import ACCEPT_HEADER, error_codes
from lateproxy import LateProxy
from mirror import LOG_RE, REGCACHE, Mirror, regcache, request, wait_settled
from upstream import Upstream

SEED = int(os.environ.get("REGCACHE_MODEL_SEED", "20261201"))
ASAN = "asan" in " ".join(REGCACHE)
EXAMPLES = int(os.environ.get("REGCACHE_MODEL_EXAMPLES", "3" if ASAN else "9"))
STEPS = int(os.environ.get("REGCACHE_MODEL_STEPS", "24"))
SHRINK = os.environ.get("REGCACHE_MODEL_SHRINK") == "1"
# Examples starting later than this many seconds into the test are left out (conftest's
# per-test limit must not cut a slow run short).
BUDGET = min(180.0, float(os.environ.get("REGCACHE_TEST_TIMEOUT", "240")) - 50)
REPRODUCE = os.environ.get("REGCACHE_MODEL_REPRODUCE")  # "VERSION:BLOB" of @reproduce_failure

UPSTREAM = "docker.io"
TAGS = ("t1", "t2")
REVALIDATE_TIMEOUT = 1.0  # cache.revalidate_timeout
FIRST_BYTE = 3.0          # timeouts.first_byte
PROBE = 1.0               # the health probe's interval: clamp(revalidate_after = 0, 1 s, 30 s)
# Bounds for answers that wait on a hung upstream (the bugs they catch cost 30 s: low_speed).
HUNG_HIT_BOUND = 12.0
HUNG_MISS_BOUND = 15.0

DOWN_RE = re.compile(r"upstream %s: down \(" % re.escape(UPSTREAM))
UP_RE = re.compile(r"upstream %s: up again" % re.escape(UPSTREAM))


# -- the world shared by the examples of one test: upstream, proxy, images -----------------------
def _config_key_known(tmp_dir, section, key, value):
    """Whether the binary under test accepts `section.key` (check-config names unknown keys)."""
    path = os.path.join(tmp_dir, f"probe-{section}-{key}.yml")
    with open(path, "w") as f:
        yaml.safe_dump({"listen": "127.0.0.1:1", "storage": os.path.join(tmp_dir, "probe"),
                        section: {key: value}}, f)
    return regcache("check-config", "-c", path).returncode == 0


@dataclasses.dataclass
class PoolImage:
    image: images.Image
    digests: tuple  # every manifest the push puts in the repository: the top one and children

    @property
    def digest(self):
        return self.image.digest


class World:
    def __init__(self, tmp_dir, token_server):
        self.dir = tmp_dir
        self.examples = 0
        self.revalidate_timeout = _config_key_known(tmp_dir, "cache", "revalidate_timeout", "1s")
        self.first_byte = _config_key_known(tmp_dir, "timeouts", "first_byte", "3s")
        self.negative_ttl = _config_key_known(tmp_dir, "cache", "negative_ttl", "0s")
        self.up = Upstream(os.path.join(tmp_dir, "up"), token_server, "registry.docker.io")
        self.up.start()
        self.proxy = LateProxy(self.up.port)
        # the mirror asks nothing for a 429's Retry-After: short, so that it has passed once the
        # upstream is brought back (bring_back waits it out)
        self.proxy.retry_after = "1"
        self.pool = []
        specs = [("docker", False), ("oci", False), ("docker", True)]
        for i, (fmt, multi) in enumerate(specs):
            img = images.build_image(os.path.join(tmp_dir, f"img{i}"), 7100 + i, (1024,), fmt,
                                     multi)
            self.pool.append(PoolImage(img, (img.digest,) + (tuple(m.digest for m in
                                                                     img.manifests)
                                                               if multi else ())))
        # a manifest no repository upstream holds (pulls by its digest get 404)
        never = images.build_image(os.path.join(tmp_dir, "never"), 7199, (1024,), "oci")
        self.never = never.digest
        self.media = {}
        for p in self.pool:
            self.media[p.digest] = p.image.media_type
            for m in p.image.manifests:
                self.media[m.digest] = m.media_type
        self.media[never.digest] = never.media_type
        # digests a step may pull: every manifest of the pool and one never pushed
        self.digests = sorted({d for p in self.pool for d in p.digests} | {never.digest})

    def close(self):
        self.proxy.stop()
        if self.up.proc:
            self.up.stop()


# -- outcomes -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    """One legitimate answer to a step: the client's status, the digest served (None for an
    error), whether it is an answer from the cache on an upstream failure, the upstream
    manifest requests it costs, and the model's change when it is the one that happened."""
    status: int
    digest: str = None
    stale: bool = False
    upstream: Counter = dataclasses.field(default_factory=Counter)
    codes: tuple = ()
    apply: object = None
    why: str = ""

    def describe(self):
        up = ", ".join(f"{m} {r} x{n}" for (m, r), n in sorted(self.upstream.items())) or "nothing"
        what = self.digest[:19] if self.digest else "/".join(self.codes) or "-"
        return f"{self.status} {what}{' stale' if self.stale else ''}, upstream: {up} ({self.why})"


def _counter(*pairs):
    return Counter({p: 1 for p in pairs})


def short(d):
    return d[:19] if d else str(d)


class MirrorModel(RuleBasedStateMachine):
    world = None  # set on a subclass per test

    def __init__(self):
        super().__init__()
        w = self.world
        w.examples += 1
        self.n = w.examples
        self.repo = f"model/e{self.n}"
        w.proxy.set_mode("pass")
        if not w.up.running:
            w.up.start()
        cache = {"ttl": "1h", "gc_interval": "24h"}
        if w.negative_ttl:
            # no negative cache: the model expects every 404 asked upstream (test_budget.py
            # checks that 404s are remembered)
            cache["negative_ttl"] = "0s"
        timeouts = {"shutdown_grace": "3s"}
        if w.revalidate_timeout:
            cache["revalidate_timeout"] = f"{REVALIDATE_TIMEOUT:g}s"
        if w.first_byte:
            timeouts["first_byte"] = f"{FIRST_BYTE:g}s"
        self.mirror = Mirror(os.path.join(w.dir, f"mirror{self.n}"),
                             [{"name": UPSTREAM, "url": w.proxy.url}], revalidate_after="0s",
                             extra={"cache": cache, "timeouts": timeouts})
        self.db_path = os.path.join(self.mirror.storage, "regcache.db")
        self.log_start = 0
        self.mirror.start()
        # the model of the upstream
        self.mode = "pass"          # pass | refuse | hang | 429 | stopped
        self.up_tags = {}           # tag -> digest it points at upstream (absent: never pushed)
        self.up_digests = set()     # manifests the repository holds (pulls by digest find them)
        # the model of the mirror
        self.seen = {}              # tag -> {digests the mirror may hold as the tag's latest}
        self.history = {}           # tag -> every digest the mirror got for the tag
        self.cached = set()         # manifests in the mirror's store
        self.health = "up"          # up | down | unknown: what the mirror may believe
        self.pending = {}           # tag -> when its revalidation was left to the hanging proxy
        self.outage_log = 0         # the mirror's log size when the outage began
        self.mark = self._settle_upstream()
        self.proxy_mark = len(w.proxy.requests())
        note(f"example {self.n}: repo {self.repo}, seed {SEED}, features: revalidate_timeout="
             f"{w.revalidate_timeout} first_byte={w.first_byte}")

    # -- plumbing ---------------------------------------------------------------------------------
    def teardown(self):
        w = self.world
        problems = []
        w.proxy.set_mode("pass")
        if self.mirror.proc is not None:
            status = self.mirror.stop(timeout=15)
            if status != 0:
                problems.append(f"regcache exited with {status} after SIGTERM at teardown")
        if not w.up.running:
            w.up.start()
        if problems:
            self.fail("; ".join(problems))

    def fail(self, msg):
        tail = "\n".join(self.mirror.log_text().splitlines()[-40:])
        proxy = self.world.proxy.requests()[self.proxy_mark - 20 if self.proxy_mark > 20 else 0:]
        raise AssertionError(f"{msg}\n--- model: mode={self.mode} health={self.health} "
                             f"up_tags={ {t: short(d) for t, d in self.up_tags.items()} } "
                             f"seen={ {t: sorted(map(short, s)) for t, s in self.seen.items()} } "
                             f"pending={sorted(self.pending)}\n--- proxy log tail: {proxy}\n"
                             f"--- regcache log tail ({self.mirror.log_path}) ---\n{tail}")

    def check(self, cond, msg):
        if not cond:
            self.fail(msg)

    def _settle_upstream(self):
        return len(wait_settled(self.world.up.requests, quiet=0.25))

    def upstream_since_mark(self):
        """Manifest requests the upstream answered since the last step, as a Counter of
        (method, reference); blob requests fail the step (nothing here pulls a blob)."""
        reqs = wait_settled(self.world.up.requests, quiet=0.25)
        new, self.mark = reqs[self.mark:], len(reqs)
        got = Counter()
        for method, path, status in new:
            p = path.split("?", 1)[0]
            if status == 401 or p in ("/v2/", "/v2"):
                continue
            if "/blobs/" in p:
                self.fail(f"the upstream was asked for a blob: {method} {path} {status}")
            if "/manifests/" in p:
                got[(method, p.rsplit("/", 1)[1])] += 1
            else:
                self.fail(f"unexpected upstream request {method} {path} {status}")
        return got

    def proxy_since_mark(self):
        reqs = self.world.proxy.requests()
        new, self.proxy_mark = reqs[self.proxy_mark:], len(reqs)
        return new

    def remark(self):
        """After a push: what the push itself asked is not the mirror's."""
        self.mark = self._settle_upstream()

    def log_entries(self):
        out = []
        for line in self.mirror.log_text().splitlines():
            m = LOG_RE.search(line)
            if m:
                out.append((m.group(2), m.group(3), int(m.group(4)), m.group(7)))
        return out

    def health_lines(self, since=None):
        """The last upstream transition the running mirror logged (after byte offset `since`
        of its log): "down", "up" or None."""
        text = self.mirror.log_text()[self.log_start if since is None else since:]
        last = None
        for line in text.splitlines():
            if DOWN_RE.search(line):
                last = "down"
            elif UP_RE.search(line):
                last = "up"
        return last

    def wait_up(self, timeout):
        """After the upstream answers again: waits (bounded) until a mirror that logged it down
        logs it up again; returns the last transition logged."""
        deadline = time.monotonic() + timeout
        last = self.health_lines()
        while last == "down" and time.monotonic() < deadline:
            time.sleep(0.1)
            last = self.health_lines()
        return last

    # -- the checks every step makes --------------------------------------------------------------
    def get(self, ref):
        path = f"/v2/{self.repo}/manifests/{ref}"
        before = sum(1 for e in self.log_entries() if e[1] == path)
        t0 = time.monotonic()
        status, hdrs, body, _ = request(self.mirror.port, "GET", path, {"Accept": ACCEPT_HEADER},
                                        timeout=40)
        took = time.monotonic() - t0
        # the request's log line follows the response
        entry = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            mine = [e for e in self.log_entries() if e[1] == path]
            if len(mine) > before:
                entry = mine[before]
                break
            time.sleep(0.02)
        self.check(entry is not None, f"no request log line for GET {path}")
        return status, hdrs, body, entry[3], took

    def judge(self, what, allowed, status, hdrs, body, outcome, upstream_got):
        """Finds the allowed outcome that happened; fails with every one of them otherwise."""
        digest = None
        if status == 200:
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            self.check(hdrs.get("docker-content-digest") == digest,
                       f"{what}: Docker-Content-Digest {hdrs.get('docker-content-digest')} but "
                       f"the body hashes to {digest}")
            self.check(hdrs.get("content-type") == self.world.media.get(digest),
                       f"{what}: Content-Type {hdrs.get('content-type')}, stored media type "
                       f"{self.world.media.get(digest)}")
        codes = ()
        if status != 200:
            try:
                codes = tuple(error_codes(body))
            except AssertionError as e:
                self.fail(f"{what}: {status} without a spec error body: {e}")
        if status == 429:  # the upstream's own answer, passed on
            self.check("TOOMANYREQUESTS" in codes and hdrs.get("retry-after"),
                       f"{what}: 429 with codes {codes}, Retry-After {hdrs.get('retry-after')}")
        stale = outcome == "stale"
        upstream_got = +upstream_got
        for o in allowed:
            status_ok = o.status == status or (o.status == "5xx" and 500 <= status < 600) or \
                (o.status == "429|5xx" and (status == 429 or 500 <= status < 600))
            if not status_ok or o.digest != digest or +o.upstream != upstream_got:
                continue
            if o.codes and not set(o.codes) & set(codes):
                continue
            if status == 200 and o.stale != stale:
                continue
            if status == 200 and not stale and outcome not in ("hit", "miss", "fill"):
                continue
            note(f"  -> {o.describe()}")
            if o.apply:
                o.apply()
            return o
        got = ", ".join(f"{m} {r} x{n}" for (m, r), n in sorted(upstream_got.items())) or "nothing"
        self.fail(f"{what}: got {status} {short(digest) or '/'.join(codes)} (log outcome "
                  f"{outcome}), upstream asked: {got}; legitimate outcomes:\n  "
                  + "\n  ".join(o.describe() for o in allowed))

    # -- the model's expectations ---------------------------------------------------------------
    def _learn(self, tag, digest):
        def apply():
            self.seen[tag] = {digest}
            self.history.setdefault(tag, set()).add(digest)
            self.cached.add(digest)
        return apply

    def _unreachable_error(self, why):
        if self.mode == "429":
            return Outcome("429|5xx", codes=(), why=why)
        return Outcome("5xx", why=why)

    def expect_tag(self, tag):
        u = self.up_tags.get(tag)
        seen = self.seen.get(tag, set())
        out = []
        if self.mode == "pass":
            if seen:
                for s in sorted(seen):
                    cost = _counter(("HEAD", tag)) if s == u else _counter(("HEAD", tag),
                                                                             ("GET", tag))
                    out.append(Outcome(200, u, upstream=cost, apply=self._learn(tag, u),
                                       why=f"revalidated, mirror had {short(s)}"))
                if self.health != "up":
                    for s in sorted(seen):
                        out.append(Outcome(200, s, stale=True, apply=self._learn(tag, s),
                                           why="mirror still believes the upstream down"))
            elif u:
                out.append(Outcome(200, u, upstream=_counter(("GET", tag)),
                                   apply=self._learn(tag, u), why="cold miss"))
            else:
                out.append(Outcome(404, upstream=_counter(("GET", tag)),
                                   codes=("MANIFEST_UNKNOWN",), why="no such tag upstream"))
        else:
            if seen:
                for s in sorted(seen):
                    out.append(Outcome(200, s, stale=True, apply=self._learn(tag, s),
                                       why=f"upstream {self.mode}: served stale"))
            else:
                out.append(self._unreachable_error(f"upstream {self.mode}, never cached"))
        return out

    def expect_digest(self, digest):
        if digest in self.cached:
            return [Outcome(200, digest, why="cached by digest")]
        if self.mode != "pass":
            return [self._unreachable_error(f"upstream {self.mode}, digest never cached")]
        if digest in self.up_digests:
            return [Outcome(200, digest, upstream=_counter(("GET", digest)),
                            apply=lambda: self.cached.add(digest), why="cold miss by digest")]
        return [Outcome(404, upstream=_counter(("GET", digest)), codes=("MANIFEST_UNKNOWN",),
                        why="no such manifest upstream")]

    def wait_stored(self, digest):
        """A manifest just fetched is answered before its file is written: waits for the file
        (bounded), so that the next step does not join the write in progress."""
        path = self.mirror.file_for(digest)
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.check(os.path.exists(path), f"manifest {digest} fetched but not stored in 10 s")
        time.sleep(0.05)

    # -- rules ------------------------------------------------------------------------------------
    def _pull_tag(self, tag):
        allowed = self.expect_tag(tag)
        believed = self.health_lines() if self.world.first_byte else None
        started = time.monotonic()
        status, hdrs, body, outcome, took = self.get(tag)
        note(f"pull {tag} ({self.mode}, health {self.health}): {status} {outcome} "
             f"{short(hdrs.get('docker-content-digest'))} in {took:.2f}s")
        proxy = [r for r in self.proxy_since_mark() if "/manifests/" in r[1]]
        o = self.judge(f"pull {self.repo}:{tag}", allowed, status, hdrs, body, outcome,
                       self.upstream_since_mark())
        if self.mode == "hang":
            bound = HUNG_HIT_BOUND if status == 200 else HUNG_MISS_BOUND
            self.check(took < bound, f"pull {tag} with the upstream hung took {took:.1f}s "
                       f"(bound {bound}s)")
            if any(m == "HEAD" and p.endswith("/manifests/" + tag) for m, p, _ in proxy):
                self.pending[tag] = started
        if self.mode != "pass" and believed == "down" and self.world.revalidate_timeout \
                and status == 200:
            # a mirror that knows the upstream down answers cached tags without asking it
            self.check(not proxy, f"pull {tag}: the mirror had logged the upstream down but "
                       f"still asked it: {proxy}")
        if self.mode == "pass" and o.upstream:
            self.health = "up"  # it had an answer from the upstream
        if o.upstream.get(("GET", tag)) and o.digest:
            self.wait_stored(o.digest)

    @initialize(images_=st.tuples(*[st.sampled_from([0, 1, 2, None]) for _ in TAGS]))
    def seed_upstream(self, images_):
        """The tags upstream when the example starts (None: the tag does not exist)."""
        for tag, which in zip(TAGS, images_):
            if which is not None:
                self._push(tag, which)
        self.remark()

    @rule(tag=st.sampled_from(TAGS), times=st.integers(min_value=1, max_value=3))
    def pull_tag(self, tag, times):
        """Pulls by tag, `times` in a row (each one checked)."""
        for _ in range(times):
            self._pull_tag(tag)

    @rule(i=st.integers(min_value=0, max_value=99))
    def pull_digest(self, i):
        digest = self.world.digests[i % len(self.world.digests)]
        allowed = self.expect_digest(digest)
        status, hdrs, body, outcome, took = self.get(digest)
        note(f"pull @{short(digest)} ({self.mode}): {status} {outcome} in {took:.2f}s")
        self.proxy_since_mark()
        o = self.judge(f"pull {self.repo}@{digest}", allowed, status, hdrs, body, outcome,
                       self.upstream_since_mark())
        if self.mode == "hang":
            bound = HUNG_HIT_BOUND if status == 200 else HUNG_MISS_BOUND
            self.check(took < bound, f"pull @{digest} with the upstream hung took {took:.1f}s")
        if o.upstream and o.digest:
            self.wait_stored(o.digest)

    @precondition(lambda self: self.mode != "stopped")
    @rule(tag=st.sampled_from(TAGS), which=st.integers(min_value=0, max_value=2))
    def move_tag(self, tag, which):
        """Pushes a pool image to the tag upstream (the same image again changes nothing)."""
        got = self.upstream_since_mark()
        self.check(not got, f"before the push the upstream was asked {dict(got)}")
        self._push(tag, which)
        self.remark()

    def _push(self, tag, which):
        p = self.world.pool[which]
        images.push(dataclasses.replace(p.image), self.world.up, self.repo, tag)
        note(f"push {tag}: {short(self.up_tags.get(tag))} -> {short(p.digest)}")
        self.up_tags[tag] = p.digest
        self.up_digests.update(p.digests)

    @rule(mode=st.sampled_from(["hang", "refuse", "429"]))
    def outage(self, mode):
        if mode == "hang" and not self.world.first_byte:
            mode = "refuse"  # a build without timeouts.first_byte would wait 30 s per step
        self.world.proxy.set_mode(mode)
        if self.mode == "stopped":
            self.world.up.start()
        note(f"outage: {self.mode} -> {mode}")
        if self.mode == "pass":
            self.outage_log = len(self.mirror.log_text())
        if not (self.mode == "hang" and mode == "hang"):
            self.pending.clear()  # released hung requests meet the new mode: they fail
        self.mode = mode
        if self.health == "up":
            self.health = "unknown"  # it learns on its next upstream request
        self.after_quiet_step("outage")

    @precondition(lambda self: self.mode != "stopped")
    @rule()
    def stop_upstream(self):
        self.world.up.stop()
        self.world.proxy.set_mode("pass")  # the proxy relays to a closed port: resets
        note(f"stop upstream ({self.mode} -> stopped)")
        if self.mode == "pass":
            self.outage_log = len(self.mirror.log_text())
        self.mode = "stopped"
        if self.health == "up":
            self.health = "unknown"
        self.pending.clear()
        self.after_quiet_step("stop upstream")

    @precondition(lambda self: self.mode != "pass")
    @rule()
    def bring_back(self):
        w = self.world
        before = self.mode
        pending = dict(self.pending)
        released = time.monotonic()
        if self.mode == "stopped":
            w.up.start()
        w.proxy.set_mode("pass")
        self.mode = "pass"
        if before == "429":
            time.sleep(1.2)  # the last 429's Retry-After (1 s) passes
        last = self.wait_up(10 + 3 * PROBE) if w.first_byte else None
        note(f"bring back from {before}: mirror's last transition {last}, pending {pending}")
        self.check(last != "down", "the upstream answers again but the mirror did not log it up "
                   f"within {10 + 3 * PROBE:g}s")
        since = self.health_lines(max(self.outage_log, self.log_start))
        if not w.first_byte or last == "up" or since is None and self.outage_log >= self.log_start:
            self.health = "up"  # up again, or never saw it fail (and did not restart since)
        else:
            self.health = "unknown"
        # Requests held by the hanging proxy are relayed now ("late" in its log), whether the
        # mirror still waits for them or not. A tag revalidation still waiting may then update
        # the tag: a GET of it follows only when its digest moved.
        time.sleep(0.3)
        got = self.upstream_since_mark()
        late = Counter()
        for method, path, outcome in self.proxy_since_mark():
            if outcome == "late" and "/manifests/" in path:
                late[(method, path.split("?", 1)[0].rsplit("/", 1)[1])] += 1
        allowed = Counter(late)
        for tag, since in pending.items():
            # the mirror waits for a HEAD up to first_byte: after that it fetches nothing
            if any(s != self.up_tags.get(tag) for s in self.seen.get(tag, ())) and \
                    released - since < FIRST_BYTE + 1.0:
                allowed[("GET", tag)] += 1
        for key, n in got.items():
            self.check(n <= allowed[key], f"bring back: the upstream was asked {key[0]} {key[1]} "
                       f"x{n}; held requests relayed late: {dict(late)}, revalidations left "
                       f"hanging: {sorted(pending)}")
        note(f"  late: {dict(late)}, upstream: {dict(got)}")
        for tag in pending:
            u = self.up_tags.get(tag)
            head, get = got.get(("HEAD", tag), 0), got.get(("GET", tag), 0) - late[("GET", tag)]
            if get > 0:
                self.check(head, f"bring back: GET {tag} without its HEAD")
                self.seen[tag] = {u}
                self.history.setdefault(tag, set()).add(u)
                self.cached.add(u)
                self.wait_stored(u)
            elif head:  # the answer may have come too late for the mirror
                self.seen[tag] = self.seen.get(tag, set()) | {u}
                self.history.setdefault(tag, set()).add(u)
        self.pending.clear()

    @precondition(lambda self: self.mode == "pass" and self.world.first_byte and self.seen)
    @rule(tag=st.sampled_from(TAGS), move=st.sampled_from([None, 0, 1, 2]))
    def hang_blip(self, tag, move):
        """The upstream hangs for one pull of a cached tag (answered from the cache after
        revalidate_timeout, its HEAD left hanging), the tag may move meanwhile, and the upstream
        is back before the HEAD's first_byte runs out."""
        if tag not in self.seen:
            tag = sorted(self.seen)[0]
        self.outage("hang")
        self._pull_tag(tag)
        if move is not None:
            self.move_tag(tag, move)
        self.bring_back()

    @rule()
    def restart_mirror(self):
        got = self.upstream_since_mark()
        self.check(not got, f"before the restart the upstream was asked {dict(got)}")
        status = self.mirror.stop(timeout=15)
        self.check(status == 0, f"regcache exited with {status} after SIGTERM")
        # Flushed at exit: every tag the mirror fetched has its row, with the digest it saw last.
        rows = self.tag_rows()
        for tag, seen in self.seen.items():
            self.check(tag in rows, f"after a clean stop the index lacks tag {tag} "
                       f"(the mirror served {sorted(map(short, seen))})")
            self.check(rows[tag][0] in seen, f"after a clean stop tag {tag} is "
                       f"{short(rows[tag][0])!r} in the index; the mirror last saw one of "
                       f"{sorted(map(short, seen))}")
        self.check(set(rows) <= set(self.seen), f"index rows for tags never fetched: {rows}")
        if self.world.revalidate_timeout:
            # the upstream's state as recorded: the last transition this process logged
            state = self.upstream_state()
            want = self.health_lines() or "up"
            self.check(state == want, f"after a clean stop the index records the upstream "
                       f"{state}; the mirror last logged it {want}")
        self.log_start = len(self.mirror.log_text())
        self.mirror.start()
        note(f"restart ({self.mode}): tags {sorted(rows)}")
        self.pending.clear()
        if self.mode != "pass" or self.health != "up":
            self.health = "unknown"
        self.mark = self._settle_upstream()
        self.proxy_since_mark()

    @rule()
    def run_gc(self):
        r = regcache("gc", "-c", self.mirror.config_path, timeout=60)
        note(f"gc: {r.stdout.strip()} {r.stderr.strip()}")
        self.check(r.returncode == 0, f"regcache gc exited {r.returncode}: {r.stderr}")
        m = re.search(r"gc: evicted (\d+) of (\d+) blobs", r.stdout)
        self.check(m is not None, f"gc printed {r.stdout!r}")
        self.check(m.group(1) == "0", f"gc with ttl 1h evicted something: {r.stdout}")
        self.after_quiet_step("gc")

    @rule()
    def time_passes(self):
        time.sleep(1.5 * PROBE)
        note(f"time passes ({self.mode})")
        self.after_quiet_step("time passes")

    def after_quiet_step(self, what):
        """A step without pulls: the upstream sees no manifest request, except that a
        revalidation left hanging may be released by a mode change and then fail."""
        got = self.upstream_since_mark()
        self.proxy_since_mark()
        self.check(not got, f"{what}: the upstream was asked {dict(got)} without any pull")

    # -- the index and the store agree, after every step -----------------------------------------
    def tag_rows(self):
        """tag -> (digest, media_type) from the SQLite index, opened read-only."""
        if not os.path.exists(self.db_path):
            return {}
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            rows = con.execute("SELECT tag, digest, media_type FROM tags WHERE upstream = ? "
                               "AND repo = ?", (UPSTREAM, self.repo)).fetchall()
            others = con.execute("SELECT count(*) FROM tags WHERE upstream != ? OR repo != ?",
                                 (UPSTREAM, self.repo)).fetchone()[0]
        finally:
            con.close()
        self.check(others == 0, f"the index holds {others} tags of other repositories")
        return {t: (d, mt) for t, d, mt in rows}

    def upstream_state(self):
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            row = con.execute("SELECT state FROM upstream_states WHERE upstream = ?",
                              (UPSTREAM,)).fetchone()
        finally:
            con.close()
        return row[0] if row else None

    @invariant()
    def index_agrees_with_store(self):
        for tag, (digest, media_type) in self.tag_rows().items():
            self.check(digest and media_type, f"index row for tag {tag}: digest {digest!r}, "
                       f"media type {media_type!r}")
            self.check(digest in self.history.get(tag, ()),
                       f"index row for tag {tag} names {short(digest)}, which the mirror never "
                       f"got for it (got {sorted(map(short, self.history.get(tag, ())))})")
            self.check(media_type == self.world.media.get(digest),
                       f"index row for tag {tag}: media type {media_type}, the manifest's is "
                       f"{self.world.media.get(digest)}")
            path = self.mirror.file_for(digest)
            self.check(os.path.exists(path), f"index row for tag {tag} names {digest}, which "
                       f"is not in the store")
            with open(path, "rb") as f:
                got = "sha256:" + hashlib.sha256(f.read()).hexdigest()
            self.check(got == digest, f"store file {path} hashes to {got}")


def drive(machine_cls, steps, settings_):
    """Runs machine_cls as hypothesis' stateful runner does, but with exactly `steps` steps per
    example (this hypothesis ends most early examples after a step or two, and every example
    here pays for fresh processes) and rules drawn by WEIGHTS. Each step is one draw, labelled,
    so a failure prints the sequence as `step 3: pull_tag {'tag': 't1', 'times': 2}` lines."""
    rules = sorted(machine_cls.rules(), key=lambda r: list(WEIGHTS).index(r.function.__name__))
    inits = sorted(machine_cls.initialize_rules(), key=lambda r: r.function.__name__)
    invariants = machine_cls.invariants()

    started = time.monotonic()
    ran = [0, 0]  # examples run, left out for want of time

    @settings_
    @given(st.data())
    def run(data):
        if time.monotonic() - started > BUDGET and not current_build_context().is_final:
            ran[1] += 1
            return  # past the time budget: the remaining examples are left out
        ran[0] += 1
        m = machine_cls()
        try:
            for r in inits:
                args = data.draw(st.fixed_dictionaries(r.arguments),
                                 label=f"initialize {r.function.__name__}")
                r.function(m, **args)
            for inv in invariants:
                inv.function(m)
            for i in range(steps):
                applicable = [r for r in rules if all(p(m) for p in r.preconditions)]
                # A weighted choice among the rules that apply. Hypothesis draws 0 for about
                # half of these: hashed with the step's number, equal draws pick varied rules.
                x = data.draw(st.integers(min_value=0, max_value=2**32 - 1))
                weights = [WEIGHTS[r.function.__name__] for r in applicable]
                h = hashlib.blake2b(f"{x}:{i}".encode(), digest_size=8).digest()
                x = int.from_bytes(h, "big") % sum(weights)
                for r, wgt in zip(applicable, weights):
                    if x < wgt:
                        break
                    x -= wgt
                args = data.draw(st.fixed_dictionaries(r.arguments))
                note(f"step {i + 1}: {r.function.__name__} {args}")
                t0 = time.monotonic()
                r.function(m, **args)
                note(f"  ({time.monotonic() - t0:.2f}s)")
                for inv in invariants:
                    inv.function(m)
        finally:
            m.teardown()

    run = seed(SEED)(run)
    if REPRODUCE:
        version, blob = REPRODUCE.split(":", 1)
        run = reproduce_failure(version, blob.encode())(run)
    run()
    print(f"model test: {ran[0]} examples run in {time.monotonic() - started:.0f}s"
          + (f", {ran[1]} left out past the {BUDGET:g}s budget" if ran[1] else ""))


# How often each rule is drawn, relative to the others that apply.
WEIGHTS = {"pull_tag": 36, "pull_digest": 10, "move_tag": 12, "outage": 10, "bring_back": 14,
           "hang_blip": 5, "stop_upstream": 3, "restart_mirror": 6, "time_passes": 3, "run_gc": 3}


def test_model(tmp_dir, token_server):
    world = World(tmp_dir, token_server)
    unknown = "unknown to the binary"
    print(f"model test: seed {SEED} (REGCACHE_MODEL_SEED), {EXAMPLES} examples of {STEPS} steps; "
          f"cache.revalidate_timeout {'on' if world.revalidate_timeout else unknown}, "
          f"timeouts.first_byte {'on' if world.first_byte else unknown + ': no hang steps'}")

    class Machine(MirrorModel):
        pass

    Machine.world = world
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if SHRINK else [])
    try:
        drive(Machine, STEPS, settings(max_examples=EXAMPLES, deadline=None, database=None,
                                       print_blob=True, phases=phases,
                                       suppress_health_check=list(HealthCheck)))
    finally:
        world.close()
