# SPDX-License-Identifier: Apache-2.0
"""A real Prometheus server (Debian's /usr/bin/prometheus) for a test: on 127.0.0.1 with a
throw-away config and TSDB directory, scraping the given targets every second (and evaluating
rule files every second), with PromQL through its HTTP API. stop() (or the fixture's teardown)
kills it; it is also in procs.ALL, so the session's clean-up kills a straggler.

    prom = Prometheus(dir, ["127.0.0.1:5001"], rule_files=[RULES]).start()
    prom.wait_scrape_after(time.time())      # a scrape that began after this moment
    prom.value('sum(registry_proxy_hits_total)')
"""

import json
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

import procs

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


class PromQLError(Exception):
    pass


class Prometheus:
    def __init__(self, directory, targets, job="regcache", scrape_interval="1s",
                 metrics_path="/metrics", rule_files=()):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.job = job
        self.config_path = os.path.join(directory, "prometheus.yml")
        self.log_path = os.path.join(directory, "prometheus.log")
        cfg = {
            "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                       "evaluation_interval": scrape_interval},
            "rule_files": [os.path.abspath(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "metrics_path": metrics_path,
                                "static_configs": [{"targets": list(targets)}]}],
        }
        with open(self.config_path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        self.proc = None

    def start(self, timeout=30):
        self.proc = procs.Proc([PROMETHEUS, f"--config.file={self.config_path}",
                                f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
                                f"--web.listen-address=127.0.0.1:{self.port}",
                                "--storage.tsdb.retention.time=1h"], self.log_path)
        procs.wait_for(lambda: procs.http_status(self.port, "/-/ready") == 200, timeout,
                       f"prometheus /-/ready on :{self.port}", proc=self.proc)
        return self

    def stop(self):
        if self.proc:
            self.proc.stop(timeout=10)
            self.proc = None

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- HTTP API -----------------------------------------------------------------------------
    def api(self, path, **params):
        """The `data` of one GET /api/v1/<path>; raises PromQLError on an API error."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                doc = json.load(resp)
        except urllib.error.HTTPError as e:
            doc = json.load(e)
        if doc.get("status") != "success":
            raise PromQLError(f"{path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, promql):
        """An instant query: [(labels without __name__, value)] for a vector, [({}, value)] for
        a scalar."""
        data = self.api("query", query=promql)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PromQLError(f"{promql}: a {data['resultType']}, not a vector")
        return [({k: v for k, v in r["metric"].items() if k != "__name__"},
                 float(r["value"][1])) for r in data["result"]]

    def value(self, promql):
        """The one value of a query, None when it returns nothing; fails if it returns more."""
        rows = self.query(promql)
        if not rows:
            return None
        if len(rows) > 1:
            raise AssertionError(f"{promql} returned {len(rows)} series: {rows}")
        return rows[0][1]

    def values(self, promql, label):
        """{value of label: value} over the series a query returns."""
        return {labels.get(label): v for labels, v in self.query(promql)}

    def last_scrape(self):
        """Unix time the latest successful scrape of the job began, None before the first."""
        return self.value(f'timestamp(up{{job="{self.job}"}} == 1)')

    def wait_scrape_after(self, t, timeout=20):
        """Waits for a successful scrape that began after unix time t; returns its time."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.last_scrape()
            if last is not None and last > t:
                return last
            time.sleep(0.2)
        targets = self.api("targets")["activeTargets"]
        raise AssertionError(f"no scrape after {t} within {timeout}s (last {last}); targets "
                             f"{[(x['scrapeUrl'], x['health'], x['lastError']) for x in targets]}")

    def wait_value(self, promql, want, timeout=15):
        """Polls a single-valued query until it equals want (floats compared to 1e-9 relative)
        or the deadline passes; returns the last value for the caller to assert on."""
        deadline = time.monotonic() + timeout
        v = None
        while time.monotonic() < deadline:
            v = self.value(promql)
            if v is not None and want is not None and math.isclose(v, want, rel_tol=1e-9):
                return v
            time.sleep(0.25)
        return v

    def rules(self):
        """Every loaded rule as a dict (name, health, lastError, state for alerts, ...)."""
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]

    def alerts(self):
        """Active alerts (pending or firing) as dicts with labels, state, value."""
        return self.api("alerts")["alerts"]
