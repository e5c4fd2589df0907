/* SPDX-License-Identifier: Apache-2.0 */
/* The S3 tier's janitor: multipart uploads left in progress under the prefix (a daemon killed
 * in the middle of a large write-behind, an abort that failed) keep their parts in the bucket
 * until someone aborts them. Once at start and then every L2_JANITOR_MS (or every
 * s3.abandoned_upload_after when that is shorter) the janitor lists the uploads in progress
 * and aborts those initiated longer than s3.abandoned_upload_after ago, as the store's clock
 * tells. A listing holds at most 1000 uploads: more are left for the next round. Loop thread
 * only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/impl.h"
#include "metrics/metrics.h"
#include "s3/client.h"
#include "util/log.h"

#define L2_JANITOR_MS (3600ULL * 1000)
#define L2_JANITOR_ABORTS_MAX 1000

struct l2_abort {
    struct l2_janitor *j;
    size_t slot;
    char key[1100], upload_id[520];
};

struct l2_janitor {
    struct s3_client *s3;
    uint64_t after_ms;
    uv_timer_t timer;
    struct s3_op *listing;
    /* this round's: found by the listing, then asked; a slot is emptied when answered */
    struct l2_abort *pending[L2_JANITOR_ABORTS_MAX];
    size_t n_pending;
    size_t aborting; /* aborts in flight */
    int stopping;
};

static void on_aborted(void *ud, const struct s3_reply *r)
{
    struct l2_abort *a = ud;
    struct l2_janitor *j = a->j;
    if (r->result == 0 || r->result == -ENOENT) {
        metrics_s3_janitor_abort();
        log_info("s3 janitor: aborted the abandoned upload of %s", a->key);
    } else {
        log_warn("s3 janitor: aborting the upload of %s failed (%s); trying again later",
                 a->key, r->message);
    }
    j->pending[a->slot] = NULL;
    free(a);
    if (!--j->aborting)
        j->n_pending = 0;
}

static void on_upload(void *ud, const struct s3_multipart *m)
{
    struct l2_janitor *j = ud;
    int64_t now = (int64_t)time(NULL);
    if (m->initiated < 0 || j->n_pending == L2_JANITOR_ABORTS_MAX ||
        (uint64_t)(now - m->initiated) * 1000 < j->after_ms || now < m->initiated)
        return;
    struct l2_abort *a = calloc(1, sizeof(*a));
    if (!a)
        return;
    a->j = j;
    a->slot = j->n_pending;
    snprintf(a->key, sizeof(a->key), "%s", m->key);
    snprintf(a->upload_id, sizeof(a->upload_id), "%s", m->upload_id);
    j->pending[j->n_pending++] = a;
}

static void on_listed(void *ud, const struct s3_reply *r)
{
    struct l2_janitor *j = ud;
    j->listing = NULL;
    if (r->result)
        log_warn("s3 janitor: listing the uploads in progress failed (%s)", r->message);
    for (size_t i = 0; i < j->n_pending; i++) {
        struct l2_abort *a = j->pending[i];
        if (s3_abort_multipart(j->s3, a->key, a->upload_id, on_aborted, a)) {
            j->aborting++;
        } else {
            j->pending[i] = NULL;
            free(a);
        }
    }
    if (!j->aborting)
        j->n_pending = 0;
}

static void on_timer(uv_timer_t *t)
{
    struct l2_janitor *j = t->data;
    if (j->listing || j->aborting || j->stopping)
        return; /* the last round is still going */
    j->listing = s3_list_multiparts(j->s3, "", on_upload, on_listed, j);
}

struct l2_janitor *l2_janitor_start(struct cache *c, struct s3_client *s3)
{
    struct l2_janitor *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->s3 = s3;
    j->after_ms = c->cfg->s3_abandoned_upload_after_ms;
    uint64_t every = j->after_ms && j->after_ms < L2_JANITOR_MS ? j->after_ms : L2_JANITOR_MS;
    uv_timer_init(c->loop, &j->timer);
    j->timer.data = j;
    uv_unref((uv_handle_t *)&j->timer);
    uv_timer_start(&j->timer, on_timer, 0, every);
    return j;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Before the client is freed: its requests in flight go with it and call nothing, so what
 * they would have freed is freed here. */
void l2_janitor_stop(struct l2_janitor *j)
{
    if (!j)
        return;
    j->stopping = 1;
    uv_timer_stop(&j->timer);
    for (size_t i = 0; i < j->n_pending; i++)
        free(j->pending[i]);
    j->n_pending = 0;
    uv_close((uv_handle_t *)&j->timer, on_timer_closed);
}
