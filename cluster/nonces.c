/* SPDX-License-Identifier: Apache-2.0 */
/* Relay nonces taken within the time window: a map of "sender nonce" to when it may go. */
#include "cluster/nonces.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/peer_auth.h"
#include "util/map.h"

#define KEEP_MS (2ULL * PEER_AUTH_SKEW_S * 1000)

struct nonces {
    struct map *seen; /* "sender nonce" -> malloc'ed uint64_t: kept until then */
    uint64_t next_sweep_ms;
};

struct nonces *nonces_new(void)
{
    struct nonces *n = calloc(1, sizeof(*n));
    if (n && !(n->seen = map_new())) {
        free(n);
        return NULL;
    }
    return n;
}

static int free_value(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    free(value);
    return 0;
}

void nonces_free(struct nonces *n)
{
    if (!n)
        return;
    map_each(n->seen, free_value, NULL);
    map_free(n->seen);
    free(n);
}

struct sweep {
    uint64_t now;
    char **gone;
    size_t n, cap;
};

static int collect_expired(const char *key, void *value, void *ud)
{
    struct sweep *s = ud;
    if (*(uint64_t *)value > s->now)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        char **g = realloc(s->gone, cap * sizeof(*g));
        if (!g)
            return 1;
        s->gone = g;
        s->cap = cap;
    }
    if (!(s->gone[s->n] = strdup(key)))
        return 1;
    s->n++;
    return 0;
}

/* Drops what expired; runs at most once a second, or when the map is full. */
static void sweep(struct nonces *n, uint64_t now_ms, int full)
{
    if (!full && now_ms < n->next_sweep_ms)
        return;
    n->next_sweep_ms = now_ms + 1000;
    struct sweep s = {.now = now_ms};
    map_each(n->seen, collect_expired, &s);
    for (size_t i = 0; i < s.n; i++) {
        free(map_del(n->seen, s.gone[i]));
        free(s.gone[i]);
    }
    free(s.gone);
}

int nonces_take(struct nonces *n, const char *sender, const char *nonce, uint64_t now_ms)
{
    char key[MEMBERS_URL_MAX + PEER_AUTH_NONCE_HEX + 2];
    snprintf(key, sizeof(key), "%s %s", sender, nonce);
    sweep(n, now_ms, 0);
    uint64_t *until = map_get(n->seen, key);
    if (until && *until > now_ms)
        return -EALREADY;
    if (!until && map_count(n->seen) >= NONCES_MAX) {
        sweep(n, now_ms, 1);
        if (map_count(n->seen) >= NONCES_MAX)
            return -ENOSPC;
    }
    if (!until) {
        if (!(until = malloc(sizeof(*until))))
            return -ENOMEM;
        if (map_put(n->seen, key, until) == MAP_NOMEM) {
            free(until);
            return -ENOMEM;
        }
    }
    *until = now_ms + KEEP_MS;
    return 0;
}

uint64_t nonces_count(const struct nonces *n)
{
    return map_count(n->seen);
}
