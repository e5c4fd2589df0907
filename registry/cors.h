/* SPDX-License-Identifier: Apache-2.0 */
/* CORS for browser UIs (cors.* in the config): which other origins' pages may read the
 * registry's answers. A preflight (OPTIONS with Origin and Access-Control-Request-Method) from
 * an allowed origin is answered 204 before any authentication, as browsers send it without
 * credentials; other requests from an allowed origin get Access-Control-Allow-Origin and the
 * exposed headers (Docker-Content-Digest, WWW-Authenticate, Link, ...) added to whatever the
 * registry answers. Requests from any other origin, or without one, get no CORS header. Loop
 * thread only. */
#ifndef REGCACHE_REGISTRY_CORS_H
#define REGCACHE_REGISTRY_CORS_H

#include "http/http.h"

struct config;
struct cors;

/* NULL when CORS is off (cors.allow_origins empty) or out of memory (*failed set). */
struct cors *cors_new(const struct config *cfg, int *failed);
void cors_free(struct cors *cors);

/* Adds the CORS headers req's answer needs to req->response_headers. Returns 1 when req was a
 * preflight and has been answered (204 for an allowed origin, 403 otherwise), else 0: the
 * caller answers as usual. cors may be NULL (off). */
int cors_handle(const struct cors *cors, struct conn *c, struct http_request *req);

#endif
