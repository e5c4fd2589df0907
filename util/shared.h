/* SPDX-License-Identifier: Apache-2.0 */
/* A refcounted, read-only byte buffer: one copy of a response body (a manifest, a tags list)
 * that every connection sending it holds a reference to, instead of a copy each.
 *
 * Loop thread only (the counts are plain integers). A body is immutable once made. on_gone,
 * when set, runs once as the last reference drops, just before the memory is freed: an index of
 * live bodies (registry/respond.c, cache/tags.c) forgets the body there. */
#ifndef REGCACHE_UTIL_SHARED_H
#define REGCACHE_UTIL_SHARED_H

#include <stddef.h>

struct shared_body {
    const char *data;
    size_t len;
    int refs;
    /* connections sending it now: the HTTP front counts its bytes once while this is > 0 */
    unsigned senders;
    char *key; /* optional: the name it is indexed under (freed with the body) */
    void (*on_gone)(void *ud, struct shared_body *b);
    void *gone_ud;
    char *own_; /* the bytes, owned */
};

/* A body holding a copy of data; NULL when out of memory. One reference. */
struct shared_body *shared_body_copy(const void *data, size_t len);
/* A body taking over data (malloc'ed; freed with the body, or at once on failure). */
struct shared_body *shared_body_adopt(char *data, size_t len);
struct shared_body *shared_body_ref(struct shared_body *b);
/* NULL is ignored. */
void shared_body_unref(struct shared_body *b);
/* Names the body (copied) for its index; -ENOMEM when out of memory. */
int shared_body_set_key(struct shared_body *b, const char *key);

/* An index of the bodies alive now, by name, so that a second answer with the same bytes
 * shares the first one's memory. A body is in it only while referenced: its last unref takes
 * it out, and the index frees itself when it empties (*ix is NULL then). Loop thread only. */
struct shared_index;
/* The live body named key, with a new reference; NULL when there is none. */
struct shared_body *shared_index_get(struct shared_index **ix, const char *key);
/* Names b key in *ix (replacing an older body of that name); on failure b is simply not
 * indexed. b must not be indexed yet. */
void shared_index_put(struct shared_index **ix, const char *key, struct shared_body *b);

#endif
