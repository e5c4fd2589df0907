/* SPDX-License-Identifier: Apache-2.0 */
/* What the mirror remembers of credential checks (auth.c): the verdict per user and password,
 * and the recent wrong passwords of each client address. Both tables are bounded; the clock is
 * passed in. Loop thread only.
 *
 * A verdict holds only for the user's line it was checked against: a lookup passes the user's
 * hash in the file now, so that a reload that removes a user or changes a password refuses
 * that user's remembered credentials at once, and a check that finished after such a reload is
 * not trusted. A full cache drops failed verdicts first, so that a flood of wrong credentials
 * never pushes out good logins; only a cache of good verdicts alone drops the least recently
 * used one. */
#ifndef REGCACHE_AUTH_VERDICTS_H
#define REGCACHE_AUTH_VERDICTS_H

#include <stddef.h>
#include <stdint.h>

#define VERDICT_KEY_MAX 72 /* a hex SHA-256 of "user:password" and its NUL fit */

struct verdicts;

struct verdicts *verdicts_new(size_t max);
void verdicts_free(struct verdicts *v);
size_t verdicts_count(const struct verdicts *v);
/* Remembers that key's credentials were ok or not when checked against hash (the user's line
 * then; NULL for an unknown user) until until_ms. 0, -EINVAL or -ENOMEM. */
int verdicts_put(struct verdicts *v, const char *key, const char *hash, int ok,
                 uint64_t until_ms);
/* key's verdict when it still holds at now_ms against hash (the user's line now, NULL when the
 * user is not in the file): 1 ok, 0 refused, -1 none (never seen, expired or checked against
 * another line). A good verdict used becomes the most recently used. */
int verdicts_get(struct verdicts *v, const char *key, const char *hash, uint64_t now_ms);

/* Wrong passwords per client address: at most limit of them in window_ms, then the address's
 * further logins are refused until the window that began at its first failure is over. At most
 * max addresses are tracked; a full table forgets the one that failed least recently. limit 0
 * turns the limit off. */
struct failures;

struct failures *failures_new(size_t max, unsigned limit, uint64_t window_ms);
void failures_free(struct failures *f);
size_t failures_count(const struct failures *f);
/* Records a wrong password from addr; returns 1 when this one reached the limit. */
int failures_add(struct failures *f, const char *addr, uint64_t now_ms);
/* 0 when addr may try a password now, else the milliseconds until it may. */
uint64_t failures_blocked(struct failures *f, const char *addr, uint64_t now_ms);

#endif
