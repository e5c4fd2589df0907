/* SPDX-License-Identifier: Apache-2.0 */
/* WWW-Authenticate parsing (RFC 7235 section 2.1, RFC 9110 sections 5.6.2-5.6.4), header
 * value and Retry-After checks (RFC 9110 sections 5.5 and 10.2.3), realm and redirect target
 * checks. */
#include "upstream/challenge.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void skip_ows(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

static size_t token_len(const char *p)
{
    size_t n = 0;

    while (is_tchar((unsigned char)p[n]))
        n++;
    return n;
}

/* Appends c to dst unless full; remembers overflow instead of failing at once. */
static void put(char *dst, size_t cap, size_t *len, bool *overflow, char c)
{
    if (!dst)
        return;
    if (*len + 1 >= cap) {
        *overflow = true;
        return;
    }
    dst[(*len)++] = c;
    dst[*len] = '\0';
}

/* Reads a token or quoted-string value at *p into dst (NULL: parse and discard). */
static int read_value(const char **p, char *dst, size_t cap)
{
    const char *s = *p;
    size_t len = 0;
    bool overflow = false;

    if (dst)
        dst[0] = '\0';
    if (*s == '"') {
        for (s++;; s++) {
            unsigned char c = (unsigned char)*s;
            if (c == '"')
                break;
            if (c == '\\') {
                c = (unsigned char)*++s;
                /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
                if (c != '\t' && (c < 0x20 || c == 0x7f))
                    return -EINVAL;
            } else if (c != '\t' && (c < 0x20 || c == 0x7f)) {
                return -EINVAL; /* includes the terminating NUL: unclosed quote */
            }
            put(dst, cap, &len, &overflow, (char)c);
        }
        s++;
    } else {
        size_t n = token_len(s);
        if (n == 0)
            return -EINVAL;
        for (size_t i = 0; i < n; i++)
            put(dst, cap, &len, &overflow, s[i]);
        s += n;
    }
    if (overflow)
        return -EINVAL;
    *p = s;
    return 0;
}

static int parse(const char *value, struct auth_challenge *out)
{
    const char *p = value;
    bool seen_realm = false, seen_service = false, seen_scope = false, seen_error = false;
    size_t n;

    memset(out, 0, sizeof(*out));
    if (!p)
        return -EINVAL;
    skip_ows(&p);
    n = token_len(p);
    if (n == 6 && strncasecmp(p, "bearer", 6) == 0)
        out->scheme = AUTH_SCHEME_BEARER;
    else if (n == 5 && strncasecmp(p, "basic", 5) == 0)
        out->scheme = AUTH_SCHEME_BASIC;
    else
        return -EINVAL;
    p += n;
    if (*p != '\0' && *p != ' ' && *p != '\t')
        return -EINVAL;
    skip_ows(&p);

    /* auth-param *( OWS "," OWS [ auth-param ] ); empty list elements are allowed. */
    for (bool first = true; *p != '\0'; first = false) {
        const char *name;
        char *dst = NULL;
        size_t cap = 0;
        bool *seen = NULL;

        if (!first) {
            if (*p != ',')
                return -EINVAL;
            p++;
            skip_ows(&p);
            if (*p == ',' || *p == '\0')
                continue;
        }
        name = p;
        n = token_len(p);
        if (n == 0)
            return -EINVAL;
        p += n;
        skip_ows(&p);
        if (*p != '=') {
            /* After a comma, a token without '=' starts the next challenge: stop there. */
            if (!first)
                break;
            return -EINVAL;
        }
        p++;
        skip_ows(&p);

        if (n == 5 && strncasecmp(name, "realm", 5) == 0) {
            dst = out->realm, cap = sizeof(out->realm), seen = &seen_realm;
        } else if (n == 7 && strncasecmp(name, "service", 7) == 0) {
            dst = out->service, cap = sizeof(out->service), seen = &seen_service;
        } else if (n == 5 && strncasecmp(name, "scope", 5) == 0) {
            dst = out->scope, cap = sizeof(out->scope), seen = &seen_scope;
        } else if (n == 5 && strncasecmp(name, "error", 5) == 0) {
            dst = out->error, cap = sizeof(out->error), seen = &seen_error;
        }
        /* RFC 7235: each parameter name MUST only occur once per challenge. */
        if (seen && *seen)
            return -EINVAL;
        if (seen)
            *seen = true;
        if (read_value(&p, dst, cap) < 0)
            return -EINVAL;
        skip_ows(&p);
    }

    if (out->scheme == AUTH_SCHEME_BEARER && out->realm[0] == '\0')
        return -EINVAL;
    return 0;
}

int auth_challenge_parse(const char *value, struct auth_challenge *out)
{
    int rc = parse(value, out);

    if (rc < 0)
        memset(out, 0, sizeof(*out)); /* no half-parsed challenge on failure */
    return rc;
}

/* ---- header values ---- */

int header_value_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c > 0x7e)
            return 0;
    }
    return 1;
}

static bool digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

static int num(const char *p, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

static bool one_of(const char *p, size_t n, const char *const *names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(names[i]) == n && memcmp(p, names[i], n) == 0)
            return true;
    return false;
}

static const char *const day_names[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const long_day_names[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                             "Friday", "Saturday", "Sunday"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* "08:49:37" */
static bool time_ok(const char *p)
{
    return digits(p, 2) && p[2] == ':' && digits(p + 3, 2) && p[5] == ':' && digits(p + 6, 2) &&
           num(p, 2) < 24 && num(p + 3, 2) < 60 && num(p + 6, 2) <= 60;
}

static bool day_ok(const char *p)
{
    int d = num(p, 2);
    return d >= 1 && d <= 31;
}

int retry_after_ok(const char *v)
{
    size_t n = strlen(v);
    if (n >= 1 && n <= 10 && digits(v, n))
        return 1;
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (n == 29 && one_of(v, 3, day_names, 7) && !memcmp(v + 3, ", ", 2) && digits(v + 5, 2) &&
        day_ok(v + 5) && v[7] == ' ' && one_of(v + 8, 3, months, 12) && v[11] == ' ' &&
        digits(v + 12, 4) && v[16] == ' ' && time_ok(v + 17) && !strcmp(v + 25, " GMT"))
        return 1;
    /* asctime: "Sun Nov  6 08:49:37 1994" */
    if (n == 24 && one_of(v, 3, day_names, 7) && v[3] == ' ' && one_of(v + 4, 3, months, 12) &&
        v[7] == ' ' &&
        (v[8] == ' ' ? v[9] >= '1' && v[9] <= '9' : digits(v + 8, 2) && day_ok(v + 8)) &&
        v[10] == ' ' && time_ok(v + 11) && v[19] == ' ' && digits(v + 20, 4))
        return 1;
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    const char *comma = strchr(v, ',');
    if (comma && one_of(v, (size_t)(comma - v), long_day_names, 7)) {
        const char *p = comma;
        if (strlen(p) == 24 && p[1] == ' ' && digits(p + 2, 2) && day_ok(p + 2) && p[4] == '-' &&
            one_of(p + 5, 3, months, 12) && p[8] == '-' && digits(p + 9, 2) && p[11] == ' ' &&
            time_ok(p + 12) && !strcmp(p + 20, " GMT"))
            return 1;
    }
    return 0;
}

/* ---- addresses and URLs ---- */

static int v4_class(const unsigned char *a)
{
    if (a[0] == 127 || a[0] == 0)
        return ADDR_LOOPBACK;
    if (a[0] == 169 && a[1] == 254)
        return ADDR_LINK_LOCAL;
    return 0;
}

static int v6_class(const unsigned char *a)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char zero[15] = {0};
    if (!memcmp(a, mapped, 12))
        return v4_class(a + 12);
    if (!memcmp(a, zero, 15) && (a[15] == 0 || a[15] == 1))
        return ADDR_LOOPBACK; /* :: and ::1 */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return ADDR_LINK_LOCAL;
    return 0;
}

int addr_class(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_class(
            (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return v6_class(
            (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
    return ADDR_LOOPBACK; /* AF_UNIX and the rest: never on an upstream's word */
}

int host_class(const char *host)
{
    char tmp[256];
    unsigned char a[16];
    size_t n = strlen(host);
    if (n >= sizeof(tmp))
        return 0;
    memcpy(tmp, host, n + 1);
    if (n >= 2 && tmp[0] == '[' && tmp[n - 1] == ']') {
        tmp[n - 1] = '\0';
        char *zone = strchr(tmp, '%');
        if (zone)
            *zone = '\0';
        return inet_pton(AF_INET6, tmp + 1, a) == 1 ? v6_class(a) : 0;
    }
    while (n && tmp[n - 1] == '.')
        tmp[--n] = '\0'; /* "localhost." is localhost */
    if (inet_pton(AF_INET, tmp, a) == 1)
        return v4_class(a);
    if (inet_pton(AF_INET6, tmp, a) == 1)
        return v6_class(a);
    if (!strcasecmp(tmp, "localhost") || (n > 10 && !strcasecmp(tmp + n - 10, ".localhost")))
        return ADDR_LOOPBACK;
    return 0;
}

struct url_parts {
    char scheme[8], host[256];
    long port;
    bool userinfo;
};

static int url_split(const char *url, struct url_parts *p)
{
    CURLU *h = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *pass = NULL;
    int rc = -EINVAL;
    memset(p, 0, sizeof(*p));
    if (!h)
        return -ENOMEM;
    if (curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    p->userinfo = curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK ||
                  curl_url_get(h, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK;
    if (strlen(scheme) >= sizeof(p->scheme) || strlen(host) >= sizeof(p->host))
        goto out;
    strcpy(p->scheme, scheme);
    strcpy(p->host, host);
    p->port = strtol(port, NULL, 10);
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_free(pass);
    curl_url_cleanup(h);
    return rc;
}

int target_url_check(const char *url, const char *from_url, int allowed_classes, char *why,
                     size_t whylen)
{
    struct url_parts to, from;
    const char *reason = NULL;
    if (url_split(url, &to))
        reason = "not a valid URL";
    else if (strcasecmp(to.scheme, "http") && strcasecmp(to.scheme, "https"))
        reason = "not an http or https URL";
    else if (!url_split(from_url, &from) && !strcasecmp(from.scheme, "https") &&
             strcasecmp(to.scheme, "https"))
        reason = "plain http, from https";
    else if (to.userinfo)
        reason = "it carries a user name or password";
    else {
        int cls = host_class(to.host);
        if (cls & ~allowed_classes)
            reason = cls == ADDR_LOOPBACK ? "a loopback address" : "a link-local address";
    }
    if (!reason)
        return 0;
    snprintf(why, whylen, "%s", reason);
    return -EINVAL;
}

int url_same_origin(const char *a, const char *b)
{
    struct url_parts x, y;
    if (url_split(a, &x) || url_split(b, &y))
        return 0;
    return !strcasecmp(x.scheme, y.scheme) && !strcasecmp(x.host, y.host) && x.port == y.port;
}
