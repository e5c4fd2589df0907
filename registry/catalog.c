/* SPDX-License-Identifier: Apache-2.0 */
#include "registry/catalog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

int catalog_add(void *ud, const char *name)
{
    struct catalog *c = ud;
    if (c->n == c->cap) {
        if (c->cap >= CATALOG_NAMES_MAX)
            return -E2BIG;
        size_t cap = c->cap ? 2 * c->cap : 64;
        char **p = realloc(c->names, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        c->names = p;
        c->cap = cap;
    }
    if (!(c->names[c->n] = strdup(name)))
        return -ENOMEM;
    c->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int catalog_page(struct catalog *c, size_t limit, const char *last, struct buf *out, char *next,
                 size_t nextlen)
{
    next[0] = '\0';
    if (c->n)
        qsort(c->names, c->n, sizeof(*c->names), cmp_str);
    int r = buf_append(out, "{\"repositories\":[", 17);
    size_t written = 0;
    const char *prev = NULL;
    for (size_t i = 0; !r && i < c->n; i++) {
        const char *name = c->names[i];
        if ((last && strcmp(name, last) <= 0) || (prev && strcmp(name, prev) == 0))
            continue;
        if (limit && written == limit) {
            snprintf(next, nextlen, "%s", prev);
            break;
        }
        if (written++)
            r = buf_append(out, ",", 1);
        if (!r)
            r = json_put_string(out, name);
        prev = name;
    }
    return r ? r : buf_append(out, "]}\n", 3);
}

void catalog_free(struct catalog *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->names[i]);
    free(c->names);
    c->names = NULL;
    c->n = c->cap = 0;
}
