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
 * within PEER_AUTH_SKEW_S of now and the MAC matches (compared in constant time).
 *
 * A client's request relayed to the member that holds its hosted repository also carries who
 * the relaying member authenticated the client as:
 *
 *   X-Regcache-Relay: <nonce> <receiver URL> user <name>
 *   X-Regcache-Relay: <nonce> <receiver URL> anonymous
 *
 * (the nonce: 32 random hex digits; the receiver: the member the request is for), and the MAC
 * then covers that value too (after the sender: "relay" and the value, one per line), so a
 * claim can be neither added to a member's own request nor changed. The receiver checks that
 * the request was meant for it and that it has not taken that nonce from that sender within
 * the time window (cluster_relay_admit), so a relayed request seen on the wire can be sent
 * again neither to it nor to another member. Bodies are not covered: a blob pushed is checked
 * against its digest, but between members on a network that is not trusted only TLS keeps a
 * manifest's body from being changed in flight. Pure: any thread. */
#ifndef REGCACHE_CLUSTER_PEER_AUTH_H
#define REGCACHE_CLUSTER_PEER_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/members.h"

#define PEER_AUTH_HEADER "X-Regcache-Peer"
#define PEER_AUTH_SKEW_S 60
#define PEER_AUTH_MIN_SECRET 16
#define PEER_AUTH_VALUE_MAX (MEMBERS_URL_MAX + 96)
#define PEER_AUTH_RELAY_HEADER "X-Regcache-Relay"
#define PEER_AUTH_USER_MAX 63 /* a claimed user name: printable ASCII, 1..63 bytes */
#define PEER_AUTH_NONCE_HEX 32
#define PEER_AUTH_RELAY_MAX (PEER_AUTH_NONCE_HEX + MEMBERS_URL_MAX + PEER_AUTH_USER_MAX + 10)

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

/* As peer_auth_sign and peer_auth_verify for a relayed request: relay is the
 * X-Regcache-Relay value sent with it (NULL: none, the same as the functions above). */
int peer_auth_sign_relay(const char *secret, size_t secret_len, const char *sender,
                         const char *method, const char *target, const char *relay,
                         int64_t now_s, char *out, size_t len);
int peer_auth_verify_relay(const char *secret, size_t secret_len, const struct members *m,
                           const char *value, const char *method, const char *target,
                           const char *relay, int64_t now_s, size_t *sender, char *why,
                           size_t whylen);

/* The X-Regcache-Relay value for a client authenticated as user (NULL or "": anonymous),
 * sent to receiver (a normalised member URL) with nonce (PEER_AUTH_NONCE_HEX lowercase hex
 * digits). 0, or -EINVAL for a name that cannot be claimed (too long, control characters), a
 * bad nonce or receiver. */
int peer_auth_relay_claim(const char *nonce, const char *receiver, const char *user, char *out,
                          size_t len);
/* What a relay value says: 1 with the user's name in user, 0 for anonymous, -EINVAL for a
 * value that is not of that form; the nonce (PEER_AUTH_NONCE_HEX + 1 bytes) and the receiver
 * (receiver_len) are filled on success. */
int peer_auth_relay_user(const char *value, char *nonce, char *receiver, size_t receiver_len,
                         char *user, size_t len);

#endif
