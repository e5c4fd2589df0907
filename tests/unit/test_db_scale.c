/* SPDX-License-Identifier: Apache-2.0 */
/* What keeps the index's cost per blob constant as the store grows: the plans of the queries
 * GC and its deletes run use an index (never a scan of a table of N rows), and the deletes and
 * the batched access times prepare each statement once per batch, not once per row. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "db/db.h"
#include "db/impl.h"

static char dir[128], path[256];

/* The EXPLAIN QUERY PLAN rows of sql, joined with "; ". */
static void plan_of(sqlite3 *s, const char *sql, char *out, size_t len)
{
    char q[512];
    snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *st;
    out[0] = '\0';
    if (sqlite3_prepare_v2(s, q, -1, &st, NULL) != SQLITE_OK) {
        snprintf(out, len, "cannot prepare: %s", sqlite3_errmsg(s));
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? "; " : "",
                 (const char *)sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
}

#define CHECK_PLAN_USES(s, sql, index)                                                             \
    do {                                                                                           \
        char plan_[512];                                                                           \
        plan_of(s, sql, plan_, sizeof(plan_));                                                     \
        if (!strstr(plan_, index))                                                                 \
            fprintf(stderr, "plan of %s: %s\n", sql, plan_);                                       \
        CHECK(strstr(plan_, index) != NULL);                                                       \
        CHECK(strstr(plan_, "SCAN") == NULL || strstr(plan_, " USING ") != NULL);                \
    } while (0)

static void test_plans(sqlite3 *s)
{
    /* blobs by last access: the oldest access (status) and the coldest first (eviction) */
    CHECK_PLAN_USES(s, "SELECT coalesce(min(last_access_ms), 0) FROM blobs", "blobs_by_access");
    CHECK_PLAN_USES(s, "SELECT digest FROM blobs ORDER BY last_access_ms LIMIT 100",
                    "blobs_by_access");
    CHECK_PLAN_USES(s, "SELECT digest FROM blobs WHERE last_access_ms < 5", "blobs_by_access");
    /* every delete of a forgotten digest finds its rows through an index */
    CHECK_PLAN_USES(s, "DELETE FROM blobs WHERE digest = 'x'", "INDEX");
    CHECK_PLAN_USES(s, "DELETE FROM manifests WHERE digest = 'x'", "INDEX");
    CHECK_PLAN_USES(s, "DELETE FROM repo_blobs WHERE digest = 'x'", "repo_blobs_by_digest");
    CHECK_PLAN_USES(s, "DELETE FROM tags WHERE digest = 'x'", "tags_by_digest");
    CHECK_PLAN_USES(s, "DELETE FROM referrers WHERE subject = 'x'", "referrers_by_subject");
    CHECK_PLAN_USES(s, "UPDATE blobs SET last_access_ms = 1 WHERE digest = 'x'", "INDEX");
}

static void digest_of(int i, char *out, size_t len)
{
    snprintf(out, len, "sha256:%064d", i);
}

static void test_forget_prepares_once(struct db *d, sqlite3 *s)
{
    enum { N = 2500 }; /* three transactions of DB_FORGET_BATCH and fewer */
    char buf[80];
    CHECK_EQ_INT(sqlite3_exec(s, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    CHECK_EQ_INT(sqlite3_prepare_v2(s,
                                    "INSERT INTO blobs (digest, size, first_cached_ms,"
                                    " last_access_ms) VALUES (?, 1, 1, 1)",
                                    -1, &st, NULL),
                 SQLITE_OK);
    char **digests = calloc(N, sizeof(*digests));
    for (int i = 0; i < N; i++) {
        digest_of(i, buf, sizeof(buf));
        digests[i] = strdup(buf);
        sqlite3_bind_text(st, 1, buf, -1, SQLITE_TRANSIENT);
        CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    CHECK_EQ_INT(sqlite3_exec(s, "COMMIT", NULL, NULL, NULL), SQLITE_OK);

    /* the GC's forget: 5 statements, prepared once for 2,500 rows */
    size_t tags = 0;
    CHECK_EQ_INT(db_forget_blobs(d, digests, N / 2, &tags), 0);
    CHECK_EQ_INT(d->batch_prepares, 5);
    /* the journalled purge (regcache gc): the same 5 and its journal insert */
    CHECK_EQ_INT(db_purge(d, NULL, 0, digests + N / 2, NULL, N - N / 2, 1000, &tags, NULL), 0);
    CHECK_EQ_INT(d->batch_prepares, 6);
    struct db_stats stats;
    db_stats(d, &stats);
    CHECK_EQ_U64(stats.blobs, 0);
    for (int i = 0; i < N; i++)
        free(digests[i]);
    free(digests);
}

static void test_touch_prepares_once(struct db *d, sqlite3 *s)
{
    enum { N = 500 };
    char buf[80];
    for (int i = 0; i < N; i++) {
        digest_of(i, buf, sizeof(buf));
        db_put_blob(d, buf, 1, NULL, 10);
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    db_attach(d, &loop);
    for (int i = 0; i < N; i++) {
        digest_of(i, buf, sizeof(buf));
        db_touch(d, buf, 5000 + (uint64_t)i);
    }
    db_detach(d); /* writes the coalesced access times in one batch */
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    CHECK_EQ_INT(d->batch_prepares, 1); /* one UPDATE for the N rows */
    sqlite3_stmt *st;
    CHECK_EQ_INT(sqlite3_prepare_v2(s, "SELECT count(*), min(last_access_ms) FROM blobs"
                                       " WHERE last_access_ms >= 5000",
                                    -1, &st, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(st, 0), N);
    CHECK_EQ_INT(sqlite3_column_int64(st, 1), 5000);
    sqlite3_finalize(st);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/regcache-db-scale-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof(path), "%s/regcache.db", dir);
    struct db *d;
    CHECK_EQ_INT(db_open(path, &d), 0);
    test_plans(d->sql);
    test_forget_prepares_once(d, d->sql);
    test_touch_prepares_once(d, d->sql);
    db_close(d);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_DONE();
}
