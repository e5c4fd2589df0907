/* SPDX-License-Identifier: Apache-2.0 */
/* More event loops on one listener: each worker is a thread running a loop of its own with a
 * server (server.c) on a duplicate of the first loop's listening socket. The first loop tells
 * its workers what concerns them all (a new TLS context, a drain, the end) through one async
 * handle each; the flags it sets are read on the worker's thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http/impl.h"
#include "util/log.h"

struct http_worker {
    struct http_group *g;
    unsigned index;
    uv_thread_t thread;
    int joinable;
    uv_loop_t loop;
    struct http_server *srv;
    void *ud;
    uv_async_t ctl;
    pthread_mutex_t lock; /* the requests below */
    SSL_CTX *tls;         /* a context to take (a reference of its own) */
    int tls_set, drain, close;
    /* start-up: the thread says whether it serves, then waits for every loop to have started
     * before it runs its own (go): no loop accepts a connection before all can be given one */
    uv_sem_t started, go;
    int start_rc;
};

static void on_ctl(uv_async_t *a)
{
    struct http_worker *w = a->data;
    pthread_mutex_lock(&w->lock);
    SSL_CTX *tls = w->tls;
    int tls_set = w->tls_set, drain = w->drain, close_all = w->close;
    w->tls = NULL;
    w->tls_set = w->drain = 0;
    pthread_mutex_unlock(&w->lock);
    if (tls_set)
        http_server_set_tls(w->srv, tls);
    if (drain && !close_all)
        http_server_drain(w->srv);
    if (close_all) {
        http_server_drain(w->srv);
        http_server_close_all(w->srv);
        uv_close((uv_handle_t *)&w->ctl, NULL);
    }
}

static void worker_main(void *arg)
{
    struct http_worker *w = arg;
    struct http_group *g = w->g;
    struct http_server *first = g->servers[0];
    struct http_server_opts opts = first->opts;
    opts.handler = g->wopts.handler;
    int r = uv_loop_init(&w->loop);
    if (r) {
        w->start_rc = r;
        uv_sem_post(&w->started);
        return;
    }
    w->ud = g->wopts.start ? g->wopts.start(g->wopts.ctx, w->index, &w->loop) : NULL;
    opts.ud = w->ud;
    if (g->wopts.start && !w->ud)
        r = -ENOMEM;
    if (!r)
        r = http_server_start_sibling(&w->loop, first, &opts, w->index, &w->srv);
    if (!r) {
        if (first->tls && SSL_CTX_up_ref(first->tls))
            w->srv->tls = first->tls;
        uv_async_init(&w->loop, &w->ctl, on_ctl);
        w->ctl.data = w;
        g->servers[w->index] = w->srv;
    }
    w->start_rc = r;
    uv_sem_post(&w->started);
    uv_sem_wait(&w->go);
    if (!r)
        uv_run(&w->loop, UV_RUN_DEFAULT);
    if (g->wopts.stop && w->ud)
        g->wopts.stop(g->wopts.ctx, w->index, w->ud);
    uv_run(&w->loop, UV_RUN_DEFAULT); /* what stop closed */
    if (uv_loop_close(&w->loop))
        log_debug("worker %u: loop closed with handles still open", w->index);
    log_flush(); /* access lines of connections closed last */
}

int http_server_start_workers(struct http_server *s, const struct http_workers_opts *o)
{
    if (o->n <= 1)
        return 0;
    struct http_group *g = calloc(1, sizeof(*g));
    struct http_server **servers = calloc(o->n, sizeof(*servers));
    struct http_worker *workers = calloc(o->n - 1, sizeof(*workers));
    if (!g || !servers || !workers) {
        free(g);
        free(servers);
        free(workers);
        return -ENOMEM;
    }
    atomic_store(&g->n_conns, atomic_load(&s->group->n_conns));
    atomic_store(&g->busy, atomic_load(&s->group->busy));
    atomic_store(&g->refused, atomic_load(&s->group->refused));
    atomic_store(&g->buffered, atomic_load(&s->group->buffered));
    g->n = o->n;
    g->servers = servers;
    g->workers = workers;
    g->wopts = *o;
    servers[0] = s;
    s->group = g;
    for (unsigned i = 1; i < o->n; i++) {
        struct http_worker *w = &workers[i - 1];
        w->g = g;
        w->index = i;
        pthread_mutex_init(&w->lock, NULL);
        uv_sem_init(&w->started, 0);
        uv_sem_init(&w->go, 0);
    }
    unsigned started = 1;
    int r = 0;
    for (unsigned i = 1; i < o->n && !r; i++) {
        struct http_worker *w = &workers[i - 1];
        if ((r = uv_thread_create(&w->thread, worker_main, w)))
            break;
        w->joinable = 1;
        uv_sem_wait(&w->started);
        r = w->start_rc;
        if (!r)
            started++;
    }
    if (r) {
        log_error("workers: started %u of %u loops: %s", started, o->n, strerror(-r));
        g->n = started; /* the rest are stopped with the first loop */
    }
    /* each loop may hand a new connection to any other from now on (server.c pick_home) */
    for (unsigned i = 1; i < o->n; i++)
        if (workers[i - 1].joinable)
            uv_sem_post(&workers[i - 1].go);
    return r;
}

/* The calls below run on the first loop's thread. */

static void tell(struct http_worker *w, void (*set)(struct http_worker *w, void *arg), void *arg)
{
    if (!w->srv)
        return;
    pthread_mutex_lock(&w->lock);
    set(w, arg);
    pthread_mutex_unlock(&w->lock);
    uv_async_send(&w->ctl);
}

static void set_tls(struct http_worker *w, void *arg)
{
    SSL_CTX *ctx = arg;
    SSL_CTX_free(w->tls); /* one not taken yet */
    w->tls = ctx && SSL_CTX_up_ref(ctx) ? ctx : NULL;
    w->tls_set = 1;
}

static void set_drain(struct http_worker *w, void *arg)
{
    (void)arg;
    w->drain = 1;
}

static void set_close(struct http_worker *w, void *arg)
{
    (void)arg;
    w->close = 1;
}

void workers_set_tls(struct http_group *g, SSL_CTX *ctx)
{
    for (unsigned i = 1; g->workers && i < g->n; i++)
        tell(&g->workers[i - 1], set_tls, ctx);
}

void workers_drain(struct http_group *g)
{
    for (unsigned i = 1; g->workers && i < g->n; i++)
        tell(&g->workers[i - 1], set_drain, NULL);
}

void workers_close_all(struct http_group *g)
{
    for (unsigned i = 1; g->workers && i < g->n; i++) {
        struct http_worker *w = &g->workers[i - 1];
        pthread_mutex_lock(&w->lock);
        int told = w->close;
        pthread_mutex_unlock(&w->lock);
        if (!told)
            tell(w, set_close, NULL);
    }
}

void workers_join(struct http_group *g)
{
    if (!g->workers)
        return;
    unsigned n = g->wopts.n;
    for (unsigned i = 1; i < n; i++) {
        struct http_worker *w = &g->workers[i - 1];
        if (w->joinable)
            uv_thread_join(&w->thread);
        if (w->srv)
            http_server_free(w->srv);
        SSL_CTX_free(w->tls);
        pthread_mutex_destroy(&w->lock);
        uv_sem_destroy(&w->started);
        uv_sem_destroy(&w->go);
    }
    free(g->workers);
    g->workers = NULL;
    free(g->servers);
    g->servers = NULL;
    /* the group itself is freed with the first server */
}
