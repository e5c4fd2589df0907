/* SPDX-License-Identifier: Apache-2.0 */
#include "ui/ui.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cache/pins.h"
#include "db/db.h"
#include "metrics/metrics.h"
#include "registry/respond.h"
#include "registry/route.h"
#include "store/store.h"
#include "ui/assets.h"
#include "upstream/upstream.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"
#include "util/reference.h"

#define UI_GC_RUNS 20       /* recent GC runs on the summary */
#define UI_PREFETCH_RUNS 10 /* recent prefetch runs on the summary */
#define UI_UPSTREAMS_MAX 32 /* upstreams read from the metrics (CONFIG_MAX_UPSTREAMS) */
#define UI_CHILDREN_MAX 64  /* an index's platforms read for its size */
#define UI_LAYERS_MAX 1000  /* an image's layers listed */
#define UI_FIELD_MAX 256    /* a media type, platform part or annotation shown */
#define UI_DEFAULT_LIMIT 100
#define UI_READ_BUDGET (64u << 20) /* manifest bytes one answer reads from the store at most */

#define UI_APPEND_MAX (64u << 10) /* larger than any one append to an answer */

/* Appends a string literal. */
#define LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

/* The page's own policy: its script and style sheet from its own files, JSON from its own
 * origin, nothing inline, nothing framed. */
#define UI_PAGE_HEADERS                                                                            \
    "Cache-Control: no-cache\r\n"                                                                  \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "           \
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "                    \
    "frame-ancestors 'none'\r\n"                                                                   \
    "Referrer-Policy: no-referrer\r\n"                                                             \
    "X-Frame-Options: DENY\r\n"
#define UI_API_HEADERS "Content-Type: application/json\r\nCache-Control: no-store\r\n"

struct ui {
    uv_loop_t *loop;
    const struct config *cfg;
    struct db *db;
    struct store *store;
    struct upstream_client *up;
    struct pins *pins; /* the pin and prefetch lists: what a tag row says is pinned */
};

enum job_kind { JOB_SUMMARY, JOB_REPOSITORIES, JOB_REPOSITORY, JOB_MANIFEST };

/* One API request: its parameters, then its answer built on the db thread. */
struct job {
    struct ui *ui;
    struct conn *c;
    int head;
    enum job_kind kind;
    char q[REF_NAME_MAX + 1];
    int sort; /* 0 name, 1 bytes, 2 last pull */
    int desc;
    uint64_t offset, limit;
    int hosted;
    char upstream[256];
    char name[REF_NAME_MAX + 1];
    char digest[REF_DIGEST_MAX + 1];
    uint64_t now_ms;
    uint64_t read_left; /* of UI_READ_BUDGET */
    /* the summary's in-memory figures, read on the loop when the job starts */
    int have_metrics;
    struct metrics_view mv;
    size_t n_mu;
    struct metrics_upstream_view mu[UI_UPSTREAMS_MAX];
    /* the summary's prefetch runs, read on the db thread */
    struct db_prefetch_run prefetch_runs[UI_PREFETCH_RUNS];
    struct buf out;
    int status; /* 0: out holds the answer; else this error */
    const char *code;
    const char *message;
};

int ui_new(uv_loop_t *loop, const struct config *cfg, struct db *db, struct store *store,
           struct upstream_client *up, struct ui **out)
{
    *out = NULL;
    if (cfg->ui_access == UI_ACCESS_OFF)
        return 0;
    struct ui *ui = calloc(1, sizeof(*ui));
    if (!ui)
        return -ENOMEM;
    ui->loop = loop;
    ui->cfg = cfg;
    ui->db = db;
    ui->store = store;
    ui->up = up;
    char err[1024];
    int rc = pins_new(cfg, &ui->pins, err, sizeof(err));
    if (rc) {
        log_error("%s", err);
        free(ui);
        return rc;
    }
    *out = ui;
    return 0;
}

void ui_free(struct ui *ui)
{
    if (ui)
        pins_free(ui->pins);
    free(ui);
}

/* Why the tag upstream/repo:tag (at digest) is pinned: the first pin or prefetch reference
 * naming it (by tag, tag glob, or digest), or NULL. */
static const char *tag_pinned(const struct ui *ui, const char *upstream, const char *repo,
                              const char *tag, const char *digest)
{
    for (size_t i = 0; i < pins_count(ui->pins); i++) {
        const struct pin_ref *r = pins_ref(ui->pins, i);
        if (pin_ref_matches_tag(r, upstream, repo, tag) ||
            (r->digest[0] && strcmp(r->digest, digest) == 0 && strcmp(r->upstream, upstream) == 0 &&
             strcmp(r->repo, repo) == 0))
            return r->reason;
    }
    return NULL;
}

int ui_path(const struct ui *ui, const char *path)
{
    return ui && (strcmp(path, "/") == 0 || strcmp(path, "/favicon.ico") == 0 ||
                  strcmp(path, "/ui") == 0 || strncmp(path, "/ui/", 4) == 0);
}

int ui_for_pushers(const struct ui *ui)
{
    return ui && ui->cfg->ui_access == UI_ACCESS_PUSH;
}

/* ---- JSON ---- */

/* s as a JSON string; markup characters are escaped too, so that no name can close a tag or
 * start one even where the JSON is read as something else. NULL is null. */
static void put_str(struct buf *b, const char *s)
{
    if (!s) {
        LIT(b, "null");
        return;
    }
    json_put_string_markup_safe(b, s);
}

/* A member's key, after a comma unless it is the first in its object. The put_* below that
 * take a key all start with it. */
static void put_key(struct buf *b, const char *key)
{
    char last = b->len ? b->data[b->len - 1] : '{';
    buf_printf(b, "%s\"%s\":", strchr("{[,:", last) ? "" : ",", key);
}

static void put_u64(struct buf *b, const char *key, uint64_t v)
{
    put_key(b, key);
    buf_printf(b, "%llu", (unsigned long long)v);
}

/* A time in ms, null when 0 (never). */
static void put_ms(struct buf *b, const char *key, uint64_t ms)
{
    if (ms) {
        put_u64(b, key, ms);
    } else {
        put_key(b, key);
        LIT(b, "null");
    }
}

static void put_i64(struct buf *b, const char *key, int64_t v)
{
    put_key(b, key);
    if (v < 0)
        LIT(b, "null");
    else
        buf_printf(b, "%lld", (long long)v);
}

static void job_fail(struct job *j, int status, const char *code, const char *message)
{
    j->status = status;
    j->code = code;
    j->message = message;
}

/* ---- manifests from the store (db thread) ---- */

/* The manifest's bytes (malloc'ed, NUL-terminated), at most max of them. */
static int read_manifest(struct store *s, const char *digest, uint64_t max, char **out, size_t *len)
{
    int fd;
    uint64_t size;
    int r = store_blob_open(s, digest, &fd, &size);
    if (r)
        return r;
    if (size > max) {
        close(fd);
        return -EFBIG;
    }
    char *data = malloc(size + 1);
    if (!data) {
        close(fd);
        return -ENOMEM;
    }
    uint64_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, data + got, size - got, (off_t)got);
        if (n <= 0) {
            r = n < 0 ? -errno : -EIO;
            break;
        }
        got += (uint64_t)n;
    }
    close(fd);
    if (r) {
        free(data);
        return r;
    }
    data[got] = '\0';
    *out = data;
    *len = got;
    return 0;
}

/* A manifest the index knows as one (a pushed index may name any blob as a platform), within
 * the job's budget of bytes read: 0 with its bytes, -ENOENT when it is not a stored manifest,
 * -EFBIG past the budget. */
static int job_read(struct job *j, struct db *d, const char *digest, char **out, size_t *len)
{
    char mt[UI_FIELD_MAX];
    uint64_t size, last;
    if (db_blob_info(d, digest, mt, sizeof(mt), &size, &last) || !mt[0])
        return -ENOENT;
    if (size > j->read_left || size > j->ui->cfg->max_manifest_bytes)
        return -EFBIG;
    int r = read_manifest(j->ui->store, digest, j->ui->cfg->max_manifest_bytes, out, len);
    if (r == 0)
        j->read_left -= *len < j->read_left ? *len : j->read_left;
    return r;
}

struct desc {
    char media_type[UI_FIELD_MAX];
    char digest[REF_DIGEST_MAX + 1];
    uint64_t size;
    char os[UI_FIELD_MAX], arch[UI_FIELD_MAX], variant[UI_FIELD_MAX];
    int has_platform;
};

static void get_field(const char *s, size_t len, const char *key, char *out, size_t outlen)
{
    if (json_get_string(s, len, key, out, outlen) < 0)
        out[0] = '\0';
}

static void parse_desc(const char *e, size_t n, struct desc *d)
{
    memset(d, 0, sizeof(*d));
    get_field(e, n, "mediaType", d->media_type, sizeof(d->media_type));
    get_field(e, n, "digest", d->digest, sizeof(d->digest));
    if (!ref_digest_valid(d->digest, strlen(d->digest)))
        d->digest[0] = '\0';
    if (json_get_uint(e, n, "size", &d->size))
        d->size = 0;
    const char *p;
    size_t pl;
    if (json_get_raw(e, n, "platform", &p, &pl) == 0 && pl && p[0] == '{') {
        d->has_platform = 1;
        get_field(p, pl, "os", d->os, sizeof(d->os));
        get_field(p, pl, "architecture", d->arch, sizeof(d->arch));
        get_field(p, pl, "variant", d->variant, sizeof(d->variant));
    }
}

static int is_index(const char *body, size_t len)
{
    const char *v;
    size_t vl;
    return json_get_raw(body, len, "manifests", &v, &vl) == 0 && vl && v[0] == '[';
}

struct walk {
    int (*fn)(void *ud, const struct desc *d);
    void *ud;
    size_t n, max;
};

static int walk_elem(void *ud, const char *e, size_t n)
{
    struct walk *w = ud;
    if (w->n++ >= w->max)
        return 1;
    struct desc d;
    parse_desc(e, n, &d);
    return w->fn(w->ud, &d);
}

/* Calls fn for each descriptor of member key ("layers", "manifests"), at most max of them. */
static void each_desc(const char *body, size_t len, const char *key, size_t max,
                      int (*fn)(void *ud, const struct desc *d), void *ud)
{
    const char *v;
    size_t vl;
    if (json_get_raw(body, len, key, &v, &vl) || !vl || v[0] != '[')
        return;
    struct walk w = {fn, ud, 0, max};
    json_each_element(v, vl, walk_elem, &w);
}

static int add_size(void *ud, const struct desc *d)
{
    *(uint64_t *)ud += d->size;
    return 0;
}

/* An image's size: its config and layers as its manifest gives them. */
static uint64_t image_size(const char *body, size_t len)
{
    uint64_t total = 0;
    const char *v;
    size_t vl;
    if (json_get_raw(body, len, "config", &v, &vl) == 0 && vl && v[0] == '{') {
        uint64_t s;
        if (json_get_uint(v, vl, "size", &s) == 0)
            total += s;
    }
    each_desc(body, len, "layers", UI_LAYERS_MAX, add_size, &total);
    return total;
}

struct tag_info {
    struct job *j;
    struct db *d;
    struct buf *out;
    uint64_t size;    /* an index: of its platforms that are stored */
    size_t platforms; /* written so far */
    size_t stored;    /* platforms whose manifest is stored */
};

static void put_platform(struct buf *b, const struct desc *d)
{
    LIT(b, "{");
    put_key(b, "os");
    put_str(b, d->os);
    put_key(b, "architecture");
    put_str(b, d->arch);
    put_key(b, "variant");
    put_str(b, d->variant[0] ? d->variant : NULL);
    LIT(b, "}");
}

/* One platform of an index listed in a tag's row; its image is read for its size. */
static int tag_platform(void *ud, const struct desc *d)
{
    struct tag_info *t = ud;
    if (t->platforms++)
        LIT(t->out, ",");
    LIT(t->out, "{");
    put_key(t->out, "digest");
    put_str(t->out, d->digest[0] ? d->digest : NULL);
    LIT(t->out, ",");
    put_key(t->out, "platform");
    if (d->has_platform)
        put_platform(t->out, d);
    else
        LIT(t->out, "null");
    char *body = NULL;
    size_t len = 0;
    int stored = d->digest[0] && job_read(t->j, t->d, d->digest, &body, &len) == 0;
    buf_printf(t->out, ",\"stored\":%s}", stored ? "true" : "false");
    if (stored) {
        t->stored++;
        t->size += image_size(body, len);
    }
    free(body);
    return 0;
}

/* The fields of a tag's row that come from its manifest: size, platforms. */
static void put_manifest_summary(struct job *j, struct db *d, const char *digest)
{
    struct buf *b = &j->out;
    char *body = NULL;
    size_t len = 0;
    int r = job_read(j, d, digest, &body, &len);
    buf_printf(b, ",\"stored\":%s", r == 0 ? "true" : "false");
    if (r) {
        LIT(b, ",\"size\":null,\"platforms\":null");
        return;
    }
    if (is_index(body, len)) {
        struct tag_info t = {j, d, b, 0, 0, 0};
        LIT(b, ",\"platforms\":[");
        each_desc(body, len, "manifests", UI_CHILDREN_MAX, tag_platform, &t);
        LIT(b, "]");
        buf_printf(b, ",\"platforms_stored\":%zu", t.stored);
        buf_printf(b, ",\"size\":%llu", (unsigned long long)t.size);
    } else {
        buf_printf(b, ",\"platforms\":null,\"size\":%llu",
                   (unsigned long long)image_size(body, len));
    }
    free(body);
}

/* ---- summary (db thread) ---- */

struct named {
    char *name;
    struct db_ratelimit rl;
    char *source;
    struct db_upstream_state st;
    char *state, *reason;
};

struct upstream_rows {
    struct named *rows;
    size_t n;
};

static struct named *row_for(struct upstream_rows *u, const char *name)
{
    for (size_t i = 0; i < u->n; i++)
        if (strcmp(u->rows[i].name, name) == 0)
            return &u->rows[i];
    return NULL;
}

static int keep_ratelimit(void *ud, const struct db_ratelimit *rl)
{
    struct named *n = row_for(ud, rl->upstream);
    if (n) {
        n->rl = *rl;
        free(n->source);
        n->source = rl->source ? strdup(rl->source) : NULL;
    }
    return 0;
}

static int keep_state(void *ud, const struct db_upstream_state *st)
{
    struct named *n = row_for(ud, st->upstream);
    if (n) {
        n->st = *st;
        free(n->state);
        free(n->reason);
        n->state = st->state ? strdup(st->state) : NULL;
        n->reason = st->reason ? strdup(st->reason) : NULL;
    }
    return 0;
}

/* The upstream's URL without any user information. */
static void put_url(struct buf *b, const char *url)
{
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
    if (at && (!slash || at < slash)) {
        char clean[1024];
        snprintf(clean, sizeof(clean), "%.*s%s", (int)(scheme + 3 - url), url, at + 1);
        put_str(b, clean);
    } else {
        put_str(b, url);
    }
}

/* hosted[0]: repositories, hosted[1]: their tags */
static int count_hosted(void *ud, const struct db_hosted_repo_row *row)
{
    uint64_t *hosted = ud;
    hosted[0]++;
    hosted[1] += row->tags;
    return 0;
}

static void put_prefetch_run(struct buf *b, const struct db_prefetch_run *r)
{
    LIT(b, "{");
    put_u64(b, "started", r->started_ms);
    put_u64(b, "finished", r->finished_ms);
    put_key(b, "trigger");
    put_str(b, r->trigger);
    put_key(b, "upstreams");
    put_str(b, r->upstreams);
    put_u64(b, "references", r->references);
    put_u64(b, "tags", r->tags);
    put_u64(b, "heads", r->heads);
    put_u64(b, "gets", r->gets);
    put_u64(b, "blobs", r->blobs);
    put_u64(b, "bytes", r->bytes);
    put_u64(b, "errors", r->errors);
    put_key(b, "result");
    put_str(b, r->outcome);
    put_key(b, "stopped");
    put_str(b, r->stopped[0] ? r->stopped : NULL);
    put_key(b, "error");
    put_str(b, r->error[0] ? r->error : NULL);
    LIT(b, "}");
}

static void summary(struct db *d, struct job *j)
{
    const struct config *cfg = j->ui->cfg;
    struct buf *b = &j->out;
    struct db_stats s = {0};
    struct db_gc_run runs[UI_GC_RUNS];
    uint64_t hosted[2] = {0, 0};
    db_stats(d, &s);
    db_each_hosted_repo(d, count_hosted, hosted);
    int n = db_gc_runs(d, runs, UI_GC_RUNS);
    struct upstream_rows u = {calloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof(struct named)),
                              0};
    if (!u.rows) {
        job_fail(j, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        u.rows[i].name = cfg->upstreams[i].name;
        u.rows[i].rl.limit = u.rows[i].rl.remaining = u.rows[i].rl.window_s = -1;
    }
    u.n = cfg->n_upstreams;
    db_each_ratelimit(d, keep_ratelimit, &u);
    db_each_upstream_state(d, keep_state, &u);
    for (size_t i = 0; i < j->n_mu; i++) { /* what this process saw is newer */
        const struct metrics_upstream_view *mu = &j->mu[i];
        struct named *r = row_for(&u, mu->name);
        if (!r)
            continue;
        if (!mu->up || mu->since_ms) {
            free(r->state);
            free(r->reason);
            r->state = strdup(mu->up ? "up" : "down");
            r->reason = mu->reason[0] ? strdup(mu->reason) : NULL;
            r->st.since_ms = mu->since_ms;
        }
        if (mu->ratelimit_seen_ms >= r->rl.seen_ms && mu->ratelimit_limit >= 0) {
            r->rl.limit = mu->ratelimit_limit;
            r->rl.remaining = mu->ratelimit_remaining;
            r->rl.window_s = mu->ratelimit_window_s;
            r->rl.seen_ms = mu->ratelimit_seen_ms;
        }
        if (mu->last_429_ms > r->rl.last_429_ms)
            r->rl.last_429_ms = mu->last_429_ms;
    }
    uint64_t free_bytes = j->have_metrics ? j->mv.fs_free_bytes : 0;
    if (!free_bytes)
        free_bytes = store_free_bytes(j->ui->store); /* statvfs: off the loop */
    uint64_t hits = s.hits, misses = s.misses, started = s.started_ms;
    if (j->have_metrics) { /* since this process started, as /metrics counts them */
        hits = j->mv.hits[METRICS_BLOB] + j->mv.hits[METRICS_MANIFEST];
        misses = j->mv.misses[METRICS_BLOB] + j->mv.misses[METRICS_MANIFEST];
        started = j->mv.start_ms;
    }

    buf_printf(b, "{\"version\":\"%s\",", REGCACHE_VERSION);
    put_u64(b, "now", j->now_ms);
    put_ms(b, "started", started);
    put_u64(b, "hits", hits);
    put_u64(b, "misses", misses);
    LIT(b, ",");
    if (hits + misses)
        buf_printf(b, "\"hit_ratio\":%.4f", (double)hits / (double)(hits + misses));
    else
        buf_printf(b, "\"hit_ratio\":null");
    if (j->have_metrics)
        buf_printf(b, ",\"bytes_from_cache\":%llu,\"bytes_from_upstream\":%llu",
                   (unsigned long long)j->mv.served_cache_bytes,
                   (unsigned long long)(j->mv.pulled_bytes[METRICS_BLOB] +
                                        j->mv.pulled_bytes[METRICS_MANIFEST]));
    else
        LIT(b, ",\"bytes_from_cache\":null,\"bytes_from_upstream\":null");
    LIT(b, ",\"store\":{");
    put_u64(b, "bytes", s.blob_bytes);
    put_u64(b, "max_size", cfg->max_size_bytes);
    put_u64(b, "min_free", cfg->min_free_bytes);
    LIT(b, ",");
    if (free_bytes)
        put_u64(b, "free", free_bytes);
    else
        LIT(b, "\"free\":null");
    LIT(b, "},\"counts\":{");
    put_u64(b, "blobs", s.blobs);
    put_u64(b, "manifests", s.manifests);
    put_u64(b, "tags", s.tags + hosted[1]);
    put_u64(b, "repositories", s.repositories + hosted[0]);
    put_u64(b, "hosted_repositories", hosted[0]);
    LIT(b, "},\"upstreams\":[");
    for (size_t i = 0; i < u.n; i++) {
        struct named *r = &u.rows[i];
        buf_append(b, i ? ",{" : "{", i ? 2 : 1);
        put_key(b, "name");
        put_str(b, r->name);
        put_key(b, "url");
        put_url(b, cfg->upstreams[i].url);
        put_key(b, "state");
        put_str(b, r->state ? r->state : "up");
        put_ms(b, "since", r->st.since_ms);
        put_key(b, "reason");
        put_str(b, r->reason);
        put_i64(b, "limit", r->rl.limit);
        put_i64(b, "remaining", r->rl.remaining);
        put_i64(b, "window_s", r->rl.window_s);
        put_key(b, "source");
        put_str(b, r->source);
        put_ms(b, "seen", r->rl.seen_ms);
        put_ms(b, "last_429", r->rl.last_429_ms);
        put_key(b, "last_prefetch");
        if (db_prefetch_runs(d, r->name, &j->prefetch_runs[0], 1) == 1)
            put_prefetch_run(b, &j->prefetch_runs[0]);
        else
            LIT(b, "null");
        LIT(b, "}");
        free(r->source);
        free(r->state);
        free(r->reason);
    }
    free(u.rows);
    LIT(b, "],\"gc_runs\":[");
    for (int i = 0; i < n; i++) {
        buf_append(b, i ? ",{" : "{", i ? 2 : 1);
        put_u64(b, "started", runs[i].started_ms);
        put_u64(b, "duration_ms", runs[i].duration_ms);
        put_key(b, "reason");
        put_str(b, runs[i].reason);
        buf_printf(b, ",\"dry_run\":%s,", runs[i].dry_run ? "true" : "false");
        put_u64(b, "evicted", runs[i].evicted_count);
        put_u64(b, "evicted_bytes", runs[i].evicted_bytes);
        LIT(b, "}");
    }
    LIT(b, "],\"prefetch_runs\":[");
    int np = db_prefetch_runs(d, NULL, j->prefetch_runs, UI_PREFETCH_RUNS);
    for (int i = 0; i < np; i++) {
        if (i)
            LIT(b, ",");
        put_prefetch_run(b, &j->prefetch_runs[i]);
    }
    LIT(b, "]}\n");
}

/* ---- repositories (db thread) ---- */

struct repo_row {
    char *upstream; /* NULL: hosted */
    char *name;
    uint64_t bytes, last_ms;
    int64_t tags; /* -1: not counted */
};

struct repo_list {
    struct job *j;
    struct repo_row *rows;
    size_t n, cap, all;
    int failed;
};

static int matches(const char *q, const char *upstream, const char *name)
{
    if (!q[0])
        return 1;
    if (strcasestr(name, q))
        return 1;
    if (upstream) {
        char full[600];
        snprintf(full, sizeof(full), "%s/%s", upstream, name);
        return strcasestr(full, q) != NULL;
    }
    return strncasecmp(q, "hosted", strlen(q) < 6 ? strlen(q) : 6) == 0;
}

static int add_repo(struct repo_list *l, const char *upstream, const char *name, uint64_t bytes,
                    uint64_t last_ms, int64_t tags)
{
    l->all++;
    if (!matches(l->j->q, upstream, name))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        struct repo_row *rows = realloc(l->rows, cap * sizeof(*rows));
        if (!rows) {
            l->failed = 1;
            return 1;
        }
        l->rows = rows;
        l->cap = cap;
    }
    struct repo_row *r = &l->rows[l->n];
    r->upstream = upstream ? strdup(upstream) : NULL;
    r->name = strdup(name);
    if ((upstream && !r->upstream) || !r->name) {
        free(r->upstream);
        free(r->name);
        l->failed = 1;
        return 1;
    }
    r->bytes = bytes;
    r->last_ms = last_ms;
    r->tags = tags;
    l->n++;
    return 0;
}

static int proxied_repo(void *ud, const struct db_repo_row *row)
{
    return add_repo(ud, row->upstream, row->repo, row->bytes, row->last_access_ms,
                    (int64_t)row->tags);
}

static int hosted_repo(void *ud, const struct db_hosted_repo_row *row)
{
    return add_repo(ud, NULL, row->repo, row->bytes, row->last_access_ms, (int64_t)row->tags);
}

static int cmp_u64(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b;
}

/* ud: the job, for its sort key and order */
static int cmp_repo(const void *pa, const void *pb, void *ud)
{
    const struct repo_row *a = pa, *b = pb;
    int sort_key = ((const struct job *)ud)->sort, sort_desc = ((const struct job *)ud)->desc;
    int r = 0;
    if (sort_key == 1)
        r = cmp_u64(a->bytes, b->bytes);
    else if (sort_key == 2)
        r = cmp_u64(a->last_ms, b->last_ms);
    if (!r) {
        r = strcmp(a->name, b->name);
        if (!r)
            r = strcmp(a->upstream ? a->upstream : "", b->upstream ? b->upstream : "");
        if (sort_key)
            r = -r; /* equal figures: by name, whatever the order */
    }
    return sort_desc ? -r : r;
}

static void repositories(struct db *d, struct job *j)
{
    struct repo_list l = {.j = j};
    db_each_repo(d, proxied_repo, &l);
    if (!l.failed)
        db_each_hosted_repo(d, hosted_repo, &l);
    if (l.failed) {
        job_fail(j, 503, "UNAVAILABLE", "out of memory");
    } else {
        if (l.n)
            qsort_r(l.rows, l.n, sizeof(*l.rows), cmp_repo, j);
        struct buf *b = &j->out;
        LIT(b, "{");
        put_u64(b, "total", l.n);
        put_u64(b, "all", l.all);
        put_u64(b, "offset", j->offset);
        put_u64(b, "limit", j->limit);
        LIT(b, ",\"repositories\":[");
        for (size_t i = j->offset, k = 0; i < l.n && k < j->limit; i++, k++) {
            struct repo_row *r = &l.rows[i];
            buf_append(b, k ? ",{" : "{", k ? 2 : 1);
            put_key(b, "upstream");
            put_str(b, r->upstream);
            buf_printf(b, ",\"hosted\":%s,", r->upstream ? "false" : "true");
            put_key(b, "name");
            put_str(b, r->name);
            put_u64(b, "bytes", r->bytes);
            put_ms(b, "last_pull", r->last_ms);
            put_i64(b, "tags", r->tags);
            LIT(b, "}");
        }
        LIT(b, "]}\n");
    }
    for (size_t i = 0; i < l.n; i++) {
        free(l.rows[i].upstream);
        free(l.rows[i].name);
    }
    free(l.rows);
}

/* ---- one repository's tags (db thread) ---- */

struct tag_row {
    char *tag, *digest, *media_type;
    uint64_t validated_ms, last_ms;
};

struct tag_list {
    struct tag_row *rows;
    size_t n, cap;
    int failed;
};

static int keep_tag(void *ud, const struct db_tag_row *row, uint64_t last_access_ms)
{
    struct tag_list *l = ud;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct tag_row *rows = realloc(l->rows, cap * sizeof(*rows));
        if (!rows) {
            l->failed = 1;
            return 1;
        }
        l->rows = rows;
        l->cap = cap;
    }
    struct tag_row *t = &l->rows[l->n];
    t->tag = strdup(row->tag);
    t->digest = strdup(row->digest);
    t->media_type = strdup(row->media_type ? row->media_type : "");
    t->validated_ms = row->validated_ms;
    t->last_ms = last_access_ms;
    if (!t->tag || !t->digest || !t->media_type) {
        free(t->tag);
        free(t->digest);
        free(t->media_type);
        l->failed = 1;
        return 1;
    }
    l->n++;
    return 0;
}

static void repository(struct db *d, struct job *j)
{
    struct tag_list l = {0};
    if (j->hosted)
        db_each_hosted_tag(d, j->name, keep_tag, &l);
    else
        db_each_tag(d, j->upstream, j->name, keep_tag, &l);
    if (l.failed) {
        job_fail(j, 503, "UNAVAILABLE", "out of memory");
    } else {
        struct buf *b = &j->out;
        LIT(b, "{");
        put_key(b, "upstream");
        put_str(b, j->hosted ? NULL : j->upstream);
        buf_printf(b, ",\"hosted\":%s,", j->hosted ? "true" : "false");
        put_key(b, "name");
        put_str(b, j->name);
        put_u64(b, "total", l.n);
        put_u64(b, "offset", j->offset);
        put_u64(b, "limit", j->limit);
        LIT(b, ",\"tags\":[");
        for (size_t i = j->offset, k = 0; i < l.n && k < j->limit; i++, k++) {
            struct tag_row *t = &l.rows[i];
            buf_append(b, k ? ",{" : "{", k ? 2 : 1);
            put_key(b, "tag");
            put_str(b, t->tag);
            put_key(b, "digest");
            put_str(b, t->digest);
            put_key(b, "media_type");
            put_str(b, t->media_type);
            put_ms(b, "last_pull", t->last_ms);
            put_ms(b, "validated", t->validated_ms);
            put_key(b, "pinned");
            put_str(b, j->hosted ? NULL
                                 : tag_pinned(j->ui, j->upstream, j->name, t->tag, t->digest));
            if (ref_digest_valid(t->digest, strlen(t->digest)))
                put_manifest_summary(j, d, t->digest);
            LIT(b, "}");
        }
        LIT(b, "]}\n");
    }
    for (size_t i = 0; i < l.n; i++) {
        free(l.rows[i].tag);
        free(l.rows[i].digest);
        free(l.rows[i].media_type);
    }
    free(l.rows);
}

/* ---- one manifest (db thread) ---- */

struct manifest_walk {
    struct job *j;
    struct db *d;
    size_t n;
};

static void put_desc_common(struct buf *b, const struct desc *dsc)
{
    put_key(b, "digest");
    put_str(b, dsc->digest[0] ? dsc->digest : NULL);
    put_key(b, "media_type");
    put_str(b, dsc->media_type);
    put_u64(b, "size", dsc->size);
}

static int manifest_layer(void *ud, const struct desc *dsc)
{
    struct manifest_walk *w = ud;
    struct buf *b = &w->j->out;
    char mt[8];
    uint64_t size, last;
    int stored =
        dsc->digest[0] && db_blob_info(w->d, dsc->digest, mt, sizeof(mt), &size, &last) == 0;
    buf_append(b, w->n ? ",{" : "{", w->n ? 2 : 1);
    w->n++;
    put_desc_common(b, dsc);
    buf_printf(b, ",\"stored\":%s", stored ? "true" : "false");
    put_ms(b, "last_pull", stored ? last : 0);
    LIT(b, "}");
    return 0;
}

static int manifest_child(void *ud, const struct desc *dsc)
{
    struct manifest_walk *w = ud;
    struct buf *b = &w->j->out;
    buf_append(b, w->n ? ",{" : "{", w->n ? 2 : 1);
    w->n++;
    put_desc_common(b, dsc);
    put_key(b, "platform");
    if (dsc->has_platform)
        put_platform(b, dsc);
    else
        LIT(b, "null");
    char *body = NULL;
    size_t len = 0;
    int stored = dsc->digest[0] && job_read(w->j, w->d, dsc->digest, &body, &len) == 0;
    buf_printf(b, ",\"stored\":%s", stored ? "true" : "false");
    if (stored)
        buf_printf(b, ",\"image_size\":%llu", (unsigned long long)image_size(body, len));
    else
        LIT(b, ",\"image_size\":null");
    LIT(b, "}");
    free(body);
    return 0;
}

/* Annotations an operator reads; others are left out. */
static const char *const annotation_keys[] = {
    "org.opencontainers.image.title",     "org.opencontainers.image.description",
    "org.opencontainers.image.version",   "org.opencontainers.image.created",
    "org.opencontainers.image.source",    "org.opencontainers.image.revision",
    "org.opencontainers.image.base.name",
};

static void put_annotations(struct buf *b, const char *body, size_t len)
{
    const char *v;
    size_t vl;
    LIT(b, ",\"annotations\":{");
    if (json_get_raw(body, len, "annotations", &v, &vl) == 0 && vl && v[0] == '{') {
        int n = 0;
        for (size_t i = 0; i < sizeof(annotation_keys) / sizeof(annotation_keys[0]); i++) {
            char val[UI_FIELD_MAX * 4];
            if (json_get_string(v, vl, annotation_keys[i], val, sizeof(val)) < 0)
                continue;
            if (n++)
                LIT(b, ",");
            put_str(b, annotation_keys[i]);
            LIT(b, ":");
            put_str(b, val);
        }
    }
    LIT(b, "}");
}

static void manifest(struct db *d, struct job *j)
{
    char media_type[UI_FIELD_MAX];
    uint64_t size, last;
    if (db_blob_info(d, j->digest, media_type, sizeof(media_type), &size, &last) ||
        !media_type[0]) {
        job_fail(j, 404, "MANIFEST_UNKNOWN", "no such manifest in the cache");
        return;
    }
    char *body = NULL;
    size_t len = 0;
    int r = job_read(j, d, j->digest, &body, &len);
    if (r) {
        job_fail(j, r == -ENOENT ? 404 : 500, r == -ENOENT ? "MANIFEST_UNKNOWN" : "UNKNOWN",
                 r == -ENOENT ? "the manifest is not in the store" : "cannot read the manifest");
        return;
    }
    struct buf *b = &j->out;
    struct manifest_walk w = {j, d, 0};
    LIT(b, "{");
    put_key(b, "digest");
    put_str(b, j->digest);
    put_key(b, "media_type");
    put_str(b, media_type);
    put_u64(b, "size", len);
    put_ms(b, "last_pull", last);
    char at[UI_FIELD_MAX];
    get_field(body, len, "artifactType", at, sizeof(at));
    put_key(b, "artifact_type");
    put_str(b, at[0] ? at : NULL);
    put_annotations(b, body, len);
    if (is_index(body, len)) {
        LIT(b, ",\"kind\":\"index\",\"manifests\":[");
        each_desc(body, len, "manifests", UI_LAYERS_MAX, manifest_child, &w);
        LIT(b, "]");
    } else {
        const char *v;
        size_t vl;
        LIT(b, ",\"kind\":\"image\",\"config\":");
        if (json_get_raw(body, len, "config", &v, &vl) == 0 && vl && v[0] == '{') {
            struct desc dsc;
            parse_desc(v, vl, &dsc);
            LIT(b, "{");
            put_desc_common(b, &dsc);
            LIT(b, "}");
        } else {
            LIT(b, "null");
        }
        buf_printf(b, ",\"image_size\":%llu,\"layers\":[",
                   (unsigned long long)image_size(body, len));
        each_desc(body, len, "layers", UI_LAYERS_MAX, manifest_layer, &w);
        LIT(b, "]");
    }
    LIT(b, "}\n");
    free(body);
}

/* ---- running a job ---- */

static void job_work(struct db *d, void *ud)
{
    struct job *j = ud;
    switch (j->kind) {
    case JOB_SUMMARY:
        summary(d, j);
        break;
    case JOB_REPOSITORIES:
        repositories(d, j);
        break;
    case JOB_REPOSITORY:
        repository(d, j);
        break;
    case JOB_MANIFEST:
        manifest(d, j);
        break;
    }
    /* no single append is near UI_APPEND_MAX bytes: one that failed for the buffer's maximum
     * left the answer within that of it */
    if (!j->status && (j->out.len + UI_APPEND_MAX > UI_BODY_MAX || buf_terminate(&j->out)))
        job_fail(j, 503, "UNAVAILABLE", "the answer is too large: ask for fewer rows (limit)");
}

static void job_done(void *ud)
{
    struct job *j = ud;
    if (conn_alive(j->c)) {
        if (j->status)
            respond_error(j->c, j->head, j->status, j->code, j->message,
                          "Cache-Control: no-store\r\n");
        else
            conn_respond(j->c, 200, UI_API_HEADERS, j->out.data, j->out.len, j->head);
    }
    conn_unref(j->c);
    buf_free(&j->out);
    free(j);
}

static uint64_t query_count(const char *query, const char *key, uint64_t dflt, uint64_t max)
{
    char v[24];
    if (route_query_param(query, key, v, sizeof(v)) <= 0 || strspn(v, "0123456789") != strlen(v) ||
        strlen(v) > 12)
        return dflt;
    uint64_t n = strtoull(v, NULL, 10);
    return n > max ? max : n;
}

static void api(struct ui *ui, struct conn *c, struct http_request *req, enum job_kind kind)
{
    int head = req->method == HTTP_METHOD_HEAD;
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        respond_error(c, head, 503, "UNAVAILABLE", "out of memory", NULL);
        return;
    }
    j->ui = ui;
    j->c = c;
    j->head = head;
    j->kind = kind;
    j->now_ms = clock_wall_ms();
    j->read_left = UI_READ_BUDGET;
    if (kind == JOB_SUMMARY && metrics_upstream_count() > 0) {
        j->have_metrics = 1;
        metrics_view(&j->mv);
        for (size_t i = 0; i < metrics_upstream_count() && i < UI_UPSTREAMS_MAX; i++)
            if (metrics_upstream_view(i, &j->mu[j->n_mu]) == 0)
                j->n_mu++;
    }
    j->offset = query_count(req->query, "offset", 0, UINT32_MAX);
    j->limit = query_count(req->query, "limit", UI_DEFAULT_LIMIT, UI_PAGE_MAX);
    char v[16];
    const char *bad = NULL;
    if (kind == JOB_REPOSITORIES) {
        if (route_query_param(req->query, "q", j->q, sizeof(j->q)) < 0)
            j->q[0] = '\0';
        if (route_query_param(req->query, "sort", v, sizeof(v)) > 0)
            j->sort = !strcmp(v, "bytes") ? 1 : !strcmp(v, "last") ? 2 : 0;
        j->desc = route_query_param(req->query, "order", v, sizeof(v)) > 0 && !strcmp(v, "desc");
    } else if (kind == JOB_REPOSITORY) {
        j->hosted = route_query_param(req->query, "hosted", v, sizeof(v)) > 0 && !strcmp(v, "1");
        if (route_query_param(req->query, "name", j->name, sizeof(j->name)) <= 0 ||
            !ref_name_valid(j->name, strlen(j->name)))
            bad = "name: a repository name is required";
        else if (!j->hosted && (route_query_param(req->query, "upstream", j->upstream,
                                                  sizeof(j->upstream)) <= 0 ||
                                !upstream_find(ui->up, j->upstream)))
            bad = "upstream: a configured upstream (or hosted=1) is required";
    } else if (kind == JOB_MANIFEST) {
        if (route_query_param(req->query, "digest", j->digest, sizeof(j->digest)) <= 0 ||
            !ref_digest_valid(j->digest, strlen(j->digest)))
            bad = "digest: a valid digest is required";
    }
    if (bad) {
        respond_error(c, head, 400, kind == JOB_MANIFEST ? "DIGEST_INVALID" : "NAME_INVALID", bad,
                      "Cache-Control: no-store\r\n");
        free(j);
        return;
    }
    buf_init(&j->out, UI_BODY_MAX);
    conn_ref(c);
    if (db_call(ui->db, job_work, job_done, j)) {
        conn_unref(c);
        buf_free(&j->out);
        free(j);
        respond_error(c, head, 503, "UNAVAILABLE", "out of memory", NULL);
    }
}

/* ---- the page's files ---- */

static const struct ui_asset *asset(const char *name)
{
    for (size_t i = 0; i < ui_n_assets; i++)
        if (strcmp(ui_assets[i].name, name) == 0)
            return &ui_assets[i];
    return NULL;
}

static void send_asset(struct conn *c, struct http_request *req, const struct ui_asset *a)
{
    char headers[1024], v[32];
    int page = strcmp(a->name, "index.html") == 0;
    /* a file named by its hash (?v=, as the page names them) never changes under that name */
    int pinned =
        !page && route_query_param(req->query, "v", v, sizeof(v)) > 0 && strcmp(v, a->hash) == 0;
    snprintf(headers, sizeof(headers), "Content-Type: %s\r\nETag: \"%s\"\r\n%s", a->content_type,
             a->hash,
             page     ? UI_PAGE_HEADERS
             : pinned ? "Cache-Control: private, max-age=31536000, immutable\r\n"
                      : "Cache-Control: no-cache\r\n");
    conn_respond(c, 200, headers, a->data, a->len, req->method == HTTP_METHOD_HEAD);
}

void ui_handle(struct ui *ui, struct conn *c, struct http_request *req)
{
    int head = req->method == HTTP_METHOD_HEAD;
    const char *p = req->path;
    req->handler = "ui";
    if (req->method == HTTP_METHOD_OTHER) {
        respond_error(c, 0, 405, "UNSUPPORTED", "the status page is read-only",
                      "Allow: GET, HEAD\r\n");
        return;
    }
    if (strcmp(p, "/ui") == 0) {
        conn_respond(c, 301, "Location: /ui/\r\nContent-Type: text/plain\r\n", "/ui/\n", 5, head);
        return;
    }
    if (strcmp(p, "/") == 0 || strcmp(p, "/ui/") == 0) {
        send_asset(c, req, asset("index.html"));
        return;
    }
    if (strcmp(p, "/favicon.ico") == 0) {
        send_asset(c, req, asset("favicon.svg"));
        return;
    }
    if (strncmp(p, "/ui/api/", 8) == 0) {
        const char *e = p + 8;
        if (strcmp(e, "summary") == 0)
            api(ui, c, req, JOB_SUMMARY);
        else if (strcmp(e, "repositories") == 0)
            api(ui, c, req, JOB_REPOSITORIES);
        else if (strcmp(e, "repository") == 0)
            api(ui, c, req, JOB_REPOSITORY);
        else if (strcmp(e, "manifest") == 0)
            api(ui, c, req, JOB_MANIFEST);
        else
            respond_error(c, head, 404, "NAME_UNKNOWN", "unknown status page endpoint",
                          "Cache-Control: no-store\r\n");
        return;
    }
    const struct ui_asset *a = strchr(p + 4, '/') ? NULL : asset(p + 4);
    if (a)
        send_asset(c, req, a);
    else
        respond_error(c, head, 404, "NAME_UNKNOWN", "no such file on the status page", NULL);
}
