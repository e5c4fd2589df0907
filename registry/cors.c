/* SPDX-License-Identifier: Apache-2.0 */
#include "registry/cors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "registry/respond.h"

/* What a UI needs to send: credentials, content negotiation, ranges of blobs. */
#define DEFAULT_HEADERS "Authorization, Accept, Content-Type, Range, Content-Range, X-Request-Id"
#define DEFAULT_METHODS "GET, HEAD, OPTIONS"
/* What a UI needs to read, beyond the CORS-safelisted response headers. */
#define EXPOSE_HEADERS                                                                             \
    "Docker-Content-Digest, WWW-Authenticate, Link, Content-Range, Content-Length, "               \
    "Docker-Distribution-API-Version, X-Request-Id, X-Cache, OCI-Namespace, Location, "            \
    "Docker-Upload-UUID, Range"

struct cors {
    char **origins;
    size_t n_origins;
    int any; /* "*" listed */
    int credentials;
    char methods[512], headers[1024];
    unsigned long max_age_s;
};

static int join(char *out, size_t len, char *const *list, size_t n, const char *dflt)
{
    if (!list)
        return snprintf(out, len, "%s", dflt) >= (int)len ? -1 : 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(out);
        if ((size_t)snprintf(out + used, len - used, "%s%s", i ? ", " : "", list[i]) >= len - used)
            return -1;
    }
    return 0;
}

struct cors *cors_new(const struct config *cfg, int *failed)
{
    *failed = 0;
    if (!cfg->n_cors_origins)
        return NULL;
    struct cors *c = calloc(1, sizeof(*c));
    if (!c)
        goto fail;
    c->origins = calloc(cfg->n_cors_origins, sizeof(char *));
    if (!c->origins)
        goto fail;
    for (size_t i = 0; i < cfg->n_cors_origins; i++) {
        if (!strcmp(cfg->cors_origins[i], "*"))
            c->any = 1;
        if (!(c->origins[i] = strdup(cfg->cors_origins[i])))
            goto fail;
        c->n_origins = i + 1;
    }
    c->credentials = cfg->cors_credentials;
    c->max_age_s = (unsigned long)(cfg->cors_max_age_ms / 1000);
    /* too long lists are cut by the config's limits long before these sizes */
    if (join(c->methods, sizeof(c->methods), cfg->cors_methods, cfg->n_cors_methods,
             DEFAULT_METHODS) ||
        join(c->headers, sizeof(c->headers), cfg->cors_headers, cfg->n_cors_headers,
             DEFAULT_HEADERS))
        goto fail;
    return c;
fail:
    cors_free(c);
    *failed = 1;
    return NULL;
}

void cors_free(struct cors *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_origins; i++)
        free(c->origins[i]);
    free(c->origins);
    free(c);
}

static int allowed(const struct cors *c, const char *origin)
{
    if (c->any)
        return 1;
    for (size_t i = 0; i < c->n_origins; i++)
        if (strcasecmp(c->origins[i], origin) == 0)
            return 1;
    return 0;
}

/* Access-Control-Allow-Origin for an allowed origin: "*" when any origin may read without
 * credentials; else the origin itself, and Vary: Origin, as the answer differs by origin. */
static void allow_origin(const struct cors *c, const char *origin, char *out, size_t len)
{
    if (c->any && !c->credentials)
        snprintf(out, len, "Access-Control-Allow-Origin: *\r\n");
    else
        snprintf(out, len, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n%s", origin,
                 c->credentials ? "Access-Control-Allow-Credentials: true\r\n" : "");
}

int cors_handle(const struct cors *c, struct conn *conn, struct http_request *req)
{
    /* the Origin header is at most HTTP_MAX_ORIGIN bytes without CR or LF (the parser's
     * limits), and only an allowed one is echoed */
    if (!c || !req->origin)
        return 0;
    int ok = allowed(c, req->origin);
    int preflight = strcmp(req->method_name, "OPTIONS") == 0 && req->cors_method;
    if (preflight && !ok) {
        respond_error(conn, 0, 403, "DENIED", "this origin may not use the registry", NULL);
        return 1;
    }
    if (!ok)
        return 0;
    allow_origin(c, req->origin, req->response_headers, sizeof(req->response_headers));
    size_t used = strlen(req->response_headers);
    if (preflight) {
        char headers[2048];
        snprintf(headers, sizeof(headers),
                 "Access-Control-Allow-Methods: %s\r\nAccess-Control-Allow-Headers: %s\r\n"
                 "Access-Control-Max-Age: %lu\r\n",
                 c->methods, c->headers, c->max_age_s);
        conn_respond(conn, 204, headers, NULL, 0, 0);
        return 1;
    }
    snprintf(req->response_headers + used, sizeof(req->response_headers) - used,
             "Access-Control-Expose-Headers: %s\r\n", EXPOSE_HEADERS);
    return 0;
}
