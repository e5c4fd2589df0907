/* SPDX-License-Identifier: Apache-2.0 */
/* A replica's view of its cluster: ownership, member health, peer requests (cluster.h). */
#include "cluster/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/members.h"
#include "cluster/nonces.h"
#include "cluster/peer_auth.h"
#include "metrics/metrics.h"
#include "util/clock.h"
#include "util/log.h"

#define PROBE_DEFAULT_MS 2000

struct probe {
    struct cluster *cl;
    size_t member;
    struct upstream_req *req;
    long status;
};

struct cluster {
    uv_loop_t *loop;
    struct upstream_client *up;
    struct members *members;
    char *secret;
    size_t secret_len;
    uv_timer_t timer;
    int timer_on;
    uint64_t interval_ms;
    struct probe probes[MEMBERS_MAX];
    struct nonces *nonces; /* relay nonces taken within the window */
};

static void count_members(const struct cluster *cl)
{
    size_t up = cluster_up(cl);
    metrics_cluster_members(up, members_count(cl->members) - up);
}

static void mark(struct cluster *cl, size_t i, int up, const char *why)
{
    if (i == members_self(cl->members) || members_is_up(cl->members, i) == up)
        return;
    members_set_up(cl->members, i, up, clock_wall_ms());
    count_members(cl);
    if (up)
        log_info("cluster: member %s is up", members_url(cl->members, i));
    else
        log_warn("cluster: member %s is down (%s): its keys go to their successors",
                 members_url(cl->members, i), why);
}

static void probe_headers(void *ud, const struct upstream_response *resp)
{
    struct probe *p = ud;
    p->status = resp->status;
}

static int probe_data(void *ud, const char *data, size_t len)
{
    (void)ud, (void)data, (void)len;
    return 0;
}

static void probe_done(void *ud, const struct upstream_response *resp, int result)
{
    (void)result;
    struct probe *p = ud;
    p->req = NULL;
    long status = resp->status ? resp->status : p->status;
    char why[300];
    if (status)
        snprintf(why, sizeof(why), "it answered a probe with HTTP %ld%s", status,
                 status == 401 || status == 403 ? " (is cluster.secret the same?)" : "");
    else
        snprintf(why, sizeof(why), "%s", resp->error ? resp->error : "no answer to a probe");
    mark(p->cl, p->member, status == 200, why);
}

static const struct upstream_callbacks probe_callbacks = {probe_headers, probe_data, probe_done};

static void on_probe_timer(uv_timer_t *t)
{
    struct cluster *cl = t->data;
    struct upstream *u0 = upstream_get(cl->up, 0);
    for (size_t i = 0; i < members_count(cl->members); i++) {
        struct probe *p = &cl->probes[i];
        struct upstream *peer = u0 ? upstream_peer(u0, i) : NULL;
        if (!peer || p->req)
            continue;
        p->status = 0;
        p->req = upstream_probe(peer, &probe_callbacks, p);
    }
}

int cluster_new(uv_loop_t *loop, const struct config *cfg, struct upstream_client *up,
                struct cluster **out)
{
    *out = NULL;
    if (!cfg->n_cluster_members)
        return 0;
    struct cluster *cl = calloc(1, sizeof(*cl));
    if (!cl || !(cl->nonces = nonces_new())) {
        free(cl);
        return -ENOMEM;
    }
    char why[300];
    int rc = members_new((const char *const *)cfg->cluster_members, cfg->n_cluster_members,
                         cfg->cluster_self, &cl->members, why, sizeof(why));
    if (rc) {
        if (rc == -EINVAL)
            log_error("cluster: %s", why);
        free(cl);
        return rc;
    }
    if (!(cl->secret = strdup(cfg->cluster_secret))) {
        members_free(cl->members);
        free(cl);
        return -ENOMEM;
    }
    cl->secret_len = strlen(cl->secret);
    cl->loop = loop;
    cl->up = up;
    cl->interval_ms =
        cfg->cluster_probe_interval_ms ? cfg->cluster_probe_interval_ms : PROBE_DEFAULT_MS;
    for (size_t i = 0; i < MEMBERS_MAX; i++) {
        cl->probes[i].cl = cl;
        cl->probes[i].member = i;
    }
    count_members(cl);
    uv_timer_init(loop, &cl->timer);
    cl->timer.data = cl;
    cl->timer_on = 1;
    uv_timer_start(&cl->timer, on_probe_timer, 0, cl->interval_ms);
    log_info("cluster: %zu members, this one %s; members probed every %llu ms",
             members_count(cl->members), members_url(cl->members, members_self(cl->members)),
             (unsigned long long)cl->interval_ms);
    *out = cl;
    return 0;
}

void cluster_stop(struct cluster *cl)
{
    if (!cl || !cl->timer_on)
        return;
    cl->timer_on = 0;
    uv_timer_stop(&cl->timer);
    uv_close((uv_handle_t *)&cl->timer, NULL);
    for (size_t i = 0; i < MEMBERS_MAX; i++) {
        if (cl->probes[i].req)
            upstream_req_cancel(cl->probes[i].req);
        cl->probes[i].req = NULL;
    }
}

void cluster_free(struct cluster *cl)
{
    if (!cl)
        return;
    members_free(cl->members);
    nonces_free(cl->nonces);
    free(cl->secret);
    free(cl);
}

struct upstream *cluster_via(struct cluster *cl, struct upstream *u, const char *key)
{
    if (!cl)
        return u;
    size_t order[MEMBERS_MAX], self = members_self(cl->members);
    members_order(cl->members, key, order);
    for (size_t k = 0; k < members_count(cl->members); k++) {
        size_t i = order[k];
        if (i == self)
            return u;
        struct upstream *peer = upstream_peer(u, i);
        if (peer && members_is_up(cl->members, i) && upstream_available(peer))
            return peer;
    }
    return u;
}

void cluster_member_failed(struct cluster *cl, struct upstream *peer, const char *why)
{
    if (cl && peer && upstream_is_peer(peer))
        mark(cl, upstream_peer_member(peer), 0, why);
}

size_t cluster_owner(const struct cluster *cl, const char *key)
{
    return members_owner(cl->members, key);
}

void cluster_member_down(struct cluster *cl, size_t i, const char *why)
{
    if (cl && i < members_count(cl->members))
        mark(cl, i, 0, why);
}

int cluster_sign(const struct cluster *cl, const char *method, const char *target,
                 const char *relay, char *out, size_t len)
{
    return peer_auth_sign_relay(cl->secret, cl->secret_len,
                                members_url(cl->members, members_self(cl->members)), method,
                                target, relay, (int64_t)(clock_wall_ms() / 1000), out, len);
}

int cluster_verify(struct cluster *cl, const char *value, const char *method, const char *target,
                   const char *relay, char *sender, size_t senderlen, char *why, size_t whylen)
{
    if (!cl) {
        snprintf(why, whylen, "this replica is not in a cluster");
        return -EACCES;
    }
    size_t who;
    int rc = peer_auth_verify_relay(cl->secret, cl->secret_len, cl->members, value, method,
                                    target, relay, (int64_t)(clock_wall_ms() / 1000), &who, why,
                                    whylen);
    if (rc == 0)
        snprintf(sender, senderlen, "%s", members_url(cl->members, who));
    return rc;
}

int cluster_relay_admit(struct cluster *cl, const char *sender, const char *receiver,
                        const char *nonce, char *why, size_t whylen)
{
    const char *self = members_url(cl->members, members_self(cl->members));
    if (strcmp(receiver, self)) {
        snprintf(why, whylen, "relayed to %s, not to this member (%s)", receiver, self);
        return -EACCES;
    }
    int rc = nonces_take(cl->nonces, sender, nonce, clock_wall_ms());
    if (rc == -EALREADY)
        snprintf(why, whylen, "a relay sent again (its nonce was taken already)");
    else if (rc == -ENOSPC)
        snprintf(why, whylen, "more than %d relays within the time window", NONCES_MAX);
    else if (rc)
        snprintf(why, whylen, "out of memory");
    return rc ? -EACCES : 0;
}

size_t cluster_size(const struct cluster *cl)
{
    return cl ? members_count(cl->members) : 0;
}

size_t cluster_up(const struct cluster *cl)
{
    size_t n = 0;
    for (size_t i = 0; cl && i < members_count(cl->members); i++)
        n += members_is_up(cl->members, i);
    return n;
}

const char *cluster_member_url(const struct cluster *cl, size_t i)
{
    return members_url(cl->members, i);
}

int cluster_member_is_up(const struct cluster *cl, size_t i)
{
    return members_is_up(cl->members, i);
}

size_t cluster_self(const struct cluster *cl)
{
    return members_self(cl->members);
}
