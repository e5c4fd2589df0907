#include "db/db.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

enum op_kind { OP_PUT_TAG, OP_DEL_TAG, OP_PUT_MANIFEST, OP_PUT_BLOB };

struct op {
    struct op *next;
    enum op_kind kind;
    char *a, *b, *c, *d, *e; /* per kind: see apply_op */
    uint64_t n1, n2;
};

struct db {
    sqlite3 *sql;
    uv_loop_t *loop;
    struct op *queue, **queue_tail; /* waiting for the next batch */
    struct op *batch;               /* being written on the thread pool */
    uv_work_t work;
    int busy;
};

static const char *schema_v1 =
    "CREATE TABLE IF NOT EXISTS blobs ("
    "  digest TEXT PRIMARY KEY, size INTEGER NOT NULL, media_type TEXT,"
    "  first_cached_ms INTEGER NOT NULL, last_access_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS manifests ("
    "  digest TEXT PRIMARY KEY, media_type TEXT NOT NULL, size INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tags ("
    "  upstream TEXT NOT NULL, repo TEXT NOT NULL, tag TEXT NOT NULL,"
    "  digest TEXT NOT NULL, media_type TEXT NOT NULL, validated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (upstream, repo, tag));";

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
    if (version > DB_SCHEMA_VERSION) {
        log_error("database schema version %d is newer than this regcache understands (%d)",
                  version, DB_SCHEMA_VERSION);
        return -EPROTO;
    }
    if (version < 1) {
        if (exec(s, "BEGIN") || exec(s, schema_v1) || exec(s, "PRAGMA user_version = 1") ||
            exec(s, "COMMIT"))
            return -EIO;
    }
    return 0;
}

int db_open(const char *path, struct db **out)
{
    struct db *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->queue_tail = &d->queue;
    if (sqlite3_open_v2(path, &d->sql,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        log_error("database %s: %s", path, d->sql ? sqlite3_errmsg(d->sql) : "cannot open");
        sqlite3_close(d->sql);
        free(d);
        return -EIO;
    }
    sqlite3_busy_timeout(d->sql, 5000);
    if (exec(d->sql, "PRAGMA journal_mode=WAL") || exec(d->sql, "PRAGMA synchronous=NORMAL") ||
        migrate(d->sql)) {
        sqlite3_close(d->sql);
        free(d);
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
                        "INSERT INTO blobs (digest, size, first_cached_ms, last_access_ms)"
                        " VALUES (?1, ?2, ?3, ?3) ON CONFLICT(digest) DO UPDATE SET"
                        " last_access_ms = excluded.last_access_ms",
                        o, 1, 2);
    }
    return -EINVAL;
}

static void write_batch(sqlite3 *s, struct op *batch)
{
    if (exec(s, "BEGIN"))
        return;
    for (struct op *o = batch; o; o = o->next)
        if (apply_op(s, o))
            log_warn("database: write failed: %s", sqlite3_errmsg(s));
    exec(s, "COMMIT");
}

static void free_ops(struct op *o)
{
    while (o) {
        struct op *next = o->next;
        op_free(o);
        o = next;
    }
}

static void kick(struct db *d);

static void work_batch(uv_work_t *w)
{
    struct db *d = w->data;
    write_batch(d->sql, d->batch);
}

static void after_batch(uv_work_t *w, int status)
{
    (void)status;
    struct db *d = w->data;
    free_ops(d->batch);
    d->batch = NULL;
    d->busy = 0;
    kick(d);
}

static void kick(struct db *d)
{
    if (d->busy || !d->queue || !d->loop)
        return;
    d->batch = d->queue;
    d->queue = NULL;
    d->queue_tail = &d->queue;
    d->busy = 1;
    d->work.data = d;
    if (uv_queue_work(d->loop, &d->work, work_batch, after_batch)) {
        write_batch(d->sql, d->batch);
        free_ops(d->batch);
        d->batch = NULL;
        d->busy = 0;
    }
}

void db_attach(struct db *d, uv_loop_t *loop)
{
    d->loop = loop;
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

void db_put_blob(struct db *d, const char *digest, uint64_t size, uint64_t now_ms)
{
    struct op *o = op_new(OP_PUT_BLOB, digest, NULL, NULL, NULL, NULL);
    if (!o)
        return;
    o->n1 = size;
    o->n2 = now_ms;
    /* first_cached and last_access start equal */
    enqueue(d, o);
}

void db_close(struct db *d)
{
    if (!d)
        return;
    /* a batch still on the thread pool was finished by uv_run before we get here */
    if (d->queue)
        write_batch(d->sql, d->queue);
    free_ops(d->queue);
    sqlite3_close(d->sql);
    free(d);
}
