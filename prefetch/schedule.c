/* SPDX-License-Identifier: Apache-2.0 */
#include "prefetch/schedule.h"

#define DAY_MIN 1440

uint64_t schedule_spread(const char *text, uint64_t span)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return span ? h % span : 0;
}

int schedule_in_window(const struct prefetch_window *w, int minute)
{
    if (w->from < 0)
        return 1;
    if (w->from < w->to)
        return minute >= w->from && minute < w->to;
    return minute >= w->from || minute < w->to;
}

static int window_len(const struct prefetch_window *w)
{
    return (w->to - w->from + DAY_MIN) % DAY_MIN;
}

uint64_t schedule_next(const struct prefetch_window *w, uint64_t due_ms, int due_minute,
                       int due_s, const char *text)
{
    if (schedule_in_window(w, due_minute))
        return due_ms;
    uint64_t wait_min = (uint64_t)((w->from - due_minute + DAY_MIN) % DAY_MIN);
    uint64_t opening = due_ms + wait_min * 60000 - (uint64_t)due_s * 1000;
    return opening + schedule_spread(text, (uint64_t)window_len(w) * 60000 / 2);
}

uint64_t schedule_budget_window(const struct prefetch_window *w, uint64_t interval_ms,
                                uint64_t now_ms, int minute, int s)
{
    if (w->from < 0)
        return interval_ms ? now_ms - now_ms % interval_ms : 0;
    uint64_t since = (uint64_t)((minute - w->from + DAY_MIN) % DAY_MIN) * 60000 +
                     (uint64_t)s * 1000 + now_ms % 1000;
    return now_ms - (since < now_ms ? since : now_ms);
}
