/* SPDX-License-Identifier: Apache-2.0 */
/* A hosted repository's request relayed to the member that holds it (relay.h): one curl
 * transfer on the upstream client's multi, fed from the client's body and feeding the client's
 * answer.
 *
 * curl's callbacks only move bytes and set flags (they may not add, pause or remove
 * transfers, nor answer the client, which can call back here); everything else happens in
 * pump(), which runs on the loop's next turn whenever something changed. */
#include "cluster/relay.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cluster/peer_auth.h"
#include "metrics/metrics.h"
#include "registry/respond.h"
#include "util/buf.h"
#include "util/log.h"

#define CONNECT_TIMEOUT_MS 5000L
#define RELAY_STALL_S 30L /* no byte either way for this long: the holder is taken as gone */
/* An answer's first body bytes are kept while the answer has not begun, so that a short one
 * (an error) is whole even when the holder closes on the rest of the request's body. */
#define RELAY_EARLY_MAX (64u << 10)

struct relay {
    struct upstream_easy e; /* first: curl's private pointer is this */
    struct cluster *cl;
    size_t holder;
    char holder_url[MEMBERS_URL_MAX];
    struct conn *conn;
    struct http_request *req; /* until the answer is handed over (then it is the next one's) */
    int head;
    CURL *easy;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    uv_timer_t pump;
    int closing;
    /* the client's body, on its way to the holder */
    struct buf in;
    size_t in_pos;
    int in_end;        /* the client's body is complete */
    int client_paused; /* the client's body waits for in to drain */
    int read_paused;   /* curl waits for body bytes */
    /* the holder's answer */
    long status;
    int64_t length;
    char out_headers[RELAY_HEADERS_MAX];
    size_t out_len;
    int headers_done;
    int write_paused; /* curl holds body bytes until the answer has begun, or the window drains */
    int held;         /* the client's window is full */
    int64_t received; /* body bytes of the answer taken from curl */
    struct buf early; /* the first of them, taken before the answer began (RELAY_EARLY_MAX) */
    /* the ends */
    int answered;     /* the answer is handed to the connection (conn and req are not ours) */
    int feeding;      /* a fed answer is still going out */
    int client_gone;
    int curl_done;
    int curl_result;
    int abandoned;    /* this side stopped the transfer */
    int delivered;    /* the whole answer went to the connection */
    int resume_pending;
    int body_reading; /* the connection reads the client's body for this relay */
    int free_pending; /* done, but the connection may still call on_body_* */
};

static void pump(uv_timer_t *t);

static void schedule(struct relay *x)
{
    if (!x->closing)
        uv_timer_start(&x->pump, pump, 0, 0);
}

/* ---- curl's callbacks ---- */

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    struct relay *x = ud;
    size_t len = size * n, l = len;
    while (l && (data[l - 1] == '\n' || data[l - 1] == '\r'))
        l--;
    if (l >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* a status line: a new answer (after a 1xx, the final one) */
        const char *sp = memchr(data, ' ', l);
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->out_len = 0;
        x->out_headers[0] = '\0';
        x->length = -1;
        return len;
    }
    if (l == 0) {
        if (x->status >= 200) {
            x->headers_done = 1;
            schedule(x);
        }
        return len;
    }
    int64_t cl = relay_content_length(data, l);
    if (cl != -1)
        x->length = cl; /* -2: not a number, refused when the answer begins */
    else if (relay_header_passes(data, l) && x->out_len + l + 3 <= sizeof(x->out_headers)) {
        memcpy(x->out_headers + x->out_len, data, l);
        memcpy(x->out_headers + x->out_len + l, "\r\n", 3);
        x->out_len += l + 2;
    }
    return len;
}

static size_t on_write(char *data, size_t size, size_t n, void *ud)
{
    struct relay *x = ud;
    size_t len = size * n;
    if (x->client_gone || x->abandoned)
        return 0; /* ends the transfer (a write error) */
    if (!x->answered && buf_append(&x->early, data, len) == 0) {
        x->received += (int64_t)len;
        schedule(x);
        return len;
    }
    if (!x->answered || x->held) {
        x->write_paused = 1;
        schedule(x);
        return CURL_WRITEFUNC_PAUSE; /* the same bytes come again once unpaused */
    }
    int r = conn_feed(x->conn, data, len);
    if (r < 0) {
        x->client_gone = 1;
        schedule(x);
        return 0;
    }
    if (r > 0)
        x->held = 1;
    x->received += (int64_t)len;
    return len;
}

static size_t on_read(char *dst, size_t size, size_t n, void *ud)
{
    struct relay *x = ud;
    size_t room = size * n;
    if (x->client_gone || x->abandoned)
        return CURL_READFUNC_ABORT;
    size_t avail = x->in.len - x->in_pos;
    if (avail) {
        size_t k = avail < room ? avail : room;
        memcpy(dst, x->in.data + x->in_pos, k);
        x->in_pos += k;
        if (x->in_pos == x->in.len) {
            buf_reset(&x->in);
            x->in_pos = 0;
        }
        if (x->client_paused && x->in.len - x->in_pos < RELAY_BODY_WINDOW / 2)
            schedule(x);
        return k;
    }
    if (x->in_end)
        return 0;
    x->read_paused = 1;
    schedule(x);
    return CURL_READFUNC_PAUSE;
}

/* ---- the client's side (the connection's callbacks; never inside curl's) ---- */

static int on_body_data(void *ud, const char *data, size_t len)
{
    struct relay *x = ud;
    if (x->in_pos && (x->in_pos >= x->in.len / 2 || x->in.len + len > x->in.max)) {
        buf_consume(&x->in, x->in_pos); /* what curl took goes; at most half is moved */
        x->in_pos = 0;
    }
    if (buf_append(&x->in, data, len)) {
        x->client_gone = 1; /* cannot happen within the window; ends the relay if it does */
        schedule(x);
        return 1;
    }
    if (x->read_paused)
        schedule(x);
    if (x->in.len - x->in_pos >= RELAY_BODY_WINDOW) {
        x->client_paused = 1;
        return 1;
    }
    return 0;
}

static void relay_free(struct relay *x)
{
    conn_unref(x->conn);
    buf_free(&x->in);
    buf_free(&x->early);
    free(x);
}

static void on_body_end(void *ud, int status)
{
    struct relay *x = ud;
    x->body_reading = 0;
    if (x->free_pending) {
        relay_free(x);
        return;
    }
    if (status)
        x->client_gone = 1;
    else
        x->in_end = 1;
    schedule(x);
}

static void on_drained(void *ctx)
{
    struct relay *x = ctx;
    if (x->held) {
        x->held = 0;
        schedule(x);
    }
}

static void on_feed_release(void *ctx, int complete)
{
    struct relay *x = ctx;
    x->feeding = 0;
    if (complete)
        x->delivered = 1;
    else
        x->client_gone = 1;
    schedule(x);
}

static const struct body_feed feed_of = {on_drained, on_feed_release, NULL};

/* ---- the pump ---- */

static void on_closed(uv_handle_t *h)
{
    struct relay *x = h->data;
    if (x->body_reading)
        x->free_pending = 1; /* freed by on_body_end: the connection calls it in any case */
    else
        relay_free(x);
}

static void finish(struct relay *x, enum metrics_relay_result result)
{
    metrics_cluster_relayed(result);
    if (x->easy)
        curl_easy_cleanup(x->easy);
    x->easy = NULL;
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    x->closing = 1;
    uv_timer_stop(&x->pump);
    uv_close((uv_handle_t *)&x->pump, on_closed);
}

/* The holder's answer has its headers: hand it to the client. */
static void begin_answer(struct relay *x)
{
    x->answered = 1;
    x->req->outcome = "relayed";
    int bodiless = x->head || x->status == 204 || x->status == 304 || x->length == 0;
    if (bodiless) {
        x->delivered = 1;
        conn_respond(x->conn, (int)x->status, x->out_headers, NULL,
                     x->length > 0 ? (size_t)x->length : 0, 1);
        return;
    }
    struct body_feed f = feed_of;
    f.ctx = x;
    x->feeding = 1;
    conn_respond_feed(x->conn, (int)x->status, x->out_headers, (uint64_t)x->length, &f);
    if (x->feeding && x->early.len) {
        int r = conn_feed(x->conn, x->early.data, x->early.len);
        if (r < 0)
            x->client_gone = 1;
        else if (r > 0)
            x->held = 1;
    }
    buf_free(&x->early);
}

static void answer_unavailable(struct relay *x, const char *why)
{
    char msg[MEMBERS_URL_MAX + CURL_ERROR_SIZE + 120];
    snprintf(msg, sizeof(msg), "the member that holds this repository (%s) did not answer: %s",
             x->holder_url, why);
    x->answered = 1;
    x->req->outcome = "relayed";
    respond_error(x->conn, x->head, 503, "UNAVAILABLE", msg, "Retry-After: 1\r\n");
}

static void unpause(struct relay *x)
{
    if (!x->resume_pending)
        return;
    x->resume_pending = 0;
    curl_easy_pause(x->easy, CURLPAUSE_CONT); /* may call on_write and on_read at once */
}

static void pump(uv_timer_t *t)
{
    struct relay *x = t->data;
    if (x->closing)
        return;
    int mine = !x->answered || x->feeding; /* the connection still expects this relay */
    if (mine && !conn_alive(x->conn))
        x->client_gone = 1;
    if (x->client_gone && !x->curl_done) {
        upstream_easy_remove(&x->e);
        x->curl_done = 1;
        x->abandoned = 1;
    }
    if (x->curl_done && (x->abandoned || x->client_gone)) {
        if (!x->answered && conn_alive(x->conn)) {
            x->answered = 1;
            respond_error(x->conn, x->head, 500, "UNKNOWN", "cannot relay the request", NULL);
        }
        if (x->feeding)
            conn_feed_fail(x->conn);
        x->feeding = 0;
        finish(x, x->delivered ? METRICS_RELAY_ANSWERED : METRICS_RELAY_ABANDONED);
        return;
    }
    /* the holder's whole answer came: a send error after it (the holder answered before the
     * body was in, and closed) is no failure of the holder */
    int whole = x->headers_done && (x->head || x->status == 204 || x->status == 304 ||
                                    x->received == x->length);
    if (x->curl_done && x->curl_result != CURLE_OK && !whole) {
        char why[CURL_ERROR_SIZE + 64];
        snprintf(why, sizeof(why), "%s",
                 x->errbuf[0] ? x->errbuf : curl_easy_strerror((CURLcode)x->curl_result));
        log_warn("cluster: relaying %s to %s failed: %s", x->answered ? "an answer" : "a request",
                 x->holder_url, why);
        cluster_member_down(x->cl, x->holder, why);
        if (!x->answered)
            answer_unavailable(x, why);
        else if (x->feeding)
            conn_feed_fail(x->conn); /* the client sees the answer cut short */
        x->feeding = 0;
        finish(x, METRICS_RELAY_FAILED);
        return;
    }
    if (!x->answered && x->headers_done) {
        if (x->length < 0 && !x->head && x->status != 204 && x->status != 304) {
            /* every answer of a member says its length; one that does not is not passed on */
            if (!x->curl_done) {
                upstream_easy_remove(&x->e);
                x->curl_done = 1;
            }
            cluster_member_down(x->cl, x->holder, "an answer without Content-Length");
            answer_unavailable(x, "its answer had no valid Content-Length");
            finish(x, METRICS_RELAY_FAILED);
            return;
        }
        begin_answer(x);
    }
    if (x->curl_done) {
        if (!x->answered) { /* complete without an answer: cannot happen, but never hang */
            answer_unavailable(x, "no answer");
            finish(x, METRICS_RELAY_FAILED);
        } else if (!x->feeding) {
            finish(x, METRICS_RELAY_ANSWERED);
        }
        return; /* a fed answer still going out: on_feed_release comes back here */
    }
    /* flow control, both ways */
    if (x->write_paused && x->answered && !x->held) {
        x->write_paused = 0;
        x->resume_pending = 1;
    }
    if (x->read_paused && (x->in.len > x->in_pos || x->in_end)) {
        x->read_paused = 0;
        x->resume_pending = 1;
    }
    unpause(x);
    if (x->client_paused && !x->answered && x->in.len - x->in_pos < RELAY_BODY_WINDOW / 2) {
        x->client_paused = 0;
        conn_body_resume(x->conn); /* may call on_body_data at once */
    }
}

static void on_done(struct upstream_easy *e, int curl_result)
{
    struct relay *x = (struct relay *)e;
    x->curl_done = 1;
    x->curl_result = curl_result;
    if (curl_result == CURLE_WRITE_ERROR && x->client_gone)
        x->abandoned = 1;
    schedule(x);
}

/* ---- starting ---- */

int relay_holder(const struct cluster *cl, const char *name)
{
    char key[512];
    if (!cl || cluster_size(cl) < 2 || relay_key(name, key, sizeof(key)))
        return -1;
    size_t owner = cluster_owner(cl, key);
    return owner == cluster_self(cl) ? -1 : (int)owner;
}

static int add_header(struct relay *x, const char *name, const char *value)
{
    char line[HTTP_MAX_ACCEPT + 64];
    if (!value)
        return 0;
    snprintf(line, sizeof(line), "%s: %s", name, value);
    struct curl_slist *l = curl_slist_append(x->headers, line);
    if (!l)
        return -ENOMEM;
    x->headers = l;
    return 0;
}

/* The transfer for x's request: 0, or a negative errno. */
static int setup(struct relay *x, const char *user)
{
    struct http_request *req = x->req;
    const char *target = req->target ? req->target : req->path;
    char url[MEMBERS_URL_MAX + HTTP_MAX_URL + 8], claim[PEER_AUTH_RELAY_MAX + 1];
    char peer[PEER_AUTH_VALUE_MAX];
    snprintf(url, sizeof(url), "%s%s", x->holder_url, target);
    unsigned char rnd[PEER_AUTH_NONCE_HEX / 2];
    char nonce[PEER_AUTH_NONCE_HEX + 1];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return -EIO;
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(nonce + 2 * i, 3, "%02x", rnd[i]);
    int rc = peer_auth_relay_claim(nonce, x->holder_url, user, claim, sizeof(claim));
    if (!rc)
        rc = cluster_sign(x->cl, req->method_name, target, claim, peer, sizeof(peer));
    if (rc)
        return rc;
    if (add_header(x, PEER_AUTH_HEADER, peer) || add_header(x, PEER_AUTH_RELAY_HEADER, claim) ||
        add_header(x, "Content-Type", req->content_type) ||
        add_header(x, "Content-Range", req->content_range) ||
        add_header(x, "Range", req->range) || add_header(x, "Accept", req->accept) ||
        add_header(x, "Host", req->host) || /* challenges name the client's host */
        !(x->headers = curl_slist_append(x->headers, "Expect:")) ||
        (!req->accept && !(x->headers = curl_slist_append(x->headers, "Accept:"))))
        return -ENOMEM; /* "Name:" alone: curl sends none of its own */
    CURL *e = x->easy = curl_easy_init();
    if (!e)
        return -ENOMEM;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L); /* the target as signed, byte for byte */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    /* a holder that takes the request and then sends nothing (stopped, hung, cut off): the
     * transfer ends, the holder is marked down and the client gets its 503. An answer paused
     * because the client reads slowly is not checked. */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, RELAY_STALL_S);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    if (x->head) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (req->has_body) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, x);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->content_length);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method_name);
    } else if (strcmp(req->method_name, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method_name);
    }
    x->e.easy = e;
    x->e.done = on_done;
    return 0;
}

void relay_request(struct cluster *cl, struct upstream_client *up, struct conn *c,
                   struct http_request *req, size_t holder, const char *user)
{
    int head = req->method == HTTP_METHOD_HEAD;
    struct relay *x = calloc(1, sizeof(*x));
    if (!x) {
        respond_error(c, head, 503, "UNAVAILABLE", "out of memory", NULL);
        return;
    }
    x->cl = cl;
    x->holder = holder;
    snprintf(x->holder_url, sizeof(x->holder_url), "%s", cluster_member_url(cl, holder));
    x->conn = c;
    x->req = req;
    x->head = head;
    x->length = -1;
    buf_init(&x->in, RELAY_BODY_WINDOW + (1u << 20)); /* the window and one read past it */
    buf_init(&x->early, RELAY_EARLY_MAX);
    conn_ref(c);
    uv_timer_init(upstream_client_loop(up), &x->pump);
    x->pump.data = x;
    int rc = setup(x, user);
    if (rc == 0)
        rc = upstream_easy_add(up, &x->e);
    if (rc) {
        x->answered = 1;
        respond_error(c, head, 503, "UNAVAILABLE",
                      rc == -ECANCELED ? "shutting down" : "cannot relay the request", NULL);
        finish(x, METRICS_RELAY_FAILED);
        return;
    }
    req->outcome = "relayed";
    if (req->has_body) {
        x->body_reading = 1;
        conn_read_body(c, on_body_data, on_body_end, x); /* may call on_body_end at once */
    } else {
        x->in_end = 1;
    }
}
