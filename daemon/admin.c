/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/admin.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/htpasswd.h"
#include "cache/gc.h"
#include "cache/pins.h"
#include "cache/reconcile.h"
#include "db/db.h"
#include "hosted/hosted.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/parse.h"

struct handles {
    struct store *store;
    struct db *db;
};

static int open_store(const struct config *cfg, struct handles *h)
{
    char path[4096], err[1024];
    int r = store_open(cfg->storage, &h->store, err, sizeof(err));
    if (r) {
        fprintf(stderr, "regcache: storage %s: %s\n", cfg->storage, err);
        return 1;
    }
    if ((r = store_private_file(h->store, "regcache.db", path, sizeof(path)))) {
        fprintf(stderr, "regcache: the database %s: %s\n", path,
                r == -ELOOP ? "is a symbolic link" : strerror(-r));
        store_close(h->store);
        return 1;
    }
    if (db_open(path, &h->db)) {
        fprintf(stderr, "regcache: cannot open the database %s\n", path);
        store_close(h->store);
        return 1;
    }
    return 0;
}

static void close_store(struct handles *h)
{
    db_close(h->db);
    store_close(h->store);
}

int admin_open(const struct config *cfg, struct admin_handles *h)
{
    struct handles x;
    if (open_store(cfg, &x))
        return 1;
    h->store = x.store;
    h->db = x.db;
    return 0;
}

void admin_close(struct admin_handles *h)
{
    db_close(h->db);
    store_close(h->store);
}

static const char *iso_time(uint64_t ms, char *buf, size_t len)
{
    if (!ms) {
        snprintf(buf, len, "-");
        return buf;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* ---- what is pinned, read from the index and the store as the daemon's GC reads it ---- */

struct offline_pins {
    struct pins *pins;
    struct pin_set *set;
    int rc;
    char **digests;
    size_t n;
};

static void pins_on_tag(void *ud, const struct db_tag_row *row)
{
    struct offline_pins *op = ud;
    if (!op->rc)
        op->rc = pins_add_tag(op->pins, op->set, row->upstream, row->repo, row->tag, row->digest);
}

static void pins_on_manifest(void *ud, const struct db_manifest_row *row)
{
    (void)ud, (void)row;
}

static int pins_collect(void *ud, const char *digest, const char *reason)
{
    (void)reason;
    struct offline_pins *op = ud;
    return (op->digests[op->n] = strdup(digest)) ? (op->n++, 0) : -ENOMEM;
}

static void offline_pins_free(struct offline_pins *op)
{
    for (size_t i = 0; i < op->n; i++)
        free(op->digests[i]);
    free(op->digests);
    pin_set_free(op->set);
    pins_free(op->pins);
    memset(op, 0, sizeof(*op));
}

/* The pinned closure of cfg's pin and prefetch lists; 1 (after a message) on failure. */
static int offline_pins(const struct config *cfg, struct handles *h, struct offline_pins *op)
{
    char err[1024];
    memset(op, 0, sizeof(*op));
    if (pins_new(cfg, &op->pins, err, sizeof(err))) {
        fprintf(stderr, "regcache: %s: %s\n", cfg->source ? cfg->source : "config", err);
        return 1;
    }
    if (!pins_count(op->pins))
        return 0;
    if (!(op->set = pin_set_new()) || db_load(h->db, pins_on_tag, pins_on_manifest, op) ||
        op->rc || pins_add_digests(op->pins, op->set) ||
        pin_set_close(op->set, h->store, cfg->max_manifest_bytes) ||
        !(op->digests = calloc(pin_set_count(op->set) + 1, sizeof(char *))) ||
        pin_set_each(op->set, pins_collect, op)) {
        fprintf(stderr, "regcache: cannot read what is pinned\n");
        offline_pins_free(op);
        return 1;
    }
    return 0;
}

int admin_pins(const struct config *cfg, struct admin_handles *h, struct pin_set **out)
{
    struct handles x = {h->store, h->db};
    struct offline_pins op;
    *out = NULL;
    if (offline_pins(cfg, &x, &op))
        return 1;
    *out = op.set;
    op.set = NULL;
    offline_pins_free(&op);
    return 0;
}

static int admin_gc_hosted(const struct config *cfg, int dry_run)
{
    struct handles h;
    if (open_store(cfg, &h))
        return 1;
    struct hosted_gc_report r;
    int rc = hosted_gc_run(h.db, h.store, clock_wall_ms(), dry_run, &r);
    if (rc) {
        fprintf(stderr, "regcache: gc failed (%d)\n", rc);
        close_store(&h);
        return 1;
    }
    char b[32];
    for (size_t i = 0; dry_run && i < r.collected; i++)
        printf("would evict %s\n", r.digests[i]);
    printf("gc --hosted%s: %s %zu unreferenced hosted blobs, %s; %llu ms\n",
           dry_run ? " --dry-run" : "", dry_run ? "would collect" : "collected", r.collected,
           format_size(r.bytes, b, sizeof(b)), (unsigned long long)r.duration_ms);
    hosted_gc_report_free(&r);
    close_store(&h);
    return 0;
}

int admin_gc(const struct config *cfg, int dry_run, int hosted)
{
    if (hosted)
        return admin_gc_hosted(cfg, dry_run);
    struct handles h;
    struct offline_pins op;
    if (open_store(cfg, &h))
        return 1;
    if (offline_pins(cfg, &h, &op)) {
        close_store(&h);
        return 1;
    }
    struct gc_options o = {.now_ms = clock_wall_ms(),
                           .ttl_ms = cfg->ttl_ms,
                           .max_size = cfg->max_size_bytes,
                           .min_free = cfg->min_free_bytes,
                           .dry_run = dry_run,
                           .reason = "manual",
                           .pinned = op.digests,
                           .n_pinned = op.n};
    const char *names[CONFIG_MAX_UPSTREAMS];
    uint64_t max[CONFIG_MAX_UPSTREAMS];
    for (size_t i = 0; i < cfg->n_upstreams && i < CONFIG_MAX_UPSTREAMS; i++) {
        names[i] = cfg->upstreams[i].name;
        max[i] = cfg->upstreams[i].max_size_bytes;
    }
    o.upstream_names = names;
    o.upstream_max = max;
    o.n_upstreams = cfg->n_upstreams;
    o.journal = 1; /* running daemons forget what goes */
    struct gc_report r;
    int rc = gc_run(h.db, h.store, &o, &r);
    offline_pins_free(&op);
    if (rc) {
        fprintf(stderr, "regcache: gc failed (%d)\n", rc);
        close_store(&h);
        return 1;
    }
    char b1[32], b2[32];
    if (dry_run)
        for (size_t i = 0; i < r.n_digests; i++)
            printf("would evict %s\n", r.digests[i]);
    printf("gc%s: %s %zu of %zu blobs (%zu expired, %zu for space), %s; %zu tags forgotten; "
           "%s kept; %llu ms\n",
           dry_run ? " --dry-run" : "", dry_run ? "would evict" : "evicted", r.evicted, r.scanned,
           r.by_ttl, r.by_size, format_size(r.evicted_bytes, b1, sizeof(b1)), r.tags_forgotten,
           format_size(r.kept_bytes, b2, sizeof(b2)), (unsigned long long)r.duration_ms);
    if (r.by_upstream_size)
        printf("gc: %zu of those for an upstream's own max_size\n", r.by_upstream_size);
    if (r.seq)
        admin_wait_daemons(h.db, r.seq);
    gc_report_free(&r);
    close_store(&h);
    return 0;
}

int admin_verify(const struct config *cfg)
{
    struct handles h;
    if (open_store(cfg, &h))
        return 1;
    struct reconcile_report r;
    int rc = reconcile(h.db, h.store, 1, &r);
    close_store(&h);
    if (rc && r.unwritten) {
        /* every file was checked; only the index could not take what was found */
        fprintf(stderr, "regcache: verify: %zu changes to the index could not be written "
                "(%s); the next verify or start makes them\n", r.unwritten,
                "the database is locked or cannot be written");
        rc = 0;
    }
    if (rc) {
        fprintf(stderr, "regcache: verify failed (%d)\n", rc);
        return 1;
    }
    char b[32];
    printf("verify: %zu files (%s) re-hashed; %zu corrupt removed, %zu stray removed, "
           "%zu adopted, %zu index rows without a file dropped\n",
           r.verified, format_size(r.bytes, b, sizeof(b)), r.removed_corrupt, r.removed_stray,
           r.adopted, r.rows_dropped);
    return r.removed_corrupt ? 3 : 0;
}

#define STATS_MAX_RATELIMITS 64

struct ratelimit_row {
    char upstream[256], source[64];
    int64_t limit, remaining, window_s;
    uint64_t seen_ms, last_429_ms;
};

struct ratelimit_rows {
    struct ratelimit_row v[STATS_MAX_RATELIMITS];
    int n;
};

static int keep_ratelimit(void *ud, const struct db_ratelimit *rl)
{
    struct ratelimit_rows *rows = ud;
    if (rows->n == STATS_MAX_RATELIMITS)
        return 1;
    struct ratelimit_row *r = &rows->v[rows->n++];
    snprintf(r->upstream, sizeof(r->upstream), "%s", rl->upstream);
    snprintf(r->source, sizeof(r->source), "%s", rl->source ? rl->source : "");
    r->limit = rl->limit;
    r->remaining = rl->remaining;
    r->window_s = rl->window_s;
    r->seen_ms = rl->seen_ms;
    r->last_429_ms = rl->last_429_ms;
    return 0;
}

/* "null" for an unknown number (-1). */
static const char *json_num(int64_t v, char *buf, size_t len)
{
    if (v < 0)
        snprintf(buf, len, "null");
    else
        snprintf(buf, len, "%lld", (long long)v);
    return buf;
}

static void print_ratelimits_json(const struct ratelimit_rows *rows)
{
    struct buf b;
    buf_init(&b, 64 * 1024);
    char n1[24], n2[24], n3[24], t1[32], t2[32];
    for (int i = 0; i < rows->n; i++) {
        const struct ratelimit_row *r = &rows->v[i];
        int bad =
            buf_printf(&b, "%s{\"upstream\":", i ? "," : "") || json_put_string(&b, r->upstream) ||
            buf_printf(&b, ",\"limit\":%s,\"remaining\":%s,\"window_s\":%s,\"source\":",
                       json_num(r->limit, n1, sizeof(n1)), json_num(r->remaining, n2, sizeof(n2)),
                       json_num(r->window_s, n3, sizeof(n3))) ||
            (r->source[0] ? json_put_string(&b, r->source) : buf_printf(&b, "null")) ||
            buf_printf(&b, ",\"seen\":\"%s\",\"last_429\":%s%s%s}",
                       iso_time(r->seen_ms, t1, sizeof(t1)), r->last_429_ms ? "\"" : "",
                       r->last_429_ms ? iso_time(r->last_429_ms, t2, sizeof(t2)) : "null",
                       r->last_429_ms ? "\"" : "");
        if (bad)
            break;
    }
    printf("%.*s", (int)b.len, b.data ? b.data : "");
    buf_free(&b);
}

static void print_ratelimits(const struct ratelimit_rows *rows)
{
    char t1[32], t2[32];
    printf("upstream pull limits:%s\n", rows->n ? "" : "  none announced");
    for (int i = 0; i < rows->n; i++) {
        const struct ratelimit_row *r = &rows->v[i];
        char remaining[24] = "?", limit[24] = "?", window[40] = "";
        if (r->remaining >= 0)
            snprintf(remaining, sizeof(remaining), "%lld", (long long)r->remaining);
        if (r->limit >= 0)
            snprintf(limit, sizeof(limit), "%lld", (long long)r->limit);
        if (r->window_s > 0)
            snprintf(window, sizeof(window), " per %lld s", (long long)r->window_s);
        printf("  %-20s %s of %s left%s%s%s (as of %s)", r->upstream, remaining, limit, window,
               r->source[0] ? " for " : "", r->source, iso_time(r->seen_ms, t1, sizeof(t1)));
        if (r->last_429_ms)
            printf("; last 429 %s", iso_time(r->last_429_ms, t2, sizeof(t2)));
        printf("\n");
    }
}

struct state_row {
    char upstream[256], state[8], reason[256];
    uint64_t since_ms;
};

struct state_rows {
    struct state_row v[STATS_MAX_RATELIMITS];
    int n;
};

static int keep_state(void *ud, const struct db_upstream_state *st)
{
    struct state_rows *rows = ud;
    if (rows->n == STATS_MAX_RATELIMITS)
        return 1;
    struct state_row *r = &rows->v[rows->n++];
    snprintf(r->upstream, sizeof(r->upstream), "%s", st->upstream);
    snprintf(r->state, sizeof(r->state), "%s", st->state);
    snprintf(r->reason, sizeof(r->reason), "%s", st->reason ? st->reason : "");
    r->since_ms = st->since_ms;
    return 0;
}

static void print_states_json(const struct state_rows *rows)
{
    struct buf b;
    buf_init(&b, 64 * 1024);
    char t[32];
    for (int i = 0; i < rows->n; i++) {
        const struct state_row *r = &rows->v[i];
        int bad =
            buf_printf(&b, "%s{\"name\":", i ? "," : "") || json_put_string(&b, r->upstream) ||
            buf_printf(&b, ",\"state\":") || json_put_string(&b, r->state) ||
            buf_printf(&b, ",\"since\":\"%s\",\"reason\":", iso_time(r->since_ms, t, sizeof(t))) ||
            (r->reason[0] ? json_put_string(&b, r->reason) : buf_printf(&b, "null")) ||
            buf_printf(&b, "}");
        if (bad)
            break;
    }
    printf("%.*s", (int)b.len, b.data ? b.data : "");
    buf_free(&b);
}

static void print_states(const struct state_rows *rows)
{
    char t[32];
    printf("upstreams:%s\n", rows->n ? "" : "      none seen yet");
    for (int i = 0; i < rows->n; i++) {
        const struct state_row *r = &rows->v[i];
        printf("  %-20s %-4s since %s%s%s%s\n", r->upstream, r->state,
               iso_time(r->since_ms, t, sizeof(t)), r->reason[0] ? " (" : "", r->reason,
               r->reason[0] ? ")" : "");
    }
}

/* ---- prefetch: the last run and the totals ---- */

static void prefetch_run_json(struct buf *b, const struct db_prefetch_run *r)
{
    char t1[32], t2[32];
    buf_printf(b, "{\"started\":\"%s\",\"finished\":\"%s\",\"trigger\":",
               iso_time(r->started_ms, t1, sizeof(t1)), iso_time(r->finished_ms, t2, sizeof(t2)));
    json_put_string(b, r->trigger);
    buf_printf(b, ",\"upstreams\":");
    json_put_string(b, r->upstreams);
    buf_printf(b, ",\"references\":%llu,\"tags\":%llu,\"heads\":%llu,\"gets\":%llu,"
                  "\"blobs\":%llu,\"bytes\":%llu,\"errors\":%llu,\"result\":",
               (unsigned long long)r->references, (unsigned long long)r->tags,
               (unsigned long long)r->heads, (unsigned long long)r->gets,
               (unsigned long long)r->blobs, (unsigned long long)r->bytes,
               (unsigned long long)r->errors);
    json_put_string(b, r->outcome);
    buf_printf(b, ",\"stopped\":");
    r->stopped[0] ? json_put_string(b, r->stopped) : buf_printf(b, "null");
    buf_printf(b, ",\"error\":");
    r->error[0] ? json_put_string(b, r->error) : buf_printf(b, "null");
    buf_printf(b, "}");
}

static void print_prefetch_json(const struct db_prefetch_run *last, int has_last,
                                const struct db_prefetch_totals *t)
{
    struct buf b;
    char t1[32];
    buf_init(&b, 64 * 1024);
    buf_printf(&b, "\"prefetch\":{\"last_run\":");
    if (has_last)
        prefetch_run_json(&b, last);
    else
        buf_printf(&b, "null");
    const char *q = t->since_ms ? "\"" : "";
    buf_printf(&b, ",\"totals\":{\"since\":%s%s%s,\"runs\":%llu,\"stopped\":%llu,"
                   "\"tags\":%llu,\"heads\":%llu,\"gets\":%llu,\"blobs\":%llu,\"bytes\":%llu,"
                   "\"errors\":%llu}}",
               q, t->since_ms ? iso_time(t->since_ms, t1, sizeof(t1)) : "null", q,
               (unsigned long long)t->runs,
               (unsigned long long)t->stopped, (unsigned long long)t->tags,
               (unsigned long long)t->heads, (unsigned long long)t->gets,
               (unsigned long long)t->blobs, (unsigned long long)t->bytes,
               (unsigned long long)t->errors);
    printf("%.*s", (int)b.len, b.data ? b.data : "");
    buf_free(&b);
}

static void print_prefetch(const struct db_prefetch_run *r, int has_last,
                           const struct db_prefetch_totals *t)
{
    char t1[32], b1[32];
    if (!has_last) {
        printf("last prefetch run: none\n");
        return;
    }
    printf("last prefetch run: %s (%s, %s; %llu ms)\n", iso_time(r->started_ms, t1, sizeof(t1)),
           r->trigger, r->upstreams, (unsigned long long)(r->finished_ms - r->started_ms));
    printf("  %llu references, %llu tags checked, %llu HEADs, %llu GETs, %llu blobs (%s), "
           "%llu errors; %s%s%s\n",
           (unsigned long long)r->references, (unsigned long long)r->tags,
           (unsigned long long)r->heads, (unsigned long long)r->gets,
           (unsigned long long)r->blobs, format_size(r->bytes, b1, sizeof(b1)),
           (unsigned long long)r->errors, r->outcome, r->stopped[0] ? ": stopped, " : "",
           r->stopped);
    if (r->error[0])
        printf("  first error: %s\n", r->error);
    printf("prefetch totals:   %llu runs (%llu stopped early) since %s: %llu tags checked, "
           "%llu HEADs, %llu GETs, %llu blobs (%s), %llu errors\n",
           (unsigned long long)t->runs, (unsigned long long)t->stopped,
           iso_time(t->since_ms, t1, sizeof(t1)), (unsigned long long)t->tags,
           (unsigned long long)t->heads, (unsigned long long)t->gets,
           (unsigned long long)t->blobs, format_size(t->bytes, b1, sizeof(b1)),
           (unsigned long long)t->errors);
}

int admin_stats(const struct config *cfg, int json)
{
    struct handles h;
    if (open_store(cfg, &h))
        return 1;
    struct db_stats s;
    struct db_gc_run runs[5];
    db_stats(h.db, &s);
    int n = db_gc_runs(h.db, runs, 5);
    static struct ratelimit_rows limits;
    limits.n = 0;
    db_each_ratelimit(h.db, keep_ratelimit, &limits);
    static struct state_rows states;
    states.n = 0;
    db_each_upstream_state(h.db, keep_state, &states);
    static struct db_prefetch_run last_prefetch;
    struct db_prefetch_totals prefetch_totals;
    int has_prefetch = db_prefetch_runs(h.db, NULL, &last_prefetch, 1) == 1;
    db_prefetch_totals(h.db, &prefetch_totals);
    uint64_t free_bytes = store_free_bytes(h.store);
    close_store(&h);
    uint64_t served = s.hits + s.misses;
    double ratio = served ? (double)s.hits / (double)served : 0.0;
    char t1[32], t2[32], b1[32], b2[32];
    if (json) {
        printf("{\"blobs\":%llu,\"blob_bytes\":%llu,\"manifests\":%llu,\"repositories\":%llu,"
               "\"tags\":%llu,\"hits\":%llu,\"misses\":%llu,\"hit_ratio\":%.4f,"
               "\"started\":\"%s\",\"oldest_access\":\"%s\",\"free_bytes\":%llu,\"gc_runs\":[",
               (unsigned long long)s.blobs, (unsigned long long)s.blob_bytes,
               (unsigned long long)s.manifests, (unsigned long long)s.repositories,
               (unsigned long long)s.tags, (unsigned long long)s.hits, (unsigned long long)s.misses,
               ratio, iso_time(s.started_ms, t1, sizeof(t1)),
               iso_time(s.oldest_access_ms, t2, sizeof(t2)), (unsigned long long)free_bytes);
        for (int i = 0; i < n; i++)
            printf("%s{\"started\":\"%s\",\"reason\":\"%s\",\"dry_run\":%s,\"evicted\":%llu,"
                   "\"evicted_bytes\":%llu,\"duration_ms\":%llu}",
                   i ? "," : "", iso_time(runs[i].started_ms, t1, sizeof(t1)), runs[i].reason,
                   runs[i].dry_run ? "true" : "false", (unsigned long long)runs[i].evicted_count,
                   (unsigned long long)runs[i].evicted_bytes,
                   (unsigned long long)runs[i].duration_ms);
        printf("],\"rate_limits\":[");
        print_ratelimits_json(&limits);
        printf("],\"upstreams\":[");
        print_states_json(&states);
        printf("],");
        print_prefetch_json(&last_prefetch, has_prefetch, &prefetch_totals);
        printf("}\n");
        return 0;
    }
    printf("blobs:          %llu (%s)\n", (unsigned long long)s.blobs,
           format_size(s.blob_bytes, b1, sizeof(b1)));
    printf("manifests:      %llu\n", (unsigned long long)s.manifests);
    printf("repositories:   %llu\n", (unsigned long long)s.repositories);
    printf("tags:           %llu\n", (unsigned long long)s.tags);
    printf("hit ratio:      %.1f%% (%llu hits, %llu misses since %s)\n", ratio * 100,
           (unsigned long long)s.hits, (unsigned long long)s.misses,
           iso_time(s.started_ms, t1, sizeof(t1)));
    printf("oldest access:  %s\n", iso_time(s.oldest_access_ms, t2, sizeof(t2)));
    printf("free disk:      %s\n", format_size(free_bytes, b2, sizeof(b2)));
    printf("last gc runs:%s\n", n ? "" : "   none");
    for (int i = 0; i < n; i++)
        printf("  %s %-9s %s%llu evicted, %s, %llu ms\n",
               iso_time(runs[i].started_ms, t1, sizeof(t1)), runs[i].reason,
               runs[i].dry_run ? "(dry run) " : "", (unsigned long long)runs[i].evicted_count,
               format_size(runs[i].evicted_bytes, b1, sizeof(b1)),
               (unsigned long long)runs[i].duration_ms);
    print_states(&states);
    print_ratelimits(&limits);
    print_prefetch(&last_prefetch, has_prefetch, &prefetch_totals);
    return 0;
}

struct ls_ctx {
    struct db *db;
    struct pin_set *pinned;
};

static int print_tag(void *ud, const struct db_tag_row *row, uint64_t last_access_ms)
{
    struct ls_ctx *ls = ud;
    char t[32];
    const char *why = pin_set_reason(ls->pinned, row->digest);
    printf("  %-30s %s  %s%s%s\n", row->tag, row->digest, iso_time(last_access_ms, t, sizeof(t)),
           why ? "  PINNED " : "", why ? why : "");
    return 0;
}

struct pin_total {
    const char *reason;
    uint64_t digests, bytes;
    struct db *db;
};

static int add_pinned(void *ud, const char *digest, const char *reason)
{
    struct pin_total *t = ud;
    char type[256];
    uint64_t size = 0, last = 0;
    if (strcmp(reason, t->reason) || db_blob_info(t->db, digest, type, sizeof(type), &size, &last))
        return 0;
    t->digests++;
    t->bytes += size;
    return 0;
}

/* One line per pin and prefetch reference: what it keeps in the store. */
static void print_pins(const struct offline_pins *op, struct db *db)
{
    if (!pins_count(op->pins))
        return;
    printf("\nPINNED (never evicted)\n");
    for (size_t i = 0; i < pins_count(op->pins); i++) {
        const struct pin_ref *r = pins_ref(op->pins, i);
        struct pin_total t = {r->reason, 0, 0, db};
        char b[32];
        pin_set_each(op->set, add_pinned, &t);
        printf("  %-48s %6llu files %12s\n", r->reason, (unsigned long long)t.digests,
               format_size(t.bytes, b, sizeof(b)));
    }
}

static int print_repo(void *ud, const struct db_repo_row *row)
{
    struct ls_ctx *ls = ud;
    char name[600], b[32], t[32];
    snprintf(name, sizeof(name), "%s/%s", row->upstream, row->repo);
    printf("%-50s %12s  %s\n", name, format_size(row->bytes, b, sizeof(b)),
           iso_time(row->last_access_ms, t, sizeof(t)));
    return db_each_tag(ls->db, row->upstream, row->repo, print_tag, ls);
}

int admin_ls(const struct config *cfg)
{
    struct handles h;
    struct offline_pins op;
    if (open_store(cfg, &h))
        return 1;
    if (offline_pins(cfg, &h, &op)) {
        close_store(&h);
        return 1;
    }
    struct ls_ctx ls = {h.db, op.set};
    printf("%-50s %12s  %s\n", "REPOSITORY (TAG, DIGEST)", "SIZE", "LAST PULL");
    int rc = db_each_repo(h.db, print_repo, &ls);
    print_pins(&op, h.db);
    offline_pins_free(&op);
    close_store(&h);
    return rc ? 1 : 0;
}

/* One line from f without its newline; 0, or -1 on end of input. */
static int read_line(FILE *f, char *buf, size_t len)
{
    if (!fgets(buf, (int)len, f))
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

static int prompt(const char *what, char *buf, size_t len)
{
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty)
        return -1;
    struct termios old, quiet;
    fprintf(tty, "%s", what);
    fflush(tty);
    tcgetattr(fileno(tty), &old);
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
    int r = read_line(tty, buf, len);
    tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fprintf(tty, "\n");
    fclose(tty);
    return r;
}

int admin_passwd(const char *file, const char *user)
{
    char pass[1024], again[1024], hash[128];
    if (!htpasswd_user_valid(user)) {
        fprintf(stderr, "regcache: invalid user name '%s' (1-255 bytes, no ':')\n", user);
        return 2;
    }
    if (isatty(STDIN_FILENO)) {
        if (prompt("Password: ", pass, sizeof(pass)) || prompt("Again: ", again, sizeof(again))) {
            fprintf(stderr, "regcache: no password given\n");
            return 1;
        }
        int same = strcmp(pass, again) == 0;
        OPENSSL_cleanse(again, sizeof(again));
        if (!same) {
            OPENSSL_cleanse(pass, sizeof(pass));
            fprintf(stderr, "regcache: the passwords differ\n");
            return 1;
        }
    } else if (read_line(stdin, pass, sizeof(pass))) {
        fprintf(stderr, "regcache: no password on standard input\n");
        return 1;
    }
    if (!pass[0]) {
        fprintf(stderr, "regcache: empty password refused\n");
        return 1;
    }
    if (strlen(pass) > HTPASSWD_PASSWORD_MAX) {
        /* bcrypt would ignore the rest: a longer password would seem stronger than it is */
        OPENSSL_cleanse(pass, sizeof(pass));
        fprintf(stderr,
                "regcache: password refused: longer than %d bytes, and bcrypt ignores every "
                "byte past %d (use a shorter one)\n",
                HTPASSWD_PASSWORD_MAX, HTPASSWD_PASSWORD_MAX);
        return 1;
    }
    int r = htpasswd_make_hash(pass, hash, sizeof(hash));
    OPENSSL_cleanse(pass, sizeof(pass));
    if (!r)
        r = htpasswd_set(file, user, hash);
    if (r) {
        fprintf(stderr, "regcache: %s: %s\n", file, strerror(-r));
        return 1;
    }
    printf("%s: password for '%s' set (bcrypt)\n", file, user);
    return 0;
}
