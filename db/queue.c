/* SPDX-License-Identifier: Apache-2.0 */
/* The write queue: changes written in one transaction per batch on the thread pool, kept in
 * order while the database refuses them for now; coalesced access times, references,
 * counters and pull budgets flushed every DB_FLUSH_MS. */
#include "db/impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

void db__op_free(struct op *o)
{
    free(o->a);
    free(o->b);
    free(o->c);
    free(o->d);
    free(o->e);
    free(o);
}

static int bind_run(sqlite3 *s, struct db__stmts *c, const char *sql, const struct op *o,
                    int ntext, int nint)
{
    sqlite3_stmt *st = db__stmt(c, s, sql);
    if (!st)
        return -EIO;
    const char *texts[5] = {o->a, o->b, o->c, o->d, o->e};
    int i = 1;
    for (int k = 0; k < ntext; k++)
        sqlite3_bind_text(st, i++, texts[k], -1, SQLITE_STATIC);
    if (nint > 0)
        sqlite3_bind_int64(st, i++, (sqlite3_int64)o->n1);
    if (nint > 1)
        sqlite3_bind_int64(st, i++, (sqlite3_int64)o->n2);
    int r = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    sqlite3_reset(st);
    return r;
}

static const char put_ratelimit_sql[] =
    "INSERT INTO ratelimits (upstream, lim, remaining, window_s, source,"
    " seen_ms, last_429_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(upstream) DO UPDATE SET"
    " lim = coalesce(excluded.lim, lim),"
    " remaining = coalesce(excluded.remaining, remaining),"
    " window_s = coalesce(excluded.window_s, window_s),"
    " source = coalesce(excluded.source, source),"
    " seen_ms = excluded.seen_ms,"
    " last_429_ms = coalesce(excluded.last_429_ms, last_429_ms)";

static int put_ratelimit(sqlite3 *s, struct db__stmts *c, const struct op *o)
{
    sqlite3_stmt *st = db__stmt(c, s, put_ratelimit_sql);
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, o->a, -1, SQLITE_STATIC);
    for (int i = 0; i < 3; i++)
        if (o->rl[i] >= 0)
            sqlite3_bind_int64(st, 2 + i, o->rl[i]);
    if (o->b)
        sqlite3_bind_text(st, 5, o->b, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, o->rl[3]);
    if (o->rl[4] > 0)
        sqlite3_bind_int64(st, 7, o->rl[4]);
    int r = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    sqlite3_reset(st);
    return r;
}

int db__apply_op(sqlite3 *s, struct db__stmts *c, const struct op *o)
{
    switch (o->kind) {
    case OP_WRITE:
        return bind_run(s, c, o->w->sql, o, o->w->ntext, o->w->nint);
    case OP_RATELIMIT:
        return put_ratelimit(s, c, o);
    case OP_CALL:
        return 0; /* run by write_batch itself */
    }
    return -EINVAL;
}

/* Errors after which the same writes may well succeed later. */
static int refused_for_now(sqlite3 *s)
{
    switch (sqlite3_errcode(s) & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
        return 1;
    default:
        return 0;
    }
}

/* Writes the changes in [from, to) in one transaction. When the database refuses them for now,
 * nothing is written and they are marked to be kept; a change that fails for good (a bug) is
 * logged and skipped. */
static void write_segment(struct db *d, struct op *from, struct op *to)
{
    sqlite3 *s = d->sql;
    struct op *o;
    if (from == to)
        return;
    struct db__stmts stmts = {0}; /* one prepare per statement per batch, not per row */
    int rc = sqlite3_exec(s, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (o = from; rc == SQLITE_OK && o != to; o = o->next)
        if (o->kind != OP_CALL && db__apply_op(s, &stmts, o)) {
            if (refused_for_now(s)) {
                rc = SQLITE_ERROR;
                break;
            }
            log_warn("database %s: write failed: %s", d->path, sqlite3_errmsg(s));
        }
    d->batch_prepares = stmts.prepared;
    db__stmts_done(&stmts);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s, "COMMIT", NULL, NULL, NULL);
    d->batch_failed = rc != SQLITE_OK;
    if (rc != SQLITE_OK)
        snprintf(d->batch_err, sizeof(d->batch_err), "%s", sqlite3_errmsg(s));
    if (rc == SQLITE_OK) {
        if (d->refusing)
            log_info("database %s: writing again", d->path);
        d->refusing = 0;
        return;
    }
    int again = refused_for_now(s);
    if (!d->refusing || !again)
        log_warn("database %s: cannot write (%s); %s", d->path, sqlite3_errmsg(s),
                 again ? "keeping the changes, retrying with every flush" : "changes lost");
    sqlite3_exec(s, "ROLLBACK", NULL, NULL, NULL);
    d->refusing = again;
    for (o = from; again && o != to; o = o->next)
        o->keep = o->kind != OP_CALL;
}

static void write_batch(struct db *d, struct op *batch)
{
    struct op *from = batch;
    for (struct op *o = batch; o; o = o->next) {
        if (o->kind != OP_CALL)
            continue;
        /* a maintenance call sees every write queued before it */
        write_segment(d, from, o);
        o->fn(d, o->ud);
        from = o->next;
    }
    write_segment(d, from, NULL);
}

static void calls_done(struct op *batch)
{
    for (struct op *o = batch; o; o = o->next)
        if (o->kind == OP_CALL && o->done)
            o->done(o->ud);
}

static void free_ops(struct op *o)
{
    while (o) {
        struct op *next = o->next;
        db__op_free(o);
        o = next;
    }
}

/* After a batch: what the database refused for now joins the kept changes (up to
 * DB_KEEP_MAX), the rest is freed. */
static void keep_or_free(struct db *d, struct op *o)
{
    size_t dropped = 0;
    while (o) {
        struct op *next = o->next;
        if (o->keep && d->n_kept < DB_KEEP_MAX) {
            o->keep = 0;
            o->next = NULL;
            *d->kept_tail = o;
            d->kept_tail = &o->next;
            d->n_kept++;
        } else {
            dropped += o->keep;
            db__op_free(o);
            d->n_pending--;
        }
        o = next;
    }
    if (dropped)
        log_error("database %s: %zu changes dropped (over %d kept while it refuses writes); "
                  "the next start reconciles the index with the store",
                  d->path, dropped, DB_KEEP_MAX);
}

/* Puts the kept changes back in front of the queue. */
static void requeue_kept(struct db *d)
{
    if (!d->kept)
        return;
    *d->kept_tail = d->queue;
    if (!d->queue)
        d->queue_tail = d->kept_tail;
    d->queue = d->kept;
    d->kept = NULL;
    d->kept_tail = &d->kept;
    d->n_kept = 0;
}

static void kick(struct db *d);
static void on_flush_timer(uv_timer_t *t);
static void flush_coalesced(struct db *d);

static void work_batch(uv_work_t *w)
{
    struct db *d = w->data;
    write_batch(d, d->batch);
}

/* On the loop, once a batch is done: what db_write_status reports. */
static void note_batch_result(struct db *d)
{
    if (d->batch_failed < 0)
        return; /* the batch wrote nothing */
    d->write_failed = d->batch_failed;
    memcpy(d->write_err, d->batch_err, sizeof(d->write_err));
    d->batch_failed = -1;
}

static void after_batch(uv_work_t *w, int status)
{
    (void)status;
    struct db *d = w->data;
    struct op *batch = d->batch;
    d->batch = NULL;
    d->busy = 0;
    note_batch_result(d);
    calls_done(batch);
    keep_or_free(d, batch);
    kick(d);
}

static void kick(struct db *d)
{
    if (d->busy || !d->queue || !d->loop || d->kept)
        return;
    d->batch = d->queue;
    d->queue = NULL;
    d->queue_tail = &d->queue;
    d->busy = 1;
    d->work.data = d;
    if (uv_queue_work(d->loop, &d->work, work_batch, after_batch)) {
        struct op *batch = d->batch;
        write_batch(d, batch);
        d->batch = NULL;
        d->busy = 0;
        note_batch_result(d);
        calls_done(batch);
        keep_or_free(d, batch);
    }
}

void db_attach(struct db *d, uv_loop_t *loop)
{
    d->loop = loop;
    uv_timer_init(loop, &d->flush_timer);
    d->flush_timer.data = d;
    uv_timer_start(&d->flush_timer, on_flush_timer, DB_FLUSH_MS, DB_FLUSH_MS);
    d->timer_running = 1;
    kick(d);
}

int db_write_status(const struct db *d, char *msg, size_t len)
{
    if (!d->write_failed)
        return 0;
    snprintf(msg, len, "%s: cannot write: %s%s", d->path, d->write_err,
             d->n_kept ? " (changes kept, retried with every flush)" : "");
    return -EIO;
}

void db__enqueue(struct db *d, struct op *o)
{
    *d->queue_tail = o;
    d->queue_tail = &o->next;
    d->n_pending++;
    kick(d);
}

struct op *db__op_new(const struct db_write *w, const char *a, const char *b, const char *c,
                       const char *dd, const char *e)
{
    struct op *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->kind = w ? OP_WRITE : OP_RATELIMIT;
    o->w = w;
    const char *src[5] = {a, b, c, dd, e};
    char **dst[5] = {&o->a, &o->b, &o->c, &o->d, &o->e};
    for (int i = 0; i < 5; i++)
        if (src[i] && !(*dst[i] = strdup(src[i]))) {
            db__op_free(o);
            return NULL;
        }
    return o;
}

int db_call(struct db *d, void (*fn)(struct db *d, void *ud), void (*done)(void *ud), void *ud)
{
    struct op *o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    o->kind = OP_CALL;
    o->fn = fn;
    o->done = done;
    o->ud = ud;
    flush_coalesced(d);
    db__enqueue(d, o);
    return 0;
}

void db_touch(struct db *d, const char *digest, uint64_t now_ms)
{
    uint64_t *t = map_get(d->touches, digest);
    if (!t) {
        t = malloc(sizeof(*t));
        if (!t)
            return;
        if (map_put(d->touches, digest, t) == MAP_NOMEM) {
            free(t);
            return;
        }
    }
    *t = now_ms;
}

void db_ref(struct db *d, const char *upstream, const char *repo, const char *digest)
{
    char key[800];
    snprintf(key, sizeof(key), "%s\x1f%s\x1f%s", upstream, repo, digest);
    if (!map_get(d->refs, key))
        map_put(d->refs, key, (void *)1);
}

void db_set_counter(struct db *d, const char *name, uint64_t value)
{
    uint64_t *v = map_get(d->counters, name);
    if (!v) {
        v = malloc(sizeof(*v));
        if (!v)
            return;
        if (map_put(d->counters, name, v) == MAP_NOMEM) {
            free(v);
            return;
        }
    }
    *v = value;
}

void db_set_ratelimit(struct db *d, const struct db_ratelimit *rl)
{
    struct op *o = map_get(d->ratelimits, rl->upstream);
    if (!o) {
        o = db__op_new(NULL, rl->upstream, NULL, NULL, NULL, NULL);
        if (!o)
            return;
        o->rl[0] = o->rl[1] = o->rl[2] = -1;
        if (map_put(d->ratelimits, rl->upstream, o) == MAP_NOMEM) {
            db__op_free(o);
            return;
        }
    }
    /* what this response did not say keeps what an earlier one said */
    int64_t v[3] = {rl->limit, rl->remaining, rl->window_s};
    for (int i = 0; i < 3; i++)
        if (v[i] >= 0)
            o->rl[i] = v[i];
    if (rl->source && (!o->b || strcmp(o->b, rl->source) != 0)) {
        char *src = strdup(rl->source);
        if (src) {
            free(o->b);
            o->b = src;
        }
    }
    o->rl[3] = (int64_t)rl->seen_ms;
    if (rl->last_429_ms)
        o->rl[4] = (int64_t)rl->last_429_ms;
}

static int queue_ratelimit(const char *key, void *value, void *ud)
{
    (void)key;
    struct db *d = ud;
    struct op *o = value;
    *d->queue_tail = o;
    d->queue_tail = &o->next;
    d->n_pending++;
    return 0;
}

static int queue_touch(const char *key, void *value, void *ud)
{
    struct db *d = ud;
    struct op *o = db__op_new(&db__w_touch, key, NULL, NULL, NULL, NULL);
    if (o) {
        o->n1 = *(uint64_t *)value;
        *d->queue_tail = o;
        d->queue_tail = &o->next;
        d->n_pending++;
    }
    free(value);
    return 0;
}

static int queue_ref(const char *key, void *value, void *ud)
{
    (void)value;
    struct db *d = ud;
    char buf[800], *a = buf, *b, *c;
    snprintf(buf, sizeof(buf), "%s", key);
    if (!(b = strchr(a, '\x1f')) || !(c = strchr(b + 1, '\x1f')))
        return 0;
    *b++ = '\0';
    *c++ = '\0';
    struct op *o = db__op_new(&db__w_ref, a, b, c, NULL, NULL);
    if (o) {
        *d->queue_tail = o;
        d->queue_tail = &o->next;
        d->n_pending++;
    }
    return 0;
}

static int queue_counter(const char *key, void *value, void *ud)
{
    struct db *d = ud;
    struct op *o = db__op_new(&db__w_counter, key, NULL, NULL, NULL, NULL);
    if (o) {
        o->n1 = *(uint64_t *)value;
        *d->queue_tail = o;
        d->queue_tail = &o->next;
        d->n_pending++;
    }
    return 0;
}

/* Moves what was coalesced since the last flush into the write queue. */
static void flush_coalesced(struct db *d)
{
    if (map_count(d->touches)) {
        map_each(d->touches, queue_touch, d);
        map_free(d->touches);
        d->touches = map_new();
    }
    if (map_count(d->refs)) {
        map_each(d->refs, queue_ref, d);
        map_free(d->refs);
        d->refs = map_new();
    }
    map_each(d->counters, queue_counter, d);
    if (map_count(d->ratelimits)) {
        map_each(d->ratelimits, queue_ratelimit, d); /* the ops move to the queue */
        map_free(d->ratelimits);
        d->ratelimits = map_new();
    }
}

static void on_flush_timer(uv_timer_t *t)
{
    struct db *d = t->data;
    if (!d->busy)
        requeue_kept(d);
    flush_coalesced(d);
    kick(d);
}

void db_detach(struct db *d)
{
    if (!d->timer_running)
        return;
    d->timer_running = 0;
    uv_timer_stop(&d->flush_timer);
    uv_close((uv_handle_t *)&d->flush_timer, NULL);
    flush_coalesced(d);
    kick(d);
}

static int free_value(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    free(value);
    return 0;
}

size_t db_pending(const struct db *d)
{
    return d->n_pending + map_count(d->touches) + map_count(d->refs) + map_count(d->ratelimits);
}

void db_close(struct db *d)
{
    db_close_lost(d);
}

size_t db_close_lost(struct db *d)
{
    if (!d)
        return 0;
    flush_coalesced(d);
    /* a batch still on the thread pool was finished by uv_run before we get here */
    requeue_kept(d);
    if (d->queue)
        write_batch(d, d->queue);
    size_t lost = 0;
    for (struct op *o = d->queue; o; o = o->next)
        lost += o->keep;
    if (lost)
        log_error("database %s: %zu changes could not be written before exit; the next start "
                  "reconciles the index with the store",
                  d->path, lost);
    free_ops(d->queue);
    map_each(d->counters, free_value, NULL);
    db__free(d); /* ratelimits was emptied by the flush above */
    return lost;
}

/* ---- maintenance ---- */
