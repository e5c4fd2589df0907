/* SPDX-License-Identifier: Apache-2.0 */
#include "util/json.h"

#include <errno.h>
#include <string.h>

struct cursor {
    const char *p, *end;
};

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* Parses a string at c->p (which must be '"'); copies it unescaped into out when out != NULL. */
static int parse_string(struct cursor *c, char *out, size_t outlen, size_t *outn)
{
    size_t n = 0;
    int overflow = 0;
    if (c->p >= c->end || *c->p != '"')
        return -EINVAL;
    c->p++;
    while (c->p < c->end && *c->p != '"') {
        char ch = *c->p++;
        if ((unsigned char)ch < 0x20)
            return -EINVAL;
        if (ch == '\\') {
            if (c->p >= c->end)
                return -EINVAL;
            char e = *c->p++;
            switch (e) {
            case '"': case '\\': case '/': ch = e; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            case 'u': {
                unsigned v = 0;
                for (int i = 0; i < 4; i++) {
                    if (c->p >= c->end)
                        return -EINVAL;
                    char h = *c->p++;
                    v <<= 4;
                    if (h >= '0' && h <= '9') v |= h - '0';
                    else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
                    else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
                    else return -EINVAL;
                }
                if (v == 0 || v > 0x7f) {
                    if (out)
                        return -EINVAL;
                    v = '?';
                }
                ch = (char)v;
                break;
            }
            default:
                return -EINVAL;
            }
        }
        if (out) {
            if (n + 1 >= outlen)
                overflow = 1;
            else
                out[n] = ch;
        }
        n++;
    }
    if (c->p >= c->end)
        return -EINVAL;
    c->p++;
    if (out) {
        if (overflow)
            return -ENOBUFS;
        out[n] = '\0';
    }
    if (outn)
        *outn = n;
    return 0;
}

static int walk(struct cursor *c, int depth, const char *key,
                int (*fn)(void *ud, const char *value), void *ud);

/* Skips any value, nested ones included (bounded depth). */
static int skip_value(struct cursor *c, int depth)
{
    if (depth > 64)
        return -EINVAL;
    skip_ws(c);
    if (c->p >= c->end)
        return -EINVAL;
    char ch = *c->p;
    if (ch == '"')
        return parse_string(c, NULL, 0, NULL);
    if (ch == '{' || ch == '[')
        return walk(c, depth, NULL, NULL, NULL);
    /* number, true, false, null */
    const char *start = c->p;
    while (c->p < c->end && strchr("0123456789+-.eEtrufalsn", *c->p))
        c->p++;
    return c->p > start ? 0 : -EINVAL;
}

/* Positions c at the value of top-level member key. */
static int find_member(struct cursor *c, const char *key)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != '{')
        return -EINVAL;
    c->p++;
    for (;;) {
        char name[64];
        skip_ws(c);
        if (c->p < c->end && *c->p == '}')
            return -ENOENT;
        int r = parse_string(c, name, sizeof(name), NULL);
        if (r == -ENOBUFS)
            name[0] = '\0'; /* longer than any key we look for */
        else if (r)
            return r;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':')
            return -EINVAL;
        c->p++;
        skip_ws(c);
        if (strcmp(name, key) == 0)
            return 0;
        if (skip_value(c, 1))
            return -EINVAL;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == '}')
            return -ENOENT;
        return -EINVAL;
    }
}

int json_get_string(const char *s, size_t len, const char *key, char *out, size_t outlen)
{
    struct cursor c = {s, s + len};
    int r = find_member(&c, key);
    if (r)
        return r;
    if (c.p >= c.end || *c.p != '"')
        return -ENOENT;
    size_t n;
    r = parse_string(&c, out, outlen, &n);
    return r ? r : (int)n;
}

int json_get_uint(const char *s, size_t len, const char *key, uint64_t *out)
{
    struct cursor c = {s, s + len};
    int r = find_member(&c, key);
    if (r)
        return r;
    uint64_t v = 0;
    const char *start = c.p;
    while (c.p < c.end && *c.p >= '0' && *c.p <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (*c.p++ - '0');
    }
    if (c.p == start)
        return -ENOENT;
    *out = v;
    return 0;
}

static int put_string(struct buf *b, const char *s, int markup_safe)
{
    int r = buf_append(b, "\"", 1);
    for (; !r && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            r = buf_printf(b, "\\%c", ch);
        else if (ch < 0x20 || (markup_safe && (ch == 0x7f || strchr("<>&'", ch))))
            r = buf_printf(b, "\\u%04x", ch);
        else
            r = buf_append(b, s, 1);
    }
    return r ? r : buf_append(b, "\"", 1);
}

int json_put_string(struct buf *b, const char *s)
{
    return put_string(b, s, 0);
}

int json_put_string_markup_safe(struct buf *b, const char *s)
{
    return put_string(b, s, 1);
}

/* Walks any value, calling fn for every string member named key at any depth (key NULL: just
 * skips it). */
static int walk(struct cursor *c, int depth, const char *key,
                int (*fn)(void *ud, const char *value), void *ud)
{
    if (depth > 64)
        return -EINVAL;
    skip_ws(c);
    if (c->p >= c->end)
        return -EINVAL;
    char ch = *c->p;
    if (ch != '{' && ch != '[')
        return skip_value(c, depth);
    char close = ch == '{' ? '}' : ']';
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 0;
    }
    for (;;) {
        int match = 0;
        if (ch == '{') {
            char name[64];
            skip_ws(c);
            int r = parse_string(c, name, sizeof(name), NULL);
            if (r == -ENOBUFS)
                name[0] = '\0';
            else if (r)
                return r;
            match = key && strcmp(name, key) == 0;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':')
                return -EINVAL;
            c->p++;
            skip_ws(c);
        }
        if (match && c->p < c->end && *c->p == '"') {
            char value[256];
            int r = parse_string(c, value, sizeof(value), NULL);
            if (r)
                return r;
            if ((r = fn(ud, value)))
                return r;
        } else {
            int r = walk(c, depth + 1, key, fn, ud);
            if (r)
                return r;
        }
        skip_ws(c);
        if (c->p >= c->end)
            return -EINVAL;
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p == close) {
            c->p++;
            return 0;
        }
        return -EINVAL;
    }
}

int json_each_string(const char *s, size_t len, const char *key,
                     int (*fn)(void *ud, const char *value), void *ud)
{
    struct cursor c = {s, s + len};
    int r = walk(&c, 0, key, fn, ud);
    if (r)
        return r;
    skip_ws(&c);
    return c.p == c.end ? 0 : -EINVAL;
}

int json_get_raw(const char *s, size_t len, const char *key, const char **value,
                 size_t *value_len)
{
    struct cursor c = {s, s + len};
    int r = find_member(&c, key);
    if (r)
        return r;
    const char *start = c.p;
    if (skip_value(&c, 1))
        return -EINVAL;
    *value = start;
    *value_len = (size_t)(c.p - start);
    return 0;
}

int json_each_element(const char *s, size_t len,
                      int (*fn)(void *ud, const char *elem, size_t elem_len), void *ud)
{
    struct cursor c = {s, s + len};
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '[')
        return -EINVAL;
    c.p++;
    skip_ws(&c);
    if (c.p < c.end && *c.p == ']')
        return 0;
    for (;;) {
        skip_ws(&c);
        const char *start = c.p;
        if (skip_value(&c, 1))
            return -EINVAL;
        int r = fn(ud, start, (size_t)(c.p - start));
        if (r)
            return r;
        skip_ws(&c);
        if (c.p < c.end && *c.p == ',') {
            c.p++;
            continue;
        }
        return c.p < c.end && *c.p == ']' ? 0 : -EINVAL;
    }
}
