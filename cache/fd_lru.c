/* SPDX-License-Identifier: Apache-2.0 */
/* Kept descriptors in least-recently-used order (see fd_lru.h). */
#include "cache/fd_lru.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/held_fd.h"
#include "util/list.h"
#include "util/map.h"

struct fd_entry {
    struct list_node recency;
    char *key;
    struct held_fd *file; /* the list's reference */
    uint64_t size;
    uint64_t opened_ms;
    uint64_t used_ms;
};

struct fd_lru {
    struct map *by_key; /* key -> struct fd_entry */
    struct list recency; /* the coldest first */
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

static struct fd_entry *coldest(const struct fd_lru *l)
{
    return LIST_ENTRY(l->recency.head, struct fd_entry, recency);
}

static void drop(struct fd_lru *l, struct fd_entry *e)
{
    list_unlink(&l->recency, &e->recency);
    map_del(l->by_key, e->key);
    l->count--;
    held_fd_drop(e->file); /* closed now unless a response still sends it */
    free(e->key);
    free(e);
}

void fd_lru_free(struct fd_lru *l)
{
    if (!l)
        return;
    while (l->recency.head)
        drop(l, coldest(l));
    map_free(l->by_key);
    free(l);
}

static int expired(const struct fd_lru *l, const struct fd_entry *e, uint64_t now_ms)
{
    return now_ms - e->opened_ms >= l->ttl_ms;
}

static struct fd_entry *lookup(struct fd_lru *l, const char *key, uint64_t now_ms, uint64_t *size)
{
    struct fd_entry *e = map_get(l->by_key, key);
    if (!e)
        return NULL;
    if (expired(l, e, now_ms)) {
        drop(l, e);
        return NULL;
    }
    e->used_ms = now_ms;
    list_touch(&l->recency, &e->recency);
    *size = e->size;
    return e;
}

int fd_lru_get(struct fd_lru *l, const char *key, uint64_t now_ms, uint64_t *size)
{
    struct fd_entry *e = lookup(l, key, now_ms, size);
    return e ? e->file->fd : -1;
}

struct held_fd *fd_lru_hold(struct fd_lru *l, const char *key, uint64_t now_ms, uint64_t *size)
{
    struct fd_entry *e = lookup(l, key, now_ms, size);
    return e ? held_fd_take(e->file) : NULL;
}

int fd_lru_put_held(struct fd_lru *l, const char *key, struct held_fd *file, uint64_t size,
                    uint64_t now_ms)
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
    e->file = held_fd_take(file);
    e->size = size;
    e->opened_ms = e->used_ms = now_ms;
    list_push(&l->recency, &e->recency);
    l->count++;
    while (l->count > l->capacity)
        drop(l, coldest(l));
    return 0;
}

int fd_lru_put(struct fd_lru *l, const char *key, int fd, uint64_t size, uint64_t now_ms)
{
    struct held_fd *file = held_fd_new(fd);
    if (!file)
        return -ENOMEM;
    int r = fd_lru_put_held(l, key, file, size, now_ms);
    if (r)
        free(file); /* never shared: fd is left to the caller */
    else
        held_fd_drop(file); /* the list's reference is the only one */
    return r;
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
    struct fd_entry *e;
    while ((e = coldest(l)) && (expired(l, e, now_ms) || now_ms - e->used_ms >= l->ttl_ms)) {
        drop(l, e);
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
    const struct fd_entry *e = coldest(l);
    return e ? e->key : NULL;
}
