/* Hosted repositories: the LAN's own images, pushed per the OCI distribution spec (blob uploads:
 * monolithic, chunked and resumable; cross-repository mounts; manifest PUT with digest and
 * reference checks; DELETE; tags/list) and served from the store, never from an upstream.
 * Their content is never a GC candidate. */
#ifndef REGCACHE_REGISTRY_HOSTED_H
#define REGCACHE_REGISTRY_HOSTED_H

#include <uv.h>

#include "config/config.h"
#include "http/http.h"
#include "registry/route.h"

struct hosted;
struct store;
struct db;

int hosted_new(uv_loop_t *loop, const struct config *cfg, struct store *store, struct db *db,
               struct hosted **out);
void hosted_free(struct hosted *h);

/* Does repository name (as in the request path) fall under a hosted pattern? */
int hosted_match(const struct hosted *h, const char *name);

/* Answers any request for a hosted repository; the caller has applied the access policy. */
void hosted_handle(struct hosted *h, struct conn *c, struct http_request *req,
                   const struct route *rt);

#endif
