#include "auth/auth.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/htpasswd.h"
#include "auth/token.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/map.h"

#define FILE_POLL_MS 2000

struct verdict {
    int ok;
    uint64_t until_ms;
    char user[HTPASSWD_USER_MAX + 1];
};

struct waiter {
    struct waiter *next;
    auth_cb cb;
    void *ud;
};

struct verify_job {
    uv_work_t work;
    struct auth *a;
    char key[72];
    char user[HTPASSWD_USER_MAX + 1];
    char *password;
    char hash[128]; /* empty: unknown user */
    int ok;
    struct waiter *waiters;
};

struct load_job {
    uv_work_t work;
    struct auth *a;
    struct htpasswd *h;
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
    struct map *verdicts; /* key -> struct verdict */
    struct map *pending;  /* key -> struct verify_job */
    uv_fs_poll_t poll;
    int polling, loading, reload_again, generation;
    /* checked for unknown users, so that a wrong name costs as much as a wrong password */
    char dummy_hash[128];
};

static int free_entry(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    free(value);
    return 0;
}

static void forget_verdicts(struct auth *a)
{
    map_each(a->verdicts, free_entry, NULL);
    map_free(a->verdicts);
    a->verdicts = map_new();
}

/* ---- the htpasswd file ---- */

static void work_load(uv_work_t *w)
{
    struct load_job *j = w->data;
    j->rc = htpasswd_load(j->a->path, &j->h, j->err, sizeof(j->err));
}

static void after_load(uv_work_t *w, int status)
{
    struct load_job *j = w->data;
    struct auth *a = j->a;
    a->loading = 0;
    if (status == 0 && j->rc == 0) {
        htpasswd_free(a->users);
        a->users = j->h;
        a->generation++;
        forget_verdicts(a);
        log_info("auth: %s loaded, %zu users", a->path, htpasswd_count(a->users));
    } else {
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
    a->verdicts = map_new();
    a->pending = map_new();
    if (!a->path || !a->verdicts || !a->pending)
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
    if ((r = htpasswd_make_hash("no such user", a->dummy_hash, sizeof(a->dummy_hash))))
        goto fail;
    r = htpasswd_load(a->path, &a->users, err, sizeof(err));
    if (r) {
        log_error("auth: %s", err);
        goto fail;
    }
    log_info("auth: %s, %zu users; anonymous %s; pushes by %s; %s challenges", a->path,
             htpasswd_count(a->users), a->anonymous_pull ? "pulls" : "nothing",
             a->n_push_users ? "the listed users" : "any user",
             a->token_mode ? "Bearer token" : "Basic");
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
    if (a && a->polling) {
        a->polling = 0;
        uv_fs_poll_stop(&a->poll);
        uv_close((uv_handle_t *)&a->poll, NULL);
    }
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    htpasswd_free(a->users);
    if (a->verdicts) {
        map_each(a->verdicts, free_entry, NULL);
        map_free(a->verdicts);
    }
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

static void work_verify(uv_work_t *w)
{
    struct verify_job *j = w->data;
    j->ok = htpasswd_verify(j->hash[0] ? j->hash : j->a->dummy_hash, j->password) && j->hash[0];
}

static void after_verify(uv_work_t *w, int status)
{
    struct verify_job *j = w->data;
    struct auth *a = j->a;
    map_del(a->pending, j->key);
    int ok = status == 0 && j->ok;
    if (map_count(a->verdicts) >= AUTH_CACHE_MAX)
        forget_verdicts(a);
    struct verdict *v = calloc(1, sizeof(*v));
    if (v) {
        v->ok = ok;
        v->until_ms = clock_mono_us() / 1000 + (ok ? AUTH_CACHE_OK_MS : AUTH_CACHE_BAD_MS);
        snprintf(v->user, sizeof(v->user), "%s", j->user);
        void *old = map_put(a->verdicts, j->key, v);
        free(old == MAP_NOMEM ? v : old);
    }
    if (!ok)
        log_warn("auth: wrong credentials for user '%s'", j->user);
    for (struct waiter *wt = j->waiters, *next; wt; wt = next) {
        next = wt->next;
        wt->cb(wt->ud, ok ? AUTH_USER : AUTH_BAD, ok ? j->user : NULL);
        free(wt);
    }
    wipe(j->password);
    free(j->password);
    free(j);
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

void auth_check(struct auth *a, const char *authorization, auth_cb cb, void *ud)
{
    if (!authorization) {
        cb(ud, AUTH_ANONYMOUS, NULL);
        return;
    }
    char user[HTPASSWD_USER_MAX + 1], key[72];
    char *password = NULL;
    if (a->token_mode && strncasecmp(authorization, "Bearer ", 7) == 0) {
        const char *t = authorization + 7;
        while (*t == ' ')
            t++;
        if (token_verify(&a->key, t, strlen(t), (int64_t)(clock_wall_ms() / 1000), user, sizeof(user)))
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
    struct verdict *v = map_get(a->verdicts, key);
    if (v && v->until_ms > clock_mono_us() / 1000) {
        wipe(password);
        free(password);
        cb(ud, v->ok ? AUTH_USER : AUTH_BAD, v->ok ? v->user : NULL);
        return;
    }
    struct waiter *wt = calloc(1, sizeof(*wt));
    if (!wt) {
        wipe(password);
        free(password);
        cb(ud, AUTH_BAD, NULL);
        return;
    }
    wt->cb = cb;
    wt->ud = ud;
    struct verify_job *j = map_get(a->pending, key);
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
        wipe(password);
        free(password);
        cb(ud, AUTH_BAD, NULL);
        return;
    }
    j->a = a;
    snprintf(j->key, sizeof(j->key), "%s", key);
    snprintf(j->user, sizeof(j->user), "%s", user);
    const char *hash = htpasswd_hash(a->users, user);
    snprintf(j->hash, sizeof(j->hash), "%s", hash ? hash : "");
    j->password = password;
    j->waiters = wt;
    j->work.data = j;
    if (uv_queue_work(a->loop, &j->work, work_verify, after_verify)) {
        j->ok = 0;
        after_verify(&j->work, -1);
    }
}
