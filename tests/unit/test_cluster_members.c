/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for cluster/members.c: URL normalisation and refusals, HRW order (deterministic,
 * balanced, minimal movement when a member leaves), owners and successors as members go down. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cluster/members.h"

#define KEYS 10000

static void key_of(int i, char *out, size_t len)
{
    snprintf(out, len, "sha256:%064x", (unsigned)i * 2654435761u);
}

static void test_normalise_and_refusals(void)
{
    char out[MEMBERS_URL_MAX], why[256];
    CHECK_EQ_INT(members_normalise("HTTP://Node-1.LAN:5000/", out, sizeof(out)), 0);
    CHECK_STR(out, "http://node-1.lan:5000");
    CHECK_EQ_INT(members_normalise("https://[::1]:5443", out, sizeof(out)), 0);
    CHECK_STR(out, "https://[::1]:5443");
    CHECK_EQ_INT(members_normalise("ftp://x", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(members_normalise("http://", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(members_normalise("http://a/path", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(members_normalise("http://u@a", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(members_normalise("http://a:50x0", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(members_normalise("http://a:", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(members_normalise("http://[::1", out, sizeof(out)), -EINVAL);

    struct members *m;
    const char *dup[] = {"http://a:1", "HTTP://A:1/"};
    CHECK_EQ_INT(members_new(dup, 2, "http://a:1", &m, why, sizeof(why)), -EINVAL);
    CHECK_CONTAINS(why, "twice");
    CHECK(m == NULL);
    const char *two[] = {"http://a:1", "http://b:1"};
    CHECK_EQ_INT(members_new(two, 2, "http://c:1", &m, why, sizeof(why)), -EINVAL);
    CHECK_CONTAINS(why, "not among");
    CHECK_EQ_INT(members_new(two, 0, "http://a:1", &m, why, sizeof(why)), -EINVAL);
    const char *bad[] = {"http://a:1", "a:2"};
    CHECK_EQ_INT(members_new(bad, 2, "http://a:1", &m, why, sizeof(why)), -EINVAL);
    CHECK_CONTAINS(why, "a:2");
}

static void test_order_balance_and_movement(void)
{
    const char *three[] = {"http://127.0.0.1:5001", "http://127.0.0.1:5002",
                           "http://127.0.0.1:5003"};
    const char *two[] = {"http://127.0.0.1:5001", "http://127.0.0.1:5003"};
    struct members *m3, *m2, *again;
    char why[256], key[80];
    CHECK_EQ_INT(members_new(three, 3, "http://127.0.0.1:5002/", &m3, why, sizeof(why)), 0);
    CHECK_EQ_INT(members_self(m3), 1);
    CHECK_EQ_INT(members_new(two, 2, "http://127.0.0.1:5001", &m2, why, sizeof(why)), 0);
    /* the same set listed in another order ranks alike: order depends on URLs, not positions */
    const char *shuffled[] = {"http://127.0.0.1:5003", "http://127.0.0.1:5001",
                              "http://127.0.0.1:5002"};
    CHECK_EQ_INT(members_new(shuffled, 3, "http://127.0.0.1:5003", &again, why, sizeof(why)), 0);

    int owned[3] = {0}, moved_wrongly = 0, moved = 0, differs = 0;
    for (int i = 0; i < KEYS; i++) {
        key_of(i, key, sizeof(key));
        size_t o3 = members_owner(m3, key), o2 = members_owner(m2, key);
        owned[o3]++;
        const char *u3 = members_url(m3, o3), *u2 = members_url(m2, o2);
        if (strcmp(u3, u2)) {
            moved++;
            if (strcmp(u3, "http://127.0.0.1:5002"))
                moved_wrongly++; /* only the removed member's keys may move */
        }
        differs += strcmp(u3, members_url(again, members_owner(again, key))) != 0;
        size_t order[MEMBERS_MAX];
        members_order(m3, key, order);
        CHECK(order[0] == o3);
        CHECK(order[0] != order[1] && order[1] != order[2] && order[0] != order[2]);
    }
    for (int k = 0; k < 3; k++) {
        CHECK(owned[k] > KEYS * 25 / 100);
        CHECK(owned[k] < KEYS * 42 / 100);
    }
    CHECK_EQ_INT(moved_wrongly, 0);
    CHECK_EQ_INT(moved, owned[1]);
    CHECK_EQ_INT(differs, 0);
    members_free(m3);
    members_free(m2);
    members_free(again);
}

static void test_down_members(void)
{
    const char *three[] = {"http://a:1", "http://b:1", "http://c:1"};
    struct members *m;
    char why[256], key[80];
    CHECK_EQ_INT(members_new(three, 3, "http://a:1", &m, why, sizeof(why)), 0);
    int checked = 0;
    for (int i = 0; i < 200; i++) {
        key_of(i, key, sizeof(key));
        size_t order[MEMBERS_MAX];
        members_order(m, key, order);
        size_t owner = members_owner(m, key);
        CHECK(owner == order[0]);
        if (order[0] == 0)
            continue;
        /* the owner (not self) goes down: its successor owns the key, and back */
        members_set_up(m, order[0], 0, 1000);
        CHECK(!members_is_up(m, order[0]));
        CHECK_EQ_U64(members_since_ms(m, order[0]), 1000);
        CHECK(members_owner(m, key) == order[1]);
        CHECK_EQ_INT(members_successor(m, key, order[0]), (int)order[1]);
        /* every other member down: self owns everything */
        members_set_up(m, order[1], 0, 1000);
        members_set_up(m, order[2], 0, 1000);
        CHECK(members_owner(m, key) == members_self(m));
        members_set_up(m, order[0], 1, 2000);
        members_set_up(m, order[1], 1, 2000);
        members_set_up(m, order[2], 1, 2000);
        CHECK(members_owner(m, key) == order[0]);
        CHECK_EQ_INT(members_successor(m, key, order[2]), -1);
        checked++;
    }
    CHECK(checked > 100);
    /* self cannot be marked down */
    members_set_up(m, members_self(m), 0, 5);
    CHECK(members_is_up(m, members_self(m)));
    /* a key longer than the hash buffer still has one stable owner, and its own */
    static char longkey[3000], otherkey[3000];
    memset(longkey, 'k', sizeof(longkey) - 1);
    memcpy(otherkey, longkey, sizeof(otherkey));
    otherkey[0] = 'o';
    size_t lo = members_owner(m, longkey);
    CHECK(lo == members_owner(m, longkey));
    int spread = 0;
    for (int i = 0; i < 30; i++) {
        otherkey[1] = (char)('a' + i % 26);
        otherkey[2] = (char)('a' + i / 26);
        spread |= 1 << members_owner(m, otherkey);
    }
    CHECK(spread != 1 && spread != 2 && spread != 4); /* long keys are not all on one member */
    CHECK_EQ_INT(members_find(m, "HTTP://C:1/"), 2);
    CHECK_EQ_INT(members_find(m, "http://d:1"), -1);
    members_free(m);
}

int main(void)
{
    test_normalise_and_refusals();
    test_order_balance_and_movement();
    test_down_members();
    CHECK_DONE();
}
