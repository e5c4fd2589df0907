/* SPDX-License-Identifier: Apache-2.0 */
/* What a worker loop answers itself: hits it has been taught.
 *
 * Everything that needs the cache's state (the index, fills, revalidation, the database, the
 * upstreams) stays on the first loop. A worker loop hands every request it cannot answer to
 * it (http_hand_over), and when the first loop answers a visiting connection's request from
 * the store it teaches the connection's home loop what it needs to answer the same request
 * alone next time: for a blob its descriptor and size, for a manifest its bytes, media type
 * and digest, and for a tag how long it stays fresh (cache.revalidate_after from its last
 * validation). A lesson is used only while the content epoch (util/epoch.h) has not moved
 * since it was given, only for the caller it was taught for (the rules and auth.anonymous were
 * judged for that caller: anonymous, or the user an Authorization header was found to be,
 * which the first loop teaches too as a pass; see auth_pass_until_ms), and a tag only while
 * fresh: past that the first loop revalidates it, as before.
 *
 * What a worker serves is reported back in batches (at most VISITS_BATCH or every
 * VISITS_FLUSH_MS), and the first loop records it as for its own hits: access times for the GC,
 * references, the hit count and the S3 tier's access markers. */
#ifndef REGCACHE_REGISTRY_WORKER_H
#define REGCACHE_REGISTRY_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http/http.h"
#include "util/held_fd.h"

struct registry;
struct upstream;

#define WORKER_LESSONS_MAX 4096 /* answers a worker keeps, least recently used out, */
#define WORKER_BYTES_MAX (16u << 20) /* with at most this many manifest bytes */
#define WORKER_FDS_MAX 512           /* and this many blob descriptors */
#define WORKER_FD_TTL_MS 10000  /* a kept descriptor is used this long, then asked for again */
#define VISITS_BATCH 256
#define VISITS_FLUSH_MS 100

/* Starts n - 1 worker loops on http's listener (nothing when n <= 1). 0 or -errno. */
int registry_start_workers(struct registry *r, struct http_server *http, unsigned n,
                           uint64_t revalidate_after_ms, uv_loop_t *loop);
/* At the stop, on the first loop: what workers report from now on is dropped. */
void registry_stop_workers(struct registry *r);
/* After the workers' threads have ended. */
void registry_free_workers(struct registry *r);

/* On the first loop, after answering a visiting connection's request from the store. */
void registry__teach_blob(struct registry *r, struct conn *c, const struct http_request *req,
                          struct upstream *u, const char *repo, const char *digest,
                          struct held_fd *file, uint64_t size);
void registry__teach_manifest(struct registry *r, struct conn *c, const struct http_request *req,
                              struct upstream *u, const char *repo, const char *reference,
                              const char *digest, const char *media_type, const char *body,
                              size_t len);

#endif
