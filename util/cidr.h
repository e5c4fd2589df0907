/* Address ranges in CIDR notation (IPv4 and IPv6), for lists of who may do something. */
#ifndef REGCACHE_UTIL_CIDR_H
#define REGCACHE_UTIL_CIDR_H

#include <stddef.h>
#include <stdint.h>

struct cidr {
    int v6;           /* 0: IPv4 (addr[0..3]), 1: IPv6 */
    uint8_t addr[16]; /* the network, host bits cleared */
    unsigned bits;    /* prefix length */
};

/* Parses "10.0.0.0/8", "fd00::/8", or a bare address (a single host). Host bits set beyond
 * the prefix are refused ("10.0.0.1/8" is almost always a typo). 0 or -EINVAL. */
int cidr_parse(const char *s, struct cidr *out);

/* Whether the textual address addr (as inet_ntop writes it; an IPv4-mapped IPv6 address
 * ::ffff:a.b.c.d counts as a.b.c.d) is inside c. 0 for anything unparsable. */
int cidr_contains(const struct cidr *c, const char *addr);

/* Whether addr is inside any of the n ranges. */
int cidr_list_contains(const struct cidr *list, size_t n, const char *addr);

#endif
