/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for cluster/peer_auth.c: signed values verify; every tampered part, a stale or
 * future time, an unknown sender, a wrong secret and malformed values are refused. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cluster/peer_auth.h"

#define SECRET "0123456789abcdef-cluster"
#define NOW 1780000000
#define TARGET "/v2/library/alpine/blobs/sha256:" \
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa?ns=docker.io"

static struct members *m;

static int verify(const char *value, const char *method, const char *target, int64_t now,
                  char *why)
{
    size_t sender = 99;
    int r = peer_auth_verify(SECRET, strlen(SECRET), m, value, method, target, now, &sender,
                             why, 128);
    if (r == 0)
        CHECK_EQ_INT((int)sender, 2);
    return r;
}

int main(void)
{
    const char *urls[] = {"http://127.0.0.1:5001", "http://127.0.0.1:5002",
                          "http://127.0.0.1:5003"};
    char why[128], v[PEER_AUTH_VALUE_MAX], t[PEER_AUTH_VALUE_MAX];
    CHECK_EQ_INT(members_new(urls, 3, urls[0], &m, why, sizeof(why)), 0);

    CHECK(!peer_auth_secret_ok("short", 5));
    CHECK_EQ_INT(peer_auth_sign("short", 5, urls[2], "GET", TARGET, NOW, v, sizeof(v)), -EINVAL);
    CHECK_EQ_INT(peer_auth_sign(SECRET, strlen(SECRET), urls[2], "GET", TARGET, NOW, v, 20),
                 -ENAMETOOLONG);
    CHECK_EQ_INT(peer_auth_sign(SECRET, strlen(SECRET), urls[2], "GET", TARGET, NOW, v,
                                sizeof(v)), 0);
    CHECK_CONTAINS(v, "v1 http://127.0.0.1:5003 1780000000 ");

    CHECK_EQ_INT(verify(v, "GET", TARGET, NOW, why), 0);
    CHECK_EQ_INT(verify(v, "GET", TARGET, NOW + PEER_AUTH_SKEW_S, why), 0);
    CHECK_EQ_INT(verify(v, "GET", TARGET, NOW - PEER_AUTH_SKEW_S, why), 0);

    /* the MAC covers the method, the target and the time */
    CHECK_EQ_INT(verify(v, "HEAD", TARGET, NOW, why), -EACCES);
    CHECK_CONTAINS(why, "MAC");
    CHECK_EQ_INT(verify(v, "GET", "/v2/library/alpine/blobs/sha256:b", NOW, why), -EACCES);
    CHECK_EQ_INT(verify(v, "GET", TARGET "&x=1", NOW, why), -EACCES);
    snprintf(t, sizeof(t), "%s", v);
    memcpy(strstr(t, "1780000000"), "1780000001", 10);
    CHECK_EQ_INT(verify(t, "GET", TARGET, NOW, why), -EACCES);
    CHECK_CONTAINS(why, "MAC");
    /* another sender's name on the same MAC */
    snprintf(t, sizeof(t), "%s", v);
    t[strlen("v1 http://127.0.0.1:500")] = '2';
    CHECK_EQ_INT(verify(t, "GET", TARGET, NOW, why), -EACCES);
    /* one hex digit of the MAC changed, or upper-cased */
    snprintf(t, sizeof(t), "%s", v);
    char *last = t + strlen(t) - 1;
    *last = *last == '0' ? '1' : '0';
    CHECK_EQ_INT(verify(t, "GET", TARGET, NOW, why), -EACCES);

    /* too old, from the future */
    CHECK_EQ_INT(verify(v, "GET", TARGET, NOW + PEER_AUTH_SKEW_S + 1, why), -EACCES);
    CHECK_CONTAINS(why, "60 s");
    CHECK_EQ_INT(verify(v, "GET", TARGET, NOW - PEER_AUTH_SKEW_S - 1, why), -EACCES);

    /* a wrong secret */
    size_t sender;
    CHECK_EQ_INT(peer_auth_verify("another-secret-of-16+", 21, m, v, "GET", TARGET, NOW,
                                  &sender, why, sizeof(why)), -EACCES);
    CHECK_EQ_INT(peer_auth_verify("", 0, m, v, "GET", TARGET, NOW, &sender, why, sizeof(why)),
                 -EACCES);

    /* a sender that is not a member, even with a correct MAC */
    CHECK_EQ_INT(peer_auth_sign(SECRET, strlen(SECRET), "http://127.0.0.1:6000", "GET", TARGET,
                                NOW, t, sizeof(t)), 0);
    CHECK_EQ_INT(verify(t, "GET", TARGET, NOW, why), -EACCES);
    CHECK_CONTAINS(why, "not a member");

    /* malformed values */
    const char *bad[] = {"", "v1", "v2 http://127.0.0.1:5003 1780000000 00",
                         "v1 http://127.0.0.1:5003 1780000000",
                         "v1 http://127.0.0.1:5003 17800x0000 "
                         "0000000000000000000000000000000000000000000000000000000000000000",
                         "v1 http://127.0.0.1:5003 -1780000000 "
                         "0000000000000000000000000000000000000000000000000000000000000000",
                         "v1 http://127.0.0.1:5003 1780000000 "
                         "0000000000000000000000000000000000000000000000000000000000000000 x",
                         "v1 http://127.0.0.1:5003 1780000000 abc"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(verify(bad[i], "GET", TARGET, NOW, why), -EACCES);
    /* the signed value with its spaces widened, a tab or an upper-cased MAC: not canonical */
    const char *sep[] = {"  ", " \t", "\t"};
    for (size_t i = 0; i < sizeof(sep) / sizeof(sep[0]); i++) {
        const char *mac = strrchr(v, ' ') + 1;
        snprintf(t, sizeof(t), "v1 http://127.0.0.1:5003 1780000000%s%s", sep[i], mac);
        CHECK_EQ_INT(verify(t, "GET", TARGET, NOW, why), -EACCES);
    }
    snprintf(t, sizeof(t), "v1 http://127.0.0.1:5003 01780000000 %s", strrchr(v, ' ') + 1);
    CHECK_EQ_INT(verify(t, "GET", TARGET, NOW, why), -EACCES); /* a leading zero */
    snprintf(t, sizeof(t), "%s", v);
    for (char *c = strrchr(t, ' ') + 1; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    CHECK_EQ_INT(verify(t, "GET", TARGET, NOW, why), -EACCES);
    static char huge[4096];
    memset(huge, 'a', sizeof(huge) - 1);
    CHECK_EQ_INT(verify(huge, "GET", TARGET, NOW, why), -EACCES);
    CHECK_EQ_INT(verify(NULL, "GET", TARGET, NOW, why), -EACCES);

    members_free(m);
    CHECK_DONE();
}
