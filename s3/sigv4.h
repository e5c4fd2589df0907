/* SPDX-License-Identifier: Apache-2.0 */
/* AWS Signature Version 4, for the S3 store tier: the Authorization header of a request and
 * presigned URLs (query-string authentication).
 *
 * The signer builds the canonical request itself: the path is percent-encoded once per
 * segment (RFC 3986 unreserved characters and '/' kept; S3 does not encode twice), query
 * parameters are encoded and sorted by name then value (an empty value gives "name="), header
 * names are lower-cased, values trimmed with inner runs of spaces collapsed, and sorted. The
 * signed headers are host, the caller's headers and x-amz-date; a caller talking to S3 passes
 * x-amz-content-sha256 among its headers (radosgw refuses a signature without it), with the
 * same hash as payload_sha256. Pure functions on the caller's buffers: any thread. */
#ifndef REGCACHE_S3_SIGV4_H
#define REGCACHE_S3_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define SIGV4_MAX_PAIRS 32
#define SIGV4_AMZ_DATE_LEN 16 /* 20150830T123600Z */

struct sigv4_pair {
    const char *name, *value;
};

struct sigv4_request {
    const char *method;         /* "GET", "PUT", ... */
    const char *host;           /* the Host header's value: host[:port] */
    const char *path;           /* not encoded, starts with '/' */
    const struct sigv4_pair *query; /* not encoded; value NULL or "" for "name=" */
    size_t n_query;
    const struct sigv4_pair *headers; /* besides host and x-amz-date; names unique */
    size_t n_headers;
    const char *payload_sha256; /* lower-case hex, or SIGV4_UNSIGNED_PAYLOAD */
    int64_t time;               /* seconds since the epoch */
    const char *region, *service, *access_key, *secret_key;
};

struct sigv4_signed {
    char amz_date[SIGV4_AMZ_DATE_LEN + 1]; /* the x-amz-date header to send */
    char signature[65];
    char authorization[1024]; /* the Authorization header's value */
};

/* Signs r: what to send as x-amz-date and Authorization. 0, or -EINVAL (a missing field, a
 * duplicate or empty header name, more than SIGV4_MAX_PAIRS pairs) or -ENAMETOOLONG. */
int sigv4_sign(const struct sigv4_request *r, struct sigv4_signed *out);

/* A presigned URL's path and query for r (r->payload_sha256 is ignored: UNSIGNED-PAYLOAD):
 * out gets "<encoded path>?<query with X-Amz-*, X-Amz-Signature last>", valid for expires_s
 * seconds (1..604800). 0, -EINVAL or -ENAMETOOLONG. */
int sigv4_presign(const struct sigv4_request *r, unsigned expires_s, char *out, size_t len);

/* RFC 3986 encoding as SigV4 wants it: unreserved characters kept, '/' kept when keep_slash,
 * everything else %XX (upper case). 0, or -ENAMETOOLONG when out is too small. */
int sigv4_uri_encode(const char *in, int keep_slash, char *out, size_t len);

#endif
