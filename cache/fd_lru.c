/* SPDX-License-Identifier: Apache-2.0 */
/* Kept descriptors in least-recently-used order (see fd_lru.h). */
#include "cache/fd_lru.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/map.h"

struct fd_entry {
    struct fd_entry *hotter, *colder;
    char *key;
    int fd;
    uint64_t size;
    uint64_t opened_ms;
    uint64_t used_ms;
};

struct fd_lru {
    struct map *by_key; /* key -> struct fd_entry */
    struct fd_entry *hottest, *coldest;
    size_t count, capacity;
    uint64_t ttl_ms;
};

struct fd_lru *fd_lru_new(size_t capacity, uint64_t ttl_ms)
{
    struct fd_lru *l = calloc(1, sizeof(*l));
    if (!l || !(l->by_key = map_new())) {
        free(l);
        return NULL;
    }
    l->capacity = capacity;
    l->ttl_ms = ttl_ms;
    return l;
}

static void unlink_entry(struct fd_lru *l, struct fd_entry *e)
{
    if (e->hotter)
        e->hotter->colder = e->colder;
    else
        l->hottest = e->colder;
    if (e->colder)
        e->colder->hotter = e->hotter;
    else
        l->coldest = e->hotter;
    e->hotter = e->colder = NULL;
}

static void link_hottest(struct fd_lru *l, struct fd_entry *e)
{
    e->hotter = NULL;
    e->colder = l->hottest;
    if (l->hottest)
        l->hottest->hotter = e;
    else
        l->coldest = e;
    l->hottest = e;
}

static void drop(struct fd_lru *l, struct fd_entry *e)
{
    unlink_entry(l, e);
    map_del(l->by_key, e->key);
    l->count--;
    close(e->fd);
    free(e->key);
    free(e);
}

void fd_lru_free(struct fd_lru *l)
{
    if (!l)
        return;
    while (l->coldest)
        drop(l, l->coldest);
    map_free(l->by_key);
    free(l);
}

static int expired(const struct fd_lru *l, const struct fd_entry *e, uint64_t now_ms)
{
    return now_ms - e->opened_ms >= l->ttl_ms;
}

int fd_lru_get(struct fd_lru *l, const char *key, uint64_t now_ms, uint64_t *size)
{
    struct fd_entry *e = map_get(l->by_key, key);
    if (!e)
        return -1;
    if (expired(l, e, now_ms)) {
        drop(l, e);
        return -1;
    }
    e->used_ms = now_ms;
    if (l->hottest != e) {
        unlink_entry(l, e);
        link_hottest(l, e);
    }
    *size = e->size;
    return e->fd;
}

int fd_lru_put(struct fd_lru *l, const char *key, int fd, uint64_t size, uint64_t now_ms)
{
    if (map_get(l->by_key, key))
        return -EEXIST;
    if (!l->capacity)
        return -ENOMEM;
    struct fd_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key))) {
        free(e);
        return -ENOMEM;
    }
    if (map_put(l->by_key, key, e) == MAP_NOMEM) {
        free(e->key);
        free(e);
        return -ENOMEM;
    }
    e->fd = fd;
    e->size = size;
    e->opened_ms = e->used_ms = now_ms;
    link_hottest(l, e);
    l->count++;
    while (l->count > l->capacity)
        drop(l, l->coldest);
    return 0;
}

int fd_lru_forget(struct fd_lru *l, const char *key)
{
    struct fd_entry *e = map_get(l->by_key, key);
    if (!e)
        return 0;
    drop(l, e);
    return 1;
}

size_t fd_lru_expire(struct fd_lru *l, uint64_t now_ms)
{
    size_t n = 0;
    while (l->coldest &&
           (expired(l, l->coldest, now_ms) || now_ms - l->coldest->used_ms >= l->ttl_ms)) {
        drop(l, l->coldest);
        n++;
    }
    return n;
}

size_t fd_lru_count(const struct fd_lru *l)
{
    return l->count;
}

size_t fd_lru_capacity(const struct fd_lru *l)
{
    return l->capacity;
}

const char *fd_lru_coldest(const struct fd_lru *l)
{
    return l->coldest ? l->coldest->key : NULL;
}
