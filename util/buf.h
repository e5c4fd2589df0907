/* SPDX-License-Identifier: Apache-2.0 */
/* A growable byte buffer with a hard maximum: appends past the maximum fail with -ENOBUFS. */
#ifndef REGCACHE_UTIL_BUF_H
#define REGCACHE_UTIL_BUF_H

#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
/* Ensures data is NUL-terminated after len (the NUL is not counted). */
int buf_terminate(struct buf *b);

#endif
