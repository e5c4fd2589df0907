/* SPDX-License-Identifier: Apache-2.0 */
/* What the upstream client takes from an upstream's answers, checked before use: parsing of
 * WWW-Authenticate challenges (RFC 7235 auth-params), header values, Retry-After, and the
 * addresses and URLs (token realms, redirect targets) it may be sent to. Pure functions. */
#ifndef REGCACHE_UPSTREAM_CHALLENGE_H
#define REGCACHE_UPSTREAM_CHALLENGE_H

#include <stddef.h>
#include <sys/socket.h>

enum auth_scheme { AUTH_SCHEME_NONE = 0, AUTH_SCHEME_BASIC, AUTH_SCHEME_BEARER };

struct auth_challenge {
    enum auth_scheme scheme;
    char realm[1024];
    char service[256];
    char scope[512];
    char error[64]; /* e.g. "insufficient_scope", "invalid_token"; empty when absent */
};

/* Parses one header value such as
 *   Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"
 *   Basic realm="Registry Realm"
 * Scheme matching is case-insensitive; params may be quoted strings (with backslash escapes) or
 * tokens, separated by commas with optional whitespace; unknown params are ignored. Values too
 * long for their field give -EINVAL. Returns 0 on success, -EINVAL if the scheme is neither
 * Basic nor Bearer or the syntax is broken; a Bearer challenge without realm is -EINVAL. */
int auth_challenge_parse(const char *value, struct auth_challenge *out);

/* 1 when the n bytes of a header value are only visible ASCII, space and tab: no CR, LF, NUL,
 * other control characters or bytes above 0x7e. Values that fail are never used. */
int header_value_ok(const char *v, size_t n);

/* 1 when v is a Retry-After value of RFC 9110 section 10.2.3: delay-seconds (1*DIGIT, at
 * most 10 digits) or an HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms). */
int retry_after_ok(const char *v);

/* Address classes the mirror never connects to on an upstream's word alone: a token realm or
 * redirect target may be in a class only when the upstream itself is. 0 for every other
 * address. Loopback covers 127/8, ::1, 0.0.0.0/8, :: and their IPv4-mapped forms;
 * link-local 169.254/16 and fe80::/10. */
#define ADDR_LOOPBACK 1
#define ADDR_LINK_LOCAL 2
int addr_class(const struct sockaddr *sa);
/* The class of a URL host as written: an IP literal (brackets allowed), or "localhost" and
 * names under ".localhost" (loopback); 0 for other names, which are judged once resolved. */
int host_class(const char *host);

/* Checks a URL the mirror was told to go to (a realm, a redirect's target) against the URL it
 * came from (the upstream's base URL, or the hop that redirected): it must be http or https,
 * https when from_url is https, carry no user name or password, and name a host whose class
 * (host_class) is in allowed_classes. Returns 0, or -EINVAL with the reason in why. */
int target_url_check(const char *url, const char *from_url, int allowed_classes, char *why,
                     size_t whylen);

/* 1 when both URLs have the same scheme, host and port (default ports filled in). */
int url_same_origin(const char *a, const char *b);

#endif
