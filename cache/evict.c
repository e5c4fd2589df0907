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

static size_t group_of(const struct evict_item *items, const struct evict_policy *p,
                       const struct evict_item *it)
{
    return p->group_of ? p->group_of[it - items] : 0;
}

/* Bytes of group g that the plan keeps so far. */
static uint64_t group_bytes(const struct evict_item *items, size_t n,
                            const struct evict_policy *p, size_t g)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].reason == EVICT_KEEP && group_of(items, p, &items[i]) == g)
            bytes += items[i].size;
    return bytes;
}

/* Evicts order[] (least recently used first) of group (0: any) until need bytes are freed. */
static uint64_t evict_lru(const struct evict_item *items, const struct evict_policy *p,
                          struct evict_item **order, size_t m, size_t group, uint64_t need,
                          struct evict_summary *out)
{
    uint64_t freed = 0;
    for (size_t i = 0; i < m && freed < need; i++) {
        struct evict_item *it = order[i];
        if (it->reason != EVICT_KEEP || (group && group_of(items, p, it) != group))
            continue;
        it->reason = EVICT_SIZE;
        out->by_size++;
        out->by_group += group != 0;
        out->bytes += it->size;
        freed += it->size;
    }
    return freed;
}

void evict_plan(struct evict_item *items, size_t n, const struct evict_policy *p,
                struct evict_summary *out)
{
    uint64_t kept = 0;
    out->by_ttl = out->by_size = out->by_group = 0;
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

    int group_over = 0;
    for (size_t g = 1; p->group_of && g <= p->n_groups && !group_over; g++)
        group_over = p->group_max[g - 1] && group_bytes(items, n, p, g) > p->group_max[g - 1];

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
    if ((need == 0 && !group_over) || n == 0) {
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
    for (size_t g = 1; group_over && g <= p->n_groups; g++) {
        uint64_t cap = p->group_max[g - 1], in_group = cap ? group_bytes(items, n, p, g) : 0;
        if (cap && in_group > cap)
            freed += evict_lru(items, p, order, m, g,
                               in_group - cap * EVICT_LOW_WATERMARK_PCT / 100, out);
    }
    kept -= freed;
    need = need > freed ? need - freed : 0;
    kept -= evict_lru(items, p, order, m, 0, need, out);
    free(order);
    out->kept_bytes = kept;
}
