/* SPDX-License-Identifier: Apache-2.0 */
/* The _catalog answer: repository names gathered from every source (the cache, hosted
 * repositories), sorted, each once, paged with n and last. Pure: no I/O. */
#ifndef REGCACHE_REGISTRY_CATALOG_H
#define REGCACHE_REGISTRY_CATALOG_H

#include <stddef.h>

#include "util/buf.h"

#define CATALOG_NAMES_MAX (1u << 20) /* names gathered for one answer at most */
#define CATALOG_NAME_MAX 1024        /* bytes of one name ("upstream/repository") with its NUL */

struct catalog {
    char **names;
    size_t n, cap;
};

/* Adds a copy of name; ud is a struct catalog (the shape of cache_catalog's and
 * hosted_repositories' callbacks). -ENOMEM, or -E2BIG past CATALOG_NAMES_MAX. */
int catalog_add(void *ud, const char *name);

/* Writes {"repositories":[...]} with the names sorting after last (NULL: from the first), at
 * most limit of them (0: all). When more remain, next gets the last name written (for the
 * Link of the next page), else "". */
int catalog_page(struct catalog *c, size_t limit, const char *last, struct buf *out, char *next,
                 size_t nextlen);

void catalog_free(struct catalog *c);

#endif
