/* SPDX-License-Identifier: Apache-2.0 */
/* Finding elements and their text in S3's answers. See s3/xml.h. */
#include "s3/xml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the next occurrence of needle (nlen bytes) in [p, end), or NULL */
static const char *find(const char *p, const char *end, const char *needle, size_t nlen)
{
    while (p && (size_t)(end - p) >= nlen) {
        const char *hit = memchr(p, needle[0], (size_t)(end - p) - nlen + 1);
        if (!hit)
            return NULL;
        if (!memcmp(hit, needle, nlen))
            return hit;
        p = hit + 1;
    }
    return NULL;
}

int xml_element(const char *p, const char *end, const char *name, const char **content,
                size_t *len)
{
    char open[128], close[128];
    size_t nlen = strlen(name);
    if (!p || nlen + 4 > sizeof(open))
        return -ENOENT;
    snprintf(open, sizeof(open), "<%s", name);
    snprintf(close, sizeof(close), "</%s>", name);
    const char *at = p;
    for (;;) {
        const char *o = find(at, end, open, nlen + 1);
        if (!o)
            return -ENOENT;
        const char *after = o + nlen + 1;
        if (after >= end)
            return -ENOENT;
        if (*after == '/' && after + 1 < end && after[1] == '>') { /* <name/>: empty */
            *content = after + 2;
            *len = 0;
            return 0;
        }
        if (*after != '>' && *after != ' ') { /* <KeyMarker> when asked for Key */
            at = after;
            continue;
        }
        const char *gt = memchr(after, '>', (size_t)(end - after));
        if (!gt)
            return -ENOENT;
        if (gt > after && gt[-1] == '/') {
            *content = gt + 1;
            *len = 0;
            return 0;
        }
        const char *c = find(gt + 1, end, close, nlen + 3);
        if (!c)
            return -ENOENT;
        *content = gt + 1;
        *len = (size_t)(c - (gt + 1));
        return 0;
    }
}

static int put_utf8(unsigned long cp, char *out, size_t len, size_t *at)
{
    unsigned char b[4];
    size_t n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return -EINVAL;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (*at + n >= len)
        return -ENAMETOOLONG;
    memcpy(out + *at, b, n);
    *at += n;
    return 0;
}

int xml_text(const char *p, const char *end, const char *name, char *out, size_t len)
{
    const char *c;
    size_t clen;
    if (!len)
        return -ENAMETOOLONG;
    out[0] = '\0';
    int rc = xml_element(p, end, name, &c, &clen);
    if (rc)
        return rc;
    static const struct {
        const char *name;
        char ch;
    } ents[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    size_t at = 0;
    for (size_t i = 0; i < clen;) {
        char ch = c[i];
        if (ch == '<')
            return -EINVAL;
        if (ch != '&') {
            if (at + 1 >= len)
                return -ENAMETOOLONG;
            out[at++] = ch;
            i++;
            continue;
        }
        const char *semi = memchr(c + i, ';', clen - i);
        if (!semi || semi - (c + i) > 12)
            return -EINVAL;
        size_t elen = (size_t)(semi - (c + i)) + 1; /* "&...;" */
        int done = 0;
        for (size_t k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
            size_t n = strlen(ents[k].name);
            if (elen == n + 1 && !memcmp(c + i + 1, ents[k].name, n)) {
                if (at + 1 >= len)
                    return -ENAMETOOLONG;
                out[at++] = ents[k].ch;
                done = 1;
                break;
            }
        }
        if (!done) {
            if (elen < 4 || c[i + 1] != '#')
                return -EINVAL;
            int hex = c[i + 2] == 'x';
            const char *digits = c + i + 2 + hex;
            char num[12];
            size_t nd = (size_t)(semi - digits);
            if (!nd || nd >= sizeof(num))
                return -EINVAL;
            memcpy(num, digits, nd);
            num[nd] = '\0';
            char *stop;
            unsigned long cp = strtoul(num, &stop, hex ? 16 : 10);
            if (*stop || num[0] == '-' || num[0] == '+' || num[0] == ' ')
                return -EINVAL;
            if ((rc = put_utf8(cp, out, len, &at)))
                return rc;
        }
        i += elen;
    }
    out[at] = '\0';
    return 0;
}

int64_t xml_time(const char *s)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return -1;
    const char *rest = s + n;
    if (*rest == '.') {
        rest++;
        while (*rest >= '0' && *rest <= '9')
            rest++;
    }
    if (strcmp(rest, "Z") != 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                    .tm_min = mi, .tm_sec = sec};
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (int64_t)t;
}
