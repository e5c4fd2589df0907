/* SPDX-License-Identifier: Apache-2.0 */
/* Operator commands that work on a store, also while a daemon serves it:
 * gc [--dry-run], verify, stats [--json], ls. */
#ifndef REGCACHE_DAEMON_ADMIN_H
#define REGCACHE_DAEMON_ADMIN_H

#include "config/config.h"

/* hosted: collect unreferenced hosted content instead of the cache policy's run. */
int admin_gc(const struct config *cfg, int dry_run, int hosted);
int admin_verify(const struct config *cfg);
int admin_stats(const struct config *cfg, int json);
int admin_ls(const struct config *cfg);
/* Creates or updates user in an htpasswd file with a bcrypt hash; the password comes from a
 * no-echo prompt on a terminal, else from the first line of standard input. */
int admin_passwd(const char *file, const char *user);

#endif
