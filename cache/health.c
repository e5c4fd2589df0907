/* Each upstream's health, as the mirror sees it from its own requests: whether it answers
 * (up or down, with one background probe at a time bringing a down one back) and the pull
 * budget it announces. Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/impl.h"
#include "db/db.h"
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
#define PROBE_MIN_MS 1000
#define PROBE_MAX_MS 30000

struct health {
    struct cache *c;
    struct upstream *u;
    int down;
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

/* How often a down upstream is asked whether it is back: once per revalidate_after, so that a
 * tag is current again within one revalidate_after of the upstream's return. */
static uint64_t probe_interval(const struct cache *c)
{
    uint64_t ms = c->cfg->revalidate_after_ms;
    return ms < PROBE_MIN_MS ? PROBE_MIN_MS : ms > PROBE_MAX_MS ? PROBE_MAX_MS : ms;
}

static void record_state(struct cache *c, const struct health *h)
{
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

/* What an answer (or its absence) says of the upstream's health. */
static void on_outcome(void *ud, struct upstream *u, const struct upstream_response *resp)
{
    struct cache *c = ud;
    char why[200];
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
    if (!c->health || !c->ratelimits)
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
    free(c->health);
    c->health = NULL;
}
