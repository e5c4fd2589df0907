/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the listener (server.c) and the connections (conn.c). */
#ifndef REGCACHE_HTTP_IMPL_H
#define REGCACHE_HTTP_IMPL_H

#include <llhttp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
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
#define TLS_INLINE_BUDGET (1u << 20) /* TLS: resident bytes read and encrypted per loop turn */
/* TLS: a response head and a body of this much together go in one SSL_write (one record) */
#define TLS_JOIN_MAX (16u << 10)
/* Full-size TLS body buffers (TLS_CHUNK) a loop keeps for its next file bodies: a fresh one
 * of that size comes from pages the allocator had given back to the kernel, and faulting them
 * in again cost a tenth of a 1 MiB TLS hit's time (perf, bench/run --profile) */
#define TLS_POOL_MAX 16
/* bodies this small are always sent, whatever opts.max_response_memory says: error answers
 * must get out, and max_connections of them are bounded anyway */
#define SMALL_BODY (16u << 10)

/* The loops serving one listener (http_server_start_workers): loop 0 is the one that started
 * it, the others run on threads of their own. Counted here, for all of them at once: the
 * connections (limits.max_connections is the process's), those refused, and the requests in
 * progress (what a graceful stop waits for). */
struct http_group {
    atomic_size_t n_conns;
    atomic_size_t busy;
    atomic_uint_fast64_t refused;
    /* bytes of response bodies held in memory by every loop (limits.max_response_memory) */
    atomic_int_fast64_t buffered;
    unsigned n;
    struct http_server **servers; /* [0]: the first loop's */
    struct http_worker *workers;  /* [i - 1]: loop i's thread */
    struct http_workers_opts wopts;
};

struct http_server {
    uv_loop_t *loop;
    struct http_group *group; /* this server's own when it runs alone */
    struct http_group solo;
    struct http_server *solo_servers[1];
    unsigned index;           /* in group->servers */
    void *hook_ud; /* the error writer's and on_response's: the first loop's opts.ud */
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
    /* the connections this loop is home to, read by every loop that accepts one: a new
     * connection goes to the loop with the fewest (on_listen_readable) */
    atomic_size_t n_home;
    atomic_int takes_new; /* listening: not draining, not closed */
    int draining;
    SSL_CTX *tls; /* NULL: plain HTTP; replaced on reload, connections keep their own */
    /* response bodies held in memory are counted in group->buffered: copies in connections'
     * out buffers, and each shared body once per loop however many connections send it */
    /* connections whose request waits for the handler's answer, oldest first */
    struct conn *wait_head, *wait_tail;
    size_t n_waiting;
    /* connections handed to this loop by another (their handles closed there, reopened
     * here): a list under inbox_lock, taken by inbox_async's callback */
    pthread_mutex_t inbox_lock;
    struct conn *inbox;
    struct fresh *fresh; /* sockets another loop accepted for this one, newest first */
    uv_async_t inbox_async;
    int inbox_on, closed;
    /* connections of other loops whose visit here is over, sent home at the end of the turn */
    uv_check_t homeward_check;
    uv_prepare_t log_prepare; /* the access lines of a turn, written before the loop waits */
    struct conn *homeward;
    char *tls_pool[TLS_POOL_MAX]; /* TLS_CHUNK buffers for file bodies (tls_body.c) */
    size_t n_tls_pool;
};

struct conn {
    struct http_server *srv;  /* the loop serving it now */
    struct http_server *home; /* the loop that accepted it */
    struct http_server *move_to; /* set while it moves: its handles close, then it goes there */
    struct conn *move_next;   /* on move_to's inbox, or on srv's homeward list */
    int homeward;
    int listed; /* in srv's list of connections */
    int counted_busy; /* counted in the group's busy requests */
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
    size_t out_counted; /* body bytes of out counted in the group's buffered */
    struct shared_body *shared; /* a body sent from shared memory, after out */
    size_t shared_pos;
    int response_set;
    int streaming;
    struct body_source src;
    /* a fed body (conn_respond_feed): the bytes still to come; they wait in out */
    int feeding;
    struct body_feed feed;
    uint64_t feed_left;
    uint64_t body_bytes;
    int io_busy;
    uv_work_t work;
    ssize_t work_result;
    int work_errno;
    int want_write;
    int armed; /* the events c->poll watches (set_poll) */
    /* TLS: file bodies are read into tls_buf (on the loop when resident, else on the thread
     * pool), then encrypted here (tls_body.c) */
    SSL *ssl;
    int tls_read_wants_write;
    char *tls_buf; /* up to TLS_CHUNK, held only while a file body is being sent */
    size_t tls_cap, tls_len, tls_pos;
    size_t tls_head; /* tls_buf starts with this many bytes of the response head */
};

/* tls_body.c: file bodies over TLS */
/* tls_buf holds at least want bytes (at most TLS_CHUNK); grown only while empty. */
int tls_body_buffer(struct conn *c, size_t want);
void tls_body_free(struct conn *c);
/* The unsent head in out and a small, resident body after it, into tls_buf to go out in one
 * SSL_write; 1 when done so. */
int tls_body_join_head(struct conn *c);
/* The next resident bytes of the body, up to avail and TLS_CHUNK, into tls_buf on the loop:
 * how many, 0 when they must be read on the thread pool. */
size_t tls_body_read(struct conn *c, uint64_t avail);
/* Does the kernel encrypt what this connection sends (kTLS)? Then SSL_sendfile sends file
 * bytes: >= 0 bytes sent, -EAGAIN, or another -errno. */
int tls_body_kernel(struct conn *c);
ssize_t tls_body_sendfile(struct conn *c, off_t off, size_t count);

/* fd was accepted, its slot in the group's count of connections already taken (given back on
 * failure). */
static inline void buffered_add(struct http_server *s, int64_t delta)
{
    atomic_fetch_add_explicit(&s->group->buffered, delta, memory_order_relaxed);
}
static inline uint64_t buffered_now(const struct http_server *s)
{
    int64_t v = atomic_load_explicit(&s->group->buffered, memory_order_relaxed);
    return v > 0 ? (uint64_t)v : 0;
}

void conn_accepted(struct http_server *s, int fd, const char *peer);
void conn_drain(struct conn *c);
void conn_close(struct conn *c);
void server_conn_gone(struct http_server *s, struct conn *c);
/* A connection of home's that never got going (or is gone): its slot in the group's count and
 * in home's own. */
void server_slot_release(struct http_server *home);
/* In the list of s (its handles are open on s's loop); 0 or -errno. */
int server_conn_join(struct http_server *s, struct conn *c);
/* A connection that arrived from another loop (conn.c): made to go on here. */
void conn_arrived(struct conn *c);
/* Starts moving c to loop `to`: only between requests, or with the request just read and not
 * answered; the caller must not touch c afterwards. */
void conn_move(struct conn *c, struct http_server *to);
/* The connection's request came in or ended: the group's count of busy ones. */
void conn_set_busy(struct conn *c, int busy);
void server_conn_leave(struct http_server *s, struct conn *c);
/* s->homeward_check's callback: the connections on s->homeward go home if they can. */
void server_on_homeward(uv_check_t *h);
int http_server_start_sibling(uv_loop_t *loop, struct http_server *first,
                              const struct http_server_opts *opts, unsigned index,
                              struct http_server **out);

/* workers.c: what the first loop tells the others */
struct http_worker;
void workers_set_tls(struct http_group *g, SSL_CTX *ctx);
void workers_drain(struct http_group *g);
void workers_close_all(struct http_group *g);
void workers_join(struct http_group *g);

#endif
