/* SPDX-License-Identifier: Apache-2.0 */
#include "cache/evict.h"

#include <stdlib.h>

static int by_access(const void *a, const void *b)
{
    const struct evict_item *x = *(struct evict_item *const *)a;
    const struct evict_item *y = *(struct evict_item *const *)b;
    if (x->last_access_ms != y->last_access_ms)
        return x->last_access_ms < y->last_access_ms ? -1 : 1;
    return x->size > y->size ? -1 : x->size < y->size; /* equal age: larger first */
}

void evict_plan(struct evict_item *items, size_t n, const struct evict_policy *p,
                struct evict_summary *out)
{
    uint64_t kept = 0;
    out->by_ttl = out->by_size = 0;
    out->bytes = out->ttl_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        struct evict_item *it = &items[i];
        it->reason = EVICT_KEEP;
        if (!it->pinned && p->ttl_ms && p->now_ms > it->last_access_ms &&
            p->now_ms - it->last_access_ms > p->ttl_ms) {
            it->reason = EVICT_TTL;
            out->by_ttl++;
            out->bytes += it->size;
            out->ttl_bytes += it->size;
        } else {
            kept += it->size;
        }
    }

    /* How much more must go: down to the low watermark of the cap, and up to the free floor. */
    uint64_t need = 0;
    if (p->max_size && kept > p->max_size)
        need = kept - p->max_size * EVICT_LOW_WATERMARK_PCT / 100;
    if (p->min_free) {
        uint64_t freed = out->bytes; /* TTL evictions free space too */
        uint64_t free_after = p->free_bytes + freed;
        if (free_after < p->min_free) {
            uint64_t want = p->min_free - free_after + p->min_free / 10;
            if (want > need)
                need = want;
        }
    }
    if (need == 0 || n == 0) {
        out->kept_bytes = kept;
        return;
    }

    struct evict_item **order = malloc(n * sizeof(*order));
    if (!order) {
        out->kept_bytes = kept;
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].reason == EVICT_KEEP && !items[i].pinned)
            order[m++] = &items[i];
    qsort(order, m, sizeof(*order), by_access);
    uint64_t freed = 0;
    for (size_t i = 0; i < m && freed < need; i++) {
        order[i]->reason = EVICT_SIZE;
        out->by_size++;
        out->bytes += order[i]->size;
        freed += order[i]->size;
        kept -= order[i]->size;
    }
    free(order);
    out->kept_bytes = kept;
}
