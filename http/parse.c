/* SPDX-License-Identifier: Apache-2.0 */
#include "http/parse.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

/* The longest value kept of each header; a longer one is treated as absent. */
static const size_t kept_max[KEPT_N] = {
    [KEPT_RANGE] = 255,          [KEPT_CONTENT_TYPE] = 255, [KEPT_CONTENT_RANGE] = 127,
    [KEPT_AUTHORIZATION] = 8191, [KEPT_HOST] = 255,         [KEPT_PATH] = HTTP_MAX_URL,
    [KEPT_USER_AGENT] = HTTP_MAX_USER_AGENT, [KEPT_REFERER] = HTTP_MAX_REFERER,
    [KEPT_REQUEST_ID] = 127, [KEPT_ORIGIN] = HTTP_MAX_ORIGIN, [KEPT_CORS_METHOD] = 31,
    [KEPT_PEER] = 511, [KEPT_RELAY] = 127,
};
/* every kept value fits in the header bytes, plus the path and the NULs */
#define KEPT_BUF_MAX (HTTP_MAX_HEADER_BYTES + HTTP_MAX_URL + KEPT_N + 1)

static struct reqparse *rp_of(llhttp_t *l)
{
    return l->data;
}

static int refuse(struct reqparse *p, int status)
{
    p->error_status = status;
    return -1;
}

static void reset_request(struct reqparse *p)
{
    buf_reset(&p->url);
    buf_reset(&p->field);
    buf_reset(&p->value);
    buf_reset(&p->accept);
    buf_reset(&p->xff);
    p->xff_too_long = 0;
    buf_reset(&p->via);
    p->via_too_long = 0;
    buf_reset(&p->kept);
    for (int i = 0; i < KEPT_N; i++)
        p->kept_at[i] = SIZE_MAX;
    p->header_bytes = p->n_headers = 0;
    p->value_pending = p->forwarded_https = p->te_seen = 0;
    memset(&p->req, 0, sizeof(p->req));
}

static int on_message_begin(llhttp_t *l)
{
    struct reqparse *p = rp_of(l);
    reset_request(p);
    p->started = 1;
    return 0;
}

static int on_url(llhttp_t *l, const char *at, size_t len)
{
    struct reqparse *p = rp_of(l);
    return buf_append(&p->url, at, len) ? refuse(p, 414) : 0;
}

static int keep(struct reqparse *p, enum reqparse_kept k, const char *v, size_t len)
{
    if (len > kept_max[k]) {
        p->kept_at[k] = SIZE_MAX; /* too long to be meaningful */
        return 0;
    }
    size_t at = p->kept.len;
    if (buf_append(&p->kept, v, len) || buf_append(&p->kept, "", 1))
        return -1;
    p->kept_at[k] = at;
    return 0;
}

static const char *kept(const struct reqparse *p, enum reqparse_kept k)
{
    return p->kept_at[k] == SIZE_MAX ? NULL : p->kept.data + p->kept_at[k];
}

static int commit_header(struct reqparse *p)
{
    p->value_pending = 0;
    if (++p->n_headers > HTTP_MAX_HEADERS)
        return refuse(p, 431);
    const char *name = p->field.data ? p->field.data : "";
    size_t nlen = p->field.len;
    const char *v = p->value.data ? p->value.data : "";
    size_t vlen = p->value.len;
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) /* llhttp keeps trailing space */
        vlen--;
    int r = 0;
#define IS(h) (nlen == sizeof(h) - 1 && strncasecmp(name, h, nlen) == 0)
    if (IS("Accept")) {
        if ((p->accept.len && buf_append(&p->accept, ", ", 2)) ||
            buf_append(&p->accept, v, vlen))
            return refuse(p, 431);
    } else if (IS("Range")) {
        r = keep(p, KEPT_RANGE, v, vlen);
    } else if (IS("Content-Type")) {
        r = keep(p, KEPT_CONTENT_TYPE, v, vlen);
    } else if (IS("Content-Range")) {
        r = keep(p, KEPT_CONTENT_RANGE, v, vlen);
    } else if (IS("Authorization")) {
        r = keep(p, KEPT_AUTHORIZATION, v, vlen);
    } else if (IS("Host")) {
        r = keep(p, KEPT_HOST, v, vlen);
    } else if (IS("User-Agent")) {
        r = keep(p, KEPT_USER_AGENT, v, vlen);
    } else if (IS("Referer")) {
        r = keep(p, KEPT_REFERER, v, vlen);
    } else if (IS("X-Request-Id")) {
        r = keep(p, KEPT_REQUEST_ID, v, vlen);
    } else if (IS("Origin")) {
        r = keep(p, KEPT_ORIGIN, v, vlen);
    } else if (IS("Access-Control-Request-Method")) {
        r = keep(p, KEPT_CORS_METHOD, v, vlen);
    } else if (IS("X-Regcache-Peer")) {
        r = keep(p, KEPT_PEER, v, vlen);
    } else if (IS("X-Regcache-Relay")) {
        r = keep(p, KEPT_RELAY, v, vlen);
    } else if (IS("X-Forwarded-For")) {
        /* a chain too long to keep is not believed at all (the peer stands) */
        if (!p->xff_too_long && ((p->xff.len && buf_append(&p->xff, ", ", 2)) ||
                                 buf_append(&p->xff, v, vlen)))
            p->xff_too_long = 1;
    } else if (IS("Via")) {
        /* the proxies the request passed; too long a chain is kept as a flag alone */
        if (!p->via_too_long && ((p->via.len && buf_append(&p->via, ", ", 2)) ||
                                 buf_append(&p->via, v, vlen)))
            p->via_too_long = 1;
    } else if (IS("X-Forwarded-Proto")) {
        p->forwarded_https = vlen == 5 && strncasecmp(v, "https", 5) == 0;
    } else if (IS("Transfer-Encoding")) {
        /* Only a single plain "chunked" has one meaning to every parser on the way; lists,
         * repeats and other codings are how requests get smuggled past proxies. */
        if (p->te_seen++ || vlen != 7 || strncasecmp(v, "chunked", 7) != 0)
            return refuse(p, 400);
    }
#undef IS
    if (r)
        return refuse(p, 431);
    buf_reset(&p->field);
    buf_reset(&p->value);
    return 0;
}

static int count_header_bytes(struct reqparse *p, size_t len)
{
    p->header_bytes += len;
    return p->header_bytes > HTTP_MAX_HEADER_BYTES ? refuse(p, 431) : 0;
}

static int on_header_field(llhttp_t *l, const char *at, size_t len)
{
    struct reqparse *p = rp_of(l);
    if (p->value_pending && commit_header(p))
        return -1;
    if (count_header_bytes(p, len) || buf_append(&p->field, at, len))
        return refuse(p, 431);
    return 0;
}

static int on_header_value(llhttp_t *l, const char *at, size_t len)
{
    struct reqparse *p = rp_of(l);
    p->value_pending = 1;
    if (count_header_bytes(p, len) || buf_append(&p->value, at, len))
        return refuse(p, 431);
    return 0;
}

/* The path of the target: origin-form as is, absolute-form without its scheme and authority;
 * NULL for anything else (asterisk-form, authority-form). */
static const char *target_path(const char *t, size_t *len)
{
    size_t skip = 0;
    if (strncasecmp(t, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(t, "https://", 8) == 0)
        skip = 8;
    if (skip) {
        t += skip;
        t += strcspn(t, "/?");
        if (*t != '/')
            return NULL;
    }
    if (*t != '/')
        return NULL;
    const char *q = strchr(t, '?');
    *len = q ? (size_t)(q - t) : strlen(t);
    return t;
}

static int on_headers_complete(llhttp_t *l)
{
    struct reqparse *p = rp_of(l);
    if (p->value_pending && commit_header(p))
        return -1;
    uint8_t m = llhttp_get_method(l);
    if (m == HTTP_CONNECT)
        return refuse(p, 400);
    l->upgrade = 0; /* HTTP/1.1 only: an Upgrade offer is declined by answering normally */
    if (buf_terminate(&p->url) || buf_terminate(&p->accept) || buf_terminate(&p->xff) ||
        buf_terminate(&p->via))
        return refuse(p, 431);
    size_t plen;
    const char *path = p->url.len ? target_path(p->url.data, &plen) : NULL;
    if (!path)
        return refuse(p, 400);
    size_t at = p->kept.len;
    if (buf_append(&p->kept, path, plen) || buf_append(&p->kept, "", 1))
        return refuse(p, 414);
    p->kept_at[KEPT_PATH] = at;
    struct http_request *req = &p->req;
    req->method = m == HTTP_GET ? HTTP_METHOD_GET : m == HTTP_HEAD ? HTTP_METHOD_HEAD
                                                                   : HTTP_METHOD_OTHER;
    req->method_name = llhttp_method_name((llhttp_method_t)m);
    req->target = p->url.data;
    req->path = kept(p, KEPT_PATH);
    const char *q = strchr(path, '?');
    req->query = q ? q + 1 : NULL;
    req->accept = p->accept.len ? p->accept.data : NULL;
    req->range = kept(p, KEPT_RANGE);
    req->authorization = kept(p, KEPT_AUTHORIZATION);
    req->host = kept(p, KEPT_HOST);
    req->forwarded_https = p->forwarded_https; /* believed or not by the connection */
    req->user_agent = kept(p, KEPT_USER_AGENT);
    req->referer = kept(p, KEPT_REFERER);
    req->forwarded_for = p->xff.len && !p->xff_too_long ? p->xff.data : NULL;
    req->forwarded_id = kept(p, KEPT_REQUEST_ID);
    req->via = p->via.len && !p->via_too_long ? p->via.data : NULL;
    req->via_too_long = p->via_too_long;
    req->origin = kept(p, KEPT_ORIGIN);
    req->cors_method = kept(p, KEPT_CORS_METHOD);
    req->peer = kept(p, KEPT_PEER);
    req->relay = kept(p, KEPT_RELAY);
    req->content_type = kept(p, KEPT_CONTENT_TYPE);
    req->content_range = kept(p, KEPT_CONTENT_RANGE);
    req->has_body = (l->flags & F_CHUNKED) || l->content_length > 0;
    req->content_length = (l->flags & F_CHUNKED) ? -1 : (int64_t)l->content_length;
    p->started = 0;
    p->in_body = 1;
    p->deliver_body = 0;
    p->pause = REQPARSE_HEAD;
    return HPE_PAUSED; /* the request is answered before anything further is parsed */
}

static int on_body(llhttp_t *l, const char *at, size_t len)
{
    struct reqparse *p = rp_of(l);
    if (!p->deliver_body)
        return 0;
    if (p->on_body(p->ud, at, len)) {
        p->pause = REQPARSE_BODY_PAUSED;
        return HPE_PAUSED;
    }
    return 0;
}

static int on_message_complete(llhttp_t *l)
{
    struct reqparse *p = rp_of(l);
    /* always stop here, so that one call never spans a body and the next head */
    p->pause = p->deliver_body ? REQPARSE_BODY_END : REQPARSE_MORE;
    p->deliver_body = 0;
    p->in_body = 0;
    p->prev = '\n';
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void reqparse_init(struct reqparse *p)
{
    memset(p, 0, sizeof(*p));
    buf_init(&p->url, HTTP_MAX_URL);
    buf_init(&p->field, HTTP_MAX_HEADER_BYTES);
    buf_init(&p->value, HTTP_MAX_HEADER_BYTES);
    buf_init(&p->accept, HTTP_MAX_ACCEPT);
    buf_init(&p->xff, HTTP_MAX_FORWARDED_FOR);
    buf_init(&p->via, HTTP_MAX_VIA);
    buf_init(&p->kept, KEPT_BUF_MAX);
    for (int i = 0; i < KEPT_N; i++)
        p->kept_at[i] = SIZE_MAX;
    p->prev = '\n';
    llhttp_init(&p->llhttp, HTTP_REQUEST, &settings);
    p->llhttp.data = p;
}

/* Head bytes must end lines with CRLF and never continue one on the next (obs-fold): llhttp
 * takes both, a proxy in front may read them differently. */
static int head_bytes_ok(struct reqparse *p, const char *s, size_t n)
{
    char prev = p->prev;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if ((ch == '\n' && prev != '\r') || ((ch == ' ' || ch == '\t') && prev == '\n'))
            return 0;
        prev = ch;
    }
    p->prev = prev;
    return 1;
}

enum reqparse_event reqparse_execute(struct reqparse *p, const char *data, size_t len,
                                     size_t *used)
{
    size_t off = 0;
    if (p->error_status) {
        *used = len;
        return REQPARSE_ERROR;
    }
    for (;;) {
        int in_head = !p->in_body;
        llhttp_errno_t e = llhttp_execute(&p->llhttp, data + off, len - off);
        size_t end = len;
        if (e == HPE_PAUSED)
            end = (size_t)(llhttp_get_error_pos(&p->llhttp) - data);
        if (e != HPE_OK && e != HPE_PAUSED) {
            if (!p->error_status)
                p->error_status = 400;
        } else if (in_head && !head_bytes_ok(p, data + off, end - off)) {
            p->error_status = 400;
        }
        if (p->error_status) {
            *used = len;
            return REQPARSE_ERROR;
        }
        if (e == HPE_OK) {
            *used = len;
            return REQPARSE_MORE;
        }
        llhttp_resume(&p->llhttp);
        off = end;
        if (p->pause != REQPARSE_MORE) {
            *used = off;
            return p->pause;
        }
    }
}

void reqparse_release(struct reqparse *p)
{
    buf_free(&p->url);
    buf_free(&p->field);
    buf_free(&p->value);
    buf_free(&p->accept);
    buf_free(&p->xff);
    buf_free(&p->via);
    buf_free(&p->kept);
    for (int i = 0; i < KEPT_N; i++)
        p->kept_at[i] = SIZE_MAX;
    memset(&p->req, 0, sizeof(p->req));
}

void reqparse_free(struct reqparse *p)
{
    reqparse_release(p);
}
