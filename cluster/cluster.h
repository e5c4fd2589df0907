/* SPDX-License-Identifier: Apache-2.0 */
/* A replica's view of its cluster (the `cluster` section): who owns a key, which members are
 * up, and whether a request came from a member.
 *
 * A miss is asked of the key's owner (members.h: the first member in the key's rendezvous
 * order that is up) instead of the upstream, through the upstream's peer for that member
 * (upstream_peer); the owner answers it from its store, its fill in progress or its upstream,
 * so the cluster costs the upstream one GET per blob and manifest. A request a member sent
 * (X-Regcache-Peer, peer_auth.h) is answered by this replica itself, never asked of another
 * member, so nothing loops.
 *
 * Every member is asked GET /v2/ every cluster.probe_interval (signed, so an auth-requiring
 * member answers it): 200 is up; anything else, or no answer, is down. A request to a member
 * that gets no answer, or a transfer it cuts, marks it down at once; its keys go to their
 * successors until a probe finds it back. Loop thread only. */
#ifndef REGCACHE_CLUSTER_CLUSTER_H
#define REGCACHE_CLUSTER_CLUSTER_H

#include <stddef.h>
#include <uv.h>

#include "config/config.h"
#include "upstream/upstream.h"

struct cluster;

/* *out NULL without a cluster section. 0, -EINVAL (what the config check let through, with
 * the reason logged) or -ENOMEM. */
int cluster_new(uv_loop_t *loop, const struct config *cfg, struct upstream_client *up,
                struct cluster **out);
/* Stops the probes (before the upstream client shuts down). */
void cluster_stop(struct cluster *cl);
void cluster_free(struct cluster *cl);

/* Where to ask u's content named key (a digest, or tag_key of a tag): u itself when this
 * member owns it (or every member before it in key's order is down), else u's peer for the
 * owner. cl may be NULL (no cluster: u). */
struct upstream *cluster_via(struct cluster *cl, struct upstream *u, const char *key);
/* A request to peer got no answer, or its transfer was cut: its member is down until a probe
 * finds it back. */
void cluster_member_failed(struct cluster *cl, struct upstream *peer, const char *why);

/* The member that holds what key names among this replica's own (a hosted repository,
 * relay.h): the first member in key's order that is up; self when every member before it is
 * down. */
size_t cluster_owner(const struct cluster *cl, const char *key);
/* A request to member i got no answer, or its transfer was cut: as cluster_member_failed. */
void cluster_member_down(struct cluster *cl, size_t i, const char *why);

/* Checks an X-Regcache-Peer value for method and target (path and query as sent) and the
 * X-Regcache-Relay value sent with it (NULL: none): 0 with the sender's URL in sender, or
 * -EACCES with why. */
int cluster_verify(struct cluster *cl, const char *value, const char *method, const char *target,
                   const char *relay, char *sender, size_t senderlen, char *why, size_t whylen);
/* The X-Regcache-Peer value of a request this replica sends now (relay: as above). 0 or a
 * negative errno (peer_auth_sign_relay). */
int cluster_sign(const struct cluster *cl, const char *method, const char *target,
                 const char *relay, char *out, size_t len);

/* After cluster_verify of a relayed request from sender: 0 when it was meant for this member
 * (receiver) and its nonce is new, else -EACCES with why (sent to another member, sent again,
 * too many at once). */
int cluster_relay_admit(struct cluster *cl, const char *sender, const char *receiver,
                        const char *nonce, char *why, size_t whylen);

/* Members, and how many of them are up (this one included). */
size_t cluster_size(const struct cluster *cl);
size_t cluster_up(const struct cluster *cl);
const char *cluster_member_url(const struct cluster *cl, size_t i);
int cluster_member_is_up(const struct cluster *cl, size_t i);
size_t cluster_self(const struct cluster *cl);

#endif
