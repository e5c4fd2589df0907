/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing a request target into a registry API route, with every name, tag and digest checked
 * against the spec's grammar before anything else sees it. Pure: no I/O. */
#ifndef REGCACHE_REGISTRY_ROUTE_H
#define REGCACHE_REGISTRY_ROUTE_H

#include <stddef.h>

#include "util/reference.h"

enum route_kind {
    ROUTE_BASE,      /* /v2/ */
    ROUTE_CATALOG,   /* /v2/_catalog */
    ROUTE_MANIFEST,  /* /v2/<name>/manifests/<reference> */
    ROUTE_BLOB,      /* /v2/<name>/blobs/<digest> */
    ROUTE_TAGS,      /* /v2/<name>/tags/list */
    ROUTE_UPLOAD,    /* /v2/<name>/blobs/uploads/... */
    ROUTE_REFERRERS, /* /v2/<name>/referrers/<digest> */
};

struct route {
    enum route_kind kind;
    char name[REF_NAME_MAX + 1];
    char reference[REF_DIGEST_MAX + 1]; /* tag or digest */
    int by_digest;
    char ns[256]; /* the ns query parameter, empty when absent */
    int upload_id;     /* uploads: the path names an upload session */
    int bad_reference; /* manifests: a reference that is neither a tag nor a digest */
    /* when parsing fails: what to answer */
    int err_status;
    const char *err_code;
    const char *err_message;
};

/* Returns 0, or -1 with err_* set: 400 NAME_INVALID or DIGEST_INVALID; 404 MANIFEST_UNKNOWN
 * (and bad_reference) for a manifest reference that is neither a valid tag nor a digest; 404
 * NAME_UNKNOWN for an unknown endpoint. name is set whenever it was valid. */
int route_parse(const char *path, const char *query, struct route *out);

/* The name the distribution registry gives the handler of a route (its metrics' "handler"
 * label): base, catalog, manifest, blob, tags, blob_upload (POST .../blobs/uploads/),
 * blob_upload_chunk (.../blobs/uploads/<id>), referrers; NULL for rt NULL (no route). */
const char *route_handler_name(const struct route *rt);

/* Does the request name its upstream itself: an ns parameter (whatever its value), or a first
 * name component for which is_upstream returns non-zero (/v2/quay.io/org/app/...)? Such a
 * request is for that upstream and never reaches a hosted repository, whatever the hosted
 * patterns match. */
int route_names_upstream(const struct route *rt, int (*is_upstream)(void *ud, const char *name),
                         void *ud);

/* Finds query parameter key (percent-decoded) in query (may be NULL). Returns its length, or -1
 * when absent or not fitting in outlen. */
int route_query_param(const char *query, const char *key, char *out, size_t outlen);

/* The artifactType query parameter of a referrers request, as route_query_param gives it, with
 * any space turned back into '+' (a media type has no spaces: an unescaped '+' was decoded as
 * one). */
int route_artifact_type(const char *query, char *out, size_t outlen);

/* s percent-encoded for a query value (all but A-Z a-z 0-9 - . _ ~ and /), cut to fit outlen. */
void route_query_escape(char *out, size_t outlen, const char *s);

#endif
