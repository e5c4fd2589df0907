/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the registry API (api.c) and what worker loops answer themselves
 * (worker.c). */
#ifndef REGCACHE_REGISTRY_IMPL_H
#define REGCACHE_REGISTRY_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <uv.h>

#include "config/config.h"
#include "registry/route.h"
#include "util/reference.h"

#define REPO_MAX (REF_NAME_MAX + 16)

struct cache;
struct upstream;
struct upstream_client;
struct registry_worker;
struct visit_batch;

struct registry {
    struct cache *cache;
    struct upstream_client *up;
    struct auth *auth;     /* NULL: no authentication */
    struct hosted *hosted; /* NULL: no hosted repositories */
    struct ui *ui;         /* NULL: no status page */
    struct cors *cors;     /* NULL: no CORS */
    const struct rules *rules; /* NULL: no pull rules */
    char instance[CONFIG_INSTANCE_ID_MAX + 1]; /* this mirror in Via; "": no loop check */
    struct cluster *cluster;   /* NULL: not in a cluster */
    /* worker loops (worker.c): [i] is loop i's, [0] unused */
    struct registry_worker **workers;
    unsigned n_workers;
    uint64_t revalidate_after_ms; /* how long a tag a worker was taught stays fresh */
    /* what worker loops served, for the first loop to record (access times, references) */
    pthread_mutex_t visits_lock;
    struct visit_batch *visits;
    uv_async_t visits_async;
    int visits_on;
};

/* The upstream a route goes to (its ns, a leading component naming one, else the first), with
 * the repository as that upstream names it in repo (Docker Hub's library/ added); NULL when
 * its ns names none. */
struct upstream *registry__pick_upstream(struct registry *r, const struct route *rt, char *repo,
                                         size_t repolen);
/* A hosted repository's route (see api.c). */
int registry__for_hosted(const struct registry *r, const struct route *rt);

#endif
