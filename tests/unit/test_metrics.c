/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for metrics/: the exposition text (escaping, histograms, every series at 0 from
 * the start), the figures the instrumentation moves, and what the page reads. */
#include <stdlib.h>

#include "check.h"
#include "config/config.h"
#include "http/http.h"
#include "metrics/impl.h"
#include "metrics/metrics.h"

static struct buf text;

static const char *expose(void)
{
    buf_reset(&text);
    CHECK_EQ_INT(metrics_expose(&text), 0);
    CHECK_EQ_INT(buf_terminate(&text), 0);
    return text.data ? text.data : "";
}

/* The value of the sample line that starts with series (name and labels exactly), or -1. */
static double sample(const char *series)
{
    const char *t = expose();
    size_t n = strlen(series);
    for (const char *p = t; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

#define CHECK_SAMPLE(series, v)                                                                    \
    do {                                                                                           \
        double got_ = sample(series);                                                              \
        check_total++;                                                                             \
        if (got_ < (v)-1e-9 || got_ > (v) + 1e-9)                                                  \
            CHECK_FAIL_("%s is %g, not %g", series, got_, (double)(v));                            \
    } while (0)

static void test_escape(void)
{
    struct buf b;
    buf_init(&b, 1024);
    CHECK_EQ_INT(metrics_escape_label(&b, "a\\b\"c\nd"), 0);
    CHECK_EQ_INT(buf_terminate(&b), 0);
    CHECK_STR(b.data, "a\\\\b\\\"c\\nd");
    buf_free(&b);
}

static void test_histogram(void)
{
    struct metrics_histogram h = {0};
    const struct metrics_buckets *d = &metrics__duration_buckets;
    metrics__observe(&h, d, 0);
    metrics__observe(&h, d, 5000); /* on the bound: in le="0.005" */
    metrics__observe(&h, d, 5001);
    metrics__observe(&h, d, 70000000); /* past 60 s: only in +Inf */
    struct buf b;
    buf_init(&b, 1 << 16);
    CHECK_EQ_INT(metrics__histogram(&b, "x_seconds", "k=\"v\"", &h, d, 1000000), 0);
    CHECK_EQ_INT(buf_terminate(&b), 0);
    CHECK_CONTAINS(b.data, "x_seconds_bucket{k=\"v\",le=\"0.005\"} 2\n");
    CHECK_CONTAINS(b.data, "x_seconds_bucket{k=\"v\",le=\"0.01\"} 3\n");
    CHECK_CONTAINS(b.data, "x_seconds_bucket{k=\"v\",le=\"60\"} 3\n");
    CHECK_CONTAINS(b.data, "x_seconds_bucket{k=\"v\",le=\"+Inf\"} 4\n");
    CHECK_CONTAINS(b.data, "x_seconds_sum{k=\"v\"} 70.010001\n");
    CHECK_CONTAINS(b.data, "x_seconds_count{k=\"v\"} 4\n");
    /* +Inf is the last bucket line, the buckets are in order and never decrease */
    const char *inf = strstr(b.data, "le=\"+Inf\"");
    const char *sum = strstr(b.data, "_sum");
    CHECK(inf && sum && inf < sum);
    long last = -1;
    int ordered = 1, lines = 0;
    for (const char *p = strstr(b.data, "_bucket"); p; p = strstr(p + 1, "_bucket")) {
        long v = strtol(strchr(p, '}') + 2, NULL, 10);
        ordered &= v >= last;
        last = v;
        lines++;
    }
    CHECK(ordered);
    CHECK_EQ_INT(lines, 14); /* distribution's 13 bounds and +Inf */

    /* without labels; the size buckets as the distribution registry spells them */
    struct metrics_histogram s = {0};
    metrics__observe(&s, &metrics__size_buckets, 1048577);
    buf_reset(&b);
    CHECK_EQ_INT(metrics__histogram(&b, "y_bytes", NULL, &s, &metrics__size_buckets, 1), 0);
    CHECK_EQ_INT(buf_terminate(&b), 0);
    CHECK_CONTAINS(b.data, "y_bytes_bucket{le=\"1.048576e+06\"} 0\n");
    CHECK_CONTAINS(b.data, "y_bytes_bucket{le=\"2.097152e+06\"} 1\n");
    CHECK_CONTAINS(b.data, "y_bytes_bucket{le=\"2.147483648e+09\"} 1\n");
    CHECK_CONTAINS(b.data, "y_bytes_sum 1048577\n");
    CHECK_CONTAINS(b.data, "y_bytes_count 1\n");
    buf_free(&b);
}

static void test_scaled(void)
{
    struct buf b;
    buf_init(&b, 4096);
    CHECK_EQ_INT(metrics__scaled(&b, "a", NULL, 1500000, 1000000), 0);
    CHECK_EQ_INT(metrics__scaled(&b, "b", NULL, 1000, 1000), 0);
    CHECK_EQ_INT(metrics__scaled(&b, "c", NULL, 1796186008203ull, 1000), 0);
    CHECK_EQ_INT(metrics__scaled(&b, "d", "x=\"1\"", 0, 1000), 0);
    CHECK_EQ_INT(metrics__scaled(&b, "e", NULL, 7, 1000000), 0);
    CHECK_EQ_INT(buf_terminate(&b), 0);
    CHECK_STR(b.data, "a 1.5\nb 1\nc 1796186008.203\nd{x=\"1\"} 0\ne 0.000007\n");
    buf_free(&b);
}

/* Every sample belongs to a family announced before it with # HELP and # TYPE. */
static void check_families(const char *t)
{
    char fam[128] = "", type[16] = "";
    int ok = 1, helped = 0;
    for (const char *p = t; *p;) {
        const char *eol = strchr(p, '\n');
        if (!eol) {
            ok = 0;
            break;
        }
        if (!strncmp(p, "# HELP ", 7)) {
            helped = 1;
        } else if (!strncmp(p, "# TYPE ", 7)) {
            ok &= helped;
            helped = 0;
            if (sscanf(p + 7, "%127s %15s", fam, type) != 2)
                ok = 0;
        } else {
            size_t n = strcspn(p, "{ ");
            size_t f = strlen(fam);
            int match = n == f && !strncmp(p, fam, f);
            if (!match && !strcmp(type, "histogram") && n > f && !strncmp(p, fam, f))
                match = !strncmp(p + f, "_bucket", n - f) || !strncmp(p + f, "_sum", n - f) ||
                        !strncmp(p + f, "_count", n - f);
            if (!match) {
                fprintf(stderr, "sample outside its family: %.*s\n", (int)(eol - p), p);
                ok = 0;
            }
        }
        p = eol + 1;
    }
    CHECK(ok);
}

static uint64_t fake_connections;

static void fake_source(void *ud, struct metrics_live *out)
{
    (void)ud;
    out->connections_open += fake_connections;
    out->blobs += 5;
}

static void test_registry(void)
{
    struct config cfg;
    config_defaults(&cfg);
    free(cfg.upstreams[0].name);
    cfg.upstreams[0].name = strdup("docker.io");
    cfg.upstreams[1].name = strdup("we\"ird\\name");
    cfg.upstreams[1].url = strdup("http://127.0.0.1:1");
    cfg.n_upstreams = 2;
    cfg.max_size_bytes = 1000;

    /* before init: nothing, and nothing breaks */
    struct http_request req = {0};
    metrics_http_started(&req);
    metrics_fill_joined(METRICS_BLOB);
    CHECK_EQ_INT(metrics_upstream_count(), 0);

    CHECK_EQ_INT(metrics_init(NULL, &cfg), 0);
    const char *t = expose();
    check_families(t);
    /* every series exists from the start, at 0 */
    CHECK_CONTAINS(t, "# TYPE registry_proxy_hits_total counter\n");
    CHECK_CONTAINS(t, "# TYPE registry_http_request_duration_seconds histogram\n");
    CHECK_CONTAINS(t, "# HELP registry_http_in_flight_requests ");
    CHECK_SAMPLE("registry_proxy_requests_total{type=\"blob\"}", 0);
    CHECK_SAMPLE("registry_proxy_hits_total{type=\"manifest\"}", 0);
    CHECK_SAMPLE("registry_proxy_misses_total{type=\"blob\"}", 0);
    CHECK_SAMPLE("registry_proxy_pulled_bytes_total{type=\"manifest\"}", 0);
    CHECK_SAMPLE("registry_http_requests_total{code=\"200\",handler=\"blob_upload_chunk\","
                 "method=\"head\"}",
                 0);
    CHECK_SAMPLE("registry_http_requests_total{code=\"200\",handler=\"referrers\",method=\"get\"}",
                 0);
    CHECK_SAMPLE("registry_http_request_duration_seconds_bucket{handler=\"tags\",method=\"get\","
                 "le=\"+Inf\"}",
                 0);
    CHECK_SAMPLE("registry_http_response_size_bytes_count{handler=\"catalog\"}", 0);
    CHECK_SAMPLE("registry_http_in_flight_requests{handler=\"base\"}", 0);
    CHECK_SAMPLE("regcache_upstream_requests_total{upstream=\"docker.io\",method=\"head\","
                 "code=\"5xx\"}",
                 0);
    CHECK_SAMPLE("regcache_upstream_up{upstream=\"we\\\"ird\\\\name\"}", 1);
    CHECK_SAMPLE("regcache_upstream_ratelimit_remaining{upstream=\"docker.io\"}", 0);
    CHECK_SAMPLE("regcache_store_max_bytes", 1000);
    CHECK_SAMPLE("regcache_gc_runs_total{result=\"failed\"}", 0);
    CHECK_SAMPLE("regcache_gc_evicted_bytes_total{reason=\"ttl\"}", 0);
    CHECK_SAMPLE("regcache_tls_handshakes_total{result=\"ok\"}", 0);
    CHECK_SAMPLE("regcache_fills_in_flight{type=\"manifest\"}", 0);
    CHECK_SAMPLE("regcache_build_info{version=\"" REGCACHE_VERSION "\"}", 1);
    CHECK(sample("process_start_time_seconds") > 1e9);
    CHECK(sample("process_open_fds") > 0);
    CHECK(sample("process_resident_memory_bytes") > 0);
    /* methods other than GET and HEAD appear only once seen */
    CHECK(!strstr(t, "method=\"put\""));

    /* a blob hit through the registry front */
    req.method = HTTP_METHOD_GET;
    req.method_name = "GET";
    req.handler = "blob";
    req.upstream = "docker.io";
    metrics_http_started(&req);
    CHECK_SAMPLE("registry_http_in_flight_requests{handler=\"blob\"}", 1);
    req.outcome = "hit";
    struct http_response_info info = {.status = 200, .body_bytes = 3000, .duration_us = 20000};
    metrics_http_finished(&req, &info);
    CHECK_SAMPLE("registry_http_in_flight_requests{handler=\"blob\"}", 0);
    CHECK_SAMPLE("registry_http_requests_total{code=\"200\",handler=\"blob\",method=\"get\"}", 1);
    CHECK_SAMPLE("registry_http_response_size_bytes_bucket{handler=\"blob\",le=\"2048\"}", 0);
    CHECK_SAMPLE("registry_http_response_size_bytes_bucket{handler=\"blob\",le=\"4096\"}", 1);
    CHECK_SAMPLE("registry_http_request_duration_seconds_bucket{handler=\"blob\",method=\"get\","
                 "le=\"0.01\"}",
                 0);
    CHECK_SAMPLE("registry_http_request_duration_seconds_bucket{handler=\"blob\",method=\"get\","
                 "le=\"0.025\"}",
                 1);
    CHECK_SAMPLE("registry_http_request_duration_seconds_sum{handler=\"blob\",method=\"get\"}",
                 0.02);
    CHECK_SAMPLE("registry_proxy_requests_total{type=\"blob\"}", 1);
    CHECK_SAMPLE("registry_proxy_hits_total{type=\"blob\"}", 1);
    CHECK_SAMPLE("registry_proxy_pushed_bytes_total{type=\"blob\"}", 3000);
    CHECK_SAMPLE("regcache_served_bytes_total{source=\"cache\"}", 3000);

    /* a manifest miss answered 404 by PUT-less method: counted under its own code and method */
    req.method = HTTP_METHOD_OTHER;
    req.method_name = "DELETE";
    req.handler = "manifest";
    req.outcome = "miss";
    metrics_http_started(&req);
    info.status = 405;
    info.body_bytes = 10;
    metrics_http_finished(&req, &info);
    CHECK_SAMPLE("registry_http_requests_total{code=\"405\",handler=\"manifest\","
                 "method=\"delete\"}",
                 1);
    CHECK_SAMPLE("registry_proxy_misses_total{type=\"manifest\"}", 1);
    CHECK_SAMPLE("regcache_served_bytes_total{source=\"upstream\"}", 10);
    /* a request outside the registry API (handler NULL) is not counted */
    req.handler = NULL;
    metrics_http_finished(&req, &info);
    CHECK_SAMPLE("registry_proxy_misses_total{type=\"manifest\"}", 1);
    /* a response never started: the flight ends, nothing is counted */
    req.handler = "tags";
    req.outcome = NULL;
    metrics_http_started(&req);
    info.status = 0;
    metrics_http_finished(&req, &info);
    CHECK_SAMPLE("registry_http_in_flight_requests{handler=\"tags\"}", 0);
    CHECK_SAMPLE("registry_http_request_duration_seconds_count{handler=\"tags\",method=\"get\"}",
                 0);

    /* upstreams */
    metrics_upstream_request("docker.io", 0, 200, 1000);
    metrics_upstream_request("docker.io", 1, 404, 1000);
    metrics_upstream_request("docker.io", 0, 0, 10000000);
    metrics_upstream_request("nowhere", 0, 200, 1); /* not configured: ignored */
    metrics_upstream_body("docker.io", METRICS_BLOB, 500);
    metrics_upstream_body("docker.io", -1, 20);
    CHECK_SAMPLE("regcache_upstream_requests_total{upstream=\"docker.io\",method=\"get\","
                 "code=\"2xx\"}",
                 1);
    CHECK_SAMPLE("regcache_upstream_requests_total{upstream=\"docker.io\",method=\"head\","
                 "code=\"4xx\"}",
                 1);
    CHECK_SAMPLE("regcache_upstream_requests_total{upstream=\"docker.io\",method=\"get\","
                 "code=\"none\"}",
                 1);
    CHECK_SAMPLE("regcache_upstream_request_duration_seconds_count{upstream=\"docker.io\"}", 3);
    CHECK_SAMPLE("regcache_upstream_bytes_total{upstream=\"docker.io\"}", 520);
    CHECK_SAMPLE("registry_proxy_pulled_bytes_total{type=\"blob\"}", 500);
    metrics_upstream_ratelimit("docker.io", 100, 76, 21600, 0);
    CHECK_SAMPLE("regcache_upstream_ratelimit_limit{upstream=\"docker.io\"}", 100);
    CHECK_SAMPLE("regcache_upstream_ratelimit_remaining{upstream=\"docker.io\"}", 76);
    CHECK_SAMPLE("regcache_upstream_ratelimit_window_seconds{upstream=\"docker.io\"}", 21600);
    metrics_upstream_ratelimit("docker.io", -1, -1, -1, 1); /* a bare 429 */
    CHECK_SAMPLE("regcache_upstream_ratelimit_limit{upstream=\"docker.io\"}", 100);
    CHECK_SAMPLE("regcache_upstream_ratelimit_remaining{upstream=\"docker.io\"}", 0);
    CHECK_SAMPLE("regcache_upstream_429_total{upstream=\"docker.io\"}", 1);
    CHECK(sample("regcache_upstream_last_429_timestamp_seconds{upstream=\"docker.io\"}") > 1e9);
    metrics_upstream_state("we\"ird\\name", 0, 1700000000000ull, "connection refused");
    CHECK_SAMPLE("regcache_upstream_up{upstream=\"we\\\"ird\\\\name\"}", 0);
    CHECK_SAMPLE("regcache_upstream_state_since_timestamp_seconds{upstream=\"we\\\"ird\\\\name\"}",
                 1700000000);

    struct metrics_upstream_view uv;
    CHECK_EQ_INT(metrics_upstream_count(), 2);
    CHECK_EQ_INT(metrics_upstream_view(0, &uv), 0);
    CHECK_STR(uv.name, "docker.io");
    CHECK_EQ_INT(uv.up, 1);
    CHECK_EQ_INT(uv.ratelimit_limit, 100);
    CHECK_EQ_INT(uv.ratelimit_remaining, 0);
    CHECK_EQ_U64(uv.responses_429, 1);
    CHECK(uv.last_429_ms > 0);
    CHECK_EQ_U64(uv.requests, 3);
    CHECK_EQ_U64(uv.bytes, 520);
    CHECK_EQ_INT(metrics_upstream_view(1, &uv), 0);
    CHECK_EQ_INT(uv.up, 0);
    CHECK_STR(uv.reason, "connection refused");
    CHECK_EQ_U64(uv.since_ms, 1700000000000ull);
    CHECK_EQ_INT(uv.ratelimit_limit, -1);
    CHECK_EQ_INT(metrics_upstream_view(2, &uv), -ENOENT);

    /* joins, GC runs */
    metrics_fill_joined(METRICS_MANIFEST);
    CHECK_SAMPLE("regcache_fill_joins_total{type=\"manifest\"}", 1);
    for (int i = 0; i < METRICS_GC_RUNS + 4; i++) {
        struct metrics_gc_run run = {.started_ms = 1000 * (uint64_t)(i + 1),
                                     .duration_ms = 5,
                                     .ok = i != 3,
                                     .files = 1,
                                     .evicted_ttl_bytes = 10,
                                     .evicted_size_bytes = 1};
        snprintf(run.reason, sizeof(run.reason), "scheduled");
        metrics_gc_run(&run);
    }
    CHECK_SAMPLE("regcache_gc_runs_total{result=\"ok\"}", METRICS_GC_RUNS + 3);
    CHECK_SAMPLE("regcache_gc_runs_total{result=\"failed\"}", 1);
    CHECK_SAMPLE("regcache_gc_evicted_bytes_total{reason=\"ttl\"}", 10 * (METRICS_GC_RUNS + 3));
    CHECK_SAMPLE("regcache_gc_evicted_bytes_total{reason=\"size\"}", METRICS_GC_RUNS + 3);
    CHECK_SAMPLE("regcache_gc_last_run_timestamp_seconds", (METRICS_GC_RUNS + 4) + 0.005);

    /* figures read from their sources at each scrape */
    fake_connections = 3;
    CHECK_EQ_INT(metrics_add_source(fake_source, NULL), 0);
    CHECK_SAMPLE("regcache_connections_open", 3);
    fake_connections = 4;
    CHECK_SAMPLE("regcache_connections_open", 4);
    CHECK_SAMPLE("regcache_cached_blobs", 5);

    struct metrics_view v;
    metrics_view(&v);
    CHECK_EQ_U64(v.hits[METRICS_BLOB], 1);
    CHECK_EQ_U64(v.misses[METRICS_MANIFEST], 1);
    CHECK_EQ_U64(v.pulled_bytes[METRICS_BLOB], 500);
    CHECK_EQ_U64(v.served_cache_bytes, 3000);
    CHECK_EQ_U64(v.max_size_bytes, 1000);
    CHECK_EQ_U64(v.live.connections_open, 4);
    CHECK_EQ_U64(v.n_gc, METRICS_GC_RUNS);
    CHECK_EQ_U64(v.gc[0].started_ms, 1000 * (METRICS_GC_RUNS + 4)); /* newest first */
    CHECK_EQ_U64(v.gc[METRICS_GC_RUNS - 1].started_ms, 5000);
    CHECK(v.start_ms > 0);

    metrics_remove_source(fake_source, NULL);
    CHECK_SAMPLE("regcache_connections_open", 0);
    check_families(expose());
    metrics_free();
    CHECK_EQ_INT(metrics_upstream_count(), 0);
    buf_reset(&text);
    CHECK_EQ_INT(metrics_expose(&text), 0);
    CHECK_EQ_INT(text.len, 0);
    config_free(&cfg);
}

int main(void)
{
    buf_init(&text, METRICS_EXPOSITION_MAX);
    test_escape();
    test_histogram();
    test_scaled();
    test_registry();
    buf_free(&text);
    CHECK_DONE();
}
