/* SPDX-License-Identifier: Apache-2.0 */
/* The eviction policy, pure and clock-free so it can be tested with any "now": which blobs a GC
 * run removes, given their sizes and last access times. */
#ifndef REGCACHE_CACHE_EVICT_H
#define REGCACHE_CACHE_EVICT_H

#include <stddef.h>
#include <stdint.h>

#define EVICT_LOW_WATERMARK_PCT 90 /* a size cap evicts down to this share of the cap */

enum evict_reason { EVICT_KEEP = 0, EVICT_TTL, EVICT_SIZE };

struct evict_item {
    uint64_t size;
    uint64_t last_access_ms;
    int pinned;               /* never evicted (e.g. being filled right now) */
    enum evict_reason reason; /* the plan's verdict */
};

struct evict_policy {
    uint64_t now_ms;
    uint64_t ttl_ms;     /* 0: no expiry */
    uint64_t max_size;   /* 0: no cap */
    uint64_t min_free;   /* 0: no free-space floor */
    uint64_t free_bytes; /* free space on the store's filesystem now */
    /* own caps of groups (upstreams): item i is in group group_of[i] (1..n_groups; 0: none;
     * group_of NULL: no groups), whose cap is group_max[g - 1] (0: none) */
    const size_t *group_of;
    const uint64_t *group_max;
    size_t n_groups;
};

struct evict_summary {
    size_t by_ttl, by_size;
    size_t by_group; /* of by_size, for a group's own cap */
    uint64_t bytes;       /* evicted */
    uint64_t ttl_bytes;   /* of those, for the TTL */
    uint64_t kept_bytes;  /* what stays */
};

/* Sets items[i].reason. First everything untouched for longer than ttl; then, for each group
 * over its own cap, its least recently used items down to the low watermark of that cap (only
 * that group's items); then, while the rest is over max_size (down to the low watermark) or
 * free space is under min_free, the least recently used first. Pinned items stay whatever
 * happens. */
void evict_plan(struct evict_item *items, size_t n, const struct evict_policy *p,
                struct evict_summary *out);

#endif
