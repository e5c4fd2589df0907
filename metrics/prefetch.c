/* SPDX-License-Identifier: Apache-2.0 */
/* The prefetch series: runs by outcome, the pulls and bytes they spent, the last run's time.
 * Loop thread only, like the rest of the registry. */
#include <string.h>

#include "metrics/impl.h"
#include "metrics/metrics.h"

static const char *const outcomes[] = {"ok", "budget", "down", "error"};
#define N_OUTCOMES (sizeof(outcomes) / sizeof(outcomes[0]))

static uint64_t runs[N_OUTCOMES], pulls, bytes, last_ms;

void metrics_prefetch_run(const char *outcome, uint64_t finished_ms)
{
    for (size_t i = 0; i < N_OUTCOMES; i++)
        if (!strcmp(outcome, outcomes[i]))
            runs[i]++;
    last_ms = finished_ms;
}

void metrics_prefetch_pull(void)
{
    pulls++;
}

void metrics_prefetch_bytes(uint64_t n)
{
    bytes += n;
}

int metrics__prefetch_write(struct buf *out)
{
    char labels[64];
    TRY(metrics__family(out, "regcache_prefetch_runs_total", "counter",
                        "Prefetch runs by outcome (ok; budget: stopped by the pull budget; down: "
                        "the upstream was down; error: something failed)"));
    for (size_t i = 0; i < N_OUTCOMES; i++) {
        snprintf(labels, sizeof(labels), "result=\"%s\"", outcomes[i]);
        TRY(metrics__u64(out, "regcache_prefetch_runs_total", labels, runs[i]));
    }
    TRY(metrics__family(out, "regcache_prefetch_pulls_total", "counter",
                        "Manifest GETs prefetch made upstream (each one pull)"));
    TRY(metrics__u64(out, "regcache_prefetch_pulls_total", NULL, pulls));
    TRY(metrics__family(out, "regcache_prefetch_bytes_total", "counter",
                        "Blob bytes prefetch fetched upstream"));
    TRY(metrics__u64(out, "regcache_prefetch_bytes_total", NULL, bytes));
    TRY(metrics__family(out, "regcache_prefetch_last_run_timestamp_seconds", "gauge",
                        "When the last prefetch run ended (unix time; 0: none yet)"));
    TRY(metrics__scaled(out, "regcache_prefetch_last_run_timestamp_seconds", NULL, last_ms,
                        1000));
    return 0;
}
