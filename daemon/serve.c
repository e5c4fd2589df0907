/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/serve.h"

#include <errno.h>
#include <limits.h>
#include <grp.h>
#include <inttypes.h>
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
#include "cluster/cluster.h"
#include "prefetch/control.h"
#include "prefetch/prefetch.h"
#include "cache/reconcile.h"
#include "daemon/notify.h"
#include "daemon/probes.h"
#include "db/db.h"
#include "http/http.h"
#include "http/tls.h"
#include "registry/api.h"
#include "registry/worker.h"
#include "registry/cors.h"
#include "hosted/hosted.h"
#include "metrics/metrics.h"
#include "registry/respond.h"
#include "store/store.h"
#include "ui/ui.h"
#include "upstream/upstream.h"
#include "util/background.h"
#include "util/cidr.h"
#include "util/clock.h"
#include "util/log.h"

#define SHUTDOWN_POLL_MS 50
#define RELOAD_POLL_MS 20
#define STARTUP_TICK_MS 1000

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
    struct cluster *cluster; /* NULL: not in a cluster */
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
    /* after the start: the index's integrity check and (after an unclean stop) the walk of
     * the store, in the background while serving */
    char dbpath[4096];
    int clean_start;  /* the store had the clean-shutdown record */
    int fresh_store;  /* it never held anything: no walk */
    int reconciled;   /* the index and the store agree: a clean start, or the walk is done */
    int bg_done;      /* the background work is over (done, failed or stopped) */
    struct reconcile_job *rj;
    uv_work_t walk_work, check_work;
    uv_timer_t startup_timer;
    uint64_t startup_t0, walk_t0;
    struct reconcile_watch watch;
    int bg_rc;
    char bg_why[512];
    uint64_t bg_files, bg_bytes; /* the index's totals once the walk is applied */
    struct cache_stored_mark bg_mark; /* what the cache stored before they were read */
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
    registry_stop_workers(d->registry);
    if (d->metrics_http)
        http_server_close_all(d->metrics_http);
    metrics_shutdown();
    prefetch_control_close(d->prefetch_control);
    d->prefetch_control = NULL;
    prefetch_stop(d->prefetch);
    cluster_stop(d->cluster);
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
/* The drain, for a stop signal (what: "SIGTERM", "SIGINT") or a damaged index. */
static void begin_stop(struct daemon *d, const char *what)
{
    d->stopping = 1;
    __atomic_store_n(&d->watch.stop, 1, __ATOMIC_RELAXED);
    probes_set_phase(d->probes, PROBES_DRAINING);
    size_t busy = http_server_busy(d->http);
    notify_sendf("STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu\nSTATUS=stopping: finishing %zu "
                 "responses",
                 (unsigned long long)(d->cfg->shutdown_grace_ms + 5000) * 1000, busy);
    log_info("%s: not ready; finishing %zu responses (new requests are answered 503)", what,
             busy);
    http_server_drain(d->http);
    if (d->metrics_http)
        http_server_drain(d->metrics_http);
    d->shutdown_started_us = clock_mono_us();
    uv_timer_start(&d->shutdown_timer, on_shutdown_tick, 0, SHUTDOWN_POLL_MS);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;
    if (d->stopping) {
        log_warn("second signal: stopping now");
        finish(d);
        return;
    }
    begin_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
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
    unsigned loops = http_server_loops(d->http);
    out->n_loops = loops < METRICS_LOOPS_MAX ? loops : METRICS_LOOPS_MAX;
    for (unsigned i = 0; i < out->n_loops; i++)
        out->loop_connections[i] += http_server_loop_connections(d->http, i);
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

/* This mirror's name in Via: instance_id, else <hostname>:<port listened on>, which tells
 * apart the mirrors of one host and those of different hosts. */
static void instance_id(const struct daemon *d, char *out, size_t len)
{
    char host[256] = "";
    if (d->cfg->instance_id) {
        snprintf(out, len, "%s", d->cfg->instance_id);
        return;
    }
    if (gethostname(host, sizeof(host) - 1) || !host[0])
        snprintf(host, sizeof(host), "regcache");
    host[strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")] = '\0';
    snprintf(out, len, "%.*s:%d", (int)(len > 8 ? len - 8 : 0), host[0] ? host : "regcache",
             http_server_port(d->http));
}

/* hosted_on_stored's hook: a push stored content anew */
static void write_behind(void *ud, const char *digest)
{
    cache_write_behind(ud, digest);
}

static int hot_file(void *ud, const char *digest, uint64_t *size, struct held_fd **file)
{
    return cache_hot_file(ud, digest, size, file);
}

static void keep_file(void *ud, const char *digest, struct held_fd *file, uint64_t size)
{
    cache_keep_file(ud, digest, file, size);
}

/* What follows the reconciliation: everything that serves. 0, or -1 after logging why. */
static int start_serving(struct daemon *d, uint64_t stored_bytes, uint64_t stored_files)
{
    const struct config *cfg = d->cfg;
    char id[CONFIG_INSTANCE_ID_MAX + 1];
    int r;
    instance_id(d, id, sizeof(id));
    if ((r = upstream_client_new(&d->loop, cfg, &d->up))) {
        log_error("upstream client: %s", strerror(-r));
        d->up = NULL;
        return -1;
    }
    if ((r = upstream_client_set_instance(d->up, id))) {
        log_error("upstream client: %s", strerror(-r));
        return -1;
    }
    if ((r = cache_new(&d->loop, cfg, d->store, d->db, d->up, &d->cache))) {
        log_error("cache index: %s", strerror(-r));
        d->cache = NULL;
        return -1;
    }
    if ((r = cluster_new(&d->loop, cfg, d->up, &d->cluster))) {
        log_error("cluster: cannot start (%s)", strerror(-r));
        d->cluster = NULL;
        return -1;
    }
    cache_set_cluster(d->cache, d->cluster);
    db_attach(d->db, &d->loop);
    cache_start(d->cache, stored_bytes);
    cache_count_files(d->cache, stored_files);
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
    hosted_on_stored(d->hosted, write_behind, d->cache); /* into the S3 tier, when there is one */
    hosted_use_hot_files(d->hosted, hot_file, keep_file, d->cache);
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
    registry_set_instance(d->registry, id);
    log_info("instance %s: in the Via of every upstream request; a request whose Via names it "
             "is refused (508)", id);
    registry_set_cluster(d->registry, d->cluster);
    if ((r = registry_start_workers(d->registry, d->http, config_workers(cfg),
                                    cfg->revalidate_after_ms, &d->loop))) {
        log_error("workers: cannot start (%s)", strerror(-r));
        return -1;
    }
    return 0;
}

/* ---- the background work after the start ---- */

static void bg_finished(struct daemon *d)
{
    d->bg_done = 1;
    uv_timer_stop(&d->startup_timer);
    probes_set_background(d->probes, NULL);
    if (d->cache)
        cache_set_unverified(d->cache, 0);
}

static void on_walk_tick(uv_timer_t *t)
{
    struct daemon *d = t->data;
    char what[160];
    snprintf(what, sizeof(what), "serving; walking the store in the background (%zu files checked)",
             __atomic_load_n(&d->watch.files, __ATOMIC_RELAXED));
    probes_set_background(d->probes, what);
}

static void apply_work(struct db *db, void *ud)
{
    struct daemon *d = ud;
    d->bg_rc = reconcile_apply(d->rj, db, d->store);
    if (!d->bg_rc)
        d->bg_rc = db_blob_totals(db, &d->bg_files, &d->bg_bytes);
}

static void apply_done(void *ud)
{
    struct daemon *d = ud;
    const struct reconcile_report *rec = reconcile_report_of(d->rj);
    if (d->bg_rc) {
        log_error("store walk: cannot bring the index in line (%d); the next start walks again",
                  d->bg_rc);
    } else {
        d->reconciled = 1;
        if (d->cache)
            cache_set_stored(d->cache, d->bg_bytes, d->bg_files, &d->bg_mark);
        log_info("store: %zu files, %llu bytes; %zu adopted, %zu corrupt removed, %zu stray "
                 "removed, %zu index rows without a file dropped (walked in the background "
                 "in %llu ms)",
                 rec->files, (unsigned long long)rec->bytes, rec->adopted, rec->removed_corrupt,
                 rec->removed_stray, rec->rows_dropped,
                 (unsigned long long)((clock_mono_us() - d->walk_t0) / 1000));
    }
    reconcile_free(d->rj);
    d->rj = NULL;
    bg_finished(d);
}

static void walk_work(uv_work_t *w)
{
    struct daemon *d = w->data;
    struct background bg; /* serving goes first */
    background_enter(&bg);
    d->bg_rc = reconcile_walk(d->rj, d->store);
    background_leave(&bg);
}

static void walk_done(uv_work_t *w, int status)
{
    struct daemon *d = w->data;
    if (d->stopping || status || d->bg_rc) {
        if (d->stopping)
            log_info("stopped during the start-up reconciliation (the walk of the store goes on "
                     "at the next start)");
        else
            log_error("store walk failed (%d); the next start walks again",
                      status ? status : d->bg_rc);
        reconcile_free(d->rj);
        d->rj = NULL;
        bg_finished(d);
        return;
    }
    if (d->cache)
        cache_stored_mark(d->cache, &d->bg_mark);
    if (db_call(d->db, apply_work, apply_done, d)) {
        reconcile_free(d->rj);
        d->rj = NULL;
        bg_finished(d);
    }
}

static void rows_work(struct db *db, void *ud)
{
    struct daemon *d = ud;
    d->bg_rc = reconcile_rows(d->rj, db);
}

static void rows_done(void *ud)
{
    struct daemon *d = ud;
    int r;
    if (d->stopping || d->bg_rc ||
        (r = uv_queue_work(&d->loop, &d->walk_work, walk_work, walk_done))) {
        if (!d->stopping)
            log_error("store walk: cannot start (%d); the next start walks again", d->bg_rc);
        else
            log_info("stopped during the start-up reconciliation (the walk of the store goes on "
                     "at the next start)");
        reconcile_free(d->rj);
        d->rj = NULL;
        bg_finished(d);
    }
}

/* After an unclean stop: the walk, while serving (files the index does not know are re-hashed
 * before they are served meanwhile: cache_set_unverified). */
static void start_walk(struct daemon *d)
{
    d->walk_t0 = clock_mono_us();
    d->walk_work.data = d;
    if (reconcile_new(0, &d->watch, &d->rj) || db_call(d->db, rows_work, rows_done, d)) {
        log_error("store walk: cannot start; the next start walks again");
        reconcile_free(d->rj);
        d->rj = NULL;
        bg_finished(d);
        return;
    }
    on_walk_tick(&d->startup_timer);
    uv_timer_start(&d->startup_timer, on_walk_tick, STARTUP_TICK_MS, STARTUP_TICK_MS);
}

static void check_work(uv_work_t *w)
{
    struct daemon *d = w->data;
    uint64_t t0 = clock_mono_us();
    struct background bg; /* serving goes first */
    background_enter(&bg);
    d->bg_rc = db_check_intact(d->db, d->bg_why, sizeof(d->bg_why));
    background_leave(&bg);
    log_info("database: integrity check (quick_check) done in %llu ms",
              (unsigned long long)((clock_mono_us() - t0) / 1000));
}

static void check_done(uv_work_t *w, int status)
{
    (void)status;
    struct daemon *d = w->data;
    if (d->bg_rc) {
        /* as a damaged index found at the start always was: refused, after a drain (/readyz
         * says why meanwhile), exit status 1 */
        log_error("database %s is damaged (%s); not using it. Moving it aside starts an empty "
                  "index: the store's files are re-hashed and adopted, cached tags are fetched "
                  "again, hosted tags are lost",
                  d->dbpath, d->bg_why);
        probes_set_damaged(d->probes, d->bg_why);
        d->clean_start = d->fresh_store = 0;
        d->reconciled = 0; /* no clean-shutdown record at the stop */
        bg_finished(d);
        if (!d->stopping) {
            d->status = 1;
            begin_stop(d, "damaged index");
        }
        return;
    }
    if (d->stopping) {
        bg_finished(d);
        return;
    }
    if (d->clean_start || d->fresh_store) {
        d->reconciled = 1;
        bg_finished(d);
        return;
    }
    start_walk(d);
}

/* Serves at once: the totals come from the index (no file is looked at), the integrity check
 * and, after an unclean stop, the walk of the store follow in the background. 0, or -1. */
static int start_now(struct daemon *d)
{
    const struct config *cfg = d->cfg;
    uint64_t files = 0, bytes = 0;
    db_blob_totals(d->db, &files, &bytes);
    if (start_serving(d, bytes, files))
        return -1;
    if (d->fresh_store) {
        /* reconciled already: a stop before the integrity check is over leaves the record */
        d->reconciled = 1;
        log_info("store: new and empty: nothing to walk");
    } else if (d->clean_start) {
        log_info("store: stopped cleanly last time: the index is trusted, the store is not "
                 "walked (%llu files, %llu bytes)",
                 (unsigned long long)files, (unsigned long long)bytes);
    } else {
        log_info("store: no record of a clean stop: the store is walked in the background "
                 "while serving");
        cache_set_unverified(d->cache, 1);
        probes_set_background(d->probes, "serving; walking the store in the background");
    }
    d->check_work.data = d;
    if (uv_queue_work(&d->loop, &d->check_work, check_work, check_done)) {
        log_error("database: cannot start its integrity check");
        return -1;
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
    log_info("regcache %s serving %s on %s (port %d), storage %s (%llu ms after the start)",
             REGCACHE_VERSION, cfg->tls_cert ? "HTTPS" : "HTTP", cfg->listen,
             http_server_port(d->http), cfg->storage,
             (unsigned long long)((clock_mono_us() - d->startup_t0) / 1000));
    return 0;
}

/* The record names the index it was written with (a token also written into that index), so
 * that an index moved aside, replaced or restored from a copy is not trusted with it. */
#define CLEAN_TOKEN_COUNTER "clean_stop_token"

static int clean_mark_matches(struct db *db, const char *mark)
{
    const char *p = strstr(mark, "token ");
    uint64_t token = 0, want = 0;
    if (!p || sscanf(p + 6, "%" SCNu64, &want) != 1 || !want)
        return 0;
    return db_get_counter(db, CLEAN_TOKEN_COUNTER, &token) == 0 && token == want;
}

/* Before the index is closed at a graceful stop that leaves it complete and in agreement with
 * the store: the token, written with the last flush. 0: none (no record then). */
static uint64_t clean_token(struct daemon *d)
{
    if (d->status || !d->reconciled || !d->db)
        return 0;
    uint64_t token = (clock_wall_ms() << 16) ^ (uint64_t)getpid() ^ clock_mono_us();
    token &= INT64_MAX;
    if (!token)
        token = 1;
    db_set_counter(d->db, CLEAN_TOKEN_COUNTER, token);
    return token;
}

/* After the index is closed with nothing lost: the record that lets the next start skip the
 * walk. */
static void mark_clean(struct daemon *d, uint64_t token, size_t lost)
{
    if (!token || lost || !d->store)
        return;
    char text[128];
    snprintf(text, sizeof(text), "stopped cleanly at %llu by pid %ld, token %" PRIu64 "\n",
             (unsigned long long)clock_wall_ms(), (long)getpid(), token);
    int r = store_mark_clean(d->store, text);
    if (r)
        log_warn("store: cannot record the clean stop (%s): the next start walks the store",
                 strerror(-r));
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
    /* a store that never held anything (no blobs directory, no index yet): nothing to walk */
    char probe_path[PATH_MAX];
    snprintf(probe_path, sizeof(probe_path), "%s/blobs", cfg->storage);
    int fresh = access(probe_path, F_OK) != 0;
    snprintf(probe_path, sizeof(probe_path), "%s/regcache.db", cfg->storage);
    fresh = fresh && access(probe_path, F_OK) != 0 && errno == ENOENT;
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
    /* the integrity check (a read of the whole file) runs once serving: check_work */
    snprintf(d.dbpath, sizeof(d.dbpath), "%s", dbpath);
    if ((r = db_open_unchecked(dbpath, &d.db)))
        goto fail; /* db_open said why */
    /* taken (and its removal synced) before anything changes: a crash from here on leaves no
     * record, and the next start walks the store */
    char mark[128];
    if ((r = store_take_clean_mark(d.store, mark, sizeof(mark))) < 0) {
        log_error("storage %s: cannot remove its %s record: %s", cfg->storage, STORE_CLEAN_MARK,
                  strerror(-r));
        goto fail;
    }
    d.clean_start = r == 1 && clean_mark_matches(d.db, mark);
    d.fresh_store = fresh && !d.clean_start;
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

    d.startup_t0 = clock_mono_us();
    if (start_now(&d)) {
        d.status = 1;
        finish(&d);
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
    cluster_free(d.cluster);
    prefetch_free(d.prefetch);
    upstream_client_free(d.up);
    probes_free(d.probes);
    uint64_t token = clean_token(&d);
    mark_clean(&d, token, db_close_lost(d.db));
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
    registry_stop_workers(d.registry);
    cors_free(d.cors);
    auth_shutdown(d.auth);
    hosted_shutdown(d.hosted);
    prefetch_stop(d.prefetch);
    cluster_stop(d.cluster);
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
    registry_free(d.registry);
    free(d.metrics_allow);
    db_close(d.db);
    store_close(d.store);
    if (d.store_lock_fd >= 0)
        close(d.store_lock_fd);
    metrics_free();
    uv_loop_close(&d.loop);
    return status;
}
