/* SPDX-License-Identifier: Apache-2.0 */
/* Token cache and token-response parsing for upstream Bearer authentication (internal). */
#ifndef REGCACHE_UPSTREAM_AUTH_H
#define REGCACHE_UPSTREAM_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_CACHE_SLOTS 128 /* per upstream; the oldest entry makes room */
#define TOKEN_MAX 16384

struct token_cache;

struct token_cache *token_cache_new(void);
void token_cache_free(struct token_cache *tc);
/* The token for scope, or NULL when absent or expired at now_ms. */
const char *token_cache_get(struct token_cache *tc, const char *scope, uint64_t now_ms);
int token_cache_put(struct token_cache *tc, const char *scope, const char *token,
                    uint64_t expires_at_ms);
void token_cache_drop(struct token_cache *tc, const char *scope);

/* Parses a token endpoint's JSON: "token" (or "access_token") and "expires_in" (default 60 s).
 * *token is malloc'ed. Returns 0 or -EINVAL. */
int token_parse_response(const char *body, size_t len, char **token, uint64_t *expires_in_s);

/* When a token fetched at now_ms with lifetime expires_in_s should stop being used: a margin
 * before the real expiry so a request never leaves with a token about to lapse. */
uint64_t token_use_until(uint64_t now_ms, uint64_t expires_in_s);

#endif
