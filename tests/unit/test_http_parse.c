/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for http/parse.c: request heads, limits and the refusals that stop smuggling. */
#include <stdlib.h>

#include "check.h"
#include "http/parse.h"

struct seen {
    int heads;
    char paths[4][256];
    char queries[4][256];
    char accept[256];
    char host[64];
    char ua[600], xff[1100], rid[140], origin[300], cors_method[40];
    int secure;
    int error;
    char body[256];
    size_t body_len;
    int body_ends;
};

static int on_body(void *ud, const char *data, size_t len)
{
    struct seen *s = ud;
    if (s->body_len + len < sizeof(s->body)) {
        memcpy(s->body + s->body_len, data, len);
        s->body_len += len;
    }
    return 0;
}

/* Feeds in pieces of step bytes (0: all at once); bodies are read when deliver is set. */
static struct seen run_step(const char *in, size_t step, int deliver)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    struct reqparse p;
    reqparse_init(&p);
    p.on_body = on_body;
    p.ud = &s;
    size_t len = strlen(in), pos = 0;
    while (pos < len && !s.error) {
        size_t n = step && len - pos > step ? step : len - pos;
        size_t off = 0;
        while (off < n && !s.error) {
            size_t used = 0;
            enum reqparse_event ev = reqparse_execute(&p, in + pos + off, n - off, &used);
            off += used;
            if (ev == REQPARSE_HEAD && s.heads < 4) {
                snprintf(s.paths[s.heads], sizeof(s.paths[0]), "%s", p.req.path);
                snprintf(s.queries[s.heads], sizeof(s.queries[0]), "%s",
                         p.req.query ? p.req.query : "(none)");
                if (p.req.accept)
                    snprintf(s.accept, sizeof(s.accept), "%s", p.req.accept);
                if (p.req.host)
                    snprintf(s.host, sizeof(s.host), "%s", p.req.host);
                snprintf(s.ua, sizeof(s.ua), "%s", p.req.user_agent ? p.req.user_agent : "(none)");
                snprintf(s.xff, sizeof(s.xff), "%s",
                         p.req.forwarded_for ? p.req.forwarded_for : "(none)");
                snprintf(s.rid, sizeof(s.rid), "%s", p.req.forwarded_id ? p.req.forwarded_id : "(none)");
                snprintf(s.origin, sizeof(s.origin), "%s", p.req.origin ? p.req.origin : "(none)");
                snprintf(s.cors_method, sizeof(s.cors_method), "%s",
                         p.req.cors_method ? p.req.cors_method : "(none)");
                s.secure = p.req.secure * 10 + p.req.forwarded_https;
                s.heads++;
                p.deliver_body = deliver && p.req.has_body;
            } else if (ev == REQPARSE_BODY_END) {
                s.body_ends++;
            } else if (ev == REQPARSE_ERROR) {
                s.error = p.error_status;
            }
        }
        pos += n;
    }
    reqparse_free(&p);
    return s;
}

static struct seen run(const char *in)
{
    struct seen a = run_step(in, 0, 1), b = run_step(in, 1, 1);
    /* byte by byte gives the same result as all at once */
    CHECK_EQ_INT(a.heads, b.heads);
    CHECK_EQ_INT(a.error, b.error);
    CHECK_EQ_INT(a.body_len, b.body_len);
    return a;
}

#define REFUSED(in, status)                                                                        \
    do {                                                                                           \
        struct seen s_ = run(in);                                                                  \
        CHECK_EQ_INT(s_.error, (status));                                                          \
        CHECK_EQ_INT(s_.heads, 0);                                                                 \
    } while (0)

static void test_heads(void)
{
    struct seen s = run("GET /v2/a/manifests/1?ns=docker.io HTTP/1.1\r\nHost: m:5000\r\n"
                        "Accept: a/b\r\naccept: c/d \r\n\r\n"
                        "HEAD /v2/ HTTP/1.1\r\nHost: m\r\n\r\n");
    CHECK_EQ_INT(s.error, 0);
    CHECK_EQ_INT(s.heads, 2);
    CHECK_STR(s.paths[0], "/v2/a/manifests/1");
    CHECK_STR(s.queries[0], "ns=docker.io");
    CHECK_STR(s.paths[1], "/v2/");
    CHECK_STR(s.queries[1], "(none)");
    CHECK_STR(s.accept, "a/b, c/d");
    CHECK_STR(s.host, "m");

    /* absolute-form is reduced to its path; other forms are refused */
    s = run("GET http://m:5000/v2/x?y=1 HTTP/1.1\r\nHost: m\r\n\r\n");
    CHECK_EQ_INT(s.heads, 1);
    CHECK_STR(s.paths[0], "/v2/x");
    CHECK_STR(s.queries[0], "y=1");
    REFUSED("GET http://m:5000 HTTP/1.1\r\nHost: m\r\n\r\n", 400);
    REFUSED("OPTIONS * HTTP/1.1\r\nHost: m\r\n\r\n", 400);
    REFUSED("CONNECT m:443 HTTP/1.1\r\nHost: m\r\n\r\n", 400);
    REFUSED("GET v2/ HTTP/1.1\r\nHost: m\r\n\r\n", 400);

    /* an Upgrade offer is declined: the next request still parses */
    s = run("GET /a HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
            "GET /b HTTP/1.1\r\n\r\n");
    CHECK_EQ_INT(s.error, 0);
    CHECK_EQ_INT(s.heads, 2);
}

/* The headers the access log, the trusted-proxy rules and CORS read, with their limits. */
static void test_logged_headers(void)
{
    struct seen s = run("GET / HTTP/1.1\r\nUser-Agent: a \"b\" \\ \xff\r\n"
                        "X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nx-forwarded-for: 3.3.3.3\r\n"
                        "X-Request-Id: abc-1\r\nOrigin: http://ui.example\r\n"
                        "Access-Control-Request-Method: GET\r\nX-Forwarded-Proto: https\r\n\r\n");
    CHECK_EQ_INT(s.error, 0);
    CHECK_STR(s.ua, "a \"b\" \\ \xff");
    CHECK_STR(s.xff, "1.1.1.1, 2.2.2.2, 3.3.3.3"); /* every line, in order */
    CHECK_STR(s.rid, "abc-1");
    CHECK_STR(s.origin, "http://ui.example");
    CHECK_STR(s.cors_method, "GET");
    CHECK_EQ_INT(s.secure, 1); /* seen; the connection sets secure */
    s = run("GET / HTTP/1.1\r\n\r\n");
    CHECK_STR(s.ua, "(none)");
    CHECK_STR(s.xff, "(none)");
    CHECK_STR(s.origin, "(none)");
    CHECK_EQ_INT(s.secure, 0);

    /* too long: absent (a chain too long to keep is not believed at all) */
    char *in = malloc(4096);
    char *big = malloc(1100);
    memset(big, 'a', 1099);
    big[1099] = '\0';
    snprintf(in, 4096, "GET / HTTP/1.1\r\nUser-Agent: %.513s\r\nOrigin: %.256s\r\n"
             "X-Forwarded-For: 9.9.9.9\r\nX-Forwarded-For: %s\r\n\r\n", big, big, big);
    s = run(in);
    CHECK_EQ_INT(s.error, 0);
    CHECK_STR(s.ua, "(none)");
    CHECK_STR(s.origin, "(none)");
    CHECK_STR(s.xff, "(none)");
    snprintf(in, 4096, "GET / HTTP/1.1\r\nUser-Agent: %.512s\r\n\r\n", big);
    s = run(in);
    CHECK_EQ_INT((int)strlen(s.ua), 512);
    free(in);
    free(big);
}

static void test_bodies(void)
{
    struct seen s = run("PUT /u HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                        "PATCH /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "3\r\nabc\r\n0\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
    CHECK_EQ_INT(s.error, 0);
    CHECK_EQ_INT(s.heads, 3);
    CHECK_EQ_INT(s.body_ends, 2);
    CHECK_EQ_INT(s.body_len, 8);
    CHECK(memcmp(s.body, "helloabc", 8) == 0);
    CHECK_STR(s.paths[2], "/after");
    /* a body nobody reads is skipped, never taken for a request */
    s = run_step("POST /u HTTP/1.1\r\nContent-Length: 18\r\n\r\nGET /in HTTP/1.1\r\n\r\n", 0, 0);
    CHECK_EQ_INT(s.heads, 1);
    CHECK_EQ_INT(s.body_len, 0);
}

static void test_smuggling(void)
{
    /* Content-Length and chunked together, two lengths, odd codings: refused, and the request
     * hidden in the body is never seen */
    REFUSED("POST /u HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
            "0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n", 400);
    REFUSED("POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n"
            "0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n", 400);
    REFUSED("POST /u HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc", 400);
    REFUSED("POST /u HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400);
    REFUSED("POST /u HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", 400);
    REFUSED("POST /u HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400);
    REFUSED("POST /u HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400);
    REFUSED("POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
            "0\r\n\r\n", 400);
    REFUSED("POST /u HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
    REFUSED("POST /u HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", 400);
    REFUSED("POST /u HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400);
    /* obs-fold and bare LF */
    REFUSED("GET /a HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400);
    REFUSED("GET /a HTTP/1.1\r\nX-A: 1\r\n\tfolded\r\n\r\n", 400);
    REFUSED("GET /a HTTP/1.1\r\nHost: m\n\r\n", 400);
    REFUSED("GET /a HTTP/1.1\nHost: m\r\n\r\n", 400);
    REFUSED("GET /a HTTP/1.1\n\n", 400);
    REFUSED("GET /a HTTP/1.1\r\nX: a\rb\r\n\r\n", 400);
    /* a bare LF in the second request of a pipeline refuses it, after the first */
    struct seen s = run("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\nHost: m\r\n\r\n");
    CHECK_EQ_INT(s.heads, 1);
    CHECK_EQ_INT(s.error, 400);
    /* NUL and control bytes */
    REFUSED("GET /a HTTP/1.1\r\nX: a\x01" "b\r\n\r\n", 400);
    REFUSED("GET /a\x7f HTTP/1.1\r\n\r\n", 400);
}

static void test_limits(void)
{
    char *big = malloc(70000);
    strcpy(big, "GET /");
    memset(big + 5, 'a', 65536);
    strcpy(big + 5 + 65536, " HTTP/1.1\r\n\r\n");
    REFUSED(big, 414);
    strcpy(big, "GET / HTTP/1.1\r\nX: ");
    size_t n = strlen(big);
    memset(big + n, 'a', 65536);
    strcpy(big + n + 65536, "\r\n\r\n");
    REFUSED(big, 431);
    big[0] = '\0';
    strcat(big, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 150; i++)
        strcat(big, "X: y\r\n");
    strcat(big, "\r\n");
    REFUSED(big, 431);
    free(big);
}

int main(void)
{
    struct reqparse p;
    reqparse_init(&p);
    CHECK_EQ_INT(p.llhttp.lenient_flags, 0); /* strict: no lenient llhttp mode, ever */
    reqparse_free(&p);
    test_heads();
    test_logged_headers();
    test_bodies();
    test_smuggling();
    test_limits();
    CHECK_DONE();
}
