/* SPDX-License-Identifier: Apache-2.0 */
/* When prefetch runs, as pure functions of the clock (the local day's minutes for a window):
 * each reference once per schedule interval, offset by a hash of it so that a long list does
 * not fire at once, and only inside the window when one is configured. */
#ifndef REGCACHE_PREFETCH_SCHEDULE_H
#define REGCACHE_PREFETCH_SCHEDULE_H

#include <stdint.h>

#define PREFETCH_FIRST_SPREAD_MS 60000 /* the first runs after start come within this */

struct prefetch_window {
    int from, to; /* minutes of the local day; from < 0: no window */
};

/* A deterministic offset of text in [0, span) (FNV-1a). */
uint64_t schedule_spread(const char *text, uint64_t span);

/* Inside the window at local minute of day minute (a window may pass midnight)? */
int schedule_in_window(const struct prefetch_window *w, int minute);

/* When a run due at due_ms (local minute of day due_minute, second of that minute due_s) may
 * start: due_ms itself inside the window (or with none), else the window's next opening plus
 * text's spread within the window. */
uint64_t schedule_next(const struct prefetch_window *w, uint64_t due_ms, int due_minute,
                       int due_s, const char *text);

/* The start of the budget window now is in: the opening of the configured window (local
 * minute minute, second s), else now rounded down to the schedule interval. */
uint64_t schedule_budget_window(const struct prefetch_window *w, uint64_t interval_ms,
                                uint64_t now_ms, int minute, int s);

#endif
