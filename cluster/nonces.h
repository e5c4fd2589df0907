/* SPDX-License-Identifier: Apache-2.0 */
/* The relay nonces a member has taken within the time window, so that a relayed request seen
 * on the wire cannot be sent to it again (peer_auth.h). Each is kept until it could no longer
 * pass the time check (twice PEER_AUTH_SKEW_S); at most NONCES_MAX at once, about 120 bytes
 * each. Loop thread only. */
#ifndef REGCACHE_CLUSTER_NONCES_H
#define REGCACHE_CLUSTER_NONCES_H

#include <stdint.h>

#define NONCES_MAX 100000

struct nonces;

struct nonces *nonces_new(void);
void nonces_free(struct nonces *n);
/* Records sender's nonce at now_ms: 0 when it is new, -EALREADY when it was taken within the
 * window, -ENOSPC when NONCES_MAX are kept (refused: too many relays at once), -ENOMEM. */
int nonces_take(struct nonces *n, const char *sender, const char *nonce, uint64_t now_ms);
/* How many are kept (for tests). */
uint64_t nonces_count(const struct nonces *n);

#endif
