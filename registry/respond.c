/* SPDX-License-Identifier: Apache-2.0 */
#include "registry/respond.h"

#include <stdio.h>
#include <string.h>

#include "util/buf.h"
#include "util/json.h"
#include "util/log.h"
#include "util/range.h"
#include "util/shared.h"

#define ERROR_BODY_MAX 4096

static const char *checked(const char *extra)
{
    if (!extra)
        return "";
    if (strlen(extra) > RESPOND_EXTRA_MAX) {
        log_warn("response header lines of %zu bytes left out", strlen(extra));
        return "";
    }
    return extra;
}

/* {"errors":[{"code":code,"message":message,"detail":null}]} and a newline. */
static int error_body(struct buf *out, const char *code, const char *message)
{
    int r = buf_append(out, "{\"errors\":[{\"code\":", 19);
    if (!r)
        r = json_put_string(out, code);
    if (!r)
        r = buf_append(out, ",\"message\":", 11);
    if (!r)
        r = json_put_string(out, message);
    if (!r)
        r = buf_append(out, ",\"detail\":null}]}\n", 18);
    return r;
}

/* An error with own header lines (short) and the caller's extra (checked). */
static void send_error(struct conn *c, int head, int status, const char *code, const char *message,
                       const char *own, const char *extra)
{
    struct buf body;
    char headers[RESPOND_EXTRA_MAX + 128];
    buf_init(&body, ERROR_BODY_MAX);
    if (error_body(&body, code, message)) { /* a message past the bound: the code alone */
        buf_reset(&body);
        error_body(&body, code, "");
    }
    snprintf(headers, sizeof(headers), "Content-Type: application/json\r\n%s%s", own, extra);
    conn_respond(c, status, headers, body.data, body.len, head);
    buf_free(&body);
}

void respond_error(struct conn *c, int head, int status, const char *code, const char *message,
                   const char *extra)
{
    send_error(c, head, status, code, message, "", checked(extra));
}

/* Manifests being sent now, by digest: however many clients read one slowly, its bytes are in
 * memory once (a digest names its bytes: the cache and the hosted store both hash them). */
static __thread struct shared_index *live_manifests; /* each loop thread its own */

void respond_manifest(struct conn *c, int head, const char *media_type, const char *digest,
                      const void *body, size_t len, const char *extra)
{
    char headers[RESPOND_EXTRA_MAX + 640];
    snprintf(headers, sizeof(headers),
             "Content-Type: %s\r\nDocker-Content-Digest: %s\r\nETag: \"%s\"\r\n%s", media_type,
             digest, digest, checked(extra));
    if (head || !len) {
        conn_respond(c, 200, headers, body, len, head);
        return;
    }
    struct shared_body *b = shared_index_get(&live_manifests, digest);
    if (b && b->len != len) {
        shared_body_unref(b);
        b = NULL;
    }
    if (!b) {
        b = shared_body_copy(body, len);
        if (!b) {
            respond_error(c, 0, 503, "UNAVAILABLE", "out of memory", extra);
            return;
        }
        shared_index_put(&live_manifests, digest, b);
    }
    conn_respond_shared(c, 200, headers, b, 0);
    shared_body_unref(b);
}

void respond_manifest_shared(struct conn *c, int head, const char *media_type, const char *digest,
                             struct shared_body *b, const char *extra)
{
    char headers[RESPOND_EXTRA_MAX + 640];
    snprintf(headers, sizeof(headers),
             "Content-Type: %s\r\nDocker-Content-Digest: %s\r\nETag: \"%s\"\r\n%s", media_type,
             digest, digest, checked(extra));
    conn_respond_shared(c, 200, headers, b, head);
}

int respond_blob(struct conn *c, const struct http_request *req, const char *digest, uint64_t size,
                 const char *extra, respond_source_fn source, void *ud)
{
    char headers[RESPOND_EXTRA_MAX + 512];
    int n = snprintf(headers, sizeof(headers),
                     "Content-Type: application/octet-stream\r\nDocker-Content-Digest: %s\r\n"
                     "ETag: \"%s\"\r\nAccept-Ranges: bytes\r\n%s",
                     digest, digest, checked(extra));
    if (n < 0 || (size_t)n >= sizeof(headers))
        n = (int)sizeof(headers) - 1;
    if (req->method == HTTP_METHOD_HEAD) {
        conn_respond(c, 200, headers, NULL, size, 1);
        return 0;
    }
    uint64_t first = 0, last = 0;
    enum range_result rr = range_parse(req->range, size, &first, &last);
    if (rr == RANGE_UNSATISFIABLE) {
        char range[64];
        snprintf(range, sizeof(range), "Content-Range: bytes */%llu\r\n", (unsigned long long)size);
        send_error(c, 0, 416, "BLOB_UNKNOWN", "requested range not satisfiable", range,
                   checked(extra));
        return 0;
    }
    int status = 200;
    if (rr == RANGE_PARTIAL) {
        status = 206;
        snprintf(headers + n, sizeof(headers) - (size_t)n,
                 "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)first,
                 (unsigned long long)last, (unsigned long long)size);
    } else {
        first = 0;
        last = size ? size - 1 : 0;
    }
    struct body_source src = {0};
    source(ud, first, size ? last + 1 : 0, &src);
    conn_respond_stream(c, status, headers, &src);
    return 1;
}

void respond_referrers(struct conn *c, int head, const void *body, size_t len, int filtered,
                       const char *extra)
{
    char headers[RESPOND_EXTRA_MAX + 160];
    snprintf(headers, sizeof(headers),
             "Content-Type: application/vnd.oci.image.index.v1+json\r\n%s%s",
             filtered ? "OCI-Filters-Applied: artifactType\r\n" : "", checked(extra));
    conn_respond(c, 200, headers, body, len, head);
}
