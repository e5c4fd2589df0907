/* SPDX-License-Identifier: Apache-2.0 */
/* Operator commands that work on a store, also while a daemon serves it:
 * gc [--dry-run], verify, stats [--json], ls. */
#ifndef REGCACHE_DAEMON_ADMIN_H
#define REGCACHE_DAEMON_ADMIN_H

#include <stdint.h>

#include "config/config.h"

struct store;
struct db;
struct admin_handles {
    struct store *store;
    struct db *db;
};
/* Opens cfg's store and index (saying why not on stderr): 0, or 1. */
int admin_open(const struct config *cfg, struct admin_handles *h);
void admin_close(struct admin_handles *h);
struct pin_set;
/* What cfg's pin and prefetch lists reach in h's store (cache/pins.h), NULL in *out when
 * nothing is listed: 0, or 1 after a message on stderr. */
int admin_pins(const struct config *cfg, struct admin_handles *h, struct pin_set **out);
/* Waits until every running daemon has read the purge journal up to seq; warns when one has not
 * (daemon/purge.c). */
void admin_wait_daemons(struct db *db, int64_t seq);

/* `regcache purge TARGET [--dry-run] [-c FILE]` (daemon/purge.c). */
int purge_main(int argc, char **argv);
/* `regcache prefetch REF... [-c FILE]` (daemon/prefetch_cmd.c). */
int prefetch_main(int argc, char **argv);
/* regcache s3-sync [-c FILE] [--dry-run] [--jobs N] (daemon/s3_sync.c) */
int s3_sync_main(int argc, char **argv);

/* hosted: collect unreferenced hosted content instead of the cache policy's run. */
int admin_gc(const struct config *cfg, int dry_run, int hosted);
int admin_verify(const struct config *cfg);
int admin_stats(const struct config *cfg, int json);
int admin_ls(const struct config *cfg);
/* Creates or updates user in an htpasswd file with a bcrypt hash; the password comes from a
 * no-echo prompt on a terminal, else from the first line of standard input. */
int admin_passwd(const char *file, const char *user);

#endif
