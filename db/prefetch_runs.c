/* SPDX-License-Identifier: Apache-2.0 */
/* Prefetch runs: each run's figures, the last DB_PREFETCH_RUNS_KEEP of them, and the totals. */
#include "db/impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int insert_run(sqlite3 *s, const struct db_prefetch_run *r)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            s,
            "INSERT INTO prefetch_runs (started_ms, finished_ms, trigger, upstreams,"
            " refs, tags, heads, gets, blobs, bytes, errors, outcome, stopped, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    const uint64_t nums[] = {r->references, r->tags,  r->heads, r->gets,
                             r->blobs,      r->bytes, r->errors};
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->started_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)r->finished_ms);
    sqlite3_bind_text(st, 3, r->trigger, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->upstreams, -1, SQLITE_STATIC);
    for (int i = 0; i < 7; i++)
        sqlite3_bind_int64(st, 5 + i, (sqlite3_int64)nums[i]);
    sqlite3_bind_text(st, 12, r->outcome, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 13, r->stopped, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 14, r->error, -1, SQLITE_STATIC);
    return db__step_done(st);
}

static int add_totals(sqlite3 *s, const struct db_prefetch_run *r)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s,
                           "INSERT INTO prefetch_totals (id, since_ms, runs, tags, heads, gets,"
                           " blobs, bytes, errors, stopped) VALUES (1, ?1, 1, ?2, ?3, ?4, ?5, ?6,"
                           " ?7, ?8) ON CONFLICT (id) DO UPDATE SET runs = runs + 1,"
                           " tags = tags + ?2, heads = heads + ?3, gets = gets + ?4,"
                           " blobs = blobs + ?5, bytes = bytes + ?6, errors = errors + ?7,"
                           " stopped = stopped + ?8",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    const uint64_t nums[] = {r->started_ms, r->tags,  r->heads,  r->gets,
                             r->blobs,      r->bytes, r->errors, r->stopped[0] ? 1 : 0};
    for (int i = 0; i < 8; i++)
        sqlite3_bind_int64(st, 1 + i, (sqlite3_int64)nums[i]);
    return db__step_done(st);
}

int db_add_prefetch_run(struct db *d, const struct db_prefetch_run *run)
{
    if (db__exec(d->sql, "BEGIN IMMEDIATE"))
        return -EIO;
    char keep[160];
    snprintf(keep, sizeof(keep),
             "DELETE FROM prefetch_runs WHERE rowid NOT IN"
             " (SELECT rowid FROM prefetch_runs ORDER BY started_ms DESC, rowid DESC LIMIT %d)",
             DB_PREFETCH_RUNS_KEEP);
    if (insert_run(d->sql, run) || add_totals(d->sql, run) || db__exec(d->sql, keep) ||
        db__exec(d->sql, "COMMIT")) {
        db__exec(d->sql, "ROLLBACK");
        return -EIO;
    }
    return 0;
}

static void copy_text(sqlite3_stmt *st, int col, char *out, size_t len)
{
    const char *v = (const char *)sqlite3_column_text(st, col);
    snprintf(out, len, "%s", v ? v : "");
}

/* Does the comma-separated list name upstream? */
static int names(const char *list, const char *upstream)
{
    size_t n = strlen(upstream);
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ",");
        if (l == n && memcmp(p, upstream, n) == 0)
            return 1;
        p += l;
        if (*p)
            p++;
    }
    return 0;
}

int db_prefetch_runs(struct db *d, const char *upstream, struct db_prefetch_run *out, size_t max)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT started_ms, finished_ms, trigger, upstreams, refs, tags, heads,"
                           " gets, blobs, bytes, errors, outcome, stopped, error FROM prefetch_runs"
                           " ORDER BY started_ms DESC, rowid DESC",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    size_t n = 0;
    while (n < max && sqlite3_step(st) == SQLITE_ROW) {
        struct db_prefetch_run *r = &out[n];
        copy_text(st, 3, r->upstreams, sizeof(r->upstreams));
        if (upstream && !names(r->upstreams, upstream))
            continue;
        r->started_ms = (uint64_t)sqlite3_column_int64(st, 0);
        r->finished_ms = (uint64_t)sqlite3_column_int64(st, 1);
        copy_text(st, 2, r->trigger, sizeof(r->trigger));
        uint64_t *nums[] = {&r->references, &r->tags,  &r->heads, &r->gets,
                            &r->blobs,      &r->bytes, &r->errors};
        for (int i = 0; i < 7; i++)
            *nums[i] = (uint64_t)sqlite3_column_int64(st, 4 + i);
        copy_text(st, 11, r->outcome, sizeof(r->outcome));
        copy_text(st, 12, r->stopped, sizeof(r->stopped));
        copy_text(st, 13, r->error, sizeof(r->error));
        n++;
    }
    sqlite3_finalize(st);
    return (int)n;
}

int db_prefetch_totals(struct db *d, struct db_prefetch_totals *out)
{
    sqlite3_stmt *st;
    memset(out, 0, sizeof(*out));
    if (sqlite3_prepare_v2(d->sql,
                           "SELECT since_ms, runs, tags, heads, gets, blobs, bytes, errors, stopped"
                           " FROM prefetch_totals WHERE id = 1",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    if (sqlite3_step(st) == SQLITE_ROW) {
        uint64_t *nums[] = {&out->since_ms, &out->runs,  &out->tags,   &out->heads,  &out->gets,
                            &out->blobs,    &out->bytes, &out->errors, &out->stopped};
        for (int i = 0; i < 9; i++)
            *nums[i] = (uint64_t)sqlite3_column_int64(st, i);
    }
    sqlite3_finalize(st);
    return 0;
}
