/* SPDX-License-Identifier: Apache-2.0 */
/* Each upstream's health, as the mirror sees it from its own requests: whether it answers
 * (up or down, with one background probe at a time bringing a down one back) and the pull
 * budget it announces. Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/impl.h"
#include "db/db.h"
#include "metrics/metrics.h"
#include "util/clock.h"
#include "util/log.h"

/* ---- the pull budget ----
 * An upstream's pull budget is what an operator most needs to see coming: every announcement
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
    metrics_upstream_ratelimit(name, rl->limit, remaining, rl->window_s, rl->status == 429);
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


/* ---- up or down ---- */

#define HEALTH_TICK_MS 250

struct health {
    struct cache *c;
    struct upstream *u;
    int down;
    uint64_t backoff_until_ms; /* a 429's Retry-After: nothing is asked before then */
    uint64_t since_ms;
    char reason[200];
    struct upstream_req *probe; /* in flight, at most one */
    uint64_t last_probe_ms;
};

static struct health *health_of(struct cache *c, const struct upstream *u)
{
    for (size_t i = 0; i < c->n_health; i++)
        if (c->health[i].u == u)
            return &c->health[i];
    return NULL;
}

/* How often a down upstream is asked whether it is back (as a down endpoint is). */
static uint64_t probe_interval(const struct cache *c)
{
    return upstream_probe_interval_ms(c->cfg->revalidate_after_ms);
}

static void record_state(struct cache *c, const struct health *h)
{
    metrics_upstream_state(upstream_name(h->u), !h->down, h->since_ms, h->reason);
    db_set_upstream_state(c->db, upstream_name(h->u), h->down ? "down" : "up", h->since_ms,
                          h->down ? h->reason : NULL);
}

int health_is_down(struct cache *c, const struct upstream *u)
{
    struct health *h = health_of(c, u);
    return h && h->down;
}

void health_failed(struct cache *c, struct upstream *u, const char *reason)
{
    struct health *h = health_of(c, u);
    if (!h || h->down)
        return;
    uint64_t now = clock_wall_ms();
    h->down = 1;
    h->since_ms = now;
    h->last_probe_ms = now;
    snprintf(h->reason, sizeof(h->reason), "%s", reason);
    log_warn("upstream %s: down (%s); answering cached tags from the cache, probing every "
             "%llu ms",
             upstream_name(u), reason, (unsigned long long)probe_interval(c));
    record_state(c, h);
}

void health_overdue(struct cache *c, struct upstream *u, const char *reason)
{
    if (upstream_endpoints_up(u) >= 2) {
        log_info("upstream %s: %s; another endpoint may still answer, so it is not down",
                 upstream_name(u), reason);
        return;
    }
    health_failed(c, u, reason);
}

void health_answered(struct cache *c, struct upstream *u)
{
    struct health *h = health_of(c, u);
    if (!h || !h->down)
        return;
    uint64_t now = clock_wall_ms();
    log_info("upstream %s: up again after %llu s", upstream_name(u),
             (unsigned long long)((now - h->since_ms) / 1000));
    h->down = 0;
    h->since_ms = now;
    h->reason[0] = '\0';
    record_state(c, h);
}

/* ---- Retry-After ----
 * A 429 stops every request to that upstream until its Retry-After (delay-seconds or an
 * HTTP-date, RFC 9110 section 10.2.3) has passed; without one (or with one that cannot be
 * read), for BACKOFF_DEFAULT_S. Never longer than BACKOFF_MAX_S. */
#define BACKOFF_DEFAULT_S 60
#define BACKOFF_MAX_S (6 * 3600)

static int64_t retry_after_seconds(const char *v, uint64_t now_ms)
{
    if (!v || !*v)
        return -1;
    size_t n = strspn(v, "0123456789");
    if (n && !v[n]) {
        if (n > 9)
            return BACKOFF_MAX_S;
        return atoll(v);
    }
    struct tm tm = {0};
    const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return -1;
    time_t at = timegm(&tm);
    if (at == (time_t)-1)
        return -1;
    int64_t d = (int64_t)at - (int64_t)(now_ms / 1000);
    return d < 0 ? 0 : d;
}

static void backoff_start(struct health *h, const char *retry_after)
{
    uint64_t now = clock_wall_ms();
    int64_t s = retry_after_seconds(retry_after, now);
    if (s < 0)
        s = BACKOFF_DEFAULT_S;
    if (s > BACKOFF_MAX_S)
        s = BACKOFF_MAX_S;
    if (s == 0)
        s = 1;
    uint64_t until = now + (uint64_t)s * 1000;
    if (until > h->backoff_until_ms)
        h->backoff_until_ms = until;
}

int health_backoff(struct cache *c, const struct upstream *u, struct cache_error *e)
{
    struct health *h = health_of(c, u);
    uint64_t now = clock_wall_ms();
    if (!h || h->backoff_until_ms <= now)
        return 0;
    uint64_t left = (h->backoff_until_ms - now + 999) / 1000;
    cache__error_set(e, 429, "TOOMANYREQUESTS",
                     "upstream %s rate limit reached; not asking it again for %llu s",
                     upstream_name(u), (unsigned long long)left);
    snprintf(e->retry_after, sizeof(e->retry_after), "%llu", (unsigned long long)left);
    return 1;
}

/* ---- what is known missing ----
 * A 404 (or a refusal) for a tag, digest or blob is remembered for cache.negative_ttl, so that
 * asking again for a name that does not exist costs the upstream nothing. Bounded: past
 * NEGATIVE_MAX entries expired ones are dropped, and when none has expired nothing new is
 * remembered. */
#define NEGATIVE_MAX 8192

static void negative_key(char *out, size_t len, const struct upstream *u, const char *kind,
                         const char *repo, const char *ref)
{
    snprintf(out, len, "%s" KEY_SEP "%s" KEY_SEP "%s" KEY_SEP "%s", kind, upstream_name(u), repo,
             ref);
}

struct sweep_ctx {
    uint64_t now;
    char **keys;
    size_t n, cap;
};

static int find_expired(const char *key, void *value, void *ud)
{
    struct sweep_ctx *sw = ud;
    if (*(uint64_t *)value > sw->now)
        return 0;
    if (sw->n == sw->cap)
        return 1;
    sw->keys[sw->n] = strdup(key);
    if (sw->keys[sw->n])
        sw->n++;
    return 0;
}

static void negative_sweep(struct cache *c)
{
    struct sweep_ctx sw = {clock_wall_ms(), NULL, 0, map_count(c->negative)};
    if (!sw.cap || !(sw.keys = calloc(sw.cap, sizeof(char *))))
        return;
    map_each(c->negative, find_expired, &sw);
    for (size_t i = 0; i < sw.n; i++) {
        free(map_del(c->negative, sw.keys[i]));
        free(sw.keys[i]);
    }
    free(sw.keys);
}

void health_note_missing(struct cache *c, const struct upstream *u, const char *kind,
                         const char *repo, const char *ref)
{
    if (!c->cfg->negative_ttl_ms || !c->negative)
        return;
    char key[TAG_KEY_MAX + 64];
    negative_key(key, sizeof(key), u, kind, repo, ref);
    uint64_t until = clock_wall_ms() + c->cfg->negative_ttl_ms;
    uint64_t *v = map_get(c->negative, key);
    if (v) {
        *v = until;
        return;
    }
    if (map_count(c->negative) >= NEGATIVE_MAX)
        negative_sweep(c);
    if (map_count(c->negative) >= NEGATIVE_MAX || !(v = malloc(sizeof(*v))))
        return;
    *v = until;
    if (map_put(c->negative, key, v) == MAP_NOMEM)
        free(v);
}

int health_known_missing(struct cache *c, const struct upstream *u, const char *kind,
                         const char *repo, const char *ref)
{
    if (!c->negative)
        return 0;
    char key[TAG_KEY_MAX + 64];
    negative_key(key, sizeof(key), u, kind, repo, ref);
    uint64_t *v = map_get(c->negative, key);
    if (!v)
        return 0;
    if (*v > clock_wall_ms())
        return 1;
    free(map_del(c->negative, key));
    return 0;
}

/* What an answer (or its absence) says of the upstream's health. */
static void on_outcome(void *ud, struct upstream *u, const struct upstream_response *resp)
{
    struct cache *c = ud;
    char why[200];
    if (resp->status == 429) {
        struct health *h = health_of(c, u);
        if (h)
            backoff_start(h, resp->retry_after);
    }
    if (resp->status == 0) {
        snprintf(why, sizeof(why), "%s", resp->error ? resp->error : "no answer");
        health_failed(c, u, why);
    } else if (resp->status >= 500 || resp->status == 429) {
        snprintf(why, sizeof(why), "HTTP %ld", resp->status);
        health_failed(c, u, why);
    } else {
        health_answered(c, u);
    }
}

static void probe_headers(void *ud, const struct upstream_response *resp)
{
    (void)ud;
    (void)resp;
}

static int probe_data(void *ud, const char *data, size_t len)
{
    (void)ud;
    (void)data;
    (void)len;
    return 0;
}

static void probe_done(void *ud, const struct upstream_response *resp, int result)
{
    (void)resp; /* on_outcome has judged it */
    (void)result;
    struct health *h = ud;
    h->probe = NULL;
    h->last_probe_ms = clock_wall_ms();
}

static const struct upstream_callbacks probe_callbacks = {probe_headers, probe_data, probe_done};

static void on_health_tick(uv_timer_t *t)
{
    struct cache *c = t->data;
    uint64_t now = clock_wall_ms();
    for (size_t i = 0; i < c->n_health; i++) {
        struct health *h = &c->health[i];
        if (h->down && !h->probe && now - h->last_probe_ms >= probe_interval(c))
            h->probe = upstream_probe(h->u, &probe_callbacks, h);
    }
}

int health_init(struct cache *c)
{
    size_t n = upstream_count(c->up);
    c->health = calloc(n ? n : 1, sizeof(*c->health));
    c->ratelimits = map_new();
    c->negative = map_new();
    if (!c->health || !c->ratelimits || !c->negative)
        return -ENOMEM;
    uint64_t now = clock_wall_ms();
    for (size_t i = 0; i < n; i++) {
        struct health *h = &c->health[c->n_health++];
        h->c = c;
        h->u = upstream_get(c->up, i);
        h->since_ms = now;
        record_state(c, h);
    }
    upstream_client_on_ratelimit(c->up, on_ratelimit, c);
    upstream_client_on_outcome(c->up, on_outcome, c);
    uv_timer_init(c->loop, &c->health_timer);
    c->health_timer.data = c;
    uv_timer_start(&c->health_timer, on_health_tick, HEALTH_TICK_MS, HEALTH_TICK_MS);
    uv_unref((uv_handle_t *)&c->health_timer);
    c->health_timer_on = 1;
    return 0;
}

void health_stop(struct cache *c)
{
    upstream_client_on_ratelimit(c->up, NULL, NULL);
    upstream_client_on_outcome(c->up, NULL, NULL);
    for (size_t i = 0; i < c->n_health; i++) {
        if (c->health[i].probe)
            upstream_req_cancel(c->health[i].probe);
        c->health[i].probe = NULL;
    }
    if (c->health_timer_on) {
        uv_timer_stop(&c->health_timer);
        uv_close((uv_handle_t *)&c->health_timer, NULL);
        c->health_timer_on = 0;
    }
}

static int free_value(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    free(value);
    return 0;
}

void health_free(struct cache *c)
{
    if (c->ratelimits)
        map_each(c->ratelimits, free_value, NULL);
    map_free(c->ratelimits);
    c->ratelimits = NULL;
    if (c->negative)
        map_each(c->negative, free_value, NULL);
    map_free(c->negative);
    c->negative = NULL;
    free(c->health);
    c->health = NULL;
}

void cache_upstream_state(struct cache *c, const struct upstream *u,
                          struct cache_upstream_state *out)
{
    struct cache_error e = {0};
    const struct ratelimit_seen *seen = map_get(c->ratelimits, upstream_name(u));
    out->down = health_is_down(c, u);
    out->backoff = health_backoff(c, u, &e);
    out->remaining = seen ? seen->remaining : -1;
}
