/* SPDX-License-Identifier: Apache-2.0 */
/* The kept-descriptor LRU with an injected clock: order kept by hits, the coldest evicted at
 * capacity, expiry from the cold end, forgetting a removed blob, and every descriptor closed
 * (checked with fcntl on real pipe ends). The capacity rule from RLIMIT_NOFILE as well. */
#include <fcntl.h>
#include <unistd.h>

#include "cache/fd_lru.h"
#include "cache/impl.h"
#include "check.h"

#define TTL 10000

static int open_fd(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static int is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void test_order_and_capacity(void)
{
    struct fd_lru *l = fd_lru_new(3, TTL);
    int a = open_fd(), b = open_fd(), c = open_fd(), d = open_fd();
    uint64_t size = 0;
    CHECK_EQ_INT(fd_lru_put(l, "a", a, 1, 0), 0);
    CHECK_EQ_INT(fd_lru_put(l, "b", b, 2, 1), 0);
    CHECK_EQ_INT(fd_lru_put(l, "c", c, 3, 2), 0);
    CHECK_EQ_INT(fd_lru_count(l), 3);
    CHECK(fd_lru_coldest(l) && !strcmp(fd_lru_coldest(l), "a"));
    /* a hit on a makes it the hottest: b is now the coldest */
    CHECK_EQ_INT(fd_lru_get(l, "a", 3, &size), a);
    CHECK_EQ_U64(size, 1);
    CHECK(!strcmp(fd_lru_coldest(l), "b"));
    /* a fourth evicts the coldest (b), and closes it */
    CHECK_EQ_INT(fd_lru_put(l, "d", d, 4, 4), 0);
    CHECK_EQ_INT(fd_lru_count(l), 3);
    CHECK_EQ_INT(fd_lru_get(l, "b", 5, &size), -1);
    CHECK(!is_open(b));
    CHECK(is_open(a) && is_open(c) && is_open(d));
    CHECK(!strcmp(fd_lru_coldest(l), "c"));
    /* a key kept already is refused and its descriptor left to the caller */
    int again = open_fd();
    CHECK_EQ_INT(fd_lru_put(l, "c", again, 3, 6), -EEXIST);
    CHECK(is_open(again));
    close(again);
    fd_lru_free(l);
    CHECK(!is_open(a) && !is_open(c) && !is_open(d));
}

static void test_expiry(void)
{
    struct fd_lru *l = fd_lru_new(10, TTL);
    int a = open_fd(), b = open_fd(), c = open_fd();
    uint64_t size;
    fd_lru_put(l, "a", a, 1, 0);
    fd_lru_put(l, "b", b, 1, 4000);
    fd_lru_put(l, "c", c, 1, 8000);
    CHECK_EQ_INT(fd_lru_expire(l, 9999), 0);
    /* at 10000 a is expired, b and c are not: only a goes */
    CHECK_EQ_INT(fd_lru_expire(l, TTL), 1);
    CHECK(!is_open(a));
    CHECK_EQ_INT(fd_lru_count(l), 2);
    CHECK(!strcmp(fd_lru_coldest(l), "b"));
    /* a hit within the TTL is served; one after it finds the entry expired and closes it */
    CHECK_EQ_INT(fd_lru_get(l, "b", 13999, &size), b);
    CHECK_EQ_INT(fd_lru_get(l, "b", 14000, &size), -1);
    CHECK(!is_open(b));
    CHECK_EQ_INT(fd_lru_count(l), 1);
    /* an entry kept hot by hits past its TTL still goes once the sweep reaches it unused */
    int d = open_fd();
    fd_lru_put(l, "d", d, 1, 14000);
    CHECK_EQ_INT(fd_lru_get(l, "c", 17000, &size), c);
    CHECK(!strcmp(fd_lru_coldest(l), "d"));
    CHECK_EQ_INT(fd_lru_expire(l, 18000), 0); /* d is live; c (expired) is hotter than d */
    CHECK_EQ_INT(fd_lru_expire(l, 24000), 2); /* d expired, then c found unused for the TTL */
    CHECK(!is_open(c) && !is_open(d));
    CHECK_EQ_INT(fd_lru_count(l), 0);
    CHECK(fd_lru_coldest(l) == NULL);
    fd_lru_free(l);
}

static void test_forget(void)
{
    struct fd_lru *l = fd_lru_new(10, TTL);
    int a = open_fd(), b = open_fd(), c = open_fd();
    uint64_t size;
    fd_lru_put(l, "a", a, 1, 0);
    fd_lru_put(l, "b", b, 1, 0);
    fd_lru_put(l, "c", c, 1, 0);
    CHECK_EQ_INT(fd_lru_forget(l, "b"), 1); /* from the middle of the list */
    CHECK(!is_open(b));
    CHECK_EQ_INT(fd_lru_get(l, "b", 1, &size), -1);
    CHECK_EQ_INT(fd_lru_forget(l, "b"), 0);
    CHECK_EQ_INT(fd_lru_forget(l, "a"), 1); /* the cold end */
    CHECK(!strcmp(fd_lru_coldest(l), "c"));
    CHECK_EQ_INT(fd_lru_forget(l, "c"), 1); /* the last one */
    CHECK_EQ_INT(fd_lru_count(l), 0);
    CHECK(fd_lru_coldest(l) == NULL);
    /* the list is whole again after emptying */
    int d = open_fd();
    CHECK_EQ_INT(fd_lru_put(l, "d", d, 1, 2), 0);
    CHECK_EQ_INT(fd_lru_get(l, "d", 3, &size), d);
    fd_lru_free(l);
    CHECK(!is_open(d));
}

static void test_many(void)
{
    /* far more puts than capacity: the count stays at capacity and every evicted one closes */
    struct fd_lru *l = fd_lru_new(100, TTL);
    char key[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        int fd = open_fd();
        CHECK(fd >= 0);
        if (fd_lru_put(l, key, fd, (uint64_t)i, 0) < 0)
            close(fd);
    }
    CHECK_EQ_INT(fd_lru_count(l), 100);
    CHECK(!strcmp(fd_lru_coldest(l), "k9900"));
    uint64_t size;
    CHECK(fd_lru_get(l, "k9950", 1, &size) >= 0);
    CHECK_EQ_U64(size, 9950);
    CHECK_EQ_INT(fd_lru_get(l, "k9899", 1, &size), -1);
    fd_lru_free(l);
}

static void test_zero_capacity(void)
{
    struct fd_lru *l = fd_lru_new(0, TTL);
    int fd = open_fd();
    CHECK(fd_lru_put(l, "a", fd, 1, 0) < 0);
    CHECK(is_open(fd));
    close(fd);
    fd_lru_free(l);
}

static void test_held_outlive_the_list(void)
{
    /* a hit holds the descriptor while its response is sent: evicted, expired or forgotten
     * meanwhile, it stays open until the last holder lets go, and closes then */
    struct fd_lru *l = fd_lru_new(1, TTL);
    int a = open_fd(), b = open_fd();
    uint64_t size = 0;
    CHECK_EQ_INT(fd_lru_put(l, "a", a, 7, 0), 0);
    struct held_fd *h1 = fd_lru_hold(l, "a", 1, &size), *h2 = fd_lru_hold(l, "a", 2, &size);
    CHECK(h1 && h1 == h2 && h1->fd == a);
    CHECK_EQ_U64(size, 7);
    CHECK_EQ_INT(fd_lru_put(l, "b", b, 1, 3), 0); /* a evicted */
    CHECK(fd_lru_hold(l, "a", 4, &size) == NULL);
    CHECK(is_open(a));
    held_fd_drop(h1);
    CHECK(is_open(a));
    held_fd_drop(h2);
    CHECK(!is_open(a));
    /* kept from a reference of the caller's: the caller's and the list's are each let go */
    int c = open_fd();
    struct held_fd *mine = held_fd_new(c);
    CHECK_EQ_INT(fd_lru_put_held(l, "c", mine, 3, 5), 0);
    CHECK(!is_open(b)); /* b evicted, none held it */
    held_fd_drop(mine);
    CHECK(is_open(c));
    CHECK_EQ_INT(fd_lru_put_held(l, "c", mine, 3, 6), -EEXIST);
    struct held_fd *h3 = fd_lru_hold(l, "c", 7, &size);
    CHECK_EQ_INT(fd_lru_forget(l, "c"), 1);
    CHECK(is_open(c));
    held_fd_drop(h3);
    CHECK(!is_open(c));
    /* and expiry */
    int d = open_fd();
    CHECK_EQ_INT(fd_lru_put(l, "d", d, 1, 10), 0);
    struct held_fd *h4 = fd_lru_hold(l, "d", 11, &size);
    CHECK_EQ_INT(fd_lru_expire(l, 10 + TTL), 1);
    CHECK(is_open(d));
    fd_lru_free(l);
    CHECK(is_open(d));
    held_fd_drop(h4);
    CHECK(!is_open(d));
}

static void test_capacity_rule(void)
{
    CHECK_EQ_INT(open_files_capacity(1024), 256);
    CHECK_EQ_INT(open_files_capacity(65536), 16384);
    CHECK_EQ_INT(open_files_capacity(1048576), OPEN_FILES_MAX);
    CHECK_EQ_INT(open_files_capacity(UINT64_MAX), OPEN_FILES_MAX);
    CHECK_EQ_INT(open_files_capacity(32), 0);
}

int main(void)
{
    test_order_and_capacity();
    test_expiry();
    test_forget();
    test_many();
    test_zero_capacity();
    test_held_outlive_the_list();
    test_capacity_rule();
    CHECK_DONE();
}
