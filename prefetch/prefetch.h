/* SPDX-License-Identifier: Apache-2.0 */
/* Prefetch: keeps the prefetch list warm within the pull budget.
 *
 * Each listed reference runs once per prefetch.schedule (offset by a hash of it, inside
 * prefetch.window when one is set; prefetch/schedule.h). A run goes through the cache's own
 * paths (cache_manifest, cache_blob), so its requests join clients' flights and everything is
 * verified: a tag glob is expanded with the upstream's tags list; each tag is revalidated with
 * a HEAD, and only a tag that moved (or is not cached) costs a GET; an index's children (all,
 * or prefetch.platforms) and each image's config and layers are fetched only when missing.
 *
 * The budget: a manifest GET is one pull. Before anything that may cost one, a run stops
 * (saying so in its result) when it made prefetch.max_pulls_per_window pulls in the current
 * window, or when the upstream's last announced ratelimit-remaining is at or below
 * prefetch.reserve. Nothing is asked of an upstream that is down or backing off after a 429.
 * Runs go one at a time; a run of `regcache prefetch` waits for the one in progress.
 * Loop thread only. */
#ifndef REGCACHE_PREFETCH_PREFETCH_H
#define REGCACHE_PREFETCH_PREFETCH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"

struct cache;
struct upstream_client;
struct db;
struct prefetch;

#define PREFETCH_QUEUE_MAX 16 /* runs of `regcache prefetch` waiting at most */

struct prefetch_result {
    uint64_t started_ms, finished_ms;
    const char *trigger; /* "scheduled" or "command" */
    unsigned references, tags, heads, gets, blobs, errors;
    uint64_t bytes; /* of the blobs fetched */
    const char *outcome; /* "ok", "budget", "down", "error" */
    char stopped[200];   /* why the run stopped early; "" when it went to the end */
    char error[300];     /* the first error */
    char current[700];   /* what is being fetched (progress) */
};

typedef void (*prefetch_cb)(void *ud, const struct prefetch_result *r);

/* Each finished run is recorded in db (db_add_prefetch_run, through db_call). */
int prefetch_new(uv_loop_t *loop, const struct config *cfg, struct cache *cache,
                 struct upstream_client *up, struct db *db, struct prefetch **out);
/* Starts the schedule (nothing when the prefetch list is empty). */
void prefetch_start(struct prefetch *p);
/* Runs refs once (each checked as a reference: 0, or -EINVAL and why in err; -EBUSY when
 * PREFETCH_QUEUE_MAX runs wait). step is called as it goes, done once at the end; neither is
 * called after prefetch_forget(p, ud). */
int prefetch_run(struct prefetch *p, char *const *refs, size_t n, prefetch_cb step,
                 prefetch_cb done, void *ud, char *err, size_t errlen);
/* The requester ud went away: its run goes on (or is dropped while waiting), unreported. */
void prefetch_forget(struct prefetch *p, void *ud);
/* The latest finished run: 0, or -ENOENT when none finished yet. */
int prefetch_last(const struct prefetch *p, struct prefetch_result *out);
/* Stops the schedule and lets go of fills (before cache_shutdown). */
void prefetch_stop(struct prefetch *p);
/* After cache_free. */
void prefetch_free(struct prefetch *p);

#endif
