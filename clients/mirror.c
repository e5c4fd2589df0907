/* SPDX-License-Identifier: Apache-2.0 */
/* The --mirror URL: checked strictly, since every client gets it verbatim. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "clients/clients.h"

static int bad(char *err, size_t errlen, const char *url, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bad(char *err, size_t errlen, const char *url, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "--mirror '%s': %s", url, why);
    return -EINVAL;
}

int clients_kind_parse(const char *name, enum clients_kind *kind)
{
    static const char *const names[] = {"docker", "containerd", "podman", "k3s"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i])) {
            *kind = (enum clients_kind)i;
            return 0;
        }
    return -EINVAL;
}

/* A DNS name or dotted IPv4: labels of letters, digits and '-', not starting or ending with
 * '-', separated by single dots. */
static int host_name_valid(const char *s, size_t len)
{
    size_t label = 0;
    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || (ch == '-' && label > 0)) {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

int clients_mirror_parse(const char *url, struct clients_mirror *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    size_t len = strlen(url);
    if (len == 0)
        return bad(err, errlen, url, "empty (e.g. http://mirror.example.org:5000)");
    if (len >= 256)
        return bad(err, errlen, url, "longer than 255 characters");
    const char *p;
    if (!strncasecmp(url, "http://", 7)) {
        m->plain_http = 1;
        p = url + 7;
    } else if (!strncasecmp(url, "https://", 8)) {
        p = url + 8;
    } else {
        return bad(err, errlen, url,
                   "must start with http:// or https:// (e.g. http://mirror.example.org:5000)");
    }
    for (const char *q = url; *q; q++)
        if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f)
            return bad(err, errlen, url,
                       "spaces, control and non-ASCII characters are not allowed");
    size_t authority = strcspn(p, "/?#");
    const char *rest = p + authority;
    if (*rest == '?' || *rest == '#')
        return bad(err, errlen, url, "a query or fragment is not allowed");
    if (*rest == '/' && rest[1] != '\0')
        return bad(err, errlen, url,
                   "a path is not allowed: clients talk to /v2/ of the mirror's host");
    if (memchr(p, '@', authority))
        return bad(err, errlen, url, "user information (user@) is not allowed");
    /* host, then an optional :port */
    const char *host = p, *port = NULL;
    size_t host_len;
    if (*p == '[') {
        const char *close = memchr(p, ']', authority);
        if (!close)
            return bad(err, errlen, url, "an IPv6 address needs its closing ']'");
        if (close == p + 1 || strspn(p + 1, "0123456789abcdefABCDEF:.") != (size_t)(close - p - 1))
            return bad(err, errlen, url, "not an IPv6 address between '[' and ']'");
        host_len = (size_t)(close - p) + 1;
        if (host_len < authority) {
            if (close[1] != ':')
                return bad(err, errlen, url, "expected ':PORT' after ']'");
            port = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', authority);
        host_len = colon ? (size_t)(colon - p) : authority;
        if (colon)
            port = colon + 1;
        if (host_len == 0)
            return bad(err, errlen, url, "missing host");
        if (!host_name_valid(host, host_len))
            return bad(err, errlen, url, "'%.*s' is not a valid host name or address",
                       (int)host_len, host);
    }
    if (port) {
        size_t port_len = (size_t)(p + authority - port);
        unsigned long v = 0;
        if (port_len == 0 || port_len > 5 || strspn(port, "0123456789") < port_len)
            return bad(err, errlen, url, "the port must be a number from 1 to 65535");
        for (size_t i = 0; i < port_len; i++)
            v = v * 10 + (unsigned long)(port[i] - '0');
        if (v < 1 || v > 65535)
            return bad(err, errlen, url, "the port must be a number from 1 to 65535");
    }
    snprintf(m->hostport, sizeof(m->hostport), "%.*s", (int)authority, p);
    /* host names are case-insensitive; clients compare them as written */
    for (char *q = m->hostport; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
    snprintf(m->url, sizeof(m->url), "%s://%s", m->plain_http ? "http" : "https", m->hostport);
    return 0;
}
