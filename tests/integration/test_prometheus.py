# SPDX-License-Identifier: Apache-2.0
"""The metrics with the ecosystem's own tools: Debian's promtool checks the alerting rules and
runs their unit tests, and a real Prometheus server scrapes a running mirror while a script
pulls through it. PromQL through Prometheus' HTTP API must then show what the pulls did:
hits, misses, upstream requests (against the upstream's access log), pulled and served bytes,
and the pull budget the upstream announced; the alerting rules evaluate without error on the
real series, and a low budget makes its alert pending."""

import os
import re
import shutil
import subprocess
import time

import pytest

import procs
from faultproxy import FaultProxy
from helpers import get, since, wait_until
from mirror import REPO_ROOT, request
from prometheus import PROMETHEUS, PROMTOOL, Prometheus

RULES = os.path.join(REPO_ROOT, "packaging", "prometheus", "regcache.rules.yml")
RULE_TESTS = os.path.join(REPO_ROOT, "tests", "prometheus", "regcache.rules.test.yml")
SCRAPE_EXAMPLE = os.path.join(REPO_ROOT, "packaging", "prometheus", "prometheus.yml.example")
ALERTS = ["RegcacheDown", "RegcacheDiskFullIn4Days", "RegcacheStoreNearMaxSize",
          "RegcacheStoreOverMaxSize", "RegcacheUpstreamDown", "RegcachePullBudgetLow",
          "RegcacheHitRatioFalling", "RegcacheGCFailing", "RegcacheGCNotSucceeding"]

pytestmark = pytest.mark.skipif(not (os.access(PROMETHEUS, os.X_OK) and os.access(PROMTOOL, os.X_OK)),
                                reason="Debian's prometheus package is not installed")


def promtool(*args, cwd=None):
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


# -- the rules, with promtool --------------------------------------------------------------------
def test_promtool_accepts_the_rules():
    r = promtool("check", "rules", RULES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in r.stdout, r.stdout


def test_every_alert_has_for_severity_and_annotations():
    import yaml
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert sorted(r["alert"] for r in rules) == sorted(ALERTS)
    for r in rules:
        assert re.fullmatch(r"\d+[smh]", r.get("for", "")), r["alert"]
        assert r["labels"]["severity"] in ("critical", "warning", "info"), r["alert"]
        assert {"summary", "description"} <= set(r["annotations"]), r["alert"]
        assert "$labels.instance" in r["annotations"]["summary"], r["alert"]


def test_promtool_rule_unit_tests_pass_and_catch_a_broken_rule(tmp_dir):
    """The unit tests feed synthetic series and expect each alert at the right times only.
    They pass on the rules as shipped, and fail on a copy whose upstream-down alert waits 1
    minute instead of 5 (so they test behaviour, not only syntax)."""
    r = promtool("test", "rules", RULE_TESTS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout

    # the same tests against a broken copy, laid out like the tree (rule_files is relative)
    os.makedirs(os.path.join(tmp_dir, "packaging", "prometheus"))
    os.makedirs(os.path.join(tmp_dir, "tests", "prometheus"))
    shutil.copy(RULE_TESTS, os.path.join(tmp_dir, "tests", "prometheus"))
    with open(RULES) as f:
        text = f.read()
    broken = text.replace("expr: regcache_upstream_up == 0\n        for: 5m",
                          "expr: regcache_upstream_up == 0\n        for: 1m")
    assert broken != text
    with open(os.path.join(tmp_dir, "packaging", "prometheus", "regcache.rules.yml"), "w") as f:
        f.write(broken)
    r = promtool("test", "rules", os.path.join(tmp_dir, "tests", "prometheus",
                                               os.path.basename(RULE_TESTS)))
    assert r.returncode != 0, r.stdout
    assert "RegcacheUpstreamDown" in r.stdout + r.stderr


def test_scrape_config_example_is_valid(tmp_dir):
    """prometheus.yml.example passes `promtool check config` (its rule_files pointed at the
    rules in this tree) and loads the rules."""
    with open(SCRAPE_EXAMPLE) as f:
        text = f.read()
    assert "/usr/share/regcache/prometheus/regcache.rules.yml" in text
    path = os.path.join(tmp_dir, "prometheus.yml")
    with open(path, "w") as f:
        f.write(text.replace("/usr/share/regcache/prometheus/regcache.rules.yml", RULES))
    r = promtool("check", "config", path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in r.stdout, r.stdout
    assert "job_name: regcache" in text  # RegcacheDown matches up{job="regcache"}


# -- a real Prometheus scraping a mirror ---------------------------------------------------------
@pytest.fixture
def proxy(up):
    """A FaultProxy in front of `up` (the mirror's docker.io): it relays everything and adds
    Docker Hub's ratelimit-* headers to each answer."""
    p = FaultProxy(up.port)
    yield p
    p.stop()


@pytest.fixture
def prom_factory(tmp_dir, request):
    made = []

    def make(targets, **kw):
        p = Prometheus(os.path.join(tmp_dir, f"prometheus{len(made)}"), targets, **kw)
        made.append(p)
        return p.start()

    yield make
    for p in made:
        if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
            print(f"\n--- prometheus log tail ({p.log_path}) ---\n"
                  + "\n".join(p.log_text().splitlines()[-20:]))
        p.stop()


def hub_headers(remaining):
    return [("RateLimit-Limit", "100;w=21600"), ("RateLimit-Remaining", f"{remaining};w=21600")]


def rule_metric_names():
    """The metric names the alerting rules' expressions read (`up` included)."""
    import yaml
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    names = set()
    for g in doc["groups"]:
        for r in g["rules"]:
            names |= set(re.findall(r"\b(?:regcache|registry|process)_[a-z_]+|\bup\b", r["expr"]))
    return names


def active(prom):
    """Pending or firing alerts, less RegcacheDiskFullIn4Days: a few seconds of the free space
    of a filesystem that other tests write to, extrapolated over 4 days, may well predict it
    full (the rule's 6 h window and `for: 1h` are what make it mean something)."""
    return [a for a in prom.alerts() if a["labels"]["alertname"] != "RegcacheDiskFullIn4Days"]


def access_log_bytes(up):
    """(method, status, body bytes) of each line of the upstream's access log."""
    out = []
    with open(up.log_path, errors="replace") as f:
        for line in f:
            m = re.match(r'^\S+ \S+ \S+ \[[^\]]+\] "(\S+) (\S+) HTTP/[\d.]+" (\d{3}) (\S+)', line)
            if m:
                out.append((m.group(1), m.group(2), int(m.group(3)),
                            int(m.group(4)) if m.group(4).isdigit() else 0))
    return out


def test_prometheus_scrapes_a_mirror_and_promql_shows_the_pulls(up, proxy, mirror_factory,
                                                               prom_factory, make_image, push):
    """Prometheus scrapes the mirror's metrics listener every second, with the shipped rules
    loaded. Every counter starts at 0. After a cold pull of an image (manifest by tag, then
    config and layers), the same pull warm, and a HEAD of the manifest and of a layer, PromQL
    returns: hits and misses per type; upstream GETs and HEADs per status class equal to the
    upstream's access log; pulled bytes equal to the manifest and blob sizes; bytes served
    from the upstream and from the cache; the budget of 100 with 76 left that the upstream
    (through the proxy) announced. Every rule evaluates without error on the real series and
    none is pending. A later answer announcing 5 left puts RegcachePullBudgetLow in pending;
    an upstream answering 503 is marked down and puts RegcacheUpstreamDown in pending."""
    img = push(make_image(1101, (96 * 1024, 40 * 1024)), up, "library/promtest", "v1")
    other = push(make_image(1102, (8 * 1024,)), up, "library/promtest", "v2")
    proxy.extra_headers = hub_headers(76)
    metrics_port = procs.free_port()
    prom = prom_factory([f"127.0.0.1:{metrics_port}"], rule_files=[RULES])
    mark = up.mark()
    m = mirror_factory([{"name": "docker.io", "url": proxy.url}], revalidate_after="1h",
                       extra={"metrics": {"listen": f"127.0.0.1:{metrics_port}"}})

    # what the metrics listener serves passes promtool's own lint
    s, h, text, _ = request(metrics_port, "GET", "/metrics")
    assert s == 200 and h["content-type"] == "text/plain; version=0.0.4; charset=utf-8", (s, h)
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # every series starts at 0
    prom.wait_scrape_after(time.time())
    for family in ("registry_proxy_requests_total", "registry_proxy_hits_total",
                   "registry_proxy_misses_total", "registry_proxy_pulled_bytes_total"):
        assert prom.values(family, "type") == {"blob": 0, "manifest": 0}, family
    for family in ("regcache_upstream_requests_total", "regcache_upstream_bytes_total",
                   "regcache_served_bytes_total", "regcache_fill_joins_total",
                   "regcache_gc_evicted_bytes_total", "regcache_upstream_429_total"):
        rows = prom.query(family)
        assert rows and all(v == 0 for _, v in rows), (family, rows)
    assert prom.value('regcache_upstream_ratelimit_limit{upstream="docker.io"}') == 0
    assert prom.value('regcache_upstream_up{upstream="docker.io"}') == 1
    assert prom.value("regcache_build_info") == 1

    # the pulls: cold, warm, and two HEADs
    repo = "library/promtest"
    blobs = img.blob_digests
    for _ in range(2):
        s, _, body = get(m, f"/v2/{repo}/manifests/v1")
        assert s == 200 and body == img.raw
        for d in blobs:
            s, _, body = get(m, f"/v2/{repo}/blobs/{d}", accept=False)
            assert s == 200 and body == img.blobs[d]
    assert get(m, f"/v2/{repo}/manifests/v1", method="HEAD")[0] == 200
    assert get(m, f"/v2/{repo}/blobs/{blobs[-1]}", method="HEAD", accept=False)[0] == 200
    reqs = since(up, mark)  # settled: what the upstream answered
    t_done = time.time()
    prom.wait_scrape_after(t_done)

    n = len(blobs)
    want = {  # PromQL -> value
        'registry_proxy_requests_total{type="manifest"}': 3,
        'registry_proxy_hits_total{type="manifest"}': 2,
        'registry_proxy_misses_total{type="manifest"}': 1,
        'registry_proxy_requests_total{type="blob"}': 2 * n + 1,
        'registry_proxy_hits_total{type="blob"}': n + 1,
        'registry_proxy_misses_total{type="blob"}': n,
        'registry_proxy_pulled_bytes_total{type="manifest"}': len(img.raw),
        'registry_proxy_pulled_bytes_total{type="blob"}': sum(len(img.blobs[d]) for d in blobs),
        'regcache_served_bytes_total{source="upstream"}':
            len(img.raw) + sum(len(img.blobs[d]) for d in blobs),
        'regcache_served_bytes_total{source="cache"}':
            len(img.raw) + sum(len(img.blobs[d]) for d in blobs),
        'sum(registry_http_requests_total{handler="blob",method="get",code="200"})': 2 * n,
        'sum(registry_http_requests_total{handler="manifest",method="head",code="200"})': 1,
        'regcache_upstream_ratelimit_limit{upstream="docker.io"}': 100,
        'regcache_upstream_ratelimit_remaining{upstream="docker.io"}': 76,
        'regcache_upstream_ratelimit_window_seconds{upstream="docker.io"}': 21600,
        'regcache_cached_manifests': 1,
        'regcache_cached_tags': 1,
        'regcache_cached_blobs': n,
        'regcache_fills_in_flight{type="blob"}': 0,
        'sum(registry_http_in_flight_requests)': 0,
    }
    # the upstream's access log, GETs and HEADs by status class (the token dance's 401s too)
    for method in ("GET", "HEAD"):
        by_class = {}
        for mth, _, st in reqs:
            if mth == method:
                by_class[f"{st // 100}xx"] = by_class.get(f"{st // 100}xx", 0) + 1
        assert method == "HEAD" or by_class.get("2xx") == 1 + n, (method, reqs)
        for cls in ("2xx", "3xx", "4xx", "5xx"):
            want[f'sum(regcache_upstream_requests_total{{upstream="docker.io",'
                 f'method="{method.lower()}",code="{cls}"}})'] = by_class.get(cls, 0)
    want['sum(regcache_upstream_requests_total{code="none"})'] = 0
    got = {q: prom.wait_value(q, v, timeout=10) for q, v in want.items()}
    assert got == {q: float(v) for q, v in want.items()}, \
        {q: (got[q], v) for q, v in want.items() if got[q] != v}

    # the bodies the upstream sent for the mirror's requests (its access log's byte counts)
    sent = sum(b for mth, _, st, b in access_log_bytes(up)[mark:] if mth == "GET" and st == 200)
    assert prom.value('regcache_upstream_bytes_total{upstream="docker.io"}') == sent
    assert prom.value("sum(rate(registry_proxy_hits_total[1m])) > 0") is not None

    # every series the rules read is one the mirror exports (a rule on a missing name would
    # never fire, and no error would say so)
    exported = set(prom.api("label/__name__/values"))
    assert rule_metric_names() - exported == set()

    # the rules evaluate on the real series without error, and none is pending or firing
    wait_until(lambda: all(r.get("lastEvaluation", "").startswith("2") for r in prom.rules()),
               timeout=10, what="every rule evaluated")
    rules = prom.rules()
    assert sorted(r["name"] for r in rules) == sorted(ALERTS)
    assert [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"] == []
    assert active(prom) == []

    # the upstream announces 5 left on the next answer: the budget alert becomes pending
    proxy.extra_headers = hub_headers(5)
    assert get(m, f"/v2/{repo}/manifests/v2")[2] == other.raw
    assert prom.wait_value('regcache_upstream_ratelimit_remaining{upstream="docker.io"}', 5) == 5

    def budget_alert():
        return [a for a in prom.alerts() if a["labels"]["alertname"] == "RegcachePullBudgetLow"]

    alerts = wait_until(budget_alert, timeout=10, what="RegcachePullBudgetLow pending")
    assert len(alerts) == 1
    a = alerts[0]
    assert a["state"] == "pending"  # for: 5m
    assert a["labels"]["upstream"] == "docker.io" and a["labels"]["severity"] == "warning"
    assert a["labels"]["instance"] == f"127.0.0.1:{metrics_port}"
    assert float(a["value"]) == 0.05
    assert "5%" in a["annotations"]["description"]
    assert [x["labels"]["alertname"] for x in active(prom)] == ["RegcachePullBudgetLow"]

    # the upstream answers 503 to everything: a cold tag marks it down, and the down alert
    # becomes pending for it
    proxy.answer = lambda method, path: (
        (503, [("Content-Type", "application/json")],
         b'{"errors":[{"code":"UNAVAILABLE","message":"maintenance"}]}')
        if path.startswith("/v2/") else None)
    pmark = len(proxy.requests())
    t_down = time.time()
    assert get(m, f"/v2/{repo}/manifests/v3")[0] >= 500
    assert prom.wait_value('regcache_upstream_up{upstream="docker.io"}', 0) == 0
    assert prom.value('regcache_upstream_state_since_timestamp_seconds{upstream="docker.io"}') \
        >= int(t_down)

    def down_alert():
        return [a for a in prom.alerts() if a["labels"]["alertname"] == "RegcacheUpstreamDown"]

    alerts = wait_until(down_alert, timeout=10, what="RegcacheUpstreamDown pending")
    assert [(a["state"], a["labels"]["upstream"], a["labels"]["severity"]) for a in alerts] == \
        [("pending", "docker.io", "warning")]
    # every 503 the proxy answered is counted (background probes of the down upstream may add
    # some while this waits, so both sides are read afresh each time)
    def counted_503s():
        answered = sum(1 for _, _, outcome in proxy.requests()[pmark:] if outcome == 503)
        counted = prom.value('sum(regcache_upstream_requests_total{code="5xx"})')
        return answered >= 1 and counted == answered and (counted, answered)

    wait_until(counted_503s, timeout=15, what="the 503s counted as 5xx upstream answers")
    assert sorted(x["labels"]["alertname"] for x in active(prom)) == \
        ["RegcachePullBudgetLow", "RegcacheUpstreamDown"]
