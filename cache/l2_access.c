/* SPDX-License-Identifier: Apache-2.0 */
/* Access markers: the last access of a blob, as known across every replica on the bucket. When
 * a replica serves a blob (a hit, a fill, a member's request) it writes the zero-byte object
 * access/sha256/<2>/<64>, whose LastModified (the store's clock) is then the time of the
 * access; the bucket GC (l2_gc.c) reads those times. A digest's marker is written at most once
 * per s3.access_interval by one replica (0: never), so a blob served a thousand times an hour
 * costs one PUT an hour.
 *
 * When each digest's marker was last asked for is kept in memory in two generations: the
 * digests of this interval and of the last one; at each interval's end the older goes. About
 * 150 bytes per digest (the map's entry, its copied key and its slot), at most L2_MARKS_MAX
 * digests (past that a marker is not written, and counted as dropped). Nothing is kept across
 * restarts: a restart costs at most one PUT per digest served after it.
 *
 * A marker never delays a pull: it is queued (at most L2_MARKS_QUEUED waiting, past that
 * dropped) and written L2_MARKS_AT_ONCE at a time, from the loop's next turn. A PUT that fails
 * is not retried: the digest stays recorded, so a store that is away costs one failed PUT per
 * digest per interval at most, and the next access after the interval writes it. A lost
 * marker costs only accuracy: the bucket GC sees an older access.
 *
 * Holds (hold/sha256/<2>/<64>, beside content pushed to a hosted repository) are not
 * markers: they go through the tier's persisted write-behind queue (l2.c), retried until
 * written. Loop thread only. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/impl.h"
#include "metrics/metrics.h"
#include "s3/client.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/map.h"

#define L2_MARKS_AT_ONCE 4
#define L2_MARKS_QUEUED 10000
#define L2_MARKS_MAX 400000
#define EMPTY_BODY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct l2_mark {
    struct l2_access *a;
    char digest[DIGEST_MAX];
    struct s3_op *op;
    struct l2_mark *next;
};

struct l2_access {
    struct s3_client *s3;
    uint64_t interval_ms;
    struct map *now, *last; /* digest -> 1 + when its marker was asked for (monotonic ms) */
    uint64_t generation_ms; /* when `now` began */
    struct l2_mark *head, *tail;
    size_t queued;
    struct l2_mark *inflight[L2_MARKS_AT_ONCE];
    size_t running;
    /* the PUTs start from the loop, not from the serving that asked for them (which may run
     * inside the upstream client's own callbacks) */
    uv_timer_t soon;
    int soon_on;
};

static uint64_t now_ms(void)
{
    return clock_mono_us() / 1000;
}

/* "<what>/sha256/<2>/<64>" */
static int object_key(const char *what, const char *digest, char *out, size_t len)
{
    char blob[128];
    int rc = s3_blob_key(digest, blob, sizeof(blob)); /* blobs/sha256/<2>/<64> */
    if (rc)
        return rc;
    int n = snprintf(out, len, "%s/%s", what, blob + strlen("blobs/"));
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int l2_marker_key(const char *digest, char *out, size_t len)
{
    return object_key("access", digest, out, len);
}

struct l2_access *l2_access_new(uv_loop_t *loop, struct s3_client *s3, uint64_t interval_ms)
{
    struct l2_access *a = calloc(1, sizeof(*a));
    if (!a || !(a->now = map_new()) || !(a->last = map_new())) {
        if (a)
            map_free(a->now);
        free(a);
        return NULL;
    }
    a->s3 = s3;
    a->interval_ms = interval_ms;
    a->generation_ms = now_ms();
    uv_timer_init(loop, &a->soon);
    a->soon.data = a;
    uv_unref((uv_handle_t *)&a->soon);
    return a;
}

/* The interval is over: its digests become the last one's, the last one's go (whatever the
 * last generation holds is checked against its time when looked up). */
static void rotate(struct l2_access *a, uint64_t now)
{
    if (now - a->generation_ms < a->interval_ms)
        return;
    struct map *fresh = map_new();
    if (!fresh)
        return;
    map_free(a->last);
    a->last = a->now;
    a->now = fresh;
    a->generation_ms = now;
}

static void pump(struct l2_access *a);

static void on_written(void *ud, const struct s3_reply *r)
{
    struct l2_mark *m = ud;
    struct l2_access *a = m->a;
    for (size_t i = 0; i < L2_MARKS_AT_ONCE; i++)
        if (a->inflight[i] == m)
            a->inflight[i] = NULL;
    a->running--;
    if (r->result == 0) {
        metrics_s3_marker(1);
    } else {
        metrics_s3_marker(0);
        log_debug("s3 tier: the access marker of %s was not written (%s)", m->digest, r->message);
    }
    free(m);
    pump(a);
}

static void pump(struct l2_access *a)
{
    while (a->running < L2_MARKS_AT_ONCE && a->head) {
        struct l2_mark *m = a->head;
        a->head = m->next;
        if (!a->head)
            a->tail = NULL;
        a->queued--;
        char key[128];
        if (object_key("access", m->digest, key, sizeof(key)) ||
            !(m->op = s3_put(a->s3, key, NULL, 0, EMPTY_BODY_SHA256, 0, "application/octet-stream",
                             on_written, m))) {
            metrics_s3_marker(0);
            free(m);
            continue;
        }
        for (size_t i = 0; i < L2_MARKS_AT_ONCE; i++)
            if (!a->inflight[i]) {
                a->inflight[i] = m;
                break;
            }
        a->running++;
    }
}

static void on_soon(uv_timer_t *t)
{
    struct l2_access *a = t->data;
    a->soon_on = 0;
    pump(a);
}

static void queue(struct l2_access *a, struct l2_mark *m)
{
    if (a->tail)
        a->tail->next = m;
    else
        a->head = m;
    a->tail = m;
    a->queued++;
    if (!a->soon_on) {
        a->soon_on = 1;
        uv_timer_start(&a->soon, on_soon, 0, 0);
    }
}

void l2_access_note(struct l2_access *a, const char *digest)
{
    if (!a || !a->interval_ms || strncmp(digest, "sha256:", 7) != 0)
        return;
    uint64_t now = now_ms();
    rotate(a, now);
    uintptr_t at = (uintptr_t)map_get(a->now, digest);
    if (!at)
        at = (uintptr_t)map_get(a->last, digest);
    if (at && now - (at - 1) < a->interval_ms)
        return; /* written (or asked for) within the interval */
    if (a->queued >= L2_MARKS_QUEUED || map_count(a->now) + map_count(a->last) >= L2_MARKS_MAX) {
        metrics_s3_marker(0);
        return;
    }
    struct l2_mark *m = calloc(1, sizeof(*m));
    if (!m)
        return;
    if (map_put(a->now, digest, (void *)(now + 1)) == MAP_NOMEM) {
        free(m);
        return;
    }
    m->a = a;
    snprintf(m->digest, sizeof(m->digest), "%s", digest);
    queue(a, m);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Before the client is freed: the PUTs in flight go with it and call nothing. */
void l2_access_free(struct l2_access *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < L2_MARKS_AT_ONCE; i++)
        free(a->inflight[i]);
    while (a->head) {
        struct l2_mark *m = a->head;
        a->head = m->next;
        free(m);
    }
    map_free(a->now);
    map_free(a->last);
    uv_timer_stop(&a->soon);
    uv_close((uv_handle_t *)&a->soon, on_closed);
}
