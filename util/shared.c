/* SPDX-License-Identifier: Apache-2.0 */
#include "util/shared.h"

#include "util/map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct shared_body *shared_body_adopt(char *data, size_t len)
{
    struct shared_body *b = calloc(1, sizeof(*b));
    if (!b) {
        free(data);
        return NULL;
    }
    b->own_ = data;
    b->data = data ? data : "";
    b->len = len;
    b->refs = 1;
    return b;
}

struct shared_body *shared_body_copy(const void *data, size_t len)
{
    char *p = malloc(len ? len : 1);
    if (!p)
        return NULL;
    if (len)
        memcpy(p, data, len);
    return shared_body_adopt(p, len);
}

struct shared_body *shared_body_ref(struct shared_body *b)
{
    b->refs++;
    return b;
}

void shared_body_unref(struct shared_body *b)
{
    if (!b || --b->refs)
        return;
    if (b->on_gone)
        b->on_gone(b->gone_ud, b);
    free(b->key);
    free(b->own_);
    free(b);
}

int shared_body_set_key(struct shared_body *b, const char *key)
{
    char *k = strdup(key);
    if (!k)
        return -ENOMEM;
    free(b->key);
    b->key = k;
    return 0;
}

struct shared_index {
    struct map *bodies; /* key -> struct shared_body, borrowed */
    struct shared_index **home;
};

static void index_gone(void *ud, struct shared_body *b)
{
    struct shared_index *ix = ud;
    if (map_get(ix->bodies, b->key) == b)
        map_del(ix->bodies, b->key);
    if (!map_count(ix->bodies)) {
        *ix->home = NULL;
        map_free(ix->bodies);
        free(ix);
    }
}

struct shared_body *shared_index_get(struct shared_index **ix, const char *key)
{
    struct shared_body *b = *ix ? map_get((*ix)->bodies, key) : NULL;
    return b ? shared_body_ref(b) : NULL;
}

void shared_index_put(struct shared_index **ix, const char *key, struct shared_body *b)
{
    if (!*ix) {
        struct shared_index *n = calloc(1, sizeof(*n));
        if (!n || !(n->bodies = map_new())) {
            free(n);
            return;
        }
        n->home = ix;
        *ix = n;
    }
    if (shared_body_set_key(b, key) || map_put((*ix)->bodies, key, b) == MAP_NOMEM) {
        if (!map_count((*ix)->bodies)) {
            map_free((*ix)->bodies);
            free(*ix);
            *ix = NULL;
        }
        return;
    }
    b->on_gone = index_gone;
    b->gone_ud = *ix;
}
