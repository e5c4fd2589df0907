/* SPDX-License-Identifier: Apache-2.0 */
/* The cache's lifecycle while serving: scheduled GC runs, a run as soon as the store grows past
 * its cap, and bringing the in-memory index in line with what a run evicted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/gc.h"
#include "cache/impl.h"
#include "cache/pins.h"
#include "db/db.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "util/background.h"
#include "util/clock.h"
#include "util/log.h"

#define FIRST_GC_DELAY_MS 5000

struct gc_job {
    struct cache *c;
    struct gc_options o;
    struct gc_report r;
    char **pinned;
    size_t n_fills;
    struct pin_set *pins; /* roots from the index; closed on the thread pool */
    int rc;
    uint64_t started_us;
    struct cache_stored_mark mark; /* when the run was queued: what it cannot have counted */
    const char *up_names[CONFIG_MAX_UPSTREAMS];
    uint64_t up_max[CONFIG_MAX_UPSTREAMS];
};

static int pin_fill(const char *key, void *value, void *ud)
{
    (void)value;
    struct gc_job *job = ud;
    const char *sep = strrchr(key, KEY_SEP[0]); /* upstream KEY_SEP digest */
    char *d = strdup(sep ? sep + 1 : key);
    if (d)
        job->pinned[job->o.n_pinned++] = d;
    return 0;
}

struct pin_roots {
    struct cache *c;
    struct pin_set *pins;
};

static int pin_tag(const char *key, void *value, void *ud)
{
    struct pin_roots *pr = ud;
    const struct tag_entry *t = value;
    char k[TAG_KEY_MAX]; /* upstream KEY_SEP repo KEY_SEP tag */
    snprintf(k, sizeof(k), "%s", key);
    char *a = strchr(k, KEY_SEP[0]), *b = a ? strchr(a + 1, KEY_SEP[0]) : NULL;
    if (!b)
        return 0;
    *a = *b = '\0';
    return pins_add_tag(pr->c->pins, pr->pins, k, a + 1, b + 1, t->digest);
}

int cache__pin_roots(struct cache *c, struct pin_set **out)
{
    *out = NULL;
    if (!pins_count(c->pins))
        return 0;
    struct pin_roots pr = {c, pin_set_new()};
    if (!pr.pins || map_each(c->tags, pin_tag, &pr) || pins_add_digests(c->pins, pr.pins)) {
        pin_set_free(pr.pins);
        return -ENOMEM;
    }
    *out = pr.pins;
    return 0;
}

static int pin_one(void *ud, const char *digest, const char *reason)
{
    (void)reason;
    struct gc_job *job = ud;
    char *d = strdup(digest);
    if (!d)
        return -ENOMEM;
    job->pinned[job->o.n_pinned++] = d;
    return 0;
}

/* Adds the pinned closure to what the run keeps (beside the fills in progress). */
static int add_pins(struct gc_job *job)
{
    if (!job->pins)
        return 0;
    int rc = pin_set_close(job->pins, job->c->store, job->c->cfg->max_manifest_bytes);
    size_t n = pin_set_count(job->pins);
    char **grown = rc ? NULL : realloc(job->pinned, (job->n_fills + n + 1) * sizeof(char *));
    if (!grown)
        return rc ? rc : -ENOMEM;
    job->pinned = grown;
    job->o.pinned = grown;
    return pin_set_each(job->pins, pin_one, job);
}

static void job_work(struct db *db, void *ud)
{
    struct gc_job *job = ud;
    job->rc = add_pins(job);
    if (job->rc) /* evicting without knowing what is pinned could evict it */
        log_error("gc: cannot read what is pinned: %d", job->rc);
    else {
        struct background bg; /* a long run gives the CPU to the loop's hits first */
        background_enter(&bg);
        job->rc = gc_run(db, job->c->store, &job->o, &job->r);
        background_leave(&bg);
    }
}

/* Forgets in memory what the run removed from the index and the store. */
static void apply_report(struct cache *c, const struct gc_report *r)
{
    if (r->tag_keys_listed || !r->n_digests) /* the run listed the tags that went */
        index_forget_evicted(c, r->digests, r->n_digests, r->tag_keys, r->n_tag_keys);
    else
        index_forget_digests(c, r->digests, r->n_digests);
    if (r->n_digests)
        referrers_forget_subjects(c, r->digests, r->n_digests);
    for (size_t i = 0; i < r->n_digests; i++)
        open_files_forget(c, r->digests[i]);
}

static void job_done(void *ud)
{
    struct gc_job *job = ud;
    struct cache *c = job->c;
    struct metrics_gc_run run = {
        .started_ms = job->o.now_ms,
        .duration_ms = job->rc ? (clock_mono_us() - job->started_us) / 1000 : job->r.duration_ms,
        .ok = job->rc == 0,
        .files = job->rc ? 0 : job->r.evicted,
        .evicted_ttl_bytes = job->rc ? 0 : job->r.evicted_ttl_bytes,
        .evicted_size_bytes = job->rc ? 0 : job->r.evicted_bytes - job->r.evicted_ttl_bytes,
        .pinned_files = job->rc ? 0 : job->r.pinned_files,
        .pinned_bytes = job->rc ? 0 : job->r.pinned_bytes,
    };
    snprintf(run.reason, sizeof(run.reason), "%s", job->o.reason ? job->o.reason : "");
    metrics_gc_run(&run);
    if (job->rc) {
        log_error("gc (%s) failed: %d", job->o.reason, job->rc);
    } else {
        apply_report(c, &job->r);
        cache_set_stored(c, job->r.kept_bytes, job->r.scanned - job->r.evicted, &job->mark);
        log_info("gc (%s): evicted %zu of %zu (%zu expired, %zu for space), %llu bytes, "
                 "%zu tags forgotten; %llu bytes kept; %llu ms",
                 job->o.reason, job->r.evicted, job->r.scanned, job->r.by_ttl, job->r.by_size,
                 (unsigned long long)job->r.evicted_bytes, job->r.tags_forgotten,
                 (unsigned long long)job->r.kept_bytes, (unsigned long long)job->r.duration_ms);
    }
    gc_report_free(&job->r);
    pin_set_free(job->pins);
    for (size_t i = 0; i < job->o.n_pinned; i++)
        free(job->pinned[i]);
    free(job->pinned);
    free(job);
    c->gc_running = 0;
    if (c->gc_again && !c->stopping) {
        c->gc_again = 0;
        cache_gc(c, "size");
    }
}

void cache_gc(struct cache *c, const char *reason)
{
    if (c->stopping)
        return;
    if (c->gc_running || index_loading(c)) { /* after the load: the pins need the tags */
        c->gc_again = 1;
        return;
    }
    struct gc_job *job = calloc(1, sizeof(*job));
    size_t fills = map_count(c->fills);
    if (!job || !(job->pinned = calloc(fills ? fills : 1, sizeof(char *)))) {
        free(job);
        return;
    }
    job->c = c;
    job->started_us = clock_mono_us();
    job->o.now_ms = clock_wall_ms();
    job->o.ttl_ms = c->cfg->ttl_ms;
    job->o.max_size = c->cfg->max_size_bytes;
    job->o.min_free = c->cfg->min_free_bytes;
    job->o.reason = reason;
    for (size_t i = 0; i < c->cfg->n_upstreams && i < CONFIG_MAX_UPSTREAMS; i++) {
        job->up_names[i] = c->cfg->upstreams[i].name;
        job->up_max[i] = c->cfg->upstreams[i].max_size_bytes;
    }
    job->o.upstream_names = job->up_names;
    job->o.upstream_max = job->up_max;
    job->o.n_upstreams = c->cfg->n_upstreams;
    job->o.tag_keys = 1;
    job->o.tag_key_sep = KEY_SEP[0];
    c->bytes_since_gc = 0;
    map_each(c->fills, pin_fill, job);
    job->n_fills = job->o.n_pinned;
    job->o.pinned = job->pinned;
    if (cache__pin_roots(c, &job->pins)) {
        log_error("gc (%s): out of memory for what is pinned; not run", reason);
        goto fail;
    }
    cache_stored_mark(c, &job->mark);
    if (db_call(c->db, job_work, job_done, job))
        goto fail;
    c->gc_running = 1;
    return;
fail:
    pin_set_free(job->pins);
    for (size_t i = 0; i < job->o.n_pinned; i++)
        free(job->pinned[i]);
    free(job->pinned);
    free(job);
}

void cache_stored(struct cache *c, uint64_t bytes)
{
    c->stored_bytes += bytes;
    c->stored_files++;
    c->stored_added.files++;
    c->stored_added.bytes += bytes;
    const struct config *cfg = c->cfg;
    /* an upstream's own cap: which upstream the bytes count toward is known to the GC only,
     * so it runs whenever a tenth of the smallest such cap was stored since the last run */
    uint64_t smallest = 0;
    for (size_t i = 0; i < cfg->n_upstreams && i < CONFIG_MAX_UPSTREAMS; i++) {
        uint64_t m = cfg->upstreams[i].max_size_bytes;
        if (m && (!smallest || m < smallest))
            smallest = m;
    }
    c->bytes_since_gc += bytes;
    if ((cfg->max_size_bytes && c->stored_bytes > cfg->max_size_bytes) ||
        (cfg->min_free_bytes && store_free_bytes(c->store) < cfg->min_free_bytes) ||
        (smallest && c->bytes_since_gc > smallest / 10))
        cache_gc(c, "size");
}

void cache_count_files(struct cache *c, uint64_t files)
{
    c->stored_files = files;
}

void cache_stored_mark(const struct cache *c, struct cache_stored_mark *out)
{
    *out = c->stored_added;
}

void cache_set_stored(struct cache *c, uint64_t bytes, uint64_t files,
                      const struct cache_stored_mark *since)
{
    c->stored_bytes = bytes + (c->stored_added.bytes - since->bytes);
    c->stored_files = files + (c->stored_added.files - since->files);
}

void cache_set_unverified(struct cache *c, int on)
{
    __atomic_store_n(&c->unverified, on, __ATOMIC_RELAXED);
}

int cache_unknown_file_bad(struct cache *c, const char *digest)
{
    char mt[8];
    uint64_t size, last;
    if (db_blob_info(c->db, digest, mt, sizeof(mt), &size, &last) != -ENOENT)
        return 0; /* the index knows it (or cannot say): served as always */
    if (store_verify(c->store, digest) != -EBADMSG)
        return 0;
    log_warn("store: %s does not match its name; removed", digest);
    store_remove(c->store, digest);
    return 1;
}

static void on_gc_timer(uv_timer_t *t)
{
    cache_gc(t->data, "scheduled");
}

void cache_start(struct cache *c, uint64_t stored_bytes)
{
    c->stored_bytes = stored_bytes;
    uint64_t interval = c->cfg->gc_interval_ms;
    uv_timer_init(c->loop, &c->gc_timer);
    c->gc_timer.data = c;
    uv_timer_start(&c->gc_timer, on_gc_timer,
                   interval < FIRST_GC_DELAY_MS ? interval : FIRST_GC_DELAY_MS, interval);
    c->timer_started = 1;
}

void cache_stop_lifecycle(struct cache *c)
{
    c->stopping = 1;
    if (c->timer_started) {
        c->timer_started = 0;
        uv_timer_stop(&c->gc_timer);
        uv_close((uv_handle_t *)&c->gc_timer, NULL);
    }
}
