/* SPDX-License-Identifier: Apache-2.0 */
/* Making the index and the store agree, at start-up and on `regcache verify`. Blocking. */
#ifndef REGCACHE_CACHE_RECONCILE_H
#define REGCACHE_CACHE_RECONCILE_H

#include <stddef.h>
#include <stdint.h>

struct db;
struct store;

struct reconcile_report {
    size_t files, adopted, removed_corrupt, removed_stray, rows_dropped, verified;
    size_t unwritten; /* changes to the index that could not be written (reconcile_apply) */
    uint64_t bytes;
};

/* Files without a row are re-hashed and adopted, or removed when they do not match their name;
 * rows without a file are dropped (with their tags). With verify_all every file is re-hashed
 * and corrupt ones are removed (`regcache verify`). */
int reconcile(struct db *db, struct store *store, int verify_all, struct reconcile_report *r);

/* Lets another thread follow a reconcile and stop it (the daemon's start-up, which answers
 * probes meanwhile). Read and written with __atomic builtins. */
struct reconcile_watch {
    int stop;     /* set to 1 to stop before the next file: reconcile returns -ECANCELED */
    size_t files; /* files looked at so far */
};
/* reconcile, with watch (may be NULL) updated after every file and checked before each. */
int reconcile_watched(struct db *db, struct store *store, int verify_all,
                      struct reconcile_watch *watch, struct reconcile_report *r);

/* The same in three steps, for the daemon, which serves meanwhile: reconcile_rows reads the
 * index's digests (in turn with the index writes: db_call), reconcile_walk goes through the
 * store (re-hashing the files the index does not know; no database), reconcile_apply adopts
 * what was found and drops the rows whose file is still missing (db_call again). A write that
 * fails (the index locked by another process) does not stop the others: reconcile_apply tries
 * each, counts what it could not write in unwritten and returns the first error. */
struct reconcile_job;
int reconcile_new(int verify_all, struct reconcile_watch *watch, struct reconcile_job **out);
int reconcile_rows(struct reconcile_job *j, struct db *db);
int reconcile_walk(struct reconcile_job *j, struct store *store);
int reconcile_apply(struct reconcile_job *j, struct db *db, struct store *store);
const struct reconcile_report *reconcile_report_of(const struct reconcile_job *j);
void reconcile_free(struct reconcile_job *j);

#endif
