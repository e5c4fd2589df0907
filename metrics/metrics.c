/* SPDX-License-Identifier: Apache-2.0 */
/* The registry of figures: plain counters updated on the loop thread, one atomic measured on
 * the thread pool, and the exposition built from them. */
#include "metrics/metrics.h"
#include "rules/rules.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "config/config.h"
#include "http/http.h"
#include "metrics/impl.h"
#include "util/clock.h"

/* The distribution registry's handler names (its route names as its metrics spell them),
 * and ours for the referrers API. */
static const char *const handler_names[] = {
    "base", "catalog", "manifest", "blob", "tags", "blob_upload", "blob_upload_chunk", "referrers"};
#define N_HANDLERS (sizeof(handler_names) / sizeof(handler_names[0]))

/* Methods as distribution labels them (lower case); anything else is "other". The first two
 * are pre-created. */
static const char *const method_names[] = {"get",   "head",   "put",  "post",
                                           "patch", "delete", "other"};
#define N_METHODS (sizeof(method_names) / sizeof(method_names[0]))
#define N_PRECREATED_METHODS 2

#define CODE_MIN 100
#define N_CODES 500 /* 100..599 */

/* upstream answers by class; "none": no answer */
static const char *const class_names[] = {"2xx", "3xx", "4xx", "5xx", "none"};
#define N_CLASSES (sizeof(class_names) / sizeof(class_names[0]))

static const char *const type_names[METRICS_N_TYPES] = {"blob", "manifest"};

struct up_metrics {
    char *name;
    char *label;                     /* upstream="<escaped name>" */
    uint64_t requests[2][N_CLASSES]; /* [head][class] */
    uint64_t bytes;
    struct metrics_histogram latency;
    int64_t rl_limit, rl_remaining, rl_window_s; /* -1: never announced */
    uint64_t rl_seen_ms;
    uint64_t n_429, last_429_ms;
    int up;
    uint64_t since_ms; /* 0: no change since start */
    char reason[METRICS_REASON_MAX];
};

struct source {
    metrics_source_fn fn;
    void *ud;
};

/* What the HTTP front counts, written by one loop's thread only (each loop has its own set)
 * and read by the scrape on the first loop: summed there. */
struct front {
    /* registry_http_* */
    _Atomic uint64_t http_requests[N_HANDLERS][N_METHODS][N_CODES];
    struct metrics_histogram http_duration[N_HANDLERS][N_METHODS];
    struct metrics_histogram http_size[N_HANDLERS];
    _Atomic uint64_t started[N_HANDLERS], finished[N_HANDLERS]; /* in flight: the difference */
    /* registry_proxy_* answered */
    _Atomic uint64_t proxy_requests[METRICS_N_TYPES], proxy_hits[METRICS_N_TYPES],
        proxy_misses[METRICS_N_TYPES], proxy_pushed[METRICS_N_TYPES];
    _Atomic uint64_t served_cache, served_upstream;
    _Atomic uint64_t responses; /* every response this loop finished */
};



struct registry {
    uv_loop_t *loop;
    char *storage;
    uint64_t max_size;
    uint64_t gc_interval_ms; /* cache.gc_interval */
    uint64_t start_ms;
    /* the front's figures, one set per loop (metrics_set_loop) */
    struct front *fronts;
    unsigned n_fronts;
    /* registry_proxy_* */
    uint64_t proxy_pulled[METRICS_N_TYPES];
    uint64_t fill_joins[METRICS_N_TYPES];
    uint64_t fill_resumes[METRICS_N_RESUMES];
    uint64_t *rule_denials; /* [0]: the default; [i]: rule i */
    size_t n_rules;
    struct up_metrics *ups;
    size_t n_ups;
    /* GC */
    uint64_t gc_ok, gc_failed, evicted_ttl, evicted_size, gc_last_ms, gc_last_ok_ms;
    uint64_t pinned_files, pinned_bytes; /* at the last successful run */
    uint64_t purged_files, purged_bytes;
    struct metrics_gc_run gc[METRICS_GC_RUNS]; /* a ring: gc_next is the oldest when full */
    size_t n_gc, gc_next;
    struct source sources[METRICS_MAX_SOURCES];
    size_t n_sources;
    /* the filesystem's free bytes, measured on the thread pool */
    _Atomic uint64_t fs_free;
    uv_timer_t fs_timer;
    uv_work_t fs_work;
    int fs_timer_on, fs_working;
};

static struct registry *reg;

static __thread unsigned loop_index; /* which front this thread counts in */

void metrics_set_loop(unsigned i)
{
    loop_index = i;
}

static struct front *front(void)
{
    return &reg->fronts[loop_index < reg->n_fronts ? loop_index : 0];
}

static uint64_t sum_of(size_t offset)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < reg->n_fronts; i++)
        v += metrics__get((const _Atomic uint64_t *)(const void *)((const char *)&reg->fronts[i] +
                                                                   offset));
    return v;
}
#define FRONT_SUM(field) sum_of(offsetof(struct front, field))

/* ---- the filesystem's free bytes, off the loop ---- */

static uint64_t measure_free(const char *path)
{
    struct statvfs sv;
    if (statvfs(path, &sv))
        return 0;
    return (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
}

static void fs_work(uv_work_t *w)
{
    struct registry *r = w->data;
    atomic_store(&r->fs_free, measure_free(r->storage));
}

static void fs_done(uv_work_t *w, int status)
{
    (void)status;
    struct registry *r = w->data;
    r->fs_working = 0;
}

static void on_fs_timer(uv_timer_t *t)
{
    struct registry *r = t->data;
    if (r->fs_working)
        return;
    r->fs_work.data = r;
    if (uv_queue_work(r->loop, &r->fs_work, fs_work, fs_done) == 0)
        r->fs_working = 1;
}

/* The last figure; a scrape before the first measurement came back measures it itself, once
 * (a statvfs), rather than say 0 bytes free. */
static uint64_t fs_free_now(void)
{
    uint64_t v = atomic_load(&reg->fs_free);
    if (!v && (v = measure_free(reg->storage)))
        atomic_store(&reg->fs_free, v);
    return v;
}

/* ---- life ---- */

int metrics_init(uv_loop_t *loop, const struct config *cfg)
{
    if (reg)
        return -EALREADY;
    struct registry *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->max_size = cfg->max_size_bytes;
    r->gc_interval_ms = cfg->gc_interval_ms;
    r->start_ms = metrics__process_start_ms();
    if (!r->start_ms)
        r->start_ms = clock_wall_ms();
    r->storage = strdup(cfg->storage ? cfg->storage : ".");
    r->n_fronts = config_workers(cfg);
    r->fronts = calloc(r->n_fronts, sizeof(*r->fronts));
    if (!r->fronts)
        goto nomem;
    r->ups = calloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof(*r->ups));
    r->n_rules = rules_count(cfg->rules);
    r->rule_denials = calloc(r->n_rules + 1, sizeof(uint64_t));
    if (!r->storage || !r->ups || !r->rule_denials)
        goto nomem;
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        struct up_metrics *u = &r->ups[i];
        struct buf b;
        buf_init(&b, 4096);
        if (buf_printf(&b, "upstream=\"") || metrics_escape_label(&b, cfg->upstreams[i].name) ||
            buf_append(&b, "\"", 1) || buf_terminate(&b) ||
            !(u->name = strdup(cfg->upstreams[i].name))) {
            buf_free(&b);
            r->n_ups = i + 1;
            goto nomem;
        }
        u->label = b.data;
        u->up = 1;
        u->rl_limit = u->rl_remaining = u->rl_window_s = -1;
        r->n_ups = i + 1;
    }
    if (metrics__sources_init(cfg))
        goto nomem;
    /* a first figure as soon as the loop runs (the storage exists by then), then every few
     * seconds, always off the loop */
    if (loop) {
        uv_timer_init(loop, &r->fs_timer);
        r->fs_timer.data = r;
        uv_timer_start(&r->fs_timer, on_fs_timer, 0, METRICS_FS_INTERVAL_MS);
        r->fs_timer_on = 1;
    }
    reg = r;
    return 0;
nomem:
    reg = r;
    metrics_free();
    return -ENOMEM;
}

void metrics_shutdown(void)
{
    if (!reg || !reg->fs_timer_on)
        return;
    reg->fs_timer_on = 0;
    uv_timer_stop(&reg->fs_timer);
    uv_close((uv_handle_t *)&reg->fs_timer, NULL);
}

void metrics_free(void)
{
    struct registry *r = reg;
    if (!r)
        return;
    reg = NULL;
    metrics__sources_free();
    for (size_t i = 0; i < r->n_ups; i++) {
        free(r->ups[i].name);
        free(r->ups[i].label);
    }
    free(r->ups);
    free(r->fronts);
    free(r->rule_denials);
    free(r->storage);
    free(r);
}

/* ---- updates ---- */

static int handler_index(const char *name)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < N_HANDLERS; i++)
        if (strcmp(name, handler_names[i]) == 0)
            return (int)i;
    return -1;
}

static size_t method_index(const struct http_request *req)
{
    if (req->method == HTTP_METHOD_GET)
        return 0;
    if (req->method == HTTP_METHOD_HEAD)
        return 1;
    const char *m = req->method_name ? req->method_name : "";
    for (size_t i = 2; i < N_METHODS - 1; i++)
        if (strcasecmp(m, method_names[i]) == 0)
            return i;
    return N_METHODS - 1;
}

static struct up_metrics *up_of(const char *name)
{
    if (!reg || !name)
        return NULL;
    for (size_t i = 0; i < reg->n_ups; i++)
        if (strcmp(reg->ups[i].name, name) == 0)
            return &reg->ups[i];
    return NULL;
}

void metrics_http_started(const struct http_request *req)
{
    int h = handler_index(req->handler);
    if (reg && h >= 0)
        metrics__add(&front()->started[h], 1);
}

void metrics_proxy_request(enum metrics_type t, int hit)
{
    if (!reg || (unsigned)t >= METRICS_N_TYPES)
        return;
    struct front *f = front();
    metrics__add(&f->proxy_requests[t], 1);
    metrics__add(hit ? &f->proxy_hits[t] : &f->proxy_misses[t], 1);
}

void metrics_http_finished(const struct http_request *req, const struct http_response_info *info)
{
    if (!reg)
        return;
    struct front *f = front();
    metrics__add(&f->responses, 1);
    int h = handler_index(req->handler);
    if (h < 0)
        return;
    metrics__add(&f->finished[h], 1);
    size_t m = method_index(req);
    if (info->status >= CODE_MIN && info->status < CODE_MIN + N_CODES) {
        metrics__add(&f->http_requests[h][m][info->status - CODE_MIN], 1);
        metrics__observe(&f->http_duration[h][m], &metrics__duration_buckets, info->duration_us);
        metrics__observe(&f->http_size[h], &metrics__size_buckets, info->body_bytes);
    }
    /* the pull-through answers: what the cache said of them */
    const char *o = req->outcome;
    int type = !strcmp(req->handler, "blob")       ? METRICS_BLOB
               : !strcmp(req->handler, "manifest") ? METRICS_MANIFEST
                                                   : -1;
    if (!o || !req->upstream)
        return;
    int from_store = !strcmp(o, "hit") || !strcmp(o, "stale");
    int through = !strcmp(o, "miss") || !strcmp(o, "fill");
    if (from_store)
        metrics__add(&f->served_cache, info->body_bytes);
    else if (through)
        metrics__add(&f->served_upstream, info->body_bytes);
    if (type >= 0 && (from_store || through)) {
        metrics_proxy_request((enum metrics_type)type, from_store);
        metrics__add(&f->proxy_pushed[type], info->body_bytes);
    }
}

void metrics_fill_joined(enum metrics_type t)
{
    if (reg && (unsigned)t < METRICS_N_TYPES)
        reg->fill_joins[t]++;
}

void metrics_fill_resume(enum metrics_resume outcome)
{
    if (reg && (unsigned)outcome < METRICS_N_RESUMES)
        reg->fill_resumes[outcome]++;
}

void metrics_rule_denied(size_t rule)
{
    if (reg && rule <= reg->n_rules)
        reg->rule_denials[rule]++;
}

void metrics_upstream_request(const char *upstream, int head, long status, uint64_t latency_us)
{
    struct up_metrics *u = up_of(upstream);
    if (!u)
        return;
    size_t cls = status >= 200 && status < 600 ? (size_t)(status / 100 - 2) : N_CLASSES - 1;
    u->requests[head ? 1 : 0][cls]++;
    metrics__observe(&u->latency, &metrics__duration_buckets, latency_us);
}

void metrics_upstream_body(const char *upstream, int t, uint64_t bytes)
{
    struct up_metrics *u = up_of(upstream);
    if (!u)
        return;
    u->bytes += bytes;
    if (t >= 0 && t < METRICS_N_TYPES)
        reg->proxy_pulled[t] += bytes;
}

void metrics_upstream_ratelimit(const char *upstream, int64_t limit, int64_t remaining,
                                int64_t window_s, int is_429)
{
    struct up_metrics *u = up_of(upstream);
    if (!u)
        return;
    uint64_t now = clock_wall_ms();
    if (is_429 && remaining < 0)
        remaining = 0; /* a 429 says the budget is spent */
    if (limit >= 0)
        u->rl_limit = limit;
    if (remaining >= 0)
        u->rl_remaining = remaining;
    if (window_s >= 0)
        u->rl_window_s = window_s;
    if (limit >= 0 || remaining >= 0)
        u->rl_seen_ms = now;
    if (is_429) {
        u->n_429++;
        u->last_429_ms = now;
    }
}

void metrics_upstream_state(const char *upstream, int up, uint64_t since_ms, const char *reason)
{
    struct up_metrics *u = up_of(upstream);
    if (!u)
        return;
    u->up = up != 0;
    u->since_ms = since_ms;
    snprintf(u->reason, sizeof(u->reason), "%s", !up && reason ? reason : "");
}

void metrics_purged(uint64_t files, uint64_t bytes)
{
    if (!reg)
        return;
    reg->purged_files += files;
    reg->purged_bytes += bytes;
}

void metrics_gc_run(const struct metrics_gc_run *run)
{
    if (!reg)
        return;
    uint64_t end = run->started_ms + run->duration_ms;
    if (run->ok) {
        reg->gc_ok++;
        reg->evicted_ttl += run->evicted_ttl_bytes;
        reg->evicted_size += run->evicted_size_bytes;
        reg->gc_last_ok_ms = end;
        reg->pinned_files = run->pinned_files;
        reg->pinned_bytes = run->pinned_bytes;
    } else {
        reg->gc_failed++;
    }
    reg->gc_last_ms = end;
    reg->gc[reg->gc_next] = *run;
    reg->gc_next = (reg->gc_next + 1) % METRICS_GC_RUNS;
    if (reg->n_gc < METRICS_GC_RUNS)
        reg->n_gc++;
}

int metrics_add_source(metrics_source_fn fn, void *ud)
{
    if (!reg)
        return 0;
    if (reg->n_sources >= METRICS_MAX_SOURCES)
        return -ENOSPC;
    reg->sources[reg->n_sources++] = (struct source){fn, ud};
    return 0;
}

void metrics_remove_source(metrics_source_fn fn, void *ud)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n_sources; i++) {
        if (reg->sources[i].fn == fn && reg->sources[i].ud == ud) {
            memmove(&reg->sources[i], &reg->sources[i + 1],
                    (reg->n_sources - i - 1) * sizeof(reg->sources[0]));
            reg->n_sources--;
            return;
        }
    }
}

/* ---- reading ---- */

static void read_live(struct metrics_live *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; reg && i < reg->n_sources; i++)
        reg->sources[i].fn(reg->sources[i].ud, out);
}

void metrics_view(struct metrics_view *out)
{
    memset(out, 0, sizeof(*out));
    if (!reg)
        return;
    out->start_ms = reg->start_ms;
    for (int t = 0; t < METRICS_N_TYPES; t++) {
        out->requests[t] = FRONT_SUM(proxy_requests[t]);
        out->hits[t] = FRONT_SUM(proxy_hits[t]);
        out->misses[t] = FRONT_SUM(proxy_misses[t]);
        out->pulled_bytes[t] = reg->proxy_pulled[t];
        out->pushed_bytes[t] = FRONT_SUM(proxy_pushed[t]);
    }
    out->served_cache_bytes = FRONT_SUM(served_cache);
    out->served_upstream_bytes = FRONT_SUM(served_upstream);
    out->max_size_bytes = reg->max_size;
    out->fs_free_bytes = fs_free_now();
    read_live(&out->live);
    out->n_gc = reg->n_gc;
    for (size_t i = 0; i < reg->n_gc; i++) /* newest first */
        out->gc[i] = reg->gc[(reg->gc_next + METRICS_GC_RUNS - 1 - i) % METRICS_GC_RUNS];
}

size_t metrics_upstream_count(void)
{
    return reg ? reg->n_ups : 0;
}

int metrics_upstream_view(size_t i, struct metrics_upstream_view *out)
{
    memset(out, 0, sizeof(*out));
    if (!reg || i >= reg->n_ups)
        return -ENOENT;
    const struct up_metrics *u = &reg->ups[i];
    out->name = u->name;
    out->up = u->up;
    out->since_ms = u->since_ms;
    snprintf(out->reason, sizeof(out->reason), "%s", u->reason);
    out->ratelimit_limit = u->rl_limit;
    out->ratelimit_remaining = u->rl_remaining;
    out->ratelimit_window_s = u->rl_window_s;
    out->ratelimit_seen_ms = u->rl_seen_ms;
    out->responses_429 = u->n_429;
    out->last_429_ms = u->last_429_ms;
    for (int m = 0; m < 2; m++)
        for (size_t c = 0; c < N_CLASSES; c++)
            out->requests += u->requests[m][c];
    out->bytes = u->bytes;
    return 0;
}

/* ---- the exposition ---- */

static int expose_http(struct buf *out)
{
    char labels[128];
    TRY(metrics__family(out, "registry_http_requests_total", "counter",
                        "Total number of HTTP requests made."));
    for (size_t h = 0; h < N_HANDLERS; h++)
        for (size_t m = 0; m < N_METHODS; m++)
            for (size_t code = 0; code < N_CODES; code++) {
                uint64_t v = FRONT_SUM(http_requests[h][m][code]);
                int precreated = m < N_PRECREATED_METHODS && code + CODE_MIN == 200;
                if (!v && !precreated)
                    continue;
                snprintf(labels, sizeof(labels), "code=\"%zu\",handler=\"%s\",method=\"%s\"",
                         code + CODE_MIN, handler_names[h], method_names[m]);
                TRY(metrics__u64(out, "registry_http_requests_total", labels, v));
            }
    TRY(metrics__family(out, "registry_http_request_duration_seconds", "histogram",
                        "The HTTP request latencies in seconds."));
    for (size_t h = 0; h < N_HANDLERS; h++)
        for (size_t m = 0; m < N_METHODS; m++) {
            struct metrics_histogram sum = {0}, *hist = &sum;
            for (unsigned i = 0; i < reg->n_fronts; i++)
                metrics__histogram_add(&sum, &reg->fronts[i].http_duration[h][m]);
            if (m >= N_PRECREATED_METHODS && !hist->count)
                continue;
            snprintf(labels, sizeof(labels), "handler=\"%s\",method=\"%s\"", handler_names[h],
                     method_names[m]);
            TRY(metrics__histogram(out, "registry_http_request_duration_seconds", labels, hist,
                                   &metrics__duration_buckets, 1000000));
        }
    TRY(metrics__family(out, "registry_http_response_size_bytes", "histogram",
                        "The HTTP response sizes in bytes."));
    for (size_t h = 0; h < N_HANDLERS; h++) {
        struct metrics_histogram sum = {0};
        for (unsigned i = 0; i < reg->n_fronts; i++)
            metrics__histogram_add(&sum, &reg->fronts[i].http_size[h]);
        snprintf(labels, sizeof(labels), "handler=\"%s\"", handler_names[h]);
        TRY(metrics__histogram(out, "registry_http_response_size_bytes", labels, &sum,
                               &metrics__size_buckets, 1));
    }
    TRY(metrics__family(out, "registry_http_in_flight_requests", "gauge",
                        "The in-flight HTTP requests"));
    for (size_t h = 0; h < N_HANDLERS; h++) {
        snprintf(labels, sizeof(labels), "handler=\"%s\"", handler_names[h]);
        uint64_t started = FRONT_SUM(started[h]), finished = FRONT_SUM(finished[h]);
        TRY(metrics__i64(out, "registry_http_in_flight_requests", labels,
                         started > finished ? (int64_t)(started - finished) : 0));
    }
    TRY(metrics__family(out, "regcache_loop_responses_total", "counter",
                        "Responses finished by each event loop (workers): loop 0 answers what "
                        "the others hand it, besides its own connections"));
    for (unsigned i = 0; i < reg->n_fronts; i++) {
        snprintf(labels, sizeof(labels), "loop=\"%u\"", i);
        TRY(metrics__u64(out, "regcache_loop_responses_total", labels,
                         metrics__get(&reg->fronts[i].responses)));
    }
    return 0;
}

static int expose_typed(struct buf *out, const char *name, const char *help, const char *key,
                        const uint64_t *v)
{
    char labels[64];
    TRY(metrics__family(out, name, "counter", help));
    for (int t = 0; t < METRICS_N_TYPES; t++) {
        snprintf(labels, sizeof(labels), "%s=\"%s\"", key, type_names[t]);
        TRY(metrics__u64(out, name, labels, v[t]));
    }
    return 0;
}

static int expose_proxy(struct buf *out)
{
    uint64_t requests[METRICS_N_TYPES], hits[METRICS_N_TYPES], misses[METRICS_N_TYPES],
        pushed[METRICS_N_TYPES];
    for (int t = 0; t < METRICS_N_TYPES; t++) {
        requests[t] = FRONT_SUM(proxy_requests[t]);
        hits[t] = FRONT_SUM(proxy_hits[t]);
        misses[t] = FRONT_SUM(proxy_misses[t]);
        pushed[t] = FRONT_SUM(proxy_pushed[t]);
    }
    TRY(expose_typed(out, "registry_proxy_requests_total",
                     "The number of total incoming proxy request received", "type", requests));
    TRY(expose_typed(out, "registry_proxy_hits_total", "The number of total proxy request hits",
                     "type", hits));
    TRY(expose_typed(out, "registry_proxy_misses_total", "The number of total proxy request misses",
                     "type", misses));
    TRY(expose_typed(out, "registry_proxy_pulled_bytes_total",
                     "The size of total bytes pulled from the upstream", "type",
                     reg->proxy_pulled));
    TRY(expose_typed(out, "registry_proxy_pushed_bytes_total",
                     "The size of total bytes pushed to the client", "type", pushed));
    TRY(expose_typed(out, "regcache_fill_joins_total",
                     "Requests that joined an upstream request in progress (a blob fill, a blob "
                     "HEAD, a manifest flight) instead of asking the upstream themselves",
                     "type", reg->fill_joins));
    TRY(metrics__family(out, "regcache_fill_resumes_total", "counter",
                        "Blob fills the upstream cut, by what happened next: resumed (a Range "
                        "answered with the 206 asked for), restarted (from byte 0: the upstream "
                        "answered the Range otherwise), gave_up (retries exhausted)"));
    static const char *const resume_labels[METRICS_N_RESUMES] = {
        "outcome=\"resumed\"", "outcome=\"restarted\"", "outcome=\"gave_up\""};
    for (int i = 0; i < METRICS_N_RESUMES; i++)
        TRY(metrics__u64(out, "regcache_fill_resumes_total", resume_labels[i],
                         reg->fill_resumes[i]));
    TRY(metrics__family(out, "regcache_rule_denials_total", "counter",
                        "Pulls refused by the pull rules, by deciding rule (its number in "
                        "rules, or default)"));
    TRY(metrics__u64(out, "regcache_rule_denials_total", "rule=\"default\"",
                     reg->rule_denials[0]));
    for (size_t i = 1; i <= reg->n_rules; i++) {
        char labels[40];
        snprintf(labels, sizeof(labels), "rule=\"%zu\"", i);
        TRY(metrics__u64(out, "regcache_rule_denials_total", labels, reg->rule_denials[i]));
    }
    TRY(metrics__family(out, "regcache_served_bytes_total", "counter",
                        "Response body bytes served from the store (source=cache: hits and "
                        "stale answers) or through an upstream (source=upstream: misses and "
                        "fills)"));
    TRY(metrics__u64(out, "regcache_served_bytes_total", "source=\"cache\"",
                     FRONT_SUM(served_cache)));
    TRY(metrics__u64(out, "regcache_served_bytes_total", "source=\"upstream\"",
                     FRONT_SUM(served_upstream)));
    return 0;
}

static int expose_upstreams(struct buf *out)
{
    char labels[4200];
    TRY(metrics__family(out, "regcache_upstream_requests_total", "counter",
                        "HTTP exchanges with each upstream registry, by method and status class "
                        "(none: no answer)"));
    for (size_t i = 0; i < reg->n_ups; i++)
        for (int m = 0; m < 2; m++)
            for (size_t c = 0; c < N_CLASSES; c++) {
                snprintf(labels, sizeof(labels), "%s,method=\"%s\",code=\"%s\"", reg->ups[i].label,
                         method_names[m], class_names[c]);
                TRY(metrics__u64(out, "regcache_upstream_requests_total", labels,
                                 reg->ups[i].requests[m][c]));
            }
    TRY(metrics__family(out, "regcache_upstream_bytes_total", "counter",
                        "Body bytes received from each upstream"));
    for (size_t i = 0; i < reg->n_ups; i++)
        TRY(metrics__u64(out, "regcache_upstream_bytes_total", reg->ups[i].label,
                         reg->ups[i].bytes));
    TRY(metrics__family(out, "regcache_upstream_request_duration_seconds", "histogram",
                        "Time from the start of an upstream request to its response headers"));
    for (size_t i = 0; i < reg->n_ups; i++)
        TRY(metrics__histogram(out, "regcache_upstream_request_duration_seconds", reg->ups[i].label,
                               &reg->ups[i].latency, &metrics__duration_buckets, 1000000));
    TRY(metrics__family(out, "regcache_upstream_ratelimit_limit", "gauge",
                        "The pull budget the upstream announced last (ratelimit-limit); 0 "
                        "until it announces one"));
    for (size_t i = 0; i < reg->n_ups; i++)
        TRY(metrics__i64(out, "regcache_upstream_ratelimit_limit", reg->ups[i].label,
                         reg->ups[i].rl_limit < 0 ? 0 : reg->ups[i].rl_limit));
    TRY(metrics__family(out, "regcache_upstream_ratelimit_remaining", "gauge",
                        "What is left of the pull budget as the upstream announced it last "
                        "(ratelimit-remaining; 0 after a 429); 0 until it announces one"));
    for (size_t i = 0; i < reg->n_ups; i++)
        TRY(metrics__i64(out, "regcache_upstream_ratelimit_remaining", reg->ups[i].label,
                         reg->ups[i].rl_remaining < 0 ? 0 : reg->ups[i].rl_remaining));
    TRY(metrics__family(out, "regcache_upstream_ratelimit_window_seconds", "gauge",
                        "The window of the announced pull budget (w=); 0 until announced"));
    for (size_t i = 0; i < reg->n_ups; i++)
        TRY(metrics__i64(out, "regcache_upstream_ratelimit_window_seconds", reg->ups[i].label,
                         reg->ups[i].rl_window_s < 0 ? 0 : reg->ups[i].rl_window_s));
    TRY(metrics__family(out, "regcache_upstream_429_total", "counter",
                        "429 Too Many Requests answers from each upstream"));
    for (size_t i = 0; i < reg->n_ups; i++)
        TRY(metrics__u64(out, "regcache_upstream_429_total", reg->ups[i].label, reg->ups[i].n_429));
    TRY(metrics__family(out, "regcache_upstream_last_429_timestamp_seconds", "gauge",
                        "When the upstream last answered 429 (unix time; 0: never)"));
    for (size_t i = 0; i < reg->n_ups; i++)
        TRY(metrics__scaled(out, "regcache_upstream_last_429_timestamp_seconds", reg->ups[i].label,
                            reg->ups[i].last_429_ms, 1000));
    TRY(metrics__family(out, "regcache_upstream_up", "gauge",
                        "Whether the upstream answers (1) or is down (0), as the mirror sees it "
                        "from its own requests"));
    for (size_t i = 0; i < reg->n_ups; i++)
        TRY(metrics__u64(out, "regcache_upstream_up", reg->ups[i].label, (uint64_t)reg->ups[i].up));
    TRY(metrics__family(out, "regcache_upstream_state_since_timestamp_seconds", "gauge",
                        "When the upstream last went up or down (unix time; the process start "
                        "when it never changed)"));
    for (size_t i = 0; i < reg->n_ups; i++)
        TRY(metrics__scaled(out, "regcache_upstream_state_since_timestamp_seconds",
                            reg->ups[i].label,
                            reg->ups[i].since_ms ? reg->ups[i].since_ms : reg->start_ms, 1000));
    return 0;
}

static int gauge(struct buf *out, const char *name, const char *help, uint64_t v)
{
    TRY(metrics__family(out, name, "gauge", help));
    return metrics__u64(out, name, NULL, v);
}

static int counter(struct buf *out, const char *name, const char *help, uint64_t v)
{
    TRY(metrics__family(out, name, "counter", help));
    return metrics__u64(out, name, NULL, v);
}

static int expose_store(struct buf *out, const struct metrics_live *live)
{
    char labels[64];
    TRY(metrics__family(out, "regcache_fills_in_flight", "gauge",
                        "Blob fills and manifest requests to upstreams in progress"));
    for (int t = 0; t < METRICS_N_TYPES; t++) {
        snprintf(labels, sizeof(labels), "type=\"%s\"", type_names[t]);
        TRY(metrics__u64(out, "regcache_fills_in_flight", labels, live->fills[t]));
    }
    TRY(gauge(out, "regcache_store_bytes", "Bytes the store holds", live->store_bytes));
    TRY(gauge(out, "regcache_store_max_bytes", "The configured cache.max_size (0: no limit)",
              reg->max_size));
    TRY(gauge(out, "regcache_filesystem_free_bytes",
              "Free bytes of the storage's filesystem for unprivileged users (measured every "
              "few seconds)",
              fs_free_now()));
    TRY(gauge(out, "regcache_cached_blobs", "Files in the store that are not manifests",
              live->blobs));
    TRY(gauge(out, "regcache_cached_manifests", "Manifests in the index", live->manifests));
    TRY(gauge(out, "regcache_cached_tags", "Tags in the index", live->tags));
    TRY(metrics__family(out, "regcache_gc_runs_total", "counter", "GC runs by result"));
    TRY(metrics__u64(out, "regcache_gc_runs_total", "result=\"ok\"", reg->gc_ok));
    TRY(metrics__u64(out, "regcache_gc_runs_total", "result=\"failed\"", reg->gc_failed));
    TRY(metrics__family(out, "regcache_gc_evicted_bytes_total", "counter",
                        "Bytes removed by GC, by reason (ttl: unused for cache.ttl; size: "
                        "cache.max_size or cache.min_free)"));
    TRY(metrics__u64(out, "regcache_gc_evicted_bytes_total", "reason=\"ttl\"", reg->evicted_ttl));
    TRY(metrics__u64(out, "regcache_gc_evicted_bytes_total", "reason=\"size\"", reg->evicted_size));
    TRY(metrics__family(out, "regcache_gc_pinned_files", "gauge",
                        "Stored files the last successful GC kept because the pin or prefetch "
                        "lists reach them (or they were being filled)"));
    TRY(metrics__u64(out, "regcache_gc_pinned_files", NULL, reg->pinned_files));
    TRY(metrics__family(out, "regcache_gc_pinned_bytes", "gauge",
                        "Bytes of those files"));
    TRY(metrics__u64(out, "regcache_gc_pinned_bytes", NULL, reg->pinned_bytes));
    TRY(metrics__family(out, "regcache_purged_files_total", "counter",
                        "Files another process (regcache purge, regcache gc) removed, as this "
                        "daemon read them from the purge journal"));
    TRY(metrics__u64(out, "regcache_purged_files_total", NULL, reg->purged_files));
    TRY(metrics__family(out, "regcache_purged_bytes_total", "counter",
                        "Bytes of those files"));
    TRY(metrics__u64(out, "regcache_purged_bytes_total", NULL, reg->purged_bytes));
    TRY(metrics__family(out, "regcache_gc_last_run_timestamp_seconds", "gauge",
                        "When the last GC run ended (unix time; 0: none yet)"));
    TRY(metrics__scaled(out, "regcache_gc_last_run_timestamp_seconds", NULL, reg->gc_last_ms,
                        1000));
    TRY(metrics__family(out, "regcache_gc_last_success_timestamp_seconds", "gauge",
                        "When the last successful GC run ended (unix time; 0: none yet)"));
    TRY(metrics__scaled(out, "regcache_gc_last_success_timestamp_seconds", NULL, reg->gc_last_ok_ms,
                        1000));
    TRY(metrics__family(out, "regcache_gc_interval_seconds", "gauge",
                        "The configured cache.gc_interval"));
    TRY(metrics__scaled(out, "regcache_gc_interval_seconds", NULL, reg->gc_interval_ms, 1000));
    TRY(gauge(out, "regcache_index_writes_pending", "Index writes queued, not yet committed",
              live->index_pending));
    TRY(metrics__prefetch_write(out));
    TRY(metrics__s3_write(out));
    TRY(metrics__cluster_write(out));
    return 0;
}

static int expose_front(struct buf *out, const struct metrics_live *live)
{
    TRY(gauge(out, "regcache_connections_open", "Client connections open", live->connections_open));
    TRY(counter(out, "regcache_connections_refused_total",
                "Client connections refused at accept (limits.max_connections reached)",
                live->connections_refused));
    if (live->n_loops) {
        TRY(metrics__family(out, "regcache_loop_connections", "gauge",
                            "Client connections open on each event loop (workers): each is "
                            "given at accept to the loop with the fewest"));
        for (unsigned i = 0; i < live->n_loops; i++) {
            char labels[32];
            snprintf(labels, sizeof(labels), "loop=\"%u\"", i);
            TRY(metrics__u64(out, "regcache_loop_connections", labels,
                             live->loop_connections[i]));
        }
    }
    TRY(metrics__family(out, "regcache_tls_handshakes_total", "counter",
                        "TLS handshakes with clients, by result"));
    TRY(metrics__u64(out, "regcache_tls_handshakes_total", "result=\"ok\"", live->tls_ok));
    TRY(metrics__u64(out, "regcache_tls_handshakes_total", "result=\"failed\"", live->tls_failed));
    TRY(metrics__family(out, "regcache_build_info", "gauge",
                        "The running version (the value is always 1)"));
    TRY(metrics__u64(out, "regcache_build_info", "version=\"" REGCACHE_VERSION "\"", 1));
    return 0;
}

static int expose_process(struct buf *out)
{
    struct metrics_process p;
    metrics__process(&p);
    TRY(metrics__family(out, "process_cpu_seconds_total", "counter",
                        "Total user and system CPU time spent in seconds."));
    TRY(metrics__scaled(out, "process_cpu_seconds_total", NULL, p.cpu_us, 1000000));
    TRY(gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", p.rss_bytes));
    TRY(gauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", p.vsize_bytes));
    TRY(gauge(out, "process_open_fds", "Number of open file descriptors.", p.open_fds));
    TRY(gauge(out, "process_max_fds", "Maximum number of open file descriptors.", p.max_fds));
    TRY(metrics__family(out, "process_start_time_seconds", "gauge",
                        "Start time of the process since unix epoch in seconds."));
    TRY(metrics__scaled(out, "process_start_time_seconds", NULL, reg->start_ms, 1000));
    return 0;
}

void metrics_respond(struct conn *c, const struct http_request *req)
{
    static const char json[] = "Content-Type: application/json\r\n";
    int head = req->method == HTTP_METHOD_HEAD;
    if (req->method == HTTP_METHOD_OTHER) {
        static const char body[] =
            "{\"errors\":[{\"code\":\"UNSUPPORTED\",\"message\":\"only GET and HEAD\","
            "\"detail\":null}]}\n";
        conn_respond(c, 405, "Content-Type: application/json\r\nAllow: GET, HEAD\r\n", body,
                     sizeof(body) - 1, 0);
        return;
    }
    struct buf b;
    buf_init(&b, METRICS_EXPOSITION_MAX);
    if (metrics_expose(&b)) {
        static const char body[] = "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"cannot "
                                   "build the metrics\",\"detail\":null}]}\n";
        conn_respond(c, 500, json, body, sizeof(body) - 1, head);
    } else {
        conn_respond(c, 200,
                     "Content-Type: " METRICS_CONTENT_TYPE "\r\nCache-Control: no-store\r\n",
                     b.data ? b.data : "", b.len, head);
    }
    buf_free(&b);
}

int metrics_expose(struct buf *out)
{
    if (!reg)
        return 0;
    struct metrics_live live;
    read_live(&live);
    TRY(expose_proxy(out));
    TRY(expose_http(out));
    TRY(expose_upstreams(out));
    TRY(expose_store(out, &live));
    TRY(expose_front(out, &live));
    TRY(expose_process(out));
    TRY(metrics__sources_expose(out));
    return 0;
}
