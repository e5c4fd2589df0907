/* SPDX-License-Identifier: Apache-2.0 */
/* The bucket GC's leader: of the replicas on one bucket, the one holding the lease object
 * gc/lease runs the bucket GC (l2_gc.c). Every replica ticks every third of s3.gc_lease:
 *
 * - holding it, it renews it: a PUT with If-Match of the ETag its last PUT got, carrying its
 *   identity (instance_id or the host name, pid and a random part), the expiry it means and a
 *   sequence number (so the ETag changes at every renewal). A 412 or 404 means another replica
 *   took it: this one stops at once. It counts itself the holder for s3.gc_lease from when its
 *   last successful PUT was sent, no longer, so a store that is away ends its leadership
 *   before another can begin.
 * - not holding it, it reads it. None there: it takes it with a PUT with If-None-Match: *
 *   (one of several contenders wins; the others get 412). There, with an ETag this replica has
 *   seen unchanged for a whole s3.gc_lease of its own clock: the holder stopped renewing, and
 *   this replica deletes it and then takes it with If-None-Match: *. Expiry is judged by what
 *   each replica saw, not by comparing clocks.
 *
 * Two contenders that both find the same stale lease may both delete and put; the one whose
 * lease was deleted finds out at its next renewal (412) and stops, so two leaders overlap at
 * most for a renewal period, and a bucket GC re-checks the lease before each deletion. Loop
 * thread only. */
#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/impl.h"
#include "metrics/metrics.h"
#include "s3/client.h"
#include "util/clock.h"
#include "util/log.h"

#define LEASE_KEY "gc/lease"
#define LEASE_BODY_MAX 512

enum lease_step { IDLE, READING, TAKING, DELETING, RENEWING };

struct l2_lease {
    struct s3_client *s3;
    uint64_t lease_ms;
    char id[160];
    uv_timer_t timer;
    struct s3_op *op;
    enum lease_step step;
    int held;
    uint64_t held_until; /* monotonic ms */
    uint64_t sent_at;    /* of the PUT in flight */
    char etag[130];      /* of this replica's lease object */
    uint64_t seq;
    char body[LEASE_BODY_MAX];
    char got[LEASE_BODY_MAX]; /* the lease read */
    size_t got_len;
    char seen_etag[130]; /* another's lease, as last read */
    uint64_t seen_since;
    int stopping;
};

static uint64_t now_ms(void)
{
    return clock_mono_us() / 1000;
}

static void set_held(struct l2_lease *l, int held)
{
    if (held != l->held)
        log_info(held ? "s3 gc: this replica (%s) holds the bucket GC lease"
                      : "s3 gc: this replica (%s) no longer holds the bucket GC lease",
                 l->id);
    l->held = held;
    metrics_s3_gc_lease(held);
}

int l2_lease_held(struct l2_lease *l)
{
    if (l && l->held && now_ms() >= l->held_until)
        set_held(l, 0); /* not renewed in time: another may take it now */
    return l && l->held;
}

const char *l2_lease_id(const struct l2_lease *l)
{
    return l ? l->id : "";
}

static int put_body(struct l2_lease *l, char *sha_hex)
{
    l->seq++;
    int n = snprintf(l->body, sizeof(l->body),
                     "holder: %s\nexpires_ms: %" PRIu64 "\nseq: %" PRIu64 "\n", l->id,
                     clock_wall_ms() + l->lease_ms, l->seq);
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)l->body, (size_t)n, md);
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(sha_hex + 2 * i, 3, "%02x", md[i]);
    l->sent_at = now_ms();
    return n;
}

static void on_put(void *ud, const struct s3_reply *r)
{
    struct l2_lease *l = ud;
    l->op = NULL;
    enum lease_step was = l->step;
    l->step = IDLE;
    if (r->result == 0) {
        snprintf(l->etag, sizeof(l->etag), "%s", r->etag);
        l->held_until = l->sent_at + l->lease_ms;
        set_held(l, 1);
    } else if (r->result == -EEXIST || r->result == -ENOENT) {
        if (was == RENEWING)
            log_warn("s3 gc: the bucket GC lease was taken over by another replica");
        set_held(l, 0);
        l->seen_etag[0] = '\0';
    } else {
        log_warn("s3 gc: %s the bucket GC lease failed (%s)",
                 was == RENEWING ? "renewing" : "taking", r->message);
        l2_lease_held(l);
    }
}

static void take(struct l2_lease *l)
{
    char sha[2 * SHA256_DIGEST_LENGTH + 1];
    int n = put_body(l, sha);
    l->step = TAKING;
    if (!(l->op = s3_put(l->s3, LEASE_KEY, l->body, (size_t)n, sha, 1, "application/octet-stream",
                         on_put, l)))
        l->step = IDLE;
}

static void on_deleted(void *ud, const struct s3_reply *r)
{
    struct l2_lease *l = ud;
    l->op = NULL;
    l->step = IDLE;
    l->seen_etag[0] = '\0';
    if (r->result == 0 || r->result == -ENOENT)
        take(l);
    else
        log_warn("s3 gc: deleting the expired bucket GC lease failed (%s)", r->message);
}

static int on_lease_data(void *ud, const char *data, size_t len)
{
    struct l2_lease *l = ud;
    size_t room = sizeof(l->got) - 1 - l->got_len;
    if (len > room)
        len = room;
    memcpy(l->got + l->got_len, data, len);
    l->got_len += len;
    l->got[l->got_len] = '\0';
    return 0;
}

static void on_read(void *ud, const struct s3_reply *r)
{
    struct l2_lease *l = ud;
    l->op = NULL;
    l->step = IDLE;
    if (r->result == -ENOENT) {
        take(l);
        return;
    }
    if (r->result) {
        log_debug("s3 gc: reading the bucket GC lease failed (%s)", r->message);
        return;
    }
    uint64_t now = now_ms();
    if (strcmp(r->etag, l->seen_etag) != 0) { /* renewed (or new) since the last look */
        snprintf(l->seen_etag, sizeof(l->seen_etag), "%s", r->etag);
        l->seen_since = now;
        return;
    }
    if (now - l->seen_since <= l->lease_ms)
        return;
    char holder[200] = "";
    const char *h = strstr(l->got, "holder: ");
    if (h)
        sscanf(h + 8, "%199[^\n]", holder);
    log_info("s3 gc: the bucket GC lease of %s was not renewed for %" PRIu64 " ms; taking it",
             holder[0] ? holder : "another replica", now - l->seen_since);
    l->step = DELETING;
    if (!(l->op = s3_delete(l->s3, LEASE_KEY, on_deleted, l)))
        l->step = IDLE;
}

static void on_tick(uv_timer_t *t)
{
    struct l2_lease *l = t->data;
    if (l->op || l->stopping)
        return;
    if (l2_lease_held(l)) {
        char sha[2 * SHA256_DIGEST_LENGTH + 1];
        int n = put_body(l, sha);
        l->step = RENEWING;
        if (!(l->op =
                  s3_put_if_match(l->s3, LEASE_KEY, l->body, (size_t)n, sha, l->etag, on_put, l)))
            l->step = IDLE;
        return;
    }
    l->got_len = 0;
    l->got[0] = '\0';
    l->step = READING;
    if (!(l->op = s3_get(l->s3, LEASE_KEY, 0, UINT64_MAX, on_lease_data, on_read, l)))
        l->step = IDLE;
}

struct l2_lease *l2_lease_start(struct cache *c, struct s3_client *s3)
{
    struct l2_lease *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->s3 = s3;
    l->lease_ms = c->cfg->s3_gc_lease_ms;
    char host[64] = "";
    gethostname(host, sizeof(host) - 1);
    unsigned char rnd[6] = {0};
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        memset(rnd, 0, sizeof(rnd));
    const char *name = c->cfg->instance_id ? c->cfg->instance_id : host[0] ? host : "-";
    snprintf(l->id, sizeof(l->id), "%s/%ld/%02x%02x%02x%02x%02x%02x", name, (long)getpid(), rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    uint64_t every = l->lease_ms / 3;
    uv_timer_init(c->loop, &l->timer);
    l->timer.data = l;
    uv_unref((uv_handle_t *)&l->timer);
    uv_timer_start(&l->timer, on_tick, 0, every ? every : 1);
    metrics_s3_gc_lease(0);
    return l;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Before the client is freed (which cancels the request in flight). The lease is left to
 * expire: another replica takes it s3.gc_lease after its last renewal. */
void l2_lease_stop(struct l2_lease *l)
{
    if (!l)
        return;
    l->stopping = 1;
    l->op = NULL;
    metrics_s3_gc_lease(0);
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
}
