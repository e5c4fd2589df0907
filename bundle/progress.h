/* SPDX-License-Identifier: Apache-2.0 */
/* A one-line progress report on a terminal (standard error): items, bytes, rate and time left,
 * redrawn at most four times a second. Silent when standard error is not a terminal. */
#ifndef REGCACHE_BUNDLE_PROGRESS_H
#define REGCACHE_BUNDLE_PROGRESS_H

#include <stdint.h>

struct progress {
    int on;
    const char *what;            /* "export", "import" */
    const char *unit;            /* "blobs", "entries" */
    uint64_t items, items_total; /* items_total 0: unknown */
    uint64_t bytes, bytes_total;
    uint64_t started_us, drawn_us;
};

void progress_start(struct progress *p, const char *what, const char *unit);
/* Redraws when the last drawing is old enough (force: now). */
void progress_draw(struct progress *p, int force);
/* Clears the line (before a message or the summary). */
void progress_clear(struct progress *p);
/* Seconds since progress_start. */
double progress_seconds(const struct progress *p);

#endif
