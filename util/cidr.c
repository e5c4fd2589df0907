#include "util/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A textual address as 4 or 16 bytes; an IPv4-mapped IPv6 address becomes IPv4. */
static int parse_addr(const char *s, uint8_t out[16], int *v6)
{
    if (inet_pton(AF_INET, s, out) == 1) {
        *v6 = 0;
        return 0;
    }
    if (inet_pton(AF_INET6, s, out) != 1)
        return -EINVAL;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(out, mapped, sizeof(mapped)) == 0) {
        memmove(out, out + 12, 4);
        *v6 = 0;
        return 0;
    }
    *v6 = 1;
    return 0;
}

static int prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, full))
        return 0;
    if (!rest)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

int cidr_parse(const char *s, struct cidr *out)
{
    char buf[64];
    memset(out, 0, sizeof(*out));
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, n + 1);
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        if (!slash[1] || slash[1] < '0' || slash[1] > '9')
            return -EINVAL;
        bits = strtol(slash + 1, &end, 10);
        if (*end || (slash[1] == '0' && slash[2]))
            return -EINVAL;
    }
    /* a mapped IPv6 range is not what anyone means: keep the family as written */
    if (inet_pton(AF_INET, buf, out->addr) == 1)
        out->v6 = 0;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1)
        out->v6 = 1;
    else
        return -EINVAL;
    long max = out->v6 ? 128 : 32;
    if (bits < 0)
        bits = max;
    if (bits > max)
        return -EINVAL;
    out->bits = (unsigned)bits;
    uint8_t net[16] = {0};
    unsigned full = out->bits / 8, rest = out->bits % 8;
    memcpy(net, out->addr, full);
    if (rest)
        net[full] = (uint8_t)(out->addr[full] & (0xff << (8 - rest)));
    if (memcmp(net, out->addr, out->v6 ? 16 : 4))
        return -EINVAL; /* host bits set */
    return 0;
}

int cidr_contains(const struct cidr *c, const char *addr)
{
    uint8_t a[16];
    int v6;
    if (!addr || parse_addr(addr, a, &v6) || v6 != c->v6)
        return 0;
    return prefix_equal(a, c->addr, c->bits);
}

int cidr_list_contains(const struct cidr *list, size_t n, const char *addr)
{
    for (size_t i = 0; i < n; i++)
        if (cidr_contains(&list[i], addr))
            return 1;
    return 0;
}
