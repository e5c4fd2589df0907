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
#include <fcntl.h>
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

/* A socket accepted by one loop for another (pick_home), waiting in the other's inbox. */
struct fresh {
    struct fresh *next;
    int fd;
    char peer[64];
};

void server_slot_release(struct http_server *home)
{
    atomic_fetch_sub_explicit(&home->group->n_conns, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&home->n_home, 1, memory_order_relaxed);
}

/* The loop a connection s accepted is to live on, its count taken at once (so that the next
 * accept, on any loop, sees it): s, unless another loop has fewer connections. A connection
 * stays on its loop for its life, and a crowd arriving at once is accepted mostly by whichever
 * loop woke first: left there, the loop with the most serves each of its connections slower
 * than the others serve theirs for as long as they last (measured with two loops: 44 of 64
 * connections on one gave them half the other's rate, and the whole run a p99 three times
 * that of an even split). No loop runs before every loop has started (workers.c), so a crowd
 * arriving during start-up is spread too. */
static struct http_server *pick_home(struct http_server *s)
{
    struct http_group *g = s->group;
    struct http_server *home = s;
    size_t least = atomic_load_explicit(&s->n_home, memory_order_relaxed);
    for (unsigned i = 0; i < g->n; i++) {
        struct http_server *o = g->servers[i];
        if (o == s || !atomic_load_explicit(&o->takes_new, memory_order_relaxed))
            continue;
        size_t n = atomic_load_explicit(&o->n_home, memory_order_relaxed);
        if (n < least) {
            home = o;
            least = n;
        }
    }
    atomic_fetch_add_explicit(&home->n_home, 1, memory_order_relaxed);
    return home;
}

/* fd goes to home's loop, which takes it as if it had accepted it (on_inbox); closed, its slot
 * given back, when home has closed meanwhile. */
static void send_fresh(struct http_server *home, int fd, const char *peer)
{
    struct fresh *f = malloc(sizeof(*f));
    pthread_mutex_lock(&home->inbox_lock);
    int sent = f && !home->closed;
    if (sent) {
        f->fd = fd;
        snprintf(f->peer, sizeof(f->peer), "%s", peer);
        f->next = home->fresh;
        home->fresh = f;
        uv_async_send(&home->inbox_async); /* under the lock: the handle is not closed yet */
    }
    pthread_mutex_unlock(&home->inbox_lock);
    if (!sent) {
        free(f);
        close(fd);
        server_slot_release(home);
    }
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
        /* the slot is taken before the connection is: loops accepting at once never hold
         * more than max_connections between them */
        if (atomic_fetch_add_explicit(&s->group->n_conns, 1, memory_order_relaxed) >=
            s->opts.max_connections) {
            atomic_fetch_sub_explicit(&s->group->n_conns, 1, memory_order_relaxed);
            ssize_t n = send(fd, busy_response, sizeof(busy_response) - 1, MSG_NOSIGNAL);
            (void)n;
            close(fd);
            atomic_fetch_add_explicit(&s->group->refused, 1, memory_order_relaxed);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char peer[64];
        peer_name(&ss, peer, sizeof(peer));
        struct http_server *home = pick_home(s);
        if (home == s)
            conn_accepted(s, fd, peer);
        else
            send_fresh(home, fd, peer);
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

static void on_inbox(uv_async_t *a)
{
    struct http_server *s = a->data;
    pthread_mutex_lock(&s->inbox_lock);
    struct conn *list = s->inbox;
    struct fresh *fresh = s->fresh;
    s->inbox = NULL;
    s->fresh = NULL;
    int closed = s->closed;
    pthread_mutex_unlock(&s->inbox_lock);
    struct fresh *frev = NULL; /* oldest first */
    while (fresh) {
        struct fresh *next = fresh->next;
        fresh->next = frev;
        frev = fresh;
        fresh = next;
    }
    while (frev) {
        struct fresh *next = frev->next;
        if (closed) {
            close(frev->fd);
            server_slot_release(s);
        } else {
            conn_accepted(s, frev->fd, frev->peer);
        }
        free(frev);
        frev = next;
    }
    /* oldest first: the list was pushed at its head */
    struct conn *rev = NULL;
    while (list) {
        struct conn *next = list->move_next;
        list->move_next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        struct conn *next = rev->move_next;
        rev->move_next = NULL;
        conn_arrived(rev);
        rev = next;
    }
}

/* The connections whose visit here ended this turn go home, when nothing holds them here. */
void server_on_homeward(uv_check_t *h)
{
    struct http_server *s = h->data;
    struct conn *list = s->homeward;
    s->homeward = NULL;
    uv_check_stop(h);
    while (list) {
        struct conn *c = list, *next = list->move_next;
        c->move_next = NULL;
        c->homeward = 0;
        /* its own reference and the list's: no handler still looks at it */
        if (!c->closing && !c->req_active && !c->io_busy && !c->want_write && c->refs == 2 &&
            c->home && c->home != s)
            conn_move(c, c->home);
        conn_unref(c);
        list = next;
    }
}

/* Access lines are held (conn.c log_access) and written once a turn, before the loop waits:
 * one write(2) for all the requests a turn answered instead of one each. What the last
 * connections closed leave is written by http_server_free (the first loop) and at the end of
 * a worker's thread (workers.c). */
static void on_log_prepare(uv_prepare_t *h)
{
    (void)h;
    log_flush();
}

/* What every loop's server has of its own, beside the listener. */
static int server_init(struct http_server *s, uv_loop_t *loop, const struct http_server_opts *opts)
{
    pthread_mutex_init(&s->inbox_lock, NULL);
    s->loop = loop;
    s->opts = *opts;
    s->hook_ud = opts->ud;
    s->group = &s->solo;
    s->solo.n = 1;
    s->solo_servers[0] = s;
    s->solo.servers = s->solo_servers;
    s->fd = -1;
    s->common_headers = strdup(opts->common_headers ? opts->common_headers : "");
    s->default_header = strdup(opts->default_header ? opts->default_header : "");
    const char *colon = s->default_header ? strchr(s->default_header, ':') : NULL;
    s->default_name_len = colon ? (size_t)(colon - s->default_header) + 1 : 0;
    s->rbuf = malloc(READ_BUF);
    if (!s->common_headers || !s->default_header || !s->rbuf)
        return -ENOMEM;
    uv_async_init(loop, &s->inbox_async, on_inbox);
    uv_check_init(loop, &s->homeward_check);
    s->inbox_async.data = s->homeward_check.data = s;
    uv_unref((uv_handle_t *)&s->homeward_check);
    uv_prepare_init(loop, &s->log_prepare);
    uv_prepare_start(&s->log_prepare, on_log_prepare);
    uv_unref((uv_handle_t *)&s->log_prepare);
    s->inbox_on = 1;
    return 0;
}

int http_server_start_sibling(uv_loop_t *loop, struct http_server *first,
                              const struct http_server_opts *opts, unsigned index,
                              struct http_server **out)
{
    int fd = fcntl(first->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s || server_init(s, loop, opts)) {
        close(fd);
        http_server_free(s);
        return -ENOMEM;
    }
    s->fd = fd;
    s->group = first->group;
    s->index = index;
    s->hook_ud = first->opts.ud;
    s->port = first->port;
    uv_poll_init(loop, &s->listen_poll, s->fd);
    s->listen_poll.data = s;
    uv_poll_start(&s->listen_poll, UV_READABLE, on_listen_readable);
    s->listening = 1;
    atomic_store_explicit(&s->takes_new, 1, memory_order_relaxed);
    *out = s;
    return 0;
}

int http_server_start(uv_loop_t *loop, const struct http_server_opts *opts,
                      struct http_server **out)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    if (server_init(s, loop, opts)) {
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
    atomic_store_explicit(&s->takes_new, 1, memory_order_relaxed);
    *out = s;
    return 0;
}

void http_server_set_tls(struct http_server *s, struct ssl_ctx_st *ctx)
{
    if (s->index == 0)
        workers_set_tls(s->group, ctx);
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
        atomic_store_explicit(&s->takes_new, 0, memory_order_relaxed);
        uv_poll_stop(&s->listen_poll);
        uv_close((uv_handle_t *)&s->listen_poll, on_listen_closed);
    }
}

void http_server_drain(struct http_server *s)
{
    if (s->index == 0)
        workers_drain(s->group);
    s->draining = 1; /* every request from now on is answered with Connection: close */
    for (struct conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_drain(c);
    }
}

size_t http_server_connections(const struct http_server *s)
{
    return atomic_load_explicit(&s->group->n_conns, memory_order_relaxed);
}

unsigned http_server_loops(const struct http_server *s)
{
    return s->group->n;
}

size_t http_server_loop_connections(const struct http_server *s, unsigned i)
{
    const struct http_server *o = i < s->group->n ? s->group->servers[i] : NULL;
    return o ? atomic_load_explicit(&o->n_home, memory_order_relaxed) : 0;
}

uint64_t http_server_refused(const struct http_server *s)
{
    return atomic_load_explicit(&s->group->refused, memory_order_relaxed);
}

size_t http_server_busy(const struct http_server *s)
{
    return atomic_load_explicit(&s->group->busy, memory_order_relaxed);
}

uint64_t http_server_buffered(const struct http_server *s)
{
    return buffered_now(s);
}

void http_server_close_all(struct http_server *s)
{
    if (s->index == 0)
        workers_close_all(s->group);
    stop_listening(s);
    /* from now on a connection sent here is closed by its sender (conn.c) */
    if (s->inbox_on) {
        pthread_mutex_lock(&s->inbox_lock);
        s->closed = 1;
        pthread_mutex_unlock(&s->inbox_lock);
        s->inbox_on = 0;
        on_inbox(&s->inbox_async); /* those already here close below */
        uv_close((uv_handle_t *)&s->inbox_async, NULL);
        uv_close((uv_handle_t *)&s->homeward_check, NULL);
        uv_close((uv_handle_t *)&s->log_prepare, NULL);
    }
    for (struct conn *c = s->homeward, *next; c; c = next) {
        next = c->move_next;
        c->move_next = NULL;
        c->homeward = 0;
        conn_unref(c);
    }
    s->homeward = NULL;
    for (struct conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_close(c);
    }
}

int server_conn_join(struct http_server *s, struct conn *c)
{
    c->srv = s;
    c->prev = NULL;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    c->listed = 1;
    return 0;
}

void server_conn_leave(struct http_server *s, struct conn *c)
{
    if (!c->listed)
        return;
    c->listed = 0;
    if (c->prev)
        c->prev->next = c->next;
    else if (s->conns == c)
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    s->n_conns--;
}

void server_conn_gone(struct http_server *s, struct conn *c)
{
    server_conn_leave(s, c);
    server_slot_release(c->home ? c->home : s);
}

void http_server_free(struct http_server *s)
{
    if (!s)
        return;
    log_flush(); /* access lines of connections closed last */
    if (s->index == 0) {
        workers_join(s->group);
        if (s->group != &s->solo)
            free(s->group);
    }
    pthread_mutex_destroy(&s->inbox_lock);
    SSL_CTX_free(s->tls);
    free(s->common_headers);
    free(s->default_header);
    free(s->rbuf);
    while (s->n_tls_pool)
        free(s->tls_pool[--s->n_tls_pool]);
    free(s);
}
