/* Fuzz drivers for parsers that read a file: the input is written to a private temp file. */
#ifndef REGCACHE_FUZZ_FILE_H
#define REGCACHE_FUZZ_FILE_H

#include <stdio.h>
#include <unistd.h>

static const char *fuzz_file(const unsigned char *data, size_t size)
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
