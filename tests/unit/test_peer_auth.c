/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for cluster/peer_auth.c: signed values verify; every tampered part, a stale or
 * future time, an unknown sender, a wrong secret and malformed values are refused; a relay
 * claim is covered by the MAC (added, removed or changed: refused) and reads back. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cluster/nonces.h"
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

    /* relayed requests: the claim is part of what is signed */
    size_t who;
    static const char N[] = "0123456789abcdef0123456789abcdef";
    char claim[PEER_AUTH_RELAY_MAX + 1], user[PEER_AUTH_USER_MAX + 1];
    char nonce[PEER_AUTH_NONCE_HEX + 1], rcv[MEMBERS_URL_MAX + 1];
    char expect[PEER_AUTH_RELAY_MAX + 1];
    CHECK_EQ_INT(peer_auth_relay_claim(N, urls[0], "alice", claim, sizeof(claim)), 0);
    snprintf(expect, sizeof(expect), "%s %s user alice", N, urls[0]);
    CHECK_STR(claim, expect);
    CHECK_EQ_INT(peer_auth_sign_relay(SECRET, strlen(SECRET), urls[2], "PATCH", TARGET, claim,
                                      NOW, v, sizeof(v)), 0);
    CHECK_EQ_INT(peer_auth_verify_relay(SECRET, strlen(SECRET), m, v, "PATCH", TARGET, claim,
                                        NOW, &who, why, sizeof(why)), 0);
    CHECK_EQ_INT((int)who, 2);
    /* the claim dropped, changed (user, nonce or receiver), or added to a member's own request */
    CHECK_EQ_INT(peer_auth_verify_relay(SECRET, strlen(SECRET), m, v, "PATCH", TARGET, NULL,
                                        NOW, &who, why, sizeof(why)), -EACCES);
    char changed[PEER_AUTH_RELAY_MAX + 1];
    snprintf(changed, sizeof(changed), "%s %s user mallory", N, urls[0]);
    CHECK_EQ_INT(peer_auth_verify_relay(SECRET, strlen(SECRET), m, v, "PATCH", TARGET, changed,
                                        NOW, &who, why, sizeof(why)), -EACCES);
    snprintf(changed, sizeof(changed), "%s %s user alice", N, urls[1]);
    CHECK_EQ_INT(peer_auth_verify_relay(SECRET, strlen(SECRET), m, v, "PATCH", TARGET, changed,
                                        NOW, &who, why, sizeof(why)), -EACCES);
    snprintf(changed, sizeof(changed), "1%.31s %s user alice", N, urls[0]);
    CHECK_EQ_INT(peer_auth_verify_relay(SECRET, strlen(SECRET), m, v, "PATCH", TARGET, changed,
                                        NOW, &who, why, sizeof(why)), -EACCES);
    CHECK_EQ_INT(peer_auth_sign(SECRET, strlen(SECRET), urls[2], "PATCH", TARGET, NOW, t,
                                sizeof(t)), 0);
    CHECK_EQ_INT(peer_auth_verify_relay(SECRET, strlen(SECRET), m, t, "PATCH", TARGET, claim,
                                        NOW, &who, why, sizeof(why)), -EACCES);
    CHECK_CONTAINS(why, "MAC");
    CHECK_EQ_INT(peer_auth_sign_relay(SECRET, strlen(SECRET), urls[2], "GET", TARGET, "a\nb",
                                      NOW, t, sizeof(t)), -EINVAL);
    /* claims: a user, anonymous; names, nonces and receivers that cannot be claimed */
    CHECK_EQ_INT(peer_auth_relay_claim(N, urls[1], NULL, claim, sizeof(claim)), 0);
    snprintf(expect, sizeof(expect), "%s %s anonymous", N, urls[1]);
    CHECK_STR(claim, expect);
    CHECK_EQ_INT(peer_auth_relay_user(claim, nonce, rcv, sizeof(rcv), user, sizeof(user)), 0);
    CHECK_STR(user, "");
    CHECK_STR(nonce, N);
    CHECK_STR(rcv, urls[1]);
    CHECK_EQ_INT(peer_auth_relay_claim(N, urls[1], "", claim, sizeof(claim)), 0);
    CHECK_STR(claim, expect);
    CHECK_EQ_INT(peer_auth_relay_claim(N, urls[1], "bob\n", claim, sizeof(claim)), -EINVAL);
    CHECK_EQ_INT(peer_auth_relay_claim("0123", urls[1], "bob", claim, sizeof(claim)), -EINVAL);
    CHECK_EQ_INT(peer_auth_relay_claim("0123456789ABCDEF0123456789abcdef", urls[1], "bob", claim,
                                       sizeof(claim)),
                 -EINVAL);
    CHECK_EQ_INT(peer_auth_relay_claim(N, "http://a b", "bob", claim, sizeof(claim)), -EINVAL);
    CHECK_EQ_INT(peer_auth_relay_claim(N, NULL, "bob", claim, sizeof(claim)), -EINVAL);
    char longname[PEER_AUTH_USER_MAX + 2];
    memset(longname, 'u', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    CHECK_EQ_INT(peer_auth_relay_claim(N, urls[0], longname, claim, sizeof(claim)), -EINVAL);
    longname[PEER_AUTH_USER_MAX] = '\0';
    CHECK_EQ_INT(peer_auth_relay_claim(N, urls[0], longname, claim, sizeof(claim)), 0);
    CHECK_EQ_INT(peer_auth_relay_user(claim, nonce, rcv, sizeof(rcv), user, sizeof(user)), 1);
    CHECK_STR(user, longname);
    snprintf(changed, sizeof(changed), "%s http://h:1 user a b", N);
    CHECK_EQ_INT(peer_auth_relay_user(changed, nonce, rcv, sizeof(rcv), user, sizeof(user)), 1);
    CHECK_STR(user, "a b");
    CHECK_STR(rcv, "http://h:1");
    const char *badclaim[] = {"", "user alice", "anonymous", N,
                              "0123456789abcdef0123456789abcdef http://h:1",
                              "0123456789abcdef0123456789abcdef http://h:1 ",
                              "0123456789abcdef0123456789abcdef http://h:1 user",
                              "0123456789abcdef0123456789abcdef http://h:1 user ",
                              "0123456789abcdef0123456789abcdef http://h:1 User alice",
                              "0123456789abcdef0123456789abcdef http://h:1 anonymous ",
                              "0123456789abcdef0123456789abcdef http://h:1 alice",
                              "0123456789abcdef0123456789abcdef http://h:1 user \x01x",
                              "0123456789abcdef0123456789abcdeg http://h:1 user a",
                              "0123456789abcdef0123456789abcde http://h:1 user a",
                              "0123456789abcdef0123456789abcdef  user a"};
    for (size_t i = 0; i < sizeof(badclaim) / sizeof(badclaim[0]); i++)
        CHECK_EQ_INT(peer_auth_relay_user(badclaim[i], nonce, rcv, sizeof(rcv), user,
                                          sizeof(user)),
                     -EINVAL);
    CHECK_EQ_INT(peer_auth_relay_user(NULL, nonce, rcv, sizeof(rcv), user, sizeof(user)),
                 -EINVAL);
    snprintf(changed, sizeof(changed), "%s http://h:1 user alice", N);
    CHECK_EQ_INT(peer_auth_relay_user(changed, nonce, rcv, sizeof(rcv), user, 5), -EINVAL);
    CHECK_EQ_INT(peer_auth_relay_user(changed, nonce, rcv, 5, user, sizeof(user)), -EINVAL);

    /* nonces: one use within the window, again after it; bounded */
    struct nonces *ns = nonces_new();
    CHECK(ns != NULL);
    CHECK_EQ_INT(nonces_take(ns, urls[2], N, 1000), 0);
    CHECK_EQ_INT(nonces_take(ns, urls[2], N, 2000), -EALREADY);
    CHECK_EQ_INT(nonces_take(ns, urls[1], N, 2000), 0); /* another sender's */
    CHECK_EQ_INT(nonces_take(ns, urls[2], "ffffffffffffffffffffffffffffffff", 2000), 0);
    CHECK_EQ_INT(nonces_take(ns, urls[2], N, 2000 + 2 * PEER_AUTH_SKEW_S * 1000), 0);
    CHECK_EQ_U64(nonces_count(ns), 1); /* the swept others went, the retaken one stays */
    char hex[PEER_AUTH_NONCE_HEX + 1];
    uint64_t at = 10ull * 1000 * 1000;
    int full = 0;
    for (int i = 0; i <= NONCES_MAX && !full; i++) {
        snprintf(hex, sizeof(hex), "%032x", i);
        full = nonces_take(ns, urls[2], hex, at) == -ENOSPC;
    }
    CHECK_EQ_INT(full, 1);
    CHECK_EQ_U64(nonces_count(ns), NONCES_MAX);
    /* once the window has passed, room again */
    CHECK_EQ_INT(nonces_take(ns, urls[2], N, at + 2 * PEER_AUTH_SKEW_S * 1000 + 1), 0);
    CHECK_EQ_U64(nonces_count(ns), 1);
    nonces_free(ns);

    members_free(m);
    CHECK_DONE();
}
