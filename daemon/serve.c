/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/serve.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "auth/auth.h"
#include "cache/cache.h"
#include "prefetch/control.h"
#include "prefetch/prefetch.h"
#include "cache/reconcile.h"
#include "daemon/notify.h"
#include "daemon/probes.h"
#include "db/db.h"
#include "http/http.h"
#include "http/tls.h"
#include "registry/api.h"
#include "registry/cors.h"
#include "hosted/hosted.h"
#include "metrics/metrics.h"
#include "registry/respond.h"
#include "store/store.h"
#include "ui/ui.h"
#include "upstream/upstream.h"
#include "util/cidr.h"
#include "util/clock.h"
#include "util/log.h"

#define SHUTDOWN_POLL_MS 50
#define RELOAD_POLL_MS 20
#define STARTUP_TICK_MS 1000
/* while starting, systemd's start timeout is pushed this far ahead every STARTUP_NOTIFY_TICKS
 * ticks: a long reconciliation is not mistaken for a hung start */
#define STARTUP_EXTEND_US (30ull * 1000 * 1000)
#define STARTUP_NOTIFY_TICKS 10

struct daemon {
    const struct config *cfg;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    uv_timer_t shutdown_timer;
    uint64_t shutdown_started_us;
    int stopping, finished;
    int status; /* the exit status once the loop ends */
    struct store *store;
    int store_lock_fd; /* a shared lock on the storage root: no import runs while we serve */
    struct db *db;
    struct upstream_client *up;
    struct cache *cache;
    struct prefetch *prefetch;
    struct prefetch_control *prefetch_control; /* `regcache prefetch`'s socket; NULL: none */
    struct registry *registry;
    struct http_server *http;
    struct auth *auth;
    struct hosted *hosted;
    struct ui *ui;
    uv_signal_t sighup;
    /* probes, and the gate in front of the registry while it is not there */
    struct probes *probes;
    char serving[256]; /* STATUS= once ready */
    /* the start-up reconciliation, on the thread pool while the loop answers probes */
    uv_work_t startup_work;
    uv_timer_t startup_timer;
    unsigned startup_ticks;
    uint64_t startup_t0;
    struct reconcile_watch watch;
    struct reconcile_report rec;
    int rec_rc;
    /* after SIGHUP: READY=1 once the reload is done */
    uv_timer_t reload_timer;
    struct http_server *metrics_http; /* metrics.listen, NULL: none */
    struct cidr *metrics_allow;       /* metrics.allow: who may read /metrics on the main one */
    size_t n_metrics_allow;
    struct cors *cors;
};

static void finish(struct daemon *d)
{
    if (d->finished)
        return;
    d->finished = 1;
    uv_timer_stop(&d->shutdown_timer);
    uv_close((uv_handle_t *)&d->shutdown_timer, NULL);
    uv_timer_stop(&d->startup_timer);
    uv_close((uv_handle_t *)&d->startup_timer, NULL);
    uv_timer_stop(&d->reload_timer);
    uv_close((uv_handle_t *)&d->reload_timer, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
    probes_shutdown(d->probes);
    auth_shutdown(d->auth);
    hosted_shutdown(d->hosted);
    http_server_close_all(d->http);
    if (d->metrics_http)
        http_server_close_all(d->metrics_http);
    metrics_shutdown();
    prefetch_control_close(d->prefetch_control);
    d->prefetch_control = NULL;
    prefetch_stop(d->prefetch);
    if (d->cache)
        cache_shutdown(d->cache);
    upstream_client_shutdown(d->up);
    db_detach(d->db);
}

/* The drain: done once no request is in progress (connections accepted meanwhile only got
 * probes and 503s, and are not waited for), or when the grace is over. */
static void on_shutdown_tick(uv_timer_t *t)
{
    struct daemon *d = t->data;
    uint64_t waited_ms = (clock_mono_us() - d->shutdown_started_us) / 1000;
    size_t left = http_server_busy(d->http);
    if (left == 0) {
        log_info("all responses finished; stopping");
        finish(d);
    } else if (waited_ms >= d->cfg->shutdown_grace_ms) {
        log_warn("shutdown grace of %llu ms over; closing %zu connections",
                 (unsigned long long)d->cfg->shutdown_grace_ms, left);
        finish(d);
    }
}

static void on_reload_tick(uv_timer_t *t)
{
    struct daemon *d = t->data;
    if (auth_reloading(d->auth) && !d->stopping)
        return;
    uv_timer_stop(&d->reload_timer);
    if (!d->stopping)
        notify_sendf("READY=1\nSTATUS=%s", d->serving);
}

static void on_sighup(uv_signal_t *s, int signum)
{
    (void)signum;
    struct daemon *d = s->data;
    /* systemd's reload protocol: RELOADING=1 with the time, READY=1 once done; not while
     * starting (nothing is ready to reload) or stopping */
    int tell = probes_phase(d->probes) == PROBES_READY;
    if (tell) {
        char msg[NOTIFY_MESSAGE_MAX];
        if (notify_reloading_message(msg, sizeof(msg), clock_mono_us(), "reloading") > 0)
            notify_send(msg);
    }
    log_info("SIGHUP: reloading");
    if (d->auth)
        auth_reload(d->auth);
    if (d->cfg->tls_cert) {
        char err[512];
        struct ssl_ctx_st *ctx =
            tls_context_load(d->cfg->tls_cert, d->cfg->tls_key, err, sizeof(err));
        if (ctx) {
            http_server_set_tls(d->http, ctx);
            log_info("tls: certificate %s reloaded", d->cfg->tls_cert);
        } else {
            log_error("tls: keeping the previous certificate: %s", err);
        }
    }
    if (tell) /* the password file is re-read on the thread pool: READY=1 once it is in */
        uv_timer_start(&d->reload_timer, on_reload_tick, 0, RELOAD_POLL_MS);
}

/* SIGTERM/SIGINT: /readyz turns 503 at once, the requests in progress finish (within
 * timeouts.shutdown_grace), and new connections are still accepted meanwhile so that probes
 * are answered (not ready) and everything else gets a 503 with Retry-After. A second signal
 * stops at once. During start-up the reconciliation stops before its next file. */
static void on_signal(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;
    if (d->stopping) {
        log_warn("second signal: stopping now");
        finish(d);
        return;
    }
    d->stopping = 1;
    __atomic_store_n(&d->watch.stop, 1, __ATOMIC_RELAXED);
    probes_set_phase(d->probes, PROBES_DRAINING);
    size_t busy = http_server_busy(d->http);
    notify_sendf("STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu\nSTATUS=stopping: finishing %zu "
                 "responses",
                 (unsigned long long)(d->cfg->shutdown_grace_ms + 5000) * 1000, busy);
    log_info("%s: not ready; finishing %zu responses (new requests are answered 503)",
             signum == SIGTERM ? "SIGTERM" : "SIGINT", busy);
    http_server_drain(d->http);
    if (d->metrics_http)
        http_server_drain(d->metrics_http);
    d->shutdown_started_us = clock_mono_us();
    uv_timer_start(&d->shutdown_timer, on_shutdown_tick, 0, SHUTDOWN_POLL_MS);
}

/* A store or index check changed while ready: systemctl status says so. */
static void on_readiness(void *ud, const char *reason)
{
    struct daemon *d = ud;
    if (reason)
        notify_sendf("STATUS=not ready: %s", reason);
    else
        notify_sendf("STATUS=%s", d->serving);
}

/* The listener is bound before the registry exists (so that privileges can be dropped in
 * between, and so that probes are answered during the start-up reconciliation). No request is
 * read before the loop runs, by which time d->probes is set; until d->registry is set (and
 * again from SIGTERM on) probes_handle answers every request itself. */
static void daemon_handle(struct conn *c, struct http_request *req, void *ud)
{
    struct daemon *d = ud;
    if (d->n_metrics_allow && strcmp(req->path, "/metrics") == 0) {
        /* from the start on (during the reconciliation too) until the end of the drain; the
         * client is the one behind log.trusted_proxies */
        struct ip_addr client;
        if (ip_parse(req->client, strlen(req->client), &client) == 0 &&
            cidr_list_contains(d->metrics_allow, d->n_metrics_allow, &client))
            metrics_respond(c, req);
        else
            respond_error(c, req->method == HTTP_METHOD_HEAD, 403, "DENIED",
                          "metrics are not served to this address (metrics.allow)", NULL);
        return;
    }
    if (probes_handle(d->probes, c, req))
        return;
    registry_handle(c, req, d->registry);
}

static void daemon_write_error(struct conn *c, int status, void *ud)
{
    struct daemon *d = ud;
    registry_write_error(c, status, d->registry);
}

static void daemon_on_response(void *ud, const struct http_request *req,
                               const struct http_response_info *info)
{
    (void)ud;
    metrics_http_finished(req, info);
}

/* The figures of the front and the index, read by each scrape. */
static void daemon_figures(void *ud, struct metrics_live *out)
{
    struct daemon *d = ud;
    uint64_t ok, failed;
    out->connections_open += http_server_connections(d->http);
    out->connections_refused += http_server_refused(d->http);
    tls_handshakes(&ok, &failed);
    out->tls_ok += ok;
    out->tls_failed += failed;
    if (d->db)
        out->index_pending += db_pending(d->db);
}

/* metrics.listen: /metrics and nothing else, to whoever reaches the address. */
static void metrics_handle(struct conn *c, struct http_request *req, void *ud)
{
    (void)ud;
    if (strcmp(req->path, "/metrics") == 0)
        metrics_respond(c, req);
    else
        respond_error(c, req->method == HTTP_METHOD_HEAD, 404, "NOT_FOUND",
                      "only /metrics is served on this address", NULL);
}

static int start_metrics(struct daemon *d)
{
    const struct config *cfg = d->cfg;
    int r;
    if (cfg->n_metrics_allow) {
        d->metrics_allow = calloc(cfg->n_metrics_allow, sizeof(*d->metrics_allow));
        if (!d->metrics_allow)
            return -ENOMEM;
        for (size_t i = 0; i < cfg->n_metrics_allow; i++)
            if (cidr_parse(cfg->metrics_allow[i], &d->metrics_allow[d->n_metrics_allow]) == 0)
                d->n_metrics_allow++; /* the config checked them */
    }
    if (!cfg->metrics_listen)
        return 0;
    struct http_server_opts opts = {
        .listen = cfg->metrics_listen,
        .handler = metrics_handle,
        .error_writer = daemon_write_error,
        .ud = d,
        .common_headers = "X-Content-Type-Options: nosniff\r\n",
        .default_header = REGISTRY_DEFAULT_HEADER,
        .max_connections = 64,
        .idle_timeout_ms = cfg->client_idle_ms,
        .header_timeout_ms = cfg->client_header_ms,
        .min_body_rate = cfg->min_body_rate,
        .max_response_memory = 4 * METRICS_EXPOSITION_MAX,
    };
    if ((r = http_server_start(&d->loop, &opts, &d->metrics_http))) {
        log_error("metrics.listen %s: %s", cfg->metrics_listen, strerror(-r));
        d->metrics_http = NULL;
        return r;
    }
    log_info("metrics on http://%s/metrics (port %d)", cfg->metrics_listen,
             http_server_port(d->metrics_http));
    return 0;
}

/* Creates a missing storage root (missing parents 0755, the root 0700) owned by uid:gid, so
 * that the user the mirror becomes can make its store there. */
static int make_storage_for(const char *storage, uid_t uid, gid_t gid)
{
    struct stat st;
    char buf[4096];
    if (lstat(storage, &st) == 0 || errno != ENOENT)
        return 0; /* there already: store_open judges it */
    size_t n = strlen(storage);
    if (n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, storage, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0700) && errno != EEXIST)
        return -errno;
    return chown(buf, uid, gid) ? -errno : 0;
}

/* Becomes cfg->user: its groups, its group, then the user, and checks that root cannot be
 * regained. 0, or -1 after logging why. */
static int drop_privileges(const struct config *cfg)
{
    errno = 0;
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        log_error("user: no such user '%s'%s%s", cfg->user, errno ? ": " : "",
                  errno ? strerror(errno) : "");
        return -1;
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    if (getuid() == uid && geteuid() == uid)
        return 0; /* already that user */
    if (geteuid() != 0) {
        log_error("user: cannot become %s (uid %u): regcache runs as uid %u, not as root",
                  cfg->user, (unsigned)uid, (unsigned)geteuid());
        return -1;
    }
    int r = make_storage_for(cfg->storage, uid, gid);
    if (r) {
        log_error("storage %s: cannot create it for user %s: %s", cfg->storage, cfg->user,
                  strerror(-r));
        return -1;
    }
    if (initgroups(cfg->user, gid) || setgid(gid) || setuid(uid)) {
        log_error("user: cannot become %s (uid %u, gid %u): %s", cfg->user, (unsigned)uid,
                  (unsigned)gid, strerror(errno));
        return -1;
    }
    if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        log_error("user: still able to become root after switching to %s", cfg->user);
        return -1;
    }
    log_info("running as user %s (uid %u, gid %u)", cfg->user, (unsigned)uid, (unsigned)gid);
    return 0;
}

/* ---- start-up ---- */

static void startup_work(uv_work_t *w)
{
    struct daemon *d = w->data;
    d->rec_rc = reconcile_watched(d->db, d->store, 0, &d->watch, &d->rec);
}

static void on_startup_tick(uv_timer_t *t)
{
    struct daemon *d = t->data;
    char what[128];
    snprintf(what, sizeof(what), "reconciling the store (%zu files checked)",
             __atomic_load_n(&d->watch.files, __ATOMIC_RELAXED));
    probes_set_startup(d->probes, what);
    if (++d->startup_ticks % STARTUP_NOTIFY_TICKS == 0)
        notify_sendf("EXTEND_TIMEOUT_USEC=%llu\nSTATUS=starting: %s", STARTUP_EXTEND_US, what);
}

/* What follows the reconciliation: everything that serves. 0, or -1 after logging why. */
static int start_serving(struct daemon *d)
{
    const struct config *cfg = d->cfg;
    int r;
    if ((r = upstream_client_new(&d->loop, cfg, &d->up))) {
        log_error("upstream client: %s", strerror(-r));
        d->up = NULL;
        return -1;
    }
    if ((r = cache_new(&d->loop, cfg, d->store, d->db, d->up, &d->cache))) {
        log_error("cache index: %s", strerror(-r));
        d->cache = NULL;
        return -1;
    }
    db_attach(d->db, &d->loop);
    cache_start(d->cache, d->rec.bytes);
    cache_count_files(d->cache, d->rec.files);
    if ((r = prefetch_new(&d->loop, cfg, d->cache, d->up, d->db, &d->prefetch))) {
        log_error("prefetch: cannot start (%s)", strerror(-r));
        d->prefetch = NULL;
        return -1;
    }
    prefetch_start(d->prefetch);
    prefetch_control_new(&d->loop, cfg->storage, d->prefetch, &d->prefetch_control);
    if ((r = auth_new(&d->loop, cfg, &d->auth))) {
        log_error("authentication: cannot start (%s)", strerror(-r));
        d->auth = NULL;
        return -1;
    }
    if ((r = hosted_new(&d->loop, cfg, d->store, d->db, &d->hosted))) {
        log_error("hosted repositories: cannot start (%s)", strerror(-r));
        d->hosted = NULL;
        return -1;
    }
    if (!(d->registry = registry_new(d->cache, d->up, d->auth, d->hosted))) {
        log_error("out of memory");
        return -1;
    }
    if ((r = ui_new(&d->loop, cfg, d->db, d->store, d->up, &d->ui))) {
        log_error("status page: cannot start (%s)", strerror(-r));
        return -1;
    }
    registry_set_ui(d->registry, d->ui);
    registry_set_cors(d->registry, d->cors);
    registry_set_rules(d->registry, cfg->rules);
    return 0;
}

static void startup_done(uv_work_t *w, int status)
{
    struct daemon *d = w->data;
    const struct config *cfg = d->cfg;
    const struct reconcile_report *rec = &d->rec;
    uv_timer_stop(&d->startup_timer);
    if (d->stopping) {
        /* the drain (or a second signal) ends the loop */
        log_info("stopped during the start-up reconciliation%s",
                 d->rec_rc == -ECANCELED ? " (it goes on at the next start)" : "");
        return;
    }
    if (status || d->rec_rc) {
        log_error("cannot reconcile the store with its index (%d)", status ? status : d->rec_rc);
        d->status = 1;
        finish(d);
        return;
    }
    log_info("store: %zu files, %llu bytes; %zu adopted, %zu corrupt removed, %zu stray removed, "
             "%zu index rows without a file dropped (%llu ms)",
             rec->files, (unsigned long long)rec->bytes, rec->adopted, rec->removed_corrupt,
             rec->removed_stray, rec->rows_dropped,
             (unsigned long long)((clock_mono_us() - d->startup_t0) / 1000));
    if (start_serving(d)) {
        d->status = 1;
        finish(d);
        return;
    }
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        log_info("upstream %s = %s%s", u->name, u->url, i == 0 ? " (default)" : "");
        for (size_t j = 1; j < u->n_urls; j++)
            log_info("upstream %s: endpoint %zu = %s", u->name, j + 1, u->urls[j]);
        for (size_t j = 0; j < u->n_blob_sources; j++)
            log_info("upstream %s: blob source %s = %s, asked %s it", u->name,
                     u->blob_sources[j].name, u->blob_sources[j].url,
                     u->blob_sources[j].before ? "before" : "after");
    }
    snprintf(d->serving, sizeof(d->serving), "serving %s on %s, storage %s",
             cfg->tls_cert ? "HTTPS" : "HTTP", cfg->listen, cfg->storage);
    probes_set_phase(d->probes, PROBES_READY);
    notify_sendf("READY=1\nSTATUS=%s", d->serving);
    log_info("regcache %s serving %s on %s (port %d), storage %s", REGCACHE_VERSION,
             cfg->tls_cert ? "HTTPS" : "HTTP", cfg->listen, http_server_port(d->http),
             cfg->storage);
}

int serve(const struct config *cfg)
{
    struct daemon d = {0};
    d.store_lock_fd = -1;
    char dbpath[4096], err[1024];
    int r, status = 1;
    d.cfg = cfg;
    log_set_level((enum log_level)cfg->log_level);
    log_set_format(cfg->log_format ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
    /* sendfile and the store run on the thread pool: give it room before the loop starts */
    setenv("UV_THREADPOOL_SIZE", "16", 0);
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&d.loop);
    if ((r = metrics_init(&d.loop, cfg))) {
        log_error("metrics: %s", strerror(-r));
        uv_loop_close(&d.loop);
        return 1;
    }

    /* Bind first (a port below 1024 may need root), load the TLS key (it may be readable by
     * root only), then become cfg->user before touching the store or the index. */
    struct http_server_opts opts = {
        .listen = cfg->listen,
        .handler = daemon_handle,
        .error_writer = daemon_write_error,
        .ud = &d,
        .common_headers = REGISTRY_COMMON_HEADERS,
        .default_header = REGISTRY_DEFAULT_HEADER,
        .max_connections = cfg->max_connections,
        .idle_timeout_ms = cfg->client_idle_ms,
        .header_timeout_ms = cfg->client_header_ms,
        .min_body_rate = cfg->min_body_rate,
        .max_response_memory = cfg->max_response_memory,
        .max_waiting = cfg->max_connections - (cfg->reserved_connections
                                                    ? cfg->reserved_connections
                                                    : cfg->max_connections / 16),
        .on_response = daemon_on_response,
        .access_log = !cfg->log_access ? HTTP_ACCESS_OFF
                      : cfg->log_format ? HTTP_ACCESS_JSON
                                        : HTTP_ACCESS_TEXT,
        .access_log_probes = cfg->log_access_probes,
        .trusted_proxies = cfg->trusted_proxies,
        .n_trusted_proxies = cfg->n_trusted_proxies,
    };
    if ((r = http_server_start(&d.loop, &opts, &d.http))) {
        log_error("listen %s: %s", cfg->listen, strerror(-r));
        d.http = NULL;
        goto fail;
    }
    if (cfg->tls_cert) {
        struct ssl_ctx_st *ctx = tls_context_load(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
        if (!ctx) {
            log_error("tls: %s", err);
            goto fail;
        }
        http_server_set_tls(d.http, ctx);
    }
    if (start_metrics(&d) || metrics_add_source(daemon_figures, &d))
        goto fail;
    if (cfg->user) {
        if (drop_privileges(cfg))
            goto fail;
    } else if (geteuid() == 0) {
        log_warn("running as root: set `user:` in %s to run as an unprivileged user once the "
                 "listener is bound (or start regcache as that user)",
                 cfg->source ? cfg->source : "the config");
    }

    /* before store_open, which removes partial fills: an import's, were one running */
    d.store_lock_fd = store_lock(cfg->storage, 0);
    if (d.store_lock_fd == -EWOULDBLOCK) {
        log_error("storage %s: an import (regcache import-registry or import) is writing it; "
                  "start regcache once it has finished", cfg->storage);
        goto fail;
    }
    if ((r = store_open(cfg->storage, &d.store, err, sizeof(err)))) {
        log_error("storage %s: %s", cfg->storage, err);
        goto fail;
    }
    if (d.store_lock_fd < 0 && (d.store_lock_fd = store_lock(cfg->storage, 0)) < 0) {
        log_error("storage %s: cannot lock it: %s", cfg->storage,
                  d.store_lock_fd == -EWOULDBLOCK ? "an import is writing it"
                                                  : strerror(-d.store_lock_fd));
        goto fail;
    }
    store_set_reserve(d.store, cfg->min_free_bytes);
    {
        /* partial fills kept from before: only for upstreams still configured, for a day */
        const char *names[CONFIG_MAX_UPSTREAMS];
        for (size_t i = 0; i < cfg->n_upstreams; i++)
            names[i] = cfg->upstreams[i].name;
        int pruned = store_partials_prune(d.store, names, cfg->n_upstreams, 24 * 3600);
        if (pruned > 0)
            log_info("store: removed %d partial fills of unknown upstreams or older than a day",
                     pruned);
    }
    if ((r = store_private_file(d.store, "regcache.db", dbpath, sizeof(dbpath)))) {
        log_error("the database %s: %s", dbpath,
                  r == -ELOOP ? "is a symbolic link" : strerror(-r));
        goto fail;
    }
    if ((r = db_open(dbpath, &d.db)))
        goto fail; /* db_open said why */
    if ((r = probes_new(&d.loop, d.store, d.db, on_readiness, &d, &d.probes))) {
        log_error("probes: %s", strerror(-r));
        goto fail;
    }
    int cors_failed;
    d.cors = cors_new(cfg, &cors_failed);
    if (cors_failed) {
        log_error("out of memory");
        goto fail;
    }
    uv_signal_init(&d.loop, &d.sigterm);
    uv_signal_init(&d.loop, &d.sigint);
    uv_signal_init(&d.loop, &d.sighup);
    uv_timer_init(&d.loop, &d.shutdown_timer);
    uv_timer_init(&d.loop, &d.startup_timer);
    uv_timer_init(&d.loop, &d.reload_timer);
    d.sigterm.data = d.sigint.data = d.sighup.data = &d;
    d.shutdown_timer.data = d.startup_timer.data = d.reload_timer.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sighup, on_sighup, SIGHUP);

    /* The reconciliation can take minutes on a large store: it runs on the thread pool while
     * the loop answers probes (and 503 to the rest); startup_done starts the rest. */
    d.startup_t0 = clock_mono_us();
    d.startup_work.data = &d;
    if ((r = uv_queue_work(&d.loop, &d.startup_work, startup_work, startup_done))) {
        log_error("cannot start the reconciliation: %s", uv_strerror(r));
        finish(&d);
        d.status = 1;
    } else {
        uv_timer_start(&d.startup_timer, on_startup_tick, STARTUP_TICK_MS, STARTUP_TICK_MS);
        notify_sendf("STATUS=starting: %s", "reconciling the store");
        log_info("regcache %s answering probes on %s (port %d) while the store is reconciled",
                 REGCACHE_VERSION, cfg->listen, http_server_port(d.http));
    }

    uv_run(&d.loop, UV_RUN_DEFAULT);
    status = d.status;
    http_server_free(d.http);
    http_server_free(d.metrics_http);
    free(d.metrics_allow);
    registry_free(d.registry);
    ui_free(d.ui);
    cors_free(d.cors);
    hosted_free(d.hosted);
    auth_free(d.auth);
    cache_free(d.cache);
    prefetch_free(d.prefetch);
    upstream_client_free(d.up);
    probes_free(d.probes);
    db_close(d.db);
    store_close(d.store);
    if (d.store_lock_fd >= 0)
        close(d.store_lock_fd);
    metrics_free();
    if (uv_loop_close(&d.loop))
        log_debug("event loop closed with handles still open");
    log_info("stopped");
    return status;

fail:
    /* Before the loop ever ran: stop what was started, let the close callbacks run, free. */
    registry_free(d.registry);
    cors_free(d.cors);
    auth_shutdown(d.auth);
    hosted_shutdown(d.hosted);
    prefetch_stop(d.prefetch);
    if (d.cache)
        cache_shutdown(d.cache);
    if (d.db)
        db_detach(d.db);
    upstream_client_shutdown(d.up);
    if (d.http) {
        http_server_drain(d.http);
        http_server_close_all(d.http);
    }
    if (d.metrics_http) {
        http_server_drain(d.metrics_http);
        http_server_close_all(d.metrics_http);
    }
    metrics_shutdown();
    uv_run(&d.loop, UV_RUN_DEFAULT);
    http_server_free(d.http);
    http_server_free(d.metrics_http);
    free(d.metrics_allow);
    db_close(d.db);
    store_close(d.store);
    if (d.store_lock_fd >= 0)
        close(d.store_lock_fd);
    metrics_free();
    uv_loop_close(&d.loop);
    return status;
}
