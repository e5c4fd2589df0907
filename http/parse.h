/* SPDX-License-Identifier: Apache-2.0 */
/* Requests parsed off a byte stream, without sockets: llhttp (strict: no lenient flag is ever
 * set) plus what the front adds on top: the headers it keeps, the 414 and 431 limits, refusals
 * of what smuggling relies on (bare LF line ends, obs-fold continuation lines, any
 * Transfer-Encoding but a single "chunked", upgrades and CONNECT) and the split of the target
 * into path and query. The connections (conn.c) drive one per socket; fuzz/fuzz_http.c drives
 * one over arbitrary bytes. */
#ifndef REGCACHE_HTTP_PARSE_H
#define REGCACHE_HTTP_PARSE_H

#include <llhttp.h>

#include "http/http.h"
#include "util/buf.h"

enum reqparse_event {
    REQPARSE_MORE,        /* every byte given was used; more are needed */
    REQPARSE_HEAD,        /* a request head is complete: req is set until the next one starts */
    REQPARSE_BODY_PAUSED, /* on_body returned 1 */
    REQPARSE_BODY_END,    /* the body being delivered is complete */
    REQPARSE_ERROR,       /* refused: error_status says how (400, 414, 431) */
};

enum reqparse_kept { KEPT_RANGE, KEPT_CONTENT_TYPE, KEPT_CONTENT_RANGE, KEPT_AUTHORIZATION,
                     KEPT_HOST, KEPT_USER_AGENT, KEPT_REFERER, KEPT_REQUEST_ID, KEPT_ORIGIN,
                     KEPT_CORS_METHOD, KEPT_PEER, KEPT_RELAY, KEPT_PATH, KEPT_N };

struct reqparse {
    llhttp_t llhttp;
    /* the head being collected; released (freed) between requests by reqparse_release */
    struct buf url, field, value, accept;
    struct buf xff;           /* every X-Forwarded-For joined with ", " */
    int xff_too_long;
    struct buf via;           /* every Via joined with ", " */
    int via_too_long;
    struct buf kept;          /* NUL-terminated copies of the kept values, then the path */
    size_t kept_at[KEPT_N];   /* offsets into kept; SIZE_MAX when absent */
    size_t header_bytes, n_headers;
    int value_pending;
    int forwarded_https;
    int te_seen;
    int started;              /* a byte of the current request head was seen */
    int in_body;              /* between the end of a head and the end of its message */
    char prev;                /* the last head byte, for bare LF and obs-fold */
    int error_status;
    enum reqparse_event pause;
    /* the body goes to on_body while deliver_body is set; otherwise it is skipped */
    int deliver_body;
    int (*on_body)(void *ud, const char *data, size_t len);
    void *ud;
    struct http_request req;
};

void reqparse_init(struct reqparse *p);
/* Parses from data; *used says how many bytes were taken (the rest must be given again). After
 * REQPARSE_ERROR nothing more may be parsed. */
enum reqparse_event reqparse_execute(struct reqparse *p, const char *data, size_t len,
                                     size_t *used);
/* Frees the buffers of the last request (its req pointers die): for idle connections. */
void reqparse_release(struct reqparse *p);
void reqparse_free(struct reqparse *p);

#endif
