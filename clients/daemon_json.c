/* SPDX-License-Identifier: Apache-2.0 */
/* daemon.json, merged: the document is parsed into a tree whose strings, numbers and literals
 * keep their text as written, two keys are updated, and the tree is written back with two-space
 * indentation. Nothing else of the operator's file changes but its whitespace. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clients/impl.h"

#define JSON_DEPTH_MAX 64

enum jkind { J_SCALAR, J_STRING, J_ARRAY, J_OBJECT };

struct jnode {
    enum jkind kind;
    const char *raw; /* J_SCALAR, J_STRING: the token as written (quotes included) */
    size_t raw_len;
    char *owned;    /* raw, when this node was made here rather than parsed */
    char *text;     /* J_STRING: the decoded value (NULs refused) */
    char *key_text; /* a member's decoded key */
    const char *key_raw;
    size_t key_raw_len;
    char *key_owned;
    struct jnode *kids; /* J_ARRAY elements, J_OBJECT members */
    size_t n_kids, cap_kids;
};

struct parser {
    const char *start, *p, *end;
    char *err;
    size_t errlen;
};

static int perr(struct parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int perr(struct parser *ps, const char *fmt, ...)
{
    unsigned long line = 1;
    for (const char *q = ps->start; q < ps->p && q < ps->end; q++)
        line += *q == '\n';
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "%lu: not valid JSON: %s", line, why);
    return -EINVAL;
}

static void node_free(struct jnode *n)
{
    for (size_t i = 0; i < n->n_kids; i++)
        node_free(&n->kids[i]);
    free(n->kids);
    free(n->owned);
    free(n->text);
    free(n->key_text);
    free(n->key_owned);
    memset(n, 0, sizeof(*n));
}

static struct jnode *add_kid(struct jnode *n)
{
    if (n->n_kids == n->cap_kids) {
        size_t cap = n->cap_kids ? n->cap_kids * 2 : 4;
        struct jnode *k = realloc(n->kids, cap * sizeof(*k));
        if (!k)
            return NULL;
        n->kids = k;
        n->cap_kids = cap;
    }
    struct jnode *k = &n->kids[n->n_kids++];
    memset(k, 0, sizeof(*k));
    return k;
}

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end && strchr(" \t\r\n", *ps->p) && *ps->p)
        ps->p++;
}

static int hex4(const char *s, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char h = s[i];
        *v <<= 4;
        if (h >= '0' && h <= '9')
            *v |= (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f')
            *v |= (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
            *v |= (unsigned)(h - 'A' + 10);
        else
            return -1;
    }
    return 0;
}

static void put_utf8(char *out, size_t *n, unsigned cp)
{
    if (cp < 0x80) {
        out[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (char)(0xc0 | (cp >> 6));
        out[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xe0 | (cp >> 12));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        out[(*n)++] = (char)(0xf0 | (cp >> 18));
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*n)++] = (char)(0x80 | (cp & 0x3f));
    }
}

/* A string token at ps->p: its raw extent and its decoded text (malloc'd; every escape is at
 * least as long as what it decodes to, so the raw length bounds the text). */
static int parse_string(struct parser *ps, const char **raw, size_t *raw_len, char **text)
{
    const char *s = ps->p;
    if (ps->p >= ps->end || *ps->p != '"')
        return perr(ps, "expected a string (a key is one)");
    /* the token's end first, so that the allocation is the token's size, not the rest's */
    const char *q = s + 1;
    while (q < ps->end && *q != '"')
        q += *q == '\\' && q + 1 < ps->end ? 2 : 1;
    if (q >= ps->end) {
        ps->p = ps->end;
        return perr(ps, "a string is not closed");
    }
    char *out = malloc((size_t)(q - s));
    if (!out)
        return -ENOMEM;
    size_t n = 0;
    ps->p++;
    for (;;) {
        if (ps->p >= ps->end) {
            free(out);
            return perr(ps, "a string is not closed");
        }
        unsigned char ch = (unsigned char)*ps->p;
        if (ch == '"')
            break;
        if (ch < 0x20) {
            free(out);
            return perr(ps, "a control character inside a string");
        }
        if (ch != '\\') {
            out[n++] = (char)ch;
            ps->p++;
            continue;
        }
        if (ps->end - ps->p < 2) {
            free(out);
            return perr(ps, "a string is not closed");
        }
        char e = ps->p[1];
        ps->p += 2;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (simple && e) {
            static const char map[] = "\"\\/\b\f\n\r\t";
            out[n++] = map[simple - "\"\\/bfnrt"];
            continue;
        }
        unsigned cp, lo;
        if (e != 'u' || ps->end - ps->p < 4 || hex4(ps->p, &cp)) {
            free(out);
            return perr(ps, "a bad escape in a string");
        }
        ps->p += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && ps->end - ps->p >= 6 && ps->p[0] == '\\' &&
            ps->p[1] == 'u' && !hex4(ps->p + 2, &lo) && lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            ps->p += 6;
        } else if (cp >= 0xd800 && cp < 0xe000) {
            cp = 0xfffd; /* a lone surrogate: as Go's encoding/json reads it */
        }
        if (cp == 0) {
            free(out);
            return perr(ps, "\\u0000 inside a string");
        }
        put_utf8(out, &n, cp);
    }
    ps->p++;
    out[n] = '\0';
    *raw = s;
    *raw_len = (size_t)(ps->p - s);
    *text = out;
    return 0;
}

static int parse_number_or_literal(struct parser *ps, struct jnode *n)
{
    const char *s = ps->p;
    static const char *const literals[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t l = strlen(literals[i]);
        if ((size_t)(ps->end - s) >= l && !memcmp(s, literals[i], l)) {
            ps->p += l;
            goto done;
        }
    }
    /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
    if (ps->p < ps->end && *ps->p == '-')
        ps->p++;
    if (ps->p < ps->end && *ps->p == '0') {
        ps->p++;
    } else if (ps->p < ps->end && *ps->p >= '1' && *ps->p <= '9') {
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    } else {
        return perr(ps, "expected a value");
    }
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
            return perr(ps, "a number needs digits after '.'");
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
            ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
            return perr(ps, "a number needs digits in its exponent");
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    }
done:
    n->kind = J_SCALAR;
    n->raw = s;
    n->raw_len = (size_t)(ps->p - s);
    return 0;
}

static int parse_value(struct parser *ps, struct jnode *n, int depth)
{
    if (depth > JSON_DEPTH_MAX)
        return perr(ps, "nested deeper than %d", JSON_DEPTH_MAX);
    skip_ws(ps);
    if (ps->p >= ps->end)
        return perr(ps, "the document ends where a value was expected");
    char ch = *ps->p;
    if (ch == '"') {
        n->kind = J_STRING;
        return parse_string(ps, &n->raw, &n->raw_len, &n->text);
    }
    if (ch != '{' && ch != '[')
        return parse_number_or_literal(ps, n);
    char close = ch == '{' ? '}' : ']';
    n->kind = ch == '{' ? J_OBJECT : J_ARRAY;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return 0;
    }
    for (;;) {
        struct jnode *k = add_kid(n);
        if (!k)
            return -ENOMEM;
        skip_ws(ps);
        if (n->kind == J_OBJECT) {
            int r = parse_string(ps, &k->key_raw, &k->key_raw_len, &k->key_text);
            if (r)
                return r;
            for (size_t i = 0; i + 1 < n->n_kids; i++)
                if (!strcmp(n->kids[i].key_text, k->key_text))
                    return perr(ps, "key \"%.80s\" appears twice", k->key_text);
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':')
                return perr(ps, "expected ':' after a key");
            ps->p++;
        }
        int r = parse_value(ps, k, depth + 1);
        if (r)
            return r;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return 0;
        }
        return perr(ps, "expected ',' or '%c'", close);
    }
}

static int emit(struct buf *b, const struct jnode *n, int indent)
{
    int r = 0;
    if (n->kind == J_SCALAR || n->kind == J_STRING)
        return buf_append(b, n->raw, n->raw_len);
    char open = n->kind == J_OBJECT ? '{' : '[', close = n->kind == J_OBJECT ? '}' : ']';
    if (n->n_kids == 0)
        return buf_printf(b, "%c%c", open, close);
    r = buf_printf(b, "%c\n", open);
    for (size_t i = 0; !r && i < n->n_kids; i++) {
        const struct jnode *k = &n->kids[i];
        r = buf_printf(b, "%*s", (indent + 1) * 2, "");
        if (!r && n->kind == J_OBJECT) {
            r = buf_append(b, k->key_raw, k->key_raw_len);
            if (!r)
                r = buf_append(b, ": ", 2);
        }
        if (!r)
            r = emit(b, k, indent + 1);
        if (!r)
            r = buf_append(b, i + 1 < n->n_kids ? ",\n" : "\n", i + 1 < n->n_kids ? 2 : 1);
    }
    if (!r)
        r = buf_printf(b, "%*s%c", indent * 2, "", close);
    return r;
}

static struct jnode *member(struct jnode *obj, const char *key)
{
    for (size_t i = 0; i < obj->n_kids; i++)
        if (!strcmp(obj->kids[i].key_text, key))
            return &obj->kids[i];
    return NULL;
}

/* Makes n a string node holding text (quoted here). */
static int make_string(struct jnode *n, const char *text)
{
    struct buf q;
    buf_init(&q, CLIENTS_URL_MAX * 2 + 8);
    int r = clients__put_quoted(&q, text);
    if (!r)
        r = buf_terminate(&q);
    if (r) {
        buf_free(&q);
        return r;
    }
    n->kind = J_STRING;
    n->owned = q.data;
    n->raw = q.data;
    n->raw_len = q.len;
    n->text = strdup(text);
    return n->text ? 0 : -ENOMEM;
}

/* Two spellings of one registry address: case and trailing slashes aside. */
static int same_address(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la && a[la - 1] == '/')
        la--;
    while (lb && b[lb - 1] == '/')
        lb--;
    return la == lb && !strncasecmp(a, b, la);
}

/* Adds value to the list member key of obj (made when absent), first or last, unless listed. */
static int list_add(struct jnode *obj, const char *key, const char *value, int first, char *err,
                    size_t errlen)
{
    struct jnode *list = member(obj, key);
    if (!list) {
        list = add_kid(obj);
        if (!list)
            return -ENOMEM;
        struct buf q;
        buf_init(&q, 64);
        int r = clients__put_quoted(&q, key);
        if (!r)
            r = buf_terminate(&q);
        if (r) {
            buf_free(&q);
            return r;
        }
        list->key_owned = q.data;
        list->key_raw = q.data;
        list->key_raw_len = q.len;
        list->key_text = strdup(key);
        if (!list->key_text)
            return -ENOMEM;
        list->kind = J_ARRAY;
    }
    if (list->kind != J_ARRAY) {
        snprintf(err, errlen, " \"%s\" is not a list", key);
        return -EINVAL;
    }
    for (size_t i = 0; i < list->n_kids; i++) {
        if (list->kids[i].kind != J_STRING) {
            snprintf(err, errlen, " \"%s\" holds something other than strings", key);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < list->n_kids; i++)
        if (same_address(list->kids[i].text, value))
            return 0;
    struct jnode *k = add_kid(list);
    if (!k)
        return -ENOMEM;
    if (first) {
        struct jnode tmp = *k;
        memmove(list->kids + 1, list->kids, (list->n_kids - 1) * sizeof(*k));
        list->kids[0] = tmp;
        k = &list->kids[0];
    }
    return make_string(k, value);
}

int clients__docker_merge(const char *doc, size_t len, const struct clients_mirror *m,
                          int hub_mirror, struct buf *out, char *err, size_t errlen)
{
    struct jnode root;
    memset(&root, 0, sizeof(root));
    struct parser ps = {doc, doc, doc + len, err, errlen};
    int r = 0;
    skip_ws(&ps);
    if (ps.p == ps.end) {
        root.kind = J_OBJECT; /* no file, or an empty one: dockerd reads that as {} too */
    } else if (*ps.p != '{') {
        r = perr(&ps, "the document is not an object ({...})");
    } else {
        r = parse_value(&ps, &root, 0);
        if (!r) {
            skip_ws(&ps);
            if (ps.p != ps.end)
                r = perr(&ps, "something follows the closing '}'");
        }
    }
    if (!r && hub_mirror)
        r = list_add(&root, "registry-mirrors", m->url, 1, err, errlen);
    if (!r && (m->plain_http || m->skip_verify))
        r = list_add(&root, "insecure-registries", m->hostport, 0, err, errlen);
    if (!r)
        r = emit(out, &root, 0);
    if (!r)
        r = buf_append(out, "\n", 1);
    if (r == -ENOMEM || r == -ENOBUFS)
        snprintf(err, errlen, " too large to merge");
    node_free(&root);
    return r;
}
