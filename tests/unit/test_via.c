/* SPDX-License-Identifier: Apache-2.0 */
/* Via: loops of mirrors, the hop bound, and the chain forwarded upstream. */
#include "check.h"
#include "registry/via.h"

static enum via_verdict check(const char *via, const char *self, char *chain, size_t *hops)
{
    return via_check(via, 0, self, chain, hops);
}

int main(void)
{
    char chain[VIA_CHAIN_MAX];
    size_t hops;

    /* none, one, several: forwarded as they came, comments dropped */
    CHECK_EQ_INT(check(NULL, "me:5000", chain, &hops), VIA_OK);
    CHECK_STR(chain, "");
    CHECK_EQ_INT(hops, 0);
    CHECK_EQ_INT(check("1.1 child:5000", "parent:5000", chain, &hops), VIA_OK);
    CHECK_STR(chain, "1.1 child:5000");
    CHECK_EQ_INT(hops, 1);
    CHECK_EQ_INT(check("1.0 fred, 1.1 p.example.net (Apache/1.1), HTTP/2 [::1]:80", "me", chain,
                       &hops),
                 VIA_OK);
    CHECK_STR(chain, "1.0 fred, 1.1 p.example.net, HTTP/2 [::1]:80");
    CHECK_EQ_INT(hops, 3);
    /* a comma inside a comment separates nothing; empty list elements are no hops */
    CHECK_EQ_INT(check("1.1 a (x, y (z, w)), , 1.1 b", "me", chain, &hops), VIA_OK);
    CHECK_STR(chain, "1.1 a, 1.1 b");
    CHECK_EQ_INT(hops, 2);

    /* this mirror in the chain, anywhere, in any case: a loop */
    CHECK_EQ_INT(check("1.1 me:5000", "me:5000", chain, &hops), VIA_LOOP);
    CHECK_EQ_INT(check("1.1 a, 1.1 ME:5000 (regcache), 1.1 b", "me:5000", chain, &hops),
                 VIA_LOOP);
    CHECK_EQ_INT(hops, 2);
    /* a name that only starts or ends like it is someone else */
    CHECK_EQ_INT(check("1.1 me:50000, 1.1 xme:5000", "me:5000", chain, &hops), VIA_OK);
    /* no self: nothing is a loop */
    CHECK_EQ_INT(check("1.1 me:5000", NULL, chain, &hops), VIA_OK);

    /* more than VIA_MAX_HOPS entries, malformed ones included */
    CHECK_EQ_INT(check("1.1 a, 1.1 b, 1.1 c, 1.1 d, 1.1 e, 1.1 f, 1.1 g, 1.1 h", "me", chain,
                       &hops),
                 VIA_OK);
    CHECK_EQ_INT(hops, 8);
    CHECK_EQ_INT(check("1.1 a, 1.1 b, 1.1 c, 1.1 d, 1.1 e, 1.1 f, 1.1 g, 1.1 h, 1.1 i", "me",
                       chain, &hops),
                 VIA_TOO_MANY);
    CHECK_EQ_INT(hops, 9);
    CHECK_EQ_INT(check("x,x,x,x,x,x,x,x,x", "me", chain, &hops), VIA_TOO_MANY);
    CHECK_EQ_INT(via_check(NULL, 1, "me", chain, &hops), VIA_TOO_MANY);

    /* malformed entries count but are not forwarded */
    CHECK_EQ_INT(check("garbage, 1.1 ok, 1.1 a\"b, 1.1 two words here, (only a comment)", "me",
                       chain, &hops),
                 VIA_OK);
    CHECK_STR(chain, "1.1 ok");
    CHECK_EQ_INT(hops, 5);
    /* an unterminated comment or a quoted-pair at the end cannot run past the value */
    CHECK_EQ_INT(check("1.1 a (open, 1.1 me", "me", chain, &hops), VIA_OK);
    CHECK_EQ_INT(hops, 1);
    CHECK_EQ_INT(check("1.1 a (\\", "me", chain, &hops), VIA_OK);
    CHECK_STR(chain, "1.1 a");
    CHECK_DONE();
}
