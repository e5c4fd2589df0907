/* SPDX-License-Identifier: Apache-2.0 */
/* Reads: the index at start-up, and the synchronous maintenance and admin queries. */
#include "db/impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static int run_digest(sqlite3 *s, struct db__stmts *c, const char *sql, const char *digest,
                      int *changes);

static int load_from(sqlite3 *s, void (*tag)(void *ud, const struct db_tag_row *row),
                     void (*manifest)(void *ud, const struct db_manifest_row *row), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s, "SELECT digest, media_type, size FROM manifests", -1, &st,
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
    if (sqlite3_prepare_v2(s,
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

int db_load(struct db *d, void (*tag)(void *ud, const struct db_tag_row *row),
            void (*manifest)(void *ud, const struct db_manifest_row *row), void *ud)
{
    return load_from(d->sql, tag, manifest, ud);
}

int db_load_apart(struct db *d, void (*tag)(void *ud, const struct db_tag_row *row),
                  void (*manifest)(void *ud, const struct db_manifest_row *row), void *ud)
{
    sqlite3 *s = NULL;
    if (sqlite3_open_v2(d->path, &s, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        log_error("database %s: cannot open it to load the index: %s", d->path,
                  s ? sqlite3_errmsg(s) : "out of memory");
        sqlite3_close(s);
        return -EIO;
    }
    sqlite3_busy_timeout(s, DB_BUSY_TIMEOUT_MS);
    /* one read transaction: one snapshot for both tables */
    int r = db__exec(s, "BEGIN");
    if (!r)
        r = load_from(s, tag, manifest, ud);
    db__exec(s, "COMMIT");
    sqlite3_close(s);
    return r;
}

int db_get_tag(struct db *d, const char *upstream, const char *repo, const char *tag,
               void (*fn)(void *ud, const struct db_tag_row *row), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT digest, media_type, validated_ms FROM tags"
                           " WHERE upstream = ? AND repo = ? AND tag = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, upstream, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, repo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, tag, -1, SQLITE_STATIC);
    int r = -ENOENT;
    if (sqlite3_step(st) == SQLITE_ROW) {
        struct db_tag_row row = {upstream, repo, tag, (const char *)sqlite3_column_text(st, 0),
                                 (const char *)sqlite3_column_text(st, 1),
                                 (uint64_t)sqlite3_column_int64(st, 2)};
        if (row.digest && row.media_type) {
            fn(ud, &row);
            r = 0;
        }
    }
    sqlite3_finalize(st);
    return r;
}

int db_get_manifest(struct db *d, const char *digest,
                    void (*fn)(void *ud, const struct db_manifest_row *row), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql, "SELECT media_type, size FROM manifests WHERE digest = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    int r = -ENOENT;
    if (sqlite3_step(st) == SQLITE_ROW) {
        struct db_manifest_row row = {digest, (const char *)sqlite3_column_text(st, 0),
                                      (uint64_t)sqlite3_column_int64(st, 1)};
        if (row.media_type) {
            fn(ud, &row);
            r = 0;
        }
    }
    sqlite3_finalize(st);
    return r;
}

int db_load_refs(struct db *d,
                 void (*fn)(void *ud, const char *upstream, const char *repo, const char *digest),
                 void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql, "SELECT upstream, repo, digest FROM repo_blobs", -1, &st,
                           NULL) != SQLITE_OK)
        return -EIO;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *u = (const char *)sqlite3_column_text(st, 0);
        const char *r = (const char *)sqlite3_column_text(st, 1);
        const char *g = (const char *)sqlite3_column_text(st, 2);
        if (u && r && g)
            fn(ud, u, r, g);
    }
    sqlite3_finalize(st);
    return 0;
}

int db_load_referrers(struct db *d, void (*fn)(void *ud, const struct db_referrers_row *row),
                      void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT upstream, repo, subject, document, validated_ms FROM referrers",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct db_referrers_row row = {
            (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
            (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3),
            (uint64_t)sqlite3_column_int64(st, 4)};
        if (row.upstream && row.repo && row.subject && row.document)
            fn(ud, &row);
    }
    sqlite3_finalize(st);
    return 0;
}

int db_each_upstream_state(struct db *d,
                           int (*fn)(void *ud, const struct db_upstream_state *st), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT upstream, state, reason, since_ms FROM upstream_states"
                           " ORDER BY upstream", -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    int r = 0;
    while (!r && sqlite3_step(st) == SQLITE_ROW) {
        struct db_upstream_state row = {
            (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
            (const char *)sqlite3_column_text(st, 2), (uint64_t)sqlite3_column_int64(st, 3)};
        if (row.upstream && row.state)
            r = fn(ud, &row);
    }
    sqlite3_finalize(st);
    return r;
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
    struct db__stmts c = {0};
    if (db__exec(d->sql, "BEGIN IMMEDIATE"))
        return -EIO;
    for (size_t i = 0; i < n && !r; i++) {
        r = run_digest(d->sql, &c, "DELETE FROM hosted_blobs WHERE digest = ?", digests[i], NULL);
        if (!r)
            r = run_digest(d->sql, &c, "DELETE FROM hosted_refs WHERE manifest = ?", digests[i],
                           NULL);
        if (!r)
            r = run_digest(d->sql, &c, "DELETE FROM hosted_referrers WHERE digest = ?",
                           digests[i], NULL);
    }
    db__stmts_done(&c);
    if (r) {
        db__exec(d->sql, "ROLLBACK");
        return r;
    }
    return db__exec(d->sql, "COMMIT") ? -EIO : 0;
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

int db__step_done(sqlite3_stmt *st)
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

int db_get_counter(struct db *d, const char *name, uint64_t *value)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql, "SELECT value FROM counters WHERE name = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int r = -ENOENT;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *value = (uint64_t)sqlite3_column_int64(st, 0);
        r = 0;
    }
    sqlite3_finalize(st);
    return r;
}

int db_blob_totals(struct db *d, uint64_t *files, uint64_t *bytes)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql, "SELECT files, bytes FROM blob_totals WHERE id = 1", -1, &st,
                           NULL) != SQLITE_OK)
        return -EIO;
    *files = *bytes = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        sqlite3_int64 f = sqlite3_column_int64(st, 0), b = sqlite3_column_int64(st, 1);
        *files = f > 0 ? (uint64_t)f : 0;
        *bytes = b > 0 ? (uint64_t)b : 0;
    }
    sqlite3_finalize(st);
    return 0;
}

int db_hosted_totals(struct db *d, uint64_t *files, uint64_t *bytes)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT count(*), coalesce(sum(size), 0) FROM blobs WHERE digest IN"
                           " (SELECT digest FROM hosted_blobs)",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    *files = *bytes = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *files = (uint64_t)sqlite3_column_int64(st, 0);
        *bytes = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return 0;
}

int db_each_lru(struct db *d, uint64_t *last_access_ms, int64_t *rowid, size_t limit,
                int (*fn)(void *ud, const struct db_lru_row *row), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT rowid, digest, size, last_access_ms FROM blobs"
                           " WHERE (last_access_ms, rowid) > (?1, ?2)"
                           " AND digest NOT IN (SELECT digest FROM hosted_blobs)"
                           " ORDER BY last_access_ms, rowid LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)*last_access_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)*rowid);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        n++;
        *rowid = sqlite3_column_int64(st, 0);
        struct db_lru_row row = {(const char *)sqlite3_column_text(st, 1),
                                 (uint64_t)sqlite3_column_int64(st, 2),
                                 (uint64_t)sqlite3_column_int64(st, 3)};
        *last_access_ms = row.last_access_ms;
        if (row.digest && fn(ud, &row))
            break;
    }
    int bad = rc != SQLITE_ROW && rc != SQLITE_DONE;
    sqlite3_finalize(st);
    return bad ? -EIO : n;
}

int db_each_tag_of(struct db *d, const char *digest, char sep,
                   int (*fn)(void *ud, const char *key), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql, "SELECT upstream, repo, tag FROM tags WHERE digest = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    int r = 0;
    while (!r && sqlite3_step(st) == SQLITE_ROW) {
        const char *u = (const char *)sqlite3_column_text(st, 0),
                   *repo = (const char *)sqlite3_column_text(st, 1),
                   *tag = (const char *)sqlite3_column_text(st, 2);
        char key[1024];
        if (u && repo && tag &&
            snprintf(key, sizeof(key), "%s%c%s%c%s", u, sep, repo, sep, tag) < (int)sizeof(key))
            r = fn(ud, key);
    }
    sqlite3_finalize(st);
    return r;
}

static int run_digest(sqlite3 *s, struct db__stmts *c, const char *sql, const char *digest,
                      int *changes)
{
    sqlite3_stmt *st = db__stmt(c, s, sql);
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    int r = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    sqlite3_reset(st);
    if (!r && changes)
        *changes += sqlite3_changes(s);
    return r;
}

int db__forget_one(sqlite3 *s, struct db__stmts *c, const char *digest, int *tags)
{
    int r = run_digest(s, c, "DELETE FROM blobs WHERE digest = ?", digest, NULL);
    if (!r)
        r = run_digest(s, c, "DELETE FROM manifests WHERE digest = ?", digest, NULL);
    if (!r)
        r = run_digest(s, c, "DELETE FROM repo_blobs WHERE digest = ?", digest, NULL);
    if (!r)
        r = run_digest(s, c, "DELETE FROM tags WHERE digest = ?", digest, tags);
    if (!r) /* what refers to an evicted manifest is asked anew when it is pulled again */
        r = run_digest(s, c, "DELETE FROM referrers WHERE subject = ?", digest, NULL);
    return r;
}

/* Forgets digests [from, to) in one transaction with the statements of c. */
static int forget_batch(struct db *d, struct db__stmts *c, char *const *digests, size_t from,
                        size_t to, int *tags)
{
    int r = 0;
    if (db__exec(d->sql, "BEGIN IMMEDIATE"))
        return -EIO;
    for (size_t i = from; i < to && !r; i++)
        r = db__forget_one(d->sql, c, digests[i], tags);
    if (r) {
        db__exec(d->sql, "ROLLBACK");
        return r;
    }
    return db__exec(d->sql, "COMMIT") ? -EIO : 0;
}

int db_forget_blobs(struct db *d, char *const *digests, size_t n, size_t *tags_forgotten)
{
    int tags = 0, r = 0;
    struct db__stmts stmts = {0}; /* prepared once for all the batches */
    for (size_t i = 0; i < n && !r; i += DB_FORGET_BATCH)
        r = forget_batch(d, &stmts, digests, i, n - i < DB_FORGET_BATCH ? n : i + DB_FORGET_BATCH,
                         &tags);
    d->batch_prepares = stmts.prepared;
    db__stmts_done(&stmts);
    if (r)
        return r;
    if (tags_forgotten)
        *tags_forgotten = (size_t)tags;
    return 0;
}

int db_adopt_blob(struct db *d, const char *digest, uint64_t size, uint64_t now_ms)
{
    struct op o = {0};
    o.kind = OP_WRITE;
    o.w = &db__w_put_blob;
    o.a = (char *)digest;
    o.n1 = size;
    o.n2 = now_ms;
    struct db__stmts stmts = {0};
    int r = db__apply_op(d->sql, &stmts, &o);
    db__stmts_done(&stmts);
    return r;
}

int db_adopt_blobs(struct db *d, char *const *digests, const uint64_t *sizes, size_t n,
                   uint64_t now_ms)
{
    struct db__stmts stmts = {0};
    int r = 0;
    for (size_t i = 0; i < n && !r; i += DB_FORGET_BATCH) {
        if (db__exec(d->sql, "BEGIN IMMEDIATE")) {
            r = -EIO;
            break;
        }
        for (size_t k = i; k < n && k < i + DB_FORGET_BATCH && !r; k++) {
            struct op o = {0};
            o.kind = OP_WRITE;
            o.w = &db__w_put_blob;
            o.a = digests[k];
            o.n1 = sizes[k];
            o.n2 = now_ms;
            r = db__apply_op(d->sql, &stmts, &o);
        }
        if (r)
            db__exec(d->sql, "ROLLBACK");
        else if (db__exec(d->sql, "COMMIT"))
            r = -EIO;
    }
    db__stmts_done(&stmts);
    return r;
}

int db_each_blob_digest(struct db *d, int (*fn)(void *ud, const char *digest), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql, "SELECT digest FROM blobs", -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    int r = 0, rc;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *digest = (const char *)sqlite3_column_text(st, 0);
        if (digest)
            r = fn(ud, digest);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_finalize(st);
    return r;
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
    int r = db__step_done(st);
    /* keep the history short */
    db__exec(d->sql, "DELETE FROM gc_runs WHERE rowid NOT IN"
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
    db_blob_totals(d, &o->blobs, &o->blob_bytes);
    o->manifests = scalar(d->sql, "SELECT count(*) FROM manifests");
    o->tags = scalar(d->sql, "SELECT count(*) FROM tags");
    o->repositories = scalar(d->sql, "SELECT count(*) FROM (SELECT upstream, repo FROM tags"
                                     " UNION SELECT upstream, repo FROM repo_totals)");
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
            "SELECT r.upstream, r.repo, coalesce(rt.bytes, 0), coalesce(rt.last_access_ms, 0),"
            " (SELECT count(*) FROM tags t WHERE t.upstream = r.upstream AND t.repo = r.repo)"
            " FROM (SELECT upstream, repo FROM tags UNION SELECT upstream, repo FROM repo_totals) r"
            " LEFT JOIN repo_totals rt ON rt.upstream = r.upstream AND rt.repo = r.repo"
            " ORDER BY r.upstream, r.repo",
            -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    int r = 0;
    while (!r && sqlite3_step(st) == SQLITE_ROW) {
        struct db_repo_row row = {(const char *)sqlite3_column_text(st, 0),
                                  (const char *)sqlite3_column_text(st, 1),
                                  (uint64_t)sqlite3_column_int64(st, 2),
                                  (uint64_t)sqlite3_column_int64(st, 3),
                                  (uint64_t)sqlite3_column_int64(st, 4)};
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

int db_each_hosted_repo(struct db *d, int (*fn)(void *ud, const struct db_hosted_repo_row *row),
                        void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            d->sql,
            "SELECT r.repo, coalesce(sum(b.size), 0), coalesce(max(b.last_access_ms), 0),"
            " (SELECT count(*) FROM hosted_tags t WHERE t.repo = r.repo)"
            " FROM (SELECT repo FROM hosted_blobs UNION SELECT repo FROM hosted_tags) r"
            " LEFT JOIN hosted_blobs hb ON hb.repo = r.repo"
            " LEFT JOIN blobs b ON b.digest = hb.digest"
            " GROUP BY r.repo ORDER BY r.repo",
            -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    int r = 0;
    while (!r && sqlite3_step(st) == SQLITE_ROW) {
        struct db_hosted_repo_row row = {(const char *)sqlite3_column_text(st, 0),
                                         (uint64_t)sqlite3_column_int64(st, 1),
                                         (uint64_t)sqlite3_column_int64(st, 3),
                                         (uint64_t)sqlite3_column_int64(st, 2)};
        if (row.repo)
            r = fn(ud, &row);
    }
    sqlite3_finalize(st);
    return r;
}

int db_each_hosted_tag(struct db *d, const char *repo,
                       int (*fn)(void *ud, const struct db_tag_row *row, uint64_t last_access_ms),
                       void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT t.tag, t.digest, t.media_type, coalesce(b.last_access_ms, 0)"
                           " FROM hosted_tags t LEFT JOIN blobs b ON b.digest = t.digest"
                           " WHERE t.repo = ? ORDER BY t.tag",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    int r = 0;
    while (!r && sqlite3_step(st) == SQLITE_ROW) {
        struct db_tag_row row = {NULL, repo, (const char *)sqlite3_column_text(st, 0),
                                 (const char *)sqlite3_column_text(st, 1),
                                 (const char *)sqlite3_column_text(st, 2), 0};
        if (row.tag && row.digest)
            r = fn(ud, &row, (uint64_t)sqlite3_column_int64(st, 3));
    }
    sqlite3_finalize(st);
    return r;
}

int db_blob_info(struct db *d, const char *digest, char *media_type, size_t len, uint64_t *size,
                 uint64_t *last_access_ms)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT b.size, b.last_access_ms, coalesce(m.media_type, b.media_type, '')"
                           " FROM blobs b LEFT JOIN manifests m ON m.digest = b.digest"
                           " WHERE b.digest = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    int r = -ENOENT;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *size = (uint64_t)sqlite3_column_int64(st, 0);
        *last_access_ms = (uint64_t)sqlite3_column_int64(st, 1);
        const char *mt = (const char *)sqlite3_column_text(st, 2);
        snprintf(media_type, len, "%s", mt ? mt : "");
        r = 0;
    }
    sqlite3_finalize(st);
    return r;
}
