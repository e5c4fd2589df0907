/* SPDX-License-Identifier: Apache-2.0 */
/* Collecting hosted content nothing reaches any more (`regcache gc --hosted`). Blocking: runs
 * next to a running daemon safely (a file being read stays readable after its removal). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "hosted/hosted.h"
#include "store/store.h"
#include "util/clock.h"

int hosted_gc_run(struct db *db, struct store *store, uint64_t now_ms, int dry_run,
                  struct hosted_gc_report *r)
{
    uint64_t t0 = clock_mono_us();
    struct db_blob *rows = NULL;
    size_t n = 0;
    memset(r, 0, sizeof(*r));
    uint64_t cutoff = now_ms > HOSTED_GC_GRACE_MS ? now_ms - HOSTED_GC_GRACE_MS : 0;
    int rc = db_hosted_unreferenced(db, cutoff, &rows, &n);
    if (rc)
        return rc;
    r->digests = calloc(n ? n : 1, sizeof(*r->digests));
    if (!r->digests) {
        free(rows);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(r->digests[i] = strdup(rows[i].digest))) {
            rc = -ENOMEM;
            goto out;
        }
        r->collected++;
        r->bytes += rows[i].size;
    }
    if (!dry_run && n) {
        /* the index first: a crash in between leaves files without rows, which the next start
         * verifies and adopts as ordinary cached content */
        size_t tags = 0;
        if ((rc = db_hosted_release(db, r->digests, n)) ||
            (rc = db_forget_blobs(db, r->digests, n, &tags)))
            goto out;
        for (size_t i = 0; i < n; i++)
            store_remove(store, r->digests[i]);
    }
    r->duration_ms = (clock_mono_us() - t0) / 1000;
    struct db_gc_run run = {now_ms, r->duration_ms, dry_run, r->collected, r->bytes, "hosted"};
    db_add_gc_run(db, &run);
out:
    free(rows);
    if (rc)
        hosted_gc_report_free(r);
    return rc;
}

void hosted_gc_report_free(struct hosted_gc_report *r)
{
    for (size_t i = 0; i < r->collected; i++)
        free(r->digests[i]);
    free(r->digests);
    r->digests = NULL;
    r->collected = 0;
}
