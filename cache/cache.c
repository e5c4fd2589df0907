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

void error_set(struct cache_error *e, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    e->status = status;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

void error_from_upstream(struct cache_error *e, const struct upstream *u,
                         const struct upstream_response *resp, const char *unknown_code)
{
    const char *name = upstream_name(u);
    e->retry_after[0] = '\0';
    if (resp->status == 0)
        error_set(e, 502, "UNAVAILABLE", "upstream %s unreachable: %s", name,
                  resp->error ? resp->error : "error");
    else if (resp->status == 404)
        error_set(e, 404, unknown_code, "not found upstream (%s)", name);
    else if (resp->status == 401 || resp->status == 403)
        error_set(e, 404, unknown_code, "upstream %s denied access (HTTP %ld)", name,
                  resp->status);
    else if (resp->status == 429) {
        error_set(e, 429, "TOOMANYREQUESTS", "upstream %s rate limit reached", name);
        snprintf(e->retry_after, sizeof(e->retry_after), "%s",
                 resp->retry_after ? resp->retry_after : "60");
    } else
        error_set(e, 502, "UNAVAILABLE", "upstream %s answered HTTP %ld", name, resp->status);
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

void tag_key(char *out, size_t len, const struct upstream *u, const char *repo, const char *tag)
{
    snprintf(out, len, "%s" KEY_SEP "%s" KEY_SEP "%s", upstream_name(u), repo, tag);
}

static void note_repo(struct cache *c, const char *upstream, const char *repo)
{
    char key[600];
    snprintf(key, sizeof(key), "%s" KEY_SEP "%s", upstream, repo);
    if (!map_get(c->repos, key))
        map_put(c->repos, key, (void *)1);
}

struct tag_entry *index_tag(struct cache *c, const struct upstream *u, const char *repo,
                            const char *tag)
{
    char key[800];
    tag_key(key, sizeof(key), u, repo, tag);
    return map_get(c->tags, key);
}

static void set_tag_raw(struct cache *c, const char *key, const char *digest,
                        const char *media_type, uint64_t validated_ms)
{
    struct tag_entry *t = map_get(c->tags, key);
    if (!t) {
        t = calloc(1, sizeof(*t));
        if (!t)
            return;
        if (map_put(c->tags, key, t) == MAP_NOMEM) {
            free(t);
            return;
        }
    }
    snprintf(t->digest, sizeof(t->digest), "%s", digest);
    snprintf(t->media_type, sizeof(t->media_type), "%s", media_type);
    t->validated_ms = validated_ms;
}

void index_set_tag(struct cache *c, const struct upstream *u, const char *repo, const char *tag,
                   const char *digest, const char *media_type, uint64_t validated_ms,
                   int persist)
{
    char key[800];
    tag_key(key, sizeof(key), u, repo, tag);
    set_tag_raw(c, key, digest, media_type, validated_ms);
    note_repo(c, upstream_name(u), repo);
    if (!persist)
        return;
    struct db_tag_row row = {upstream_name(u), repo, tag, digest, media_type, validated_ms};
    db_put_tag(c->db, &row);
}

void index_forget_tag(struct cache *c, const struct upstream *u, const char *repo,
                      const char *tag)
{
    char key[800];
    tag_key(key, sizeof(key), u, repo, tag);
    free(map_del(c->tags, key));
    db_del_tag(c->db, upstream_name(u), repo, tag);
}

struct manifest_meta *index_manifest(struct cache *c, const char *digest)
{
    return map_get(c->manifests, digest);
}

static void lru_unlink(struct cache *c, struct manifest_meta *m)
{
    if (m->lru_prev)
        m->lru_prev->lru_next = m->lru_next;
    else if (c->lru_head == m)
        c->lru_head = m->lru_next;
    if (m->lru_next)
        m->lru_next->lru_prev = m->lru_prev;
    else if (c->lru_tail == m)
        c->lru_tail = m->lru_prev;
    m->lru_prev = m->lru_next = NULL;
}

static void lru_push_front(struct cache *c, struct manifest_meta *m)
{
    m->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = m;
    c->lru_head = m;
    if (!c->lru_tail)
        c->lru_tail = m;
}

static void forget_bytes(struct cache *c, struct manifest_meta *m)
{
    if (!m->bytes)
        return;
    lru_unlink(c, m);
    free(m->bytes);
    m->bytes = NULL;
    c->mem_bytes -= m->size;
}

void index_remember_bytes(struct cache *c, struct manifest_meta *m, const char *bytes)
{
    if (m->bytes || m->size > MANIFEST_MEMORY_BUDGET / 4)
        return;
    while (c->lru_tail && c->mem_bytes + m->size > MANIFEST_MEMORY_BUDGET)
        forget_bytes(c, c->lru_tail);
    m->bytes = malloc(m->size ? m->size : 1);
    if (!m->bytes)
        return;
    memcpy(m->bytes, bytes, m->size);
    c->mem_bytes += m->size;
    lru_push_front(c, m);
}

void index_touch_bytes(struct cache *c, struct manifest_meta *m)
{
    if (m->bytes && c->lru_head != m) {
        lru_unlink(c, m);
        lru_push_front(c, m);
    }
}

static struct manifest_meta *add_manifest_raw(struct cache *c, const char *digest,
                                              const char *media_type, uint64_t size)
{
    struct manifest_meta *m = map_get(c->manifests, digest);
    if (m)
        return m;
    m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    snprintf(m->digest, sizeof(m->digest), "%s", digest);
    snprintf(m->media_type, sizeof(m->media_type), "%s", media_type);
    m->size = size;
    if (map_put(c->manifests, digest, m) == MAP_NOMEM) {
        free(m);
        return NULL;
    }
    return m;
}

struct manifest_meta *index_add_manifest(struct cache *c, const char *digest,
                                         const char *media_type, uint64_t size, int persist)
{
    struct manifest_meta *m = add_manifest_raw(c, digest, media_type, size);
    if (m && persist) {
        struct db_manifest_row row = {digest, media_type, size};
        db_put_manifest(c->db, &row);
        db_put_blob(c->db, digest, size, media_type, clock_wall_ms());
    }
    return m;
}

void index_drop_manifest(struct cache *c, const char *digest)
{
    struct manifest_meta *m = map_del(c->manifests, digest);
    if (m) {
        forget_bytes(c, m);
        free(m);
    }
}

static void load_tag(void *ud, const struct db_tag_row *row)
{
    struct cache *c = ud;
    char key[800];
    snprintf(key, sizeof(key), "%s" KEY_SEP "%s" KEY_SEP "%s", row->upstream, row->repo,
             row->tag);
    set_tag_raw(c, key, row->digest, row->media_type, row->validated_ms);
    note_repo(c, row->upstream, row->repo);
}

static void load_manifest(void *ud, const struct db_manifest_row *row)
{
    add_manifest_raw(ud, row->digest, row->media_type, row->size);
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
    c->tags = map_new();
    c->manifests = map_new();
    c->repos = map_new();
    c->manifest_flights = map_new();
    c->fills = map_new();
    c->ratelimits = map_new();
    if (!c->tags || !c->manifests || !c->repos || !c->manifest_flights || !c->fills ||
        !c->ratelimits) {
        cache_free(c);
        return -ENOMEM;
    }
    int r = open_files_init(c);
    if (!r)
        r = db_load(db, load_tag, load_manifest, c);
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

static int free_manifest(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    struct manifest_meta *m = value;
    free(m->bytes);
    free(m);
    return 0;
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    if (c->tags)
        map_each(c->tags, free_value, NULL);
    if (c->manifests)
        map_each(c->manifests, free_manifest, NULL);
    if (c->ratelimits)
        map_each(c->ratelimits, free_value, NULL);
    map_free(c->tags);
    map_free(c->manifests);
    map_free(c->repos);
    map_free(c->manifest_flights);
    map_free(c->fills);
    map_free(c->ratelimits);
    open_files_stop(c); /* after cache_shutdown: only descriptors are left to close */
    free(c);
}

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
        error_from_upstream(&a.err, t->u, resp, "NAME_UNKNOWN");
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
                error_from_upstream(&a.err, t->u, resp, "NAME_UNKNOWN");
            else
                error_set(&a.err, 404, "NAME_UNKNOWN", "repository not known");
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
        error_set(&a.err, 503, "UNAVAILABLE", "out of memory");
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
        error_set(&a.err, 503, "UNAVAILABLE", "out of memory");
        cb(ud, &a);
    }
}
