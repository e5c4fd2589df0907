/* SPDX-License-Identifier: Apache-2.0 */
/* A descriptor shared by everyone holding a reference to it (a cache that keeps it, each
 * response sending it), closed when the last lets go: a hit takes a reference where it would
 * otherwise dup(2) the descriptor, and lets go where it would close(2) it. Any thread. */
#ifndef REGCACHE_UTIL_HELD_FD_H
#define REGCACHE_UTIL_HELD_FD_H

#include <stdatomic.h>

struct held_fd {
    int fd;
    atomic_uint refs;
};

/* Takes ownership of fd with one reference; NULL when out of memory (fd is left open). */
struct held_fd *held_fd_new(int fd);
/* Another reference to h (NULL: none). */
struct held_fd *held_fd_take(struct held_fd *h);
/* Lets go of one reference (NULL: none); the last closes the descriptor. */
void held_fd_drop(struct held_fd *h);
/* held_fd_drop for callbacks taking a void * (a response body's release). */
void held_fd_release(void *h);

#endif
