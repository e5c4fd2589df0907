/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: bytes from a client socket, as one or more pipelined requests, through the request
 * parser of the HTTP front (llhttp and the header collection, limits and target split). The
 * first input byte picks how the stream is cut into reads and whether bodies are read. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#include "http/parse.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static size_t body_bytes;

static int on_body(void *ud, const char *data, size_t len)
{
    (void)ud;
    CHECK(data && len);
    body_bytes += len;
    return len & 1; /* sometimes pause, as a handler with a full buffer does */
}

static void check_opt(const char *s, size_t max)
{
    CHECK(!s || strlen(s) <= max);
}

static void check_head(const struct reqparse *p)
{
    const struct http_request *r = &p->req;
    CHECK(r->path && r->path[0] == '/');
    CHECK(r->target && strlen(r->target) <= HTTP_MAX_URL);
    CHECK(strlen(r->path) <= strlen(r->target));
    CHECK(!strchr(r->path, '?'));
    CHECK(!r->query || (r->query > r->target && r->query <= r->target + strlen(r->target) &&
                        r->query[-1] == '?'));
    CHECK(r->method_name);
    check_opt(r->accept, HTTP_MAX_ACCEPT);
    check_opt(r->range, 255);
    check_opt(r->content_type, 255);
    check_opt(r->content_range, 127);
    check_opt(r->authorization, 8191);
    check_opt(r->host, 255);
    CHECK(r->has_body == (r->content_length != 0));
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    size_t step = (mode & 0x3f) ? (mode & 0x3f) : len; /* bytes per read */
    int deliver = mode & 0x40, release = mode & 0x80;
    struct reqparse p;
    reqparse_init(&p);
    p.on_body = on_body;
    body_bytes = 0;
    int errored = 0;
    size_t pos = 0, heads = 0;
    while (pos < len && !errored) {
        size_t n = len - pos < step ? len - pos : step;
        size_t off = 0;
        while (off < n) {
            size_t used = 0;
            enum reqparse_event ev = reqparse_execute(&p, in + pos + off, n - off, &used);
            CHECK(used <= n - off);
            off += used;
            if (ev == REQPARSE_MORE) {
                CHECK(off == n); /* MORE means everything was taken */
            } else if (ev == REQPARSE_HEAD) {
                check_head(&p);
                heads++;
                p.deliver_body = deliver && p.req.has_body;
            } else if (ev == REQPARSE_BODY_END) {
                if (release)
                    reqparse_release(&p); /* as a connection going idle after the answer */
            } else if (ev == REQPARSE_ERROR) {
                CHECK(p.error_status == 400 || p.error_status == 414 || p.error_status == 431);
                errored = 1;
                break;
            }
            /* BODY_PAUSED: go on at once, as a resumed handler does */
        }
        pos += n;
    }
    CHECK(heads <= len / 8 + 1); /* a head takes more than a few bytes */
    CHECK(body_bytes <= len);
    reqparse_free(&p);
    return 0;
}
