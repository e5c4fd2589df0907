/* SPDX-License-Identifier: Apache-2.0 */
/* A string-keyed hash map (open chaining). Keys are copied; values are borrowed pointers. */
#ifndef REGCACHE_UTIL_MAP_H
#define REGCACHE_UTIL_MAP_H

#include <stddef.h>

struct map;

struct map *map_new(void);
/* Frees the map and its keys, not the values. */
void map_free(struct map *m);
void *map_get(const struct map *m, const char *key);
/* Inserts or replaces; returns the previous value (or NULL). -ENOMEM is reported as the
 * special value MAP_NOMEM. */
void *map_put(struct map *m, const char *key, void *value);
#define MAP_NOMEM ((void *)-1)
/* Removes key; returns its value or NULL. */
void *map_del(struct map *m, const char *key);
size_t map_count(const struct map *m);

/* Iteration: calls fn for every entry until it returns non-zero (which is returned). The map
 * must not be changed by fn. */
int map_each(const struct map *m, int (*fn)(const char *key, void *value, void *ud), void *ud);

/* A snapshot of the values (for changing the map while going through them): *out is
 * malloc'ed (NULL when the map is empty), *n its length. -ENOMEM when out of memory. */
int map_values(const struct map *m, void ***out, size_t *n);

#endif
