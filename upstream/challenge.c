/* WWW-Authenticate parsing (RFC 7235 section 2.1, RFC 9110 sections 5.6.2-5.6.4). */
#include "upstream/challenge.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
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
