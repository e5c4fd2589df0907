/* SPDX-License-Identifier: Apache-2.0 */
#include "util/map.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct map_entry {
    struct map_entry *next;
    uint64_t hash;
    void *value;
    char key[];
};

struct map {
    struct map_entry **slots;
    size_t n_slots; /* power of two */
    size_t count;
};

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

struct map *map_new(void)
{
    struct map *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->n_slots = 64;
    m->slots = calloc(m->n_slots, sizeof(*m->slots));
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void map_free(struct map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_slots; i++) {
        struct map_entry *e = m->slots[i];
        while (e) {
            struct map_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->slots);
    free(m);
}

static struct map_entry **find(const struct map *m, const char *key, uint64_t h)
{
    struct map_entry **pp = &m->slots[h & (m->n_slots - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->next;
    return pp;
}

void *map_get(const struct map *m, const char *key)
{
    struct map_entry **pp = find(m, key, hash_key(key));
    return *pp ? (*pp)->value : NULL;
}

static void grow(struct map *m)
{
    size_t n = m->n_slots * 2;
    struct map_entry **slots = calloc(n, sizeof(*slots));
    if (!slots)
        return; /* keep working with longer chains */
    for (size_t i = 0; i < m->n_slots; i++) {
        struct map_entry *e = m->slots[i];
        while (e) {
            struct map_entry *next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n;
}

void *map_put(struct map *m, const char *key, void *value)
{
    uint64_t h = hash_key(key);
    struct map_entry **pp = find(m, key, h);
    if (*pp) {
        void *old = (*pp)->value;
        (*pp)->value = value;
        return old;
    }
    size_t klen = strlen(key);
    struct map_entry *e = malloc(sizeof(*e) + klen + 1);
    if (!e)
        return MAP_NOMEM;
    memcpy(e->key, key, klen + 1);
    e->hash = h;
    e->value = value;
    e->next = NULL;
    *pp = e;
    if (++m->count > m->n_slots)
        grow(m);
    return NULL;
}

void *map_del(struct map *m, const char *key)
{
    struct map_entry **pp = find(m, key, hash_key(key));
    struct map_entry *e = *pp;
    if (!e)
        return NULL;
    void *value = e->value;
    *pp = e->next;
    free(e);
    m->count--;
    return value;
}

size_t map_count(const struct map *m)
{
    return m->count;
}

int map_each(const struct map *m, int (*fn)(const char *key, void *value, void *ud), void *ud)
{
    for (size_t i = 0; i < m->n_slots; i++)
        for (struct map_entry *e = m->slots[i]; e; e = e->next) {
            int r = fn(e->key, e->value, ud);
            if (r)
                return r;
        }
    return 0;
}

struct values_ctx {
    void **v;
    size_t n;
};

static int add_value(const char *key, void *value, void *ud)
{
    (void)key;
    struct values_ctx *vc = ud;
    vc->v[vc->n++] = value;
    return 0;
}

int map_values(const struct map *m, void ***out, size_t *n)
{
    struct values_ctx vc = {NULL, 0};
    size_t count = map_count(m);
    *out = NULL;
    *n = 0;
    if (!count)
        return 0;
    vc.v = malloc(count * sizeof(*vc.v));
    if (!vc.v)
        return -ENOMEM;
    map_each(m, add_value, &vc);
    *out = vc.v;
    *n = vc.n;
    return 0;
}
