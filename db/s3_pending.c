/* SPDX-License-Identifier: Apache-2.0 */
/* The S3 tier's write-behind queue in the index (table s3_pending): what the daemon still has
 * to write into the bucket, kept across restarts. See db/db.h. */
#include "db/impl.h"

#include <errno.h>
#include <stdio.h>

static const struct db_write W_S3_PENDING = {
    "INSERT OR IGNORE INTO s3_pending (digest, queued_ms) VALUES (?, ?)", 1, 1};

static const struct db_write W_S3_WRITTEN = {"DELETE FROM s3_pending WHERE digest = ?", 1, 0};

void db_s3_pending(struct db *d, const char *digest, int pending, uint64_t now_ms)
{
    struct op *o = db__op_new(pending ? &W_S3_PENDING : &W_S3_WRITTEN, digest, NULL, NULL, NULL,
                              NULL);
    if (!o)
        return;
    o->n1 = now_ms;
    db__enqueue(d, o);
}

int db_load_s3_pending(struct db *d, size_t max, void (*fn)(void *ud, const char *digest),
                       void *ud, size_t *total)
{
    sqlite3_stmt *st;
    *total = 0;
    if (sqlite3_prepare_v2(d->sql, "SELECT digest FROM s3_pending ORDER BY queued_ms, digest",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *g = (const char *)sqlite3_column_text(st, 0);
        if (g && (*total)++ < max)
            fn(ud, g);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}
