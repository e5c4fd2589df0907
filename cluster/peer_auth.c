/* SPDX-License-Identifier: Apache-2.0 */
/* HMAC-authenticated requests between cluster members (peer_auth.h). */
#include "cluster/peer_auth.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int peer_auth_secret_ok(const char *secret, size_t len)
{
    return secret && len >= PEER_AUTH_MIN_SECRET;
}

/* The MAC (hex) of one request; -ENAMETOOLONG when its parts do not fit. */
static int mac_of(const char *secret, size_t secret_len, const char *sender, const char *method,
                  const char *target, const char *relay, int64_t ts, char hex[65])
{
    char msg[8192];
    int n = snprintf(msg, sizeof(msg), "v1\n%s\n%s\n%" PRId64 "\n%s%s%s", method, target, ts,
                     sender, relay ? "\nrelay\n" : "", relay ? relay : "");
    if (n < 0 || (size_t)n >= sizeof(msg))
        return -ENAMETOOLONG;
    unsigned char mac[32];
    unsigned int maclen = sizeof(mac);
    HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)msg, (size_t)n, mac,
         &maclen);
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    hex[64] = '\0';
    return 0;
}

int peer_auth_sign(const char *secret, size_t secret_len, const char *sender,
                   const char *method, const char *target, int64_t now_s, char *out,
                   size_t len)
{
    return peer_auth_sign_relay(secret, secret_len, sender, method, target, NULL, now_s, out,
                                len);
}

/* Printable ASCII only: what a header value can carry unchanged. */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

int peer_auth_sign_relay(const char *secret, size_t secret_len, const char *sender,
                         const char *method, const char *target, const char *relay,
                         int64_t now_s, char *out, size_t len)
{
    if (!peer_auth_secret_ok(secret, secret_len) || !sender || !sender[0] ||
        strchr(sender, ' ') || !method || !target || (relay && !printable(relay)))
        return -EINVAL;
    char hex[65];
    int e = mac_of(secret, secret_len, sender, method, target, relay, now_s, hex);
    if (e)
        return e;
    int n = snprintf(out, len, "v1 %s %" PRId64 " %s", sender, now_s, hex);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int refuse(char *why, size_t whylen, const char *reason)
{
    snprintf(why, whylen, "%s", reason);
    return -EACCES;
}

int peer_auth_verify(const char *secret, size_t secret_len, const struct members *m,
                     const char *value, const char *method, const char *target, int64_t now_s,
                     size_t *sender, char *why, size_t whylen)
{
    return peer_auth_verify_relay(secret, secret_len, m, value, method, target, NULL, now_s,
                                  sender, why, whylen);
}

int peer_auth_verify_relay(const char *secret, size_t secret_len, const struct members *m,
                           const char *value, const char *method, const char *target,
                           const char *relay, int64_t now_s, size_t *sender, char *why,
                           size_t whylen)
{
    if (!peer_auth_secret_ok(secret, secret_len))
        return refuse(why, whylen, "no cluster secret");
    if (!value || strlen(value) >= PEER_AUTH_VALUE_MAX)
        return refuse(why, whylen, "malformed peer header");
    /* exactly "v1 URL TS MAC": single spaces, digits without a leading zero, 64 lower-case
     * hex digits: the one form peer_auth_sign writes */
    char url[MEMBERS_URL_MAX];
    const char *u = value + 3, *sp1, *sp2, *mac;
    if (strncmp(value, "v1 ", 3) || !(sp1 = strchr(u, ' ')) || !(sp2 = strchr(sp1 + 1, ' ')))
        return refuse(why, whylen, "malformed peer header");
    mac = sp2 + 1;
    size_t ulen = (size_t)(sp1 - u), tlen = (size_t)(sp2 - sp1 - 1);
    if (ulen == 0 || ulen >= sizeof(url) || tlen == 0 || tlen > 18 ||
        (tlen > 1 && sp1[1] == '0') || strlen(mac) != 64 ||
        strspn(mac, "0123456789abcdef") != 64)
        return refuse(why, whylen, "malformed peer header");
    long long ts = 0;
    for (const char *c = sp1 + 1; c < sp2; c++) {
        if (*c < '0' || *c > '9')
            return refuse(why, whylen, "malformed peer header time");
        ts = ts * 10 + (*c - '0');
    }
    memcpy(url, u, ulen);
    url[ulen] = '\0';
    int idx = members_find(m, url);
    if (idx < 0 || strcmp(members_url(m, (size_t)idx), url))
        return refuse(why, whylen, "peer header from a host that is not a member");
    if (ts > now_s + PEER_AUTH_SKEW_S || ts < now_s - PEER_AUTH_SKEW_S)
        return refuse(why, whylen, "peer header time outside 60 s of this member's clock");
    char want[65];
    if (relay && (strlen(relay) > PEER_AUTH_RELAY_MAX || !printable(relay)))
        return refuse(why, whylen, "malformed relay header");
    if (mac_of(secret, secret_len, url, method, target, relay, ts, want))
        return refuse(why, whylen, "request target too long");
    if (CRYPTO_memcmp(want, mac, 64) != 0)
        return refuse(why, whylen, "peer header MAC does not match");
    *sender = (size_t)idx;
    return 0;
}

static int is_nonce(const char *s, size_t n)
{
    if (n != PEER_AUTH_NONCE_HEX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", s[i]) || !s[i])
            return 0;
    return 1;
}

/* A receiver as a claim carries it: printable, no space, 1..MEMBERS_URL_MAX bytes. */
static int is_receiver(const char *s, size_t n)
{
    if (n == 0 || n > MEMBERS_URL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return 0;
    return 1;
}

int peer_auth_relay_claim(const char *nonce, const char *receiver, const char *user, char *out,
                          size_t len)
{
    int n;
    if (!nonce || !receiver || !is_nonce(nonce, strlen(nonce)) ||
        !is_receiver(receiver, strlen(receiver)))
        return -EINVAL;
    if (!user || !user[0])
        n = snprintf(out, len, "%s %s anonymous", nonce, receiver);
    else if (strlen(user) > PEER_AUTH_USER_MAX || !printable(user))
        return -EINVAL;
    else
        n = snprintf(out, len, "%s %s user %s", nonce, receiver, user);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

int peer_auth_relay_user(const char *value, char *nonce, char *receiver, size_t receiver_len,
                         char *user, size_t len)
{
    if (!value)
        return -EINVAL;
    const char *sp1 = strchr(value, ' ');
    if (!sp1 || !is_nonce(value, (size_t)(sp1 - value)))
        return -EINVAL;
    const char *rcv = sp1 + 1, *sp2 = strchr(rcv, ' ');
    if (!sp2 || !is_receiver(rcv, (size_t)(sp2 - rcv)) || (size_t)(sp2 - rcv) >= receiver_len)
        return -EINVAL;
    const char *who = sp2 + 1;
    int r;
    if (strcmp(who, "anonymous") == 0) {
        if (len)
            user[0] = '\0';
        r = 0;
    } else {
        const char *name = who + 5;
        size_t n = strlen(who) >= 5 ? strlen(name) : 0;
        if (strncmp(who, "user ", 5) || n == 0 || n > PEER_AUTH_USER_MAX || n >= len ||
            !printable(name))
            return -EINVAL;
        memcpy(user, name, n + 1);
        r = 1;
    }
    memcpy(nonce, value, PEER_AUTH_NONCE_HEX);
    nonce[PEER_AUTH_NONCE_HEX] = '\0';
    memcpy(receiver, rcv, (size_t)(sp2 - rcv));
    receiver[sp2 - rcv] = '\0';
    return r;
}
