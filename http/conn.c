#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "http/impl.h"
#include "util/clock.h"

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
    default: return "Status";
    }
}

/* ---- access log ---- */

static void log_access(struct conn *c, const char *note)
{
    char ts[40], line[HTTP_MAX_URL + 256];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
    double ms = (double)(clock_mono_us() - c->started_us) / 1000.0;
    int len = snprintf(line, sizeof(line), "%s %s %s %s %d %llu %.2fms %s%s\n", ts, c->peer,
                       c->req.method_name ? c->req.method_name : "-",
                       c->req.target ? c->req.target : "-", c->status,
                       (unsigned long long)c->body_bytes, ms,
                       c->req.outcome ? c->req.outcome : "-", note);
    if (len > (int)sizeof(line))
        len = sizeof(line);
    ssize_t w = write(STDERR_FILENO, line, (size_t)len);
    (void)w;
}

/* ---- lifetime ---- */

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open)
        return;
    if (c->ssl) {
        SSL_shutdown(c->ssl); /* best effort: one non-blocking close_notify */
        SSL_free(c->ssl);
    }
    free(c->tls_buf);
    close(c->fd);
    server_conn_gone(c->srv, c);
    buf_free(&c->url);
    buf_free(&c->field);
    buf_free(&c->value);
    buf_free(&c->accept);
    buf_free(&c->out);
    free(c);
}

void conn_ref(struct conn *c)
{
    c->refs++;
}

void conn_unref(struct conn *c)
{
    if (--c->refs)
        return;
    uv_close((uv_handle_t *)&c->poll, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

int conn_alive(const struct conn *c)
{
    return !c->closing;
}

static void release_source(struct conn *c)
{
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
    c->closing = 1;
    if (c->reading_body) {
        c->reading_body = 0;
        c->body_on_end(c->body_ud, -ECONNRESET);
    }
    if (c->req_active && c->response_set)
        log_access(c, " aborted");
    release_source(c);
    uv_poll_stop(&c->poll);
    uv_timer_stop(&c->timer);
    conn_unref(c);
}

void conn_drain(struct conn *c)
{
    c->close_after = 1;
    if (!c->req_active)
        conn_close(c);
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    /* Idle keep-alive, slow headers, or a client that stopped reading: all end here. A request
     * waiting on the upstream is bounded by the upstream timeouts instead. */
    if (!c->req_active || c->want_write || (c->reading_body && !c->body_paused))
        conn_close(c);
    else
        uv_timer_again(t);
}

static void touch(struct conn *c)
{
    uv_timer_start(&c->timer, on_timer, c->srv->opts.idle_timeout_ms,
                   c->srv->opts.idle_timeout_ms);
}

/* ---- request parsing ---- */

static struct conn *parser_conn(llhttp_t *p)
{
    return p->data;
}

static void reset_request(struct conn *c)
{
    buf_reset(&c->url);
    buf_reset(&c->field);
    buf_reset(&c->value);
    buf_reset(&c->accept);
    c->range[0] = c->authorization[0] = c->content_type[0] = c->content_range[0] = '\0';
    c->host[0] = '\0';
    c->forwarded_https = 0;
    c->header_bytes = c->n_headers = 0;
    c->value_pending = 0;
    c->reject_status = 0;
    memset(&c->req, 0, sizeof(c->req));
}

static int on_message_begin(llhttp_t *p)
{
    reset_request(parser_conn(p));
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = parser_conn(p);
    if (buf_append(&c->url, at, len)) {
        c->reject_status = 414;
        return -1;
    }
    return 0;
}

static void copy_header(char *dst, size_t dstlen, const struct buf *v)
{
    if (v->len < dstlen) {
        memcpy(dst, v->data, v->len);
        dst[v->len] = '\0';
    } else {
        dst[0] = '\0'; /* too long to be meaningful: treated as absent */
    }
}

static int commit_header(struct conn *c)
{
    c->value_pending = 0;
    if (++c->n_headers > HTTP_MAX_HEADERS) {
        c->reject_status = 431;
        return -1;
    }
    const char *name = c->field.data ? c->field.data : "";
    size_t nlen = c->field.len;
    /* trim trailing whitespace of the value (llhttp keeps it) */
    while (c->value.len &&
           (c->value.data[c->value.len - 1] == ' ' || c->value.data[c->value.len - 1] == '\t'))
        c->value.len--;
#define IS(h) (nlen == sizeof(h) - 1 && strncasecmp(name, h, nlen) == 0)
    if (IS("Accept")) {
        if ((c->accept.len && buf_append(&c->accept, ", ", 2)) ||
            buf_append(&c->accept, c->value.data ? c->value.data : "", c->value.len)) {
            c->reject_status = 431;
            return -1;
        }
    } else if (IS("Range")) {
        copy_header(c->range, sizeof(c->range), &c->value);
    } else if (IS("Content-Type")) {
        copy_header(c->content_type, sizeof(c->content_type), &c->value);
    } else if (IS("Content-Range")) {
        copy_header(c->content_range, sizeof(c->content_range), &c->value);
    } else if (IS("Authorization")) {
        copy_header(c->authorization, sizeof(c->authorization), &c->value);
    } else if (IS("Host")) {
        copy_header(c->host, sizeof(c->host), &c->value);
    } else if (IS("X-Forwarded-Proto")) {
        c->forwarded_https = c->value.len == 5 && strncasecmp(c->value.data, "https", 5) == 0;
    }
#undef IS
    buf_reset(&c->field);
    buf_reset(&c->value);
    return 0;
}

static int count_header_bytes(struct conn *c, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes > HTTP_MAX_HEADER_BYTES) {
        c->reject_status = 431;
        return -1;
    }
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = parser_conn(p);
    if (c->value_pending && commit_header(c))
        return -1;
    if (count_header_bytes(c, len) || buf_append(&c->field, at, len)) {
        c->reject_status = 431;
        return -1;
    }
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = parser_conn(p);
    c->value_pending = 1;
    if (count_header_bytes(c, len) || buf_append(&c->value, at, len)) {
        c->reject_status = 431;
        return -1;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct conn *c = parser_conn(p);
    if (c->value_pending && commit_header(c))
        return -1;
    if (buf_terminate(&c->url) || buf_terminate(&c->accept)) {
        c->reject_status = 431;
        return -1;
    }
    struct http_request *req = &c->req;
    uint8_t m = llhttp_get_method(p);
    req->method = m == HTTP_GET ? HTTP_METHOD_GET : m == HTTP_HEAD ? HTTP_METHOD_HEAD
                                                                   : HTTP_METHOD_OTHER;
    req->method_name = llhttp_method_name((llhttp_method_t)m);
    req->target = c->url.data;
    req->accept = c->accept.len ? c->accept.data : NULL;
    req->range = c->range[0] ? c->range : NULL;
    req->authorization = c->authorization[0] ? c->authorization : NULL;
    req->host = c->host[0] ? c->host : NULL;
    req->secure = c->ssl != NULL || c->forwarded_https;
    req->content_type = c->content_type[0] ? c->content_type : NULL;
    req->content_range = c->content_range[0] ? c->content_range : NULL;
    req->has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
    req->content_length = (p->flags & F_CHUNKED) ? -1 : (int64_t)p->content_length;
    if (!llhttp_should_keep_alive(p))
        c->close_after = 1;
    c->pause_reason = PAUSE_HEADERS;
    return HPE_PAUSED; /* answer before parsing anything further */
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = parser_conn(p);
    if (!c->reading_body)
        return 0; /* a body nobody reads: the connection closes after the answer */
    if (c->body_on_data(c->body_ud, at, len)) {
        c->pause_reason = PAUSE_BODY_FULL;
        c->body_paused = 1;
        return HPE_PAUSED;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct conn *c = parser_conn(p);
    if (!c->reading_body)
        return 0;
    c->pause_reason = PAUSE_BODY_END;
    return HPE_PAUSED; /* the handler answers before the next request is parsed */
}

void conn_settings_init(llhttp_settings_t *s)
{
    llhttp_settings_init(s);
    s->on_message_begin = on_message_begin;
    s->on_url = on_url;
    s->on_header_field = on_header_field;
    s->on_header_value = on_header_value;
    s->on_headers_complete = on_headers_complete;
    s->on_message_complete = on_message_complete;
    s->on_body = on_body;
}

/* Splits the target into path (copied) and query (pointing into the target). */
static void split_target(struct conn *c)
{
    const char *t = c->url.data ? c->url.data : "";
    const char *q = strchr(t, '?');
    size_t plen = q ? (size_t)(q - t) : strlen(t);
    memcpy(c->path, t, plen); /* plen <= HTTP_MAX_URL: on_url bounds the target */
    c->path[plen] = '\0';
    c->req.target = t;
    c->req.path = c->path;
    c->req.query = q ? q + 1 : NULL;
}

static void begin_request(struct conn *c)
{
    c->reading_body = c->body_paused = c->body_done = 0;
    c->req_active = 1;
    c->response_set = 0;
    c->status = 0;
    c->body_bytes = 0;
    c->started_us = clock_mono_us();
    if (c->srv->draining || c->peer_closed)
        c->close_after = 1;
}

static void dispatch(struct conn *c)
{
    begin_request(c);
    split_target(c);
    c->srv->opts.handler(c, &c->req, c->srv->opts.ud);
}

static void reject(struct conn *c, int status)
{
    begin_request(c);
    c->close_after = 1;
    if (!c->req.target && buf_terminate(&c->url) == 0 && c->url.len)
        c->req.target = c->url.data;
    if (!c->req.method_name)
        c->req.method_name = "-";
    c->srv->opts.error_writer(c, status, c->srv->opts.ud);
}

static void parse_more(struct conn *c)
{
    if (c->in_parse)
        return; /* the loop below picks up where a nested response left off */
    c->in_parse = 1;
    conn_ref(c);
    while (!c->closing && (!c->req_active || (c->reading_body && !c->body_paused)) &&
           c->rpos < c->rlen) {
        const char *start = c->rbuf + c->rpos;
        llhttp_errno_t e = llhttp_execute(&c->parser, start, c->rlen - c->rpos);
        if (e == HPE_OK) {
            c->rpos = c->rlen = 0;
            break;
        }
        if (e == HPE_PAUSED) {
            c->rpos = (size_t)(llhttp_get_error_pos(&c->parser) - c->rbuf);
            llhttp_resume(&c->parser);
            if (c->pause_reason == PAUSE_HEADERS) {
                dispatch(c);
            } else if (c->pause_reason == PAUSE_BODY_END) {
                c->reading_body = 0;
                c->body_done = 1;
                c->body_on_end(c->body_ud, 0);
            }
            continue;
        }
        c->rpos = c->rlen = 0;
        reject(c, c->reject_status ? c->reject_status : 400);
        break;
    }
    c->in_parse = 0;
    if (!c->closing)
        update_poll(c);
    conn_unref(c);
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

static void do_read(struct conn *c)
{
    while ((!c->req_active || (c->reading_body && !c->body_paused)) && !c->closing) {
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        if (c->rlen == sizeof(c->rbuf)) {
            if (!c->rpos)
                break;
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        ssize_t n = io_recv(c, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
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
        c->rlen += (size_t)n;
        touch(c);
        parse_more(c);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct conn *c = h->data;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_ref(c);
    if (events & UV_WRITABLE) {
        c->want_write = 0;
        flush(c);
        if (c->tls_read_wants_write && !c->closing) {
            c->tls_read_wants_write = 0;
            do_read(c);
        }
    }
    if ((events & UV_READABLE) && !c->closing)
        do_read(c);
    if ((events & UV_DISCONNECT) && !c->closing) {
        c->peer_closed = 1;
        c->close_after = 1;
        if (!c->req_active)
            conn_close(c);
    }
    if (!c->closing)
        update_poll(c);
    conn_unref(c);
}

static void update_poll(struct conn *c)
{
    if (c->closing)
        return;
    int ev = 0;
    if ((!c->req_active || (c->reading_body && !c->body_paused)) && !c->peer_closed)
        ev |= UV_READABLE;
    if (c->want_write)
        ev |= UV_WRITABLE;
    if (!c->peer_closed)
        ev |= UV_DISCONNECT;
    if (ev)
        uv_poll_start(&c->poll, ev, on_poll);
    else
        uv_poll_stop(&c->poll);
}

void conn_accepted(struct http_server *s, int fd, const char *peer)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->srv = s;
    c->fd = fd;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->refs = 1;
    buf_init(&c->url, HTTP_MAX_URL);
    buf_init(&c->field, HTTP_MAX_HEADER_BYTES);
    buf_init(&c->value, HTTP_MAX_HEADER_BYTES);
    buf_init(&c->accept, HTTP_MAX_ACCEPT);
    buf_init(&c->out, OUT_MAX);
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    if (s->tls) {
        c->ssl = SSL_new(s->tls); /* holds its own reference to the context */
        if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
            SSL_free(c->ssl);
            close(fd);
            free(c);
            return;
        }
        SSL_set_accept_state(c->ssl);
    }
    if (uv_poll_init_socket(s->loop, &c->poll, fd)) {
        close(fd);
        free(c);
        return;
    }
    uv_timer_init(s->loop, &c->timer);
    c->poll.data = c->timer.data = c;
    c->handles_open = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    touch(c);
    update_poll(c);
}

/* ---- responses ---- */

static void response_done(struct conn *c)
{
    log_access(c, "");
    release_source(c);
    c->req_active = 0;
    c->response_set = 0;
    if (c->close_after) {
        conn_close(c);
        return;
    }
    touch(c);
    parse_more(c);
}

static void after_sendfile(uv_work_t *w, int status)
{
    struct conn *c = w->data;
    c->io_busy = 0;
    if (c->closing || status) {
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
        conn_unref(c);
        return;
    }
    if (c->work_result > 0) {
        c->tls_len = (size_t)c->work_result;
        c->tls_pos = 0;
        c->src.offset += (uint64_t)c->work_result;
        flush(c);
    } else {
        conn_close(c); /* the file is shorter than it said */
    }
    conn_unref(c);
}

static void flush(struct conn *c)
{
    if (c->closing || c->io_busy)
        return;
    while (c->out_pos < c->out.len) {
        ssize_t n = io_send(c, c->out.data + c->out_pos, c->out.len - c->out_pos, c->streaming);
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
    /* TLS: the file bytes read so far go out encrypted before more is read */
    while (c->tls_pos < c->tls_len) {
        ssize_t n = io_send(c, c->tls_buf + c->tls_pos, c->tls_len - c->tls_pos, 0);
        if (n < 0) {
            if (n == -EAGAIN) {
                c->want_write = 1;
                update_poll(c);
                return;
            }
            conn_close(c);
            return;
        }
        c->tls_pos += (size_t)n;
        c->body_bytes += (uint64_t)n;
        touch(c);
    }
    c->tls_pos = c->tls_len = 0;
    buf_reset(&c->out);
    c->out_pos = 0;
    if (c->streaming) {
        uint64_t avail = c->src.end;
        int failed = 0;
        if (c->src.readable) {
            uint64_t r = c->src.readable(c->src.ctx, &failed);
            if (r < avail)
                avail = r;
        }
        if (c->src.offset < avail) {
            uint64_t count = avail - c->src.offset;
            uint64_t chunk = c->ssl ? TLS_CHUNK : SENDFILE_CHUNK;
            if (c->ssl && !c->tls_buf && !(c->tls_buf = malloc(TLS_CHUNK))) {
                conn_close(c);
                return;
            }
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

static int start_response(struct conn *c, int status, const char *headers, uint64_t length)
{
    if (c->closing || c->response_set || !c->req_active)
        return -1;
    if (c->req.has_body && !c->body_done)
        c->close_after = 1; /* the unread rest of the body cannot be told from a request */
    c->response_set = 1;
    c->status = status;
    buf_reset(&c->out);
    c->out_pos = 0;
    int r = buf_printf(&c->out, "HTTP/1.1 %d %s\r\n%s%sContent-Length: %llu\r\n%s\r\n", status,
                       status_text(status), c->srv->common_headers, headers ? headers : "",
                       (unsigned long long)length, c->close_after ? "Connection: close\r\n" : "");
    if (r) {
        conn_close(c);
        return -1;
    }
    return 0;
}

void conn_respond(struct conn *c, int status, const char *headers, const void *body, size_t len,
                  int head_only)
{
    if (start_response(c, status, headers, len))
        return;
    if (!head_only && len) {
        if (buf_append(&c->out, body, len)) {
            conn_close(c);
            return;
        }
        c->body_bytes = len;
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

void conn_read_body(struct conn *c, int (*on_data)(void *ud, const char *data, size_t len),
                    void (*on_end)(void *ud, int status), void *ud)
{
    c->body_on_data = on_data;
    c->body_on_end = on_end;
    c->body_ud = ud;
    if (!c->req.has_body) {
        c->body_done = 1;
        on_end(ud, 0);
        return;
    }
    c->reading_body = 1;
    c->body_paused = 0;
    touch(c);
    parse_more(c); /* bytes already received; update_poll reads the rest */
}

void conn_body_resume(struct conn *c)
{
    if (c->closing || !c->reading_body || !c->body_paused)
        return;
    c->body_paused = 0;
    touch(c);
    parse_more(c);
}
