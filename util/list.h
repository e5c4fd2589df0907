/* SPDX-License-Identifier: Apache-2.0 */
/* An intrusive doubly linked list, oldest first: the recency list of an LRU (the newest pushed
 * at the tail, the oldest evicted from the head). The node lives inside its entry, and
 * LIST_ENTRY finds the entry from it. Every operation is O(1). */
#ifndef REGCACHE_UTIL_LIST_H
#define REGCACHE_UTIL_LIST_H

#include <stddef.h>

struct list_node {
    struct list_node *prev, *next;
};

struct list {
    struct list_node *head, *tail; /* the oldest, the newest */
};

/* The entry of type holding node as member, or NULL for a NULL node. */
#define LIST_ENTRY(node, type, member)                                                         \
    ((node) ? (type *)(void *)((char *)(node) - offsetof(type, member)) : (type *)NULL)

static inline void list_push(struct list *l, struct list_node *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

static inline void list_unlink(struct list *l, struct list_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
}

/* Makes n the newest. */
static inline void list_touch(struct list *l, struct list_node *n)
{
    if (l->tail != n) {
        list_unlink(l, n);
        list_push(l, n);
    }
}

#endif
