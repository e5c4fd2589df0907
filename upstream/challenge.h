/* Parsing of WWW-Authenticate challenges from upstream registries (RFC 7235 auth-params). */
#ifndef REGCACHE_UPSTREAM_CHALLENGE_H
#define REGCACHE_UPSTREAM_CHALLENGE_H

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

#endif
