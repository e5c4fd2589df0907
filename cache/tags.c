/* SPDX-License-Identifier: Apache-2.0 */
/* The catalog and tags lists: the catalog from the index; a tags list from the upstream, or
 * from the index when the upstream is down, fails, or has not answered within
 * cache.revalidate_timeout (the request then goes on and its answer is dropped). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/impl.h"
#include "util/json.h"
#include "util/log.h"
#include "util/shared.h"

/* ---- catalog ---- */

struct catalog_ctx {
    struct cache *c;
    int (*fn)(void *ud, const char *name);
    void *ud;
};

static int collect_repo(const char *key, void *value, void *ud)
{
    (void)value;
    struct catalog_ctx *cc = ud;
    const char *sep = strstr(key, KEY_SEP);
    if (!sep)
        return 0;
    size_t ulen = (size_t)(sep - key);
    const char *repo = sep + 1;
    struct upstream *first = upstream_get(cc->c->up, 0);
    int is_first = first && strlen(upstream_name(first)) == ulen &&
                   strncmp(upstream_name(first), key, ulen) == 0;
    if (is_first)
        return cc->fn(cc->ud, repo);
    char name[1024];
    snprintf(name, sizeof(name), "%.*s/%s", (int)ulen, key, repo);
    return cc->fn(cc->ud, name);
}

int cache_catalog(struct cache *c, int (*fn)(void *ud, const char *name), void *ud)
{
    struct catalog_ctx cc = {c, fn, ud};
    return map_each(c->repos, collect_repo, &cc);
}

/* ---- tags/list ----
 * Requests for the same list (upstream, repository, query) while one is in flight join it. A
 * list is sent from one shared body: clients answered with the same bytes share its memory,
 * however slowly they read, even when the bytes came from different upstream requests. */

struct tags_waiter {
    struct tags_waiter *next;
    tags_cb cb;
    void *ud;
};

struct tags_req {
    struct cache *c;
    struct upstream *u;
    char *repo;
    char *key; /* upstream KEY_SEP repo KEY_SEP query */
    struct tags_waiter *waiters;
    int stale; /* answered from the index after revalidate_timeout; the answer is dropped */
    struct buf body;
    long status;
    char link[1024];
    struct upstream_req *req;
    uv_timer_t timer; /* revalidate_timeout, when the index has tags to answer with */
    int timer_on;
    struct tags_req *next, *prev; /* c->tags_reqs: joinable, and for shutdown */
};

/* Lists being sent now, by key (upstream lists) or KEY_SEP key (lists from the index). */
static struct shared_index *live_lists;

static void tags_on_headers(void *ud, const struct upstream_response *resp)
{
    struct tags_req *t = ud;
    t->status = resp->status;
    if (resp->link)
        snprintf(t->link, sizeof(t->link), "%s", resp->link);
}

static int tags_on_data(void *ud, const char *data, size_t len)
{
    struct tags_req *t = ud;
    if (t->status != 200)
        return 0;
    return buf_append(&t->body, data, len) ? UPSTREAM_ABORT : 0;
}

struct cached_tags_ctx {
    const char *prefix;
    size_t prefix_len;
    struct buf *out;
    int n;
};

static int collect_tag(const char *key, void *value, void *ud)
{
    (void)value;
    struct cached_tags_ctx *ct = ud;
    if (strncmp(key, ct->prefix, ct->prefix_len) != 0)
        return 0;
    if (ct->n++ && buf_append(ct->out, ",", 1))
        return -ENOMEM;
    return json_put_string(ct->out, key + ct->prefix_len);
}

/* {"name":repo,"tags":[...]} of the tags the index has for repo; 0 when it has none. */
static int cached_tags(struct cache *c, const struct upstream *u, const char *repo,
                       struct buf *out)
{
    char prefix[TAG_KEY_MAX];
    snprintf(prefix, sizeof(prefix), "%s" KEY_SEP "%s" KEY_SEP, upstream_name(u), repo);
    struct cached_tags_ctx ct = {prefix, strlen(prefix), out, 0};
    int r = buf_append(out, "{\"name\":", 8) || json_put_string(out, repo) ||
            buf_append(out, ",\"tags\":[", 9) || map_each(c->tags, collect_tag, &ct) ||
            buf_append(out, "]}\n", 3);
    return r ? -ENOMEM : ct.n;
}

/* A shared body for the bytes of out (taken over: out is left empty): the live body of that
 * name when it holds the same bytes, else a new one under that name. NULL when out of memory. */
static struct shared_body *share_list(const char *key, struct buf *out)
{
    struct shared_body *b = shared_index_get(&live_lists, key);
    if (b && b->len == out->len && (!out->len || memcmp(b->data, out->data, out->len) == 0)) {
        buf_free(out);
        return b;
    }
    shared_body_unref(b);
    b = shared_body_adopt(out->data, out->len);
    out->data = NULL;
    out->len = out->cap = 0;
    if (b)
        shared_index_put(&live_lists, key, b);
    return b;
}

static void tags_list_key(char *out, size_t len, const struct upstream *u, const char *repo,
                          const char *query)
{
    snprintf(out, len, "%s" KEY_SEP "%s" KEY_SEP "%s", upstream_name(u), repo,
             query ? query : "");
}

/* Answers from the index; returns 0 when it had nothing to answer with. */
static int answer_cached(struct cache *c, const struct upstream *u, const char *repo,
                         tags_cb cb, void *ud)
{
    struct buf out;
    buf_init(&out, TAGS_BODY_MAX);
    int n = cached_tags(c, u, repo, &out);
    struct shared_body *b = NULL;
    if (n > 0) {
        char key[TAG_KEY_MAX + 8];
        snprintf(key, sizeof(key), KEY_SEP "%s" KEY_SEP "%s", upstream_name(u), repo);
        b = share_list(key, &out);
    }
    buf_free(&out);
    if (!b)
        return 0;
    struct tags_answer a = {0};
    a.outcome = OUTCOME_STALE;
    a.shared = b;
    a.body = b->data;
    a.len = b->len;
    cb(ud, &a);
    shared_body_unref(b);
    return 1;
}

static void tags_req_closed(uv_handle_t *h)
{
    free(h->data);
}

static void tags_req_free(struct tags_req *t)
{
    struct cache *c = t->c;
    if (t->prev)
        t->prev->next = t->next;
    else if (c->tags_reqs == t)
        c->tags_reqs = t->next;
    if (t->next)
        t->next->prev = t->prev;
    while (t->waiters) {
        struct tags_waiter *w = t->waiters;
        t->waiters = w->next;
        free(w);
    }
    buf_free(&t->body);
    free(t->repo);
    free(t->key);
    t->repo = t->key = NULL;
    if (t->timer_on) {
        uv_timer_stop(&t->timer);
        uv_close((uv_handle_t *)&t->timer, tags_req_closed);
    } else {
        free(t);
    }
}

/* Takes the waiters off t: answering may start new requests (which must not join t). */
static struct tags_waiter *take_waiters(struct tags_req *t)
{
    struct tags_waiter *w = t->waiters;
    t->waiters = NULL;
    return w;
}

static void tags_on_done(void *ud, const struct upstream_response *resp, int result)
{
    struct tags_req *t = ud;
    struct tags_answer a = {0};
    t->req = NULL;
    t->stale = 1; /* no longer joinable */
    struct tags_waiter *w = take_waiters(t), *next;
    if (!w) {
        /* answered from the index already */
    } else if (resp->status == 200 && result == 0) {
        struct shared_body *b = share_list(t->key, &t->body);
        if (!b)
            cache__error_set(&a.err, 503, "UNAVAILABLE", "out of memory");
        a.outcome = OUTCOME_MISS;
        a.shared = b;
        a.body = b ? b->data : NULL;
        a.len = b ? b->len : 0;
        a.link = t->link[0] ? t->link : NULL;
        for (; w; w = next) {
            next = w->next;
            w->cb(w->ud, &a);
            free(w);
        }
        shared_body_unref(b);
    } else if (resp->status == 404 || resp->status == 401 || resp->status == 403) {
        cache__error_from_upstream(&a.err, t->u, resp, "NAME_UNKNOWN");
        for (; w; w = next) {
            next = w->next;
            w->cb(w->ud, &a);
            free(w);
        }
    } else {
        /* upstream unreachable or failing: the index, else an error */
        if (resp->status == 0 || resp->status >= 500 || resp->status == 429)
            cache__error_from_upstream(&a.err, t->u, resp, "NAME_UNKNOWN");
        else
            cache__error_set(&a.err, 404, "NAME_UNKNOWN", "repository not known");
        for (; w; w = next) {
            next = w->next;
            if (!answer_cached(t->c, t->u, t->repo, w->cb, w->ud))
                w->cb(w->ud, &a);
            free(w);
        }
    }
    tags_req_free(t);
}

static void on_tags_timeout(uv_timer_t *timer)
{
    struct tags_req *t = timer->data;
    if (!t->waiters || t->stale)
        return;
    char why[96];
    snprintf(why, sizeof(why), "no answer to tags/list within %llu ms",
             (unsigned long long)t->c->cfg->revalidate_timeout_ms);
    health_overdue(t->c, t->u, why);
    t->stale = 1; /* the upstream's answer, when it comes, is dropped */
    struct tags_waiter *w = take_waiters(t), *next;
    for (; w; w = next) {
        next = w->next;
        if (!answer_cached(t->c, t->u, t->repo, w->cb, w->ud)) {
            struct tags_answer a = {0};
            cache__error_set(&a.err, 503, "UNAVAILABLE", "out of memory");
            w->cb(w->ud, &a);
        }
        free(w);
    }
}

static const struct upstream_callbacks tags_callbacks = {tags_on_headers, tags_on_data,
                                                         tags_on_done};

static int add_tags_waiter(struct tags_req *t, tags_cb cb, void *ud)
{
    struct tags_waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->cb = cb;
    w->ud = ud;
    w->next = t->waiters;
    t->waiters = w;
    return 0;
}

void cache_tags(struct cache *c, struct upstream *u, const char *repo, const char *query,
                tags_cb cb, void *ud)
{
    struct tags_answer a = {0};
    struct buf probe;
    buf_init(&probe, TAGS_BODY_MAX);
    int known = cached_tags(c, u, repo, &probe) > 0;
    buf_free(&probe);
    /* a first page from the index while the upstream is down; later pages need it */
    if (known && !query && health_is_down(c, u) && answer_cached(c, u, repo, cb, ud))
        return;
    if (health_backoff(c, u, &a.err)) { /* a 429's Retry-After has not passed */
        cb(ud, &a);
        return;
    }
    char key[TAG_KEY_MAX + 512];
    tags_list_key(key, sizeof(key), u, repo, query);
    for (struct tags_req *t = c->tags_reqs; t; t = t->next) {
        if (t->stale || t->u != u || strcmp(t->key, key) != 0)
            continue;
        if (add_tags_waiter(t, cb, ud))
            break;
        return; /* the same list is being asked for: its answer is this one's */
    }
    struct tags_req *t = calloc(1, sizeof(*t));
    if (!t || !(t->repo = strdup(repo)) || !(t->key = strdup(key)) ||
        add_tags_waiter(t, cb, ud)) {
        if (t) {
            free(t->repo);
            free(t->key);
        }
        free(t);
        cache__error_set(&a.err, 503, "UNAVAILABLE", "out of memory");
        cb(ud, &a);
        return;
    }
    t->c = c;
    t->u = u;
    buf_init(&t->body, TAGS_BODY_MAX);
    t->next = c->tags_reqs;
    if (c->tags_reqs)
        c->tags_reqs->prev = t;
    c->tags_reqs = t;
    if (known && !query) {
        uv_timer_init(c->loop, &t->timer);
        t->timer.data = t;
        t->timer_on = 1;
        uv_timer_start(&t->timer, on_tags_timeout, c->cfg->revalidate_timeout_ms, 0);
    }
    t->req = upstream_request(u, UPSTREAM_GET, repo, "tags/list", query, "application/json",
                              &tags_callbacks, t);
    if (!t->req) {
        struct tags_waiter *w = take_waiters(t);
        cache__error_set(&a.err, 503, "UNAVAILABLE", "out of memory");
        tags_req_free(t);
        for (struct tags_waiter *next; w; w = next) {
            next = w->next;
            w->cb(w->ud, &a);
            free(w);
        }
    }
}

void tags_free_all(struct cache *c)
{
    /* Only at shutdown: requests are dropped, callers are not answered. */
    while (c->tags_reqs) {
        struct tags_req *t = c->tags_reqs;
        if (t->req)
            upstream_req_cancel(t->req);
        t->req = NULL;
        tags_req_free(t);
    }
}
