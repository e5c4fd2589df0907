#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/impl.h"
#include "db/db.h"
#include "util/json.h"
#include "util/clock.h"
#include "util/log.h"

const char *cache_outcome_name(enum cache_outcome o)
{
    switch (o) {
    case OUTCOME_HIT: return "hit";
    case OUTCOME_MISS: return "miss";
    case OUTCOME_FILL: return "fill";
    case OUTCOME_STALE: return "stale";
    default: return "-";
    }
}

/* An upstream's pull budget is what an operator most needs to see coming: every announcement
 * is recorded (regcache stats), and a 429 or a budget falling under RATELIMIT_LOW_PERCENT of
 * the limit is logged as a warning (a 429 at most every RATELIMIT_WARN_MS). */
#define RATELIMIT_LOW_PERCENT 10
#define RATELIMIT_WARN_MS 60000

struct ratelimit_seen {
    int64_t remaining;
    uint64_t warned_429_ms;
};

static int budget_low(int64_t remaining, int64_t limit)
{
    return limit > 0 ? remaining * 100 <= limit * RATELIMIT_LOW_PERCENT : remaining <= 10;
}

static void on_ratelimit(void *ud, struct upstream *u, const struct upstream_ratelimit *rl)
{
    struct cache *c = ud;
    const char *name = upstream_name(u);
    uint64_t now = clock_wall_ms();
    int64_t remaining = rl->remaining < 0 && rl->status == 429 ? 0 : rl->remaining;
    struct db_ratelimit row = {
        name, rl->limit, remaining, rl->window_s, rl->source, now, rl->status == 429 ? now : 0};
    db_set_ratelimit(c->db, &row);
    struct ratelimit_seen *seen = map_get(c->ratelimits, name);
    if (!seen) {
        seen = calloc(1, sizeof(*seen));
        if (!seen)
            return;
        seen->remaining = -1;
        if (map_put(c->ratelimits, name, seen) == MAP_NOMEM) {
            free(seen);
            return;
        }
    }
    if (rl->status == 429) {
        if (!seen->warned_429_ms || now - seen->warned_429_ms >= RATELIMIT_WARN_MS) {
            seen->warned_429_ms = now;
            log_warn("upstream %s: HTTP 429, pull limit reached (Retry-After %s); serving what "
                     "is cached, refusing the rest with 429",
                     name, rl->retry_after ? rl->retry_after : "not given");
        }
    } else if (remaining >= 0 && (seen->remaining < 0 || remaining < seen->remaining) &&
               budget_low(remaining, rl->limit)) {
        char limit[32] = "?", window[48] = "";
        if (rl->limit >= 0)
            snprintf(limit, sizeof(limit), "%lld", (long long)rl->limit);
        if (rl->window_s > 0)
            snprintf(window, sizeof(window), " per %lld s", (long long)rl->window_s);
        log_warn("upstream %s: pull budget low: %lld of %s left%s%s%s", name, (long long)remaining,
                 limit, window, rl->source ? " for " : "", rl->source ? rl->source : "");
    }
    if (remaining >= 0)
        seen->remaining = remaining;
}

void cache_note_access(struct cache *c, struct upstream *u, const char *repo, const char *digest,
                       enum cache_outcome outcome)
{
    uint64_t now = clock_wall_ms();
    db_touch(c->db, digest, now);
    db_ref(c->db, upstream_name(u), repo, digest);
    if (outcome == OUTCOME_HIT || outcome == OUTCOME_STALE)
        db_set_counter(c->db, "hits", ++c->hits);
    else if (outcome == OUTCOME_MISS || outcome == OUTCOME_FILL)
        db_set_counter(c->db, "misses", ++c->misses);
}

int cache_new(uv_loop_t *loop, const struct config *cfg, struct store *store, struct db *db,
              struct upstream_client *up, struct cache **out)
{
    struct cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->cfg = cfg;
    c->store = store;
    c->db = db;
    c->up = up;
    int r = index_init(c);
    c->manifest_flights = map_new();
    c->fills = map_new();
    c->ratelimits = map_new();
    if (r || !c->manifest_flights || !c->fills || !c->ratelimits) {
        cache_free(c);
        return -ENOMEM;
    }
    r = open_files_init(c);
    if (!r)
        r = index_load(c);
    if (r) {
        cache_free(c);
        return r;
    }
    db_set_counter(db, "started_ms", clock_wall_ms());
    db_set_counter(db, "hits", 0);
    db_set_counter(db, "misses", 0);
    log_info("index: %zu tags, %zu manifests, %zu repositories", map_count(c->tags),
             map_count(c->manifests), map_count(c->repos));
    upstream_client_on_ratelimit(up, on_ratelimit, c);
    open_files_start(c);
    *out = c;
    return 0;
}

void cache_shutdown(struct cache *c)
{
    upstream_client_on_ratelimit(c->up, NULL, NULL);
    cache_stop_lifecycle(c);
    open_files_stop(c);
    manifests_free_all(c);
    blobs_free_all(c);
}

static int free_value(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    free(value);
    return 0;
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    index_free(c);
    if (c->ratelimits)
        map_each(c->ratelimits, free_value, NULL);
    map_free(c->manifest_flights);
    map_free(c->fills);
    map_free(c->ratelimits);
    open_files_stop(c); /* after cache_shutdown: only descriptors are left to close */
    free(c);
}

/* ---- catalog ---- */

struct catalog_ctx {
    struct cache *c;
    char **names;
    size_t n, cap;
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
    if (cc->n == cc->cap) {
        size_t cap = cc->cap ? cc->cap * 2 : 64;
        char **p = realloc(cc->names, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        cc->names = p;
        cc->cap = cap;
    }
    char *name = malloc(ulen + strlen(repo) + 2);
    if (!name)
        return -ENOMEM;
    if (is_first)
        strcpy(name, repo);
    else
        sprintf(name, "%.*s/%s", (int)ulen, key, repo);
    cc->names[cc->n++] = name;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cache_catalog(struct cache *c, struct buf *out, size_t n, const char *last)
{
    struct catalog_ctx cc = {c, NULL, 0, 0};
    int r = map_each(c->repos, collect_repo, &cc);
    if (!r) {
        qsort(cc.names, cc.n, sizeof(*cc.names), cmp_str);
        r = buf_append(out, "{\"repositories\":[", 17);
        size_t written = 0;
        for (size_t i = 0; !r && i < cc.n; i++) {
            if (last && strcmp(cc.names[i], last) <= 0)
                continue;
            if (n && written == n)
                break;
            if (written++)
                r = buf_append(out, ",", 1);
            if (!r)
                r = json_put_string(out, cc.names[i]);
        }
        if (!r)
            r = buf_append(out, "]}\n", 3);
    }
    for (size_t i = 0; i < cc.n; i++)
        free(cc.names[i]);
    free(cc.names);
    return r;
}

/* ---- tags/list ---- */

struct tags_req {
    struct cache *c;
    struct upstream *u;
    char *repo;
    tags_cb cb;
    void *ud;
    struct buf body;
    long status;
    char link[1024];
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

static void tags_on_done(void *ud, const struct upstream_response *resp, int result)
{
    struct tags_req *t = ud;
    struct tags_answer a = {0};
    if (resp->status == 200 && result == 0) {
        a.outcome = OUTCOME_MISS;
        a.body = t->body.data ? t->body.data : "";
        a.len = t->body.len;
        a.link = t->link[0] ? t->link : NULL;
        t->cb(t->ud, &a);
    } else if (resp->status == 404 || resp->status == 401 || resp->status == 403) {
        cache__error_from_upstream(&a.err, t->u, resp, "NAME_UNKNOWN");
        t->cb(t->ud, &a);
    } else {
        /* upstream unreachable or failing: what we know from the cache */
        char prefix[600];
        snprintf(prefix, sizeof(prefix), "%s" KEY_SEP "%s" KEY_SEP, upstream_name(t->u),
                 t->repo);
        struct buf out;
        buf_init(&out, TAGS_BODY_MAX);
        struct cached_tags_ctx ct = {prefix, strlen(prefix), &out, 0};
        int r = buf_append(&out, "{\"name\":", 8) || json_put_string(&out, t->repo) ||
                buf_append(&out, ",\"tags\":[", 9) || map_each(t->c->tags, collect_tag, &ct) ||
                buf_append(&out, "]}\n", 3);
        if (r || ct.n == 0) {
            if (resp->status == 0 || resp->status >= 500 || resp->status == 429)
                cache__error_from_upstream(&a.err, t->u, resp, "NAME_UNKNOWN");
            else
                cache__error_set(&a.err, 404, "NAME_UNKNOWN", "repository not known");
        } else {
            a.outcome = OUTCOME_STALE;
            a.body = out.data;
            a.len = out.len;
        }
        t->cb(t->ud, &a);
        buf_free(&out);
    }
    buf_free(&t->body);
    free(t->repo);
    free(t);
}

static const struct upstream_callbacks tags_callbacks = {tags_on_headers, tags_on_data,
                                                         tags_on_done};

void cache_tags(struct cache *c, struct upstream *u, const char *repo, const char *query,
                tags_cb cb, void *ud)
{
    struct tags_req *t = calloc(1, sizeof(*t));
    struct tags_answer a = {0};
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
    if (!upstream_request(u, UPSTREAM_GET, repo, "tags/list", query, "application/json",
                          &tags_callbacks, t)) {
        free(t->repo);
        free(t);
        cache__error_set(&a.err, 503, "UNAVAILABLE", "out of memory");
        cb(ud, &a);
    }
}
