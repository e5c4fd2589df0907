/* SPDX-License-Identifier: Apache-2.0 */
/* The S3 tier in the blob path (the `s3` section): between the local store (L1) and the
 * upstreams. A fill asks the bucket first (blobs.c); what the bucket lacks comes from the
 * upstream, and once the fill has committed it to the local store it is written behind into
 * the bucket, so the next replica or a rebuilt node finds it there.
 *
 * A write-behind PUT carries the blob's digest (the store checks the bytes) and If-None-Match
 * (a 412: another replica stored it first, which is as good). At most L2_PUTS_AT_ONCE go at
 * once; the rest wait in order. One that fails for want of the store (no answer, a 5xx) is
 * kept and tried again every L2_RETRY_MS, so commits drain once the store is back; at most
 * L2_QUEUE_MAX wait, past that the oldest are dropped with a warning (`regcache s3-sync`
 * sends them later). Nothing here blocks a client: a pull never waits for a write-behind.
 * Loop thread only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache/impl.h"
#include "s3/client.h"
#include "store/store.h"
#include "util/log.h"

#define L2_PUTS_AT_ONCE 4
#define L2_RETRY_MS 5000
#define L2_QUEUE_MAX 100000

struct l2_put {
    struct l2 *l2;
    char digest[DIGEST_MAX];
    struct s3_upload *up;
    struct l2_put *next;
};

struct l2 {
    struct cache *c;
    struct s3_client *s3;
    struct l2_put *head, *tail; /* waiting, in order */
    size_t queued, running;
    struct l2_put *inflight[L2_PUTS_AT_ONCE];
    uv_timer_t retry;
    int retry_on, stopping;
};

int l2_start(struct cache *c)
{
    const struct config *cfg = c->cfg;
    if (!cfg->s3_endpoint)
        return 0;
    struct l2 *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->c = c;
    struct s3_settings st = {.endpoint = cfg->s3_endpoint, .bucket = cfg->s3_bucket,
                             .region = cfg->s3_region, .access_key = cfg->s3_access_key,
                             .secret_key = cfg->s3_secret_key, .prefix = cfg->s3_prefix,
                             .ca_file = cfg->s3_ca_file, .part_size = cfg->s3_part_size};
    char why[256];
    int r = s3_client_new(c->up, &st, &l->s3, why, sizeof(why));
    if (r) {
        log_error("s3: %s", why);
        free(l);
        return r;
    }
    uv_timer_init(c->loop, &l->retry);
    l->retry.data = l;
    uv_unref((uv_handle_t *)&l->retry);
    c->l2 = l;
    log_info("s3 tier: bucket %s at %s", cfg->s3_bucket, cfg->s3_endpoint);
    return 0;
}

int l2_enabled(const struct cache *c)
{
    return c->l2 != NULL && !c->l2->stopping;
}

struct s3_op *l2_get(struct cache *c, const char *digest, s3_data_fn on_data, s3_done_fn done,
                     void *ud)
{
    char key[128];
    if (!l2_enabled(c) || s3_blob_key(digest, key, sizeof(key)))
        return NULL;
    return s3_get(c->l2->s3, key, 0, UINT64_MAX, on_data, done, ud);
}

static void pump(struct l2 *l);

static void enqueue(struct l2 *l, struct l2_put *p)
{
    p->next = NULL;
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
    l->queued++;
    while (l->queued > L2_QUEUE_MAX) {
        struct l2_put *old = l->head;
        l->head = old->next;
        if (!l->head)
            l->tail = NULL;
        l->queued--;
        log_warn("s3 tier: %s not written (more than %d waiting); regcache s3-sync sends it",
                 old->digest, L2_QUEUE_MAX);
        free(old);
    }
}

static void on_retry(uv_timer_t *t)
{
    struct l2 *l = t->data;
    l->retry_on = 0;
    pump(l);
}

static void slot_free(struct l2 *l, struct l2_put *p)
{
    for (size_t i = 0; i < L2_PUTS_AT_ONCE; i++)
        if (l->inflight[i] == p)
            l->inflight[i] = NULL;
    l->running--;
}

static void on_put(void *ud, const struct s3_reply *r)
{
    struct l2_put *p = ud;
    struct l2 *l = p->l2;
    p->up = NULL;
    slot_free(l, p);
    if (r->result == 0 || r->result == -EEXIST) {
        log_debug("s3 tier: %s %s", p->digest, r->result ? "was there already" : "written");
        free(p);
    } else if (r->result == -EBADMSG) {
        log_error("s3 tier: the store refused %s: the local file does not match its digest",
                  p->digest);
        free(p);
    } else if (r->result == -ENOENT && r->status == 404) {
        log_error("s3 tier: writing %s: %s (does the bucket exist?)", p->digest, r->message);
        free(p);
    } else {
        /* the store is away or failing: keep it for later, after everything waiting */
        log_warn("s3 tier: writing %s failed (%s); trying again", p->digest, r->message);
        enqueue(l, p);
        if (!l->retry_on && !l->stopping) {
            l->retry_on = 1;
            uv_timer_start(&l->retry, on_retry, L2_RETRY_MS, 0);
        }
        return;
    }
    if (!l->retry_on)
        pump(l);
}

static void pump(struct l2 *l)
{
    while (!l->stopping && l->running < L2_PUTS_AT_ONCE && l->head) {
        struct l2_put *p = l->head;
        l->head = p->next;
        if (!l->head)
            l->tail = NULL;
        l->queued--;
        char key[128], path[STORE_PATH_MAX];
        if (s3_blob_key(p->digest, key, sizeof(key)) || !store_has(l->c->store, p->digest)) {
            free(p); /* evicted or purged meanwhile: nothing to write */
            continue;
        }
        store_blob_path(l->c->store, p->digest, path, sizeof(path));
        if (!(p->up = s3_put_file(l->s3, key, path, p->digest + 7, "application/octet-stream",
                                  on_put, p))) {
            log_warn("s3 tier: %s could not be sent", p->digest);
            free(p);
            continue;
        }
        for (size_t i = 0; i < L2_PUTS_AT_ONCE; i++)
            if (!l->inflight[i]) {
                l->inflight[i] = p;
                break;
            }
        l->running++;
    }
}

void l2_commit(struct cache *c, const char *digest)
{
    struct l2 *l = c->l2;
    if (!l2_enabled(c))
        return;
    struct l2_put *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->l2 = l;
    snprintf(p->digest, sizeof(p->digest), "%s", digest);
    enqueue(l, p);
    if (!l->retry_on)
        pump(l);
}

static void on_retry_closed(uv_handle_t *h)
{
    free(h->data);
}

void l2_stop(struct cache *c)
{
    struct l2 *l = c->l2;
    if (!l)
        return;
    l->stopping = 1;
    if (l->queued + l->running)
        log_warn("s3 tier: %zu blobs not written yet; regcache s3-sync sends them",
                 l->queued + l->running);
    for (size_t i = 0; i < L2_PUTS_AT_ONCE; i++)
        if (l->inflight[i]) {
            s3_upload_cancel(l->inflight[i]->up);
            free(l->inflight[i]);
            l->inflight[i] = NULL;
        }
    while (l->head) {
        struct l2_put *p = l->head;
        l->head = p->next;
        free(p);
    }
    l->tail = NULL;
    uv_timer_stop(&l->retry);
    s3_client_free(l->s3);
    l->s3 = NULL;
    uv_close((uv_handle_t *)&l->retry, on_retry_closed);
    c->l2 = NULL;
}
