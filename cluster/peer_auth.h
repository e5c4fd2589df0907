/* SPDX-License-Identifier: Apache-2.0 */
/* Requests between members are authenticated with the cluster secret, so that the peer
 * endpoint is not an open proxy. The same header marks a request as forwarded: one that carries
 * a valid value is answered by this member (from its store or its upstream), never forwarded
 * again, so nothing loops.
 *
 *   X-Regcache-Peer: v1 <sender URL> <unix seconds> <hex HMAC-SHA256>
 *
 * The MAC covers "v1", the method, the request target (path and query as sent), the time and
 * the sender, one per line. A value is accepted when the sender is a member, the time is
 * within PEER_AUTH_SKEW_S of now and the MAC matches (compared in constant time). Pure: any
 * thread. */
#ifndef REGCACHE_CLUSTER_PEER_AUTH_H
#define REGCACHE_CLUSTER_PEER_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/members.h"

#define PEER_AUTH_HEADER "X-Regcache-Peer"
#define PEER_AUTH_SKEW_S 60
#define PEER_AUTH_MIN_SECRET 16
#define PEER_AUTH_VALUE_MAX (MEMBERS_URL_MAX + 96)

/* A secret good enough to authenticate members: at least PEER_AUTH_MIN_SECRET bytes. */
int peer_auth_secret_ok(const char *secret, size_t len);

/* The header's value for a request from sender (a normalised member URL) at now_s. 0, or
 * -EINVAL (secret too short, bad sender) or -ENAMETOOLONG. */
int peer_auth_sign(const char *secret, size_t secret_len, const char *sender,
                   const char *method, const char *target, int64_t now_s, char *out,
                   size_t len);

/* Checks a received value: 0 with the sender's index in *sender, or -EACCES with why (for
 * the log: malformed, unknown member, too old or in the future, wrong MAC). */
int peer_auth_verify(const char *secret, size_t secret_len, const struct members *m,
                     const char *value, const char *method, const char *target, int64_t now_s,
                     size_t *sender, char *why, size_t whylen);

#endif
