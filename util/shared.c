#include "util/shared.h"

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
