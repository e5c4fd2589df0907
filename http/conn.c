/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <pthread.h>
#include <stdatomic.h>

#include "http/impl.h"
#include "util/cidr.h"
#include "util/clock.h"
#include "util/escape.h"
#include "util/log.h"

#define OUT_MAX (32u << 20) /* headers plus in-memory bodies (tag lists, errors) */

static void update_poll(struct conn *c);
static void flush(struct conn *c);
static void parse_more(struct conn *c);

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 508: return "Loop Detected";
    default: return "Status";
    }
}

/* ---- access log ---- */

/* Probes and scrapes come every few seconds and say nothing about clients. */
static int is_probe(const struct http_request *req)
{
    static const char *const paths[] = {"/livez", "/readyz", "/healthz", "/metrics"};
    if (!req->path)
        return 0;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (strcmp(req->path, paths[i]) == 0)
            return 1;
    return 0;
}

static const char *x_cache_value(const struct http_request *req)
{
    /* answers that went through the cache; hosted repositories are the origin, not a cache */
    const char *o = req->outcome;
    if (!o || !req->upstream)
        return NULL;
    return strcmp(o, "hit") == 0     ? "HIT"
           : strcmp(o, "miss") == 0  ? "MISS"
           : strcmp(o, "fill") == 0  ? "FILL"
           : strcmp(o, "stale") == 0 ? "STALE"
                                     : NULL;
}

/* The log line is built in one buffer (the loop thread only) and written with one write():
 * every field escaped, the longest of each bounded by the parser's limits. */
#define ACCESS_LINE_MAX (6 * (HTTP_MAX_URL + HTTP_MAX_USER_AGENT + HTTP_MAX_REFERER + 256) + 1024)
static __thread char access_line[ACCESS_LINE_MAX]; /* one per loop thread */

struct line {
    char *p;
    size_t len, cap;
};

/* Room for an escaped value, keeping reserve bytes for what follows it. */
static size_t room(const struct line *l, size_t reserve)
{
    return l->len + reserve < l->cap ? l->cap - l->len - reserve : 0;
}

static void put_str(struct line *l, const char *s)
{
    size_t n = strlen(s);
    if (l->len + n + 1 <= l->cap) {
        memcpy(l->p + l->len, s, n);
        l->len += n;
    }
}

static void put_printf(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_printf(struct line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->p + l->len, l->cap - l->len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < l->cap - l->len)
        l->len += (size_t)n;
    else
        l->p[l->len] = '\0';
}

/* A quoted text field ("-" when absent), or a JSON member ("name":"...", or null). */
static void put_text(struct line *l, const char *v)
{
    put_str(l, "\"");
    if (v && room(l, 2))
        l->len += escape_text(l->p + l->len, room(l, 2), v, strlen(v));
    else
        put_str(l, "-");
    put_str(l, "\"");
}

/* An unquoted text field: as a quoted one, spaces escaped too. */
static void put_bare(struct line *l, const char *v)
{
    if (!v || !*v) {
        put_str(l, "-");
        return;
    }
    for (; *v && l->len + 8 < l->cap; v++) {
        if (*v == ' ')
            put_str(l, "\\x20");
        else
            l->len += escape_text(l->p + l->len, room(l, 0), v, 1);
    }
}

static void put_json(struct line *l, const char *name, const char *v)
{
    put_printf(l, ",\"%s\":", name);
    if (!v) {
        put_str(l, "null");
        return;
    }
    put_str(l, "\"");
    if (room(l, 8))
        l->len += escape_json(l->p + l->len, room(l, 8), v, strlen(v));
    put_str(l, "\"");
}

static void log_access(struct conn *c, const char *note)
{
    const struct http_request *req = &c->rp.req;
    uint64_t duration_us = clock_mono_us() - c->started_us;
    enum http_access_log mode = c->srv->opts.access_log;
    if (mode != HTTP_ACCESS_OFF && (c->srv->opts.access_log_probes || !is_probe(req))) {
        struct line l = {access_line, 0, sizeof(access_line) - 2};
        struct tm tm;
        char ts[64], proto[16];
        gmtime_r(&c->started_wall.tv_sec, &tm);
        if (c->rp.llhttp.http_major || c->rp.llhttp.http_minor)
            snprintf(proto, sizeof(proto), "HTTP/%u.%u", (unsigned)c->rp.llhttp.http_major,
                     (unsigned)c->rp.llhttp.http_minor);
        else
            snprintf(proto, sizeof(proto), "HTTP/1.1");
        const char *method = req->method_name ? req->method_name : "-";
        const char *client = req->client[0] ? req->client : c->peer;
        const char *outcome = req->outcome && strcmp(req->outcome, "-") ? req->outcome : NULL;
        /* one word, so that the text field needs no escaping */
        const char *note_v = !note[0] ? NULL
                             : strcmp(note + 1, "client gone") == 0 ? "client-gone"
                                                                     : note + 1;
        if (mode == HTTP_ACCESS_JSON) {
            size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
            snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", c->started_wall.tv_nsec / 1000000);
            put_printf(&l, "{\"time\":\"%s\",\"log\":\"access\"", ts);
            put_json(&l, "client", client);
            put_json(&l, "peer", c->peer);
            put_json(&l, "user", req->user[0] ? req->user : NULL);
            put_json(&l, "method", method);
            put_json(&l, "target", req->target);
            put_json(&l, "protocol", proto);
            put_printf(&l, ",\"status\":%d,\"bytes\":%llu,\"duration\":%.6f", c->status,
                       (unsigned long long)c->body_bytes, (double)duration_us / 1e6);
            put_json(&l, "user_agent", req->user_agent);
            put_json(&l, "referer", req->referer);
            put_json(&l, "upstream", req->upstream);
            put_json(&l, "outcome", outcome);
            put_json(&l, "request_id", req->request_id[0] ? req->request_id : NULL);
            put_json(&l, "note", note_v);
            put_str(&l, "}");
        } else {
            /* the Combined Log Format, then key=value fields a combined parser ignores */
            strftime(ts, sizeof(ts), "%d/%b/%Y:%H:%M:%S +0000", &tm);
            put_bare(&l, client);
            put_str(&l, " - ");
            put_bare(&l, req->user);
            put_printf(&l, " [%s] \"", ts);
            put_bare(&l, method);
            put_str(&l, " ");
            put_bare(&l, req->target ? req->target : "-");
            put_printf(&l, " %s\" %d %llu ", proto, c->status, (unsigned long long)c->body_bytes);
            put_text(&l, req->referer);
            put_str(&l, " ");
            put_text(&l, req->user_agent);
            put_printf(&l, " rt=%.3f upstream=", (double)duration_us / 1e6);
            put_bare(&l, req->upstream);
            put_str(&l, " outcome=");
            put_bare(&l, outcome);
            put_str(&l, " id=");
            put_bare(&l, req->request_id);
            put_str(&l, " peer=");
            put_bare(&l, c->peer);
            put_str(&l, " note=");
            put_bare(&l, note_v);
        }
        l.p[l.len++] = '\n';
        log_hold_line(l.p, l.len); /* written before the loop waits again (server.c) */
    }
    if (c->srv->opts.on_response) {
        struct http_response_info info = {
            .status = c->status,
            .body_bytes = c->body_bytes,
            .duration_us = duration_us,
            .peer = c->peer,
            .note = note[0] ? note + 1 : NULL,
        };
        c->srv->opts.on_response(c->srv->hook_ud, &c->rp.req, &info);
    }
}

/* ---- who asked: the client behind trusted proxies, and the request's id ---- */

static int request_id_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= HTTP_REQUEST_ID_MAX &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:+/=-") == n;
}

/* 16 hex digits: a random prefix drawn at start-up (so that ids differ across restarts and
 * mirrors), then a count of requests (so that they never repeat within one run). */
static uint64_t id_prefix;
static atomic_uint_fast64_t id_count; /* every loop's requests */
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

static void seed_request_ids(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint32_t)clock_mono_us() ^ (uint32_t)getpid();
    id_prefix = (uint64_t)(r & 0xffffff) << 40; /* 24 random bits, 40 bits of count */
}

static void new_request_id(char *out, size_t len)
{
    pthread_once(&id_once, seed_request_ids);
    uint64_t n = atomic_fetch_add_explicit(&id_count, 1, memory_order_relaxed);
    uint64_t id = id_prefix | (n & ((UINT64_C(1) << 40) - 1));
    snprintf(out, len, "%016llx", (unsigned long long)id);
}

static void identify(struct conn *c)
{
    struct http_request *req = &c->rp.req;
    const struct http_server_opts *o = &c->srv->opts;
    struct ip_addr peer;
    snprintf(req->client, sizeof(req->client), "%s", c->peer);
    int trusted = o->n_trusted_proxies && ip_parse(c->peer, strlen(c->peer), &peer) == 0 &&
                  cidr_list_contains(o->trusted_proxies, o->n_trusted_proxies, &peer);
    if (trusted && req->forwarded_for)
        cidr_forwarded_client(req->forwarded_for, o->trusted_proxies, o->n_trusted_proxies,
                              req->client, sizeof(req->client));
    /* X-Forwarded-Proto is believed from anyone: it only shapes the token realm of the
     * challenge sent back to the same client, and proxies that terminate TLS rely on it */
    req->secure = c->ssl || req->forwarded_https;
    if (trusted && req->forwarded_id && request_id_ok(req->forwarded_id))
        snprintf(req->request_id, sizeof(req->request_id), "%s", req->forwarded_id);
    else
        new_request_id(req->request_id, sizeof(req->request_id));
}

/* ---- lifetime ----
 * conn_close stops all I/O and closes the two handles; once both are closed (and no sendfile
 * or pread is running on the thread pool) teardown closes the socket and gives the slot back.
 * The struct itself, with the request the handler may still look at, goes when the last
 * reference drops: the connection's own goes at teardown, a handler's whenever it lets go. */

static void wait_leave(struct conn *c);

static void release_body(struct conn *c)
{
    struct http_server *s = c->srv;
    buffered_add(s, -(int64_t)c->out_counted);
    c->out_counted = 0;
    if (c->shared) {
        if (!--c->shared->senders)
            buffered_add(s, -(int64_t)c->shared->len);
        shared_body_unref(c->shared);
        c->shared = NULL;
        c->shared_pos = 0;
    }
}

static void release_source(struct conn *c);

static void teardown(struct conn *c)
{
    if (c->torn_down || c->handles_open || c->io_busy)
        return;
    c->torn_down = 1;
    release_source(c);
    release_body(c);
    if (c->ssl) {
        SSL_shutdown(c->ssl); /* best effort: one non-blocking close_notify */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    tls_body_free(c);
    close(c->fd);
    c->fd = -1;
    server_conn_gone(c->srv, c);
    buf_free(&c->out);
    conn_unref(c); /* the connection's own reference */
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open)
        return;
    teardown(c);
}

void conn_ref(struct conn *c)
{
    c->refs++;
}

void conn_unref(struct conn *c)
{
    if (--c->refs)
        return;
    reqparse_free(&c->rp);
    free(c->own);
    buf_free(&c->out);
    free(c);
}

int conn_alive(const struct conn *c)
{
    return !c->closing;
}

const char *conn_peer(const struct conn *c)
{
    return c->peer;
}

static void release_feed(struct conn *c, int complete)
{
    if (!c->feeding)
        return;
    c->feeding = 0;
    if (c->feed.release)
        c->feed.release(c->feed.ctx, complete);
}

static void release_source(struct conn *c)
{
    release_feed(c, 0);
    tls_body_free(c); /* up to 256 KiB: not kept by idle TLS connections */
    if (!c->streaming)
        return;
    c->streaming = 0;
    if (c->src.release)
        c->src.release(c->src.ctx);
    else
        close(c->src.fd);
}

void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    if (c->move_to) {
        /* on its way to another loop, its handles closing: that loop closes it after the
         * answer (a write to a client that went away fails there) */
        c->close_after = 1;
        return;
    }
    c->closing = 1;
    wait_leave(c);
    if (c->reading_body) {
        c->reading_body = 0;
        c->body_on_end(c->body_ud, -ECONNRESET);
    }
    if (c->req_active && c->response_set)
        log_access(c, " aborted");
    conn_set_busy(c, 0);
    if (!c->io_busy)
        release_source(c); /* else once the thread pool is done with it (teardown) */
    release_body(c);
    uv_poll_stop(&c->poll);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->poll, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void conn_drain(struct conn *c)
{
    c->close_after = 1;
    if (!c->req_active)
        conn_close(c);
}

/* ---- requests waiting for their answer ---- */

static void wait_leave(struct conn *c)
{
    struct http_server *s = c->srv;
    if (!c->waiting)
        return;
    c->waiting = 0;
    if (c->wprev)
        c->wprev->wnext = c->wnext;
    else
        s->wait_head = c->wnext;
    if (c->wnext)
        c->wnext->wprev = c->wprev;
    else
        s->wait_tail = c->wprev;
    c->wnext = c->wprev = NULL;
    s->n_waiting--;
}

/* The handler returned (or the body ended) without an answer: the request now waits, at the
 * tail of the list. Past max_waiting, the request waiting longest is answered 503 and its
 * connection closed: a crowd of misses on a hung upstream never holds more than that many
 * slots, and what is left of max_connections stays free for hits and /healthz. */
static void wait_enter(struct conn *c)
{
    struct http_server *s = c->srv;
    if (c->waiting || c->closing || !c->req_active || c->response_set || c->reading_body)
        return;
    c->waiting = 1;
    c->wprev = s->wait_tail;
    c->wnext = NULL;
    if (s->wait_tail)
        s->wait_tail->wnext = c;
    else
        s->wait_head = c;
    s->wait_tail = c;
    s->n_waiting++;
    while (s->opts.max_waiting && s->n_waiting > s->opts.max_waiting) {
        struct conn *old = s->wait_head;
        wait_leave(old);
        old->close_after = 1;
        s->opts.error_writer(old, 503, s->hook_ud);
        if (!old->closing)
            conn_close(old); /* what did not go out at once is not waited for */
    }
}

static int can_parse(const struct conn *c)
{
    return !c->closing && !c->move_to &&
           (!c->req_active || (c->reading_body && !c->body_paused));
}

static void reject(struct conn *c, int status);

/* ---- deadlines ---- */

static uint64_t body_deadline(const struct conn *c)
{
    return c->body_clock + c->srv->opts.header_timeout_ms +
           c->body_in * 1000 / c->srv->opts.min_body_rate;
}

static int body_rate_applies(const struct conn *c)
{
    return c->reading_body && !c->body_paused && c->srv->opts.min_body_rate;
}

static void on_timer(uv_timer_t *t);

/* Starts the one timer for the earliest deadline: idle, request head, body rate. Deadlines only
 * move later on their own (touch), so this runs only when one is set or brought back. */
static void arm_timer(struct conn *c)
{
    if (c->closing || c->move_to)
        return;
    uint64_t now = uv_now(c->srv->loop);
    uint64_t due = c->last_active + c->srv->opts.idle_timeout_ms;
    if (c->head_deadline && c->head_deadline < due)
        due = c->head_deadline;
    if (body_rate_applies(c) && body_deadline(c) < due)
        due = body_deadline(c);
    uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static void touch(struct conn *c)
{
    c->last_active = uv_now(c->srv->loop);
}

/* 408 where an answer can still be written, then close. */
static void timed_out(struct conn *c)
{
    if (!c->req_active) {
        reject(c, 408);
    } else {
        c->close_after = 1;
        c->srv->opts.error_writer(c, 408, c->srv->hook_ud);
    }
    if (!c->closing)
        conn_close(c); /* what did not go out at once is not waited for */
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    uint64_t now = uv_now(c->srv->loop);
    if (c->head_deadline && now >= c->head_deadline) {
        if (c->rp.started)
            timed_out(c); /* slow headers: however steadily they trickle in */
        else
            conn_close(c); /* nothing of a request yet (or a TLS handshake): just close */
        return;
    }
    if (body_rate_applies(c) && now >= body_deadline(c)) {
        timed_out(c); /* a body trickled in slower than the minimum rate */
        return;
    }
    if (now - c->last_active >= c->srv->opts.idle_timeout_ms) {
        /* Idle keep-alive, or a client that stopped sending or reading: all end here. A request
         * waiting on the upstream is bounded by the upstream timeouts instead. */
        if ((c->reading_body && !c->body_paused) || (!c->req_active && c->rp.started)) {
            timed_out(c); /* a stalled body or head */
            return;
        }
        if (!c->req_active || c->want_write) {
            conn_close(c);
            return;
        }
        touch(c);
    }
    arm_timer(c);
}

static void wait_head(struct conn *c)
{
    if (c->srv->opts.header_timeout_ms && !c->head_deadline) {
        c->head_deadline = uv_now(c->srv->loop) + c->srv->opts.header_timeout_ms;
        arm_timer(c);
    }
}

/* ---- requests ---- */

static void begin_request(struct conn *c)
{
    c->reading_body = c->body_paused = c->body_done = 0;
    c->req_active = 1;
    c->response_set = 0;
    c->status = 0;
    c->body_bytes = 0;
    c->started_us = clock_mono_us();
    clock_gettime(CLOCK_REALTIME, &c->started_wall);
    conn_set_busy(c, 1);
    if (c->srv->draining || c->peer_closed)
        c->close_after = 1;
}

static void dispatch(struct conn *c)
{
    begin_request(c);
    c->head_deadline = 0;
    identify(c);
    c->srv->opts.handler(c, &c->rp.req, c->srv->opts.ud);
    if (!c->move_to) /* handed to another loop: it answers there */
        wait_enter(c);
}

static void reject(struct conn *c, int status)
{
    begin_request(c);
    c->head_deadline = 0;
    c->close_after = 1;
    struct http_request *req = &c->rp.req;
    if (!req->target && buf_terminate(&c->rp.url) == 0 && c->rp.url.len)
        req->target = c->rp.url.data;
    if (!req->method_name)
        req->method_name = "-";
    req->forwarded_for = req->forwarded_id = NULL; /* a refused head is not believed */
    identify(c);
    c->srv->opts.error_writer(c, status, c->srv->hook_ud);
}

static void keep_unparsed(struct conn *c);

static void parse_more(struct conn *c)
{
    if (c->in_parse)
        return; /* the loop below picks up where a nested response left off */
    c->in_parse = 1;
    conn_ref(c);
    while (can_parse(c) && c->rpos < c->rlen) {
        size_t used = 0;
        enum reqparse_event ev =
            reqparse_execute(&c->rp, c->rdata + c->rpos, c->rlen - c->rpos, &used);
        c->rpos += used;
        if (c->rp.started)
            wait_head(c);
        if (ev == REQPARSE_HEAD) {
            dispatch(c);
        } else if (ev == REQPARSE_BODY_END) {
            c->reading_body = 0;
            c->body_done = 1;
            c->body_on_end(c->body_ud, 0);
            wait_enter(c);
        } else if (ev == REQPARSE_ERROR) {
            c->rpos = c->rlen;
            reject(c, c->rp.error_status);
            break;
        }
    }
    keep_unparsed(c);
    c->in_parse = 0;
    if (!c->closing)
        update_poll(c);
    conn_unref(c);
}

static int on_body_data(void *ud, const char *data, size_t len)
{
    struct conn *c = ud;
    c->body_in += len;
    if (!c->body_on_data(c->body_ud, data, len))
        return 0;
    c->body_paused = 1;
    c->body_paused_at = uv_now(c->srv->loop);
    return 1;
}

/* recv/send, through TLS when the connection has it: >0 bytes, 0 for end of stream,
 * -EAGAIN (want_write set when TLS needs the socket writable), or another -errno. */
static ssize_t tls_result(struct conn *c, int n, int writing)
{
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ) {
        if (writing)
            c->tls_read_wants_write = 0;
        return -EAGAIN;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        if (!writing)
            c->tls_read_wants_write = 1;
        c->want_write = 1;
        return -EAGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    ERR_clear_error();
    return -EIO;
}

static ssize_t io_recv(struct conn *c, char *buf, size_t len)
{
    if (c->ssl) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        return n > 0 ? n : tls_result(c, n, 0);
    }
    ssize_t n = recv(c->fd, buf, len, 0);
    return n >= 0 ? n : -errno;
}

static ssize_t io_send(struct conn *c, const char *buf, size_t len, int more)
{
    if (c->ssl) {
        ERR_clear_error();
        int n = SSL_write(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        return n > 0 ? n : tls_result(c, n, 1);
    }
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
    return n >= 0 ? n : -errno;
}

/* What the parser left of the shared read buffer moves to the connection's own buffer (the next
 * recv, on any connection, overwrites the shared one); an empty own buffer is freed. */
static void keep_unparsed(struct conn *c)
{
    if (c->rpos == c->rlen) {
        free(c->own);
        c->own = NULL;
        c->rdata = NULL;
        c->rpos = c->rlen = 0;
        return;
    }
    if (c->rdata == c->own)
        return;
    size_t left = c->rlen - c->rpos;
    char *own = malloc(left);
    if (!own) {
        conn_close(c);
        return;
    }
    memcpy(own, c->rdata + c->rpos, left);
    free(c->own);
    c->own = own;
    c->rdata = own;
    c->rpos = 0;
    c->rlen = left;
}

static void do_read(struct conn *c)
{
    /* a connection reads only once it has parsed all it had: see keep_unparsed */
    while (can_parse(c) && c->rpos == c->rlen) {
        ssize_t n = io_recv(c, c->srv->rbuf, READ_BUF);
        if (n == 0) {
            c->peer_closed = 1;
            conn_close(c);
            return;
        }
        if (n < 0) {
            if (n == -EINTR)
                continue;
            if (n != -EAGAIN && n != -EWOULDBLOCK)
                conn_close(c);
            return;
        }
        c->rdata = c->srv->rbuf;
        c->rpos = 0;
        c->rlen = (size_t)n;
        touch(c);
        parse_more(c);
        /* one read a turn unless more is known to wait: a client answered at once would
         * otherwise be served again and again while the others' requests wait */
        if ((size_t)n < READ_BUF && !(c->ssl && SSL_has_pending(c->ssl)))
            break;
    }
}

static int wants_read(struct conn *c)
{
    return can_parse(c) && c->rpos == c->rlen && !c->peer_closed;
}

static void set_poll(struct conn *c, int lazy);

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct conn *c = h->data;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_ref(c);
    /* an event watched lazily (set_poll) that came unwanted stops being watched */
    int unwanted = ((events & UV_READABLE) && !wants_read(c)) ||
                   ((events & UV_WRITABLE) && !c->want_write);
    if (events & UV_WRITABLE) {
        c->want_write = 0;
        flush(c);
        if (c->tls_read_wants_write && !c->closing && !c->move_to) {
            c->tls_read_wants_write = 0;
            do_read(c);
        }
    }
    if ((events & UV_READABLE) && !c->closing && !c->move_to)
        do_read(c);
    if ((events & UV_DISCONNECT) && !c->closing && !c->move_to) {
        c->peer_closed = 1;
        c->close_after = 1;
        /* Idle, or its request still waiting for an answer (a miss on a slow upstream): the
         * client has gone, and its slot with it. The handler learns it from conn_alive. */
        if (!c->req_active || (!c->response_set && !c->reading_body)) {
            if (c->req_active)
                log_access(c, " client gone");
            conn_close(c);
        }
    }
    if (!c->closing)
        set_poll(c, !unwanted);
    conn_unref(c);
}

/* The poll watches what the connection wants: to read once it has parsed all it had, to write
 * what is queued, the peer's hang-up. With lazy, an event no longer wanted stays watched until
 * it fires (on_poll): a request answered after its loop turned (by the thread pool, another
 * loop) would otherwise cost two epoll_ctl, one to stop reading and one to read again, while a
 * client waiting for its answer sends nothing that would wake the loop. */
static void set_poll(struct conn *c, int lazy)
{
    if (c->closing || c->move_to)
        return;
    int ev = 0;
    if (wants_read(c))
        ev |= UV_READABLE;
    if (c->want_write)
        ev |= UV_WRITABLE;
    if (!c->peer_closed) {
        ev |= UV_DISCONNECT;
        if (lazy)
            ev |= c->armed & (UV_READABLE | UV_WRITABLE);
    }
    if (ev == c->armed)
        return;
    c->armed = ev;
    if (ev)
        uv_poll_start(&c->poll, ev, on_poll);
    else
        uv_poll_stop(&c->poll);
}

static void update_poll(struct conn *c)
{
    set_poll(c, 1);
}

void conn_accepted(struct http_server *s, int fd, const char *peer)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        server_slot_release(s);
        return;
    }
    c->srv = s;
    c->fd = fd;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->refs = 1;
    c->home = s;
    buf_init(&c->out, OUT_MAX);
    reqparse_init(&c->rp);
    c->rp.on_body = on_body_data;
    c->rp.ud = c;
    if (s->tls) {
        c->ssl = SSL_new(s->tls); /* holds its own reference to the context */
        if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
            SSL_free(c->ssl);
            close(fd);
            free(c);
            server_slot_release(s);
            return;
        }
        SSL_set_accept_state(c->ssl);
    }
    if (uv_poll_init_socket(s->loop, &c->poll, fd)) {
        SSL_free(c->ssl);
        close(fd);
        free(c);
        server_slot_release(s);
        return;
    }
    uv_timer_init(s->loop, &c->timer);
    c->poll.data = c->timer.data = c;
    c->handles_open = 2;
    server_conn_join(s, c); /* its slot in the group's count was taken at accept */
    touch(c);
    arm_timer(c);
    wait_head(c); /* the first request (and a TLS handshake) is due within the head deadline */
    update_poll(c);
}

/* ---- responses ---- */

static void response_done(struct conn *c)
{
    log_access(c, "");
    release_source(c);
    release_body(c);
    c->req_active = 0;
    c->response_set = 0;
    conn_set_busy(c, 0);
    if (c->close_after) {
        conn_close(c);
        return;
    }
    if (c->home != c->srv && !c->homeward) {
        /* a request handed over here is answered: home at the end of this turn, unless a
         * handler still holds the connection then, or the next request has come */
        c->homeward = 1;
        conn_ref(c);
        c->move_next = c->srv->homeward;
        c->srv->homeward = c;
        uv_check_start(&c->srv->homeward_check, server_on_homeward);
    }
    /* idle until the next request: nothing of this one is kept */
    reqparse_release(&c->rp);
    buf_free(&c->out);
    c->out_pos = 0;
    touch(c);
    parse_more(c);
}

static void after_sendfile(uv_work_t *w, int status)
{
    struct conn *c = w->data;
    c->io_busy = 0;
    if (c->closing || status) {
        teardown(c); /* when it waited for this */
        conn_unref(c);
        return;
    }
    ssize_t n = c->work_result;
    if (n > 0) {
        c->src.offset += (uint64_t)n;
        c->body_bytes += (uint64_t)n;
        touch(c);
        flush(c);
    } else if (n < 0 && (c->work_errno == EAGAIN || c->work_errno == EWOULDBLOCK)) {
        c->want_write = 1;
        update_poll(c);
    } else {
        conn_close(c); /* socket error, or the file is shorter than it said */
    }
    conn_unref(c);
}

static void work_sendfile(uv_work_t *w)
{
    struct conn *c = w->data;
    off_t off = (off_t)c->src.offset;
    size_t count = (size_t)(c->work_result);
    ssize_t n;
    do
        n = sendfile(c->fd, c->src.fd, &off, count);
    while (n < 0 && errno == EINTR);
    c->work_result = n;
    c->work_errno = n < 0 ? errno : 0;
}

/* Are bytes [off, off + count) of fd in the page cache, so that reading them cannot block? A
 * one-byte read with RWF_NOWAIT at each end answers without waiting for the disk (it fails
 * with EAGAIN instead); pages in between are taken to follow their neighbours. */
static int resident(int fd, uint64_t off, uint64_t count)
{
    char byte;
    struct iovec v = {&byte, 1};
    return preadv2(fd, &v, 1, (off_t)off, RWF_NOWAIT) == 1 &&
           preadv2(fd, &v, 1, (off_t)(off + count - 1), RWF_NOWAIT) == 1;
}

/* Plain HTTP file bodies (and TLS ones when the kernel encrypts: SSL_sendfile): sendfile
 * straight from the loop while the bytes are in the page cache (a hot blob: the common case for
 * a mirror), at most INLINE_SEND_BUDGET per turn so that one fast client does not hold the
 * loop. Returns 1 when the caller must stop here (the socket is full, the turn is used up, or
 * the connection closed), 0 when the bytes up to avail are sent or the next ones must come
 * from the disk: the thread pool sends those (with kTLS: reads them, for SSL_write). */
static int sendfile_inline(struct conn *c, uint64_t avail)
{
    uint64_t budget = INLINE_SEND_BUDGET;
    while (c->src.offset < avail) {
        uint64_t count = avail - c->src.offset;
        if (count > INLINE_SEND_CHUNK)
            count = INLINE_SEND_CHUNK;
        if (!budget) {
            c->want_write = 1; /* the socket is still writable: go on next turn */
            update_poll(c);
            return 1;
        }
        if (!resident(c->src.fd, c->src.offset, count))
            return 0;
        off_t off = (off_t)c->src.offset;
        ssize_t n;
        if (c->ssl && (n = tls_body_sendfile(c, off, (size_t)count)) < 0)
            errno = (int)-n;
        else if (!c->ssl)
            n = sendfile(c->fd, c->src.fd, &off, (size_t)count);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->want_write = 1;
            update_poll(c);
            return 1;
        }
        if (n <= 0) {
            conn_close(c); /* socket error, or the file is shorter than it said */
            return 1;
        }
        c->src.offset += (uint64_t)n;
        c->body_bytes += (uint64_t)n;
        budget -= (uint64_t)n < budget ? (uint64_t)n : budget;
        touch(c);
    }
    return 0;
}

/* TLS bodies: the next piece of the file into tls_buf (sendfile cannot encrypt). */
static void work_pread(uv_work_t *w)
{
    struct conn *c = w->data;
    ssize_t n;
    do
        n = pread(c->src.fd, c->tls_buf, (size_t)c->work_result, (off_t)c->src.offset);
    while (n < 0 && errno == EINTR);
    c->work_result = n;
    c->work_errno = n < 0 ? errno : 0;
}

static void after_pread(uv_work_t *w, int status)
{
    struct conn *c = w->data;
    c->io_busy = 0;
    if (c->closing || status) {
        teardown(c); /* when it waited for this */
        conn_unref(c);
        return;
    }
    if (c->work_result > 0) {
        c->tls_head = 0;
        c->tls_len = (size_t)c->work_result;
        c->tls_pos = 0;
        c->src.offset += (uint64_t)c->work_result;
        flush(c);
    } else {
        conn_close(c); /* the file is shorter than it said */
    }
    conn_unref(c);
}

/* TLS: what tls_buf holds goes out encrypted before more is read: 0 once it has, 1 when the
 * caller must stop (the socket is full, or the connection closed). */
static int send_tls_buf(struct conn *c)
{
    while (c->tls_pos < c->tls_len) {
        ssize_t n = io_send(c, c->tls_buf + c->tls_pos, c->tls_len - c->tls_pos, 0);
        if (n < 0) {
            if (n == -EAGAIN) {
                c->want_write = 1;
                update_poll(c);
                return 1;
            }
            conn_close(c);
            return 1;
        }
        size_t head = c->tls_pos < c->tls_head ? c->tls_head - c->tls_pos : 0;
        c->tls_pos += (size_t)n;
        c->body_bytes += (uint64_t)n - ((size_t)n < head ? (size_t)n : head);
        touch(c);
    }
    c->tls_pos = c->tls_len = c->tls_head = 0;
    return 0;
}

/* TLS file bodies from the loop while the bytes are in the page cache, at most
 * TLS_INLINE_BUDGET per turn: 1 when the caller must stop (as sendfile_inline), 0 when the
 * bytes up to avail are sent or the next ones must be read on the thread pool. */
static int tls_inline(struct conn *c, uint64_t avail)
{
    uint64_t budget = TLS_INLINE_BUDGET;
    while (c->src.offset < avail) {
        if (!budget) {
            c->want_write = 1; /* the socket is still writable: go on next turn */
            update_poll(c);
            return 1;
        }
        size_t n = tls_body_read(c, avail);
        if (!n)
            return 0;
        budget -= n < budget ? n : budget;
        if (send_tls_buf(c))
            return 1;
    }
    return 0;
}

static void flush(struct conn *c)
{
    if (c->closing || c->io_busy)
        return;
    /* a small body joins its head (a TLS record, or a plain send), unless the kernel encrypts */
    if (c->streaming && (!c->ssl || !tls_body_kernel(c)))
        tls_body_join_head(c);
    while (c->out_pos < c->out.len) {
        ssize_t n = io_send(c, c->out.data + c->out_pos, c->out.len - c->out_pos,
                            c->streaming || c->shared);
        if (n < 0) {
            if (n == -EINTR)
                continue;
            if (n == -EAGAIN || n == -EWOULDBLOCK) {
                c->want_write = 1;
                update_poll(c);
                return;
            }
            conn_close(c);
            return;
        }
        c->out_pos += (size_t)n;
        touch(c);
    }
    /* a shared body, straight from its memory */
    while (c->shared && c->shared_pos < c->shared->len) {
        ssize_t n = io_send(c, c->shared->data + c->shared_pos, c->shared->len - c->shared_pos, 0);
        if (n < 0) {
            if (n == -EINTR)
                continue;
            if (n == -EAGAIN || n == -EWOULDBLOCK) {
                c->want_write = 1;
                update_poll(c);
                return;
            }
            conn_close(c);
            return;
        }
        c->shared_pos += (size_t)n;
        touch(c);
    }
    /* TLS: the file bytes read so far go out encrypted before more is read */
    if (send_tls_buf(c))
        return;
    buf_reset(&c->out);
    c->out_pos = 0;
    if (c->feeding) {
        buffered_add(c->srv, -(int64_t)c->out_counted); /* fed bytes count until sent */
        c->out_counted = 0;
        if (c->feed_left) {
            if (c->feed.drained)
                c->feed.drained(c->feed.ctx);
            return; /* conn_feed brings more */
        }
        release_feed(c, 1);
    }
    if (c->streaming) {
        uint64_t avail = c->src.end;
        int failed = 0;
        if (c->src.readable) {
            uint64_t r = c->src.readable(c->src.ctx, &failed);
            if (r < avail)
                avail = r;
        }
        int kernel = c->ssl && tls_body_kernel(c);
        if ((!c->ssl || kernel) && c->src.offset < avail && sendfile_inline(c, avail))
            return;
        if (c->ssl && !kernel && c->src.offset < avail && tls_inline(c, avail))
            return;
        if (c->src.offset < avail) {
            uint64_t count = avail - c->src.offset;
            uint64_t chunk = c->ssl ? TLS_CHUNK : SENDFILE_CHUNK;
            if (c->ssl && tls_body_buffer(c, count < chunk ? (size_t)count : chunk)) {
                conn_close(c);
                return;
            }
            if (c->ssl && chunk > c->tls_cap)
                chunk = c->tls_cap;
            c->work_result = (ssize_t)(count < chunk ? count : chunk);
            c->work.data = c;
            c->io_busy = 1;
            conn_ref(c);
            if (uv_queue_work(c->srv->loop, &c->work, c->ssl ? work_pread : work_sendfile,
                              c->ssl ? after_pread : after_sendfile)) {
                c->io_busy = 0;
                conn_unref(c);
                conn_close(c);
            }
            return;
        }
        if (c->src.offset < c->src.end) {
            if (failed)
                conn_close(c); /* the response ends short: the client sees the failure */
            return;            /* conn_wake brings more */
        }
        release_source(c);
    }
    if (c->req_active && c->response_set)
        response_done(c);
}

void conn_wake(struct conn *c)
{
    if (!c->closing && c->streaming && !c->want_write)
        flush(c);
}

/* Does a header line of headers start with name (len bytes, the colon included)? */
static int names_header(const char *headers, const char *name, size_t len)
{
    for (const char *line = headers; *line;) {
        if (strncasecmp(line, name, len) == 0)
            return 1;
        const char *end = strstr(line, "\r\n");
        if (!end)
            break;
        line = end + 2;
    }
    return 0;
}

static int start_response(struct conn *c, int status, const char *headers, uint64_t length)
{
    if (c->closing || c->response_set || !c->req_active)
        return -1;
    if (c->rp.req.has_body && !c->body_done)
        c->close_after = 1; /* the unread rest of the body cannot be told from a request */
    c->response_set = 1;
    wait_leave(c);
    c->status = status;
    buf_reset(&c->out);
    c->out_pos = 0;
    const char *dflt = c->srv->default_header;
    if (headers && c->srv->default_name_len &&
        names_header(headers, dflt, c->srv->default_name_len))
        dflt = ""; /* the answer has a policy of its own */
    const struct http_request *req = &c->rp.req;
    const char *xc = x_cache_value(req);
    int r = buf_printf(&c->out,
                       "HTTP/1.1 %d %s\r\n%s%s%s%s%s%s%s%s%sContent-Length: %llu\r\n%s\r\n",
                       status, status_text(status), c->srv->common_headers, dflt,
                       headers ? headers : "", req->request_id[0] ? "X-Request-Id: " : "",
                       req->request_id, req->request_id[0] ? "\r\n" : "",
                       xc ? "X-Cache: " : "", xc ? xc : "", xc ? "\r\n" : "",
                       (unsigned long long)length, c->close_after ? "Connection: close\r\n" : "");
    if (!r && req->response_headers[0]) {
        /* before the blank line: drop it, add the lines, put it back */
        c->out.len -= 2;
        r = buf_printf(&c->out, "%s\r\n", req->response_headers);
    }
    if (r) {
        conn_close(c);
        return -1;
    }
    return 0;
}

/* May a body of len more bytes be held in memory? When not, the request is answered 503
 * (error_writer) and 0 returned. */
static int admit_body(struct conn *c, size_t len)
{
    struct http_server *s = c->srv;
    if (!s->opts.max_response_memory || len <= SMALL_BODY ||
        buffered_now(s) + len <= s->opts.max_response_memory)
        return 1;
    if (!c->closing && !c->response_set && c->req_active) {
        static __thread uint64_t warned_ms; /* each loop warns for itself */
        uint64_t now = uv_now(s->loop);
        if (!warned_ms || now - warned_ms >= 10000) {
            warned_ms = now;
            log_warn("responses hold %llu bytes for slow clients (limits.max_response_memory "
                     "%llu): answering 503", (unsigned long long)buffered_now(s),
                     (unsigned long long)s->opts.max_response_memory);
        }
        s->opts.error_writer(c, 503, s->hook_ud);
    }
    return 0;
}

void conn_respond(struct conn *c, int status, const char *headers, const void *body, size_t len,
                  int head_only)
{
    if (!head_only && len && !c->closing && !admit_body(c, len))
        return;
    if (start_response(c, status, headers, len))
        return;
    if (!head_only && len) {
        if (buf_append(&c->out, body, len)) {
            conn_close(c);
            return;
        }
        c->out_counted = len;
        buffered_add(c->srv, (int64_t)len);
        c->body_bytes = len;
    }
    flush(c);
}

void conn_respond_shared(struct conn *c, int status, const char *headers, struct shared_body *b,
                         int head_only)
{
    int send_body = !head_only && b->len;
    if (send_body && c->ssl && b->len <= TLS_JOIN_MAX / 2) {
        /* over TLS a small body (a manifest) goes in its head's record: one SSL_write, one
         * record and one send instead of two; its copy is counted as a response's own */
        conn_respond(c, status, headers, b->data, b->len, 0);
        return;
    }
    if (send_body && !b->senders && !c->closing && !admit_body(c, b->len))
        return;
    if (start_response(c, status, headers, b->len))
        return;
    if (send_body) {
        c->shared = shared_body_ref(b);
        c->shared_pos = 0;
        if (!b->senders++)
            buffered_add(c->srv, (int64_t)b->len);
        c->body_bytes = b->len;
    }
    flush(c);
}

void conn_respond_stream(struct conn *c, int status, const char *headers,
                         const struct body_source *src)
{
    if (start_response(c, status, headers, src->end - src->offset)) {
        if (src->release)
            src->release(src->ctx);
        else
            close(src->fd);
        return;
    }
    c->src = *src;
    c->streaming = 1;
    flush(c);
}

void conn_respond_feed(struct conn *c, int status, const char *headers, uint64_t length,
                       const struct body_feed *feed)
{
    if (start_response(c, status, headers, length)) {
        if (feed->release)
            feed->release(feed->ctx, 0);
        return;
    }
    c->feed = *feed;
    c->feeding = 1;
    c->feed_left = length;
    flush(c);
}

int conn_feed(struct conn *c, const void *data, size_t len)
{
    if (c->closing || !c->feeding)
        return -1;
    if (len > c->feed_left)
        len = (size_t)c->feed_left;
    if (len && buf_append(&c->out, data, len))
        return -1; /* out of memory: the feeder fails the feed */
    c->feed_left -= len;
    c->out_counted += len;
    buffered_add(c->srv, (int64_t)len);
    c->body_bytes += len;
    if (!c->want_write) { /* sent from the loop's next turn, never from inside the caller */
        c->want_write = 1;
        update_poll(c);
    }
    return c->out.len - c->out_pos >= HTTP_FEED_WINDOW ? 1 : 0;
}

void conn_feed_fail(struct conn *c)
{
    if (!c->feeding)
        return;
    c->feeding = 0; /* the feeder knows: no release for it */
    conn_close(c);
}

void conn_read_body(struct conn *c, int (*on_data)(void *ud, const char *data, size_t len),
                    void (*on_end)(void *ud, int status), void *ud)
{
    c->body_on_data = on_data;
    c->body_on_end = on_end;
    c->body_ud = ud;
    wait_leave(c);
    if (c->closing) {
        on_end(ud, -ECONNRESET); /* the client has gone already */
        return;
    }
    if (!c->rp.req.has_body) {
        c->body_done = 1;
        on_end(ud, 0);
        return;
    }
    c->reading_body = 1;
    c->body_paused = 0;
    c->rp.deliver_body = 1;
    c->body_in = 0;
    touch(c);
    c->body_clock = c->last_active;
    arm_timer(c);
    parse_more(c); /* bytes already received; update_poll reads the rest */
}

void conn_body_resume(struct conn *c)
{
    if (c->closing || !c->reading_body || !c->body_paused)
        return;
    c->body_paused = 0;
    touch(c);
    c->body_clock += c->last_active - c->body_paused_at; /* paused time is not the client's */
    arm_timer(c);
    parse_more(c);
}

/* ---- moving between loops ----
 * A connection moves with its socket, its TLS state, its parser and the bytes it has not
 * parsed yet: its two handles close on the loop it leaves (uv_poll does not own the socket),
 * and the loop it goes to opens new ones. Meanwhile it is on no loop's list, but still counted
 * in the group's connections. */

void conn_set_busy(struct conn *c, int busy)
{
    if (busy == c->counted_busy)
        return;
    c->counted_busy = busy;
    if (busy)
        atomic_fetch_add_explicit(&c->srv->group->busy, 1, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&c->srv->group->busy, 1, memory_order_relaxed);
}

/* A moving connection that cannot arrive (the loop it went to has closed): closed by the loop
 * that holds it, without handles. */
static void drop_moving(struct conn *c)
{
    c->move_to = NULL;
    c->closing = 1;
    c->listed = 0;
    conn_set_busy(c, 0);
    teardown(c);
}

static void on_move_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open)
        return;
    struct http_server *to = c->move_to;
    pthread_mutex_lock(&to->inbox_lock);
    int closed = to->closed;
    if (!closed) {
        c->move_next = to->inbox;
        to->inbox = c;
        uv_async_send(&to->inbox_async); /* under the lock: the handle is not closed yet */
    }
    pthread_mutex_unlock(&to->inbox_lock);
    if (closed)
        drop_moving(c);
}

void conn_move(struct conn *c, struct http_server *to)
{
    c->move_to = to;
    wait_leave(c);
    server_conn_leave(c->srv, c);
    uv_poll_stop(&c->poll);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->poll, on_move_closed);
    uv_close((uv_handle_t *)&c->timer, on_move_closed);
}

void conn_arrived(struct conn *c)
{
    struct http_server *s = c->move_to;
    c->srv = s;
    if (s->closed || uv_poll_init_socket(s->loop, &c->poll, c->fd)) {
        drop_moving(c);
        return;
    }
    c->move_to = NULL;
    c->armed = 0;
    uv_timer_init(s->loop, &c->timer);
    c->poll.data = c->timer.data = c;
    c->handles_open = 2;
    server_conn_join(s, c);
    if (s->draining)
        c->close_after = 1;
    conn_ref(c);
    touch(c);
    arm_timer(c);
    if (c->req_active && !c->response_set) {
        /* a request handed over: answered here as if it had just been read here */
        c->in_parse = 1;
        s->opts.handler(c, &c->rp.req, s->opts.ud);
        if (!c->move_to)
            wait_enter(c);
        c->in_parse = 0;
    }
    if (c->close_after && !c->req_active)
        conn_close(c); /* it was to close on the way */
    else
        parse_more(c); /* the body, or the next request, as far as it came already */
    conn_unref(c);
}

void http_hand_over(struct conn *c)
{
    struct http_server *first = c->srv->group->servers[0];
    if (first == c->srv) {
        first->opts.handler(c, &c->rp.req, first->opts.ud);
        return;
    }
    conn_move(c, first);
}

int conn_draining(const struct conn *c)
{
    return c->srv->draining;
}

unsigned conn_loop_index(const struct conn *c)
{
    return c->srv->index;
}

unsigned conn_home_index(const struct conn *c)
{
    return c->home->index;
}
