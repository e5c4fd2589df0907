/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the fuzz drivers: inputs as C strings or as files. */
#ifndef REGCACHE_FUZZ_UTIL_H
#define REGCACHE_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A NUL-terminated copy of the input (free it), or NULL. */
static inline char *fuzz_cstring(const unsigned char *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = '\0';
    }
    return s;
}

/* The input written to a private temporary file, for parsers that read files. */
static inline const char *fuzz_file(const unsigned char *data, size_t size)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof(path), "/tmp/regcache-fuzz-%ld", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    fwrite(data, 1, size, f);
    fclose(f);
    return path;
}

#endif
