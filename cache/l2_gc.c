/* SPDX-License-Identifier: Apache-2.0 */
/* The bucket GC: evicts from the bucket what no replica pulled for long, or the least recently
 * pulled while the bucket is over its cap. Only the replica holding the GC lease runs it
 * (l2_lease.c), on the local GC's schedule (cache.gc_interval). A run:
 *
 * 1. lists hold/ (what a replica's hosted repositories hold), access/ (each blob's marker,
 *    whose LastModified is its last access on any replica: l2_access.c) and then blobs/ (sizes
 *    and LastModified: when the blob was written), page by page (1000 keys a page, on the
 *    loop);
 * 2. plans on the thread pool: what a hold names and what the pin and prefetch lists reach
 *    (as this replica's store knows it: cache/pins.h) is kept; the rest goes through the local
 *    GC's own policy (cache/evict.h) with each blob's last access the later of its marker's
 *    and its own LastModified, the TTL s3.ttl (cache.ttl unless set) and the cap s3.max_size.
 *    Markers whose blob is gone and that are older than the TTL are stray and go too;
 * 3. deletes, L2_GC_AT_ONCE at a time, each victim only after a fresh HEAD of its marker shows
 *    no access since the listing (a pull meanwhile keeps it) and while this replica still holds
 *    the lease: the blob's object, then its marker.
 *
 * A run that cannot list everything, or loses the lease, deletes nothing more; the next run
 * starts again. A run holds about 48 bytes per blob object, 40 per marker and 32 per hold of
 * the bucket.
 * The local store is not touched: the local GC (gc.c) goes on by itself, and a local eviction
 * never deletes from the bucket. Loop thread, but for the planning. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/evict.h"
#include "cache/impl.h"
#include "cache/pins.h"
#include "metrics/metrics.h"
#include "s3/client.h"
#include "util/clock.h"
#include "util/log.h"

#define L2_GC_AT_ONCE 4
#define L2_GC_FIRST_MS 5000
#define L2_GC_PAGE 1000

struct gc_blob {
    unsigned char h[32];
    uint64_t size;
    int64_t mtime, marker; /* seconds; marker -1: none */
};

struct gc_marker {
    unsigned char h[32];
    int64_t mtime;
    int matched;
};

struct gc_victim {
    unsigned char h[32];
    uint64_t size;
    uint64_t seen_ms;         /* the last access the plan saw */
    enum evict_reason reason; /* EVICT_KEEP: a stray marker */
};

struct gc_del;

enum { LIST_HOLDS, LIST_MARKERS, LIST_BLOBS };
static const char *const listed[] = {"hold/", "access/", "blobs/"};

struct gc_hold {
    unsigned char h[32];
};

struct gc_run {
    struct l2_gc *g;
    struct s3_op *op; /* the listing's page in flight */
    int listing;      /* LIST_HOLDS, then LIST_MARKERS, then LIST_BLOBS */
    char token[1100];
    struct gc_marker *markers;
    size_t n_markers, cap_markers;
    struct gc_blob *blobs;
    size_t n_blobs, cap_blobs;
    struct gc_hold *holds;
    size_t n_holds, cap_holds;
    struct pin_set *pins;
    struct store *store;
    uint64_t max_manifest, now_ms, ttl_ms, max_size, started_us;
    uv_work_t work;
    int plan_rc, planning;
    struct gc_victim *victims;
    size_t n_victims, next, pinned, held;
    struct gc_del *inflight[L2_GC_AT_ONCE];
    size_t running;
    size_t evicted, by_ttl, by_size, strays, kept_since, failed;
    uint64_t bytes;
    int lost_lease;
};

enum del_step { CHECKING, DELETING_BLOB, DELETING_MARKER };

struct gc_del {
    struct gc_run *run;
    const struct gc_victim *v;
    struct s3_op *op;
    enum del_step step;
    char digest[DIGEST_MAX];
};

struct l2_gc {
    struct cache *c;
    struct s3_client *s3;
    struct l2_lease *lease;
    uv_timer_t timer;
    struct gc_run *run;
    int stopping, timer_closed;
};

static int hex_nibble(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* "<what>/sha256/<2>/<64>" to the 32 bytes; 0 or -EINVAL. */
static int parse_key(const char *key, const char *what, unsigned char h[32])
{
    size_t w = strlen(what);
    if (strncmp(key, what, w) || strncmp(key + w, "/sha256/", 8))
        return -EINVAL;
    const char *p = key + w + 8;
    if (strlen(p) != 2 + 1 + 64 || p[2] != '/' || strncmp(p, p + 3, 2))
        return -EINVAL;
    p += 3;
    for (size_t i = 0; i < 32; i++) {
        int a = hex_nibble(p[2 * i]), b = hex_nibble(p[2 * i + 1]);
        if (a < 0 || b < 0)
            return -EINVAL;
        h[i] = (unsigned char)(a << 4 | b);
    }
    return 0;
}

static void digest_of(const unsigned char h[32], char *out, size_t len)
{
    int n = snprintf(out, len, "sha256:");
    for (size_t i = 0; i < 32 && (size_t)n + 2 < len; i++)
        n += snprintf(out + n, len - (size_t)n, "%02x", h[i]);
}

static int by_hash_marker(const void *a, const void *b)
{
    return memcmp(((const struct gc_marker *)a)->h, ((const struct gc_marker *)b)->h, 32);
}

static int by_hash_hold(const void *a, const void *b)
{
    return memcmp(((const struct gc_hold *)a)->h, ((const struct gc_hold *)b)->h, 32);
}

static int by_hash_blob(const void *a, const void *b)
{
    return memcmp(((const struct gc_blob *)a)->h, ((const struct gc_blob *)b)->h, 32);
}

static void run_free(struct gc_run *run)
{
    pin_set_free(run->pins);
    free(run->markers);
    free(run->blobs);
    free(run->holds);
    free(run->victims);
    free(run);
}

static void gc_free_if_done(struct l2_gc *g)
{
    if (g->stopping && g->timer_closed && !g->run)
        free(g);
}

static void run_end(struct gc_run *run, int ok)
{
    struct l2_gc *g = run->g;
    metrics_s3_gc_run(ok);
    uint64_t ms = (clock_mono_us() - run->started_us) / 1000;
    if (ok)
        log_info("s3 gc: evicted %zu of %zu blob objects (%zu expired, %zu for space), %" PRIu64
                 " bytes; %zu kept as pulled since the listing; %zu pinned; %zu hosted; %zu "
                 "stray markers deleted; %" PRIu64 " ms",
                 run->evicted, run->n_blobs, run->by_ttl, run->by_size, run->bytes, run->kept_since,
                 run->pinned, run->held, run->strays, ms);
    else
        log_warn("s3 gc: the run ended early%s; evicted %zu blob objects, %" PRIu64 " bytes",
                 run->lost_lease ? " (the lease was lost)" : "", run->evicted, run->bytes);
    g->run = NULL;
    run_free(run);
}

/* ---- 3. deleting ---- */

static void next_deletes(struct gc_run *run);

static void del_finish(struct gc_del *d)
{
    struct gc_run *run = d->run;
    for (size_t i = 0; i < L2_GC_AT_ONCE; i++)
        if (run->inflight[i] == d)
            run->inflight[i] = NULL;
    run->running--;
    free(d);
    next_deletes(run);
}

static void on_del_done(void *ud, const struct s3_reply *r);

static int del_request(struct gc_del *d, int marker)
{
    char key[128];
    int rc = marker ? l2_marker_key(d->digest, key, sizeof(key))
                    : s3_blob_key(d->digest, key, sizeof(key));
    if (rc)
        return rc;
    if (d->step == CHECKING)
        d->op = s3_head(d->run->g->s3, key, on_del_done, d);
    else
        d->op = s3_delete(d->run->g->s3, key, on_del_done, d);
    return d->op ? 0 : -EIO;
}

static void on_del_done(void *ud, const struct s3_reply *r)
{
    struct gc_del *d = ud;
    struct gc_run *run = d->run;
    const struct gc_victim *v = d->v;
    d->op = NULL;
    switch (d->step) {
    case CHECKING:
        if (r->result && r->result != -ENOENT) {
            run->failed++;
            break;
        }
        if (r->result == 0 && r->mtime >= 0 && (uint64_t)r->mtime * 1000 > v->seen_ms) {
            run->kept_since++;
            log_debug("s3 gc: %s was pulled since the listing; kept", d->digest);
            break;
        }
        if (!l2_lease_held(run->g->lease)) {
            run->lost_lease = 1;
            break;
        }
        if (v->reason == EVICT_KEEP) { /* a stray marker: no blob to delete */
            if (r->result == -ENOENT)
                break;
            d->step = DELETING_MARKER;
            if (del_request(d, 1))
                run->failed++;
            else
                return;
            break;
        }
        d->step = DELETING_BLOB;
        if (!del_request(d, 0))
            return;
        run->failed++;
        break;
    case DELETING_BLOB:
        if (r->result && r->result != -ENOENT) {
            run->failed++;
            log_warn("s3 gc: deleting %s failed (%s)", d->digest, r->message);
            break;
        }
        run->evicted++;
        run->bytes += v->size;
        run->by_ttl += v->reason == EVICT_TTL;
        run->by_size += v->reason == EVICT_SIZE;
        metrics_s3_gc_evicted(1, v->size);
        log_debug("s3 gc: evicted %s (%s)", d->digest,
                  v->reason == EVICT_TTL ? "expired" : "for space");
        d->step = DELETING_MARKER;
        if (!del_request(d, 1))
            return;
        break;
    case DELETING_MARKER:
        if (r->result == 0 && v->reason == EVICT_KEEP)
            run->strays++;
        break;
    }
    del_finish(d);
}

static void next_deletes(struct gc_run *run)
{
    while (!run->lost_lease && run->running < L2_GC_AT_ONCE && run->next < run->n_victims) {
        const struct gc_victim *v = &run->victims[run->next++];
        struct gc_del *d = calloc(1, sizeof(*d));
        if (!d) {
            run->failed++;
            continue;
        }
        d->run = run;
        d->v = v;
        d->step = CHECKING;
        digest_of(v->h, d->digest, sizeof(d->digest));
        if (del_request(d, 1)) {
            free(d);
            run->failed++;
            continue;
        }
        for (size_t i = 0; i < L2_GC_AT_ONCE; i++)
            if (!run->inflight[i]) {
                run->inflight[i] = d;
                break;
            }
        run->running++;
    }
    if (!run->running && (run->lost_lease || run->next == run->n_victims))
        run_end(run, !run->lost_lease);
}

/* ---- 2. planning (thread pool) ---- */

static int plan(struct gc_run *run)
{
    if (run->pins) {
        int rc = pin_set_close(run->pins, run->store, run->max_manifest);
        if (rc)
            return rc; /* evicting without knowing what is pinned could evict it */
    }
    qsort(run->markers, run->n_markers, sizeof(*run->markers), by_hash_marker);
    qsort(run->blobs, run->n_blobs, sizeof(*run->blobs), by_hash_blob);
    qsort(run->holds, run->n_holds, sizeof(*run->holds), by_hash_hold);
    struct evict_item *items = calloc(run->n_blobs ? run->n_blobs : 1, sizeof(*items));
    if (!items)
        return -ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < run->n_blobs; i++) {
        struct gc_blob *b = &run->blobs[i];
        while (m < run->n_markers && memcmp(run->markers[m].h, b->h, 32) < 0)
            m++;
        b->marker = -1;
        if (m < run->n_markers && !memcmp(run->markers[m].h, b->h, 32)) {
            b->marker = run->markers[m].mtime;
            run->markers[m].matched = 1;
        }
        int64_t last = b->marker > b->mtime ? b->marker : b->mtime;
        items[i].size = b->size;
        /* a store that gave no time: as if served now, never expired for want of a date */
        items[i].last_access_ms = last > 0 ? (uint64_t)last * 1000 : run->now_ms;
        if (run->n_holds &&
            bsearch(b->h, run->holds, run->n_holds, sizeof(*run->holds), by_hash_hold)) {
            items[i].pinned = 1;
            run->held++;
        } else if (run->pins) {
            char d[DIGEST_MAX];
            digest_of(b->h, d, sizeof(d));
            items[i].pinned = pin_set_reason(run->pins, d) != NULL;
            run->pinned += items[i].pinned;
        }
    }
    struct evict_policy p = {
        .now_ms = run->now_ms, .ttl_ms = run->ttl_ms, .max_size = run->max_size};
    struct evict_summary sum;
    evict_plan(items, run->n_blobs, &p, &sum);
    size_t strays = 0;
    for (size_t i = 0; i < run->n_markers; i++) {
        const struct gc_marker *mk = &run->markers[i];
        strays += !mk->matched && run->ttl_ms && mk->mtime >= 0 &&
                  run->now_ms > (uint64_t)mk->mtime * 1000 &&
                  run->now_ms - (uint64_t)mk->mtime * 1000 > run->ttl_ms;
    }
    size_t n = sum.by_ttl + sum.by_size + strays;
    run->victims = calloc(n ? n : 1, sizeof(*run->victims));
    if (!run->victims) {
        free(items);
        return -ENOMEM;
    }
    for (size_t i = 0; i < run->n_blobs; i++) {
        if (items[i].reason == EVICT_KEEP)
            continue;
        struct gc_victim *v = &run->victims[run->n_victims++];
        memcpy(v->h, run->blobs[i].h, 32);
        v->size = items[i].size;
        v->seen_ms = items[i].last_access_ms;
        v->reason = items[i].reason;
    }
    for (size_t i = 0; i < run->n_markers && run->n_victims < n; i++) {
        const struct gc_marker *mk = &run->markers[i];
        if (mk->matched || !run->ttl_ms || mk->mtime < 0 ||
            run->now_ms <= (uint64_t)mk->mtime * 1000 ||
            run->now_ms - (uint64_t)mk->mtime * 1000 <= run->ttl_ms)
            continue;
        struct gc_victim *v = &run->victims[run->n_victims++];
        memcpy(v->h, mk->h, 32);
        v->seen_ms = (uint64_t)mk->mtime * 1000;
        v->reason = EVICT_KEEP;
    }
    free(items);
    return 0;
}

static void work_plan(uv_work_t *w)
{
    struct gc_run *run = w->data;
    run->plan_rc = plan(run);
}

static void after_plan(uv_work_t *w, int status)
{
    struct gc_run *run = w->data;
    struct l2_gc *g = run->g;
    run->planning = 0;
    if (g->stopping) {
        g->run = NULL;
        run_free(run);
        gc_free_if_done(g);
        return;
    }
    if (status || run->plan_rc) {
        log_error("s3 gc: planning failed (%s)", strerror(status ? ECANCELED : -run->plan_rc));
        run_end(run, 0);
        return;
    }
    log_debug("s3 gc: %zu blob objects and %zu markers listed; %zu to delete", run->n_blobs,
              run->n_markers, run->n_victims);
    next_deletes(run);
}

/* ---- 1. listing ---- */

static void list_page(struct gc_run *run);

static void on_object(void *ud, const struct s3_object *o)
{
    struct gc_run *run = ud;
    unsigned char h[32];
    if (run->listing == LIST_HOLDS) {
        if (parse_key(o->key, "hold", h))
            return;
        if (run->n_holds == run->cap_holds) {
            size_t cap = run->cap_holds ? 2 * run->cap_holds : 256;
            struct gc_hold *grown = realloc(run->holds, cap * sizeof(*grown));
            if (!grown) {
                run->plan_rc = -ENOMEM; /* a hold not seen could let hosted content go */
                return;
            }
            run->holds = grown;
            run->cap_holds = cap;
        }
        memcpy(run->holds[run->n_holds++].h, h, 32);
        return;
    }
    if (run->listing == LIST_MARKERS) {
        if (parse_key(o->key, "access", h))
            return;
        if (run->n_markers == run->cap_markers) {
            size_t cap = run->cap_markers ? 2 * run->cap_markers : 1024;
            struct gc_marker *grown = realloc(run->markers, cap * sizeof(*grown));
            if (!grown) {
                run->plan_rc = -ENOMEM; /* a marker not seen makes its blob look older */
                return;
            }
            run->markers = grown;
            run->cap_markers = cap;
        }
        struct gc_marker *m = &run->markers[run->n_markers++];
        memcpy(m->h, h, 32);
        m->mtime = o->mtime;
        m->matched = 0;
        return;
    }
    if (parse_key(o->key, "blobs", h))
        return;
    if (run->n_blobs == run->cap_blobs) {
        size_t cap = run->cap_blobs ? 2 * run->cap_blobs : 1024;
        struct gc_blob *grown = realloc(run->blobs, cap * sizeof(*grown));
        if (!grown) {
            run->plan_rc = -ENOMEM; /* a blob not seen is not planned: the run stops */
            return;
        }
        run->blobs = grown;
        run->cap_blobs = cap;
    }
    struct gc_blob *b = &run->blobs[run->n_blobs++];
    memcpy(b->h, h, 32);
    b->size = o->size;
    b->mtime = o->mtime;
}

static void on_page(void *ud, const struct s3_reply *r)
{
    struct gc_run *run = ud;
    run->op = NULL;
    if (r->result || run->plan_rc) {
        log_warn("s3 gc: listing %s failed (%s); nothing deleted this round", listed[run->listing],
                 r->result ? r->message : strerror(-run->plan_rc));
        run_end(run, 0);
        return;
    }
    snprintf(run->token, sizeof(run->token), "%s", r->message ? r->message : "");
    if (!run->token[0] && run->listing != LIST_BLOBS) {
        run->listing++;
    } else if (!run->token[0]) {
        if (!l2_lease_held(run->g->lease)) {
            run->lost_lease = 1;
            run_end(run, 0);
            return;
        }
        run->now_ms = clock_wall_ms();
        run->planning = 1;
        run->work.data = run;
        if (uv_queue_work(run->g->c->loop, &run->work, work_plan, after_plan)) {
            run->planning = 0;
            run_end(run, 0);
        }
        return;
    }
    list_page(run);
}

static void list_page(struct gc_run *run)
{
    if (!(run->op = s3_list(run->g->s3, listed[run->listing], run->token, L2_GC_PAGE, on_object,
                            on_page, run)))
        run_end(run, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct l2_gc *g = t->data;
    struct cache *c = g->c;
    const struct config *cfg = c->cfg;
    uint64_t ttl = cfg->s3_ttl_set ? cfg->s3_ttl_ms : cfg->ttl_ms;
    if (g->run || g->stopping || !l2_lease_held(g->lease) || (!ttl && !cfg->s3_max_size_bytes))
        return;
    if (index_loading(c))
        return; /* the pins need the tags; the next round */
    struct gc_run *run = calloc(1, sizeof(*run));
    if (!run)
        return;
    run->g = g;
    run->store = c->store;
    run->max_manifest = cfg->max_manifest_bytes;
    run->ttl_ms = ttl;
    run->max_size = cfg->s3_max_size_bytes;
    run->started_us = clock_mono_us();
    if (cache__pin_roots(c, &run->pins)) {
        log_error("s3 gc: out of memory for what is pinned; not run");
        free(run);
        return;
    }
    g->run = run;
    list_page(run);
}

struct l2_gc *l2_gc_start(struct cache *c, struct s3_client *s3, struct l2_lease *lease)
{
    struct l2_gc *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->c = c;
    g->s3 = s3;
    g->lease = lease;
    uint64_t every = c->cfg->gc_interval_ms;
    uv_timer_init(c->loop, &g->timer);
    g->timer.data = g;
    uv_unref((uv_handle_t *)&g->timer);
    uv_timer_start(&g->timer, on_timer, every < L2_GC_FIRST_MS ? every : L2_GC_FIRST_MS, every);
    return g;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct l2_gc *g = h->data;
    g->timer_closed = 1;
    gc_free_if_done(g);
}

/* Before the client is freed: its requests in flight go with it and call nothing, so what
 * they would have freed is freed here. A planning on the thread pool frees its run when it
 * comes back. */
void l2_gc_stop(struct l2_gc *g)
{
    if (!g)
        return;
    g->stopping = 1;
    uv_timer_stop(&g->timer);
    struct gc_run *run = g->run;
    if (run && !run->planning) {
        for (size_t i = 0; i < L2_GC_AT_ONCE; i++)
            free(run->inflight[i]);
        g->run = NULL;
        run_free(run);
    }
    uv_close((uv_handle_t *)&g->timer, on_timer_closed);
}
