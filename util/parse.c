/* SPDX-License-Identifier: Apache-2.0 */
/* Durations, sizes and listen addresses as written in the config file. */
#include "util/parse.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

struct unit {
    const char *suffix;
    uint64_t factor;
};

/* Reads a run of decimal digits at *p into *out; fails on no digits or on overflow. */
static int parse_digits(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *p = s;
    *out = v;
    return 0;
}

/* "<digits><unit>" with the unit from units; a bare number is allowed when bare_ok says so. */
static int parse_with_units(const char *s, const struct unit *units, size_t n_units,
                            bool bare_ok_any, uint64_t *out)
{
    uint64_t v;

    if (!s || parse_digits(&s, &v) < 0)
        return -EINVAL;
    if (*s == '\0') {
        if (!bare_ok_any && v != 0)
            return -EINVAL;
        *out = v;
        return 0;
    }
    for (size_t i = 0; i < n_units; i++) {
        if (strcmp(s, units[i].suffix) != 0)
            continue;
        if (v != 0 && units[i].factor > UINT64_MAX / v)
            return -EINVAL;
        *out = v * units[i].factor;
        return 0;
    }
    return -EINVAL;
}

int parse_duration_ms(const char *s, uint64_t *out_ms)
{
    static const struct unit units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    return parse_with_units(s, units, sizeof(units) / sizeof(units[0]), false, out_ms);
}

int parse_size_bytes(const char *s, uint64_t *out_bytes)
{
    static const struct unit units[] = {
        {"B", 1},
        {"KB", 1000ULL},
        {"MB", 1000ULL * 1000},
        {"GB", 1000ULL * 1000 * 1000},
        {"TB", 1000ULL * 1000 * 1000 * 1000},
        {"KiB", 1ULL << 10},
        {"MiB", 1ULL << 20},
        {"GiB", 1ULL << 30},
        {"TiB", 1ULL << 40},
    };
    return parse_with_units(s, units, sizeof(units) / sizeof(units[0]), true, out_bytes);
}

static int parse_port(const char *s, int *port)
{
    uint64_t v;

    if (parse_digits(&s, &v) < 0 || *s != '\0' || v < 1 || v > 65535)
        return -EINVAL;
    *port = (int)v;
    return 0;
}

int parse_listen(const char *s, char *host, int *port)
{
    const char *h, *colon;
    size_t hlen;

    if (!s)
        return -EINVAL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        if (hlen == 0 || memchr(h, '[', hlen))
            return -EINVAL;
    } else {
        colon = strchr(s, ':');
        /* A second ':' means an unbracketed IPv6 address: ambiguous, so refused. */
        if (!colon || strchr(colon + 1, ':') || memchr(s, ']', (size_t)(colon - s)))
            return -EINVAL;
        h = s;
        hlen = (size_t)(colon - s);
    }
    if (hlen > 255)
        return -EINVAL;
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c == 0x7f)
            return -EINVAL;
    }
    if (parse_port(colon + 1, port) < 0)
        return -EINVAL;
    if (hlen == 0) {
        strcpy(host, "0.0.0.0");
    } else {
        memcpy(host, h, hlen);
        host[hlen] = '\0';
    }
    return 0;
}

const char *format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}
