/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for util/cidr.c: ranges, and the client of an X-Forwarded-For chain. */
#include <string.h>

#include "check.h"
#include "util/cidr.h"

static struct cidr trusted[4];
static size_t n_trusted;

static int in(const char *range, const char *ip)
{
    struct cidr c;
    struct ip_addr a;
    CHECK_EQ_INT(cidr_parse(range, &c), 0);
    CHECK_EQ_INT(ip_parse(ip, strlen(ip), &a), 0);
    return cidr_contains(&c, &a);
}

static const char *client(const char *xff)
{
    static char out[CIDR_TEXT_MAX];
    if (cidr_forwarded_client(xff, trusted, n_trusted, out, sizeof(out)))
        return "(none)";
    return out;
}

int main(void)
{
    struct cidr c;
    struct ip_addr a;
    char txt[CIDR_TEXT_MAX];

    CHECK(in("10.0.0.0/8", "10.255.1.2"));
    CHECK(!in("10.0.0.0/8", "11.0.0.1"));
    CHECK(in("192.168.1.0/24", "::ffff:192.168.1.77")); /* dual-stack peers */
    CHECK(in("127.0.0.1", "127.0.0.1"));
    CHECK(!in("127.0.0.1", "127.0.0.2"));
    CHECK(in("0.0.0.0/0", "8.8.8.8"));
    CHECK(!in("0.0.0.0/0", "2001:db8::1")); /* an IPv4 range holds no IPv6 address */
    CHECK(in("fd00::/8", "fd12:3456::1"));
    CHECK(!in("fd00::/8", "fe80::1"));
    CHECK(in("::1", "::1"));
    CHECK(in("2001:db8::/33", "2001:db8:7fff::1"));
    CHECK(!in("2001:db8::/33", "2001:db8:8000::1"));
    CHECK(in("172.16.0.0/12", "172.31.255.255"));
    CHECK(!in("172.16.0.0/12", "172.32.0.0"));

    CHECK_EQ_INT(cidr_parse("10.0.0.1/8", &c), -1); /* host bits past the prefix */
    CHECK_EQ_INT(cidr_parse("10.0.0.0/33", &c), -1);
    CHECK_EQ_INT(cidr_parse("::/129", &c), -1);
    CHECK_EQ_INT(cidr_parse("10.0.0.0/", &c), -1);
    CHECK_EQ_INT(cidr_parse("10.0.0.0/-1", &c), -1);
    CHECK_EQ_INT(cidr_parse("example.org", &c), -1);
    CHECK_EQ_INT(cidr_parse("", &c), -1);
    CHECK_EQ_INT(cidr_parse("[::1]", &c), -1);

    CHECK_EQ_INT(ip_parse(" 1.2.3.4 ", 9, &a), 0);
    CHECK_EQ_INT(ip_parse("1.2.3.4:8080", 12, &a), 0);
    ip_format(&a, txt, sizeof(txt));
    CHECK_STR(txt, "1.2.3.4");
    CHECK_EQ_INT(ip_parse("[2001:db8::1]:443", 17, &a), 0);
    ip_format(&a, txt, sizeof(txt));
    CHECK_STR(txt, "2001:db8::1");
    CHECK_EQ_INT(ip_parse("2001:db8::1", 11, &a), 0);
    CHECK_EQ_INT(ip_parse("unknown", 7, &a), -1);
    CHECK_EQ_INT(ip_parse("1.2.3.4:x", 9, &a), -1);
    CHECK_EQ_INT(ip_parse("1.2.3", 5, &a), -1);
    CHECK_EQ_INT(ip_parse("", 0, &a), -1);

    /* the proxies 10.0.0.0/8 and fd00::/8 are trusted */
    CHECK_EQ_INT(cidr_parse("10.0.0.0/8", &trusted[0]), 0);
    CHECK_EQ_INT(cidr_parse("fd00::/8", &trusted[1]), 0);
    n_trusted = 2;
    CHECK_STR(client("203.0.113.7"), "203.0.113.7");
    CHECK_STR(client("203.0.113.7, 10.0.0.2"), "203.0.113.7"); /* two proxies deep */
    /* a client that sends its own X-Forwarded-For: the spoofed entries are to the left of
     * the address the trusted proxy saw, and are never reached */
    CHECK_STR(client("1.1.1.1, 198.51.100.9"), "198.51.100.9");
    CHECK_STR(client("10.9.9.9, 198.51.100.9, 10.0.0.2"), "198.51.100.9");
    CHECK_STR(client("198.51.100.9,10.0.0.2"), "198.51.100.9");
    CHECK_STR(client("[2001:db8::5]:1234, fd00::1"), "2001:db8::5");
    CHECK_STR(client("10.0.0.3, 10.0.0.2"), "10.0.0.3");  /* trusted hops only: the leftmost */
    CHECK_STR(client("garbage, 10.0.0.2"), "10.0.0.2");   /* not an address: the last trusted hop */
    CHECK_STR(client("198.51.100.9, unknown"), "(none)"); /* the proxy wrote no address */
    CHECK_STR(client(""), "(none)");
    CHECK_STR(client(" , ,"), "(none)");
    CHECK_STR(client("203.0.113.7, , 10.0.0.2"), "203.0.113.7"); /* empty entries skipped */
    CHECK_DONE();
}
