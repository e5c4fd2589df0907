/* SPDX-License-Identifier: Apache-2.0 */
#include "bundle/tar.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing ---- */

static void put_octal(char *field, size_t len, uint64_t v)
{
    /* len - 1 digits and a NUL, as ustar wants */
    field[len - 1] = '\0';
    for (size_t i = len - 1; i-- > 0;) {
        field[i] = (char)('0' + (v & 7));
        v >>= 3;
    }
}

static void put_size(char *field, uint64_t v)
{
    if (v < (1ULL << 33)) { /* 11 octal digits */
        put_octal(field, 12, v);
        return;
    }
    /* GNU base-256: the high bit of the first byte set, then the number big-endian */
    memset(field, 0, 12);
    field[0] = (char)0x80;
    for (int i = 11; i > 3; i--) {
        field[i] = (char)(v & 0xff);
        v >>= 8;
    }
}

int tar_write_header(FILE *f, const char *name, uint64_t size, char type)
{
    unsigned char h[TAR_BLOCK];
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > 100)
        return -ENAMETOOLONG;
    memset(h, 0, sizeof(h));
    memcpy(h, name, nlen);
    put_octal((char *)h + 100, 8, type == '5' ? 0755 : 0644);
    put_octal((char *)h + 108, 8, 0);
    put_octal((char *)h + 116, 8, 0);
    put_size((char *)h + 124, type == '5' ? 0 : size);
    put_octal((char *)h + 136, 12, 0); /* mtime 0: the same images make the same bundle */
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof(h); i++)
        sum += h[i];
    put_octal((char *)h + 148, 7, sum);
    h[155] = ' ';
    return fwrite(h, 1, sizeof(h), f) == sizeof(h) ? 0 : -errno ? -errno : -EIO;
}

int tar_write_pad(FILE *f, uint64_t size)
{
    static const char zeros[TAR_BLOCK];
    size_t pad = (size_t)((TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK);
    if (pad && fwrite(zeros, 1, pad, f) != pad)
        return errno ? -errno : -EIO;
    return 0;
}

int tar_write_end(FILE *f)
{
    static const char zeros[2 * TAR_BLOCK];
    return fwrite(zeros, 1, sizeof(zeros), f) == sizeof(zeros) ? 0 : errno ? -errno : -EIO;
}

/* ---- reading ---- */

void tar_reader_init(struct tar_reader *r, FILE *f)
{
    memset(r, 0, sizeof(*r));
    r->f = f;
}

static int fail(struct tar_reader *r, int rc, const char *what)
{
    snprintf(r->err, sizeof(r->err), "%s at byte %llu", what, (unsigned long long)r->offset);
    return rc;
}

static int read_exact(struct tar_reader *r, void *buf, size_t len)
{
    size_t got = fread(buf, 1, len, r->f);
    r->offset += got;
    if (got == len)
        return 0;
    return ferror(r->f) ? fail(r, errno ? -errno : -EIO, "read error")
                        : fail(r, -EINVAL, "the archive ends early");
}

/* Skips n bytes: a seek when the file allows it, reading otherwise. */
static int skip(struct tar_reader *r, uint64_t n)
{
    if (!n)
        return 0;
    if (fseeko(r->f, (off_t)n, SEEK_CUR) == 0) {
        r->offset += n;
        return 0;
    }
    char buf[64 * 1024];
    while (n) {
        size_t chunk = n < sizeof(buf) ? (size_t)n : sizeof(buf);
        int rc = read_exact(r, buf, chunk);
        if (rc)
            return rc;
        n -= chunk;
    }
    return 0;
}

static int parse_number(const unsigned char *field, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (field[0] & 0x80) { /* GNU base-256 */
        if (field[0] != 0x80)
            return -EINVAL; /* negative, or more than 64 bits */
        for (size_t i = 1; i < len; i++) {
            if (v >> 56)
                return -EINVAL;
            v = v << 8 | field[i];
        }
        *out = v;
        return 0;
    }
    size_t i = 0;
    while (i < len && field[i] == ' ')
        i++;
    for (; i < len && field[i] >= '0' && field[i] <= '7'; i++) {
        if (v >> 60)
            return -EINVAL;
        v = v << 3 | (uint64_t)(field[i] - '0');
    }
    for (; i < len; i++)
        if (field[i] != ' ' && field[i] != '\0')
            return -EINVAL;
    *out = v;
    return 0;
}

static int checksum_ok(const unsigned char *h)
{
    uint64_t want;
    if (parse_number(h + 148, 8, &want))
        return 0;
    unsigned sum = 0;
    for (size_t i = 0; i < TAR_BLOCK; i++)
        sum += (i >= 148 && i < 156) ? ' ' : h[i];
    return sum == want;
}

/* Reads a pax extended header's records; takes path and size. */
static int read_pax(struct tar_reader *r, uint64_t len, char *path, size_t pathlen, uint64_t *size,
                    int *has_size)
{
    if (len > 1024 * 1024)
        return fail(r, -EINVAL, "a pax header larger than 1 MiB");
    char *data = malloc(len + 1);
    if (!data)
        return -ENOMEM;
    int rc = read_exact(r, data, (size_t)len);
    if (!rc)
        rc = skip(r, (TAR_BLOCK - len % TAR_BLOCK) % TAR_BLOCK);
    data[len] = '\0';
    for (size_t at = 0; !rc && at < len;) {
        /* "<length> <key>=<value>\n", length counting the whole record */
        char *end;
        unsigned long rlen = strtoul(data + at, &end, 10);
        if (end == data + at || *end != ' ' || rlen == 0 || rlen > len - at) {
            rc = fail(r, -EINVAL, "a malformed pax record");
            break;
        }
        char *key = end + 1, *rec_end = data + at + rlen - 1,
             *eq = memchr(key, '=', (size_t)(rec_end - key));
        if (!eq || *rec_end != '\n') {
            rc = fail(r, -EINVAL, "a malformed pax record");
            break;
        }
        size_t klen = (size_t)(eq - key), vlen = (size_t)(rec_end - eq - 1);
        if (klen == 4 && memcmp(key, "path", 4) == 0) {
            if (vlen >= pathlen) {
                rc = fail(r, -EINVAL, "a pax path too long");
                break;
            }
            memcpy(path, eq + 1, vlen);
            path[vlen] = '\0';
        } else if (klen == 4 && memcmp(key, "size", 4) == 0) {
            char num[32];
            if (vlen == 0 || vlen >= sizeof(num)) {
                rc = fail(r, -EINVAL, "a malformed pax size");
                break;
            }
            memcpy(num, eq + 1, vlen);
            num[vlen] = '\0';
            char *e;
            errno = 0;
            unsigned long long v = strtoull(num, &e, 10);
            if (*e || errno) {
                rc = fail(r, -EINVAL, "a malformed pax size");
                break;
            }
            *size = v;
            *has_size = 1;
        }
        at += rlen;
    }
    free(data);
    return rc;
}

int tar_next(struct tar_reader *r, struct tar_entry *e)
{
    int rc = skip(r, r->remaining + r->pad);
    if (rc)
        return rc;
    r->remaining = r->pad = 0;
    char long_name[TAR_NAME_MAX] = "";
    uint64_t pax_size = 0;
    int has_pax_size = 0;
    for (;;) {
        unsigned char h[TAR_BLOCK];
        uint64_t at = r->offset;
        size_t got = fread(h, 1, sizeof(h), r->f);
        r->offset += got;
        if (got == 0 && !ferror(r->f))
            return 0; /* no end blocks: tolerated, as GNU tar does */
        if (got != sizeof(h))
            return ferror(r->f) ? fail(r, errno ? -errno : -EIO, "read error")
                                : fail(r, -EINVAL, "the archive ends inside a header");
        int zero = 1;
        for (size_t i = 0; i < sizeof(h) && zero; i++)
            zero = h[i] == 0;
        if (zero)
            return 0;
        if (!checksum_ok(h)) {
            snprintf(r->err, sizeof(r->err), "a header with a wrong checksum at byte %llu",
                     (unsigned long long)at);
            return -EINVAL;
        }
        uint64_t size;
        if (parse_number(h + 124, 12, &size)) {
            snprintf(r->err, sizeof(r->err), "a header with a bad size at byte %llu",
                     (unsigned long long)at);
            return -EINVAL;
        }
        char type = (char)h[156];
        if (type == 'x') {
            if ((rc = read_pax(r, size, long_name, sizeof(long_name), &pax_size, &has_pax_size)))
                return rc;
            continue;
        }
        if (type == 'g') { /* global pax header: nothing in it matters here */
            if ((rc = skip(r, size + (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK)))
                return rc;
            continue;
        }
        if (type == 'L') { /* GNU long name */
            if (size >= sizeof(long_name))
                return fail(r, -EINVAL, "a GNU long name too long");
            if ((rc = read_exact(r, long_name, (size_t)size)) ||
                (rc = skip(r, (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK)))
                return rc;
            long_name[size] = '\0';
            continue;
        }
        if (long_name[0]) {
            snprintf(e->name, sizeof(e->name), "%s", long_name);
        } else {
            char name[101], prefix[156];
            memcpy(name, h, 100);
            name[100] = '\0';
            prefix[0] = '\0';
            if (memcmp(h + 257, "ustar", 5) == 0) {
                memcpy(prefix, h + 345, 155);
                prefix[155] = '\0';
            }
            snprintf(e->name, sizeof(e->name), "%s%s%s", prefix, prefix[0] ? "/" : "", name);
        }
        char *n = e->name;
        while (n[0] == '.' && n[1] == '/')
            memmove(n, n + 2, strlen(n + 2) + 1);
        e->size = has_pax_size ? pax_size : size;
        e->type = (type == '\0' || type == '7') ? '0' : type;
        r->remaining = e->size;
        r->pad = (TAR_BLOCK - e->size % TAR_BLOCK) % TAR_BLOCK;
        return 1;
    }
}

long tar_read(struct tar_reader *r, void *buf, size_t len)
{
    if (r->remaining == 0)
        return 0;
    if (len > r->remaining)
        len = (size_t)r->remaining;
    if (len > (size_t)1 << 30)
        len = (size_t)1 << 30;
    size_t got = fread(buf, 1, len, r->f);
    r->offset += got;
    r->remaining -= got;
    if (got == 0) {
        int rc = ferror(r->f) ? (errno ? -errno : -EIO) : -EINVAL;
        fail(r, rc, rc == -EINVAL ? "the archive ends inside an entry" : "read error");
        return rc;
    }
    return (long)got;
}
