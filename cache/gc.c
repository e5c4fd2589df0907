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

/* Index first, then the store. */
static int remove_evicted(struct db *db, struct store *store, const struct gc_options *o,
                          struct gc_report *r, uint64_t *sizes)
{
    if (!o->dry_run && r->n_digests) {
        /* Index first: a crash between the two leaves files without rows, which the next
         * start verifies and adopts; never rows without files being served. */
        int rc = o->journal ? db_purge(db, NULL, 0, r->digests, sizes, r->n_digests, o->now_ms,
                                       &r->tags_forgotten, &r->seq)
                            : db_forget_blobs(db, r->digests, r->n_digests, &r->tags_forgotten);
        if (rc)
            return rc;
        for (size_t i = 0; i < r->n_digests; i++) {
            int e = store_remove(store, r->digests[i]);
            if (e && e != -ENOENT)
                log_warn("gc: cannot remove %s: %s", r->digests[i], strerror(-e));
        }
    }
    return 0;
}

static void record_run(struct db *db, const struct gc_options *o, struct gc_report *r,
                       uint64_t t0)
{
    r->duration_ms = (clock_mono_us() - t0) / 1000;
    struct db_gc_run run = {o->now_ms, r->duration_ms, o->dry_run, r->evicted, r->evicted_bytes,
                            ""};
    snprintf(run.reason, sizeof(run.reason), "%s", o->reason ? o->reason : "manual");
    db_add_gc_run(db, &run);
}

/* With an upstream's own cap: which cap a blob counts toward depends on every blob's
 * references, so the whole index is read and planned in memory (evict_plan). */
static int gc_run_planned(struct db *db, struct store *store, const struct gc_options *o,
                          struct gc_report *r)
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
    r->rows_read = n;
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
    if ((rc = remove_evicted(db, store, o, r, sizes)))
        goto out;
    record_run(db, o, r, t0);
out:
    free(rows);
    free(items);
    free(sizes);
    free(group_of);
    if (rc)
        gc_report_free(r);
    return rc;
}

/* ---- without an upstream's own cap: SQLite picks the victims ---- */

#define GC_PAGE 1000 /* rows read per query, least recently used first */

struct lru_walk {
    const struct gc_options *o;
    struct gc_report *r;
    struct map *pinned;
    uint64_t total;     /* bytes of the candidates (hosted content is none) */
    uint64_t free_bytes;
    int need_known;     /* past the expired ones: need is set */
    uint64_t need;      /* bytes still to free for the cap and the free floor */
    uint64_t *sizes;
    size_t cap;
    int done;
    int rc;
};

static int expired(const struct gc_options *o, uint64_t last_access_ms)
{
    return o->ttl_ms && o->now_ms > last_access_ms && o->now_ms - last_access_ms > o->ttl_ms;
}

/* What the cap and the free floor still want once the expired ones are gone (as evict_plan). */
static uint64_t space_needed(const struct lru_walk *w)
{
    const struct gc_options *o = w->o;
    uint64_t kept = w->total - w->r->evicted_ttl_bytes, need = 0;
    if (o->max_size && kept > o->max_size)
        need = kept - o->max_size * EVICT_LOW_WATERMARK_PCT / 100;
    if (o->min_free) {
        uint64_t free_after = w->free_bytes + w->r->evicted_ttl_bytes;
        if (free_after < o->min_free) {
            uint64_t want = o->min_free - free_after + o->min_free / 10;
            if (want > need)
                need = want;
        }
    }
    return need;
}

static int take(struct lru_walk *w, const struct db_lru_row *row)
{
    struct gc_report *r = w->r;
    if (r->n_digests == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        char **d = realloc(r->digests, cap * sizeof(*d));
        if (d)
            r->digests = d;
        uint64_t *s = d ? realloc(w->sizes, cap * sizeof(*s)) : NULL;
        if (!s)
            return -ENOMEM;
        w->sizes = s;
        w->cap = cap;
    }
    if (!(r->digests[r->n_digests] = strdup(row->digest)))
        return -ENOMEM;
    w->sizes[r->n_digests++] = row->size;
    r->evicted_bytes += row->size;
    return 0;
}

static int on_lru_row(void *ud, const struct db_lru_row *row)
{
    struct lru_walk *w = ud;
    struct gc_report *r = w->r;
    if (w->pinned && map_get(w->pinned, row->digest))
        return 0;
    if (!w->need_known && expired(w->o, row->last_access_ms)) {
        if ((w->rc = take(w, row)))
            return 1;
        r->by_ttl++;
        r->evicted_ttl_bytes += row->size;
        return 0;
    }
    if (!w->need_known) {
        w->need_known = 1;
        w->need = space_needed(w);
    }
    if (!w->need) {
        w->done = 1;
        return 1;
    }
    if ((w->rc = take(w, row)))
        return 1;
    r->by_size++;
    w->need = row->size >= w->need ? 0 : w->need - row->size;
    if (!w->need)
        w->done = 1;
    return w->done;
}

/* Files and bytes of the pinned digests that have a row. */
static int count_pinned(struct db *db, struct lru_walk *w)
{
    const struct gc_options *o = w->o;
    if (!o->n_pinned)
        return 0;
    if (!(w->pinned = map_new()))
        return -ENOMEM;
    for (size_t i = 0; i < o->n_pinned; i++) {
        if (map_get(w->pinned, o->pinned[i]))
            continue;
        if (map_put(w->pinned, o->pinned[i], (void *)1) == MAP_NOMEM)
            return -ENOMEM;
        char mt[8];
        uint64_t size, last;
        if (db_blob_info(db, o->pinned[i], mt, sizeof(mt), &size, &last) == 0) {
            w->r->pinned_files++;
            w->r->pinned_bytes += size;
        }
    }
    return 0;
}

static int gc_run_lru(struct db *db, struct store *store, const struct gc_options *o,
                      struct gc_report *r)
{
    uint64_t t0 = clock_mono_us();
    struct lru_walk w = {.o = o, .r = r};
    uint64_t files, bytes, hosted_files, hosted_bytes;
    int rc = db_blob_totals(db, &files, &bytes);
    if (!rc)
        rc = db_hosted_totals(db, &hosted_files, &hosted_bytes);
    if (!rc)
        rc = count_pinned(db, &w);
    if (rc)
        goto out;
    r->scanned = files > hosted_files ? files - hosted_files : 0;
    w.total = bytes > hosted_bytes ? bytes - hosted_bytes : 0;
    w.free_bytes = o->min_free ? store_free_bytes(store) : 0;
    if (!o->ttl_ms) { /* nothing expires: the cap and the floor alone decide */
        w.need_known = 1;
        w.need = space_needed(&w);
        w.done = !w.need;
    }
    uint64_t last_ms = 0;
    int64_t rowid = 0;
    while (!w.done) {
        int n = db_each_lru(db, &last_ms, &rowid, GC_PAGE, on_lru_row, &w);
        if (n < 0 || w.rc) {
            rc = n < 0 ? n : w.rc;
            goto out;
        }
        r->rows_read += (size_t)n;
        if (n < GC_PAGE)
            break;
    }
    r->evicted = r->n_digests;
    r->kept_bytes = w.total > r->evicted_bytes ? w.total - r->evicted_bytes : 0;
    if (!o->dry_run && r->n_digests && o->tag_keys) {
        /* the tags that go with them, for the daemon to forget in memory without a walk */
        for (size_t i = 0; i < r->n_digests && !rc; i++)
            rc = db_each_tag_of(db, r->digests[i], o->tag_key_sep, gc_note_tag_key, r);
        if (rc)
            goto out;
        r->tag_keys_listed = 1;
    }
    if ((rc = remove_evicted(db, store, o, r, w.sizes)))
        goto out;
    record_run(db, o, r, t0);
out:
    map_free(w.pinned);
    free(w.sizes);
    if (rc)
        gc_report_free(r);
    return rc;
}

int gc_note_tag_key(void *ud, const char *key)
{
    struct gc_report *r = ud;
    if (r->n_tag_keys == r->tag_keys_cap) {
        size_t cap = r->tag_keys_cap ? r->tag_keys_cap * 2 : 64;
        char **k = realloc(r->tag_keys, cap * sizeof(*k));
        if (!k)
            return -ENOMEM;
        r->tag_keys = k;
        r->tag_keys_cap = cap;
    }
    if (!(r->tag_keys[r->n_tag_keys] = strdup(key)))
        return -ENOMEM;
    r->n_tag_keys++;
    return 0;
}

int gc_run(struct db *db, struct store *store, const struct gc_options *o, struct gc_report *r)
{
    for (size_t i = 0; i < o->n_upstreams; i++)
        if (o->upstream_max[i])
            return gc_run_planned(db, store, o, r);
    memset(r, 0, sizeof(*r));
    return gc_run_lru(db, store, o, r);
}

void gc_report_free(struct gc_report *r)
{
    for (size_t i = 0; i < r->n_digests; i++)
        free(r->digests[i]);
    free(r->digests);
    r->digests = NULL;
    r->n_digests = 0;
    for (size_t i = 0; i < r->n_tag_keys; i++)
        free(r->tag_keys[i]);
    free(r->tag_keys);
    r->tag_keys = NULL;
    r->n_tag_keys = r->tag_keys_cap = 0;
}
