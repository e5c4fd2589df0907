/* SPDX-License-Identifier: Apache-2.0 */
#include "bundle/progress.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/parse.h"

#define PROGRESS_EVERY_US 250000

void progress_start(struct progress *p, const char *what, const char *unit)
{
    memset(p, 0, sizeof(*p));
    p->on = isatty(STDERR_FILENO);
    p->what = what;
    p->unit = unit;
    p->started_us = clock_mono_us();
}

double progress_seconds(const struct progress *p)
{
    return (double)(clock_mono_us() - p->started_us) / 1e6;
}

void progress_draw(struct progress *p, int force)
{
    if (!p->on)
        return;
    uint64_t now = clock_mono_us();
    if (!force && now - p->drawn_us < PROGRESS_EVERY_US)
        return;
    p->drawn_us = now;
    double secs = (double)(now - p->started_us) / 1e6;
    double rate = secs > 0 ? (double)p->bytes / secs : 0;
    char done[32], total[32], r[32], items[64], eta[32] = "";
    if (p->items_total)
        snprintf(items, sizeof(items), "%llu/%llu %s", (unsigned long long)p->items,
                 (unsigned long long)p->items_total, p->unit);
    else
        snprintf(items, sizeof(items), "%llu %s", (unsigned long long)p->items, p->unit);
    if (p->bytes_total && rate > 0 && p->bytes <= p->bytes_total) {
        unsigned long long left = (unsigned long long)((double)(p->bytes_total - p->bytes) / rate);
        if (left >= 3600)
            snprintf(eta, sizeof(eta), ", ETA %lluh%02llum", left / 3600, left / 60 % 60);
        else if (left >= 60)
            snprintf(eta, sizeof(eta), ", ETA %llum%02llus", left / 60, left % 60);
        else
            snprintf(eta, sizeof(eta), ", ETA %llus", left);
    }
    format_size(p->bytes, done, sizeof(done));
    if (p->bytes_total)
        format_size(p->bytes_total, total, sizeof(total));
    fprintf(stderr, "\r\033[K%s: %s, %s%s%s, %s/s%s", p->what, items, done,
            p->bytes_total ? " of " : "", p->bytes_total ? total : "",
            format_size((uint64_t)rate, r, sizeof(r)), eta);
    fflush(stderr);
}

void progress_clear(struct progress *p)
{
    if (p->on && p->drawn_us) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}
