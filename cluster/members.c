/* SPDX-License-Identifier: Apache-2.0 */
/* Cluster members and rendezvous (HRW) ownership (members.h). */
#include "cluster/members.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

struct member {
    char url[MEMBERS_URL_MAX];
    int up;
    uint64_t since_ms;
};

struct members {
    struct member m[MEMBERS_MAX];
    size_t n, self;
};

int members_normalise(const char *url, char *out, size_t len)
{
    const char *rest;
    const char *scheme;
    if (!strncasecmp(url, "http://", 7)) {
        scheme = "http://";
        rest = url + 7;
    } else if (!strncasecmp(url, "https://", 8)) {
        scheme = "https://";
        rest = url + 8;
    } else {
        return -EINVAL;
    }
    size_t n = strlen(rest);
    while (n && rest[n - 1] == '/')
        n--;
    if (n == 0 || strlen(scheme) + n + 1 > len || strlen(scheme) + n >= MEMBERS_URL_MAX)
        return -EINVAL;
    size_t o = (size_t)snprintf(out, len, "%s", scheme);
    int bracket = 0, colon = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)rest[i];
        /* host[:port] only: no path, userinfo, query or fragment */
        if (c == '[')
            bracket = 1;
        else if (c == ']')
            bracket = 0;
        else if (c == ':' && !bracket)
            colon = 1;
        else if (colon && !isdigit(c))
            return -EINVAL;
        else if (!isalnum(c) && c != '.' && c != '-' && !(bracket && c == ':'))
            return -EINVAL;
        out[o++] = (char)tolower(c);
    }
    out[o] = '\0';
    if (out[o - 1] == ':' || bracket)
        return -EINVAL;
    return 0;
}

int members_new(const char *const *urls, size_t n, const char *self_url, struct members **out,
                char *why, size_t whylen)
{
    *out = NULL;
    if (n == 0 || n > MEMBERS_MAX) {
        snprintf(why, whylen, "a cluster has 1 to %d members, not %zu", MEMBERS_MAX, n);
        return -EINVAL;
    }
    struct members *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (members_normalise(urls[i], m->m[i].url, sizeof(m->m[i].url))) {
            snprintf(why, whylen, "member %s is not http(s)://host[:port]", urls[i]);
            free(m);
            return -EINVAL;
        }
        for (size_t k = 0; k < i; k++) {
            if (!strcmp(m->m[k].url, m->m[i].url)) {
                snprintf(why, whylen, "member %s is listed twice", m->m[i].url);
                free(m);
                return -EINVAL;
            }
        }
        m->m[i].up = 1;
    }
    m->n = n;
    int self = self_url ? members_find(m, self_url) : -1;
    if (self < 0) {
        snprintf(why, whylen, "this member (%s) is not among the members",
                 self_url ? self_url : "unset");
        free(m);
        return -EINVAL;
    }
    m->self = (size_t)self;
    *out = m;
    return 0;
}

void members_free(struct members *m)
{
    free(m);
}

size_t members_count(const struct members *m)
{
    return m->n;
}

size_t members_self(const struct members *m)
{
    return m->self;
}

const char *members_url(const struct members *m, size_t i)
{
    return i < m->n ? m->m[i].url : NULL;
}

int members_find(const struct members *m, const char *url)
{
    char norm[MEMBERS_URL_MAX];
    if (members_normalise(url, norm, sizeof(norm)))
        return -1;
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->m[i].url, norm))
            return (int)i;
    return -1;
}

void members_set_up(struct members *m, size_t i, int up, uint64_t at_ms)
{
    if (i >= m->n || i == m->self || m->m[i].up == !!up)
        return;
    m->m[i].up = !!up;
    m->m[i].since_ms = at_ms;
}

int members_is_up(const struct members *m, size_t i)
{
    return i < m->n && (i == m->self || m->m[i].up);
}

uint64_t members_since_ms(const struct members *m, size_t i)
{
    return i < m->n ? m->m[i].since_ms : 0;
}

/* SHA-256 of "url\nkey" (a key too long for the buffer is replaced by its own SHA-256). */
static uint64_t weight(const char *url, const char *key)
{
    unsigned char h[32];
    char buf[MEMBERS_URL_MAX + 1 + 1024];
    size_t ul = strlen(url), kl = strlen(key);
    memcpy(buf, url, ul);
    buf[ul] = '\n';
    if (kl <= sizeof(buf) - ul - 1) {
        memcpy(buf + ul + 1, key, kl);
    } else {
        EVP_Digest(key, kl, (unsigned char *)buf + ul + 1, NULL, EVP_sha256(), NULL);
        kl = 32;
    }
    EVP_Digest(buf, ul + 1 + kl, h, NULL, EVP_sha256(), NULL);
    uint64_t w = 0;
    for (int i = 0; i < 8; i++)
        w = (w << 8) | h[i];
    return w;
}

void members_order(const struct members *m, const char *key, size_t *order)
{
    uint64_t w[MEMBERS_MAX];
    for (size_t i = 0; i < m->n; i++) {
        w[i] = weight(m->m[i].url, key);
        /* insertion: higher weight first, equal weights by URL */
        size_t k = i;
        while (k > 0) {
            size_t prev = order[k - 1];
            if (w[prev] > w[i] || (w[prev] == w[i] && strcmp(m->m[prev].url, m->m[i].url) < 0))
                break;
            order[k] = prev;
            k--;
        }
        order[k] = i;
    }
}

size_t members_owner(const struct members *m, const char *key)
{
    size_t order[MEMBERS_MAX];
    members_order(m, key, order);
    for (size_t i = 0; i < m->n; i++)
        if (members_is_up(m, order[i]))
            return order[i];
    return m->self;
}

int members_successor(const struct members *m, const char *key, size_t after)
{
    size_t order[MEMBERS_MAX];
    members_order(m, key, order);
    size_t i = 0;
    while (i < m->n && order[i] != after)
        i++;
    for (i++; i < m->n; i++)
        if (members_is_up(m, order[i]))
            return (int)order[i];
    return -1;
}
