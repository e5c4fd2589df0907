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

/* ---- tags/list ---- */

struct tags_req {
    struct cache *c;
    struct upstream *u;
    char *repo;
    tags_cb cb;
    void *ud; /* NULL once answered */
    struct buf body;
    long status;
    char link[1024];
    struct upstream_req *req;
    uv_timer_t timer; /* revalidate_timeout, when the index has tags to answer with */
    int timer_on;
    struct tags_req *next, *prev; /* c->tags_reqs, for shutdown */
};

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

/* Answers from the index; returns 0 when it had nothing to answer with. */
static int answer_cached(struct cache *c, const struct upstream *u, const char *repo,
                         tags_cb cb, void *ud)
{
    struct buf out;
    buf_init(&out, TAGS_BODY_MAX);
    int n = cached_tags(c, u, repo, &out);
    if (n > 0) {
        struct tags_answer a = {0};
        a.outcome = OUTCOME_STALE;
        a.body = out.data;
        a.len = out.len;
        cb(ud, &a);
    }
    buf_free(&out);
    return n > 0;
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
    buf_free(&t->body);
    free(t->repo);
    t->repo = NULL;
    if (t->timer_on) {
        uv_timer_stop(&t->timer);
        uv_close((uv_handle_t *)&t->timer, tags_req_closed);
    } else {
        free(t);
    }
}

static void tags_on_done(void *ud, const struct upstream_response *resp, int result)
{
    struct tags_req *t = ud;
    struct tags_answer a = {0};
    t->req = NULL;
    if (!t->cb) {
        /* answered from the index already */
    } else if (resp->status == 200 && result == 0) {
        a.outcome = OUTCOME_MISS;
        a.body = t->body.data ? t->body.data : "";
        a.len = t->body.len;
        a.link = t->link[0] ? t->link : NULL;
        t->cb(t->ud, &a);
    } else if (resp->status == 404 || resp->status == 401 || resp->status == 403) {
        cache__error_from_upstream(&a.err, t->u, resp, "NAME_UNKNOWN");
        t->cb(t->ud, &a);
    } else if (!answer_cached(t->c, t->u, t->repo, t->cb, t->ud)) {
        /* upstream unreachable or failing, and nothing in the index */
        if (resp->status == 0 || resp->status >= 500 || resp->status == 429)
            cache__error_from_upstream(&a.err, t->u, resp, "NAME_UNKNOWN");
        else
            cache__error_set(&a.err, 404, "NAME_UNKNOWN", "repository not known");
        t->cb(t->ud, &a);
    }
    tags_req_free(t);
}

static void on_tags_timeout(uv_timer_t *timer)
{
    struct tags_req *t = timer->data;
    if (!t->cb)
        return;
    char why[96];
    snprintf(why, sizeof(why), "no answer to tags/list within %llu ms",
             (unsigned long long)t->c->cfg->revalidate_timeout_ms);
    health_failed(t->c, t->u, why);
    if (answer_cached(t->c, t->u, t->repo, t->cb, t->ud))
        t->cb = NULL; /* the upstream's answer, when it comes, is dropped */
}

static const struct upstream_callbacks tags_callbacks = {tags_on_headers, tags_on_data,
                                                         tags_on_done};

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
    struct tags_req *t = calloc(1, sizeof(*t));
    if (!t || !(t->repo = strdup(repo))) {
        free(t);
        cache__error_set(&a.err, 503, "UNAVAILABLE", "out of memory");
        cb(ud, &a);
        return;
    }
    t->c = c;
    t->u = u;
    t->cb = cb;
    t->ud = ud;
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
        cache__error_set(&a.err, 503, "UNAVAILABLE", "out of memory");
        cb(ud, &a);
        tags_req_free(t);
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
