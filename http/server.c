/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/impl.h"
#include "util/log.h"
#include "util/parse.h"

#define BUSY_BODY "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"too many connections\"}]}\n"
static const char busy_response[] =
    "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    "Content-Type: application/json\r\nDocker-Distribution-Api-Version: registry/2.0\r\n"
    "X-Content-Type-Options: nosniff\r\nContent-Security-Policy: sandbox\r\n"
    "Content-Length: 69\r\n\r\n" BUSY_BODY;
_Static_assert(sizeof(BUSY_BODY) - 1 == 69, "Content-Length of the busy answer");

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, len);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, len);
    else
        snprintf(out, len, "-");
}

static void on_listen_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    struct http_server *s = h->data;
    if (status < 0)
        return;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        if (s->n_conns >= s->opts.max_connections) {
            ssize_t n = send(fd, busy_response, sizeof(busy_response) - 1, MSG_NOSIGNAL);
            (void)n;
            close(fd);
            s->refused++;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char peer[64];
        peer_name(&ss, peer, sizeof(peer));
        conn_accepted(s, fd, peer);
    }
}

static int bind_listen(const char *listen_spec, int *out_fd, int *out_port)
{
    char host[256];
    int port;
    int r = parse_listen(listen_spec, host, &port);
    if (r)
        return r;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    if (getaddrinfo(host[0] ? host : NULL, portstr, &hints, &ai) || !ai)
        return -EADDRNOTAVAIL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 1024)) {
        r = -errno;
        close(fd);
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *out_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *out_fd = fd;
    r = 0;
out:
    freeaddrinfo(ai);
    return r;
}

/* Every connection is a descriptor: the soft limit goes up to the hard one (the systemd unit sets
 * LimitNOFILE), and a limit below max_connections is said at start rather than found later. */
static void raise_nofile(uint64_t max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl)) {
            rl.rlim_cur = was;
            log_warn("open files: cannot raise the limit of %llu: %s", (unsigned long long)was,
                     strerror(errno));
        }
    }
    unsigned long long lim = rl.rlim_cur == RLIM_INFINITY ? ~0ULL : (unsigned long long)rl.rlim_cur;
    /* the store, the database, upstream sockets and libuv need some of their own */
    if (lim < max_connections + 256)
        log_warn("open files: limit %llu is low for limits.max_connections %llu (raise "
                 "LimitNOFILE or ulimit -n)", lim, (unsigned long long)max_connections);
    else
        log_info("open files: limit %llu", lim);
}

int http_server_start(uv_loop_t *loop, const struct http_server_opts *opts,
                      struct http_server **out)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->opts = *opts;
    s->common_headers = strdup(opts->common_headers ? opts->common_headers : "");
    s->default_header = strdup(opts->default_header ? opts->default_header : "");
    const char *colon = s->default_header ? strchr(s->default_header, ':') : NULL;
    s->default_name_len = colon ? (size_t)(colon - s->default_header) + 1 : 0;
    s->rbuf = malloc(READ_BUF);
    if (!s->common_headers || !s->default_header || !s->rbuf) {
        http_server_free(s);
        return -ENOMEM;
    }
    raise_nofile(opts->max_connections);
    int r = bind_listen(opts->listen, &s->fd, &s->port);
    if (r) {
        http_server_free(s);
        return r;
    }
    uv_poll_init(loop, &s->listen_poll, s->fd);
    s->listen_poll.data = s;
    uv_poll_start(&s->listen_poll, UV_READABLE, on_listen_readable);
    s->listening = 1;
    *out = s;
    return 0;
}

void http_server_set_tls(struct http_server *s, struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(s->tls); /* connections made with it hold their own references */
    s->tls = ctx;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

static void on_listen_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;
    close(s->fd);
    s->fd = -1;
}

static void stop_listening(struct http_server *s)
{
    if (s->listening) {
        s->listening = 0;
        uv_poll_stop(&s->listen_poll);
        uv_close((uv_handle_t *)&s->listen_poll, on_listen_closed);
    }
}

void http_server_drain(struct http_server *s)
{
    s->draining = 1; /* every request from now on is answered with Connection: close */
    for (struct conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_drain(c);
    }
}

size_t http_server_connections(const struct http_server *s)
{
    return s->n_conns;
}

uint64_t http_server_refused(const struct http_server *s)
{
    return s->refused;
}

size_t http_server_busy(const struct http_server *s)
{
    size_t n = 0;
    for (const struct conn *c = s->conns; c; c = c->next)
        n += c->req_active && !c->closing;
    return n;
}

uint64_t http_server_buffered(const struct http_server *s)
{
    return s->buffered;
}

void http_server_close_all(struct http_server *s)
{
    stop_listening(s);
    for (struct conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_close(c);
    }
}

void server_conn_gone(struct http_server *s, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (s->conns == c)
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
}

void http_server_free(struct http_server *s)
{
    if (!s)
        return;
    SSL_CTX_free(s->tls);
    free(s->common_headers);
    free(s->default_header);
    free(s->rbuf);
    free(s);
}
