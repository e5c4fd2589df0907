/* htpasswd files with bcrypt hashes ($2y$, $2b$, $2a$), verified with libcrypt. */
#ifndef REGCACHE_AUTH_HTPASSWD_H
#define REGCACHE_AUTH_HTPASSWD_H

#include <stddef.h>

#define HTPASSWD_MAX_BYTES (4u << 20)
#define HTPASSWD_USER_MAX 255
#define HTPASSWD_BCRYPT_COST 10

struct htpasswd;

/* Reads path. Lines are "user:hash"; blank lines and lines starting with '#' are skipped. A user
 * whose hash is not bcrypt is left out with a warning naming the user and line. Returns 0, or
 * -errno when the file cannot be read, -EINVAL (err says file and line) when a line is not
 * "user:hash". */
int htpasswd_load(const char *path, struct htpasswd **out, char *err, size_t errlen);
void htpasswd_free(struct htpasswd *h);
size_t htpasswd_count(const struct htpasswd *h);
/* The stored hash of user, or NULL. */
const char *htpasswd_hash(const struct htpasswd *h, const char *user);

/* True when password matches the bcrypt hash. Slow by design (bcrypt): not on the event loop. */
int htpasswd_verify(const char *hash, const char *password);
/* A new bcrypt ($2y$) hash of password into out (at least 64 bytes). 0 or -errno. */
int htpasswd_make_hash(const char *password, char *out, size_t outlen);
/* Creates or updates user's line in path (atomically: a temporary file renamed over it). */
int htpasswd_set(const char *path, const char *user, const char *hash);
/* A user name allowed in the file: 1..255 bytes, no ':', no control characters. */
int htpasswd_user_valid(const char *user);

#endif
