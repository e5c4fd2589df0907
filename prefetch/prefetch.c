/* SPDX-License-Identifier: Apache-2.0 */
#include "prefetch/prefetch.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bundle/layout.h"
#include "cache/cache.h"
#include "cache/pins.h"
#include "db/db.h"
#include "metrics/metrics.h"
#include "prefetch/schedule.h"
#include "upstream/upstream.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"
#include "util/map.h"
#include "util/parse.h"
#include "util/reference.h"

#define TICK_MS 500
#define RUN_ITEMS_MAX 100000 /* tags, manifests and blobs one run goes through at most */

enum item_kind { ITEM_GLOB, ITEM_TAG, ITEM_MANIFEST, ITEM_BLOB };

struct item {
    enum item_kind kind;
    const struct pin_ref *ref;
    char name[REF_DIGEST_MAX + 1]; /* a tag or a digest (a glob is the ref's own) */
    uint64_t size;                 /* a blob's, from its descriptor */
};

struct run {
    struct prefetch *p;
    struct run *next; /* waiting to start */
    struct pin_ref *refs; /* owned: a command's run's; borrowed from p->pins: a scheduled one's */
    const struct pin_ref **list;
    size_t n_list;
    int owns_refs;
    struct item *items;
    size_t n_items, cap_items, at;
    struct map *seen; /* digests and tags queued by this run */
    struct prefetch_result r;
    prefetch_cb step, done;
    void *ud;
    int forgotten;
    int waiting; /* a cache answer is due */
    int stopping;
    /* the tag being checked: cached (with its manifest) and stale before the request? */
    int tag_cached_stale;
    /* a fill being waited for */
    struct body_source src;
    int reading;
    uint64_t fill_size;
};

struct prefetch {
    uv_loop_t *loop;
    const struct config *cfg;
    struct cache *cache;
    struct upstream_client *up;
    struct db *db; /* where runs are recorded (NULL: nowhere) */
    struct pins *pins;
    uint64_t *due_ms; /* per reference of pins: when it next runs (0: not a prefetch one) */
    struct prefetch_window window;
    uv_timer_t tick, kick;
    int started, stopped;
    struct run *running, *queue;
    size_t n_queue;
    uint64_t budget_window_ms; /* the start of the window pulls are counted in */
    uint64_t window_pulls;
    struct prefetch_result last;
    int has_last;
};

static void local_minute(uint64_t ms, int *minute, int *second)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    *minute = tm.tm_hour * 60 + tm.tm_min;
    *second = tm.tm_sec;
}

static void budget_window(struct prefetch *p)
{
    int minute, s;
    uint64_t now = clock_wall_ms();
    local_minute(now, &minute, &s);
    uint64_t w = schedule_budget_window(&p->window, p->cfg->prefetch_schedule_ms, now, minute, s);
    if (w != p->budget_window_ms) {
        p->budget_window_ms = w;
        p->window_pulls = 0;
    }
}

/* ---- a run ---- */

static void on_kick(uv_timer_t *t);

/* The next step runs from the loop, never inside the cache's callback. */
static void kick(struct prefetch *p)
{
    if (!p->stopped)
        uv_timer_start(&p->kick, on_kick, 0, 0);
}

static void note_error(struct run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_error(struct run *run, const char *fmt, ...)
{
    char msg[sizeof(run->r.error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    run->r.errors++;
    if (!run->r.error[0])
        snprintf(run->r.error, sizeof(run->r.error), "%s", msg);
    log_warn("prefetch: %s", msg);
}

static void stop_run(struct run *run, const char *outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stop_run(struct run *run, const char *outcome, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->r.stopped, sizeof(run->r.stopped), fmt, ap);
    va_end(ap);
    run->r.outcome = outcome;
    run->stopping = 1;
}

static int queue_item(struct run *run, enum item_kind kind, const struct pin_ref *ref,
                      const char *name, uint64_t size)
{
    char key[1200];
    snprintf(key, sizeof(key), "%d %s/%s %s", kind, ref->upstream, ref->repo, name);
    if (kind == ITEM_MANIFEST || kind == ITEM_BLOB)
        snprintf(key, sizeof(key), "%s %s", ref->upstream, name); /* once per run */
    if (map_get(run->seen, key))
        return 0;
    if (run->n_items >= RUN_ITEMS_MAX)
        return -E2BIG;
    if (run->n_items == run->cap_items) {
        size_t cap = run->cap_items ? run->cap_items * 2 : 32;
        struct item *v = realloc(run->items, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        run->items = v;
        run->cap_items = cap;
    }
    if (map_put(run->seen, key, run) == MAP_NOMEM)
        return -ENOMEM;
    struct item *it = &run->items[run->n_items++];
    it->kind = kind;
    it->ref = ref;
    snprintf(it->name, sizeof(it->name), "%s", name);
    it->size = size;
    return 0;
}

static void report_step(struct run *run)
{
    if (run->step && !run->forgotten)
        run->step(run->ud, &run->r);
}

/* May it spend one pull now? Otherwise the run stops, saying why. */
static int may_pull(struct run *run, struct upstream *u)
{
    struct prefetch *p = run->p;
    const struct config *cfg = p->cfg;
    budget_window(p);
    if (cfg->prefetch_max_pulls && p->window_pulls >= cfg->prefetch_max_pulls) {
        stop_run(run, "budget", "max_pulls_per_window: %llu pulls made in this window",
                 (unsigned long long)p->window_pulls);
        return 0;
    }
    struct cache_upstream_state st;
    cache_upstream_state(p->cache, u, &st);
    if (st.remaining >= 0 && (uint64_t)st.remaining <= cfg->prefetch_reserve) {
        stop_run(run, "budget", "reserve: %s announced ratelimit-remaining %lld (reserve %llu)",
                 upstream_name(u), (long long)st.remaining,
                 (unsigned long long)cfg->prefetch_reserve);
        return 0;
    }
    return 1;
}

static void counted_pull(struct run *run)
{
    run->r.gets++;
    run->p->window_pulls++;
    metrics_prefetch_pull();
}

/* What a manifest reaches: an index's children for the platforms, an image's blobs. */
static void walk_manifest(struct run *run, const struct pin_ref *ref, const char *body,
                          size_t len, const char *type)
{
    struct bundle_desc *d = NULL;
    size_t n = 0;
    int is_index = 0;
    const char *canon = NULL;
    char why[256];
    if (!body || bundle_doc_children(body, len, type, &is_index, &canon, &d, &n, why,
                                     sizeof(why))) {
        if (body)
            note_error(run, "%s/%s: %s", ref->upstream, ref->repo, why);
        return;
    }
    int *keep = calloc(n ? n : 1, sizeof(int));
    if (!keep) {
        free(d);
        note_error(run, "out of memory");
        return;
    }
    if (is_index)
        bundle_select_children(d, n, ref->platforms, ref->n_platforms, keep);
    for (size_t i = 0; i < n; i++) {
        if ((is_index && !keep[i]) || (!is_index && d[i].foreign))
            continue;
        int rc = queue_item(run, is_index ? ITEM_MANIFEST : ITEM_BLOB, ref, d[i].digest,
                            d[i].size);
        if (rc) {
            note_error(run, "%s/%s: too much to fetch in one run", ref->upstream, ref->repo);
            break;
        }
    }
    free(keep);
    free(d);
}

static struct item *current(struct run *run)
{
    return &run->items[run->at - 1];
}

static void on_manifest(void *ud, const struct manifest_answer *a)
{
    struct run *run = ud;
    run->waiting = 0;
    if (run->p->stopped)
        return;
    struct item *it = current(run);
    const struct pin_ref *ref = it->ref;
    if (a->err.status) {
        if (a->err.status == 429)
            stop_run(run, "budget", "%s: 429 %s", ref->upstream, a->err.message);
        else
            note_error(run, "%s/%s:%s: %d %s", ref->upstream, ref->repo, it->name,
                       a->err.status, a->err.message);
        kick(run->p);
        return;
    }
    if (it->kind == ITEM_TAG) {
        if (run->tag_cached_stale)
            run->r.heads++;
        if (a->outcome == OUTCOME_MISS)
            counted_pull(run);
        if (a->outcome == OUTCOME_STALE) {
            stop_run(run, "down", "%s did not answer: %s", ref->upstream,
                     "the cached manifest stays");
            kick(run->p);
            return;
        }
    } else if (a->outcome == OUTCOME_MISS) {
        counted_pull(run);
    }
    walk_manifest(run, ref, a->body, a->size, a->media_type);
    kick(run->p);
}

static int add_tag(void *ud, const char *elem, size_t len)
{
    struct run *run = ud;
    const struct pin_ref *ref = current(run)->ref;
    char tag[REF_TAG_MAX + 1];
    if (len < 3 || len - 2 > REF_TAG_MAX || elem[0] != '"' || elem[len - 1] != '"' ||
        !ref_tag_valid(elem + 1, len - 2))
        return 0;
    memcpy(tag, elem + 1, len - 2);
    tag[len - 2] = '\0';
    if (fnmatch(ref->tag, tag, 0) == 0 && queue_item(run, ITEM_TAG, ref, tag, 0))
        return 1;
    return 0;
}

static void on_tags(void *ud, const struct tags_answer *a)
{
    struct run *run = ud;
    run->waiting = 0;
    if (run->p->stopped)
        return;
    const struct pin_ref *ref = current(run)->ref;
    const char *v;
    size_t vl;
    if (a->err.status)
        note_error(run, "%s/%s: tags list: %d %s", ref->upstream, ref->repo, a->err.status,
                   a->err.message);
    else if (json_get_raw(a->body, a->len, "tags", &v, &vl) == 0 && vl && v[0] == '[')
        json_each_element(v, vl, add_tag, run);
    kick(run->p);
}

static void fill_check(struct run *run)
{
    int failed = 0;
    uint64_t readable = run->src.readable(run->src.ctx, &failed);
    if (!failed && readable < run->fill_size)
        return;
    run->reading = 0;
    run->src.release(run->src.ctx);
    struct item *it = current(run);
    if (failed) {
        note_error(run, "%s/%s: blob %s failed", it->ref->upstream, it->ref->repo, it->name);
    } else {
        run->r.blobs++;
        run->r.bytes += run->fill_size;
        metrics_prefetch_bytes(run->fill_size);
    }
    kick(run->p);
}

static void on_fill_wake(void *ud)
{
    struct run *run = ud;
    if (run->reading)
        fill_check(run);
}

static void on_blob(void *ud, const struct blob_answer *a)
{
    struct run *run = ud;
    run->waiting = 0;
    held_fd_drop(a->file); /* stored already */
    if (run->p->stopped) {
        if (a->fill)
            cache_fill_release(a->fill);
        return;
    }
    struct item *it = current(run);
    if (a->err.status) {
        if (a->err.status == 429)
            stop_run(run, "budget", "%s: 429 %s", it->ref->upstream, a->err.message);
        else
            note_error(run, "%s/%s: blob %s: %d %s", it->ref->upstream, it->ref->repo,
                       it->name, a->err.status, a->err.message);
        kick(run->p);
        return;
    }
    if (!a->fill) {
        kick(run->p);
        return;
    }
    run->fill_size = a->size ? a->size : it->size;
    run->reading = 1;
    cache_fill_source(a->fill, 0, run->fill_size, on_fill_wake, run, &run->src);
    if (!run->src.ctx) {
        run->reading = 0;
        note_error(run, "out of memory");
        kick(run->p);
        return;
    }
    fill_check(run);
}

static void run_finish(struct run *run);

/* Takes the next item; one cache request at a time. */
static void run_step(struct run *run)
{
    struct prefetch *p = run->p;
    if (run->waiting || run->reading)
        return;
    if (run->stopping || run->at == run->n_items) {
        run_finish(run);
        return;
    }
    struct item *it = &run->items[run->at++];
    const struct pin_ref *ref = it->ref;
    struct upstream *u = upstream_find(p->up, ref->upstream);
    if (!u) {
        note_error(run, "%s: no such upstream", ref->upstream);
        kick(p);
        return;
    }
    struct cache_upstream_state st;
    cache_upstream_state(p->cache, u, &st);
    if (st.down) {
        stop_run(run, "down", "upstream %s is down", ref->upstream);
        kick(p);
        return;
    }
    if (st.backoff) {
        stop_run(run, "budget", "upstream %s asked to wait (429 Retry-After)", ref->upstream);
        kick(p);
        return;
    }
    snprintf(run->r.current, sizeof(run->r.current), "%s/%s%s%s", ref->upstream, ref->repo,
             it->kind == ITEM_TAG || it->kind == ITEM_GLOB ? ":" : "@",
             it->kind == ITEM_GLOB ? ref->tag : it->name);
    report_step(run);
    run->waiting = 1;
    uint64_t validated = 0;
    switch (it->kind) {
    case ITEM_GLOB:
        cache_tags(p->cache, u, ref->repo, NULL, on_tags, run);
        return;
    case ITEM_TAG:
        if (!may_pull(run, u)) {
            run->waiting = 0;
            kick(p);
            return;
        }
        run->r.tags++;
        run->tag_cached_stale =
            cache_tag_cached(p->cache, u, ref->repo, it->name, &validated) &&
            clock_wall_ms() - validated >= p->cfg->revalidate_after_ms;
        cache_manifest(p->cache, u, ref->repo, it->name, NULL, 0, on_manifest, run);
        return;
    case ITEM_MANIFEST:
        if (!cache_has_manifest(p->cache, it->name) && !may_pull(run, u)) {
            run->waiting = 0;
            kick(p);
            return;
        }
        cache_manifest(p->cache, u, ref->repo, it->name, NULL, 0, on_manifest, run);
        return;
    case ITEM_BLOB:
        cache_blob(p->cache, u, ref->repo, it->name, 0, on_blob, run);
        return;
    }
}

static void run_free(struct run *run)
{
    map_free(run->seen);
    free(run->items);
    free(run->list);
    if (run->owns_refs)
        free(run->refs);
    free(run);
}

static void start_next(struct prefetch *p);

static void record_work(struct db *d, void *ud)
{
    if (db_add_prefetch_run(d, ud))
        log_warn("prefetch: the run could not be recorded in the index");
    free(ud); /* here: a call queued at shutdown is run by db_close, which calls no done */
}

/* The run's record, written through the index's queue (never on the loop). */
static void record(struct prefetch *p, const struct run *run)
{
    const struct prefetch_result *r = &run->r;
    struct db_prefetch_run *rec;
    if (!p->db || !(rec = calloc(1, sizeof(*rec))))
        return;
    rec->started_ms = r->started_ms;
    rec->finished_ms = r->finished_ms;
    snprintf(rec->trigger, sizeof(rec->trigger), "%s", r->trigger);
    for (size_t i = 0, at = 0; i < run->n_list; i++) {
        const char *u = run->list[i]->upstream;
        size_t l = strlen(u);
        int dup = 0;
        for (size_t k = 0; k < i && !dup; k++)
            dup = strcmp(run->list[k]->upstream, u) == 0;
        if (dup || at + l + 2 > sizeof(rec->upstreams))
            continue;
        if (at)
            rec->upstreams[at++] = ',';
        memcpy(rec->upstreams + at, u, l + 1);
        at += l;
    }
    rec->references = r->references;
    rec->tags = r->tags;
    rec->heads = r->heads;
    rec->gets = r->gets;
    rec->blobs = r->blobs;
    rec->bytes = r->bytes;
    rec->errors = r->errors;
    snprintf(rec->outcome, sizeof(rec->outcome), "%s", r->outcome);
    snprintf(rec->stopped, sizeof(rec->stopped), "%s", r->stopped);
    snprintf(rec->error, sizeof(rec->error), "%s", r->error);
    if (db_call(p->db, record_work, NULL, rec))
        free(rec);
}

static void run_finish(struct run *run)
{
    struct prefetch *p = run->p;
    struct prefetch_result *r = &run->r;
    r->finished_ms = clock_wall_ms();
    r->current[0] = '\0';
    if (!r->outcome)
        r->outcome = r->errors ? "error" : "ok";
    char b[32];
    log_info("prefetch (%s): %u references, %u tags checked, %u HEADs, %u GETs, %u blobs (%s), "
             "%u errors; %s%s%s",
             r->trigger, r->references, r->tags, r->heads, r->gets, r->blobs,
             format_size(r->bytes, b, sizeof(b)), r->errors, r->outcome,
             r->stopped[0] ? ": stopped, " : "", r->stopped);
    metrics_prefetch_run(r->outcome, r->finished_ms);
    record(p, run);
    p->last = *r;
    p->has_last = 1;
    p->running = NULL;
    if (run->done && !run->forgotten)
        run->done(run->ud, r);
    run_free(run);
    start_next(p);
}

static struct run *run_new(struct prefetch *p, const char *trigger)
{
    struct run *run = calloc(1, sizeof(*run));
    if (!run || !(run->seen = map_new())) {
        free(run);
        return NULL;
    }
    run->p = p;
    run->r.trigger = trigger;
    return run;
}

/* Queues the run's references: a glob's tags list first, a tag, or a digest. */
static int run_queue_refs(struct run *run)
{
    run->r.references = (unsigned)run->n_list;
    for (size_t i = 0; i < run->n_list; i++) {
        const struct pin_ref *ref = run->list[i];
        int rc = ref->digest[0] ? queue_item(run, ITEM_MANIFEST, ref, ref->digest, 0)
                 : ref->glob    ? queue_item(run, ITEM_GLOB, ref, ref->tag, 0)
                                : queue_item(run, ITEM_TAG, ref, ref->tag, 0);
        if (rc)
            return rc;
    }
    return 0;
}

static void start_next(struct prefetch *p)
{
    if (p->running || !p->queue || p->stopped)
        return;
    struct run *run = p->queue;
    p->queue = run->next;
    p->n_queue--;
    p->running = run;
    run->r.started_ms = clock_wall_ms();
    if (run_queue_refs(run))
        stop_run(run, "error", "out of memory");
    kick(p);
}

static void enqueue(struct prefetch *p, struct run *run)
{
    struct run **at = &p->queue;
    while (*at)
        at = &(*at)->next;
    *at = run;
    p->n_queue++;
    start_next(p);
}

static void on_kick(uv_timer_t *t)
{
    struct prefetch *p = t->data;
    if (p->running)
        run_step(p->running);
}

/* ---- the schedule ---- */

static void on_tick(uv_timer_t *t)
{
    struct prefetch *p = t->data;
    if (p->running || p->queue)
        return;
    uint64_t now = clock_wall_ms();
    size_t n = pins_count(p->pins), due = 0;
    for (size_t i = 0; i < n; i++)
        due += p->due_ms[i] && p->due_ms[i] <= now;
    if (!due)
        return;
    struct run *run = run_new(p, "scheduled");
    if (!run || !(run->list = calloc(due, sizeof(*run->list)))) {
        if (run)
            run_free(run);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!p->due_ms[i] || p->due_ms[i] > now)
            continue;
        const struct pin_ref *ref = pins_ref(p->pins, i);
        run->list[run->n_list++] = ref;
        int minute, s;
        uint64_t next = p->due_ms[i] + p->cfg->prefetch_schedule_ms;
        if (next <= now) /* late (a long run, a suspended machine): from now on */
            next = now + p->cfg->prefetch_schedule_ms;
        local_minute(next, &minute, &s);
        p->due_ms[i] = schedule_next(&p->window, next, minute, s, ref->text);
    }
    enqueue(p, run);
}

int prefetch_new(uv_loop_t *loop, const struct config *cfg, struct cache *cache,
                 struct upstream_client *up, struct db *db, struct prefetch **out)
{
    char err[1024];
    struct prefetch *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->loop = loop;
    p->cfg = cfg;
    p->cache = cache;
    p->up = up;
    p->db = db;
    p->window.from = cfg->prefetch_window_from;
    p->window.to = cfg->prefetch_window_to;
    int rc = pins_new(cfg, &p->pins, err, sizeof(err));
    if (rc) {
        log_error("%s", err);
        free(p);
        return rc;
    }
    size_t n = pins_count(p->pins);
    if (!(p->due_ms = calloc(n ? n : 1, sizeof(uint64_t)))) {
        pins_free(p->pins);
        free(p);
        return -ENOMEM;
    }
    uv_timer_init(loop, &p->tick);
    uv_timer_init(loop, &p->kick);
    p->tick.data = p->kick.data = p;
    p->started = 1;
    *out = p;
    return 0;
}

void prefetch_start(struct prefetch *p)
{
    uint64_t now = clock_wall_ms();
    size_t n = pins_count(p->pins), listed = 0;
    for (size_t i = 0; i < n; i++) {
        const struct pin_ref *ref = pins_ref(p->pins, i);
        if (!ref->prefetch)
            continue;
        uint64_t span = p->cfg->prefetch_schedule_ms < PREFETCH_FIRST_SPREAD_MS
                            ? p->cfg->prefetch_schedule_ms
                            : PREFETCH_FIRST_SPREAD_MS;
        uint64_t first = now + 1 + schedule_spread(ref->text, span);
        int minute, s;
        local_minute(first, &minute, &s);
        p->due_ms[i] = schedule_next(&p->window, first, minute, s, ref->text);
        listed++;
    }
    log_debug("prefetch: %zu references listed", listed);
    if (listed)
        uv_timer_start(&p->tick, on_tick, TICK_MS, TICK_MS);
}

int prefetch_run(struct prefetch *p, char *const *refs, size_t n, prefetch_cb step,
                 prefetch_cb done, void *ud, char *err, size_t errlen)
{
    if (p->n_queue >= PREFETCH_QUEUE_MAX) {
        snprintf(err, errlen, "%zu prefetch runs are waiting already", p->n_queue);
        return -EBUSY;
    }
    struct run *run = run_new(p, "command");
    if (!run || !(run->refs = calloc(n ? n : 1, sizeof(*run->refs))) ||
        !(run->list = calloc(n ? n : 1, sizeof(*run->list)))) {
        if (run)
            free(run->refs), run_free(run);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    run->owns_refs = 1;
    for (size_t i = 0; i < n; i++) {
        /* the platforms of the prefetch list apply */
        if (pins_parse_ref(p->cfg, refs[i], 1, &run->refs[i], err, errlen)) {
            run_free(run);
            return -EINVAL;
        }
        run->refs[i].text = NULL; /* refs[] is the caller's */
        run->list[run->n_list++] = &run->refs[i];
    }
    run->step = step;
    run->done = done;
    run->ud = ud;
    enqueue(p, run);
    return 0;
}

void prefetch_forget(struct prefetch *p, void *ud)
{
    if (p->running && p->running->ud == ud)
        p->running->forgotten = 1;
    for (struct run **at = &p->queue; *at;) {
        struct run *run = *at;
        if (run->ud == ud) {
            *at = run->next;
            p->n_queue--;
            run_free(run);
        } else {
            at = &run->next;
        }
    }
}

int prefetch_last(const struct prefetch *p, struct prefetch_result *out)
{
    if (!p || !p->has_last)
        return -ENOENT;
    *out = p->last;
    return 0;
}

void prefetch_stop(struct prefetch *p)
{
    if (!p || p->stopped)
        return;
    p->stopped = 1;
    uv_timer_stop(&p->tick);
    uv_timer_stop(&p->kick);
    uv_close((uv_handle_t *)&p->tick, NULL);
    uv_close((uv_handle_t *)&p->kick, NULL);
    if (p->running && p->running->reading) {
        p->running->reading = 0;
        p->running->src.release(p->running->src.ctx);
    }
}

void prefetch_free(struct prefetch *p)
{
    if (!p)
        return;
    if (p->running)
        run_free(p->running);
    while (p->queue) {
        struct run *run = p->queue;
        p->queue = run->next;
        run_free(run);
    }
    free(p->due_ms);
    pins_free(p->pins);
    free(p);
}
