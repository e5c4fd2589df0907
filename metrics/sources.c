/* SPDX-License-Identifier: Apache-2.0 */
/* regcache_blob_source_requests_total{upstream,source,outcome}: what each configured blob
 * source did for the fills that asked it. Series for every configured source and outcome from
 * the start, at 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "metrics/impl.h"
#include "metrics/metrics.h"

static const char *const outcome_names[METRICS_SOURCE_N_OUTCOMES] = {"served", "missing", "wrong",
                                                                     "failed", "skipped"};

struct source_metrics {
    char *upstream, *source;
    char *label; /* upstream="...",source="..." */
    uint64_t counts[METRICS_SOURCE_N_OUTCOMES];
};

static struct source_metrics *sources;
static size_t n_sources;

int metrics__sources_init(const struct config *cfg)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        n += cfg->upstreams[i].n_blob_sources;
    if (!n)
        return 0;
    sources = calloc(n, sizeof(*sources));
    if (!sources)
        return -1;
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        for (size_t j = 0; j < u->n_blob_sources; j++) {
            struct source_metrics *m = &sources[n_sources++];
            struct buf b;
            buf_init(&b, 4096);
            m->upstream = strdup(u->name);
            m->source = strdup(u->blob_sources[j].name);
            if (!m->upstream || !m->source || buf_printf(&b, "upstream=\"") ||
                metrics_escape_label(&b, u->name) || buf_printf(&b, "\",source=\"") ||
                metrics_escape_label(&b, u->blob_sources[j].name) || buf_append(&b, "\"", 1) ||
                buf_terminate(&b)) {
                buf_free(&b);
                return -1;
            }
            m->label = b.data;
        }
    }
    return 0;
}

void metrics__sources_free(void)
{
    for (size_t i = 0; i < n_sources; i++) {
        free(sources[i].upstream);
        free(sources[i].source);
        free(sources[i].label);
    }
    free(sources);
    sources = NULL;
    n_sources = 0;
}

void metrics_blob_source(const char *upstream, const char *source,
                         enum metrics_source_outcome outcome)
{
    if ((unsigned)outcome >= METRICS_SOURCE_N_OUTCOMES)
        return;
    for (size_t i = 0; i < n_sources; i++)
        if (!strcmp(sources[i].upstream, upstream) && !strcmp(sources[i].source, source))
            sources[i].counts[outcome]++;
}

int metrics__sources_expose(struct buf *out)
{
    char labels[4200];
    int rc = metrics__family(out, "regcache_blob_source_requests_total", "counter",
                             "Blobs asked of each blob source, by outcome (served: verified and "
                             "stored; missing: 401, 403 or 404; wrong: bytes that did not match "
                             "the digest; failed: no answer, an error or a cut; skipped: the "
                             "source was down)");
    for (size_t i = 0; !rc && i < n_sources; i++)
        for (int o = 0; !rc && o < METRICS_SOURCE_N_OUTCOMES; o++) {
            snprintf(labels, sizeof(labels), "%s,outcome=\"%s\"", sources[i].label,
                     outcome_names[o]);
            rc = metrics__u64(out, "regcache_blob_source_requests_total", labels,
                              sources[i].counts[o]);
        }
    return rc;
}
