/* SPDX-License-Identifier: Apache-2.0 */
/* The purge journal: what another process removed from the index, for running daemons to
 * forget in memory; and which upstream a digest belongs to (per-upstream size caps). */
#include "db/impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int journal(sqlite3 *s, struct db__stmts *c, uint64_t now_ms, const char *upstream,
                   const char *repo, const char *tag, const char *digest, uint64_t size)
{
    sqlite3_stmt *st = db__stmt(c, s,
                                "INSERT INTO purges (at_ms, upstream, repo, tag, digest, size)"
                                " VALUES (?, ?, ?, ?, ?, ?)");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)now_ms);
    const char *texts[4] = {upstream, repo, tag, digest};
    for (int i = 0; i < 4; i++)
        if (texts[i])
            sqlite3_bind_text(st, 2 + i, texts[i], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)size);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static int del_tag(sqlite3 *s, struct db__stmts *c, const struct db_purge_tag *t, int *changes)
{
    sqlite3_stmt *st =
        db__stmt(c, s, "DELETE FROM tags WHERE upstream = ? AND repo = ? AND tag = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, t->upstream, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->repo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, t->tag, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return -EIO;
    *changes += sqlite3_changes(s);
    return 0;
}

/* One transaction of a purge: the tags, digests [from, to), and (last) the journal's pruning;
 * *last is the journal's last row. */
static int purge_batch(struct db *d, struct db__stmts *c, const struct db_purge_tag *tags,
                       size_t n_tags, char *const *digests, const uint64_t *sizes, size_t from,
                       size_t to, int prune_after, uint64_t now_ms, int *forgotten, int64_t *last)
{
    int r = 0;
    if (db__exec(d->sql, "BEGIN IMMEDIATE"))
        return -EIO;
    for (size_t i = 0; i < n_tags && !r; i++) {
        r = del_tag(d->sql, c, &tags[i], forgotten);
        if (!r)
            r = journal(d->sql, c, now_ms, tags[i].upstream, tags[i].repo, tags[i].tag, NULL, 0);
    }
    for (size_t i = from; i < to && !r; i++) {
        r = db__forget_one(d->sql, c, digests[i], forgotten);
        if (!r)
            r = journal(d->sql, c, now_ms, NULL, NULL, NULL, digests[i], sizes ? sizes[i] : 0);
    }
    if (!r && prune_after) {
        char prune[128];
        snprintf(prune, sizeof(prune), "DELETE FROM purges WHERE at_ms < %llu",
                 (unsigned long long)(now_ms > DB_PURGE_KEEP_MS ? now_ms - DB_PURGE_KEEP_MS : 0));
        r = db__exec(d->sql, prune);
    }
    if (r) {
        db__exec(d->sql, "ROLLBACK");
        return r;
    }
    *last = (int64_t)sqlite3_last_insert_rowid(d->sql);
    return db__exec(d->sql, "COMMIT") ? -EIO : 0;
}

/* Tags and the first DB_FORGET_BATCH digests go in one transaction, each further batch of
 * digests in its own: a crash between two leaves files without rows, which the next start
 * adopts again. */
int db_purge(struct db *d, const struct db_purge_tag *tags, size_t n_tags,
             char *const *digests, const uint64_t *sizes, size_t n, uint64_t now_ms,
             size_t *tags_forgotten, int64_t *seq)
{
    int forgotten = 0, r = 0;
    int64_t last = 0;
    struct db__stmts stmts = {0}; /* prepared once for all the batches */
    size_t from = 0;
    do {
        size_t to = n - from < DB_FORGET_BATCH ? n : from + DB_FORGET_BATCH;
        r = purge_batch(d, &stmts, from ? NULL : tags, from ? 0 : n_tags, digests, sizes, from,
                        to, to == n && (n_tags || n), now_ms, &forgotten, &last);
        from = to;
    } while (!r && from < n);
    d->batch_prepares = stmts.prepared;
    db__stmts_done(&stmts);
    if (r)
        return r;
    if (tags_forgotten)
        *tags_forgotten = (size_t)forgotten;
    if (seq && (n_tags || n))
        *seq = last;
    return 0;
}

int64_t db_purge_seq(struct db *d)
{
    sqlite3_stmt *st;
    int64_t v = 0;
    if (sqlite3_prepare_v2(d->sql, "SELECT coalesce(max(seq), 0) FROM purges", -1, &st, NULL) !=
        SQLITE_OK)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int db_purges_since(struct db *d, int64_t seq, size_t max,
                    void (*fn)(void *ud, const struct db_purge_row *row), void *ud,
                    int64_t *last)
{
    sqlite3_stmt *st;
    *last = seq;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT seq, upstream, repo, tag, digest, size FROM purges"
                           " WHERE seq > ? ORDER BY seq LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct db_purge_row row = {sqlite3_column_int64(st, 0),
                                   (const char *)sqlite3_column_text(st, 1),
                                   (const char *)sqlite3_column_text(st, 2),
                                   (const char *)sqlite3_column_text(st, 3),
                                   (const char *)sqlite3_column_text(st, 4),
                                   (uint64_t)sqlite3_column_int64(st, 5)};
        *last = row.seq;
        if (row.digest || (row.upstream && row.repo && row.tag))
            fn(ud, &row);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_purge_reader(struct db *d, long pid, int64_t seq, uint64_t now_ms)
{
    sqlite3_stmt *st;
    const char *sql = seq < 0 ? "DELETE FROM purge_readers WHERE pid = ?1"
                              : "INSERT OR REPLACE INTO purge_readers (pid, seq, seen_ms)"
                                " VALUES (?1, ?2, ?3)";
    if (sqlite3_prepare_v2(d->sql, sql, -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(st, 1, pid);
    if (seq >= 0) {
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)now_ms);
    }
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_each_purge_reader(struct db *d,
                         int (*fn)(void *ud, long pid, int64_t seq, uint64_t seen_ms), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql, "SELECT pid, seq, seen_ms FROM purge_readers", -1, &st,
                           NULL) != SQLITE_OK)
        return -EIO;
    int r = 0;
    while (!r && sqlite3_step(st) == SQLITE_ROW)
        r = fn(ud, (long)sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
               (uint64_t)sqlite3_column_int64(st, 2));
    sqlite3_finalize(st);
    return r;
}

int db_each_blob_upstream(struct db *d,
                          int (*fn)(void *ud, const char *digest, const char *upstream), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT digest, min(upstream) FROM repo_blobs GROUP BY digest"
                           " HAVING count(DISTINCT upstream) = 1",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    int r = 0;
    while (!r && sqlite3_step(st) == SQLITE_ROW) {
        const char *digest = (const char *)sqlite3_column_text(st, 0);
        const char *upstream = (const char *)sqlite3_column_text(st, 1);
        if (digest && upstream)
            r = fn(ud, digest, upstream);
    }
    sqlite3_finalize(st);
    return r;
}

int db_each_ref(struct db *d,
                int (*fn)(void *ud, const char *upstream, const char *repo, const char *digest),
                void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql, "SELECT upstream, repo, digest FROM repo_blobs", -1, &st,
                           NULL) != SQLITE_OK)
        return -EIO;
    int r = 0;
    while (!r && sqlite3_step(st) == SQLITE_ROW) {
        const char *v[3];
        for (int i = 0; i < 3; i++)
            v[i] = (const char *)sqlite3_column_text(st, i);
        if (v[0] && v[1] && v[2])
            r = fn(ud, v[0], v[1], v[2]);
    }
    sqlite3_finalize(st);
    return r;
}
