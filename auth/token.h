/* SPDX-License-Identifier: Apache-2.0 */
/* Bearer tokens issued by the mirror's own token endpoint, the way Docker Hub pairs a registry
 * with an auth service: a client answers the ping's `Bearer` challenge by asking the endpoint
 * for a token (anonymously, or with Basic credentials checked once), then sends the token.
 *
 * A token names its holder and its expiry and carries an HMAC-SHA256 over both, keyed with a
 * secret only this mirror knows, so checking one costs microseconds and needs no state:
 *     "<base64url(v1 <expiry unix seconds> <user>)>.<base64url(mac)>"
 * An empty user is an anonymous token. */
#ifndef REGCACHE_AUTH_TOKEN_H
#define REGCACHE_AUTH_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_KEY_BYTES 32
#define TOKEN_MAX 512       /* longest token issued (user names are at most 255 bytes) */
#define TOKEN_TTL_S 900     /* lifetime of an issued token */

struct token_key {
    unsigned char bytes[TOKEN_KEY_BYTES];
};

/* Reads the key at path, creating it (mode 0600, random bytes) when absent. The key survives
 * restarts so that tokens held by clients mid-pull stay valid. 0 or -errno. */
int token_key_load(const char *path, struct token_key *key, char *err, size_t errlen);

/* Writes a token for user ("" for anonymous) valid until expires (unix seconds). 0, or
 * -ENAMETOOLONG when out is too small. */
int token_issue(const struct token_key *key, const char *user, int64_t expires, char *out,
                size_t outlen);

/* Checks token at time now. 0, the holder in user ("" for anonymous) and, when expires is not
 * NULL, its expiry (unix seconds); -EINVAL for a token this key did not sign or that is
 * malformed; -ETIMEDOUT for an expired one. */
int token_verify(const struct token_key *key, const char *token, size_t len, int64_t now,
                 char *user, size_t userlen, int64_t *expires);

#endif
