/* SPDX-License-Identifier: Apache-2.0 */
/* Blobs: hits straight from the store; a miss becomes one fill per digest, streamed from the
 * upstream into a temporary file that every waiting client reads as it grows. The last byte is
 * only released once the whole blob hashed to its digest, so a client can never receive a
 * complete-looking wrong blob. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/impl.h"
#include "cluster/cluster.h"
#include "db/db.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/range.h"

enum fill_state { FILL_OPENING, FILL_WAIT_HEADERS, FILL_STREAMING, FILL_DONE, FILL_FAILED };

/* A fill the upstream cuts goes on with Range: bytes=N- after a pause (FILL_RETRY_FIRST_MS,
 * doubling up to FILL_RETRY_MAX_MS), at most FILL_RETRIES times; then it fails. */
#define FILL_RETRIES 5
#define FILL_RETRY_FIRST_MS 250
#define FILL_RETRY_MAX_MS 4000

struct blob_waiter {
    struct blob_waiter *next;
    int head;
    blob_cb cb;
    void *ud;
    char *repo; /* the repository it asked through */
};

static void waiter_free(struct blob_waiter *w)
{
    free(w->repo);
    free(w);
}

/* Fills are shared within one upstream only: key upstream KEY_SEP digest. */
#define FILL_KEY_MAX (DIGEST_MAX + 176) /* and KEY_SEP "direct" */
static void fill_key(char *out, size_t len, const struct upstream *u, const char *digest)
{
    snprintf(out, len, "%s" KEY_SEP "%s", upstream_name(u), digest);
}

struct fill_reader {
    struct fill_reader *next, *prev;
    struct blob_fill *fill;
    void (*wake)(void *);
    void *wake_ud;
    unsigned gen; /* the fill's gen when it attached: bytes from an earlier start are not its */
};

struct blob_fill {
    struct cache *c;
    char digest[DIGEST_MAX];
    char key[FILL_KEY_MAX];
    int refs;
    int in_map;
    enum fill_state state;
    struct upstream *u;
    char *repo;
    struct store_fill *sf;
    int fd;
    uint64_t size;
    int size_known;
    uint64_t written; /* bytes in the temporary file */
    struct buf pending, writing;
    int write_busy, paused, upstream_done, commit_busy;
    int open_result, write_result, commit_result;
    uv_work_t work;
    struct upstream_req *req;
    long status;
    struct blob_waiter *waiters; /* waiting for the upstream's headers */
    struct fill_reader *readers;
    struct cache_error err;
    uint64_t started_us;
    /* resuming a cut transfer */
    uint64_t received;   /* body bytes taken from the upstream: where a resume starts */
    uint64_t range_from; /* of the request in flight, 0 when it asked for everything */
    int accepting;       /* the answer in flight is the body (or the rest of it) */
    int restart;         /* the next request asks for everything and the file starts again */
    int no_retry;        /* the upstream lied about the size: a cut is not resumed */
    int retries;         /* requests after the first */
    char validator[256]; /* If-Range: the first answer's ETag, else its Last-Modified */
    int validator_etag;
    unsigned gen;      /* starts from byte 0 so far; readers of an earlier one are cut */
    int reset_pending; /* the next store write empties the file first */
    int writing_reset, writing_stale; /* the write in flight did so / is of an earlier start */
    uv_timer_t timer;
    int timer_init, timer_armed;
    uint64_t kept; /* bytes found in a partial file kept from before a restart */
    /* where the bytes come from (sources.c): the position in the fill's order, the upstream
     * asked now (u, or one of its blob sources: bytes from a source reach no client before
     * they verified), and what the primary answered when it had no blob */
    int step;
    struct upstream *from;
    long primary_status;
    int no_room; /* the store has no room for what was announced */
    /* the S3 tier (l2.c), asked before the order: its GET in flight, whether it was asked,
     * whether the bytes in the file are its (verified at the commit like a source's) */
    struct s3_op *l2op;
    int l2_tried, from_l2;
    /* started with the tier while the upstream's pause was not checked: checked once the
     * bucket (and members) had nothing, before an upstream is asked */
    int pause_unchecked;
    int reopen;  /* the next source waits for the store write in flight */
    char *via;   /* the Via chain of the request that started it (upstream.h), NULL: none */
    /* in a cluster: started for a member's request, or joined by one (never asks a member);
     * asking a member now (from is its peer: its bytes stream to clients as the primary's
     * do); done asking members (the upstream's order from now on); members asked so far */
    int direct, via_peer, peer_done, peer_asks;
};

/* Members a fill asks at most before it goes to the upstream itself. */
#define FILL_PEER_ASKS_MAX 3

/* Bytes from the primary or from a member reach clients as they arrive; a blob source's only
 * once they verified. */
static int streams_to_clients(const struct blob_fill *f)
{
    return f->from == f->u || f->via_peer;
}

static void fill_free_timer(uv_handle_t *h)
{
    free(h->data);
}

/* Not inlined: callers hold a reference of their own across the call, which the compiler
 * cannot see, and would otherwise warn of a use after the free() below. */
__attribute__((noinline)) static void fill_unref(struct blob_fill *f)
{
    if (--f->refs)
        return;
    if (f->sf)
        store_fill_free(f->sf); /* closes fd; removes the temporary file unless committed */
    buf_free(&f->pending);
    buf_free(&f->writing);
    free(f->repo);
    free(f->via);
    if (f->timer_init) {
        f->timer.data = f;
        uv_close((uv_handle_t *)&f->timer, fill_free_timer); /* the handle is in f */
        return;
    }
    free(f);
}

static void fill_unmap(struct blob_fill *f)
{
    if (!f->in_map)
        return;
    f->in_map = 0;
    map_del(f->c->fills, f->key);
    fill_unref(f);
}

static void wake_readers(struct blob_fill *f)
{
    /* a wake may end a response and release its reader: walk with a saved next */
    f->refs++;
    for (struct fill_reader *r = f->readers, *next; r; r = next) {
        next = r->next;
        r->wake(r->wake_ud);
    }
    fill_unref(f);
}

static void answer_waiter(struct blob_fill *f, struct blob_waiter *w)
{
    struct blob_answer a = {0};
    a.size = f->size;
    a.outcome = OUTCOME_FILL;
    if (f->state == FILL_FAILED) {
        a.err = f->err;
    } else if (!w->head) {
        f->refs++;
        a.fill = f;
    }
    w->cb(w->ud, &a);
}

static void answer_waiters(struct blob_fill *f)
{
    struct blob_waiter *w = f->waiters;
    f->waiters = NULL;
    f->refs++;
    while (w) {
        struct blob_waiter *next = w->next;
        answer_waiter(f, w);
        waiter_free(w);
        w = next;
    }
    fill_unref(f);
}

static void fill_fail(struct blob_fill *f, int status, const char *code, const char *why)
{
    if (f->state == FILL_FAILED || f->state == FILL_DONE)
        return;
    f->state = FILL_FAILED;
    if (!f->err.status)
        cache__error_set(&f->err, status, code, "%s", why);
    log_warn("fill %s failed: %s", f->digest, f->err.message);
    f->refs++; /* the map's reference may be the last one */
    fill_unmap(f); /* the next request starts afresh */
    answer_waiters(f);
    wake_readers(f);
    fill_unref(f);
}

/* ---- writing to the store on the thread pool ---- */

static void kick_writer(struct blob_fill *f);
static void maybe_commit(struct blob_fill *f);
static void fill_reopen(struct blob_fill *f);
static void fill_next(struct blob_fill *f, int written);

static void work_write(uv_work_t *w)
{
    struct blob_fill *f = w->data;
    f->write_result = f->writing_reset ? store_fill_reset(f->sf) : 0;
    if (!f->write_result)
        f->write_result = store_fill_write(f->sf, f->writing.data, f->writing.len);
}

static void after_write(uv_work_t *w, int status)
{
    struct blob_fill *f = w->data;
    f->write_busy = 0;
    if (f->reopen) {
        f->reopen = 0;
        buf_reset(&f->writing);
        fill_reopen(f); /* fill_next's reference goes on */
        fill_unref(f);  /* the work's reference */
        return;
    }
    if (status == 0 && f->write_result == 0 && !f->writing_stale)
        f->written = (f->writing_reset ? 0 : f->written) + f->writing.len;
    f->writing_reset = f->writing_stale = 0;
    buf_reset(&f->writing);
    if (status || f->write_result) {
        if (f->req) {
            upstream_req_cancel(f->req);
            f->req = NULL;
            fill_unref(f); /* the request's reference */
        }
        if (f->l2op) {
            s3_cancel(f->l2op);
            f->l2op = NULL;
            fill_unref(f); /* the request's reference */
        }
        fill_fail(f, 500, "UNKNOWN",
                  !status && f->write_result == -ENOSPC ? "cannot write to the store: it is full"
                                                        : "cannot write to the store");
    } else if (f->state == FILL_STREAMING) {
        wake_readers(f);
        if (f->paused && f->req) {
            f->paused = 0;
            upstream_req_resume(f->req); /* may deliver data right away */
        } else if (f->paused && f->l2op) {
            f->paused = 0;
            s3_resume(f->l2op);
        }
        kick_writer(f);
        maybe_commit(f);
    }
    fill_unref(f); /* the work's reference */
}

static void kick_writer(struct blob_fill *f)
{
    if (f->write_busy || !f->pending.len || f->state != FILL_STREAMING)
        return;
    struct buf tmp = f->writing;
    f->writing = f->pending;
    f->pending = tmp;
    f->write_busy = 1;
    f->writing_reset = f->reset_pending;
    f->reset_pending = 0;
    f->refs++;
    f->work.data = f;
    if (uv_queue_work(f->c->loop, &f->work, work_write, after_write)) {
        f->write_busy = 0;
        f->refs--;
        fill_fail(f, 500, "UNKNOWN", "cannot queue a store write");
    }
}

static void work_commit(uv_work_t *w)
{
    struct blob_fill *f = w->data;
    f->commit_result = store_fill_commit(f->sf);
}

static void after_commit(uv_work_t *w, int status)
{
    struct blob_fill *f = w->data;
    f->commit_busy = 0;
    if (status == 0 && f->commit_result == 0) {
        if (f->from_l2)
            log_debug("fill %s: from the s3 tier", f->digest);
        else if (f->via_peer) {
            log_debug("fill %s: from member %s", f->digest, upstream_source_name(f->from));
            metrics_cluster_asked(METRICS_BLOB, METRICS_CLUSTER_ANSWERED);
        }
        else if (f->from != f->u)
            sources_report(f->u, f->from, f->digest, METRICS_SOURCE_SERVED, "");
        if (!f->from_l2 && !f->via_peer)
            l2_commit(f->c, f->digest); /* written behind into the bucket (by the owner) */
        f->state = FILL_DONE;
        f->size = f->written;
        f->size_known = 1;
        db_put_blob(f->c->db, f->digest, f->size, NULL, clock_wall_ms());
        cache_stored(f->c, f->size);
        log_info("fill %s: %llu bytes in %.1f ms", f->digest, (unsigned long long)f->size,
                 (double)(clock_mono_us() - f->started_us) / 1000.0);
        fill_unmap(f);
        answer_waiters(f);
        wake_readers(f);
    } else if (f->commit_result == -EBADMSG && f->from_l2) {
        log_warn("fill %s: the s3 tier sent %s; asking the upstream", f->digest,
                 store_fill_actual(f->sf));
        fill_next(f, 1);
    } else if (f->commit_result == -EBADMSG && f->via_peer) {
        metrics_cluster_asked(METRICS_BLOB, METRICS_CLUSTER_FAILED);
        log_warn("fill %s: member %s sent %s; asking the upstream", f->digest,
                 upstream_source_name(f->from), store_fill_actual(f->sf));
        f->peer_done = 1;
        f->gen++; /* its bytes reached clients: their responses are cut, they ask again */
        wake_readers(f);
        fill_next(f, 1);
    } else if (f->commit_result == -EBADMSG && f->from != f->u) {
        sources_report(f->u, f->from, f->digest, METRICS_SOURCE_WRONG, store_fill_actual(f->sf));
        fill_next(f, 1);
    } else if (f->commit_result == -EBADMSG) {
        fill_fail(f, 502, "UNAVAILABLE", "upstream sent bytes that do not match the digest");
    } else {
        fill_fail(f, 500, "UNKNOWN", "cannot commit to the store");
    }
    fill_unref(f);
}

static void maybe_commit(struct blob_fill *f)
{
    if (f->state != FILL_STREAMING || !f->upstream_done || f->write_busy || f->pending.len ||
        f->commit_busy)
        return;
    if (f->size_known && f->written != f->size) {
        fill_fail(f, 502, "UNAVAILABLE", "upstream sent fewer bytes than it announced");
        return;
    }
    f->commit_busy = 1;
    f->refs++;
    f->work.data = f;
    if (uv_queue_work(f->c->loop, &f->work, work_commit, after_commit)) {
        f->commit_busy = 0;
        f->refs--;
        fill_fail(f, 500, "UNKNOWN", "cannot queue a store commit");
    }
}

/* ---- the upstream request ---- */

/* Everything taken so far is dropped: the next bytes are the blob's first. Readers that
 * attached before are cut (they may have sent bytes of the earlier start), the write in flight
 * no longer counts and the next write empties the file and the hash. */
static void fill_start_again(struct blob_fill *f)
{
    f->gen++;
    f->received = 0;
    f->written = 0;
    buf_reset(&f->pending);
    f->writing_stale = f->write_busy;
    f->reset_pending = 1;
    f->paused = 0;
}

/* A resume's answer: the rest of the blob as asked (206 with exactly that Content-Range, the
 * same ETag), everything again (200: the file starts again), or nothing usable (on_done asks
 * again from byte 0). */
static void resume_headers(struct blob_fill *f, const struct upstream_response *resp)
{
    uint64_t first, last, complete;
    if (resp->status == 206) {
        int same_tag = !f->validator_etag || (resp->etag && !strcmp(resp->etag, f->validator));
        if (content_range_parse(resp->content_range, &first, &last, &complete) == 0 &&
            first == f->range_from && last == f->size - 1 && complete == f->size && same_tag) {
            f->accepting = 1;
            metrics_fill_resume(METRICS_RESUMED);
            log_info("fill %s: resumed at %llu of %llu bytes", f->digest,
                     (unsigned long long)first, (unsigned long long)f->size);
            return;
        }
        log_warn("fill %s: upstream answered bytes=%llu- with %s%s%s: starting again from 0",
                 f->digest, (unsigned long long)f->range_from,
                 resp->content_range ? "Content-Range " : "no Content-Range",
                 resp->content_range ? resp->content_range : "",
                 same_tag ? "" : " and another ETag");
        f->restart = 1;
        return;
    }
    if (resp->status == 200) {
        if (resp->content_length >= 0 && (uint64_t)resp->content_length != f->size) {
            log_warn("fill %s: upstream now announces %lld bytes, not %llu", f->digest,
                     (long long)resp->content_length, (unsigned long long)f->size);
            f->no_retry = 1;
            return;
        }
        f->accepting = 1;
        if (!f->range_from)
            return; /* everything was asked for: the file is empty (or emptied) already */
        log_warn("fill %s: upstream answered bytes=%llu- with the whole blob: starting again "
                 "from 0", f->digest, (unsigned long long)f->range_from);
        metrics_fill_resume(METRICS_RESTARTED);
        fill_start_again(f);
        return;
    }
    /* any other answer: another try, from where the file is */
}

/* The first answer to a fill that asked for the rest of a kept partial file: a 206 of exactly
 * that rest gives the size; a 200 starts the file again; a 416 or another 206 asks again from
 * 0; an error is the fill's error. 1 when on_headers goes on with the answer, 0 when not. */
static int kept_headers(struct blob_fill *f, const struct upstream_response *resp)
{
    uint64_t first, last, complete;
    if (resp->status == 200) {
        log_warn("fill %s: upstream answered bytes=%llu- with the whole blob: starting again "
                 "from 0", f->digest, (unsigned long long)f->range_from);
        metrics_fill_resume(METRICS_RESTARTED);
        fill_start_again(f);
        return 1;
    }
    if (resp->status == 416) {
        log_warn("fill %s: upstream answered bytes=%llu- with 416: starting again from 0",
                 f->digest, (unsigned long long)f->range_from);
        f->restart = 1; /* the kept file is not a prefix of what the upstream has */
        return 0;
    }
    if (resp->status != 206)
        return 1; /* an error: on_headers records it */
    if (content_range_parse(resp->content_range, &first, &last, &complete) == 0 &&
        first == f->range_from && last == complete - 1) {
        metrics_fill_resume(METRICS_RESUMED);
        log_info("fill %s: resumed at %llu of %llu bytes (kept from before a restart)",
                 f->digest, (unsigned long long)first, (unsigned long long)complete);
        return 1;
    }
    log_warn("fill %s: upstream answered bytes=%llu- with %s%s: starting again from 0",
             f->digest, (unsigned long long)f->range_from,
             resp->content_range ? "Content-Range " : "no Content-Range",
             resp->content_range ? resp->content_range : "");
    f->restart = 1;
    return 0;
}

static void on_headers(void *ud, const struct upstream_response *resp)
{
    struct blob_fill *f = ud;
    f->status = resp->status;
    if (f->state == FILL_STREAMING) {
        resume_headers(f, resp);
        return;
    }
    if (f->range_from && !kept_headers(f, resp))
        return;
    if (resp->status == 206 && f->range_from) {
        uint64_t first, last, complete;
        content_range_parse(resp->content_range, &first, &last, &complete);
        if (store_room_for(f->c->store, complete - first)) {
            cache__error_set(&f->err, 503, "UNAVAILABLE",
                             "the mirror's store has no room for %llu bytes",
                             (unsigned long long)(complete - first));
            f->restart = 0;
            f->no_room = 1;
            return;
        }
        f->state = FILL_STREAMING;
        f->accepting = 1;
        if (resp->etag && strncmp(resp->etag, "W/", 2) &&
            strlen(resp->etag) < sizeof(f->validator)) {
            snprintf(f->validator, sizeof(f->validator), "%s", resp->etag);
            f->validator_etag = 1;
        }
        f->size = complete;
        f->size_known = 1;
        answer_waiters(f);
        return;
    }
    if (resp->status != 200) {
        if (f->from == f->u) /* a blob source's (or member's) answer is not the fill's */
            cache__error_from_upstream(&f->err, f->u, resp, "BLOB_UNKNOWN");
        return;
    }
    if (resp->content_length >= 0 && store_room_for(f->c->store, (uint64_t)resp->content_length)) {
        /* Refused before any client has a response: they get an error they can act on (Docker
         * and containerd fall back to the upstream) rather than a body cut short. on_data
         * aborts the transfer, on_done fails the fill with this error. */
        cache__error_set(&f->err, 503, "UNAVAILABLE",
                         "the mirror's store has no room for %lld bytes",
                         (long long)resp->content_length);
        f->no_room = 1;
        return;
    }
    f->state = FILL_STREAMING;
    f->accepting = 1;
    /* If-Range takes a strong validator only: a weak ETag gives way to Last-Modified */
    int strong = resp->etag && strncmp(resp->etag, "W/", 2) != 0;
    const char *v = strong ? resp->etag : resp->last_modified;
    if (v && strlen(v) < sizeof(f->validator)) {
        snprintf(f->validator, sizeof(f->validator), "%s", v);
        f->validator_etag = strong;
    }
    if (resp->content_length >= 0) {
        f->size = (uint64_t)resp->content_length;
        f->size_known = 1;
        if (streams_to_clients(f))
            answer_waiters(f); /* they can stream now */
    }
}

static int on_data(void *ud, const char *data, size_t len)
{
    struct blob_fill *f = ud;
    if (f->state != FILL_STREAMING)
        return f->status == 200 || f->status == 206 ? UPSTREAM_ABORT : 0;
    if (!f->accepting)
        return UPSTREAM_ABORT; /* a resume answered with something else: ask again */
    if (f->size_known && f->received + len > f->size) {
        f->no_retry = 1;
        return UPSTREAM_ABORT; /* more than announced */
    }
    if (f->pending.len && f->pending.len + len > FILL_BUFFER_MAX) {
        f->paused = 1; /* the disk is behind: let TCP push back on the upstream */
        return UPSTREAM_PAUSE;
    }
    if (buf_append(&f->pending, data, len))
        return UPSTREAM_ABORT;
    f->received += len;
    kick_writer(f);
    return 0;
}

static void fill_missing(struct blob_fill *f);
static const struct upstream_callbacks fill_callbacks;

static void fill_request(struct blob_fill *f)
{
    char what[128];
    snprintf(what, sizeof(what), "blobs/%s", f->digest);
    /* only the primary's transfer is resumed: a blob source is asked for everything */
    struct upstream_req_options opt = {f->received, f->validator[0] ? f->validator : NULL,
                                       f->via};
    f->range_from = f->received;
    f->accepting = 0;
    f->status = 0;
    f->refs++; /* the request's */
    f->req = upstream_request_with(f->from, UPSTREAM_GET, f->repo, what, NULL, NULL, &opt,
                                   &fill_callbacks, f);
    if (!f->req) {
        fill_fail(f, 503, "UNAVAILABLE", "out of memory");
        fill_unref(f);
    }
}

static void on_retry_timer(uv_timer_t *t)
{
    struct blob_fill *f = t->data;
    f->timer_armed = 0;
    if (f->state == FILL_STREAMING)
        fill_request(f);
    fill_unref(f); /* the timer's */
}

/* The transfer ended before the whole blob: ask again after a pause, from where it was (or
 * from byte 0 when the last answer could not be used), while retries are left. */
static void fill_retry(struct blob_fill *f, const char *why)
{
    if (f->no_retry || !f->size_known || f->retries >= FILL_RETRIES) {
        if (!f->no_retry && f->size_known)
            metrics_fill_resume(METRICS_GAVE_UP);
        char msg[300];
        snprintf(msg, sizeof(msg), "%s%s", why,
                 f->retries >= FILL_RETRIES ? " (retries exhausted)" : "");
        fill_fail(f, 502, "UNAVAILABLE", msg);
        return;
    }
    if (f->restart) {
        f->restart = 0;
        metrics_fill_resume(METRICS_RESTARTED);
        fill_start_again(f);
    }
    unsigned delay = FILL_RETRY_FIRST_MS << f->retries;
    if (delay > FILL_RETRY_MAX_MS)
        delay = FILL_RETRY_MAX_MS;
    f->retries++;
    log_warn("fill %s: %s at %llu of %llu bytes; asking again in %u ms (retry %d of %d)",
             f->digest, why, (unsigned long long)f->received, (unsigned long long)f->size, delay,
             f->retries, FILL_RETRIES);
    if (!f->timer_init) {
        if (uv_timer_init(f->c->loop, &f->timer)) {
            fill_fail(f, 502, "UNAVAILABLE", why);
            return;
        }
        f->timer_init = 1;
    }
    f->timer.data = f;
    f->refs++;
    f->timer_armed = 1;
    uv_timer_start(&f->timer, on_retry_timer, delay, 0);
}
static void fill_give_up(struct blob_fill *f);
static void fill_next(struct blob_fill *f, int written);

/* A member's answer did not complete the fill. Cut while streaming: the member is down, and
 * the rest is asked, from where it stopped, of the key's successor (the upstream itself when
 * that is this replica). No answer: the same, from the start. The member said the upstream
 * lacks the blob (404) or wants a pause (429): that is the answer. Any other refusal: the
 * upstream is asked directly. */
static void peer_failed(struct blob_fill *f, const struct upstream_response *resp)
{
    char why[300];
    if (f->status && !(f->state == FILL_STREAMING && resp->error))
        snprintf(why, sizeof(why), "HTTP %ld", f->status);
    else
        snprintf(why, sizeof(why), "%s", resp->error ? resp->error : "no answer");
    const char *member = upstream_source_name(f->from);
    metrics_cluster_asked(METRICS_BLOB, METRICS_CLUSTER_FAILED);
    if (f->state == FILL_STREAMING) {
        cluster_member_failed(f->c->cluster, f->from, why);
        struct upstream *next = f->direct || f->peer_asks >= FILL_PEER_ASKS_MAX
                                    ? f->u
                                    : cluster_via(f->c->cluster, f->u, f->digest);
        f->peer_asks += next != f->u;
        log_warn("fill %s: member %s cut the transfer at %llu of %llu bytes (%s); the rest "
                 "from %s", f->digest, member, (unsigned long long)f->received,
                 (unsigned long long)f->size, why,
                 next == f->u ? "the upstream" : upstream_source_name(next));
        f->from = next;
        f->via_peer = next != f->u;
        f->peer_done = !f->via_peer;
        fill_retry(f, why);
        return;
    }
    if (!f->status) {
        cluster_member_failed(f->c->cluster, f->from, why);
        fill_next(f, 0); /* the successor, or the upstream */
        return;
    }
    if (f->status == 404 || f->status == 429) {
        /* the owner asked the upstream: it lacks the blob, or asked for a pause (which the
         * owner keeps to; asking it from here would spend what is left) */
        cache__error_from_upstream(&f->err, f->u, resp, "BLOB_UNKNOWN");
        f->primary_status = f->status;
        fill_give_up(f);
        return;
    }
    log_warn("fill %s: member %s answered %s; asking the upstream", f->digest, member, why);
    f->peer_done = 1;
    fill_next(f, 0);
}

static void on_done(void *ud, const struct upstream_response *resp, int result)
{
    struct blob_fill *f = ud;
    f->req = NULL;
    if (f->state == FILL_STREAMING && result == 0 && f->accepting &&
        (!f->size_known || f->received == f->size)) {
        f->upstream_done = 1;
        if (!f->size_known) {
            /* no Content-Length: waiters learn the size once it is all on disk */
            f->size = f->written + f->writing.len + f->pending.len;
            f->size_known = 1;
        }
        maybe_commit(f);
    } else if (f->via_peer && !f->no_room) {
        peer_failed(f, resp);
    } else if (f->from != f->u && !f->no_room) {
        char why[300];
        int missing = f->status == 404 || f->status == 401 || f->status == 403;
        if (f->status)
            snprintf(why, sizeof(why), "HTTP %ld%s%s", f->status, resp->error ? ", " : "",
                     resp->error ? resp->error : "");
        else
            snprintf(why, sizeof(why), "%s", resp->error ? resp->error : "no answer");
        sources_report(f->u, f->from, f->digest,
                       missing ? METRICS_SOURCE_MISSING : METRICS_SOURCE_FAILED, why);
        fill_next(f, f->state == FILL_STREAMING);
    } else if (f->state == FILL_STREAMING) {
        if (result == -EPERM)
            f->no_retry = 1; /* refused by the mirror itself (limits.max_blob_size) */
        char why[200];
        if (resp->error)
            snprintf(why, sizeof(why), "%s", resp->error);
        else if (!f->accepting && f->status)
            snprintf(why, sizeof(why), "upstream answered a resume with %ld", f->status);
        else
            snprintf(why, sizeof(why), "upstream transfer cut");
        fill_retry(f, why);
    } else if (f->state == FILL_WAIT_HEADERS && f->restart) {
        f->restart = 0; /* the rest of a kept file was answered otherwise: everything again */
        metrics_fill_resume(METRICS_RESTARTED);
        fill_start_again(f);
        fill_request(f);
    } else if (f->state == FILL_WAIT_HEADERS) {
        if (!f->err.status)
            cache__error_from_upstream(&f->err, f->u, resp, "BLOB_UNKNOWN");
        f->primary_status = f->status;
        if (!f->no_room && sources_left(f->u, f->step))
            fill_next(f, 0); /* a blob source after the primary may have it */
        else
            fill_give_up(f);
    }
    fill_unref(f); /* the request's reference */
}

static const struct upstream_callbacks fill_callbacks = {on_headers, on_data, on_done};

static void join_or_start(struct cache *c, struct upstream *u, const char *repo,
                          const char *digest, int head, blob_cb cb, void *ud, int direct);

/* The upstream lacks the blob in (or refuses) the fill's repository: that says nothing of the
 * other waiters' repositories, which ask again through their own. */
static void fill_missing(struct blob_fill *f)
{
    health_note_missing(f->c, f->u, "blob", f->repo, f->digest);
    f->refs++;
    fill_unmap(f);
    struct blob_waiter **pw = &f->waiters, *retry = NULL;
    while (*pw) {
        struct blob_waiter *w = *pw;
        if (strcmp(w->repo, f->repo) != 0) {
            *pw = w->next;
            w->next = retry;
            retry = w;
        } else {
            pw = &w->next;
        }
    }
    fill_fail(f, f->err.status, f->err.code, f->err.message);
    while (retry) {
        struct blob_waiter *next = retry->next;
        join_or_start(f->c, f->u, retry->repo, f->digest, retry->head, retry->cb, retry->ud,
                      f->direct);
        waiter_free(retry);
        retry = next;
    }
    fill_unref(f);
}

static void fill_ask(struct blob_fill *f);

static void work_open(uv_work_t *w)
{
    struct blob_fill *f = w->data;
    f->open_result =
        store_fill_begin_partial(f->c->store, f->digest, upstream_name(f->u), &f->sf, &f->kept);
}

static void after_open(uv_work_t *w, int status)
{
    struct blob_fill *f = w->data;
    if (status || f->open_result) {
        fill_fail(f, 500, "UNKNOWN", "cannot create a temporary file in the store");
        fill_unref(f);
        return;
    }
    f->fd = store_fill_fd(f->sf);
    if (f->kept) {
        log_info("fill %s: %llu bytes kept from before a restart; asking for the rest",
                 f->digest, (unsigned long long)f->kept);
        f->received = f->written = f->kept;
    }
    fill_ask(f); /* takes over the work's reference */
}

/* ---- the next source ----
 * A fill asks its order (sources.c) one upstream at a time: a blob source that lacks the blob,
 * fails or sends wrong bytes costs its attempt, and the next is asked with a fresh temporary
 * file; the primary's own failure ends the fill (fill_give_up) unless sources come after it. */

/* The primary had no blob and no source after it has one: its answer is the fill's. */
static void fill_give_up(struct blob_fill *f)
{
    if (f->primary_status == 404 || f->primary_status == 401 || f->primary_status == 403)
        fill_missing(f);
    else
        fill_fail(f, 502, "UNAVAILABLE", "no source had the blob"); /* f->err wins if set */
}

/* Asks the next upstream of the fill's order for the blob. Takes over a reference of the
 * caller's (the request's, or dropped when there is nothing left to ask). */
static int l2_data(void *ud, const char *data, size_t len)
{
    struct blob_fill *f = ud;
    if (f->state == FILL_WAIT_HEADERS) {
        f->state = FILL_STREAMING;
        f->accepting = 1;
        f->status = 200;
    }
    int rc = on_data(f, data, len);
    return rc == UPSTREAM_PAUSE ? S3_PAUSE : rc == UPSTREAM_ABORT ? -1 : 0;
}

static void l2_done(void *ud, const struct s3_reply *r)
{
    struct blob_fill *f = ud;
    f->l2op = NULL;
    if (r->result == 0 && f->state != FILL_OPENING) {
        f->state = FILL_STREAMING; /* an empty object gives no data */
        f->accepting = 1;
        f->upstream_done = 1;
        f->size = f->written + f->writing.len + f->pending.len;
        f->size_known = 1;
        maybe_commit(f); /* verified there: wrong bytes go to the upstream (after_commit) */
    } else {
        if (r->result != -ENOENT)
            log_warn("fill %s: the s3 tier failed (%s); asking the upstream", f->digest,
                     r->message);
        fill_next(f, f->state == FILL_STREAMING);
    }
    fill_unref(f); /* the request's reference */
}

/* The S3 tier first, once per fill, when nothing of the blob is kept locally. 1 when asked. */
static int fill_ask_l2(struct blob_fill *f)
{
    if (f->l2_tried || f->received || !l2_enabled(f->c))
        return 0;
    f->l2_tried = 1;
    f->from = NULL;
    f->from_l2 = 1;
    f->state = FILL_WAIT_HEADERS;
    f->status = 0;
    f->no_room = 0;
    f->refs++; /* the request's */
    if (!(f->l2op = l2_get(f->c, f->digest, l2_data, l2_done, f))) {
        f->refs--;
        f->from_l2 = 0;
        return 0;
    }
    return 1;
}

/* In a cluster, the blob's owner next, unless that is this replica: 1 when asked. */
static int fill_ask_peer(struct blob_fill *f)
{
    f->via_peer = 0;
    if (f->direct || f->peer_done || !f->c->cluster || f->peer_asks >= FILL_PEER_ASKS_MAX)
        return 0;
    struct upstream *via = cluster_via(f->c->cluster, f->u, f->digest);
    if (via == f->u)
        return 0;
    f->peer_asks++;
    f->from = via;
    f->via_peer = 1;
    f->state = FILL_WAIT_HEADERS;
    f->status = 0;
    f->no_room = 0;
    fill_request(f);
    return 1;
}

static void fill_ask(struct blob_fill *f)
{
    if (fill_ask_l2(f)) {
        fill_unref(f); /* the caller's */
        return;
    }
    f->from_l2 = 0;
    if (fill_ask_peer(f)) {
        fill_unref(f); /* the caller's */
        return;
    }
    struct cache_error paused = {0};
    if (f->pause_unchecked) {
        f->pause_unchecked = 0;
        if (health_backoff(f->c, f->u, &paused)) { /* the upstream asked for a pause (429) */
            f->err = paused;
            fill_fail(f, paused.status, paused.code, paused.message);
            fill_unref(f);
            return;
        }
    }
    f->from = sources_next(f->u, &f->step);
    if (!f->from) {
        fill_give_up(f);
        fill_unref(f);
        return;
    }
    f->state = FILL_WAIT_HEADERS;
    f->status = 0;
    f->no_room = 0;
    if (f->from != f->u && f->received)
        fill_start_again(f); /* a kept partial is the primary's: a source sends everything */
    fill_request(f);
    fill_unref(f); /* the caller's */
}

/* Drops what was written and starts over with a new temporary file (then fill_ask). Takes over
 * a reference of the caller's. */
static void fill_reopen(struct blob_fill *f)
{
    store_fill_free(f->sf);
    f->sf = NULL;
    f->fd = -1;
    f->written = f->size = f->received = f->range_from = f->kept = 0;
    f->size_known = f->upstream_done = f->paused = 0;
    f->accepting = f->restart = f->no_retry = f->retries = 0;
    f->validator[0] = 0;
    f->validator_etag = f->reset_pending = f->writing_reset = f->writing_stale = 0;
    buf_reset(&f->pending);
    buf_reset(&f->writing);
    f->state = FILL_OPENING;
    f->work.data = f;
    if (uv_queue_work(f->c->loop, &f->work, work_open, after_open)) {
        fill_fail(f, 503, "UNAVAILABLE", "cannot queue work");
        fill_unref(f);
    }
}

/* What the upstream asked sent is of no use (nothing reached a client): the next in the order
 * is asked, with a fresh file when bytes were written. */
static void fill_next(struct blob_fill *f, int written)
{
    f->refs++;
    if (!written) {
        fill_ask(f);
    } else if (f->write_busy) {
        f->state = FILL_OPENING;
        f->reopen = 1; /* after_write goes on */
    } else {
        fill_reopen(f);
    }
}

static int add_waiter(struct blob_fill *f, const char *repo, int head, blob_cb cb, void *ud)
{
    struct blob_waiter *w = calloc(1, sizeof(*w));
    if (!w || !(w->repo = strdup(repo))) {
        free(w);
        return -ENOMEM;
    }
    w->head = head;
    w->cb = cb;
    w->ud = ud;
    w->next = f->waiters;
    f->waiters = w;
    return 0;
}

static void answer_error(blob_cb cb, void *ud, int status, const char *code, const char *msg)
{
    struct blob_answer a = {0};
    cache__error_set(&a.err, status, code, "%s", msg);
    cb(ud, &a);
}

struct fills_of {
    const struct upstream *u;
    uint64_t n;
};

static int count_fill(const char *key, void *value, void *ud)
{
    (void)key;
    struct fills_of *fo = ud;
    const struct blob_fill *f = value;
    fo->n += f->u == fo->u && f->state != FILL_DONE && f->state != FILL_FAILED;
    return 0;
}

/* limits.max_fills: blobs being fetched from u at once, each with a temporary file and a
 * request (a crowd asking for random cold digests would otherwise open one of each per
 * digest). */
static int fills_full(struct cache *c, const struct upstream *u)
{
    struct fills_of fo = {u, 0};
    map_each(c->fills, count_fill, &fo);
    return fo.n >= c->cfg->max_fills;
}

/* A member's request (direct) joins no fill that waits for a member (the member may be the
 * one asking: neither would answer); it has a fill of its own under the key "direct". */
static struct blob_fill *fill_find(struct cache *c, char *key, size_t len, int direct)
{
    struct blob_fill *f = map_get(c->fills, key);
    if (!c->cluster || (f && !(direct && f->via_peer)))
        return f;
    size_t n = strlen(key);
    snprintf(key + n, len - n, "%s", KEY_SEP "direct");
    struct blob_fill *d = map_get(c->fills, key);
    if (!f && !d)
        key[n] = '\0'; /* a new fill goes under the plain key */
    return d;
}

static void join_or_start(struct cache *c, struct upstream *u, const char *repo,
                          const char *digest, int head, blob_cb cb, void *ud, int direct)
{
    char key[FILL_KEY_MAX];
    fill_key(key, sizeof(key), u, digest);
    struct blob_fill *f = fill_find(c, key, sizeof(key), direct);
    if (f) {
        metrics_fill_joined(METRICS_BLOB);
        f->direct |= direct;
        if (f->state == FILL_DONE ||
            (f->state == FILL_STREAMING && f->size_known && streams_to_clients(f))) {
            struct blob_waiter w = {NULL, head, cb, ud, NULL};
            answer_waiter(f, &w);
        } else if (add_waiter(f, repo, head, cb, ud)) {
            answer_error(cb, ud, 503, "UNAVAILABLE", "out of memory");
        }
        return;
    }
    struct blob_answer refused = {0};
    /* the upstream asked for a pause (429 Retry-After); with the tier, the bucket is asked
     * first all the same (fill_ask checks the pause before the upstream) */
    if (!l2_enabled(c) && health_backoff(c, u, &refused.err)) {
        cb(ud, &refused);
        return;
    }
    if (fills_full(c, u)) {
        struct blob_answer a = {0};
        cache__error_set(&a.err, 503, "UNAVAILABLE",
                         "%llu blobs are being fetched from upstream %s already "
                         "(limits.max_fills): try again shortly",
                         (unsigned long long)c->cfg->max_fills, upstream_name(u));
        snprintf(a.err.retry_after, sizeof(a.err.retry_after), "1");
        cb(ud, &a);
        return;
    }
    f = calloc(1, sizeof(*f));
    if (!f || !(f->repo = strdup(repo))) {
        free(f);
        answer_error(cb, ud, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    f->c = c;
    f->u = u;
    f->direct = direct;
    f->pause_unchecked = l2_enabled(c);
    f->fd = -1;
    f->started_us = clock_mono_us();
    if (upstream_via_now(u))
        f->via = strdup(upstream_via_now(u)); /* a failed copy only shortens the chain */
    snprintf(f->digest, sizeof(f->digest), "%s", digest);
    snprintf(f->key, sizeof(f->key), "%s", key);
    buf_init(&f->pending, FILL_BUFFER_MAX + (1u << 20));
    buf_init(&f->writing, FILL_BUFFER_MAX + (1u << 20));
    f->refs = 2; /* the map, the open work */
    f->in_map = 1;
    if (map_put(c->fills, key, f) == MAP_NOMEM || add_waiter(f, repo, head, cb, ud)) {
        map_del(c->fills, key);
        free(f->repo);
        free(f->via);
        free(f);
        answer_error(cb, ud, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    f->work.data = f;
    if (uv_queue_work(c->loop, &f->work, work_open, after_open)) {
        fill_fail(f, 503, "UNAVAILABLE", "cannot queue work");
        fill_unref(f);
    }
}

/* ---- HEAD of a blob nobody has: ask the upstream, download nothing ----
 * One HEAD upstream per (upstream, repository, digest) however many clients ask at once; what
 * it said is kept for revalidate_after (at most BLOB_HEADS_MAX answers), a 404 for
 * cache.negative_ttl. With the S3 tier the bucket is asked first (l2_head): an object under
 * the blob's key answers the HEAD (its size; the digest is the key's, since only verified
 * bytes are written there), anything else goes on to the upstream. */
#define BLOB_HEADS_MAX 4096

struct blob_head {
    struct cache *c;
    struct upstream *u;
    char key[FILL_KEY_MAX + 300];
    struct blob_waiter *waiters;
    struct upstream_req *req; /* in flight */
    struct s3_op *l2op;       /* the bucket's HEAD in flight */
    char repo[FILL_KEY_MAX], asked[DIGEST_MAX]; /* what to ask the upstream after the bucket */
    int done;             /* answered: a cached answer until until_ms */
    uint64_t until_ms;
    uint64_t size;
    char digest[DIGEST_MAX]; /* what the upstream said, "" when nothing usable */
};

static void head_key(char *out, size_t len, const struct upstream *u, const char *repo,
                     const char *digest)
{
    snprintf(out, len, "%s" KEY_SEP "%s" KEY_SEP "%s", upstream_name(u), repo, digest);
}

static void head_answer_cached(const struct blob_head *h, blob_cb cb, void *ud)
{
    struct blob_answer a = {0};
    a.outcome = OUTCOME_MISS;
    a.size = h->size;
    a.upstream_digest = h->digest[0] ? h->digest : NULL;
    cb(ud, &a);
}

static void head_on_headers(void *ud, const struct upstream_response *resp)
{
    (void)ud;
    (void)resp;
}

static int head_on_data(void *ud, const char *data, size_t len)
{
    (void)ud;
    (void)data;
    (void)len;
    return 0;
}

struct expired_ctx {
    uint64_t now;
    char **keys;
    size_t n, cap;
};

static int find_expired_head(const char *key, void *value, void *ud)
{
    struct expired_ctx *x = ud;
    struct blob_head *h = value;
    if (!h->done || h->until_ms > x->now || x->n == x->cap)
        return 0;
    if ((x->keys[x->n] = strdup(key)))
        x->n++;
    return 0;
}

static void heads_sweep(struct cache *c)
{
    struct expired_ctx x = {clock_wall_ms(), NULL, 0, map_count(c->blob_heads)};
    if (!x.cap || !(x.keys = calloc(x.cap, sizeof(char *))))
        return;
    map_each(c->blob_heads, find_expired_head, &x);
    for (size_t i = 0; i < x.n; i++) {
        free(map_del(c->blob_heads, x.keys[i]));
        free(x.keys[i]);
    }
    free(x.keys);
}


/* The HEAD is answered: its waiters, taken from it, and the HEAD kept to answer alike for
 * cache.revalidate_after (keep) or forgotten. */
static struct blob_waiter *head_settle(struct blob_head *h, int keep)
{
    struct cache *c = h->c;
    struct blob_waiter *w = h->waiters;
    h->waiters = NULL;
    if (keep) {
        h->done = 1;
        h->until_ms = clock_wall_ms() + c->cfg->revalidate_after_ms;
    } else {
        map_del(c->blob_heads, h->key);
    }
    return w;
}

static void head_on_done(void *ud, const struct upstream_response *resp, int result)
{
    (void)result;
    struct blob_head *h = ud;
    struct cache *c = h->c;
    h->req = NULL;
    struct blob_answer a = {0};
    a.outcome = OUTCOME_MISS;
    int keep = 0;
    if (resp->status == 200 && resp->content_length >= 0) {
        a.size = (uint64_t)resp->content_length;
        a.upstream_digest = resp->digest;
        h->size = a.size;
        if (resp->digest && strlen(resp->digest) < sizeof(h->digest))
            snprintf(h->digest, sizeof(h->digest), "%s", resp->digest);
        keep = c->cfg->revalidate_after_ms > 0;
    } else if (resp->status == 200) {
        cache__error_set(&a.err, 502, "UNAVAILABLE", "upstream gave no size for the blob");
    } else {
        cache__error_from_upstream(&a.err, h->u, resp, "BLOB_UNKNOWN");
        if (resp->status == 404 || resp->status == 401 || resp->status == 403) {
            const char *sep = strrchr(h->key, KEY_SEP[0]);
            char repo[FILL_KEY_MAX + 300];
            const char *r = strchr(h->key, KEY_SEP[0]);
            if (sep && r && sep > r) {
                snprintf(repo, sizeof(repo), "%.*s", (int)(sep - r - 1), r + 1);
                health_note_missing(c, h->u, "blob", repo, sep + 1);
            }
        }
    }
    struct blob_waiter *w = head_settle(h, keep);
    while (w) {
        struct blob_waiter *next = w->next;
        w->cb(w->ud, &a);
        waiter_free(w);
        w = next;
    }
    if (!keep)
        free(h);
}

static const struct upstream_callbacks head_callbacks = {head_on_headers, head_on_data,
                                                         head_on_done};

static void head_fail_all(struct blob_head *h, const struct cache_error *err)
{
    struct cache *c = h->c;
    struct blob_waiter *w = h->waiters;
    h->waiters = NULL;
    map_del(c->blob_heads, h->key);
    free(h);
    while (w) {
        struct blob_waiter *next = w->next;
        struct blob_answer a = {.err = *err};
        w->cb(w->ud, &a);
        waiter_free(w);
        w = next;
    }
}

/* The upstream's HEAD for h; 0, or -1 when h was answered with an error and freed. */
static int head_ask_upstream(struct blob_head *h)
{
    struct blob_answer refused = {0};
    if (health_backoff(h->c, h->u, &refused.err)) {
        head_fail_all(h, &refused.err);
        return -1;
    }
    char what[128];
    snprintf(what, sizeof(what), "blobs/%s", h->asked);
    h->req = upstream_request(h->u, UPSTREAM_HEAD, h->repo, what, NULL, NULL, &head_callbacks,
                              h);
    if (!h->req) {
        struct cache_error e = {0};
        cache__error_set(&e, 503, "UNAVAILABLE", "out of memory");
        head_fail_all(h, &e);
        return -1;
    }
    return 0;
}

static void head_l2_done(void *ud, const struct s3_reply *r)
{
    struct blob_head *h = ud;
    struct cache *c = h->c;
    h->l2op = NULL;
    if (r->result != 0 || r->length < 0) {
        if (r->result != -ENOENT)
            log_warn("HEAD %s: the s3 tier failed (%s); asking the upstream", h->asked,
                     r->message);
        head_ask_upstream(h);
        return;
    }
    h->size = (uint64_t)r->length;
    snprintf(h->digest, sizeof(h->digest), "%s", h->asked);
    int keep = c->cfg->revalidate_after_ms > 0;
    struct blob_waiter *w = head_settle(h, keep);
    while (w) {
        struct blob_waiter *next = w->next;
        head_answer_cached(h, w->cb, w->ud);
        waiter_free(w);
        w = next;
    }
    if (!keep)
        free(h);
}

static void head_upstream(struct cache *c, struct upstream *u, const char *repo,
                          const char *digest, blob_cb cb, void *ud)
{
    char key[FILL_KEY_MAX + 300];
    head_key(key, sizeof(key), u, repo, digest);
    struct blob_head *h = map_get(c->blob_heads, key);
    if (h && h->done && h->until_ms > clock_wall_ms()) {
        head_answer_cached(h, cb, ud);
        return;
    }
    if (h && h->done) {
        free(map_del(c->blob_heads, key));
        h = NULL;
    }
    if (h)
        metrics_fill_joined(METRICS_BLOB); /* a HEAD upstream in flight */
    if (!h) {
        struct blob_answer refused = {0};
        if (!l2_enabled(c) && health_backoff(c, u, &refused.err)) {
            cb(ud, &refused);
            return;
        }
        if (map_count(c->blob_heads) >= BLOB_HEADS_MAX)
            heads_sweep(c);
        if (map_count(c->blob_heads) >= BLOB_HEADS_MAX) {
            answer_error(cb, ud, 503, "UNAVAILABLE", "too many blob HEADs at once");
            return;
        }
        h = calloc(1, sizeof(*h));
        if (!h || map_put(c->blob_heads, key, h) == MAP_NOMEM) {
            free(h);
            answer_error(cb, ud, 503, "UNAVAILABLE", "out of memory");
            return;
        }
        h->c = c;
        h->u = u;
        snprintf(h->key, sizeof(h->key), "%s", key);
        snprintf(h->repo, sizeof(h->repo), "%s", repo);
        snprintf(h->asked, sizeof(h->asked), "%s", digest);
        if (!(h->l2op = l2_head(c, digest, head_l2_done, h))) {
            if (l2_enabled(c) && health_backoff(c, u, &refused.err)) {
                map_del(c->blob_heads, key);
                free(h);
                cb(ud, &refused);
                return;
            }
            char what[128];
            snprintf(what, sizeof(what), "blobs/%s", digest);
            h->req =
                upstream_request(u, UPSTREAM_HEAD, repo, what, NULL, NULL, &head_callbacks, h);
            if (!h->req) {
                map_del(c->blob_heads, key);
                free(h);
                answer_error(cb, ud, 503, "UNAVAILABLE", "out of memory");
                return;
            }
        }
    }
    struct blob_waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        answer_error(cb, ud, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    w->head = 1;
    w->cb = cb;
    w->ud = ud;
    w->next = h->waiters;
    h->waiters = w;
}

/* ---- lookup ---- */

struct lookup {
    uv_work_t work;
    struct cache *c;
    struct upstream *u;
    char *repo;
    char digest[DIGEST_MAX];
    int head, direct;
    blob_cb cb;
    void *ud;
    int result, fd;
    uint64_t size;
    char *via; /* the request's Via chain, for what goes upstream after the lookup */
};

static void work_lookup(uv_work_t *w)
{
    struct lookup *l = w->data;
    l->result = store_blob_open(l->c->store, l->digest, &l->fd, &l->size);
    if (l->result == 0 && __atomic_load_n(&l->c->unverified, __ATOMIC_RELAXED) &&
        cache_unknown_file_bad(l->c, l->digest)) {
        close(l->fd);
        l->result = -ENOENT; /* removed: fetched again */
    }
}

static void after_lookup(uv_work_t *w, int status)
{
    struct lookup *l = w->data;
    if (status == 0 && l->result == 0) {
        struct blob_answer a = {0};
        a.outcome = OUTCOME_HIT;
        a.size = l->size;
        a.file = held_fd_new(l->fd);
        if (!a.file) {
            close(l->fd);
            answer_error(l->cb, l->ud, 503, "UNAVAILABLE", "out of memory");
        } else {
            open_files_put(l->c, l->digest, a.file, l->size);
            if (l->head) {
                held_fd_drop(a.file);
                a.file = NULL;
            }
            l->cb(l->ud, &a);
        }
    } else if (l->result == -ENOENT || l->result == -ENOTDIR) {
        char key[FILL_KEY_MAX];
        upstream_set_via_now(l->u, l->via);
        fill_key(key, sizeof(key), l->u, l->digest);
        if (!map_get(l->c->fills, key) &&
            health_known_missing(l->c, l->u, "blob", l->repo, l->digest))
            answer_error(l->cb, l->ud, 404, "BLOB_UNKNOWN", "not found upstream (lately)");
        else if (l->head && !map_get(l->c->fills, key))
            head_upstream(l->c, l->u, l->repo, l->digest, l->cb, l->ud);
        else
            join_or_start(l->c, l->u, l->repo, l->digest, l->head, l->cb, l->ud, l->direct);
        upstream_set_via_now(l->u, NULL);
    } else {
        answer_error(l->cb, l->ud, 500, "UNKNOWN", "cannot open the blob in the store");
    }
    free(l->repo);
    free(l->via);
    free(l);
}

static void blob_lookup(struct cache *c, struct upstream *u, const char *repo,
                        const char *digest, int head, blob_cb cb, void *ud, int direct)
{
    char key[FILL_KEY_MAX];
    fill_key(key, sizeof(key), u, digest);
    if (map_get(c->fills, key)) {
        join_or_start(c, u, repo, digest, head, cb, ud, direct);
        return;
    }
    struct blob_answer hot = {.outcome = OUTCOME_HIT};
    if (open_files_get(c, digest, &hot.size, head ? NULL : &hot.file)) {
        cb(ud, &hot); /* served lately: its descriptor is at hand */
        return;
    }
    struct lookup *l = calloc(1, sizeof(*l));
    if (!l || !(l->repo = strdup(repo))) {
        free(l);
        answer_error(cb, ud, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    l->c = c;
    l->u = u;
    if (upstream_via_now(u))
        l->via = strdup(upstream_via_now(u)); /* a failed copy only shortens the chain */
    snprintf(l->digest, sizeof(l->digest), "%s", digest);
    l->head = head;
    l->direct = direct;
    l->cb = cb;
    l->ud = ud;
    l->fd = -1;
    l->work.data = l;
    if (uv_queue_work(c->loop, &l->work, work_lookup, after_lookup)) {
        free(l->repo);
        free(l->via);
        free(l);
        answer_error(cb, ud, 503, "UNAVAILABLE", "cannot queue work");
    }
}

void cache_blob(struct cache *c, struct upstream *u, const char *repo, const char *digest,
                int head, blob_cb cb, void *ud)
{
    blob_lookup(c, u, repo, digest, head, cb, ud, 0);
}

void cache_blob_direct(struct cache *c, struct upstream *u, const char *repo,
                       const char *digest, int head, blob_cb cb, void *ud)
{
    blob_lookup(c, u, repo, digest, head, cb, ud, 1);
}

/* ---- reading a fill as a response body ---- */

static uint64_t reader_readable(void *ctx, int *failed)
{
    struct fill_reader *r = ctx;
    struct blob_fill *f = r->fill;
    if (r->gen != f->gen) {
        *failed = 1; /* the fill started again from byte 0 after this reader had begun */
        return 0;
    }
    if (f->state == FILL_DONE)
        return f->size;
    *failed = f->state == FILL_FAILED;
    /* hold back the last byte until the digest is verified */
    if (f->size_known && f->size > 0)
        return f->written < f->size - 1 ? f->written : f->size - 1;
    return 0;
}

static void reader_release(void *ctx)
{
    struct fill_reader *r = ctx;
    struct blob_fill *f = r->fill;
    if (r->prev)
        r->prev->next = r->next;
    else if (f->readers == r)
        f->readers = r->next;
    if (r->next)
        r->next->prev = r->prev;
    free(r);
    fill_unref(f);
}

void cache_fill_source(struct blob_fill *f, uint64_t first, uint64_t end, void (*wake)(void *),
                       void *wake_ud, struct body_source *src)
{
    memset(src, 0, sizeof(*src));
    src->fd = f->fd;
    src->offset = first;
    src->end = end;
    struct fill_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        /* nothing can be streamed: an empty source that reports failure */
        src->end = first;
        fill_unref(f);
        src->fd = -1;
        return;
    }
    r->fill = f;
    r->gen = f->gen;
    r->wake = wake;
    r->wake_ud = wake_ud;
    r->next = f->readers;
    if (f->readers)
        f->readers->prev = r;
    f->readers = r;
    src->readable = reader_readable;
    src->release = reader_release;
    src->ctx = r;
}

void cache_fill_release(struct blob_fill *f)
{
    fill_unref(f);
}

/* At shutdown: clients still waiting are answered 503, which frees their state (their
 * connections are closed by then). */
static void tell_stopping(struct blob_waiter *w)
{
    while (w) {
        struct blob_waiter *next = w->next;
        struct blob_answer a = {0};
        cache__error_set(&a.err, 503, "UNAVAILABLE", "the mirror is shutting down");
        w->cb(w->ud, &a);
        waiter_free(w);
        w = next;
    }
}

static int cancel_fill(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    struct blob_fill *f = value;
    if (f->req) {
        upstream_req_cancel(f->req);
        f->req = NULL;
        f->refs--; /* the request's: its on_done never runs (the map still holds one) */
    }
    if (f->l2op) {
        s3_cancel(f->l2op);
        f->l2op = NULL;
        f->refs--; /* likewise */
    }
    struct blob_waiter *w = f->waiters;
    f->waiters = NULL;
    tell_stopping(w);
    if (f->sf && (f->state == FILL_STREAMING || f->state == FILL_WAIT_HEADERS))
        store_fill_keep(f->sf); /* the process stops: the next one resumes from these bytes */
    if (f->timer_armed) {
        uv_timer_stop(&f->timer);
        f->timer_armed = 0;
        fill_unref(f); /* the map still holds one */
    }
    return 0;
}

static int collect_fill(const char *key, void *value, void *ud)
{
    (void)key;
    struct blob_fill ***at = ud;
    *(*at)++ = value;
    return 0;
}

void blobs_free_all(struct cache *c)
{
    map_each(c->fills, cancel_fill, NULL);
    /* the map's references go; a fill still read or written goes with its last reference */
    size_t n = map_count(c->fills);
    struct blob_fill **all = calloc(n ? n : 1, sizeof(*all)), **at = all;
    if (!all)
        return;
    map_each(c->fills, collect_fill, &at);
    for (size_t i = 0; i < n; i++)
        fill_unmap(all[i]);
    free(all);
}

static int drop_head(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    struct blob_head *h = value;
    if (h->req)
        upstream_req_cancel(h->req);
    if (h->l2op)
        s3_cancel(h->l2op);
    struct blob_waiter *w = h->waiters;
    h->waiters = NULL;
    tell_stopping(w);
    free(h);
    return 0;
}

void blobs_free_heads(struct cache *c)
{
    if (c->blob_heads)
        map_each(c->blob_heads, drop_head, NULL);
    map_free(c->blob_heads);
    c->blob_heads = NULL;
}
