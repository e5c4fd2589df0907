/* SPDX-License-Identifier: Apache-2.0 */
#include "cache/gc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache/evict.h"
#include "db/db.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/map.h"

static int is_pinned(const struct gc_options *o, const char *digest)
{
    for (size_t i = 0; i < o->n_pinned; i++)
        if (strcmp(o->pinned[i], digest) == 0)
            return 1;
    return 0;
}

struct groups {
    const struct gc_options *o;
    struct map *of; /* digest -> group (1 + index in o->upstream_names), as a pointer */
};

static int on_blob_upstream(void *ud, const char *digest, const char *upstream)
{
    struct groups *g = ud;
    for (size_t i = 0; i < g->o->n_upstreams; i++)
        if (g->o->upstream_max[i] && strcmp(g->o->upstream_names[i], upstream) == 0)
            return map_put(g->of, digest, (void *)(uintptr_t)(i + 1)) == MAP_NOMEM ? -ENOMEM
                                                                                  : 0;
    return 0;
}

/* Which upstream's own cap each blob counts toward: the upstream whose repositories referenced
 * it, when exactly one did and it has a cap. */
static int load_groups(struct db *db, const struct gc_options *o, struct groups *g)
{
    g->o = o;
    g->of = NULL;
    size_t capped = 0;
    for (size_t i = 0; i < o->n_upstreams; i++)
        capped += o->upstream_max[i] != 0;
    if (!capped)
        return 0;
    if (!(g->of = map_new()))
        return -ENOMEM;
    return db_each_blob_upstream(db, on_blob_upstream, g);
}

int gc_run(struct db *db, struct store *store, const struct gc_options *o, struct gc_report *r)
{
    uint64_t t0 = clock_mono_us();
    struct db_blob *rows = NULL;
    struct evict_item *items = NULL;
    uint64_t *sizes = NULL;
    size_t *group_of = NULL;
    size_t n = 0;
    memset(r, 0, sizeof(*r));
    int rc = db_list_blobs(db, &rows, &n);
    if (rc)
        return rc;
    r->scanned = n;
    items = calloc(n ? n : 1, sizeof(*items));
    r->digests = calloc(n ? n : 1, sizeof(*r->digests));
    if (!items || !r->digests) {
        rc = -ENOMEM;
        goto out;
    }
    struct groups groups;
    if ((rc = load_groups(db, o, &groups)) ||
        (groups.of && !(group_of = calloc(n ? n : 1, sizeof(*group_of))))) {
        map_free(groups.of);
        rc = rc ? rc : -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        items[i].size = rows[i].size;
        items[i].last_access_ms = rows[i].last_access_ms;
        items[i].pinned = is_pinned(o, rows[i].digest);
        if (items[i].pinned) {
            r->pinned_files++;
            r->pinned_bytes += rows[i].size;
        }
        if (group_of)
            group_of[i] = (size_t)(uintptr_t)map_get(groups.of, rows[i].digest);
    }
    map_free(groups.of);
    struct evict_policy policy = {o->now_ms,   o->ttl_ms,      o->max_size,
                                  o->min_free, store_free_bytes(store), group_of,
                                  o->upstream_max, o->n_upstreams};
    struct evict_summary sum;
    evict_plan(items, n, &policy, &sum);
    sizes = calloc(n ? n : 1, sizeof(*sizes));
    if (!sizes) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (items[i].reason == EVICT_KEEP)
            continue;
        if (!(r->digests[r->n_digests] = strdup(rows[i].digest))) {
            rc = -ENOMEM;
            goto out;
        }
        sizes[r->n_digests++] = rows[i].size;
    }
    r->by_upstream_size = sum.by_group;
    r->evicted = r->n_digests;
    r->by_ttl = sum.by_ttl;
    r->by_size = sum.by_size;
    r->evicted_bytes = sum.bytes;
    r->evicted_ttl_bytes = sum.ttl_bytes;
    r->kept_bytes = sum.kept_bytes;
    if (!o->dry_run && r->n_digests) {
        /* Index first: a crash between the two leaves files without rows, which the next
         * start verifies and adopts; never rows without files being served. */
        rc = o->journal ? db_purge(db, NULL, 0, r->digests, sizes, r->n_digests, o->now_ms,
                                   &r->tags_forgotten, &r->seq)
                        : db_forget_blobs(db, r->digests, r->n_digests, &r->tags_forgotten);
        if (rc)
            goto out;
        for (size_t i = 0; i < r->n_digests; i++) {
            int e = store_remove(store, r->digests[i]);
            if (e && e != -ENOENT)
                log_warn("gc: cannot remove %s: %s", r->digests[i], strerror(-e));
        }
    }
    r->duration_ms = (clock_mono_us() - t0) / 1000;
    struct db_gc_run run = {o->now_ms, r->duration_ms, o->dry_run, r->evicted, r->evicted_bytes,
                            ""};
    snprintf(run.reason, sizeof(run.reason), "%s", o->reason ? o->reason : "manual");
    db_add_gc_run(db, &run);
out:
    free(rows);
    free(items);
    free(sizes);
    free(group_of);
    if (rc)
        gc_report_free(r);
    return rc;
}

void gc_report_free(struct gc_report *r)
{
    for (size_t i = 0; i < r->n_digests; i++)
        free(r->digests[i]);
    free(r->digests);
    r->digests = NULL;
    r->n_digests = 0;
}
