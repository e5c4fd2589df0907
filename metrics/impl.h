/* SPDX-License-Identifier: Apache-2.0 */
/* Internals of the metrics module: histograms and the text exposition writer (expose.c),
 * process figures from /proc (process.c). */
#ifndef REGCACHE_METRICS_IMPL_H
#define REGCACHE_METRICS_IMPL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define METRICS_MAX_BUCKETS 24 /* finite bounds; +Inf is the one after them */

/* Upper bounds of a histogram, with their le label as the distribution registry spells it. */
struct metrics_buckets {
    size_t n;
    const uint64_t *bounds; /* in the histogram's base unit (microseconds, bytes), ascending */
    const char *const *le;
};

/* Counts per bucket (not cumulative: the exposition adds them up); counts[n] is past the last
 * bound. sum is in the base unit. */
struct metrics_histogram {
    _Atomic uint64_t counts[METRICS_MAX_BUCKETS + 1];
    _Atomic uint64_t sum, count;
};

/* Adds v to a figure that only one thread writes (its loop's) and any thread may read: plain
 * loads and stores, which other threads see whole. */
static inline void metrics__add(_Atomic uint64_t *x, uint64_t v)
{
    atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + v,
                          memory_order_relaxed);
}
static inline uint64_t metrics__get(const _Atomic uint64_t *x)
{
    return atomic_load_explicit((_Atomic uint64_t *)x, memory_order_relaxed);
}
/* into += h (a sum over the loops, for an exposition) */
void metrics__histogram_add(struct metrics_histogram *into, const struct metrics_histogram *h);

extern const struct metrics_buckets metrics__duration_buckets; /* microseconds */
extern const struct metrics_buckets metrics__size_buckets;     /* bytes */

void metrics__observe(struct metrics_histogram *h, const struct metrics_buckets *b, uint64_t v);

/* The writer: each returns 0 or a negative errno (the buffer's). labels is a preformatted,
 * already escaped list (`a="x",b="y"`) or NULL/"" for none. */
int metrics__family(struct buf *out, const char *name, const char *type, const char *help);
int metrics__u64(struct buf *out, const char *name, const char *labels, uint64_t v);
int metrics__i64(struct buf *out, const char *name, const char *labels, int64_t v);
/* v / divisor with six decimals at most (divisor 1 or 1000000). */
int metrics__scaled(struct buf *out, const char *name, const char *labels, uint64_t v,
                    uint64_t divisor);
/* name_bucket (cumulative, le as the buckets spell it, +Inf last), name_sum (in base units
 * divided by divisor), name_count. */
int metrics__histogram(struct buf *out, const char *name, const char *labels,
                       const struct metrics_histogram *h, const struct metrics_buckets *b,
                       uint64_t divisor);

struct metrics_process {
    uint64_t cpu_us, rss_bytes, vsize_bytes, open_fds, max_fds;
};
/* Reads /proc/self (stat, fd) and the descriptor limit; what cannot be read is 0. */
void metrics__process(struct metrics_process *out);
/* The process's start, wall clock ms (from /proc/self/stat and the boot time); 0: unknown. */
uint64_t metrics__process_start_ms(void);
/* The prefetch series (metrics/prefetch.c). */
int metrics__prefetch_write(struct buf *out);
int metrics__s3_write(struct buf *out);
/* The cluster series (metrics/cluster.c); nothing without a cluster. */
int metrics__cluster_write(struct buf *out);

/* The blob sources' series (sources.c): set up from the configuration, freed, written. */
struct config;
int metrics__sources_init(const struct config *cfg);
void metrics__sources_free(void);
int metrics__sources_expose(struct buf *out);

/* Returns the first non-zero result of a write (the exposition's functions). */
#define TRY(x)                                                                                     \
    do {                                                                                           \
        int r_ = (x);                                                                              \
        if (r_)                                                                                    \
            return r_;                                                                             \
    } while (0)

#endif
