/* SPDX-License-Identifier: Apache-2.0 */
/* Single byte-range parsing for blob GETs. Anything we do not understand means "send it all". */
#include "util/range.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

/* A parsed number: its value saturated at UINT64_MAX, and its digits for exact comparison. */
struct num {
    uint64_t v;
    const char *digits; /* leading zeros skipped */
    size_t n_digits;
};

static void skip_ows(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

static bool parse_num(const char **p, struct num *n)
{
    const char *s = *p;

    if (*s < '0' || *s > '9')
        return false;
    while (*s == '0' && s[1] >= '0' && s[1] <= '9')
        s++;
    n->digits = s;
    n->v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        /* Saturate: a position past 2^64 is still a syntactically valid one. */
        if (n->v > (UINT64_MAX - d) / 10)
            n->v = UINT64_MAX;
        else
            n->v = n->v * 10 + d;
    }
    n->n_digits = (size_t)(s - n->digits);
    *p = s;
    return true;
}

/* a > b, exact even when both saturated. */
static bool num_gt(const struct num *a, const struct num *b)
{
    if (a->v != b->v)
        return a->v > b->v;
    if (a->n_digits != b->n_digits)
        return a->n_digits > b->n_digits;
    return memcmp(a->digits, b->digits, a->n_digits) > 0;
}

enum range_result range_parse(const char *hdr, uint64_t size, uint64_t *first, uint64_t *last)
{
    struct num a = {0}, b = {0};
    bool have_a, have_b;
    const char *p = hdr;

    if (!p)
        return RANGE_FULL;
    skip_ows(&p);
    if (strncasecmp(p, "bytes", 5) != 0)
        return RANGE_FULL;
    p += 5;
    skip_ows(&p);
    if (*p++ != '=')
        return RANGE_FULL;
    skip_ows(&p);
    have_a = parse_num(&p, &a);
    skip_ows(&p);
    if (*p++ != '-')
        return RANGE_FULL;
    skip_ows(&p);
    have_b = parse_num(&p, &b);
    skip_ows(&p);
    if (*p != '\0') /* several ranges (',') or garbage */
        return RANGE_FULL;
    if (!have_a && !have_b)
        return RANGE_FULL;
    if (have_a && have_b && num_gt(&a, &b))
        return RANGE_FULL;

    if (!have_a) { /* suffix: the last b bytes */
        if (b.v == 0 || size == 0)
            return RANGE_UNSATISFIABLE;
        *first = b.v >= size ? 0 : size - b.v;
        *last = size - 1;
        return RANGE_PARTIAL;
    }
    if (a.v >= size)
        return RANGE_UNSATISFIABLE;
    *first = a.v;
    *last = (!have_b || b.v >= size) ? size - 1 : b.v;
    return RANGE_PARTIAL;
}

/* A number that must fit: saturated values are refused. */
static bool parse_exact(const char **p, uint64_t *v)
{
    struct num n;
    skip_ows(p);
    if (!parse_num(p, &n) || n.n_digits > 20 || (n.v == UINT64_MAX && n.n_digits == 20 &&
                                                 memcmp(n.digits, "18446744073709551615", 20)))
        return false;
    skip_ows(p);
    *v = n.v;
    return true;
}

int content_range_parse(const char *hdr, uint64_t *first, uint64_t *last, uint64_t *complete)
{
    const char *p = hdr;
    uint64_t a, b, n;
    if (!p)
        return -1;
    skip_ows(&p);
    if (strncasecmp(p, "bytes", 5) != 0 || (p[5] != ' ' && p[5] != '\t'))
        return -1;
    p += 5;
    if (!parse_exact(&p, &a) || *p++ != '-' || !parse_exact(&p, &b) || *p++ != '/' ||
        !parse_exact(&p, &n) || *p != '\0')
        return -1;
    if (a > b || b >= n)
        return -1;
    *first = a;
    *last = b;
    *complete = n;
    return 0;
}
