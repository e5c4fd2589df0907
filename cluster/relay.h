/* SPDX-License-Identifier: Apache-2.0 */
/* Hosted repositories in a cluster: every request for one is answered by the member that holds
 * it, so that its upload sessions, manifests and tags live on one replica whichever replica a
 * load balancer hands each request to.
 *
 * The holder of repository NAME is the owner of the key "hosted/NAME" (members.h: the first
 * member in the key's rendezvous order that is up). Any other member relays the request there
 * once it has authenticated the client: the request goes out signed (X-Regcache-Peer) with
 * whom it is for (X-Regcache-Relay, covered by the signature, peer_auth.h), and the holder
 * answers it itself as that user, never relaying it again. Request bodies are passed on as
 * they arrive and answers streamed back as they come (at most HTTP_FEED_WINDOW and
 * RELAY_BODY_WINDOW held in memory each way), status and the registry's headers (Location,
 * Docker-Upload-UUID, Range, Docker-Content-Digest, Content-Type, WWW-Authenticate ...)
 * unchanged; hosted answers name relative locations (/v2/...), good on any replica.
 *
 * A holder that does not answer, or cuts the transfer, is marked down (its repositories go to
 * their successors until a probe finds it back) and the client gets 503 UNAVAILABLE, or the
 * answer cut short when it had begun: a failed request, never a shorter success. Loop thread
 * only. */
#ifndef REGCACHE_CLUSTER_RELAY_H
#define REGCACHE_CLUSTER_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "http/http.h"
#include "upstream/upstream.h"

#define RELAY_BODY_WINDOW (1u << 20) /* request body bytes held before the client is paused */
#define RELAY_HEADERS_MAX 8192       /* the answer's header lines passed on, in all */

/* The member that holds hosted repository name: its index, or -1 when this replica does (or
 * there is no cluster). */
int relay_holder(const struct cluster *cl, const char *name);

/* Relays req, for user (NULL: anonymous), to member holder and answers it exactly once with
 * what the holder answers (or 503). */
void relay_request(struct cluster *cl, struct upstream_client *up, struct conn *c,
                   struct http_request *req, size_t holder, const char *user);

/* ---- pure helpers (relay_headers.c) ---- */

/* The ownership key of hosted repository name into out: 0, or -ENAMETOOLONG. */
int relay_key(const char *name, char *out, size_t len);
/* Is a header line of the holder's answer (without its CRLF) passed on to the client? Only
 * the registry's own headers are, with printable values; hop-by-hop and framing headers, and
 * those this replica adds itself, never are. */
int relay_header_passes(const char *line, size_t len);
/* The value of a Content-Length line (without its CRLF): >= 0, -1 when the line is another
 * header, -2 when it is a Content-Length that is not a number. */
int64_t relay_content_length(const char *line, size_t len);

#endif
