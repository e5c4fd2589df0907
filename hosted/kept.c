/* SPDX-License-Identifier: Apache-2.0 */
/* Hosted manifests' bytes in memory (see kept.h). */
#include "hosted/kept.h"

#include <stdlib.h>
#include <string.h>

#include "util/list.h"
#include "util/map.h"

struct kept {
    struct list_node recency;
    char *digest;
    uint64_t epoch;
    size_t len;
    char data[];
};

struct kept_manifests {
    struct map *by_digest;
    struct list recency; /* the least recently used first */
    size_t bytes, max_bytes;
};

struct kept_manifests *kept_new(size_t max_bytes)
{
    struct kept_manifests *k = calloc(1, sizeof(*k));
    if (!k || !(k->by_digest = map_new())) {
        free(k);
        return NULL;
    }
    k->max_bytes = max_bytes;
    return k;
}

static void drop(struct kept_manifests *k, struct kept *e)
{
    list_unlink(&k->recency, &e->recency);
    map_del(k->by_digest, e->digest);
    k->bytes -= e->len;
    free(e->digest);
    free(e);
}

static struct kept *oldest(const struct kept_manifests *k)
{
    return LIST_ENTRY(k->recency.head, struct kept, recency);
}

void kept_free(struct kept_manifests *k)
{
    if (!k)
        return;
    while (k->recency.head)
        drop(k, oldest(k));
    map_free(k->by_digest);
    free(k);
}

const char *kept_get(struct kept_manifests *k, const char *digest, uint64_t epoch, size_t *len)
{
    struct kept *e = map_get(k->by_digest, digest);
    if (!e)
        return NULL;
    if (e->epoch != epoch) {
        drop(k, e);
        return NULL;
    }
    list_touch(&k->recency, &e->recency);
    *len = e->len;
    return e->data;
}

void kept_put(struct kept_manifests *k, const char *digest, uint64_t epoch, const char *data,
              size_t len)
{
    if (len > k->max_bytes)
        return;
    struct kept *old = map_get(k->by_digest, digest);
    if (old)
        drop(k, old);
    struct kept *e = malloc(sizeof(*e) + (len ? len : 1));
    if (!e || !(e->digest = strdup(digest))) {
        free(e);
        return;
    }
    if (map_put(k->by_digest, e->digest, e) == MAP_NOMEM) {
        free(e->digest);
        free(e);
        return;
    }
    e->epoch = epoch;
    e->len = len;
    memcpy(e->data, data, len);
    list_push(&k->recency, &e->recency);
    k->bytes += len;
    while (k->bytes > k->max_bytes)
        drop(k, oldest(k));
}

size_t kept_bytes(const struct kept_manifests *k)
{
    return k->bytes;
}

size_t kept_count(const struct kept_manifests *k)
{
    return map_count(k->by_digest);
}
