/* SPDX-License-Identifier: Apache-2.0 */
/* The answers of the registry API, one path per kind, used by proxied and hosted repositories
 * alike so that both send the same status codes and headers: errors (the spec's JSON body),
 * manifests, blobs (HEAD, 200, Range 206, 416 with Content-Range) and referrers indexes.
 *
 * extra: more header lines ("Name: value\r\n", e.g. OCI-Namespace) or NULL. Each function
 * answers the request exactly once. */
#ifndef REGCACHE_REGISTRY_RESPOND_H
#define REGCACHE_REGISTRY_RESPOND_H

#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

/* extra header lines longer than this in all are left out (and logged): never cut mid-line */
#define RESPOND_EXTRA_MAX 4096

/* {"errors":[{"code":code,"message":message,"detail":null}]}, Content-Type: application/json. */
void respond_error(struct conn *c, int head, int status, const char *code, const char *message,
                   const char *extra);

/* 200 with a manifest's bytes as stored: Content-Type (the stored media type),
 * Docker-Content-Digest and ETag. The bytes are copied once per digest however many clients
 * are sent them at a time (they share one refcounted body). */
void respond_manifest(struct conn *c, int head, const char *media_type, const char *digest,
                      const void *body, size_t len, const char *extra);

/* As respond_manifest, from a body the caller holds (a worker loop's own copy). */
struct shared_body;
void respond_manifest_shared(struct conn *c, int head, const char *media_type, const char *digest,
                             struct shared_body *b, const char *extra);

/* Makes the body for bytes [first, end) of the blob; src is zeroed before the call. */
typedef void (*respond_source_fn)(void *ud, uint64_t first, uint64_t end, struct body_source *src);

/* Answers a blob GET or HEAD (req's method and Range) of size bytes: HEAD 200 without a body;
 * 206 with Content-Range for a satisfiable range; 416 BLOB_UNKNOWN whose Content-Range gives
 * the size (RFC 9110's unsatisfied-range form) for an unsatisfiable one; else 200. Calls source
 * exactly when a body is sent and returns 1 then (the response owns the source); returns 0 when
 * no body was sent, and the caller releases what it holds (descriptor, fill). */
int respond_blob(struct conn *c, const struct http_request *req, const char *digest, uint64_t size,
                 const char *extra, respond_source_fn source, void *ud);

/* 200 with an OCI image index of referrers (body: the whole document);
 * `OCI-Filters-Applied: artifactType` when filtered. */
void respond_referrers(struct conn *c, int head, const void *body, size_t len, int filtered,
                       const char *extra);

#endif
