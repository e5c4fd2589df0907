/* SPDX-License-Identifier: Apache-2.0 */
/* IP addresses and CIDR ranges, IPv4 and IPv6 alike (IPv4 held as IPv4-mapped IPv6, so that
 * 10.0.0.0/8 also matches ::ffff:10.1.2.3 from a dual-stack listener), and the client an
 * X-Forwarded-For chain names once trusted proxies are skipped. Pure functions. */
#ifndef REGCACHE_UTIL_CIDR_H
#define REGCACHE_UTIL_CIDR_H

#include <stddef.h>

#define CIDR_TEXT_MAX 64 /* room for any address as text */

struct ip_addr {
    unsigned char a[16];
};

struct cidr {
    unsigned char a[16];
    unsigned bits; /* 0..128, counted on the IPv6 form */
};

/* An address: a.b.c.d, an IPv6 address, [v6], and either with a :port after it (a.b.c.d:port,
 * [v6]:port), as proxies write them into X-Forwarded-For. Surrounding blanks are skipped.
 * 0, or -1 when s[0..len) is not one. */
int ip_parse(const char *s, size_t len, struct ip_addr *out);
/* "10.0.0.0/8", "fd00::/8", or a single address ("127.0.0.1" = /32, "::1" = /128). Host bits
 * set beyond the prefix are refused, so that a typo is not silently a wider range. */
int cidr_parse(const char *s, struct cidr *out);
int cidr_contains(const struct cidr *c, const struct ip_addr *ip);
int cidr_list_contains(const struct cidr *list, size_t n, const struct ip_addr *ip);
/* The address as text: IPv4-mapped ones as a.b.c.d. */
void ip_format(const struct ip_addr *ip, char *out, size_t len);

/* The client behind trusted proxies, from the X-Forwarded-For value xff of a request whose TCP
 * peer is itself trusted: its entries are walked from the right, each trusted one skipped; the
 * first that is not trusted is the client. An entry that is not an address ends the walk and
 * the last trusted hop is the client; so does a chain of trusted hops only (the leftmost is
 * the client). Writes it into out; 0, or -1 when xff names no address at all (the peer stands). */
int cidr_forwarded_client(const char *xff, const struct cidr *trusted, size_t n, char *out,
                          size_t outlen);

#endif
