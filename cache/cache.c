/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/impl.h"
#include "cache/pins.h"
#include "db/db.h"
#include "metrics/metrics.h"
#include "util/json.h"
#include "util/clock.h"
#include "util/log.h"

const char *cache_outcome_name(enum cache_outcome o)
{
    switch (o) {
    case OUTCOME_HIT: return "hit";
    case OUTCOME_MISS: return "miss";
    case OUTCOME_FILL: return "fill";
    case OUTCOME_STALE: return "stale";
    default: return "-";
    }
}

void cache_note_access(struct cache *c, struct upstream *u, const char *repo, const char *digest,
                       enum cache_outcome outcome)
{
    uint64_t now = clock_wall_ms();
    db_touch(c->db, digest, now);
    db_ref(c->db, upstream_name(u), repo, digest);
    known_note(c, u, repo, digest);
    if (outcome == OUTCOME_HIT || outcome == OUTCOME_STALE)
        db_set_counter(c->db, "hits", ++c->hits);
    else if (outcome == OUTCOME_MISS || outcome == OUTCOME_FILL)
        db_set_counter(c->db, "misses", ++c->misses);
}

void cache_count_hits(struct cache *c, uint64_t n)
{
    if (!n)
        return;
    c->hits += n;
    db_set_counter(c->db, "hits", c->hits);
}

int cache_has_manifest(struct cache *c, const char *digest)
{
    return index_manifest(c, digest) != NULL;
}

int cache_tag_cached(struct cache *c, const struct upstream *u, const char *repo,
                     const char *tag, uint64_t *validated_ms)
{
    const struct tag_entry *t = index_tag(c, u, repo, tag);
    if (!t || !index_manifest(c, t->digest))
        return 0;
    *validated_ms = t->validated_ms;
    return 1;
}

int cache_tag_validated(struct cache *c, const struct upstream *u, const char *repo,
                        const char *tag, const char *digest, uint64_t *validated_ms)
{
    const struct tag_entry *t = index_tag(c, u, repo, tag);
    if (!t || strcmp(t->digest, digest) != 0)
        return 0;
    *validated_ms = t->validated_ms;
    return 1;
}

/* What the metrics read of the cache: all of it in memory already. */
static void figures(void *ud, struct metrics_live *out)
{
    struct cache *c = ud;
    uint64_t manifests = map_count(c->manifests);
    out->store_bytes += c->stored_bytes;
    out->manifests += manifests;
    out->blobs += c->stored_files > manifests ? c->stored_files - manifests : 0;
    out->tags += map_count(c->tags);
    out->fills[METRICS_BLOB] += map_count(c->fills);
    out->fills[METRICS_MANIFEST] += map_count(c->manifest_flights);
}

/* The index is all in memory: a GC held back meanwhile (what is pinned is found through the
 * tags) runs now. */
static void index_loaded(struct cache *c)
{
    if (c->gc_again && !c->stopping && !c->gc_running) {
        c->gc_again = 0;
        cache_gc(c, "scheduled");
    }
}

int cache_new(uv_loop_t *loop, const struct config *cfg, struct store *store, struct db *db,
              struct upstream_client *up, struct cache **out)
{
    struct cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->cfg = cfg;
    c->store = store;
    c->db = db;
    c->up = up;
    int r = index_init(c);
    c->manifest_flights = map_new();
    c->fills = map_new();
    c->blob_heads = map_new();
    if (r || !c->manifest_flights || !c->fills || !c->blob_heads) {
        cache_free(c);
        return -ENOMEM;
    }
    char why[1024];
    if ((r = pins_new(cfg, &c->pins, why, sizeof(why)))) {
        log_error("%s: %s", cfg->source ? cfg->source : "config", why);
        cache_free(c);
        return r;
    }
    r = open_files_init(c);
    purge_watch_init(c);
    if (!r) /* in the background: serving does not wait for it */
        r = index_load_background(c, index_loaded);
    if (!r)
        r = referrers_init(c);
    if (!r)
        r = known_init(c);
    if (r) {
        cache_free(c);
        return r;
    }
    db_set_counter(db, "started_ms", clock_wall_ms());
    db_set_counter(db, "hits", 0);
    db_set_counter(db, "misses", 0);
    log_info("index: loading the tags and manifests in the background (misses ask the "
             "database meanwhile)");
    r = health_init(c);
    if (!r)
        r = l2_start(c);
    if (r) {
        cache_free(c);
        return r;
    }
    open_files_start(c);
    purge_watch_start(c);
    metrics_add_source(figures, c);
    *out = c;
    return 0;
}

void cache_shutdown(struct cache *c)
{
    index_load_stop(c);
    health_stop(c);
    cache_stop_lifecycle(c);
    purge_watch_stop(c);
    open_files_stop(c);
    manifests_free_all(c);
    referrers_stop(c);
    tags_free_all(c);
    blobs_free_all(c);
    blobs_free_heads(c);
    known_stop(c);
    l2_stop(c); /* after the fills: none of them waits on the bucket now */
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    metrics_remove_source(figures, c);
    index_free(c);
    health_free(c);
    referrers_free(c);
    known_free(c);
    map_free(c->manifest_flights);
    map_free(c->fills);
    blobs_free_heads(c); /* when cache_shutdown did not run */
    l2_stop(c);
    open_files_stop(c); /* after cache_shutdown: only descriptors are left to close */
    pins_free(c->pins);
    free(c);
}


void cache_set_cluster(struct cache *c, struct cluster *cl)
{
    c->cluster = cl;
}
