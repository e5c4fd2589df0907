/* SPDX-License-Identifier: Apache-2.0 */
/* Just enough tar for an OCI image layout carried as one file: writing ustar entries (sizes past
 * 8 GiB in GNU base-256), and reading ustar, GNU and pax archives (long names and sizes from
 * pax 'x' and GNU 'L' headers; checksums checked). Blocking file I/O. */
#ifndef REGCACHE_BUNDLE_TAR_H
#define REGCACHE_BUNDLE_TAR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TAR_BLOCK 512
#define TAR_NAME_MAX 1024

/* Writes the header of a regular file (type '0') or a directory (type '5', size 0) named
 * name (at most 100 bytes). 0 or -errno (-ENAMETOOLONG). */
int tar_write_header(FILE *f, const char *name, uint64_t size, char type);
/* Zero bytes after an entry's size bytes, up to the next block. */
int tar_write_pad(FILE *f, uint64_t size);
/* The two zero blocks that end an archive. */
int tar_write_end(FILE *f);

struct tar_entry {
    char name[TAR_NAME_MAX]; /* without a leading "./" */
    uint64_t size;
    char type; /* '0' regular file (also '\0', '7'), '5' directory, else as in the header */
};

struct tar_reader {
    FILE *f;
    uint64_t offset;    /* where the reader stands in the archive */
    uint64_t remaining; /* of the current entry's data */
    uint64_t pad;       /* after it */
    char err[256];      /* why tar_next failed */
};

void tar_reader_init(struct tar_reader *r, FILE *f);
/* Skips what is left of the current entry and reads the next header: 1 with *e, 0 at the end
 * of the archive, or -EINVAL (a bad header, a truncated archive) / -errno with err set. */
int tar_next(struct tar_reader *r, struct tar_entry *e);
/* Reads up to len bytes of the current entry's data: the count, 0 at its end, or -errno
 * (-EINVAL when the archive ends early). */
long tar_read(struct tar_reader *r, void *buf, size_t len);

#endif
