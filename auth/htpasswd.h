/* SPDX-License-Identifier: Apache-2.0 */
/* htpasswd files with bcrypt hashes ($2y$, $2b$, $2a$), verified with libcrypt. */
#ifndef REGCACHE_AUTH_HTPASSWD_H
#define REGCACHE_AUTH_HTPASSWD_H

#include <stddef.h>

#define HTPASSWD_MAX_BYTES (4u << 20)
#define HTPASSWD_USER_MAX 255
#define HTPASSWD_BCRYPT_COST 10 /* what `regcache passwd` writes; less is warned about at load */
#define HTPASSWD_COST_MAX 16    /* the dummy hash of unknown users never costs more */
#define HTPASSWD_PASSWORD_MAX 72 /* bcrypt ignores every byte past this many */

struct htpasswd;

/* Reads path. Lines are "user:hash"; blank lines and lines starting with '#' are skipped. A user
 * whose hash is not bcrypt is left out with a warning naming the user and line; hashes of a
 * cost under HTPASSWD_BCRYPT_COST are kept, with one warning naming the first. Returns 0, or
 * -errno when the file cannot be read, -EINVAL (err says file and line) when a line is not
 * "user:hash". */
int htpasswd_load(const char *path, struct htpasswd **out, char *err, size_t errlen);
void htpasswd_free(struct htpasswd *h);
size_t htpasswd_count(const struct htpasswd *h);
/* The stored hash of user, or NULL. */
const char *htpasswd_hash(const struct htpasswd *h, const char *user);
/* The cost ("$2y$NN$") of a bcrypt hash, -1 when it is not one. */
int htpasswd_cost(const char *hash);
/* The cost unknown users are checked at, so that a wrong name takes as long as a wrong
 * password: the highest cost in the file (at most HTPASSWD_COST_MAX), HTPASSWD_BCRYPT_COST for
 * a file without users. */
int htpasswd_dummy_cost(const struct htpasswd *h);
/* A hash of the given cost that no password matches (random salt; nothing is hashed, so this
 * is fast), for checking unknown users: verifying against it costs what a real hash of that
 * cost does. out has at least 64 bytes. 0 or -errno. */
int htpasswd_make_dummy(int cost, char *out, size_t outlen);

/* True when password matches the bcrypt hash. Slow by design (bcrypt): not on the event loop. */
int htpasswd_verify(const char *hash, const char *password);
/* A new bcrypt ($2y$) hash of password into out (at least 64 bytes). 0 or -errno. */
int htpasswd_make_hash(const char *password, char *out, size_t outlen);
/* Creates or updates user's line in path (atomically: a temporary file renamed over it). */
int htpasswd_set(const char *path, const char *user, const char *hash);
/* A user name allowed in the file: 1..255 bytes, no ':', no control characters. */
int htpasswd_user_valid(const char *user);

#endif
