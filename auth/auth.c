/* SPDX-License-Identifier: Apache-2.0 */
#include "auth/auth.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/htpasswd.h"
#include "auth/token.h"
#include "auth/verdicts.h"
#include "util/clock.h"
#include "util/epoch.h"
#include "util/log.h"
#include "util/map.h"

#define FILE_POLL_MS 2000
#define FAILURE_WINDOW_MS (60 * 1000)

struct waiter {
    struct waiter *next;
    auth_cb cb;
    void *ud;
    uint64_t due_ms; /* a delayed refusal: when it is answered */
};

/* One bcrypt check, shared by every request with the same credentials. The verifier threads
 * read key..known and write ok; the rest is the loop's. */
struct verify_job {
    struct verify_job *next; /* in the verifier's queue, then in its done list */
    struct auth *a;
    char key[VERDICT_KEY_MAX];
    char user[HTPASSWD_USER_MAX + 1];
    char peer[64];  /* the address of the request that asked first */
    char *password;
    char hash[128]; /* the user's line, or the dummy for an unknown user */
    int known;
    int ok;
    struct waiter *waiters;
};

struct load_job {
    uv_work_t work;
    struct auth *a;
    struct htpasswd *h;
    char dummy[128];
    int rc;
    char err[512];
};

struct auth {
    uv_loop_t *loop;
    char *path;
    char realm[256];
    char *token_realm; /* auth.token_realm: the token endpoint's URL as clients reach it */
    int token_mode;
    struct token_key key;
    int anonymous_pull, ping_challenge;
    char **push_users;
    size_t n_push_users;
    struct htpasswd *users;
    struct verdicts *verdicts;
    struct failures *failures;
    struct map *pending; /* key -> struct verify_job */
    uv_fs_poll_t poll;
    int polling, loading, reload_again;
    /* checked for unknown users, so that a wrong name costs as much as a wrong password */
    char dummy_hash[128];

    /* The verifier: threads of its own for bcrypt, so that a flood of logins never holds up
     * libuv's pool (store opens, fills, the index, sendfile, reloads). in_flight (loop only)
     * counts jobs queued or running and is bounded by AUTH_VERIFY_QUEUE_MAX. */
    uv_thread_t threads[AUTH_VERIFY_THREADS_MAX];
    size_t n_threads;
    uv_mutex_t mu; /* guards queue_head/tail, done, stop */
    uv_cond_t cond;
    int sync_ready, async_open;
    struct verify_job *queue_head, *queue_tail, *done;
    int stop;
    uv_async_t async;
    size_t in_flight;

    /* AUTH_THROTTLED answers wait AUTH_THROTTLE_DELAY_MS (oldest first), so that a client that
     * goes on sending logins after its limit gets a handful of answers a second per connection
     * instead of thousands, whose parsing would crowd out everyone else's requests */
    struct waiter *delayed_head, *delayed_tail;
    size_t n_delayed;
    uv_timer_t delay_timer;
    int timer_open;
};

static int verifier_start(struct auth *a, unsigned threads);
static void verifier_stop(struct auth *a);
static void flush_delayed(struct auth *a);

/* ---- the htpasswd file ---- */

static void work_load(uv_work_t *w)
{
    struct load_job *j = w->data;
    j->rc = htpasswd_load(j->a->path, &j->h, j->err, sizeof(j->err));
    if (j->rc == 0 &&
        (j->rc = htpasswd_make_dummy(htpasswd_dummy_cost(j->h), j->dummy, sizeof(j->dummy))))
        snprintf(j->err, sizeof(j->err), "cannot make the hash for unknown users");
}

static void after_load(uv_work_t *w, int status)
{
    struct load_job *j = w->data;
    struct auth *a = j->a;
    a->loading = 0;
    if (status == 0 && j->rc == 0) {
        /* remembered verdicts hold only while the user's line is what they were checked
         * against (auth/verdicts.h): nothing to drop here */
        htpasswd_free(a->users);
        a->users = j->h;
        content_epoch_bump(); /* what worker loops were told of callers goes */
        snprintf(a->dummy_hash, sizeof(a->dummy_hash), "%s", j->dummy);
        log_info("auth: %s loaded, %zu users; unknown users are checked at bcrypt cost %d",
                 a->path, htpasswd_count(a->users), htpasswd_cost(a->dummy_hash));
    } else {
        htpasswd_free(j->h);
        log_error("auth: keeping the previous users: %s", j->err[0] ? j->err : "cannot load");
    }
    free(j);
    if (a->reload_again) {
        a->reload_again = 0;
        auth_reload(a);
    }
}

void auth_reload(struct auth *a)
{
    if (a->loading) {
        a->reload_again = 1;
        return;
    }
    struct load_job *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->a = a;
    j->work.data = j;
    a->loading = 1;
    if (uv_queue_work(a->loop, &j->work, work_load, after_load)) {
        a->loading = 0;
        free(j);
    }
}

int auth_reloading(const struct auth *a)
{
    return a && (a->loading || a->reload_again);
}

static void on_file_change(uv_fs_poll_t *h, int status, const uv_stat_t *prev,
                           const uv_stat_t *curr)
{
    (void)prev;
    (void)curr;
    if (status == 0)
        auth_reload(h->data);
}

int auth_new(uv_loop_t *loop, const struct config *cfg, struct auth **out)
{
    *out = NULL;
    if (!cfg->auth_htpasswd)
        return 0;
    struct auth *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    char err[512] = "";
    int r = -ENOMEM;
    a->loop = loop;
    a->anonymous_pull = cfg->auth_anonymous_pull;
    a->ping_challenge = cfg->auth_ping_challenge;
    snprintf(a->realm, sizeof(a->realm), "%s", cfg->auth_realm ? cfg->auth_realm : "regcache");
    a->token_mode = cfg->auth_token;
    a->path = strdup(cfg->auth_htpasswd);
    if (cfg->auth_token_realm && !(a->token_realm = strdup(cfg->auth_token_realm)))
        goto fail;
    if (a->token_mode) {
        char keypath[4096];
        snprintf(keypath, sizeof(keypath), "%s/token.key", cfg->storage);
        if ((r = token_key_load(keypath, &a->key, err, sizeof(err)))) {
            log_error("auth: %s", err);
            goto fail;
        }
    }
    a->verdicts = verdicts_new(AUTH_CACHE_MAX);
    a->failures = failures_new(AUTH_FAILURES_MAX, cfg->auth_max_failures, FAILURE_WINDOW_MS);
    a->pending = map_new();
    if (!a->path || !a->verdicts || !a->failures || !a->pending)
        goto fail;
    if (cfg->n_auth_push_users) {
        a->push_users = calloc(cfg->n_auth_push_users, sizeof(char *));
        if (!a->push_users)
            goto fail;
        for (size_t i = 0; i < cfg->n_auth_push_users; i++) {
            if (!(a->push_users[i] = strdup(cfg->auth_push_users[i])))
                goto fail;
            a->n_push_users++;
        }
    }
    r = htpasswd_load(a->path, &a->users, err, sizeof(err));
    if (r) {
        log_error("auth: %s", err);
        goto fail;
    }
    if ((r = htpasswd_make_dummy(htpasswd_dummy_cost(a->users), a->dummy_hash,
                                 sizeof(a->dummy_hash))))
        goto fail;
    if ((r = verifier_start(a, cfg->auth_verify_threads)))
        goto fail;
    log_info("auth: %s, %zu users; anonymous %s; pushes by %s; %s challenges; unknown users "
             "are checked at bcrypt cost %d; %zu bcrypt threads; at most %u wrong passwords a "
             "minute per address",
             a->path, htpasswd_count(a->users), a->anonymous_pull ? "pulls" : "nothing",
             a->n_push_users ? "the listed users" : "any user",
             a->token_mode ? "Bearer token" : "Basic", htpasswd_cost(a->dummy_hash),
             a->n_threads, cfg->auth_max_failures);
    uv_timer_init(loop, &a->delay_timer);
    a->delay_timer.data = a;
    a->timer_open = 1;
    uv_fs_poll_init(loop, &a->poll);
    a->poll.data = a;
    uv_fs_poll_start(&a->poll, on_file_change, a->path, FILE_POLL_MS);
    a->polling = 1;
    *out = a;
    return 0;
fail:
    auth_free(a);
    return r;
}

void auth_shutdown(struct auth *a)
{
    if (!a)
        return;
    if (a->polling) {
        a->polling = 0;
        uv_fs_poll_stop(&a->poll);
        uv_close((uv_handle_t *)&a->poll, NULL);
    }
    if (a->timer_open) {
        a->timer_open = 0;
        uv_timer_stop(&a->delay_timer);
        uv_close((uv_handle_t *)&a->delay_timer, NULL);
    }
    flush_delayed(a);
    verifier_stop(a);
    if (a->async_open) {
        a->async_open = 0;
        uv_close((uv_handle_t *)&a->async, NULL);
    }
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    verifier_stop(a); /* already done by auth_shutdown, unless the loop never ran */
    if (a->sync_ready) {
        uv_cond_destroy(&a->cond);
        uv_mutex_destroy(&a->mu);
    }
    htpasswd_free(a->users);
    verdicts_free(a->verdicts);
    failures_free(a->failures);
    map_free(a->pending); /* empty once the loop has finished its work */
    for (size_t i = 0; i < a->n_push_users; i++)
        free(a->push_users[i]);
    free(a->push_users);
    free(a->path);
    free(a->token_realm);
    OPENSSL_cleanse(&a->key, sizeof(a->key));
    free(a);
}

int auth_anonymous_pull(const struct auth *a)
{
    return a->anonymous_pull;
}

int auth_ping_open(const struct auth *a)
{
    /* with tokens an anonymous ping gets 401 so that every client fetches one (Docker Hub) */
    return a->anonymous_pull && !a->ping_challenge && !a->token_mode;
}

const char *auth_realm(const struct auth *a)
{
    return a->realm;
}

int auth_token_mode(const struct auth *a)
{
    return a->token_mode;
}

/* A Host header fit to put inside a quoted URL: host name or address characters and a port. */
static int host_usable(const char *h)
{
    size_t n = h ? strlen(h) : 0;
    return n > 0 && n < 256 &&
           strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]") == n;
}

void auth_challenge(const struct auth *a, const struct auth_origin *o, const char *scope,
                    char *out, size_t outlen)
{
    if (!a->token_mode) {
        snprintf(out, outlen, "WWW-Authenticate: Basic realm=\"%s\"\r\n", a->realm);
        return;
    }
    char url[600];
    if (a->token_realm)
        snprintf(url, sizeof(url), "%s", a->token_realm);
    else
        snprintf(url, sizeof(url), "%s://%s/v2/token", o && o->secure ? "https" : "http",
                 o && host_usable(o->host) ? o->host : "localhost");
    int n = snprintf(out, outlen, "WWW-Authenticate: Bearer realm=\"%s\",service=\"%s\"", url,
                     a->realm);
    if (n > 0 && (size_t)n < outlen && scope)
        n += snprintf(out + n, outlen - (size_t)n, ",scope=\"%s\"", scope);
    if (n > 0 && (size_t)n < outlen)
        snprintf(out + n, outlen - (size_t)n, "\r\n");
}

int auth_issue_token(const struct auth *a, const char *user, char *out, size_t outlen,
                     int *expires_in)
{
    *expires_in = TOKEN_TTL_S;
    int64_t now = (int64_t)(clock_wall_ms() / 1000);
    return token_issue(&a->key, user ? user : "", now + TOKEN_TTL_S, out, outlen);
}

uint64_t auth_pass_until_ms(const struct auth *a, const char *authorization, uint64_t now_ms)
{
    uint64_t until = now_ms + AUTH_PASS_MS;
    if (a->token_mode && strncasecmp(authorization, "Bearer ", 7) == 0) {
        const char *t = authorization + 7;
        while (*t == ' ')
            t++;
        char user[HTPASSWD_USER_MAX + 1];
        int64_t expires;
        if (token_verify(&a->key, t, strlen(t), (int64_t)(now_ms / 1000), user, sizeof(user),
                         &expires) ||
            expires <= 0)
            return 0;
        if ((uint64_t)expires * 1000 < until)
            until = (uint64_t)expires * 1000;
    }
    return until;
}

int auth_may_push(const struct auth *a, const char *user)
{
    if (!user)
        return 0;
    if (!a->n_push_users)
        return 1;
    for (size_t i = 0; i < a->n_push_users; i++)
        if (strcmp(a->push_users[i], user) == 0)
            return 1;
    return 0;
}

/* ---- checking credentials ---- */

static void wipe(char *s)
{
    if (s)
        OPENSSL_cleanse(s, strlen(s));
}

/* ---- the verifier: bcrypt on threads of its own ---- */

static void verify_thread(void *arg)
{
    struct auth *a = arg;
    uv_mutex_lock(&a->mu);
    for (;;) {
        while (!a->stop && !a->queue_head)
            uv_cond_wait(&a->cond, &a->mu);
        if (a->stop)
            break;
        struct verify_job *j = a->queue_head;
        a->queue_head = j->next;
        if (!a->queue_head)
            a->queue_tail = NULL;
        uv_mutex_unlock(&a->mu);
        j->ok = htpasswd_verify(j->hash, j->password) && j->known;
        uv_mutex_lock(&a->mu);
        j->next = a->done;
        a->done = j;
        uv_async_send(&a->async);
    }
    uv_mutex_unlock(&a->mu);
}

/* On the loop: answers the job's waiters, remembers the verdict. busy: never checked (the
 * mirror is stopping). */
static void finish_job(struct verify_job *j, int busy)
{
    struct auth *a = j->a;
    a->in_flight--;
    map_del(a->pending, j->key);
    const char *now = htpasswd_hash(a->users, j->user);
    /* a reload while bcrypt ran: the outcome holds only for the line it was checked against */
    int current = j->known ? now && strcmp(now, j->hash) == 0 : !now;
    enum auth_result res = AUTH_BAD;
    if (busy) {
        res = AUTH_BUSY;
    } else if (!current) {
        log_warn("auth: the line of user '%s' changed while a password was checked; refused",
                 j->user);
    } else {
        uint64_t now_ms = clock_mono_us() / 1000;
        verdicts_put(a->verdicts, j->key, now, j->ok,
                     now_ms + (j->ok ? AUTH_CACHE_OK_MS : AUTH_CACHE_BAD_MS));
        if (j->ok) {
            res = AUTH_USER;
        } else {
            log_warn("auth: wrong credentials for user '%s' from %s", j->user, j->peer);
            if (failures_add(a->failures, j->peer, now_ms))
                log_warn("auth: %s: too many wrong passwords; its logins are refused (429) "
                         "for up to %d s",
                         j->peer, FAILURE_WINDOW_MS / 1000);
        }
    }
    for (struct waiter *wt = j->waiters, *next; wt; wt = next) {
        next = wt->next;
        wt->cb(wt->ud, res, res == AUTH_USER ? j->user : NULL);
        free(wt);
    }
    wipe(j->password);
    free(j->password);
    free(j);
}

static void on_verified(uv_async_t *h)
{
    struct auth *a = h->data;
    uv_mutex_lock(&a->mu);
    struct verify_job *j = a->done;
    a->done = NULL;
    uv_mutex_unlock(&a->mu);
    for (struct verify_job *next; j; j = next) {
        next = j->next;
        finish_job(j, 0);
    }
}

static int verifier_start(struct auth *a, unsigned threads)
{
    if (uv_mutex_init(&a->mu))
        return -ENOMEM;
    if (uv_cond_init(&a->cond)) {
        uv_mutex_destroy(&a->mu);
        return -ENOMEM;
    }
    a->sync_ready = 1;
    if (threads > AUTH_VERIFY_THREADS_MAX)
        threads = AUTH_VERIFY_THREADS_MAX;
    int r = 0;
    /* the threads wait for jobs, and none comes before auth_new returns: the async handle
     * they wake the loop with may come after them */
    for (unsigned i = 0; i < (threads ? threads : 1) && !r; i++)
        if (!(r = uv_thread_create(&a->threads[i], verify_thread, a)))
            a->n_threads++;
    if (!r && !(r = uv_async_init(a->loop, &a->async, on_verified))) {
        a->async.data = a;
        a->async_open = 1;
    }
    if (r)
        verifier_stop(a);
    return r;
}

/* Stops the threads (each finishes the check it runs), then answers every job left. */
static void verifier_stop(struct auth *a)
{
    if (!a->n_threads && !a->queue_head && !a->done)
        return;
    uv_mutex_lock(&a->mu);
    a->stop = 1;
    uv_cond_broadcast(&a->cond);
    uv_mutex_unlock(&a->mu);
    for (size_t i = 0; i < a->n_threads; i++)
        uv_thread_join(&a->threads[i]);
    a->n_threads = 0;
    struct verify_job *lists[2] = {a->done, a->queue_head};
    a->done = a->queue_head = a->queue_tail = NULL;
    for (int l = 0; l < 2; l++)
        for (struct verify_job *j = lists[l], *next; j; j = next) {
            next = j->next;
            finish_job(j, l == 1);
        }
}

/* Decodes "Basic <base64 user:password>" into user and password (malloc'ed). */
static int parse_basic(const char *header, char *user, size_t userlen, char **password)
{
    if (strncasecmp(header, "Basic ", 6) != 0)
        return -EINVAL;
    const char *b64 = header + 6;
    while (*b64 == ' ')
        b64++;
    size_t n = strlen(b64);
    if (n == 0 || n > 4096 || n % 4)
        return -EINVAL;
    unsigned char *raw = malloc(n);
    if (!raw)
        return -ENOMEM;
    int len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
    if (len < 0) {
        free(raw);
        return -EINVAL;
    }
    /* EVP_DecodeBlock counts padding as zero bytes */
    if (n >= 1 && b64[n - 1] == '=')
        len--;
    if (n >= 2 && b64[n - 2] == '=')
        len--;
    raw[len] = '\0';
    if (memchr(raw, '\0', (size_t)len)) {
        OPENSSL_cleanse(raw, (size_t)len);
        free(raw);
        return -EINVAL;
    }
    char *colon = strchr((char *)raw, ':');
    if (!colon || (size_t)(colon - (char *)raw) >= userlen) {
        OPENSSL_cleanse(raw, (size_t)len);
        free(raw);
        return -EINVAL;
    }
    *colon = '\0';
    snprintf(user, userlen, "%s", (char *)raw);
    *password = strdup(colon + 1);
    OPENSSL_cleanse(raw, (size_t)len);
    free(raw);
    return *password ? 0 : -ENOMEM;
}

static void key_of(const char *user, const char *password, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, user, strlen(user));
    EVP_DigestUpdate(ctx, ":", 1);
    EVP_DigestUpdate(ctx, password, strlen(password));
    EVP_DigestFinal_ex(ctx, md, &n);
    EVP_MD_CTX_free(ctx);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * n] = '\0';
}

static void on_delay(uv_timer_t *t)
{
    struct auth *a = t->data;
    uint64_t now = clock_mono_us() / 1000;
    /* callbacks may queue more (a pipelined request): those come after, and wait */
    while (a->delayed_head && a->delayed_head->due_ms <= now) {
        struct waiter *wt = a->delayed_head;
        a->delayed_head = wt->next;
        if (!a->delayed_head)
            a->delayed_tail = NULL;
        a->n_delayed--;
        wt->cb(wt->ud, AUTH_THROTTLED, NULL);
        free(wt);
    }
    if (a->delayed_head && a->timer_open)
        uv_timer_start(&a->delay_timer, on_delay, a->delayed_head->due_ms - now, 0);
}

/* Answers AUTH_THROTTLED after AUTH_THROTTLE_DELAY_MS (at once when too many wait already). */
static void refuse_later(struct auth *a, auth_cb cb, void *ud)
{
    struct waiter *wt = NULL;
    if (a->timer_open && a->n_delayed < AUTH_DELAYED_MAX)
        wt = calloc(1, sizeof(*wt));
    if (!wt) {
        cb(ud, AUTH_THROTTLED, NULL);
        return;
    }
    wt->cb = cb;
    wt->ud = ud;
    wt->due_ms = clock_mono_us() / 1000 + AUTH_THROTTLE_DELAY_MS;
    if (a->delayed_tail)
        a->delayed_tail->next = wt;
    else
        a->delayed_head = wt;
    a->delayed_tail = wt;
    if (a->n_delayed++ == 0)
        uv_timer_start(&a->delay_timer, on_delay, AUTH_THROTTLE_DELAY_MS, 0);
}

static void flush_delayed(struct auth *a)
{
    while (a->delayed_head) {
        struct waiter *wt = a->delayed_head;
        a->delayed_head = wt->next;
        a->n_delayed--;
        wt->cb(wt->ud, AUTH_THROTTLED, NULL);
        free(wt);
    }
    a->delayed_tail = NULL;
}

static void refuse(char *password, auth_cb cb, void *ud, enum auth_result res)
{
    wipe(password);
    free(password);
    cb(ud, res, NULL);
}

void auth_check(struct auth *a, const char *authorization, const char *peer, auth_cb cb,
                void *ud)
{
    if (!authorization) {
        cb(ud, AUTH_ANONYMOUS, NULL);
        return;
    }
    char user[HTPASSWD_USER_MAX + 1], key[VERDICT_KEY_MAX];
    char *password = NULL;
    if (!peer)
        peer = "-";
    if (a->token_mode && strncasecmp(authorization, "Bearer ", 7) == 0) {
        const char *t = authorization + 7;
        while (*t == ' ')
            t++;
        if (token_verify(&a->key, t, strlen(t), (int64_t)(clock_wall_ms() / 1000), user,
                         sizeof(user), NULL))
            cb(ud, AUTH_BAD, NULL);
        else if (!user[0])
            cb(ud, AUTH_ANONYMOUS_TOKEN, NULL);
        else if (!htpasswd_hash(a->users, user)) /* removed from the file since */
            cb(ud, AUTH_BAD, NULL);
        else
            cb(ud, AUTH_USER, user);
        return;
    }
    if (parse_basic(authorization, user, sizeof(user), &password)) {
        cb(ud, AUTH_BAD, NULL);
        return;
    }
    if (!user[0] && !password[0]) {
        /* "Basic Og==": clients without credentials answering the ping's challenge */
        free(password);
        cb(ud, AUTH_ANONYMOUS, NULL);
        return;
    }
    key_of(user, password, key);
    const char *hash = htpasswd_hash(a->users, user);
    uint64_t now_ms = clock_mono_us() / 1000;
    int verdict = verdicts_get(a->verdicts, key, hash, now_ms);
    if (verdict == 1) {
        wipe(password);
        free(password);
        cb(ud, AUTH_USER, user);
        return;
    }
    /* a good login remembered still works from an address refused for its wrong passwords
     * (every client behind one proxy shares an address); nothing else from there does */
    if (failures_blocked(a->failures, peer, now_ms)) {
        wipe(password);
        free(password);
        refuse_later(a, cb, ud);
        return;
    }
    if (verdict == 0) {
        refuse(password, cb, ud, AUTH_BAD);
        return;
    }
    struct verify_job *j = map_get(a->pending, key);
    if (!j && a->in_flight >= AUTH_VERIFY_QUEUE_MAX) {
        refuse(password, cb, ud, AUTH_BUSY);
        return;
    }
    struct waiter *wt = calloc(1, sizeof(*wt));
    if (!wt) {
        refuse(password, cb, ud, AUTH_BUSY);
        return;
    }
    wt->cb = cb;
    wt->ud = ud;
    if (j) {
        wipe(password);
        free(password);
        wt->next = j->waiters;
        j->waiters = wt;
        return;
    }
    j = calloc(1, sizeof(*j));
    if (!j || map_put(a->pending, key, j) == MAP_NOMEM) {
        free(j);
        free(wt);
        refuse(password, cb, ud, AUTH_BUSY);
        return;
    }
    j->a = a;
    snprintf(j->key, sizeof(j->key), "%s", key);
    snprintf(j->user, sizeof(j->user), "%s", user);
    snprintf(j->peer, sizeof(j->peer), "%s", peer);
    j->known = hash != NULL;
    snprintf(j->hash, sizeof(j->hash), "%s", hash ? hash : a->dummy_hash);
    j->password = password;
    j->waiters = wt;
    log_debug("auth: checking a password of user '%s' from %s at bcrypt cost %d", user, peer,
              htpasswd_cost(j->hash));
    a->in_flight++;
    uv_mutex_lock(&a->mu);
    if (a->queue_tail)
        a->queue_tail->next = j;
    else
        a->queue_head = j;
    a->queue_tail = j;
    uv_cond_signal(&a->cond);
    uv_mutex_unlock(&a->mu);
}

unsigned auth_retry_after(struct auth *a, const char *peer)
{
    uint64_t ms = failures_blocked(a->failures, peer ? peer : "-", clock_mono_us() / 1000);
    return ms ? (unsigned)((ms + 999) / 1000) : 1;
}
