/* SPDX-License-Identifier: Apache-2.0 */
/* What keeps the index's cost per blob constant as the store grows: the plans of the queries
 * GC and its deletes run use an index (never a scan of a table of N rows), and the deletes and
 * the batched access times prepare each statement once per batch, not once per row. */
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "cache/evict.h"
#include "cache/gc.h"
#include "check.h"
#include "db/db.h"
#include "db/impl.h"
#include "store/store.h"

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
    /* the GC's page of victims: through the index, in its order (no sort of N rows) */
    const char *lru = "SELECT rowid, digest, size, last_access_ms FROM blobs"
                      " WHERE (last_access_ms, rowid) > (1, 2)"
                      " AND digest NOT IN (SELECT digest FROM hosted_blobs)"
                      " ORDER BY last_access_ms, rowid LIMIT 1000";
    CHECK_PLAN_USES(s, lru, "blobs_by_access");
    char plan[512];
    plan_of(s, lru, plan, sizeof(plan));
    CHECK(strstr(plan, "TEMP B-TREE") == NULL);
    /* the per-repository totals' triggers find a digest's repositories through an index */
    CHECK_PLAN_USES(s, "UPDATE repo_totals SET bytes = 1 WHERE (upstream, repo) IN"
                       " (SELECT upstream, repo FROM repo_blobs WHERE digest = 'x')",
                    "repo_blobs_by_digest");
    /* the totals are one row */
    CHECK_PLAN_USES(s, "SELECT files, bytes FROM blob_totals WHERE id = 1", "INTEGER PRIMARY KEY");
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

/* The running totals follow inserts, size changes and deletes. */
static void check_totals(struct db *d, sqlite3 *s)
{
    uint64_t files, bytes;
    CHECK_EQ_INT(db_blob_totals(d, &files, &bytes), 0);
    sqlite3_stmt *st;
    CHECK_EQ_INT(sqlite3_prepare_v2(s, "SELECT count(*), coalesce(sum(size), 0) FROM blobs", -1,
                                    &st, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_U64(files, (uint64_t)sqlite3_column_int64(st, 0));
    CHECK_EQ_U64(bytes, (uint64_t)sqlite3_column_int64(st, 1));
    sqlite3_finalize(st);
}

enum { GC_N = 3000 };
#define GC_NOW (1000ull * 1000 * 1000 * 1000)

/* GC_N rows (no files: a removal finds none), blob i last used i seconds before GC_NOW and
 * 100 + i bytes big. */
static void fill_rows(sqlite3 *s)
{
    CHECK_EQ_INT(sqlite3_exec(s, "DELETE FROM blobs; BEGIN", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    CHECK_EQ_INT(sqlite3_prepare_v2(s,
                                    "INSERT INTO blobs (digest, size, first_cached_ms,"
                                    " last_access_ms) VALUES (?, ?, 1, ?)",
                                    -1, &st, NULL),
                 SQLITE_OK);
    char buf[80];
    for (int i = 0; i < GC_N; i++) {
        digest_of(i, buf, sizeof(buf));
        sqlite3_bind_text(st, 1, buf, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, 100 + i);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)(GC_NOW - 1000ull * (uint64_t)i));
        CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    CHECK_EQ_INT(sqlite3_exec(s, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
}

/* A run that evicts nothing reads at most one row; one that evicts a tenth reads about that
 * many; the size cap evicts what evict_plan (the policy over every row) would. */
static void test_gc_reads_what_it_evicts(struct db *d, sqlite3 *s, struct store *st)
{
    fill_rows(s);
    check_totals(d, s);
    uint64_t total = 0;
    for (int i = 0; i < GC_N; i++)
        total += 100 + (uint64_t)i;

    struct gc_options o = {.now_ms = GC_NOW, .ttl_ms = 7ull * 86400 * 1000, .reason = "test"};
    struct gc_report r;
    CHECK_EQ_INT(gc_run(d, st, &o, &r), 0);
    CHECK_EQ_U64(r.evicted, 0);
    CHECK(r.rows_read <= 1);
    CHECK_EQ_U64(r.scanned, GC_N);
    CHECK_EQ_U64(r.kept_bytes, total);
    gc_report_free(&r);

    /* a cap (dry run): the same victims as the policy over all the rows */
    struct evict_item *items = calloc(GC_N, sizeof(*items));
    for (int i = 0; i < GC_N; i++) {
        items[i].size = 100 + (uint64_t)i;
        items[i].last_access_ms = GC_NOW - 1000ull * (uint64_t)i;
    }
    struct evict_policy pol = {.now_ms = GC_NOW, .ttl_ms = o.ttl_ms, .max_size = total * 8 / 10};
    struct evict_summary sum;
    evict_plan(items, GC_N, &pol, &sum);
    o.max_size = pol.max_size;
    o.dry_run = 1;
    CHECK_EQ_INT(gc_run(d, st, &o, &r), 0);
    CHECK_EQ_U64(r.by_size, sum.by_size);
    CHECK_EQ_U64(r.evicted_bytes, sum.bytes);
    CHECK_EQ_U64(r.kept_bytes, sum.kept_bytes);
    CHECK(r.rows_read <= r.evicted + 1);
    char buf[80];
    for (size_t i = 0; i < r.n_digests; i++) { /* the oldest: the highest numbers */
        digest_of(GC_N - 1 - (int)i, buf, sizeof(buf));
        CHECK_STR(r.digests[i], buf);
    }
    gc_report_free(&r);
    free(items);

    /* the TTL evicting a tenth, one of them pinned */
    o.max_size = 0;
    o.dry_run = 0;
    o.ttl_ms = 1000ull * (GC_N - GC_N / 10) - 500;
    digest_of(GC_N - 1, buf, sizeof(buf));
    char *pin = buf;
    o.pinned = &pin;
    o.n_pinned = 1;
    o.tag_keys = 1;
    o.tag_key_sep = '/';
    CHECK_EQ_INT(gc_run(d, st, &o, &r), 0);
    CHECK_EQ_U64(r.evicted, GC_N / 10 - 1);
    CHECK_EQ_U64(r.by_ttl, GC_N / 10 - 1);
    CHECK_EQ_U64(r.pinned_files, 1);
    CHECK(r.rows_read <= GC_N / 10 + 1);
    CHECK(r.tag_keys_listed);
    gc_report_free(&r);
    uint64_t files, bytes;
    db_blob_totals(d, &files, &bytes);
    CHECK_EQ_U64(files, GC_N - GC_N / 10 + 1);
    check_totals(d, s);
    CHECK_EQ_INT(sqlite3_exec(s, "UPDATE blobs SET size = size + 1", NULL, NULL, NULL),
                 SQLITE_OK);
    check_totals(d, s);
}

/* The per-repository totals `ls` and `stats` read equal what the references and blob rows
 * give, whatever the order: references before or after their blob, blobs and references
 * forgotten, sizes changed, accesses recorded (random operations, checked after each). */
static void check_repo_totals(sqlite3 *s)
{
    static const char *const want =
        "SELECT rb.upstream, rb.repo, count(b.digest), coalesce(sum(b.size), 0)"
        " FROM repo_blobs rb LEFT JOIN blobs b ON b.digest = rb.digest"
        " GROUP BY rb.upstream, rb.repo"
        " EXCEPT SELECT upstream, repo, blobs, bytes FROM repo_totals";
    static const char *const extra =
        "SELECT upstream, repo, blobs, bytes FROM repo_totals EXCEPT"
        " SELECT rb.upstream, rb.repo, count(b.digest), coalesce(sum(b.size), 0)"
        " FROM repo_blobs rb LEFT JOIN blobs b ON b.digest = rb.digest"
        " GROUP BY rb.upstream, rb.repo";
    static const char *const newest =
        "SELECT count(*) FROM repo_totals rt WHERE rt.last_access_ms < (SELECT"
        " coalesce(max(b.last_access_ms), 0) FROM repo_blobs rb JOIN blobs b"
        " ON b.digest = rb.digest WHERE rb.upstream = rt.upstream AND rb.repo = rt.repo)";
    const char *const qs[] = {want, extra, newest};
    for (int q = 0; q < 3; q++) {
        sqlite3_stmt *st;
        CHECK_EQ_INT(sqlite3_prepare_v2(s, qs[q], -1, &st, NULL), SQLITE_OK);
        int rc = sqlite3_step(st);
        if (q < 2)
            CHECK_EQ_INT(rc, SQLITE_DONE); /* no row differs */
        else
            CHECK_EQ_INT(sqlite3_column_int(st, 0), 0);
        sqlite3_finalize(st);
    }
}

static void exec_fmt(sqlite3 *s, const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    char *err = NULL;
    int rc = sqlite3_exec(s, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, err ? err : "?");
    sqlite3_free(err);
    CHECK_EQ_INT(rc, SQLITE_OK);
}

static void test_repo_totals(struct db *d, sqlite3 *s)
{
    CHECK_EQ_INT(sqlite3_exec(s, "DELETE FROM blobs; DELETE FROM repo_blobs", NULL, NULL, NULL),
                 SQLITE_OK);
    srand(7);
    char digest[80];
    for (int step = 0; step < 3000; step++) {
        int k = rand() % 40, repo = rand() % 5, op = rand() % 7;
        digest_of(k, digest, sizeof(digest));
        switch (op) {
        case 0: { /* a fill: the blob row (the upsert db_put_blob writes) */
            sqlite3_stmt *st;
            CHECK_EQ_INT(sqlite3_prepare_v2(s, db__w_put_blob.sql, -1, &st, NULL), SQLITE_OK);
            sqlite3_bind_text(st, 1, digest, -1, SQLITE_TRANSIENT);
            sqlite3_bind_null(st, 2);
            sqlite3_bind_int64(st, 3, 100 + k);
            sqlite3_bind_int64(st, 4, step);
            CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
            sqlite3_finalize(st);
            break;
        }
        case 1: /* a repository references it (before or after its blob) */
        case 2:
            exec_fmt(s, "INSERT OR IGNORE INTO repo_blobs VALUES ('docker.io', 'r%d', '%s')",
                     repo, digest);
            break;
        case 3: { /* the GC or a purge forgets it: blob row first, then its references */
            char *one = digest;
            size_t tags = 0;
            CHECK_EQ_INT(db_forget_blobs(d, &one, 1, &tags), 0);
            break;
        }
        case 4: /* a reference alone goes */
            exec_fmt(s, "DELETE FROM repo_blobs WHERE repo = 'r%d' AND digest = '%s'", repo,
                     digest);
            break;
        case 5: /* an access recorded */
            exec_fmt(s, "UPDATE blobs SET last_access_ms = max(last_access_ms, %d)"
                        " WHERE digest = '%s'", 10000 + step, digest);
            break;
        default: /* the size put right */
            exec_fmt(s, "UPDATE blobs SET size = %d WHERE digest = '%s'", 7 * step, digest);
            break;
        }
        if (step % 50 == 0)
            check_repo_totals(s);
    }
    check_repo_totals(s);
    /* the sequence left repositories with stored blobs to count (it tested something) */
    sqlite3_stmt *busy;
    CHECK_EQ_INT(sqlite3_prepare_v2(s, "SELECT count(*) FROM repo_totals WHERE blobs > 1", -1,
                                    &busy, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(busy), SQLITE_ROW);
    CHECK(sqlite3_column_int(busy, 0) >= 3);
    sqlite3_finalize(busy);
    /* a repository no reference names any more has no row */
    CHECK_EQ_INT(sqlite3_exec(s, "DELETE FROM repo_blobs WHERE repo = 'r0'", NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_stmt *st;
    CHECK_EQ_INT(sqlite3_prepare_v2(s, "SELECT count(*) FROM repo_totals WHERE repo = 'r0'", -1,
                                    &st, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    check_repo_totals(s);
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
    test_repo_totals(d, d->sql);
    char root[200], err[256];
    snprintf(root, sizeof(root), "%s/store", dir);
    struct store *st;
    CHECK_EQ_INT(store_open(root, &st, err, sizeof(err)), 0);
    test_gc_reads_what_it_evicts(d, d->sql, st);
    store_close(st);
    db_close(d);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_DONE();
}
