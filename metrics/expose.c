/* SPDX-License-Identifier: Apache-2.0 */
/* The Prometheus text exposition format 0.0.4: # HELP and # TYPE once per family, then its
 * samples, label values escaped. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "metrics/impl.h"
#include "metrics/metrics.h"

/* The distribution registry's buckets (docker/go-metrics): request latencies in seconds... */
static const uint64_t duration_bounds[] = {5000,     10000,    25000,   50000,   100000,
                                           250000,   500000,   1000000, 2500000, 5000000,
                                           10000000, 25000000, 60000000};
static const char *const duration_le[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                                          "1",     "2.5",  "5",     "10",   "25",  "60"};
/* ... and response sizes in bytes, 1 KiB doubling to 2 GiB, spelt as Go prints floats */
static const uint64_t size_bounds[] = {
    1024,     2048,      4096,      8192,      16384,      32768,      65536,    131072,
    262144,   524288,    1048576,   2097152,   4194304,    8388608,    16777216, 33554432,
    67108864, 134217728, 268435456, 536870912, 1073741824, 2147483648u};
static const char *const size_le[] = {"1024",           "2048",           "4096",
                                      "8192",           "16384",          "32768",
                                      "65536",          "131072",         "262144",
                                      "524288",         "1.048576e+06",   "2.097152e+06",
                                      "4.194304e+06",   "8.388608e+06",   "1.6777216e+07",
                                      "3.3554432e+07",  "6.7108864e+07",  "1.34217728e+08",
                                      "2.68435456e+08", "5.36870912e+08", "1.073741824e+09",
                                      "2.147483648e+09"};

_Static_assert(sizeof(duration_bounds) / sizeof(duration_bounds[0]) ==
                   sizeof(duration_le) / sizeof(duration_le[0]),
               "duration buckets and their labels");
_Static_assert(sizeof(size_bounds) / sizeof(size_bounds[0]) == sizeof(size_le) / sizeof(size_le[0]),
               "size buckets and their labels");
_Static_assert(sizeof(size_bounds) / sizeof(size_bounds[0]) <= METRICS_MAX_BUCKETS,
               "room for the size buckets");

const struct metrics_buckets metrics__duration_buckets = {
    sizeof(duration_bounds) / sizeof(duration_bounds[0]), duration_bounds, duration_le};
const struct metrics_buckets metrics__size_buckets = {sizeof(size_bounds) / sizeof(size_bounds[0]),
                                                      size_bounds, size_le};

void metrics__observe(struct metrics_histogram *h, const struct metrics_buckets *b, uint64_t v)
{
    size_t i = 0;
    while (i < b->n && v > b->bounds[i])
        i++;
    metrics__add(&h->counts[i], 1);
    metrics__add(&h->sum, v);
    metrics__add(&h->count, 1);
}

void metrics__histogram_add(struct metrics_histogram *into, const struct metrics_histogram *h)
{
    for (size_t i = 0; i <= METRICS_MAX_BUCKETS; i++)
        metrics__add(&into->counts[i], metrics__get(&h->counts[i]));
    metrics__add(&into->sum, metrics__get(&h->sum));
    metrics__add(&into->count, metrics__get(&h->count));
}

int metrics_escape_label(struct buf *out, const char *value)
{
    int r = 0;
    for (const char *p = value; *p && !r; p++) {
        if (*p == '\\')
            r = buf_append(out, "\\\\", 2);
        else if (*p == '"')
            r = buf_append(out, "\\\"", 2);
        else if (*p == '\n')
            r = buf_append(out, "\\n", 2);
        else
            r = buf_append(out, p, 1);
    }
    return r;
}

int metrics__family(struct buf *out, const char *name, const char *type, const char *help)
{
    /* help texts are ours: no backslash or newline to escape */
    return buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int head(struct buf *out, const char *name, const char *suffix, const char *labels,
                const char *le)
{
    int has = labels && *labels;
    if (!has && !le)
        return buf_printf(out, "%s%s ", name, suffix);
    return buf_printf(out, "%s%s{%s%s%s%s%s} ", name, suffix, has ? labels : "",
                      has && le ? "," : "", le ? "le=\"" : "", le ? le : "", le ? "\"" : "");
}

int metrics__u64(struct buf *out, const char *name, const char *labels, uint64_t v)
{
    int r = head(out, name, "", labels, NULL);
    return r ? r : buf_printf(out, "%" PRIu64 "\n", v);
}

int metrics__i64(struct buf *out, const char *name, const char *labels, int64_t v)
{
    int r = head(out, name, "", labels, NULL);
    return r ? r : buf_printf(out, "%" PRId64 "\n", v);
}

static int scaled_value(struct buf *out, uint64_t v, uint64_t divisor)
{
    if (divisor <= 1)
        return buf_printf(out, "%" PRIu64 "\n", v);
    uint64_t frac = v % divisor;
    if (!frac)
        return buf_printf(out, "%" PRIu64 "\n", v / divisor);
    /* divisor is a power of ten: as many decimals as it has zeros, trailing zeros dropped */
    int digits = 0;
    for (uint64_t d = divisor; d > 1; d /= 10)
        digits++;
    char dec[24];
    snprintf(dec, sizeof(dec), "%0*" PRIu64, digits, frac);
    size_t n = strlen(dec);
    while (n > 1 && dec[n - 1] == '0')
        dec[--n] = '\0';
    return buf_printf(out, "%" PRIu64 ".%s\n", v / divisor, dec);
}

int metrics__scaled(struct buf *out, const char *name, const char *labels, uint64_t v,
                    uint64_t divisor)
{
    int r = head(out, name, "", labels, NULL);
    return r ? r : scaled_value(out, v, divisor);
}

int metrics__histogram(struct buf *out, const char *name, const char *labels,
                       const struct metrics_histogram *h, const struct metrics_buckets *b,
                       uint64_t divisor)
{
    uint64_t cumulative = 0;
    int r = 0;
    for (size_t i = 0; i <= b->n && !r; i++) {
        cumulative += h->counts[i];
        r = head(out, name, "_bucket", labels, i < b->n ? b->le[i] : "+Inf");
        if (!r)
            r = buf_printf(out, "%" PRIu64 "\n", cumulative);
    }
    if (!r)
        r = head(out, name, "_sum", labels, NULL);
    if (!r)
        r = scaled_value(out, h->sum, divisor);
    if (!r)
        r = head(out, name, "_count", labels, NULL);
    if (!r)
        r = buf_printf(out, "%" PRIu64 "\n", h->count);
    return r;
}
