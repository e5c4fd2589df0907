/* SPDX-License-Identifier: Apache-2.0 */
#include "util/held_fd.h"

#include <stdlib.h>
#include <unistd.h>

struct held_fd *held_fd_new(int fd)
{
    struct held_fd *h = malloc(sizeof(*h));
    if (!h)
        return NULL;
    h->fd = fd;
    atomic_init(&h->refs, 1);
    return h;
}

struct held_fd *held_fd_take(struct held_fd *h)
{
    if (h)
        atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    return h;
}

void held_fd_drop(struct held_fd *h)
{
    if (!h || atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1)
        return;
    close(h->fd);
    free(h);
}

void held_fd_release(void *h)
{
    held_fd_drop(h);
}
