/* SPDX-License-Identifier: Apache-2.0 */
/* Kept descriptors, least recently used first out, with the clock passed in so it can be
 * tested with any "now": a hash map from digest to an entry of a doubly linked list, hottest
 * at the head. Lookups, insertions, touches and evictions are O(1); expiry works from the cold
 * end and stops at the first entry still live, so its cost is the number of entries closed. */
#ifndef REGCACHE_CACHE_FD_LRU_H
#define REGCACHE_CACHE_FD_LRU_H

#include <stddef.h>
#include <stdint.h>

#include "util/held_fd.h"

struct fd_lru;

/* capacity 0 keeps nothing; ttl_ms is how long after its opening an entry may be used. */
struct fd_lru *fd_lru_new(size_t capacity, uint64_t ttl_ms);
/* Closes every kept descriptor. */
void fd_lru_free(struct fd_lru *l);
/* The kept descriptor of key (borrowed) and its size, and the entry made the hottest; -1 when
 * none is kept or it has expired (an expired entry is let go of here). */
int fd_lru_get(struct fd_lru *l, const char *key, uint64_t now_ms, uint64_t *size);
/* As fd_lru_get, with a reference of the caller's own to the descriptor (held_fd_drop it):
 * NULL when none is kept. The descriptor stays open, whatever the list does, until dropped. */
struct held_fd *fd_lru_hold(struct fd_lru *l, const char *key, uint64_t now_ms, uint64_t *size);
/* Takes ownership of fd for key, evicting the coldest entry when full. 0, or -EEXIST (key kept
 * already: fd is left to the caller), -ENOMEM (likewise). */
int fd_lru_put(struct fd_lru *l, const char *key, int fd, uint64_t size, uint64_t now_ms);
/* As fd_lru_put, with a reference of the list's own to file (the caller keeps its own). */
int fd_lru_put_held(struct fd_lru *l, const char *key, struct held_fd *file, uint64_t size,
                    uint64_t now_ms);
/* Forgets key's descriptor (closed once no holder is left); 1 if one was kept. */
int fd_lru_forget(struct fd_lru *l, const char *key);
/* Closes entries from the cold end while they are expired or unused for ttl_ms; returns how
 * many. An entry is thus closed within 2 * ttl_ms of its opening at the latest (an entry in
 * use is found expired on its next hit; one left unused drifts out once unused for ttl_ms). */
size_t fd_lru_expire(struct fd_lru *l, uint64_t now_ms);
size_t fd_lru_count(const struct fd_lru *l);
size_t fd_lru_capacity(const struct fd_lru *l);
/* The key of the coldest entry (the next to be evicted), or NULL: for tests. */
const char *fd_lru_coldest(const struct fd_lru *l);

#endif
