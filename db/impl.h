/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the parts of db/: the database handle, the queue of changes and their
 * statements. schema.c opens and migrates, queue.c writes changes in batches on the thread
 * pool (coalescing access times, references, counters and pull budgets), writes.c turns each
 * public change into a queued statement, queries.c reads (at start-up and for maintenance). */
#ifndef REGCACHE_DB_IMPL_H
#define REGCACHE_DB_IMPL_H

#include <sqlite3.h>
#include <stdint.h>
#include <uv.h>

#include "db/db.h"
#include "util/map.h"

/* A change that is one statement: its SQL and how many of the op's texts (a..e, in order) and
 * numbers (n1, n2) it binds. */
struct db_write {
    const char *sql;
    int ntext, nint;
};

enum op_kind { OP_WRITE, OP_RATELIMIT, OP_CALL };

struct op {
    struct op *next;
    enum op_kind kind;
    const struct db_write *w; /* OP_WRITE */
    char *a, *b, *c, *d, *e;  /* the statement's texts */
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
    size_t n_pending; /* queued, being written or kept: every op not yet written or dropped */
    int refusing; /* the last batch was refused (set on the thread pool, one batch at a time) */
    /* How the last segment that wrote anything ended: -1 nothing tried in this batch, 0
     * committed, 1 failed (batch_err says why). Set on the thread pool, read in after_batch. */
    int batch_failed;
    unsigned batch_prepares; /* statements the last batch prepared (one each, reused per row) */
    char batch_err[256];
    /* The same, as of the last batch that wrote anything (loop thread): db_write_status */
    int write_failed;
    char write_err[256];
    /* coalesced until the next flush: digest -> uint64_t last access; reference keys */
    struct map *touches, *refs;
    struct map *counters;   /* name -> uint64_t */
    struct map *ratelimits; /* upstream -> struct op (OP_RATELIMIT), the latest seen */
    uv_timer_t flush_timer;
    int timer_running;
};

/* ---- the statements of queued changes ---- */

/* queue.c */
/* A change with w's statement and copies of the texts (NULL ones bind NULL). */
struct op *db__op_new(const struct db_write *w, const char *a, const char *b, const char *c,
                      const char *dd, const char *e);
void db__op_free(struct op *o);
/* Queues o for the next batch (and starts one when none runs). */
void db__enqueue(struct db *d, struct op *o);
struct db__stmts;
int db__apply_op(sqlite3 *s, struct db__stmts *c, const struct op *o);

/* writes.c: statements queue.c and queries.c use too */
extern const struct db_write db__w_touch, db__w_ref, db__w_counter, db__w_put_blob;

/* stmts.c: the statements of one batch, each prepared on its first use (keyed by its SQL
 * text, which must outlive the batch) and reset for the next. */
#define DB_STMTS_MAX 16
struct db__stmts {
    size_t n;
    unsigned prepared; /* how many prepares the batch made: for tests */
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } e[DB_STMTS_MAX];
};
/* The statement for sql, reset with no bindings; NULL when it cannot be prepared. Owned by c. */
sqlite3_stmt *db__stmt(struct db__stmts *c, sqlite3 *s, const char *sql);
void db__stmts_done(struct db__stmts *c);

/* Digests forgotten per transaction by a GC or purge: big enough that commits cost little,
 * small enough that the daemon's writes are not held off for long. */
#define DB_FORGET_BATCH 1000

/* queries.c: forgets one digest inside the caller's transaction (its blob and manifest rows,
 * references, the tags pointing at it, counted into *tags, and its referrers) */
int db__forget_one(sqlite3 *s, struct db__stmts *c, const char *digest, int *tags);

/* schema.c */
int db__exec(sqlite3 *s, const char *sql);
/* Steps a statement that returns no rows and finalizes it: 0, or -EIO. */
int db__step_done(sqlite3_stmt *st);
void db__free(struct db *d);

#endif
