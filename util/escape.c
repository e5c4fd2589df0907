/* SPDX-License-Identifier: Apache-2.0 */
#include "util/escape.h"

#include <stdio.h>
#include <string.h>

size_t utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* past U+10FFFF */
    } else {
        return 0; /* a continuation byte, 0xc0, 0xc1 or 0xf5.. */
    }
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

/* Appends piece (n bytes) when it fits whole. */
static int put(char *out, size_t outlen, size_t *pos, const char *piece, size_t n)
{
    if (*pos + n + 1 > outlen)
        return -1;
    memcpy(out + *pos, piece, n);
    *pos += n;
    return 0;
}

size_t escape_json(char *out, size_t outlen, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t pos = 0;
    char esc[8];
    if (!outlen)
        return 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        int r;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            r = put(out, outlen, &pos, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            r = put(out, outlen, &pos, esc, 6);
            i++;
        } else {
            size_t n = utf8_sequence(u + i, len - i);
            if (n)
                r = put(out, outlen, &pos, s + i, n);
            else
                r = put(out, outlen, &pos, "\\ufffd", 6);
            i += n ? n : 1;
        }
        if (r)
            break;
    }
    out[pos] = '\0';
    return pos;
}

size_t escape_text(char *out, size_t outlen, const char *s, size_t len)
{
    size_t pos = 0;
    char esc[8];
    if (!outlen)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int r;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            r = put(out, outlen, &pos, esc, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02X", c);
            r = put(out, outlen, &pos, esc, 4);
        } else {
            r = put(out, outlen, &pos, s + i, 1);
        }
        if (r)
            break;
    }
    out[pos] = '\0';
    return pos;
}
