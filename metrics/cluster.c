/* SPDX-License-Identifier: Apache-2.0 */
/* The cluster series: members up and down, misses asked of members (by kind and result),
 * members' requests taken in, and hosted repositories' requests relayed to their holder. Written only with a cluster section. Loop thread only. */
#include <stdio.h>

#include "metrics/impl.h"
#include "metrics/metrics.h"

static int in_cluster;
static uint64_t members_up, members_down;
static uint64_t asked[METRICS_N_TYPES][METRICS_N_CLUSTER_RESULTS];
static uint64_t peer_served, peer_refused;
static uint64_t relayed[METRICS_N_RELAY_RESULTS];

static const char *const results[METRICS_N_CLUSTER_RESULTS] = {"answered", "failed"};

void metrics_cluster_members(uint64_t up, uint64_t down)
{
    in_cluster = 1;
    members_up = up;
    members_down = down;
}

void metrics_cluster_asked(enum metrics_type kind, enum metrics_cluster_result result)
{
    if (kind < METRICS_N_TYPES && result < METRICS_N_CLUSTER_RESULTS)
        asked[kind][result]++;
}

void metrics_cluster_peer_request(int refused)
{
    if (refused)
        peer_refused++;
    else
        peer_served++;
}

void metrics_cluster_relayed(enum metrics_relay_result result)
{
    if (result < METRICS_N_RELAY_RESULTS)
        relayed[result]++;
}

int metrics__cluster_write(struct buf *out)
{
    if (!in_cluster)
        return 0;
    static const char *const kinds[METRICS_N_TYPES] = {"blob", "manifest"};
    char labels[96];
    TRY(metrics__family(out, "regcache_cluster_members", "gauge",
                        "Members of the cluster (this one included) by state, as this one sees "
                        "them"));
    TRY(metrics__u64(out, "regcache_cluster_members", "state=\"up\"", members_up));
    TRY(metrics__u64(out, "regcache_cluster_members", "state=\"down\"", members_down));
    TRY(metrics__family(out, "regcache_cluster_asked_total", "counter",
                        "Misses asked of the owning member instead of the upstream, by kind and "
                        "result (failed: no answer, cut, or refused; then the successor or the "
                        "upstream was asked)"));
    for (int k = 0; k < METRICS_N_TYPES; k++)
        for (int r = 0; r < METRICS_N_CLUSTER_RESULTS; r++) {
            snprintf(labels, sizeof(labels), "kind=\"%s\",result=\"%s\"", kinds[k], results[r]);
            TRY(metrics__u64(out, "regcache_cluster_asked_total", labels, asked[k][r]));
        }
    TRY(metrics__family(out, "regcache_cluster_peer_requests_total", "counter",
                        "Requests from members (X-Regcache-Peer), by result (refused: the "
                        "signature did not verify)"));
    TRY(metrics__u64(out, "regcache_cluster_peer_requests_total", "result=\"served\"",
                     peer_served));
    TRY(metrics__u64(out, "regcache_cluster_peer_requests_total", "result=\"refused\"",
                     peer_refused));
    static const char *const relay_results[METRICS_N_RELAY_RESULTS] = {"answered", "failed",
                                                                       "abandoned"};
    TRY(metrics__family(out, "regcache_cluster_relayed_total", "counter",
                        "Requests for hosted repositories relayed to the member that holds "
                        "them, by result (answered: whatever status it gave; failed: it did not "
                        "answer or the transfer was cut; abandoned: the client went first)"));
    for (int k = 0; k < METRICS_N_RELAY_RESULTS; k++) {
        snprintf(labels, sizeof(labels), "result=\"%s\"", relay_results[k]);
        TRY(metrics__u64(out, "regcache_cluster_relayed_total", labels, relayed[k]));
    }
    return 0;
}
