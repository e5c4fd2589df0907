/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the listener (server.c) and the connections (conn.c). */
#ifndef REGCACHE_HTTP_IMPL_H
#define REGCACHE_HTTP_IMPL_H

#include <llhttp.h>
#include <openssl/ssl.h>
#include <time.h>

#include "http/http.h"
#include "http/parse.h"
#include "util/buf.h"
#include "util/shared.h"

#define READ_BUF (64u << 10) /* one per server, shared by the connections */
#define SENDFILE_CHUNK (8u << 20)
#define INLINE_SEND_CHUNK (1u << 20)  /* sendfile from the loop: bytes checked resident at once */
#define INLINE_SEND_BUDGET (4u << 20) /* and at most this much per connection per loop turn */
#define TLS_CHUNK (256u << 10)
/* bodies this small are always sent, whatever opts.max_response_memory says: error answers
 * must get out, and max_connections of them are bounded anyway */
#define SMALL_BODY (16u << 10)

struct http_server {
    uv_loop_t *loop;
    int fd;
    int port;
    uv_poll_t listen_poll;
    int listening;
    struct http_server_opts opts;
    char *common_headers;
    char *default_header; /* "" when none */
    size_t default_name_len; /* its name and the colon */
    char *rbuf; /* READ_BUF: every recv lands here; what a connection cannot parse yet is
                 * copied to its own buffer, so an idle connection holds no read buffer */
    struct conn *conns; /* doubly linked */
    size_t n_conns;
    uint64_t refused; /* connections refused at accept (max_connections) */
    int draining;
    SSL_CTX *tls; /* NULL: plain HTTP; replaced on reload, connections keep their own */
    /* bytes of response bodies held in memory for clients: copies in connections' out buffers,
     * and each shared body once however many connections send it */
    uint64_t buffered;
    /* connections whose request waits for the handler's answer, oldest first */
    struct conn *wait_head, *wait_tail;
    size_t n_waiting;
};

struct conn {
    struct http_server *srv;
    struct conn *next, *prev;
    int fd;
    char peer[64];
    uv_poll_t poll;
    uv_timer_t timer;
    int refs;       /* the connection's own (dropped at teardown) and its handlers' */
    int closing;    /* no more I/O; the socket and the slot go once the handles closed */
    int handles_open;
    int torn_down;  /* socket closed, slot given back; the struct lives on while referenced */
    int waiting;    /* on srv's waiting list */
    struct conn *wnext, *wprev;
    struct reqparse rp; /* rp.req is the request being answered */
    /* received bytes not yet parsed: in srv->rbuf during do_read, else in own (malloc'd) */
    const char *rdata;
    size_t rlen, rpos;
    char *own;
    int peer_closed;
    /* deadlines, in loop milliseconds (uv_now) */
    uint64_t last_active;
    uint64_t head_deadline; /* 0: not waiting for a request head */
    uint64_t body_clock;    /* when reading the body started, moved on by paused time */
    uint64_t body_paused_at;
    uint64_t body_in;       /* body bytes received so far */
    int req_active;
    /* reading the request body (conn_read_body) */
    int reading_body, body_paused, body_done;
    int (*body_on_data)(void *ud, const char *data, size_t len);
    void (*body_on_end)(void *ud, int status);
    void *body_ud;
    int in_parse; /* inside parse_more: a response finishing now must not re-enter it */
    int close_after; /* close once the current response is out */
    uint64_t started_us;
    struct timespec started_wall; /* for the access log */
    /* the response */
    int status;
    struct buf out;
    size_t out_pos;
    size_t out_counted; /* body bytes of out counted in srv->buffered */
    struct shared_body *shared; /* a body sent from shared memory, after out */
    size_t shared_pos;
    int response_set;
    int streaming;
    struct body_source src;
    uint64_t body_bytes;
    int io_busy;
    uv_work_t work;
    ssize_t work_result;
    int work_errno;
    int want_write;
    /* TLS: file bodies are read into tls_buf on the thread pool, then encrypted here */
    SSL *ssl;
    int tls_read_wants_write;
    char *tls_buf; /* TLS_CHUNK, held only while a file body is being sent */
    size_t tls_len, tls_pos;
};

void conn_accepted(struct http_server *s, int fd, const char *peer);
void conn_drain(struct conn *c);
void conn_close(struct conn *c);
void server_conn_gone(struct http_server *s, struct conn *c);

#endif
