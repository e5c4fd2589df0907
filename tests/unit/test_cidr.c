/* Unit tests for util/cidr.c: parsing ranges and matching textual addresses. */
#include <errno.h>

#include "check.h"
#include "util/cidr.h"

static int in(const char *range, const char *addr)
{
    struct cidr c;
    if (cidr_parse(range, &c))
        return -1;
    return cidr_contains(&c, addr);
}

int main(void)
{
    struct cidr c;
    CHECK_EQ_INT(cidr_parse("10.0.0.0/8", &c), 0);
    CHECK_EQ_INT(c.bits, 8);
    CHECK_EQ_INT(c.v6, 0);
    CHECK_EQ_INT(cidr_parse("127.0.0.1", &c), 0);
    CHECK_EQ_INT(c.bits, 32);
    CHECK_EQ_INT(cidr_parse("::1", &c), 0);
    CHECK_EQ_INT(c.bits, 128);
    CHECK_EQ_INT(cidr_parse("0.0.0.0/0", &c), 0);
    CHECK_EQ_INT(cidr_parse("::/0", &c), 0);
    CHECK_EQ_INT(cidr_parse("fd00::/8", &c), 0);
    CHECK_EQ_INT(c.v6, 1);

    const char *bad[] = {"",
                         "10.0.0.0/",
                         "10.0.0.0/33",
                         "10.0.0.1/8",
                         "10.0.0.0/-1",
                         "10.0.0.0/8x",
                         "10.0.0.0/08",
                         "300.1.1.1",
                         "10.0.0",
                         "::/129",
                         "fd00::1/8",
                         "host.example",
                         "10.0.0.0/8/8",
                         " 10.0.0.0/8",
                         "1.2.3.4 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = cidr_parse(bad[i], &c);
        if (r != -EINVAL)
            CHECK_FAIL_("cidr_parse(\"%s\") accepted", bad[i]);
        check_total++;
    }

    CHECK_EQ_INT(in("10.0.0.0/8", "10.200.3.4"), 1);
    CHECK_EQ_INT(in("10.0.0.0/8", "11.0.0.1"), 0);
    CHECK_EQ_INT(in("192.168.1.0/25", "192.168.1.127"), 1);
    CHECK_EQ_INT(in("192.168.1.0/25", "192.168.1.128"), 0);
    CHECK_EQ_INT(in("127.0.0.1", "127.0.0.1"), 1);
    CHECK_EQ_INT(in("127.0.0.1", "127.0.0.2"), 0);
    CHECK_EQ_INT(in("0.0.0.0/0", "203.0.113.9"), 1);
    CHECK_EQ_INT(in("0.0.0.0/0", "::1"), 0); /* families do not mix */
    CHECK_EQ_INT(in("::/0", "127.0.0.1"), 0);
    CHECK_EQ_INT(in("127.0.0.0/8", "::ffff:127.0.0.1"), 1); /* a mapped IPv4 peer */
    CHECK_EQ_INT(in("::1", "::1"), 1);
    CHECK_EQ_INT(in("fd00::/8", "fd12:3456::1"), 1);
    CHECK_EQ_INT(in("fd00::/8", "fe80::1"), 0);
    CHECK_EQ_INT(in("2001:db8::/33", "2001:db8:7fff::1"), 1);
    CHECK_EQ_INT(in("2001:db8::/33", "2001:db8:8000::1"), 0);
    CHECK_EQ_INT(in("10.0.0.0/8", "-"), 0);
    CHECK_EQ_INT(in("10.0.0.0/8", ""), 0);

    struct cidr list[2];
    CHECK_EQ_INT(cidr_parse("10.0.0.0/8", &list[0]), 0);
    CHECK_EQ_INT(cidr_parse("::1", &list[1]), 0);
    CHECK_EQ_INT(cidr_list_contains(list, 2, "::1"), 1);
    CHECK_EQ_INT(cidr_list_contains(list, 2, "10.1.1.1"), 1);
    CHECK_EQ_INT(cidr_list_contains(list, 2, "127.0.0.1"), 0);
    CHECK_EQ_INT(cidr_list_contains(list, 0, "10.1.1.1"), 0);
    CHECK(cidr_list_contains(list, 2, NULL) == 0);
    CHECK_DONE();
}
