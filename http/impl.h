/* Internals shared by the listener (server.c) and the connections (conn.c). */
#ifndef REGCACHE_HTTP_IMPL_H
#define REGCACHE_HTTP_IMPL_H

#include <llhttp.h>
#include <openssl/ssl.h>

#include "http/http.h"
#include "util/buf.h"

#define CONN_READ_BUF 16384
#define SENDFILE_CHUNK (8u << 20)
#define TLS_CHUNK (256u << 10)

struct http_server {
    uv_loop_t *loop;
    int fd;
    int port;
    uv_poll_t listen_poll;
    int listening;
    struct http_server_opts opts;
    char *common_headers;
    llhttp_settings_t settings;
    struct conn *conns; /* doubly linked */
    size_t n_conns;
    int draining;
    SSL_CTX *tls; /* NULL: plain HTTP; replaced on reload, connections keep their own */
};

struct conn {
    struct http_server *srv;
    struct conn *next, *prev;
    int fd;
    char peer[64];
    uv_poll_t poll;
    uv_timer_t timer;
    int refs;
    int closing;    /* no more I/O; waiting for references to drop */
    int handles_open;
    llhttp_t parser;
    /* received bytes not yet given to the parser */
    char rbuf[CONN_READ_BUF];
    size_t rlen, rpos;
    int peer_closed;
    /* the request being parsed or answered */
    struct buf url, field, value, accept;
    char path[HTTP_MAX_URL + 1];
    char range[256];
    char content_type[256];
    char content_range[128];
    char authorization[8192];
    char host[256];
    int forwarded_https;
    size_t header_bytes, n_headers;
    int value_pending;
    int reject_status; /* set by a parser callback that refuses the request */
    struct http_request req;
    int req_active;
    /* reading the request body (conn_read_body) */
    enum { PAUSE_HEADERS, PAUSE_BODY_FULL, PAUSE_BODY_END } pause_reason;
    int reading_body, body_paused, body_done;
    int (*body_on_data)(void *ud, const char *data, size_t len);
    void (*body_on_end)(void *ud, int status);
    void *body_ud;
    int in_parse; /* inside parse_more: a response finishing now must not re-enter it */
    int close_after; /* close once the current response is out */
    uint64_t started_us;
    /* the response */
    int status;
    struct buf out;
    size_t out_pos;
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
    char *tls_buf;
    size_t tls_len, tls_pos;
};

void conn_accepted(struct http_server *s, int fd, const char *peer);
void conn_drain(struct conn *c);
void conn_close(struct conn *c);
void conn_settings_init(llhttp_settings_t *s);
void server_conn_gone(struct http_server *s, struct conn *c);

#endif
