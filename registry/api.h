/* SPDX-License-Identifier: Apache-2.0 */
/* The registry API v2: access control, routing, then proxied repositories answered from the
 * cache (push and delete answer 405) and hosted ones handed to hosted/; _catalog lists both.
 * Answers go through registry/respond.h. */
#ifndef REGCACHE_REGISTRY_API_H
#define REGCACHE_REGISTRY_API_H

#include "http/http.h"

struct cache;
struct upstream_client;
struct registry;
struct auth;
struct hosted;

/* auth may be NULL (no authentication), hosted NULL (no hosted repositories). */
struct registry *registry_new(struct cache *cache, struct upstream_client *up,
                              struct auth *auth, struct hosted *hosted);
void registry_free(struct registry *r);
/* Serves the status page (ui/ui.h) at / and under /ui/, to whoever ui.access lets read it. */
struct ui;
void registry_set_ui(struct registry *r, struct ui *ui);
/* CORS for browser UIs (registry/cors.h); NULL: none. The registry does not own it. */
struct cors;
void registry_set_cors(struct registry *r, struct cors *cors);
/* Pull rules (rules/rules.h) for every pull, proxied and hosted; NULL: none. */
struct rules;
void registry_set_rules(struct registry *r, const struct rules *rules);
/* This mirror's instance id: a request whose Via names it (or that passed more than
 * VIA_MAX_HOPS proxies) is answered 508 Loop Detected. NULL or "": no check. */
void registry_set_instance(struct registry *r, const char *id);

/* The cluster (cluster/cluster.h) whose members' requests (X-Regcache-Peer) are verified and
 * answered here, never forwarded; NULL: none (such a request is refused, 403). */
struct cluster;
void registry_set_cluster(struct registry *r, struct cluster *cl);

/* http_handler and http_error_writer for the HTTP front; ud is the struct registry. */
void registry_handle(struct conn *c, struct http_request *req, void *ud);
void registry_write_error(struct conn *c, int status, void *ud);

/* Headers every response carries: no answer is ever taken for HTML or script by a browser
 * (nosniff), and every API answer is sandboxed should a browser render it anyway (a page that
 * sets a policy of its own, such as a status page, replaces REGISTRY_DEFAULT_HEADER). */
#define REGISTRY_COMMON_HEADERS                                                                \
    "Docker-Distribution-Api-Version: registry/2.0\r\n"                                       \
    "X-Content-Type-Options: nosniff\r\n"
#define REGISTRY_DEFAULT_HEADER "Content-Security-Policy: sandbox\r\n"

#endif
