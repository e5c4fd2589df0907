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
                  const char *target, int64_t ts, char hex[65])
{
    char msg[8192];
    int n = snprintf(msg, sizeof(msg), "v1\n%s\n%s\n%" PRId64 "\n%s", method, target, ts,
                     sender);
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
    if (!peer_auth_secret_ok(secret, secret_len) || !sender || !sender[0] ||
        strchr(sender, ' ') || !method || !target)
        return -EINVAL;
    char hex[65];
    int e = mac_of(secret, secret_len, sender, method, target, now_s, hex);
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
    if (mac_of(secret, secret_len, url, method, target, ts, want))
        return refuse(why, whylen, "request target too long");
    if (CRYPTO_memcmp(want, mac, 64) != 0)
        return refuse(why, whylen, "peer header MAC does not match");
    *sender = (size_t)idx;
    return 0;
}
