#include "db/db.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/map.h"

enum op_kind {
    OP_PUT_TAG, OP_DEL_TAG, OP_PUT_MANIFEST, OP_PUT_BLOB, OP_TOUCH, OP_REF, OP_COUNTER, OP_CALL,
    OP_HOSTED_TAG, OP_HOSTED_UNTAG, OP_HOSTED_BLOB, OP_HOSTED_UNREF, OP_HOSTED_REF,
    OP_RATELIMIT, OP_HOSTED_REFERRER, OP_HOSTED_UNREFERRER
};

struct op {
    struct op *next;
    enum op_kind kind;
    char *a, *b, *c, *d, *e; /* per kind: see apply_op */
    uint64_t n1, n2;
    /* OP_RATELIMIT (a: upstream, b: source): limit, remaining, window_s, seen_ms, last_429_ms;
     * -1 (0 for the times) is unknown */
    int64_t rl[5];
    int keep; /* refused for now by the database: written again with the next flush */
    /* OP_CALL */
    void (*fn)(struct db *d, void *ud);
    void (*done)(void *ud);
    void *ud;
};

#define DB_BUSY_TIMEOUT_MS 5000
#define DB_KEEP_MAX 100000 /* changes kept while the database refuses writes */

struct db {
    sqlite3 *sql;
    char *path;
    uv_loop_t *loop;
    struct op *queue, **queue_tail; /* waiting for the next batch */
    struct op *batch;               /* being written on the thread pool */
    uv_work_t work;
    int busy;
    /* Changes the database refused for now (locked by another process, disk full, I/O
     * error), oldest first. While there are any, only the flush timer starts a batch, with
     * them in front, so that changes are written in the order they were made. */
    struct op *kept, **kept_tail;
    size_t n_kept;
    int refusing; /* the last batch was refused (set on the thread pool, one batch at a time) */
    /* coalesced until the next flush: digest -> uint64_t last access; reference keys */
    struct map *touches, *refs;
    struct map *counters; /* name -> uint64_t */
    struct map *ratelimits; /* upstream -> struct op (OP_RATELIMIT), the latest seen */
    uv_timer_t flush_timer;
    int timer_running;
};



/* Schema migrations, applied in order; migrations[i] takes user_version i to i + 1. */
static const char *const migrations[] = {
    /* 1: the index of issue-free pulls */
    "CREATE TABLE IF NOT EXISTS blobs ("
    "  digest TEXT PRIMARY KEY, size INTEGER NOT NULL, media_type TEXT,"
    "  first_cached_ms INTEGER NOT NULL, last_access_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS manifests ("
    "  digest TEXT PRIMARY KEY, media_type TEXT NOT NULL, size INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tags ("
    "  upstream TEXT NOT NULL, repo TEXT NOT NULL, tag TEXT NOT NULL,"
    "  digest TEXT NOT NULL, media_type TEXT NOT NULL, validated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (upstream, repo, tag));",
    /* 2: lifecycle: which repository referenced which blob, GC history, counters */
    "CREATE TABLE IF NOT EXISTS repo_blobs ("
    "  upstream TEXT NOT NULL, repo TEXT NOT NULL, digest TEXT NOT NULL,"
    "  PRIMARY KEY (upstream, repo, digest)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS repo_blobs_by_digest ON repo_blobs (digest);"
    "CREATE INDEX IF NOT EXISTS blobs_by_access ON blobs (last_access_ms);"
    "CREATE INDEX IF NOT EXISTS tags_by_digest ON tags (digest);"
    "CREATE TABLE IF NOT EXISTS gc_runs ("
    "  started_ms INTEGER NOT NULL, duration_ms INTEGER NOT NULL, dry_run INTEGER NOT NULL,"
    "  evicted_count INTEGER NOT NULL, evicted_bytes INTEGER NOT NULL, reason TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    /* manifests are files in the store like any blob: give them blob rows too */
    "INSERT OR IGNORE INTO blobs (digest, size, media_type, first_cached_ms, last_access_ms)"
    "  SELECT digest, size, media_type, CAST(strftime('%s','now') AS INTEGER) * 1000,"
    "         CAST(strftime('%s','now') AS INTEGER) * 1000 FROM manifests;",
    /* 3: hosted repositories: their tags and the content they hold (never evicted by GC) */
    "CREATE TABLE IF NOT EXISTS hosted_tags ("
    "  repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL,"
    "  PRIMARY KEY (repo, tag));"
    "CREATE TABLE IF NOT EXISTS hosted_blobs ("
    "  repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT,"
    "  PRIMARY KEY (repo, digest)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS hosted_blobs_by_digest ON hosted_blobs (digest);"
    "CREATE TABLE IF NOT EXISTS hosted_refs ("
    "  manifest TEXT NOT NULL, digest TEXT NOT NULL,"
    "  PRIMARY KEY (manifest, digest)) WITHOUT ROWID;",
    /* 4: the pull budget each upstream last announced (NULL: never said) */
    "CREATE TABLE IF NOT EXISTS ratelimits ("
    "  upstream TEXT PRIMARY KEY, lim INTEGER, remaining INTEGER, window_s INTEGER,"
    "  source TEXT, seen_ms INTEGER NOT NULL, last_429_ms INTEGER);",
    /* 5: each upstream's health as the mirror last saw it; the referrers index of a proxied
     * subject, kept like a tag: the stored document (a blob) and when it was last validated */
    "CREATE TABLE IF NOT EXISTS upstream_states ("
    "  upstream TEXT PRIMARY KEY, state TEXT NOT NULL, since_ms INTEGER NOT NULL,"
    "  reason TEXT);"
    "CREATE TABLE IF NOT EXISTS referrers ("
    "  upstream TEXT NOT NULL, repo TEXT NOT NULL, subject TEXT NOT NULL,"
    "  digest TEXT NOT NULL, validated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (upstream, repo, subject));"
    "CREATE INDEX IF NOT EXISTS referrers_by_digest ON referrers (digest);",
    /* 6: hosted manifests that name a subject, with their descriptor in a referrers index */
    "CREATE TABLE IF NOT EXISTS hosted_referrers ("
    "  repo TEXT NOT NULL, digest TEXT NOT NULL, subject TEXT NOT NULL,"
    "  artifact_type TEXT NOT NULL, descriptor TEXT NOT NULL,"
    "  PRIMARY KEY (repo, digest)) WITHOUT ROWID;",
};
#define N_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

static int exec(sqlite3 *s, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(s, sql, NULL, NULL, &err) != SQLITE_OK) {
        log_error("database: %s", err ? err : "error");
        sqlite3_free(err);
        return -EIO;
    }
    return 0;
}

static int migrate(sqlite3 *s)
{
    sqlite3_stmt *st;
    int version = 0;
    if (sqlite3_prepare_v2(s, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    if (version > N_MIGRATIONS) {
        log_error("database schema version %d is newer than this regcache understands (%d)",
                  version, N_MIGRATIONS);
        return -EPROTO;
    }
    for (; version < N_MIGRATIONS; version++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", version + 1);
        if (exec(s, "BEGIN IMMEDIATE") || exec(s, migrations[version]) || exec(s, bump) ||
            exec(s, "COMMIT")) {
            exec(s, "ROLLBACK");
            return -EIO;
        }
        if (version > 0)
            log_info("database migrated to schema version %d", version + 1);
    }
    return 0;
}

/* Why the index cannot be used, in words an operator can act on. */
static void open_failed(sqlite3 *s, const char *path, int rc, const char *why)
{
    if (!rc)
        rc = s ? sqlite3_errcode(s) & 0xff : SQLITE_CANTOPEN;
    if (!why)
        why = s ? sqlite3_errmsg(s) : "cannot open";
    if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT)
        log_error("database %s is damaged (%s); not using it. Moving it aside starts an empty "
                  "index: the store's files are re-hashed and adopted, cached tags are fetched "
                  "again, hosted tags are lost",
                  path, why);
    else if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        log_error("database %s is locked by another process (waited %d s): %s", path,
                  DB_BUSY_TIMEOUT_MS / 1000, why);
    else
        log_error("database %s: %s", path, why);
}

/* PRAGMA quick_check: SQLITE_OK when the file is intact, else an error code (the database's
 * own, or SQLITE_CORRUPT with the first problem found in why). */
static int check_intact(sqlite3 *s, char *why, size_t len)
{
    sqlite3_stmt *st;
    why[0] = '\0';
    int rc = sqlite3_prepare_v2(s, "PRAGMA quick_check", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *res = (const char *)sqlite3_column_text(st, 0);
        rc = res && strcmp(res, "ok") == 0 ? SQLITE_OK : SQLITE_CORRUPT;
        if (rc) {
            if (res && strncmp(res, "*** ", 4) == 0 && strchr(res, '\n'))
                res = strchr(res, '\n') + 1; /* past "*** in database main ***" */
            snprintf(why, len, "quick_check: %.*s", (int)strcspn(res ? res : "", "\n"),
                     res ? res : "");
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static void db_free(struct db *d)
{
    sqlite3_close(d->sql);
    map_free(d->touches);
    map_free(d->refs);
    map_free(d->counters);
    map_free(d->ratelimits);
    free(d->path);
    free(d);
}

int db_open(const char *path, struct db **out)
{
    struct db *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->queue_tail = &d->queue;
    d->kept_tail = &d->kept;
    d->touches = map_new();
    d->refs = map_new();
    d->counters = map_new();
    d->ratelimits = map_new();
    d->path = strdup(path);
    if (!d->touches || !d->refs || !d->counters || !d->ratelimits || !d->path) {
        db_free(d);
        return -ENOMEM;
    }
    if (sqlite3_open_v2(path, &d->sql,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        open_failed(d->sql, path, 0, NULL);
        db_free(d);
        return -EIO;
    }
    sqlite3_busy_timeout(d->sql, DB_BUSY_TIMEOUT_MS);
    char why[512];
    int rc = check_intact(d->sql, why, sizeof(why));
    if (rc != SQLITE_OK) {
        open_failed(d->sql, path, rc & 0xff, why[0] ? why : NULL);
        db_free(d);
        return -EIO;
    }
    if (sqlite3_exec(d->sql, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(d->sql, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        open_failed(d->sql, path, 0, NULL);
        db_free(d);
        return -EIO;
    }
    if (migrate(d->sql)) {
        open_failed(d->sql, path, 0, "cannot bring the schema up to date");
        db_free(d);
        return -EIO;
    }
    *out = d;
    return 0;
}

int db_load(struct db *d, void (*tag)(void *ud, const struct db_tag_row *row),
            void (*manifest)(void *ud, const struct db_manifest_row *row), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql, "SELECT digest, media_type, size FROM manifests", -1, &st,
                           NULL) != SQLITE_OK)
        return -EIO;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct db_manifest_row row = {
            (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
            (uint64_t)sqlite3_column_int64(st, 2)};
        if (row.digest && row.media_type)
            manifest(ud, &row);
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT upstream, repo, tag, digest, media_type, validated_ms FROM tags",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct db_tag_row row = {
            (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
            (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3),
            (const char *)sqlite3_column_text(st, 4), (uint64_t)sqlite3_column_int64(st, 5)};
        if (row.upstream && row.repo && row.tag && row.digest && row.media_type)
            tag(ud, &row);
    }
    sqlite3_finalize(st);
    return 0;
}

static void op_free(struct op *o)
{
    free(o->a);
    free(o->b);
    free(o->c);
    free(o->d);
    free(o->e);
    free(o);
}

static int bind_run(sqlite3 *s, const char *sql, const struct op *o, int ntext, int nint)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) != SQLITE_OK)
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
    sqlite3_finalize(st);
    return r;
}

static int put_ratelimit(sqlite3 *s, const struct op *o)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s,
                           "INSERT INTO ratelimits (upstream, lim, remaining, window_s, source,"
                           " seen_ms, last_429_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
                           " ON CONFLICT(upstream) DO UPDATE SET"
                           " lim = coalesce(excluded.lim, lim),"
                           " remaining = coalesce(excluded.remaining, remaining),"
                           " window_s = coalesce(excluded.window_s, window_s),"
                           " source = coalesce(excluded.source, source),"
                           " seen_ms = excluded.seen_ms,"
                           " last_429_ms = coalesce(excluded.last_429_ms, last_429_ms)",
                           -1, &st, NULL) != SQLITE_OK)
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
    sqlite3_finalize(st);
    return r;
}

static int apply_op(sqlite3 *s, const struct op *o)
{
    switch (o->kind) {
    case OP_PUT_TAG:
        return bind_run(s,
                        "INSERT OR REPLACE INTO tags (upstream, repo, tag, digest, media_type,"
                        " validated_ms) VALUES (?, ?, ?, ?, ?, ?)",
                        o, 5, 1);
    case OP_DEL_TAG:
        return bind_run(s, "DELETE FROM tags WHERE upstream = ? AND repo = ? AND tag = ?", o, 3, 0);
    case OP_PUT_MANIFEST:
        return bind_run(s,
                        "INSERT OR REPLACE INTO manifests (digest, media_type, size)"
                        " VALUES (?, ?, ?)",
                        o, 2, 1);
    case OP_PUT_BLOB:
        return bind_run(s,
                        "INSERT INTO blobs (digest, media_type, size, first_cached_ms,"
                        " last_access_ms) VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT(digest) DO"
                        " UPDATE SET last_access_ms = excluded.last_access_ms,"
                        " media_type = coalesce(excluded.media_type, media_type)",
                        o, 2, 2);
    case OP_TOUCH:
        return bind_run(s,
                        "UPDATE blobs SET last_access_ms = max(last_access_ms, ?2)"
                        " WHERE digest = ?1",
                        o, 1, 1);
    case OP_REF:
        return bind_run(s, "INSERT OR IGNORE INTO repo_blobs (upstream, repo, digest)"
                           " VALUES (?, ?, ?)", o, 3, 0);
    case OP_COUNTER:
        return bind_run(s, "INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", o,
                        1, 1);
    case OP_CALL:
        return 0; /* run by write_batch itself */
    case OP_HOSTED_TAG:
        return bind_run(s, "INSERT OR REPLACE INTO hosted_tags (repo, tag, digest, media_type)"
                           " VALUES (?, ?, ?, ?)", o, 4, 0);
    case OP_HOSTED_UNTAG:
        return bind_run(s, "DELETE FROM hosted_tags WHERE repo = ? AND tag = ?", o, 2, 0);
    case OP_HOSTED_BLOB:
        return bind_run(s, "INSERT OR REPLACE INTO hosted_blobs (repo, digest, media_type)"
                           " VALUES (?, ?, ?)", o, 3, 0);
    case OP_HOSTED_UNREF:
        return bind_run(s, "DELETE FROM hosted_blobs WHERE repo = ? AND digest = ?", o, 2, 0);
    case OP_HOSTED_REF:
        return bind_run(s, "INSERT OR IGNORE INTO hosted_refs (manifest, digest) VALUES (?, ?)",
                        o, 2, 0);
    case OP_RATELIMIT:
        return put_ratelimit(s, o);
    case OP_HOSTED_REFERRER:
        return bind_run(s, "INSERT OR REPLACE INTO hosted_referrers (repo, digest, subject,"
                           " artifact_type, descriptor) VALUES (?, ?, ?, ?, ?)", o, 5, 0);
    case OP_HOSTED_UNREFERRER:
        return bind_run(s, "DELETE FROM hosted_referrers WHERE repo = ? AND digest = ?", o, 2, 0);
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
    int rc = sqlite3_exec(s, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (o = from; rc == SQLITE_OK && o != to; o = o->next)
        if (o->kind != OP_CALL && apply_op(s, o)) {
            if (refused_for_now(s)) {
                rc = SQLITE_ERROR;
                break;
            }
            log_warn("database %s: write failed: %s", d->path, sqlite3_errmsg(s));
        }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s, "COMMIT", NULL, NULL, NULL);
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
        op_free(o);
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
            op_free(o);
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
static int run_digest(sqlite3 *s, const char *sql, const char *digest, int *changes);
static int read_blob_rows(sqlite3_stmt *st, struct db_blob **out, size_t *n);
static void flush_coalesced(struct db *d);

static void work_batch(uv_work_t *w)
{
    struct db *d = w->data;
    write_batch(d, d->batch);
}

static void after_batch(uv_work_t *w, int status)
{
    (void)status;
    struct db *d = w->data;
    struct op *batch = d->batch;
    d->batch = NULL;
    d->busy = 0;
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

static void enqueue(struct db *d, struct op *o)
{
    *d->queue_tail = o;
    d->queue_tail = &o->next;
    kick(d);
}

static struct op *op_new(enum op_kind kind, const char *a, const char *b, const char *c,
                         const char *dd, const char *e)
{
    struct op *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->kind = kind;
    const char *src[5] = {a, b, c, dd, e};
    char **dst[5] = {&o->a, &o->b, &o->c, &o->d, &o->e};
    for (int i = 0; i < 5; i++)
        if (src[i] && !(*dst[i] = strdup(src[i]))) {
            op_free(o);
            return NULL;
        }
    return o;
}

void db_put_tag(struct db *d, const struct db_tag_row *row)
{
    struct op *o = op_new(OP_PUT_TAG, row->upstream, row->repo, row->tag, row->digest,
                          row->media_type);
    if (!o)
        return;
    o->n1 = row->validated_ms;
    enqueue(d, o);
}

void db_hosted_tag(struct db *d, const char *repo, const char *tag, const char *digest,
                   const char *media_type)
{
    struct op *o = digest ? op_new(OP_HOSTED_TAG, repo, tag, digest, media_type, NULL)
                          : op_new(OP_HOSTED_UNTAG, repo, tag, NULL, NULL, NULL);
    if (o)
        enqueue(d, o);
}

void db_hosted_blob(struct db *d, const char *repo, const char *digest, const char *media_type,
                    int held)
{
    struct op *o = held ? op_new(OP_HOSTED_BLOB, repo, digest, media_type, NULL, NULL)
                        : op_new(OP_HOSTED_UNREF, repo, digest, NULL, NULL, NULL);
    if (o)
        enqueue(d, o);
}

void db_hosted_ref(struct db *d, const char *manifest, const char *digest)
{
    struct op *o = op_new(OP_HOSTED_REF, manifest, digest, NULL, NULL, NULL);
    if (o)
        enqueue(d, o);
}

void db_hosted_referrer(struct db *d, const char *repo, const char *digest, const char *subject,
                        const char *artifact_type, const char *descriptor)
{
    struct op *o = subject ? op_new(OP_HOSTED_REFERRER, repo, digest, subject, artifact_type,
                                    descriptor)
                           : op_new(OP_HOSTED_UNREFERRER, repo, digest, NULL, NULL, NULL);
    if (o)
        enqueue(d, o);
}

/* Reads (digest, size, first_cached_ms, last_access_ms) rows of st into a malloc'ed array;
 * finalizes st. */
static int read_blob_rows(sqlite3_stmt *st, struct db_blob **out, size_t *n)
{
    size_t cap = 256, count = 0;
    struct db_blob *v = malloc(cap * sizeof(*v));
    int rc = v ? SQLITE_ROW : SQLITE_NOMEM;
    while (v && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *digest = (const char *)sqlite3_column_text(st, 0);
        if (!digest)
            continue;
        if (count == cap) {
            struct db_blob *nv = realloc(v, 2 * cap * sizeof(*v));
            if (!nv) {
                rc = SQLITE_NOMEM;
                break;
            }
            v = nv;
            cap *= 2;
        }
        snprintf(v[count].digest, sizeof(v[count].digest), "%s", digest);
        v[count].size = (uint64_t)sqlite3_column_int64(st, 1);
        v[count].first_cached_ms = (uint64_t)sqlite3_column_int64(st, 2);
        v[count].last_access_ms = (uint64_t)sqlite3_column_int64(st, 3);
        count++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(v);
        return rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
    }
    *out = v;
    *n = count;
    return 0;
}

int db_hosted_unreferenced(struct db *d, uint64_t cutoff_ms, struct db_blob **out, size_t *n)
{
    sqlite3_stmt *st;
    const char *sql =
        "WITH live_m AS (SELECT digest FROM hosted_tags"
        "                UNION SELECT digest FROM hosted_blobs WHERE media_type IS NOT NULL),"
        " live AS (SELECT digest FROM live_m"
        "          UNION SELECT r.digest FROM hosted_refs r JOIN live_m ON r.manifest = live_m.digest)"
        " SELECT DISTINCT hb.digest, coalesce(b.size, 0), coalesce(b.first_cached_ms, 0),"
        "        coalesce(b.last_access_ms, 0)"
        " FROM hosted_blobs hb LEFT JOIN blobs b ON b.digest = hb.digest"
        " WHERE hb.digest NOT IN (SELECT digest FROM live) AND coalesce(b.first_cached_ms, 0) <= ?";
    if (sqlite3_prepare_v2(d->sql, sql, -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)cutoff_ms);
    return read_blob_rows(st, out, n);
}

int db_hosted_release(struct db *d, char *const *digests, size_t n)
{
    int r = 0;
    if (exec(d->sql, "BEGIN IMMEDIATE"))
        return -EIO;
    for (size_t i = 0; i < n && !r; i++) {
        r = run_digest(d->sql, "DELETE FROM hosted_blobs WHERE digest = ?", digests[i], NULL);
        if (!r)
            r = run_digest(d->sql, "DELETE FROM hosted_refs WHERE manifest = ?", digests[i],
                           NULL);
        if (!r)
            r = run_digest(d->sql, "DELETE FROM hosted_referrers WHERE digest = ?", digests[i],
                           NULL);
    }
    if (r) {
        exec(d->sql, "ROLLBACK");
        return r;
    }
    return exec(d->sql, "COMMIT") ? -EIO : 0;
}

int db_load_hosted(struct db *d,
                   void (*tag)(void *ud, const char *repo, const char *tag, const char *digest,
                               const char *media_type),
                   void (*blob)(void *ud, const char *repo, const char *digest,
                                const char *media_type),
                   void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql, "SELECT repo, digest, media_type FROM hosted_blobs", -1, &st,
                           NULL) != SQLITE_OK)
        return -EIO;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        const char *dg = (const char *)sqlite3_column_text(st, 1);
        if (r && dg)
            blob(ud, r, dg, (const char *)sqlite3_column_text(st, 2));
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(d->sql, "SELECT repo, tag, digest, media_type FROM hosted_tags", -1,
                           &st, NULL) != SQLITE_OK)
        return -EIO;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        const char *t = (const char *)sqlite3_column_text(st, 1);
        const char *dg = (const char *)sqlite3_column_text(st, 2);
        const char *mt = (const char *)sqlite3_column_text(st, 3);
        if (r && t && dg && mt)
            tag(ud, r, t, dg, mt);
    }
    sqlite3_finalize(st);
    return 0;
}

int db_load_hosted_referrers(struct db *d,
                             void (*fn)(void *ud, const char *repo, const char *digest,
                                        const char *subject, const char *artifact_type,
                                        const char *descriptor),
                             void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT repo, digest, subject, artifact_type, descriptor"
                           " FROM hosted_referrers",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *v[5];
        for (int i = 0; i < 5; i++)
            v[i] = (const char *)sqlite3_column_text(st, i);
        if (v[0] && v[1] && v[2] && v[3] && v[4])
            fn(ud, v[0], v[1], v[2], v[3], v[4]);
    }
    sqlite3_finalize(st);
    return 0;
}

void db_del_tag(struct db *d, const char *upstream, const char *repo, const char *tag)
{
    struct op *o = op_new(OP_DEL_TAG, upstream, repo, tag, NULL, NULL);
    if (o)
        enqueue(d, o);
}

void db_put_manifest(struct db *d, const struct db_manifest_row *row)
{
    struct op *o = op_new(OP_PUT_MANIFEST, row->digest, row->media_type, NULL, NULL, NULL);
    if (!o)
        return;
    o->n1 = row->size;
    enqueue(d, o);
}

void db_put_blob(struct db *d, const char *digest, uint64_t size, const char *media_type,
                 uint64_t now_ms)
{
    struct op *o = op_new(OP_PUT_BLOB, digest, media_type, NULL, NULL, NULL);
    if (!o)
        return;
    o->n1 = size;
    o->n2 = now_ms; /* first_cached and last_access start equal */
    enqueue(d, o);
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
    enqueue(d, o);
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
        o = op_new(OP_RATELIMIT, rl->upstream, NULL, NULL, NULL, NULL);
        if (!o)
            return;
        o->rl[0] = o->rl[1] = o->rl[2] = -1;
        if (map_put(d->ratelimits, rl->upstream, o) == MAP_NOMEM) {
            op_free(o);
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
    return 0;
}

static int queue_touch(const char *key, void *value, void *ud)
{
    struct db *d = ud;
    struct op *o = op_new(OP_TOUCH, key, NULL, NULL, NULL, NULL);
    if (o) {
        o->n1 = *(uint64_t *)value;
        *d->queue_tail = o;
        d->queue_tail = &o->next;
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
    struct op *o = op_new(OP_REF, a, b, c, NULL, NULL);
    if (o) {
        *d->queue_tail = o;
        d->queue_tail = &o->next;
    }
    return 0;
}

static int queue_counter(const char *key, void *value, void *ud)
{
    struct db *d = ud;
    struct op *o = op_new(OP_COUNTER, key, NULL, NULL, NULL, NULL);
    if (o) {
        o->n1 = *(uint64_t *)value;
        *d->queue_tail = o;
        d->queue_tail = &o->next;
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

void db_close(struct db *d)
{
    if (!d)
        return;
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
    db_free(d); /* ratelimits was emptied by the flush above */
}

/* ---- maintenance ---- */

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_list_blobs(struct db *d, struct db_blob **out, size_t *n)
{
    sqlite3_stmt *st;
    /* hosted content is never a candidate */
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT digest, size, first_cached_ms, last_access_ms FROM blobs"
                           " WHERE digest NOT IN (SELECT digest FROM hosted_blobs)",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    return read_blob_rows(st, out, n);
}

static int run_digest(sqlite3 *s, const char *sql, const char *digest, int *changes)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    int r = step_done(st);
    if (!r && changes)
        *changes += sqlite3_changes(s);
    return r;
}

int db_forget_blobs(struct db *d, char *const *digests, size_t n, size_t *tags_forgotten)
{
    int tags = 0, r = 0;
    if (exec(d->sql, "BEGIN IMMEDIATE"))
        return -EIO;
    for (size_t i = 0; i < n && !r; i++) {
        r = run_digest(d->sql, "DELETE FROM blobs WHERE digest = ?", digests[i], NULL);
        if (!r)
            r = run_digest(d->sql, "DELETE FROM manifests WHERE digest = ?", digests[i], NULL);
        if (!r)
            r = run_digest(d->sql, "DELETE FROM repo_blobs WHERE digest = ?", digests[i], NULL);
        if (!r)
            r = run_digest(d->sql, "DELETE FROM tags WHERE digest = ?", digests[i], &tags);
    }
    if (r) {
        exec(d->sql, "ROLLBACK");
        return r;
    }
    if (exec(d->sql, "COMMIT"))
        return -EIO;
    if (tags_forgotten)
        *tags_forgotten = (size_t)tags;
    return 0;
}

int db_adopt_blob(struct db *d, const char *digest, uint64_t size, uint64_t now_ms)
{
    struct op o = {0};
    o.kind = OP_PUT_BLOB;
    o.a = (char *)digest;
    o.n1 = size;
    o.n2 = now_ms;
    return apply_op(d->sql, &o);
}

int db_add_gc_run(struct db *d, const struct db_gc_run *run)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "INSERT INTO gc_runs (started_ms, duration_ms, dry_run, evicted_count,"
                           " evicted_bytes, reason) VALUES (?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)run->started_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)run->duration_ms);
    sqlite3_bind_int(st, 3, run->dry_run);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)run->evicted_count);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)run->evicted_bytes);
    sqlite3_bind_text(st, 6, run->reason, -1, SQLITE_STATIC);
    int r = step_done(st);
    /* keep the history short */
    exec(d->sql, "DELETE FROM gc_runs WHERE rowid NOT IN"
                 " (SELECT rowid FROM gc_runs ORDER BY started_ms DESC LIMIT 100)");
    return r;
}

int db_gc_runs(struct db *d, struct db_gc_run *out, size_t max)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT started_ms, duration_ms, dry_run, evicted_count, evicted_bytes,"
                           " reason FROM gc_runs ORDER BY started_ms DESC LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW && (size_t)n < max) {
        struct db_gc_run *g = &out[n++];
        g->started_ms = (uint64_t)sqlite3_column_int64(st, 0);
        g->duration_ms = (uint64_t)sqlite3_column_int64(st, 1);
        g->dry_run = sqlite3_column_int(st, 2);
        g->evicted_count = (uint64_t)sqlite3_column_int64(st, 3);
        g->evicted_bytes = (uint64_t)sqlite3_column_int64(st, 4);
        const char *reason = (const char *)sqlite3_column_text(st, 5);
        snprintf(g->reason, sizeof(g->reason), "%s", reason ? reason : "");
    }
    sqlite3_finalize(st);
    return n;
}

static uint64_t scalar(sqlite3 *s, const char *sql)
{
    sqlite3_stmt *st;
    uint64_t v = 0;
    if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int db_stats(struct db *d, struct db_stats *o)
{
    o->blobs = scalar(d->sql, "SELECT count(*) FROM blobs");
    o->blob_bytes = scalar(d->sql, "SELECT coalesce(sum(size), 0) FROM blobs");
    o->manifests = scalar(d->sql, "SELECT count(*) FROM manifests");
    o->tags = scalar(d->sql, "SELECT count(*) FROM tags");
    o->repositories = scalar(d->sql, "SELECT count(*) FROM (SELECT upstream, repo FROM tags"
                                     " UNION SELECT upstream, repo FROM repo_blobs)");
    o->oldest_access_ms = scalar(d->sql, "SELECT coalesce(min(last_access_ms), 0) FROM blobs");
    o->hits = scalar(d->sql, "SELECT value FROM counters WHERE name = 'hits'");
    o->misses = scalar(d->sql, "SELECT value FROM counters WHERE name = 'misses'");
    o->started_ms = scalar(d->sql, "SELECT value FROM counters WHERE name = 'started_ms'");
    return 0;
}

int db_each_repo(struct db *d, int (*fn)(void *ud, const struct db_repo_row *row), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            d->sql,
            "SELECT r.upstream, r.repo, coalesce(sum(b.size), 0), coalesce(max(b.last_access_ms), 0)"
            " FROM (SELECT upstream, repo FROM tags UNION SELECT upstream, repo FROM repo_blobs) r"
            " LEFT JOIN repo_blobs rb ON rb.upstream = r.upstream AND rb.repo = r.repo"
            " LEFT JOIN blobs b ON b.digest = rb.digest"
            " GROUP BY r.upstream, r.repo ORDER BY r.upstream, r.repo",
            -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    int r = 0;
    while (!r && sqlite3_step(st) == SQLITE_ROW) {
        struct db_repo_row row = {(const char *)sqlite3_column_text(st, 0),
                                  (const char *)sqlite3_column_text(st, 1),
                                  (uint64_t)sqlite3_column_int64(st, 2),
                                  (uint64_t)sqlite3_column_int64(st, 3)};
        if (row.upstream && row.repo)
            r = fn(ud, &row);
    }
    sqlite3_finalize(st);
    return r;
}

int db_each_tag(struct db *d, const char *upstream, const char *repo,
                int (*fn)(void *ud, const struct db_tag_row *row, uint64_t last_access_ms),
                void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT t.tag, t.digest, t.media_type, t.validated_ms,"
                           " coalesce(b.last_access_ms, 0) FROM tags t"
                           " LEFT JOIN blobs b ON b.digest = t.digest"
                           " WHERE t.upstream = ? AND t.repo = ? ORDER BY t.tag",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, upstream, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, repo, -1, SQLITE_STATIC);
    int r = 0;
    while (!r && sqlite3_step(st) == SQLITE_ROW) {
        struct db_tag_row row = {upstream, repo, (const char *)sqlite3_column_text(st, 0),
                                 (const char *)sqlite3_column_text(st, 1),
                                 (const char *)sqlite3_column_text(st, 2),
                                 (uint64_t)sqlite3_column_int64(st, 3)};
        if (row.tag && row.digest)
            r = fn(ud, &row, (uint64_t)sqlite3_column_int64(st, 4));
    }
    sqlite3_finalize(st);
    return r;
}

int db_each_ratelimit(struct db *d, int (*fn)(void *ud, const struct db_ratelimit *rl), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT upstream, coalesce(lim, -1), coalesce(remaining, -1),"
                           " coalesce(window_s, -1), source, seen_ms, coalesce(last_429_ms, 0)"
                           " FROM ratelimits ORDER BY upstream",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    int r = 0;
    while (!r && sqlite3_step(st) == SQLITE_ROW) {
        struct db_ratelimit rl = {(const char *)sqlite3_column_text(st, 0),
                                  sqlite3_column_int64(st, 1),
                                  sqlite3_column_int64(st, 2),
                                  sqlite3_column_int64(st, 3),
                                  (const char *)sqlite3_column_text(st, 4),
                                  (uint64_t)sqlite3_column_int64(st, 5),
                                  (uint64_t)sqlite3_column_int64(st, 6)};
        if (rl.upstream)
            r = fn(ud, &rl);
    }
    sqlite3_finalize(st);
    return r;
}
