/* SPDX-License-Identifier: Apache-2.0 */
/* The order a blob fill asks in: the primary's blob sources with order before (as listed),
 * the primary, then those with order after. A source that is down is skipped without a
 * request; what each source did is logged and counted. Every byte is verified by the fill
 * (blobs.c), so a source can cost time, never correctness. Loop thread only. */
#include <stdio.h>

#include "cache/impl.h"
#include "metrics/metrics.h"
#include "util/log.h"

/* The upstream at position pos of primary's order; NULL past the end. */
static struct upstream *order_at(struct upstream *primary, int pos)
{
    size_t n = upstream_source_count(primary);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        struct upstream *s = upstream_source(primary, i);
        if (upstream_source_before(s) && seen++ == pos)
            return s;
    }
    if (pos == seen++)
        return primary;
    for (size_t i = 0; i < n; i++) {
        struct upstream *s = upstream_source(primary, i);
        if (!upstream_source_before(s) && seen++ == pos)
            return s;
    }
    return NULL;
}

struct upstream *sources_next(struct upstream *primary, int *step)
{
    for (;;) {
        struct upstream *s = order_at(primary, *step);
        if (!s)
            return NULL;
        (*step)++;
        if (s == primary || upstream_available(s))
            return s;
        metrics_blob_source(upstream_name(primary), upstream_source_name(s),
                            METRICS_SOURCE_SKIPPED);
        log_debug("upstream %s: blob source %s is down: skipped", upstream_name(primary),
                  upstream_source_name(s));
    }
}

int sources_left(struct upstream *primary, int step)
{
    return order_at(primary, step) != NULL;
}

void sources_report(struct upstream *primary, struct upstream *src, const char *digest, int outcome,
                    const char *detail)
{
    const char *up = upstream_name(primary), *name = upstream_source_name(src);
    metrics_blob_source(up, name, (enum metrics_source_outcome)outcome);
    switch (outcome) {
    case METRICS_SOURCE_SERVED:
        log_info("upstream %s: blob source %s served %s", up, name, digest);
        break;
    case METRICS_SOURCE_MISSING:
        log_info("upstream %s: blob source %s lacks %s (%s); asking the next", up, name, digest,
                 detail);
        break;
    case METRICS_SOURCE_WRONG:
        log_warn("upstream %s: blob source %s sent %s for %s; discarded, asking the next", up, name,
                 detail, digest);
        break;
    default:
        log_warn("upstream %s: blob source %s failed for %s (%s); asking the next", up, name,
                 digest, detail);
        break;
    }
}
