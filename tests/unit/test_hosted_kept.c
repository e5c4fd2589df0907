/* SPDX-License-Identifier: Apache-2.0 */
/* Hosted manifests' bytes kept in memory: a hit gives the bytes put, another epoch gives
 * nothing (and drops the entry), the byte budget evicts the least recently used, and what
 * cannot fit is not kept. */
#include <string.h>

#include "check.h"
#include "hosted/kept.h"

static void test_hits_and_epochs(void)
{
    struct kept_manifests *k = kept_new(1000);
    size_t len = 0;
    CHECK(kept_get(k, "sha256:a", 1, &len) == NULL);
    kept_put(k, "sha256:a", 1, "{\"a\":1}", 7);
    const char *got = kept_get(k, "sha256:a", 1, &len);
    CHECK(got && len == 7 && memcmp(got, "{\"a\":1}", 7) == 0);
    /* the epoch moved: nothing, and the entry is gone */
    CHECK(kept_get(k, "sha256:a", 2, &len) == NULL);
    CHECK_EQ_U64(kept_count(k), 0);
    CHECK_EQ_U64(kept_bytes(k), 0);
    /* a put again replaces */
    kept_put(k, "sha256:a", 2, "xy", 2);
    kept_put(k, "sha256:a", 2, "xyz", 3);
    CHECK_EQ_U64(kept_count(k), 1);
    CHECK_EQ_U64(kept_bytes(k), 3);
    kept_free(k);
}

static void test_budget(void)
{
    struct kept_manifests *k = kept_new(10);
    size_t len;
    kept_put(k, "a", 1, "aaaa", 4);
    kept_put(k, "b", 1, "bbbb", 4);
    CHECK(kept_get(k, "a", 1, &len) != NULL); /* a is the most recent now */
    kept_put(k, "c", 1, "cccc", 4);           /* 12 > 10: b, the least recent, goes */
    CHECK(kept_get(k, "b", 1, &len) == NULL);
    CHECK(kept_get(k, "a", 1, &len) != NULL);
    CHECK(kept_get(k, "c", 1, &len) != NULL);
    CHECK_EQ_U64(kept_bytes(k), 8);
    kept_put(k, "big", 1, "0123456789x", 11); /* larger than the budget: not kept */
    CHECK(kept_get(k, "big", 1, &len) == NULL);
    CHECK_EQ_U64(kept_count(k), 2);
    kept_free(k);
}

int main(void)
{
    test_hits_and_epochs();
    test_budget();
    CHECK_DONE();
}
