/* SPDX-License-Identifier: Apache-2.0 */
#include "util/cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* s (NUL-terminated, no blanks) as a bare IPv4 or IPv6 address. */
static int parse_bare(const char *s, struct ip_addr *out)
{
    unsigned char v4[4];
    if (inet_pton(AF_INET, s, v4) == 1) {
        memcpy(out->a, v4_mapped, 12);
        memcpy(out->a + 12, v4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, s, out->a) == 1 ? 0 : -1;
}

static int is_port(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 5 && strspn(s, "0123456789") == n;
}

int ip_parse(const char *s, size_t len, struct ip_addr *out)
{
    char tmp[CIDR_TEXT_MAX];
    while (len && is_blank(*s)) {
        s++;
        len--;
    }
    while (len && is_blank(s[len - 1]))
        len--;
    if (!len || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (tmp[0] == '[') {
        char *close = strchr(tmp, ']');
        if (!close || (close[1] && (close[1] != ':' || !is_port(close + 2))))
            return -1;
        *close = '\0';
        return strchr(tmp + 1, ':') ? parse_bare(tmp + 1, out) : -1;
    }
    char *colon = strchr(tmp, ':');
    if (colon && !strchr(colon + 1, ':')) { /* one colon: a.b.c.d:port */
        if (!is_port(colon + 1))
            return -1;
        *colon = '\0';
        unsigned char v4[4];
        if (inet_pton(AF_INET, tmp, v4) != 1)
            return -1;
        return parse_bare(tmp, out);
    }
    return parse_bare(tmp, out);
}

int cidr_parse(const char *s, struct cidr *out)
{
    char tmp[CIDR_TEXT_MAX];
    size_t len = strlen(s);
    if (!len || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, len + 1);
    char *slash = strchr(tmp, '/');
    unsigned long bits = 0;
    if (slash) {
        *slash = '\0';
        const char *b = slash + 1;
        if (!*b || strlen(b) > 3 || strspn(b, "0123456789") != strlen(b))
            return -1;
        bits = strtoul(b, NULL, 10);
    }
    struct ip_addr ip;
    if (strchr(tmp, '[') || strchr(tmp, ' ') || parse_bare(tmp, &ip))
        return -1;
    int v4 = strchr(tmp, '.') && !strchr(tmp, ':');
    unsigned max = v4 ? 32 : 128;
    if (!slash)
        bits = max;
    if (bits > max)
        return -1;
    out->bits = (unsigned)bits + (v4 ? 96 : 0);
    memcpy(out->a, ip.a, 16);
    /* no bit set past the prefix */
    for (unsigned i = out->bits; i < 128; i++)
        if (out->a[i / 8] & (0x80u >> (i % 8)))
            return -1;
    return 0;
}

int cidr_contains(const struct cidr *c, const struct ip_addr *ip)
{
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->a, ip->a, full))
        return 0;
    if (!rest)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (c->a[full] & mask) == (ip->a[full] & mask);
}

int cidr_list_contains(const struct cidr *list, size_t n, const struct ip_addr *ip)
{
    for (size_t i = 0; i < n; i++)
        if (cidr_contains(&list[i], ip))
            return 1;
    return 0;
}

void ip_format(const struct ip_addr *ip, char *out, size_t len)
{
    if (!memcmp(ip->a, v4_mapped, 12)) {
        if (!inet_ntop(AF_INET, ip->a + 12, out, (socklen_t)len))
            snprintf(out, len, "-");
    } else if (!inet_ntop(AF_INET6, ip->a, out, (socklen_t)len)) {
        snprintf(out, len, "-");
    }
}

int cidr_forwarded_client(const char *xff, const struct cidr *trusted, size_t n, char *out,
                          size_t outlen)
{
    const char *end = xff + strlen(xff);
    struct ip_addr last;
    int have = 0;
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        struct ip_addr ip;
        size_t len = (size_t)(end - start);
        int blank = len == strspn(start, " \t") || len == 0;
        if (!blank) {
            if (ip_parse(start, len, &ip))
                break; /* garbage: nobody trusted wrote it */
            last = ip;
            have = 1;
            if (!cidr_list_contains(trusted, n, &ip))
                break; /* the first untrusted hop */
        }
        end = start > xff ? start - 1 : start;
    }
    if (!have)
        return -1;
    ip_format(&last, out, outlen);
    return 0;
}
