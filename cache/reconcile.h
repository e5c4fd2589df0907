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

#endif
