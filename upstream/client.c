/* SPDX-License-Identifier: Apache-2.0 */
#include "upstream/upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "cluster/members.h"
#include "cluster/peer_auth.h"
#include "metrics/metrics.h"
#include "upstream/auth.h"
#include "upstream/challenge.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

#define MAX_AUTH_ATTEMPTS 2
#define MAX_REDIRECTS 5
#define DEADLINE_TICK_MS 250 /* how often requests are checked against timeouts.first_byte */
#define TOKEN_BODY_MAX (64 * 1024)
#define USER_AGENT "regcache/" REGCACHE_VERSION
#define PROBE_MIN_MS 1000 /* bounds of upstream_probe_interval_ms */
#define PROBE_MAX_MS 30000

/* One endpoint of an upstream (upstreams[].urls). An endpoint that did not answer (connection
 * refused, timeouts.first_byte passed) is down: requests go to the next one that is up, and a
 * probe (GET /v2/, once per upstream_probe_interval_ms) brings it back. Kept only where there
 * is somewhere else to go or something to skip: upstreams with several endpoints and blob
 * sources. */
struct endpoint {
    struct upstream *u;
    char *url;
    int down;
    uint64_t since_ms, last_probe_ms;
    struct upstream_req *probe; /* in flight, at most one */
};

struct upstream {
    struct upstream_client *client;
    char *name, *url, *username, *password, *ca_file; /* url: the first endpoint's */
    struct endpoint eps[CONFIG_MAX_URLS];
    size_t n_eps;
    int track_endpoints; /* several endpoints, or a blob source */
    /* a blob source: its primary, its configured name, where it comes in the order and the
     * prefix of the repositories asked for there */
    struct upstream *primary;
    char *source_name, *repo_prefix;
    int before;
    struct upstream *sources[CONFIG_MAX_BLOB_SOURCES]; /* a primary's blob sources */
    size_t n_sources;
    /* a cluster member asked for the primary's content (upstream_peer): requests carry
     * ?ns=<primary> and X-Regcache-Peer, no credentials, no challenges */
    int peer;
    size_t member;
    struct upstream *peers[MEMBERS_MAX]; /* a primary's, by member index; NULL for self */
    int docker_hub;
    char *ns; /* a parent regcache's (upstreams[].parent): ?ns= on every request; else NULL */
    /* learnt from the first challenge, so later scopes fetch a token before asking */
    int bearer, basic;
    char realm[1024], service[256];
    struct token_cache *tokens;
    /* the address classes (ADDR_LOOPBACK, ADDR_LINK_LOCAL) the upstream itself is at, as its
     * URL names it and as its connections went (through a proxy: the proxy's): a realm or
     * redirect target may be in these and no others */
    int url_classes, seen_classes;
};

struct upstream_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    long connect_timeout_ms, low_speed_time_s;
    uint64_t first_byte_ms;
    uint64_t total_small_ms; /* whole-request deadline of everything but blobs */
    uint64_t max_blob_bytes;
    uint64_t probe_ms; /* how often a down endpoint is probed */
    int proxied; /* a proxy from the environment: connections show the proxy's address */
    uv_timer_t deadline_timer; /* gives up on requests with no answer within first_byte_ms */
    struct upstream *ups[CONFIG_MAX_UPSTREAMS];
    size_t n_ups;
    struct upstream_req *reqs; /* everything in flight, for shutdown */
    struct upstream_easy *foreign; /* other modules' transfers (upstream_easy_add) */
    int shut_down;
    /* cluster: this member's normalised URL and the secret peer requests are signed with */
    char cluster_self[MEMBERS_URL_MAX];
    char *cluster_secret;
    upstream_ratelimit_fn on_ratelimit;
    void *ratelimit_ud;
    upstream_outcome_fn on_outcome;
    void *outcome_ud;
    char *instance;      /* received-by of the Via entry every request carries; NULL: none */
    const char *via_now; /* the chain requests started now carry (upstream_client_set_via) */
};

enum req_kind { REQ_MAIN, REQ_TOKEN };

struct upstream_req {
    unsigned char not_ours; /* 0: tells it from a struct upstream_easy (CURLOPT_PRIVATE) */
    struct upstream *u;
    enum req_kind kind;
    struct upstream_req *next, *prev; /* client->reqs */
    struct upstream_req *waiters;     /* token fetch: the requests waiting for it */
    struct upstream_req *next_waiter; /* main: the next request waiting for the same fetch */
    struct upstream_req *token_req;   /* main: the token fetch it waits for */
    CURL *easy;
    struct curl_slist *headers;
    enum upstream_method method;
    char *url, *accept, *scope;
    char *via; /* the chain before this mirror's Via entry, NULL when none */
    char *path;     /* main: what follows the endpoint's URL, e.g. "/v2/<repo>/blobs/<digest>" */
    size_t ep;      /* main: the endpoint asked */
    unsigned tried; /* main: the endpoints asked so far (bits) */
    int ep_probe;   /* an endpoint's own probe: no other endpoint, no outcome hook */
    const struct upstream_callbacks *cb;
    void *ud;
    int attempts;
    int used_token, used_basic, want_basic;
    int headers_delivered, discarding;
    int probe; /* GET /v2/ of upstream_probe: any answer is final, no credentials */
    int blob;  /* blobs/<digest>: redirects are followed (the digest is verified), size capped */
    int hops;  /* redirects followed so far */
    int foreign; /* the current URL is not the upstream's origin: no credentials, no challenges */
    int refused; /* the mirror refused the answer itself; refusal says why */
    int addr_refused; /* a connection was refused by address class; refusal says why */
    char refusal[512];
    uint64_t waiting_since_ms; /* sent, no complete response head yet; 0 once one arrived */
    uint64_t deadline_ms;      /* 0, or when the whole request gives up (timeouts.total_small) */
    int64_t received;          /* body bytes handed to on_data */
    int manifest;              /* manifests/<reference>: its body counts as a manifest pulled */
    uint64_t sent_us, head_us; /* this attempt: sent (on_prereq), its final headers came */
    /* the current response's headers; reset on every status line (redirects, 100) */
    long status;
    char content_type[256], digest[160], retry_after[64], link[1024], www_auth[2048];
    int location, bad_location; /* a Location header came; one with forbidden bytes came */
    int64_t content_length;
    char content_range[128], etag[256], last_modified[64];
    uint64_t range_from; /* upstream_request_with: Range: bytes=N- when > 0 */
    char if_range[256];  /* and If-Range when not empty */
    int64_t rl_limit, rl_remaining, rl_window_s;
    char rl_source[64];
    struct buf body; /* token responses only */
    char errbuf[CURL_ERROR_SIZE];
};

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct upstream_client *client;
};

static void req_free(struct upstream_req *r);
static int req_start(struct upstream_req *r);
static void endpoint_answered(struct upstream *u, size_t i);
static int failover(struct upstream_req *r, const char *why);
static void probe_endpoints(struct upstream *u, uint64_t now);

/* The address class of an upstream URL's host as written (see host_class). */
static int upstream_host_class(const char *url)
{
    CURLU *h = curl_url();
    char *host = NULL;
    int cls = 0;
    if (h && curl_url_set(h, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(h, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        cls = host_class(host);
    curl_free(host);
    curl_url_cleanup(h);
    return cls;
}
static uint64_t now_ms(void);

/* ---- libuv <-> curl multi glue ---- */

static void check_multi_info(struct upstream_client *c);

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *s = h->data;
    int running, flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    struct upstream_client *c = s->client;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    check_multi_info(c);
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct upstream_client *c = userp;
    struct sock_ctx *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_poll_closed);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->fd = fd;
        s->client = c;
        if (uv_poll_init_socket(c->loop, &s->poll, fd)) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *t)
{
    struct upstream_client *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(c);
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct upstream_client *c = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- response headers and body ---- */

/* Copies a header value without its line end and trailing whitespace. A value with control
 * characters (CR, LF, NUL...) or bytes outside visible ASCII, or too long for dst, is refused:
 * dst is left empty and -1 returned, so it is never used, copied into the mirror's answers or
 * stored. */
static int copy_value(char *dst, size_t dstlen, const char *v, size_t n)
{
    dst[0] = '\0';
    if (n && v[n - 1] == '\n')
        n--;
    if (n && v[n - 1] == '\r')
        n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= dstlen || !header_value_ok(v, n))
        return -1;
    memcpy(dst, v, n);
    dst[n] = '\0';
    return 0;
}

static void reset_response(struct upstream_req *r)
{
    r->status = 0;
    r->content_type[0] = r->digest[0] = r->retry_after[0] = r->link[0] = '\0';
    r->location = r->bad_location = 0;
    r->content_length = -1;
    r->content_range[0] = r->etag[0] = r->last_modified[0] = '\0';
    r->www_auth[0] = '\0';
    r->rl_limit = r->rl_remaining = r->rl_window_s = -1;
    r->rl_source[0] = '\0';
}

/* "100;w=21600": the count, and the window in seconds when given. */
static void parse_ratelimit(const char *v, size_t n, int64_t *count, int64_t *window_s)
{
    char tmp[128], *end;
    if (copy_value(tmp, sizeof(tmp), v, n))
        return;
    long long c = strtoll(tmp, &end, 10);
    if (end == tmp || c < 0)
        return;
    *count = c;
    const char *w = strstr(end, "w=");
    if (w) {
        long long ws = strtoll(w + 2, &end, 10);
        if (end != w + 2 && ws > 0)
            *window_s = ws;
    }
}

static void report_ratelimit(struct upstream_req *r)
{
    struct upstream_client *c = r->u->client;
    if (!c->on_ratelimit || !r->status || r->u->primary ||
        (r->status != 429 && r->rl_limit < 0 && r->rl_remaining < 0))
        return;
    struct upstream_ratelimit rl = {
        .status = r->status,
        .limit = r->rl_limit,
        .remaining = r->rl_remaining,
        .window_s = r->rl_window_s,
        .source = r->rl_source[0] ? r->rl_source : NULL,
        .retry_after = r->retry_after[0] ? r->retry_after : NULL,
    };
    c->on_ratelimit(c->ratelimit_ud, r->u, &rl);
}

static int is_redirect(long status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Records why the mirror refuses this request's answer; the transfer is then stopped. */
static void refuse(struct upstream_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void refuse(struct upstream_req *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->refusal, sizeof(r->refusal), fmt, ap);
    va_end(ap);
    r->refused = 1;
}

static int blob_body(const struct upstream_req *r)
{
    return r->blob && (r->status == 200 || r->status == 206);
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    struct upstream_req *r = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        reset_response(r);
        const char *sp = memchr(data, ' ', len);
        if (sp)
            r->status = strtol(sp + 1, NULL, 10);
        return len;
    }
    if ((len == 2 && data[0] == '\r') || (len == 1 && data[0] == '\n')) {
        report_ratelimit(r); /* the end of this response's headers */
        if (blob_body(r) && r->content_length > (int64_t)r->u->client->max_blob_bytes) {
            refuse(r,
                   "announced a blob of %" PRId64 " bytes, over limits.max_blob_size (%" PRIu64
                   " bytes)",
                   r->content_length, r->u->client->max_blob_bytes);
            return 0; /* stops the transfer before any body byte */
        }
        /* an interim answer or a redirect being followed: the next one is waited for anew */
        if (r->status >= 200)
            r->head_us = clock_mono_us();
        r->waiting_since_ms = (r->status >= 100 && r->status < 200) ||
                                      (r->status >= 300 && r->status < 400)
                                  ? now_ms()
                                  : 0;
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    size_t nlen = colon - data;
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    while (vlen && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
#define IS(h) (nlen == sizeof(h) - 1 && strncasecmp(data, h, nlen) == 0)
    int bad = 0;
    if (IS("Content-Type"))
        bad = copy_value(r->content_type, sizeof(r->content_type), v, vlen);
    else if (IS("Docker-Content-Digest"))
        bad = copy_value(r->digest, sizeof(r->digest), v, vlen);
    else if (IS("Retry-After")) {
        bad = copy_value(r->retry_after, sizeof(r->retry_after), v, vlen);
        if (!bad && !retry_after_ok(r->retry_after)) {
            r->retry_after[0] = '\0'; /* neither delay-seconds nor an HTTP-date: ignored */
            bad = -1;
        }
    } else if (IS("Link"))
        bad = copy_value(r->link, sizeof(r->link), v, vlen);
    else if (IS("Content-Range"))
        bad = copy_value(r->content_range, sizeof(r->content_range), v, vlen);
    else if (IS("ETag"))
        bad = copy_value(r->etag, sizeof(r->etag), v, vlen);
    else if (IS("Last-Modified"))
        bad = copy_value(r->last_modified, sizeof(r->last_modified), v, vlen);
    else if (IS("WWW-Authenticate") && !r->www_auth[0])
        bad = copy_value(r->www_auth, sizeof(r->www_auth), v, vlen);
    else if (IS("Location")) {
        char tmp[4096];
        r->location = 1;
        bad = r->bad_location = copy_value(tmp, sizeof(tmp), v, vlen) ? 1 : 0;
    } else if (IS("RateLimit-Limit"))
        parse_ratelimit(v, vlen, &r->rl_limit, &r->rl_window_s);
    else if (IS("RateLimit-Remaining"))
        parse_ratelimit(v, vlen, &r->rl_remaining, &r->rl_window_s);
    else if (IS("Docker-RateLimit-Source"))
        bad = copy_value(r->rl_source, sizeof(r->rl_source), v, vlen);
    else if (IS("Content-Length")) {
        char tmp[32];
        copy_value(tmp, sizeof(tmp), v, vlen);
        char *end;
        long long cl = strtoll(tmp, &end, 10);
        r->content_length = (*tmp && !*end && cl >= 0) ? cl : -1;
    }
#undef IS
    if (bad)
        log_warn("upstream %s: ignored its %.*s header: a value with control characters, "
                 "other bytes outside visible ASCII, too long or invalid",
                 r->u->name, (int)nlen, data);
    return len;
}

static void fill_response(const struct upstream_req *r, struct upstream_response *resp)
{
    resp->status = r->status;
    resp->content_type = r->content_type[0] ? r->content_type : NULL;
    resp->digest = r->digest[0] ? r->digest : NULL;
    resp->content_length = r->content_length;
    resp->retry_after = r->retry_after[0] ? r->retry_after : NULL;
    resp->link = r->link[0] ? r->link : NULL;
    resp->error = NULL;
    resp->content_range = r->content_range[0] ? r->content_range : NULL;
    resp->etag = r->etag[0] ? r->etag : NULL;
    resp->last_modified = r->last_modified[0] ? r->last_modified : NULL;
}

static int may_retry_auth(const struct upstream_req *r)
{
    return r->status == 401 && r->attempts < MAX_AUTH_ATTEMPTS && !r->probe;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    struct upstream_req *r = ud;
    struct upstream_client *c = r->u->client;
    size_t len = size * n;
    if (r->kind == REQ_TOKEN)
        return buf_append(&r->body, data, len) ? 0 : len;
    if (r->discarding || (!r->headers_delivered && (may_retry_auth(r) || is_redirect(r->status)))) {
        r->discarding = 1; /* a challenge or a redirect: decided on in check_multi_info */
        return len;
    }
    if (!r->headers_delivered) {
        if (blob_body(r) && r->content_length > (int64_t)c->max_blob_bytes) {
            refuse(r,
                   "announced a blob of %" PRId64 " bytes, over limits.max_blob_size (%" PRIu64
                   " bytes)",
                   r->content_length, c->max_blob_bytes);
            return 0;
        }
        struct upstream_response resp;
        fill_response(r, &resp);
        r->headers_delivered = 1;
        r->cb->on_headers(r->ud, &resp);
    }
    if (blob_body(r) && (uint64_t)r->received + len > c->max_blob_bytes) {
        refuse(r, "sent a blob of more than %" PRIu64 " bytes (limits.max_blob_size); cut",
               c->max_blob_bytes);
        return 0;
    }
    int rc = r->cb->on_data(r->ud, data, len);
    if (rc == UPSTREAM_PAUSE)
        return CURL_WRITEFUNC_PAUSE;
    if (rc < 0)
        return 0;
    r->received += (int64_t)len;
    int pulled = r->method == UPSTREAM_GET && !r->probe && r->status >= 200 && r->status < 300;
    metrics_upstream_body(r->u->name,
                          !pulled ? -1 : r->blob ? METRICS_BLOB : r->manifest ? METRICS_MANIFEST : -1,
                          len);
    return len;
}

/* ---- request lifecycle ---- */

static void link_req(struct upstream_req *r)
{
    struct upstream_client *c = r->u->client;
    r->prev = NULL;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
}

static void unlink_req(struct upstream_req *r)
{
    struct upstream_client *c = r->u->client;
    if (r->prev)
        r->prev->next = r->next;
    else if (c->reqs == r)
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

static void easy_release(struct upstream_req *r)
{
    if (r->easy) {
        curl_multi_remove_handle(r->u->client->multi, r->easy);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    curl_slist_free_all(r->headers);
    r->headers = NULL;
}

/* Takes a waiting request off its token fetch's list (the fetch goes on for the others and
 * fills the cache). */
static void stop_waiting(struct upstream_req *r)
{
    if (!r->token_req)
        return;
    struct upstream_req **pp = &r->token_req->waiters;
    while (*pp && *pp != r)
        pp = &(*pp)->next_waiter;
    if (*pp)
        *pp = r->next_waiter;
    r->token_req = NULL;
    r->next_waiter = NULL;
}

static void req_free(struct upstream_req *r)
{
    easy_release(r);
    unlink_req(r);
    stop_waiting(r);
    for (struct upstream_req *w = r->waiters; w; w = w->next_waiter)
        w->token_req = NULL; /* only at shutdown: the waiters are freed too */
    free(r->url);
    free(r->path);
    free(r->accept);
    free(r->scope);
    free(r->via);
    buf_free(&r->body);
    free(r);
}

/* Every connection is opened here, once its address is resolved: the upstream's own URL
 * teaches the address classes it lives in; a token realm or a redirect target may connect
 * only within those (so a DNS name cannot lead the mirror to its own loopback services). */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct upstream_req *r = ud;
    (void)purpose;
    int cls = addr_class(&a->addr);
    if (r->kind == REQ_MAIN && r->hops == 0) {
        r->u->seen_classes |= cls;
    } else if (cls & ~(r->u->url_classes | r->u->seen_classes)) {
        snprintf(r->refusal, sizeof(r->refusal), "refused to connect to a %s address for %s",
                 cls & ADDR_LOOPBACK ? "loopback" : "link-local",
                 r->kind == REQ_TOKEN ? "its token realm" : "a redirect");
        r->addr_refused = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* Connected (or reusing a connection) and about to send: timeouts.first_byte counts from here,
 * not from while the request queued for a connection (limits.upstream_connections). */
static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    (void)primary_ip, (void)local_ip, (void)primary_port, (void)local_port;
    struct upstream_req *r = ud;
    r->waiting_since_ms = now_ms();
    r->sent_us = clock_mono_us();
    return CURL_PREREQFUNC_OK;
}

static CURL *easy_new(struct upstream_req *r)
{
    struct upstream_client *c = r->u->client;
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT);
    /* redirects are followed by hand (follow_redirect), for blobs only */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, c->low_speed_time_s);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
    if (r->method == UPSTREAM_HEAD)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (r->u->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, r->u->ca_file);
    return e;
}

static uint64_t now_ms(void)
{
    return clock_wall_ms();
}

/* The classes a realm or redirect target named by its URL may be in. */
static int allowed_classes(const struct upstream *u)
{
    return u->url_classes | (u->client->proxied ? 0 : u->seen_classes);
}

static int token_fetch(struct upstream_req *main);
static void token_done(struct upstream_req *t, CURLcode rc);

/* (Re)issues a request with whatever credentials are known for its upstream and scope. */
static int req_start(struct upstream_req *r)
{
    struct upstream *u = r->u;
    easy_release(r);
    reset_response(r);
    r->headers_delivered = r->discarding = 0;
    r->refused = r->addr_refused = 0;
    r->refusal[0] = '\0';
    r->received = 0;
    r->sent_us = r->head_us = 0;
    r->errbuf[0] = '\0';
    r->used_token = r->used_basic = 0;
    if (r->kind == REQ_MAIN && u->bearer && !r->probe && !r->foreign) {
        const char *tok = token_cache_get(u->tokens, r->scope, now_ms());
        if (!tok)
            return token_fetch(r);
        char hdr[TOKEN_MAX + 32];
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", tok);
        r->headers = curl_slist_append(r->headers, hdr);
        r->used_token = 1;
    }
    if (r->accept) {
        char hdr[2048];
        snprintf(hdr, sizeof(hdr), "Accept: %s", r->accept);
        r->headers = curl_slist_append(r->headers, hdr);
    }
    if (u->peer && r->kind == REQ_MAIN) {
        struct upstream_client *c = u->client;
        char value[PEER_AUTH_VALUE_MAX], hdr[PEER_AUTH_VALUE_MAX + 32];
        int rc = peer_auth_sign(c->cluster_secret, strlen(c->cluster_secret), c->cluster_self,
                                r->method == UPSTREAM_HEAD ? "HEAD" : "GET", r->path,
                                (int64_t)(clock_wall_ms() / 1000), value, sizeof(value));
        if (rc)
            return rc;
        snprintf(hdr, sizeof(hdr), PEER_AUTH_HEADER ": %s", value);
        r->headers = curl_slist_append(r->headers, hdr);
    }
    if (u->client->instance) {
        char hdr[UPSTREAM_VIA_MAX + CONFIG_INSTANCE_ID_MAX + 32];
        snprintf(hdr, sizeof(hdr), "Via: %s%s1.1 %s", r->via ? r->via : "", r->via ? ", " : "",
                 u->client->instance);
        r->headers = curl_slist_append(r->headers, hdr);
    }
    if (r->range_from) {
        char hdr[320];
        snprintf(hdr, sizeof(hdr), "Range: bytes=%" PRIu64 "-", r->range_from);
        r->headers = curl_slist_append(r->headers, hdr);
        if (r->if_range[0]) {
            snprintf(hdr, sizeof(hdr), "If-Range: %s", r->if_range);
            r->headers = curl_slist_append(r->headers, hdr);
        }
    }
    r->easy = easy_new(r);
    if (!r->easy)
        return -ENOMEM;
    if (r->headers)
        curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    if (r->kind == REQ_TOKEN || (r->want_basic && u->username && !r->foreign)) {
        if (u->username) {
            curl_easy_setopt(r->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
            curl_easy_setopt(r->easy, CURLOPT_USERNAME, u->username);
            curl_easy_setopt(r->easy, CURLOPT_PASSWORD, u->password ? u->password : "");
            r->used_basic = 1;
        }
    }
    r->waiting_since_ms = 0; /* until on_prereq: queued, then connecting */
    if (curl_multi_add_handle(u->client->multi, r->easy) != CURLM_OK)
        return -EIO;
    return 0;
}

/* Gets a token for main's scope: joins a fetch already under way for the same upstream and
 * scope, so that requests started together cost one token request. */
static int token_fetch(struct upstream_req *main)
{
    struct upstream *u = main->u;
    for (struct upstream_req *t = u->client->reqs; t; t = t->next) {
        if (t->kind == REQ_TOKEN && t->u == u && strcmp(t->scope, main->scope) == 0) {
            main->token_req = t;
            main->next_waiter = t->waiters;
            t->waiters = main;
            return 0;
        }
    }
    struct upstream_req *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->u = u;
    t->kind = REQ_TOKEN;
    t->method = UPSTREAM_GET;
    buf_init(&t->body, TOKEN_BODY_MAX);
    t->scope = strdup(main->scope);
    t->via = main->via ? strdup(main->via) : NULL; /* a failed copy only shortens the chain */
    char *svc = curl_easy_escape(NULL, u->service, 0);
    char *scope = curl_easy_escape(NULL, main->scope, 0);
    size_t n = strlen(u->realm) + strlen(svc ? svc : "") + strlen(scope ? scope : "") + 32;
    t->url = malloc(n);
    if (t->url)
        snprintf(t->url, n, "%s%cservice=%s&scope=%s", u->realm,
                 strchr(u->realm, '?') ? '&' : '?', svc ? svc : "", scope ? scope : "");
    curl_free(svc);
    curl_free(scope);
    if (!t->url || !t->scope) {
        free(t->url);
        free(t->scope);
        free(t);
        return -ENOMEM;
    }
    t->deadline_ms = now_ms() + u->client->total_small_ms;
    link_req(t);
    main->token_req = t;
    t->waiters = main;
    int r = req_start(t);
    if (r) {
        stop_waiting(main);
        req_free(t);
    }
    return r;
}

/* One HTTP exchange of a main request ended, with status (0: no answer). */
static void count_exchange(const struct upstream_req *r, long status)
{
    uint64_t now = clock_mono_us();
    uint64_t sent = r->sent_us ? r->sent_us : now, head = r->head_us ? r->head_us : now;
    metrics_upstream_request(r->u->name, r->method == UPSTREAM_HEAD, status,
                             head > sent ? head - sent : 0);
}

/* Calls r's on_done: requests it starts carry r's Via chain, as they are on the same client
 * request's behalf. */
static void call_done(struct upstream_req *r, const struct upstream_response *resp, int result)
{
    struct upstream_client *c = r->u->client;
    const char *was = c->via_now;
    c->via_now = r->via;
    r->cb->on_done(r->ud, resp, result);
    c->via_now = was;
}

/* Completes a main request towards its caller. */
static void deliver(struct upstream_req *r, int result, const char *error)
{
    struct upstream_response resp;
    struct upstream_client *c = r->u->client;
    fill_response(r, &resp);
    if (error) {
        resp.status = 0;
        resp.error = error;
    } else if (!r->headers_delivered) {
        r->headers_delivered = 1;
        r->cb->on_headers(r->ud, &resp);
    }
    if (resp.status && !r->foreign)
        endpoint_answered(r->u, r->ep);
    if (c->on_outcome && !r->ep_probe && !r->u->primary)
        c->on_outcome(c->outcome_ud, r->u, &resp);
    call_done(r, &resp, result);
    req_free(r);
}

/* Gives up on the first request whose answer has not begun within first_byte_ms, or that has
 * not ended by its deadline; returns 1 when it did (its callbacks may have changed the list). */
static int expire_one(struct upstream_client *c, uint64_t now)
{
    for (struct upstream_req *r = c->reqs; r; r = r->next) {
        if (!r->easy)
            continue;
        int late = r->deadline_ms && now >= r->deadline_ms;
        if (!late && (!r->waiting_since_ms || now - r->waiting_since_ms < c->first_byte_ms))
            continue;
        if (late)
            snprintf(r->errbuf, sizeof(r->errbuf),
                     "no complete answer within %llu ms (timeouts.total_small)",
                     (unsigned long long)c->total_small_ms);
        else
            snprintf(r->errbuf, sizeof(r->errbuf), "no answer within %llu ms (timeouts.first_byte)",
                     (unsigned long long)c->first_byte_ms);
        if (r->kind == REQ_TOKEN) {
            token_done(r, CURLE_OPERATION_TIMEDOUT);
        } else {
            count_exchange(r, 0);
            char err[CURL_ERROR_SIZE];
            snprintf(err, sizeof(err), "%s", r->errbuf);
            if (late || !failover(r, err))
                deliver(r, -ETIMEDOUT, err);
        }
        return 1;
    }
    return 0;
}

static void on_deadline_timer(uv_timer_t *t)
{
    struct upstream_client *c = t->data;
    uint64_t now = now_ms();
    for (int n = 0; n < 1024 && expire_one(c, now); n++) {
    }
    for (size_t i = 0; i < c->n_ups; i++) {
        probe_endpoints(c->ups[i], now);
        for (size_t j = 0; j < c->ups[i]->n_sources; j++)
            probe_endpoints(c->ups[i]->sources[j], now);
    }
}

static void token_done(struct upstream_req *t, CURLcode rc)
{
    struct upstream *u = t->u;
    char *token = NULL;
    uint64_t expires_in = 0;
    int ok = rc == CURLE_OK && t->status == 200 &&
             token_parse_response(t->body.data ? t->body.data : "", t->body.len, &token,
                                  &expires_in) == 0;
    if (t->addr_refused) {
        log_warn("upstream %s: %s", u->name, t->refusal);
        rc = CURLE_OK; /* the mirror's own refusal: the waiters are refused, not failed */
    }
    if (ok)
        token_cache_put(u->tokens, t->scope, token, token_use_until(now_ms(), expires_in));
    else if (rc == CURLE_OK && is_redirect(t->status))
        log_warn("upstream %s: refused a redirect from its token realm %s (redirects are "
                 "followed for blobs only)",
                 u->name, u->realm);
    else if (!t->addr_refused)
        log_warn("upstream %s: token request to %s failed: %s", u->name, u->realm,
                 rc != CURLE_OK ? (t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc))
                                : "no token in the answer");
    free(token);
    long status = t->status;
    char errbuf[CURL_ERROR_SIZE + 64];
    snprintf(errbuf, sizeof(errbuf), "token service: %s",
             t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
    struct upstream_req *waiters = t->waiters;
    t->waiters = NULL;
    for (struct upstream_req *w = waiters; w; w = w->next_waiter)
        w->token_req = NULL;
    req_free(t);
    /* each waiter may cancel others from its callback: take them off the list one by one */
    while (waiters) {
        struct upstream_req *main = waiters;
        waiters = main->next_waiter;
        main->next_waiter = NULL;
        if (ok) {
            int r = req_start(main);
            if (r)
                deliver(main, r, "cannot start request");
        } else if (rc != CURLE_OK) {
            deliver(main, -EIO, errbuf);
        } else {
            /* The token service said no: report it as the registry's refusal. */
            main->status = status >= 500 ? status : 401;
            deliver(main, 0, NULL);
        }
    }
}

/* A 401 from the upstream's own origin: learn the challenge and retry when it makes sense.
 * Returns 1 when retried. A realm the credentials must not go to refuses the request. */
static int handle_challenge(struct upstream_req *r)
{
    struct upstream *u = r->u;
    struct auth_challenge ch;
    char why[128];
    if (!r->www_auth[0] || auth_challenge_parse(r->www_auth, &ch))
        return 0;
    r->attempts++;
    if (ch.scheme == AUTH_SCHEME_BEARER &&
        target_url_check(ch.realm, u->eps[r->ep].url, allowed_classes(u), why, sizeof(why))) {
        refuse(r, "refused its token realm %.300s: %s", ch.realm, why);
        return 0;
    }
    if (ch.scheme == AUTH_SCHEME_BEARER) {
        snprintf(u->realm, sizeof(u->realm), "%s", ch.realm);
        snprintf(u->service, sizeof(u->service), "%s", ch.service);
        u->bearer = 1;
        token_cache_drop(u->tokens, r->scope); /* expired, revoked or too narrow */
        return req_start(r) == 0;
    }
    if (ch.scheme == AUTH_SCHEME_BASIC && u->username && !r->used_basic) {
        u->basic = 1;
        r->want_basic = 1;
        return req_start(r) == 0;
    }
    return 0;
}

/* Completes a request the mirror refused itself (r->refusal says why): the caller gets no
 * answer (status 0, the refusal as error); the outcome hook sees what the upstream said, when
 * it said anything, since a refusal says nothing of the upstream's health. */
static void deliver_refused(struct upstream_req *r)
{
    struct upstream_client *c = r->u->client;
    struct upstream_response resp;
    char err[sizeof(r->refusal)];
    snprintf(err, sizeof(err), "%s", r->refusal);
    log_warn("upstream %s: %s", r->u->name, err);
    fill_response(r, &resp);
    if (resp.status && !r->headers_delivered && c->on_outcome && !r->ep_probe && !r->u->primary)
        c->on_outcome(c->outcome_ud, r->u, &resp);
    resp.status = 0;
    resp.error = err;
    call_done(r, &resp, -EPERM);
    req_free(r);
}

/* A blob's 3xx: the next hop, after checking where it leads. Returns 1 when the request went
 * on there; 0 when it is refused (r->refusal set). */
static int follow_redirect(struct upstream_req *r)
{
    struct upstream *u = r->u;
    char *target = NULL, why[128];
    if (r->bad_location || !r->location ||
        curl_easy_getinfo(r->easy, CURLINFO_REDIRECT_URL, &target) != CURLE_OK || !target) {
        refuse(r, "a redirect without a usable Location");
        return 0;
    }
    if (r->hops >= MAX_REDIRECTS) {
        refuse(r, "more than %d redirects", MAX_REDIRECTS);
        return 0;
    }
    if (target_url_check(target, r->url, allowed_classes(u), why, sizeof(why))) {
        refuse(r, "refused a redirect to %.300s: %s", target, why);
        return 0;
    }
    char *next = strdup(target);
    if (!next) {
        refuse(r, "out of memory");
        return 0;
    }
    free(r->url);
    r->url = next;
    r->hops++;
    /* credentials and challenges belong to the upstream's own origin only */
    r->foreign = !url_same_origin(next, u->eps[r->ep].url);
    if (req_start(r)) {
        refuse(r, "cannot start request");
        return 0;
    }
    return 1;
}

/* ---- endpoints ---- */

uint64_t upstream_probe_interval_ms(uint64_t revalidate_after_ms)
{
    return revalidate_after_ms < PROBE_MIN_MS   ? PROBE_MIN_MS
           : revalidate_after_ms > PROBE_MAX_MS ? PROBE_MAX_MS
                                                : revalidate_after_ms;
}

/* The endpoint a request asks next: the first it has not asked that is up, else the first it
 * has not asked (one that is down is a last resort, not ruled out); -1 when it asked all. */
static int pick_endpoint(const struct upstream *u, unsigned tried)
{
    int fallback = -1;
    for (size_t i = 0; i < u->n_eps; i++) {
        if (tried & (1u << i))
            continue;
        if (!u->eps[i].down)
            return (int)i;
        if (fallback < 0)
            fallback = (int)i;
    }
    return fallback;
}

static void endpoint_failed(struct upstream *u, size_t i, const char *why)
{
    struct endpoint *e = &u->eps[i];
    if (!u->track_endpoints || e->down)
        return;
    e->down = 1;
    e->since_ms = e->last_probe_ms = now_ms();
    log_warn("upstream %s: endpoint %s down (%s); %s until a probe (every %llu ms) finds it back",
             u->name, e->url, why, u->n_eps > 1 ? "asking the next endpoint" : "skipped",
             (unsigned long long)u->client->probe_ms);
}

static void endpoint_answered(struct upstream *u, size_t i)
{
    struct endpoint *e = &u->eps[i];
    if (!e->down)
        return;
    e->down = 0;
    log_info("upstream %s: endpoint %s answers again after %llu s", u->name, e->url,
             (unsigned long long)((now_ms() - e->since_ms) / 1000));
}

size_t upstream_endpoints_up(const struct upstream *u)
{
    size_t n = 0;
    for (size_t i = 0; i < u->n_eps; i++)
        n += !u->eps[i].down;
    return n;
}

int upstream_available(const struct upstream *u)
{
    for (size_t i = 0; i < u->n_eps; i++)
        if (!u->eps[i].down)
            return 1;
    return 0;
}

/* Points r at its path on endpoint i. */
static int set_endpoint(struct upstream_req *r, size_t i)
{
    const char *base = r->u->eps[i].url;
    size_t n = strlen(base) + strlen(r->path) + 1;
    char *url = malloc(n);
    if (!url)
        return -ENOMEM;
    snprintf(url, n, "%s%s", base, r->path);
    free(r->url);
    r->url = url;
    r->ep = i;
    r->tried |= 1u << i;
    r->hops = 0;
    r->foreign = 0;
    return 0;
}

/* r's endpoint gave no answer at all (why): it is marked down, and r asks the next endpoint.
 * Returns 1 when r went on there; 0 when there is none (or r got an answer, or failed at a
 * redirect's target, which says nothing of the endpoint). */
static int failover(struct upstream_req *r, const char *why)
{
    if (r->kind != REQ_MAIN || r->headers_delivered || r->hops || r->foreign)
        return 0;
    endpoint_failed(r->u, r->ep, why);
    int next = r->ep_probe ? -1 : pick_endpoint(r->u, r->tried);
    if (next < 0)
        return 0;
    log_info("upstream %s: %s gave no answer (%s); asking %s", r->u->name, r->u->eps[r->ep].url,
             why, r->u->eps[next].url);
    return set_endpoint(r, (size_t)next) == 0 && req_start(r) == 0;
}

static void ep_probe_headers(void *ud, const struct upstream_response *resp)
{
    (void)ud;
    (void)resp;
}

static int ep_probe_data(void *ud, const char *data, size_t len)
{
    (void)ud;
    (void)data;
    (void)len;
    return 0;
}

static void ep_probe_done(void *ud, const struct upstream_response *resp, int result)
{
    (void)resp; /* deliver() has judged it */
    (void)result;
    struct endpoint *e = ud;
    e->probe = NULL;
    e->last_probe_ms = now_ms();
}

static const struct upstream_callbacks ep_probe_callbacks = {ep_probe_headers, ep_probe_data,
                                                             ep_probe_done};

static struct upstream_req *main_req_start(struct upstream *u, enum upstream_method method,
                                           char *path, char *scope, const char *accept, int probe,
                                           int blob, const struct upstream_callbacks *cb, void *ud,
                                           int ep);

/* One probe at a time per down endpoint, once per probe_ms. */
static void probe_endpoints(struct upstream *u, uint64_t now)
{
    for (size_t i = 0; i < u->n_eps; i++) {
        struct endpoint *e = &u->eps[i];
        if (e->down && !e->probe && now - e->last_probe_ms >= u->client->probe_ms)
            e->probe = main_req_start(u, UPSTREAM_GET, strdup("/v2/"), strdup(""), NULL, 1, 0,
                                      &ep_probe_callbacks, e, (int)i);
    }
}

static void check_multi_info(struct upstream_client *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct upstream_req *r = NULL;
        CURLcode rc = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r->not_ours) {
            struct upstream_easy *e = (struct upstream_easy *)r;
            upstream_easy_remove(e);
            e->done(e, (int)rc);
            continue;
        }
        long code = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        if (code)
            r->status = code;
        if (r->kind == REQ_TOKEN) {
            token_done(r, rc);
            continue;
        }
        count_exchange(r, code);
        if (r->addr_refused && rc != CURLE_OK)
            r->refused = 1; /* nothing else answered */
        if (!r->refused && rc == CURLE_OK && !r->headers_delivered && is_redirect(r->status)) {
            if (!r->blob && !r->probe)
                refuse(r, "refused a redirect of a manifest, tag list or index request "
                          "(redirects are followed for blobs only)");
            else if (r->blob && follow_redirect(r))
                continue;
        }
        if (r->refused) {
            deliver_refused(r);
            continue;
        }
        if (rc == CURLE_OK && r->status == 401 && !r->headers_delivered && !r->probe &&
            !r->foreign && !r->u->peer && r->attempts < MAX_AUTH_ATTEMPTS && handle_challenge(r))
            continue;
        if (r->refused) {
            deliver_refused(r);
            continue;
        }
        if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && r->headers_delivered)) {
            char err[CURL_ERROR_SIZE + 64];
            snprintf(err, sizeof(err), "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
            if (!r->headers_delivered && failover(r, err))
                continue;
            if (r->headers_delivered) {
                /* the body was cut: the caller already has the headers */
                struct upstream_response resp;
                fill_response(r, &resp);
                resp.error = err;
                call_done(r, &resp, -EIO);
                req_free(r);
            } else {
                deliver(r, -EIO, err);
            }
            continue;
        }
        deliver(r, rc == CURLE_OK ? 0 : -ECANCELED, NULL);
    }
}

/* ---- public API ---- */

/* A main request for path (taken over, malloc'ed) with scope (taken over) and a copy of accept,
 * started at endpoint ep (an endpoint's own probe), or at the first endpoint up when ep < 0;
 * NULL when out of memory (what was taken over is freed). */
static struct upstream_req *main_req_start(struct upstream *u, enum upstream_method method,
                                           char *path, char *scope, const char *accept, int probe,
                                           int blob, const struct upstream_callbacks *cb, void *ud,
                                           int ep)
{
    struct upstream_req *r = calloc(1, sizeof(*r));
    char *acc = accept ? strdup(accept) : NULL;
    if (!r || !path || !scope || (accept && !acc)) {
        free(path);
        free(scope);
        free(acc);
        free(r);
        return NULL;
    }
    r->u = u;
    r->kind = REQ_MAIN;
    r->method = method;
    r->probe = probe;
    r->blob = blob;
    if (!blob)
        r->deadline_ms = now_ms() + u->client->total_small_ms;
    r->cb = cb;
    r->ud = ud;
    r->path = path;
    r->scope = scope;
    r->accept = acc;
    r->ep_probe = ep >= 0;
    if (u->client->via_now && !probe)
        r->via = strdup(u->client->via_now); /* a failed copy only shortens the chain */
    buf_init(&r->body, 0);
    r->want_basic = u->basic && !probe;
    link_req(r);
    if (set_endpoint(r, ep >= 0 ? (size_t)ep : (size_t)pick_endpoint(u, 0)) || req_start(r)) {
        req_free(r);
        return NULL;
    }
    return r;
}

struct upstream_req *upstream_request(struct upstream *u, enum upstream_method method,
                                      const char *repo, const char *what, const char *query,
                                      const char *accept, const struct upstream_callbacks *cb,
                                      void *ud)
{
    /* a blob source may keep the repositories under a prefix of its own */
    const char *pre = u->repo_prefix ? u->repo_prefix : "", *sep = u->repo_prefix ? "/" : "";
    /* a parent regcache is told which of its upstreams the repository is of */
    char *ns = u->ns ? curl_easy_escape(NULL, u->ns, 0) : NULL;
    size_t rlen = strlen(pre) + 1 + strlen(repo);
    size_t n = rlen + strlen(what) + (query ? strlen(query) : 0) + (ns ? strlen(ns) : 0) + 24;
    char *path = malloc(n), *scope = malloc(rlen + 32);
    if (path && u->peer) {
        /* the member routes it to the same upstream by name */
        n += strlen(u->primary->name) + 8;
        char *p = realloc(path, n);
        if (p)
            snprintf(path = p, n, "/v2/%s/%s?ns=%s%s%s", repo, what, u->primary->name,
                     query ? "&" : "", query ? query : "");
        else
            free(path), path = NULL;
    } else if (path) {
        snprintf(path, n, "/v2/%s%s%s/%s%s%s%s%s", pre, sep, repo, what,
                 query || ns ? "?" : "", query ? query : "", query && ns ? "&" : "",
                 ns ? "ns=" : "");
        if (ns)
            snprintf(path + strlen(path), n - strlen(path), "%s", ns);
    }
    curl_free(ns);
    if (scope)
        snprintf(scope, rlen + 32, "repository:%s%s%s:pull", pre, sep, repo);
    struct upstream_req *r = main_req_start(u, method, path, scope, accept, 0,
                                            strncmp(what, "blobs/", 6) == 0, cb, ud, -1);
    if (r) /* no body arrives before the loop runs curl again */
        r->manifest = strncmp(what, "manifests/", 10) == 0;
    return r;
}

struct upstream_req *upstream_request_with(struct upstream *u, enum upstream_method method,
                                           const char *repo, const char *what, const char *query,
                                           const char *accept,
                                           const struct upstream_req_options *opt,
                                           const struct upstream_callbacks *cb, void *ud)
{
    struct upstream_client *c = u->client;
    const char *was = c->via_now;
    if (opt && opt->via)
        c->via_now = opt->via;
    struct upstream_req *r = upstream_request(u, method, repo, what, query, accept, cb, ud);
    c->via_now = was;
    if (!r || !opt || !opt->range_from)
        return r;
    r->range_from = opt->range_from;
    if (opt->if_range && strlen(opt->if_range) < sizeof(r->if_range))
        snprintf(r->if_range, sizeof(r->if_range), "%s", opt->if_range);
    /* Not sent yet (the loop has not run curl since): begin again with the headers. A request
     * waiting for a token starts later and adds them then. */
    if (r->easy && req_start(r)) {
        req_free(r);
        return NULL;
    }
    return r;
}

struct upstream_req *upstream_probe(struct upstream *u, const struct upstream_callbacks *cb,
                                    void *ud)
{
    return main_req_start(u, UPSTREAM_GET, strdup("/v2/"), strdup(""), NULL, 1, 0, cb, ud, -1);
}

void upstream_client_on_outcome(struct upstream_client *c, upstream_outcome_fn fn, void *ud)
{
    c->on_outcome = fn;
    c->outcome_ud = ud;
}

void upstream_req_resume(struct upstream_req *r)
{
    if (r->easy)
        curl_easy_pause(r->easy, CURLPAUSE_CONT);
}

void upstream_req_cancel(struct upstream_req *r)
{
    req_free(r);
}

static void upstream_free(struct upstream *u)
{
    if (!u)
        return;
    free(u->name);
    free(u->url);
    free(u->username);
    free(u->password);
    free(u->ca_file);
    free(u->source_name);
    free(u->repo_prefix);
    free(u->ns);
    for (size_t i = 0; i < u->n_eps; i++)
        free(u->eps[i].url);
    for (size_t i = 0; i < u->n_sources; i++)
        upstream_free(u->sources[i]);
    for (size_t i = 0; i < MEMBERS_MAX; i++)
        upstream_free(u->peers[i]);
    token_cache_free(u->tokens);
    free(u);
}

/* An upstream (or a blob source) with endpoints urls[0..n-1]; NULL when out of memory. */
static struct upstream *upstream_new(struct upstream_client *c, const char *name, const char **urls,
                                     size_t n, const char *username, const char *password,
                                     const char *ca_file)
{
    struct upstream *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->client = c;
    u->name = strdup(name);
    u->url = strdup(urls[0]);
    u->username = username ? strdup(username) : NULL;
    u->password = password ? strdup(password) : NULL;
    u->ca_file = ca_file ? strdup(ca_file) : NULL;
    u->tokens = token_cache_new();
    int ok = u->name && u->url && u->tokens && (!username || u->username) &&
             (!password || u->password) && (!ca_file || u->ca_file);
    for (size_t i = 0; i < n && i < CONFIG_MAX_URLS; i++) {
        u->eps[i].u = u;
        u->eps[i].url = strdup(urls[i]);
        u->n_eps = i + 1;
        ok = ok && u->eps[i].url;
        u->url_classes |= upstream_host_class(urls[i]);
    }
    if (!ok) {
        upstream_free(u);
        return NULL;
    }
    return u;
}

/* u as each other cluster member serves it: one upstream per member, its URL the member's. */
static int add_peers(struct upstream_client *c, struct upstream *u, const struct config *cfg)
{
    if (!c->cluster_secret) {
        if (members_normalise(cfg->cluster_self, c->cluster_self, sizeof(c->cluster_self)) ||
            !(c->cluster_secret = strdup(cfg->cluster_secret)))
            return -ENOMEM;
    }
    for (size_t i = 0; i < cfg->n_cluster_members && i < MEMBERS_MAX; i++) {
        char url[MEMBERS_URL_MAX], name[MEMBERS_URL_MAX + 200];
        if (members_normalise(cfg->cluster_members[i], url, sizeof(url)))
            return -EINVAL;
        if (!strcmp(url, c->cluster_self))
            continue;
        snprintf(name, sizeof(name), "%s via %s", u->name, url);
        const char *one[1] = {url};
        struct upstream *p = upstream_new(c, name, one, 1, NULL, NULL, NULL);
        if (!p)
            return -ENOMEM;
        u->peers[i] = p;
        p->primary = u; /* not seen by the outcome and rate-limit hooks */
        p->peer = 1;
        p->member = i;
        p->track_endpoints = 1;
        p->source_name = strdup(url);
        if (!p->source_name)
            return -ENOMEM;
    }
    return 0;
}

int upstream_client_new(uv_loop_t *loop, const struct config *cfg, struct upstream_client **out)
{
    static int curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT))
            return -EIO;
        curl_ready = 1;
    }
    struct upstream_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->connect_timeout_ms = (long)cfg->connect_timeout_ms;
    c->low_speed_time_s = (long)((cfg->low_speed_time_ms + 999) / 1000);
    c->first_byte_ms = cfg->first_byte_ms ? cfg->first_byte_ms : 10000;
    c->total_small_ms = cfg->total_small_ms ? cfg->total_small_ms : 60000;
    c->max_blob_bytes = cfg->max_blob_bytes ? cfg->max_blob_bytes : (64ULL << 30);
    c->probe_ms = upstream_probe_interval_ms(cfg->revalidate_after_ms);
    static const char *const proxy_vars[] = {"http_proxy", "https_proxy", "HTTPS_PROXY",
                                             "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof(proxy_vars) / sizeof(proxy_vars[0]); i++) {
        const char *v = getenv(proxy_vars[i]);
        if (v && *v)
            c->proxied = 1;
    }
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        return -ENOMEM;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* idle upstream connections kept for reuse: enough for a busy LAN, bounded whatever the
     * load (the default grows with the number of transfers ever in flight) */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 16L);
    /* open at once per upstream host (more requests queue): a crowd of misses cannot make the
     * mirror open hundreds of sockets to one upstream */
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)cfg->upstream_connections);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_timer_init(loop, &c->deadline_timer);
    c->deadline_timer.data = c;
    uv_timer_start(&c->deadline_timer, on_deadline_timer, DEADLINE_TICK_MS, DEADLINE_TICK_MS);
    uv_unref((uv_handle_t *)&c->deadline_timer);
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct config_upstream *cu = &cfg->upstreams[i];
        const char *one[1] = {cu->url};
        struct upstream *u =
            upstream_new(c, cu->name, cu->n_urls ? (const char **)cu->urls : one,
                         cu->n_urls ? cu->n_urls : 1, cu->username, cu->password, cu->ca_file);
        if (!u)
            goto nomem;
        c->ups[c->n_ups++] = u;
        u->track_endpoints = u->n_eps > 1;
        u->docker_hub = strcmp(cu->name, "docker.io") == 0 ||
                        strstr(cu->url, "://registry-1.docker.io") != NULL;
        if (cu->parent && !(u->ns = strdup(cu->name)))
            goto nomem;
        for (size_t j = 0; j < cu->n_blob_sources; j++) {
            const struct config_blob_source *b = &cu->blob_sources[j];
            char name[512];
            snprintf(name, sizeof(name), "%s blob source %s", cu->name, b->name);
            const char *url[1] = {b->url};
            struct upstream *s =
                upstream_new(c, name, url, 1, b->username, b->password, b->ca_file);
            if (!s)
                goto nomem;
            u->sources[u->n_sources++] = s;
            s->primary = u;
            s->track_endpoints = 1;
            s->before = b->before;
            s->source_name = strdup(b->name);
            s->repo_prefix = b->repository_prefix ? strdup(b->repository_prefix) : NULL;
            if (!s->source_name || (b->repository_prefix && !s->repo_prefix))
                goto nomem;
        }
        if (cfg->n_cluster_members && add_peers(c, u, cfg))
            goto nomem;
    }
    *out = c;
    return 0;
nomem:
    upstream_client_shutdown(c);
    upstream_client_free(c);
    return -ENOMEM;
}

void upstream_client_shutdown(struct upstream_client *c)
{
    if (!c || c->shut_down)
        return;
    c->shut_down = 1;
    while (c->reqs) {
        req_free(c->reqs);
    }
    while (c->foreign) {
        struct upstream_easy *e = c->foreign;
        upstream_easy_remove(e);
        e->done(e, (int)CURLE_ABORTED_BY_CALLBACK);
    }
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, NULL);
    uv_timer_stop(&c->deadline_timer);
    uv_close((uv_handle_t *)&c->deadline_timer, NULL);
}

int upstream_easy_add(struct upstream_client *c, struct upstream_easy *e)
{
    if (c->shut_down)
        return -ECANCELED;
    e->not_ours = 1;
    e->client = c;
    curl_easy_setopt(e->easy, CURLOPT_PRIVATE, e);
    if (curl_multi_add_handle(c->multi, e->easy) != CURLM_OK)
        return -ENOMEM;
    e->prev = NULL;
    e->next = c->foreign;
    if (c->foreign)
        c->foreign->prev = e;
    c->foreign = e;
    return 0;
}

void upstream_easy_remove(struct upstream_easy *e)
{
    struct upstream_client *c = e->client;
    if (!c)
        return;
    curl_multi_remove_handle(c->multi, e->easy);
    if (e->prev)
        e->prev->next = e->next;
    else
        c->foreign = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->next = e->prev = NULL;
    e->client = NULL;
}

uv_loop_t *upstream_client_loop(const struct upstream_client *c)
{
    return c->loop;
}

void upstream_client_free(struct upstream_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_ups; i++)
        upstream_free(c->ups[i]);
    free(c->instance);
    free(c->cluster_secret);
    free(c);
}

int upstream_client_set_instance(struct upstream_client *c, const char *id)
{
    char *copy = id ? strdup(id) : NULL;
    if (id && !copy)
        return -ENOMEM;
    free(c->instance);
    c->instance = copy;
    return 0;
}

void upstream_client_set_via(struct upstream_client *c, const char *chain)
{
    c->via_now = chain && *chain ? chain : NULL;
}

const char *upstream_via_now(const struct upstream *u)
{
    return u->client->via_now;
}

void upstream_set_via_now(struct upstream *u, const char *chain)
{
    upstream_client_set_via(u->client, chain);
}

int upstream_is_parent(const struct upstream *u)
{
    return u->ns != NULL;
}

void upstream_client_on_ratelimit(struct upstream_client *c, upstream_ratelimit_fn fn, void *ud)
{
    c->on_ratelimit = fn;
    c->ratelimit_ud = ud;
}

struct upstream *upstream_get(struct upstream_client *c, size_t index)
{
    return index < c->n_ups ? c->ups[index] : NULL;
}

struct upstream *upstream_find(struct upstream_client *c, const char *name)
{
    for (size_t i = 0; i < c->n_ups; i++)
        if (strcmp(c->ups[i]->name, name) == 0)
            return c->ups[i];
    return NULL;
}

size_t upstream_count(const struct upstream_client *c)
{
    return c->n_ups;
}

const char *upstream_name(const struct upstream *u)
{
    return u->name;
}

int upstream_is_docker_hub(const struct upstream *u)
{
    return u->docker_hub;
}

size_t upstream_source_count(const struct upstream *u)
{
    return u->n_sources;
}

struct upstream *upstream_source(const struct upstream *u, size_t i)
{
    return i < u->n_sources ? u->sources[i] : NULL;
}

int upstream_source_before(const struct upstream *src)
{
    return src->before;
}

const char *upstream_source_name(const struct upstream *src)
{
    return src->source_name ? src->source_name : src->name;
}

struct upstream *upstream_peer(const struct upstream *u, size_t member)
{
    return member < MEMBERS_MAX ? u->peers[member] : NULL;
}

int upstream_is_peer(const struct upstream *u)
{
    return u->peer;
}

size_t upstream_peer_member(const struct upstream *u)
{
    return u->member;
}

struct upstream *upstream_primary(struct upstream *u)
{
    return u->primary ? u->primary : u;
}
