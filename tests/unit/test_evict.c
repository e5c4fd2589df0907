/* SPDX-License-Identifier: Apache-2.0 */
/* The eviction policy with an injected clock: TTL, LRU under a size cap down to the low
 * watermark, the free-space floor, and pinned items that are never evicted. */
#include "cache/evict.h"
#include "check.h"

#define MIB (1024ULL * 1024)
#define DAY (24ULL * 3600 * 1000)

static struct evict_summary plan(struct evict_item *it, size_t n, uint64_t now, uint64_t ttl,
                                 uint64_t max, uint64_t min_free, uint64_t free_bytes)
{
    struct evict_policy p = {now, ttl, max, min_free, free_bytes, NULL, NULL, 0};
    struct evict_summary s;
    evict_plan(it, n, &p, &s);
    return s;
}

static void test_ttl(void)
{
    uint64_t now = 100 * DAY;
    struct evict_item it[] = {
        {10, now - 8 * DAY, 0, 0},     /* idle for 8 days: expires */
        {20, now - 7 * DAY, 0, 0},     /* exactly the TTL: stays */
        {30, now - 1000, 0, 0},        /* used a second ago */
        {40, now - 30 * DAY, 1, 0},    /* pinned: stays however old */
        {50, now + 5000, 0, 0},        /* clock went backwards: stays */
    };
    struct evict_summary s = plan(it, 5, now, 7 * DAY, 0, 0, 0);
    CHECK_EQ_INT(it[0].reason, EVICT_TTL);
    CHECK_EQ_INT(it[1].reason, EVICT_KEEP);
    CHECK_EQ_INT(it[2].reason, EVICT_KEEP);
    CHECK_EQ_INT(it[3].reason, EVICT_KEEP);
    CHECK_EQ_INT(it[4].reason, EVICT_KEEP);
    CHECK_EQ_INT(s.by_ttl, 1);
    CHECK_EQ_INT(s.by_size, 0);
    CHECK_EQ_U64(s.bytes, 10);
    CHECK_EQ_U64(s.kept_bytes, 140);

    /* ttl 0 disables expiry */
    s = plan(it, 5, now, 0, 0, 0, 0);
    CHECK_EQ_INT(s.by_ttl, 0);
    CHECK_EQ_INT(it[0].reason, EVICT_KEEP);
}

static void test_size_cap_lru_to_watermark(void)
{
    uint64_t now = 1000000;
    /* 100 MiB total under a 40 MiB cap: evict least recently used until <= 36 MiB (90 %) */
    struct evict_item it[] = {
        {50 * MIB, now - 900, 0, 0}, /* oldest */
        {30 * MIB, now - 800, 0, 0},
        {3 * MIB, now - 500, 0, 0},
        {13 * MIB, now - 100, 0, 0}, /* most recent */
        {4 * MIB, now - 50, 0, 0},   /* most recent */
    };
    struct evict_summary s = plan(it, 5, now, 0, 40 * MIB, 0, 0);
    CHECK_EQ_INT(it[0].reason, EVICT_SIZE);
    CHECK_EQ_INT(it[1].reason, EVICT_SIZE);
    CHECK_EQ_INT(it[2].reason, EVICT_KEEP);
    CHECK_EQ_INT(it[3].reason, EVICT_KEEP);
    CHECK_EQ_INT(it[4].reason, EVICT_KEEP);
    CHECK_EQ_U64(s.kept_bytes, 20 * MIB);
    CHECK(s.kept_bytes <= 40 * MIB * EVICT_LOW_WATERMARK_PCT / 100);

    /* just over the cap: evicts down to the watermark, not only under the cap */
    struct evict_item b[] = {
        {2 * MIB, now - 300, 0, 0}, {2 * MIB, now - 200, 0, 0}, {7 * MIB, now - 100, 0, 0}};
    s = plan(b, 3, now, 0, 10 * MIB, 0, 0); /* 11 MiB > 10; watermark 9 MiB */
    CHECK_EQ_INT(b[0].reason, EVICT_SIZE);
    CHECK_EQ_INT(b[1].reason, EVICT_KEEP);
    CHECK_EQ_U64(s.kept_bytes, 9 * MIB);

    /* under the cap: nothing */
    s = plan(b, 3, now, 0, 100 * MIB, 0, 0);
    CHECK_EQ_INT(s.by_size, 0);

    /* TTL evictions count towards the cap */
    struct evict_item c[] = {{8 * MIB, 0, 0, 0}, {5 * MIB, now - 1, 0, 0}};
    s = plan(c, 2, now, 1000, 10 * MIB, 0, 0);
    CHECK_EQ_INT(c[0].reason, EVICT_TTL);
    CHECK_EQ_INT(c[1].reason, EVICT_KEEP);
    CHECK_EQ_INT(s.by_size, 0);
}

static void test_pinned_under_pressure(void)
{
    uint64_t now = 5000;
    struct evict_item it[] = {{60 * MIB, 1, 1, 0}, {10 * MIB, 2, 0, 0}};
    struct evict_summary s = plan(it, 2, now, 0, 20 * MIB, 0, 0);
    CHECK_EQ_INT(it[0].reason, EVICT_KEEP); /* pinned: a fill in progress */
    CHECK_EQ_INT(it[1].reason, EVICT_SIZE);
    CHECK_EQ_U64(s.kept_bytes, 60 * MIB);
}

static void test_min_free(void)
{
    uint64_t now = 5000;
    struct evict_item it[] = {{5 * MIB, 10, 0, 0}, {5 * MIB, 20, 0, 0}, {5 * MIB, 30, 0, 0}};
    /* 3 MiB free, 10 MiB wanted: 7 MiB more + a 1 MiB margin -> the two oldest go */
    struct evict_summary s = plan(it, 3, now, 0, 0, 10 * MIB, 3 * MIB);
    CHECK_EQ_INT(it[0].reason, EVICT_SIZE);
    CHECK_EQ_INT(it[1].reason, EVICT_SIZE);
    CHECK_EQ_INT(it[2].reason, EVICT_KEEP);
    CHECK_EQ_U64(s.bytes, 10 * MIB);
    /* enough free space: nothing */
    s = plan(it, 3, now, 0, 0, 10 * MIB, 50 * MIB);
    CHECK_EQ_U64(s.bytes, 0);
}

static void test_empty(void)
{
    struct evict_summary s = plan(NULL, 0, 1, 1, 1, 1, 0);
    CHECK_EQ_U64(s.bytes, 0);
    CHECK_EQ_U64(s.kept_bytes, 0);
}

/* An upstream's own cap evicts only its items, least recently used first, down to 90 % of
 * that cap; items of other groups and of none stay even when older. */
static void test_group_caps(void)
{
    uint64_t now = 1000000;
    struct evict_item it[] = {
        {10 * MIB, 100, 0, 0}, /* group 2, oldest of all: stays (group 2 is under its cap) */
        {10 * MIB, 200, 0, 0}, /* group 1, oldest of group 1: goes */
        {10 * MIB, 300, 0, 0}, /* no group: stays */
        {10 * MIB, 400, 0, 0}, /* group 1: goes */
        {10 * MIB, 500, 1, 0}, /* group 1, pinned: stays */
        {10 * MIB, 600, 0, 0}, /* group 1: goes (50 MiB must come down to 22.5 MiB) */
        {10 * MIB, 700, 0, 0}, /* group 1, newest: stays */
    };
    size_t groups[] = {2, 1, 0, 1, 1, 1, 1};
    uint64_t caps[] = {25 * MIB, 100 * MIB};
    struct evict_policy p = {now, 0, 0, 0, 0, groups, caps, 2};
    struct evict_summary s;
    evict_plan(it, 7, &p, &s);
    CHECK_EQ_INT(it[0].reason, EVICT_KEEP);
    CHECK_EQ_INT(it[1].reason, EVICT_SIZE);
    CHECK_EQ_INT(it[2].reason, EVICT_KEEP);
    CHECK_EQ_INT(it[3].reason, EVICT_SIZE);
    CHECK_EQ_INT(it[4].reason, EVICT_KEEP);
    CHECK_EQ_INT(it[5].reason, EVICT_SIZE);
    CHECK_EQ_INT(it[6].reason, EVICT_KEEP);
    CHECK_EQ_INT(s.by_size, 3);
    CHECK_EQ_INT(s.by_group, 3);
    CHECK_EQ_U64(s.kept_bytes, 40 * MIB);

    /* the global cap then takes what is still over it, from any group */
    struct evict_policy q = {now, 0, 30 * MIB, 0, 0, groups, caps, 2};
    evict_plan(it, 7, &q, &s);
    CHECK_EQ_INT(s.by_group, 3);
    CHECK_EQ_INT(it[0].reason, EVICT_SIZE); /* the oldest left */
    CHECK_EQ_INT(it[2].reason, EVICT_SIZE);
    CHECK_EQ_U64(s.kept_bytes, 20 * MIB);
}

int main(void)
{
    test_group_caps();
    test_ttl();
    test_size_cap_lru_to_watermark();
    test_pinned_under_pressure();
    test_min_free();
    test_empty();
    CHECK_DONE();
}
