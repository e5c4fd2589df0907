/* SPDX-License-Identifier: Apache-2.0 */
#include "auth/verdicts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/list.h"
#include "util/map.h"

/* ---- verdicts ---- */

struct verdict {
    struct list_node node; /* first: a node is its verdict */
    int ok;
    uint64_t until_ms;
    char key[VERDICT_KEY_MAX];
    char hash[64]; /* the user's line checked against; "" for an unknown user */
};

struct verdicts {
    struct map *by_key;    /* key -> struct verdict */
    struct list good, bad; /* least recently used first */
    size_t max;
};

struct verdicts *verdicts_new(size_t max)
{
    struct verdicts *v = calloc(1, sizeof(*v));
    if (!v || !(v->by_key = map_new())) {
        free(v);
        return NULL;
    }
    v->max = max ? max : 1;
    return v;
}

static void drop(struct verdicts *v, struct verdict *e)
{
    list_unlink(e->ok ? &v->good : &v->bad, &e->node);
    map_del(v->by_key, e->key);
    free(e);
}

void verdicts_free(struct verdicts *v)
{
    if (!v)
        return;
    while (v->good.head)
        drop(v, (struct verdict *)v->good.head);
    while (v->bad.head)
        drop(v, (struct verdict *)v->bad.head);
    map_free(v->by_key);
    free(v);
}

size_t verdicts_count(const struct verdicts *v)
{
    return map_count(v->by_key);
}

int verdicts_put(struct verdicts *v, const char *key, const char *hash, int ok,
                 uint64_t until_ms)
{
    if (strlen(key) >= VERDICT_KEY_MAX ||
        (hash && strlen(hash) >= sizeof(((struct verdict *)0)->hash)))
        return -EINVAL;
    struct verdict *e = map_get(v->by_key, key);
    if (e)
        drop(v, e);
    while (map_count(v->by_key) >= v->max)
        drop(v, (struct verdict *)(v->bad.head ? v->bad.head : v->good.head));
    e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->ok = ok;
    e->until_ms = until_ms;
    snprintf(e->key, sizeof(e->key), "%s", key);
    snprintf(e->hash, sizeof(e->hash), "%s", hash ? hash : "");
    if (map_put(v->by_key, key, e) == MAP_NOMEM) {
        free(e);
        return -ENOMEM;
    }
    list_push(ok ? &v->good : &v->bad, &e->node);
    return 0;
}

int verdicts_get(struct verdicts *v, const char *key, const char *hash, uint64_t now_ms)
{
    struct verdict *e = map_get(v->by_key, key);
    if (!e)
        return -1;
    if (e->until_ms <= now_ms || strcmp(e->hash, hash ? hash : "") != 0) {
        drop(v, e);
        return -1;
    }
    if (e->ok)
        list_touch(&v->good, &e->node);
    return e->ok;
}

/* ---- wrong passwords per address ---- */

struct failure {
    struct list_node node; /* first */
    char addr[64];
    uint64_t window_start_ms;
    unsigned count;
};

struct failures {
    struct map *by_addr; /* addr -> struct failure */
    struct list lru;     /* least recently failed first */
    size_t max;
    unsigned limit;
    uint64_t window_ms;
};

struct failures *failures_new(size_t max, unsigned limit, uint64_t window_ms)
{
    struct failures *f = calloc(1, sizeof(*f));
    if (!f || !(f->by_addr = map_new())) {
        free(f);
        return NULL;
    }
    f->max = max ? max : 1;
    f->limit = limit;
    f->window_ms = window_ms;
    return f;
}

static void forget(struct failures *f, struct failure *e)
{
    list_unlink(&f->lru, &e->node);
    map_del(f->by_addr, e->addr);
    free(e);
}

void failures_free(struct failures *f)
{
    if (!f)
        return;
    while (f->lru.head)
        forget(f, (struct failure *)f->lru.head);
    map_free(f->by_addr);
    free(f);
}

size_t failures_count(const struct failures *f)
{
    return map_count(f->by_addr);
}

int failures_add(struct failures *f, const char *addr, uint64_t now_ms)
{
    if (!f->limit || strlen(addr) >= sizeof(((struct failure *)0)->addr))
        return 0;
    struct failure *e = map_get(f->by_addr, addr);
    if (e) {
        list_unlink(&f->lru, &e->node);
    } else {
        while (map_count(f->by_addr) >= f->max)
            forget(f, (struct failure *)f->lru.head);
        if (!(e = calloc(1, sizeof(*e))))
            return 0;
        snprintf(e->addr, sizeof(e->addr), "%s", addr);
        e->window_start_ms = now_ms;
        if (map_put(f->by_addr, addr, e) == MAP_NOMEM) {
            free(e);
            return 0;
        }
    }
    list_push(&f->lru, &e->node);
    if (now_ms >= e->window_start_ms + f->window_ms) {
        e->window_start_ms = now_ms;
        e->count = 0;
    }
    return ++e->count == f->limit;
}

uint64_t failures_blocked(struct failures *f, const char *addr, uint64_t now_ms)
{
    struct failure *e = f->limit ? map_get(f->by_addr, addr) : NULL;
    if (!e || e->count < f->limit)
        return 0;
    uint64_t end = e->window_start_ms + f->window_ms;
    if (now_ms >= end) {
        forget(f, e);
        return 0;
    }
    return end - now_ms;
}
