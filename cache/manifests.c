/* SPDX-License-Identifier: Apache-2.0 */
/* Manifests: by digest (immutable) and by tag (revalidated with HEAD), one upstream request per
 * key however many clients ask at once.
 *
 * With the S3 tier, what the replica fetched from its upstream (not a member's answer) is
 * written behind into the bucket: the manifest under its digest, the tag's record (l2.c). A
 * manifest by digest missing locally is asked of the bucket first, as a blob is. A tag the
 * index lacks, when the upstream cannot answer (no answer, a 5xx, a 429), is read from the
 * bucket: its record, then the manifest it names, verified against the digest (and checked
 * like an upstream's) before it is stored and served stale. A record or object that does not
 * verify is refused and logged; the client gets the upstream's error, as without the tier. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cache/impl.h"
#include "cluster/cluster.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "util/accept.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"
#include "util/reference.h"

struct manifest_waiter {
    struct manifest_waiter *next;
    manifest_cb cb;
    void *ud;
    char *repo; /* the repository it asked through (a flight by digest serves several) */
    unsigned flags; /* WAIT_* */
    void (*drop)(void *ud); /* frees ud when the waiter is dropped unanswered (at shutdown) */
};

/* A waiter inside the cache (an Accept class waiting for the tag itself to be revalidated):
 * told the outcome without the manifest's bytes (no disk read is spent on it). */
#define WAIT_NOTIFY 1u
/* Told at cache.revalidate_timeout, even when the flight has no cached manifest to serve: it
 * has a stale answer of its own. */
#define WAIT_DEADLINE 2u

enum flight_phase { PHASE_HEAD, PHASE_GET, PHASE_STORING };

struct manifest_flight {
    struct cache *c;
    char *key;
    struct upstream *u;
    /* asked: u, or in a cluster u's peer for the key's owner (cluster_via); members asked */
    struct upstream *via;
    int peer_asks;
    char *owner_key; /* what its owner is found by: the digest, or the tag's tag_key */
    char *repo, *reference;
    char *tag;    /* the index's name for what it resolves: reference, or reference KEY_SEP
                   * Accept class for a negotiated answer */
    char *accept; /* what is sent upstream: a function of the Accept class alone */
    int by_digest;
    int head_only; /* a client's HEAD of a tag not cached: HEAD upstream, GET only if needed */
    int direct;    /* a member's request: asks the upstream itself, never a member */
    int shared;    /* listed under a key and recorded in the index */
    int listed; /* in manifest_flights, joinable: until answered, or stored when its bytes did
                 * not fit in memory */
    enum flight_phase phase;
    struct manifest_waiter *waiters;
    struct upstream_req *req;
    long status;
    char media_type[MEDIA_TYPE_MAX];
    char upstream_digest[160];
    char digest[DIGEST_MAX];
    struct buf body;
    int too_large;
    /* answered while storing: late joiners get the same answer */
    int answered;
    uv_work_t work;
    int store_result;
    int known_before;
    uint64_t validated_ms;
    /* an Accept class's flight: the tag's own digest when it started, if validated within
     * revalidate_after ("" otherwise); recorded as the answer's basis */
    char basis[DIGEST_MAX];
    /* a tag revalidation: cache.revalidate_timeout, after which waiters get the cached
     * manifest (stale) and the flight goes on in the background to update the tag */
    uv_timer_t timer;
    int timer_on, stale_answered;
    int overdue; /* its revalidate_timeout has passed */
    /* what its waiters are told with the body: a miss, or stale from the bucket */
    enum cache_outcome outcome;
    /* the S3 tier: its GET in flight, whether it was asked, whether the body came from it; for
     * a tag, the record read and the upstream's error, told when the bucket has nothing */
    struct s3_op *l2op;
    int l2_tried, from_l2;
    struct l2_tag_record rec;
    struct cache_error l2_err;
};

/* ---- what an upstream may hand over as a manifest ----
 * Only the manifest media types (impl.h) are accepted and served, as distribution 2.8 checks a
 * pushed manifest: the body must be a JSON object with schemaVersion 2; its mediaType, when it
 * has one, must be the Content-Type (Docker's types require it); an index or list has
 * "manifests", an image manifest (an OCI 1.1 artifact too) has "config". A Content-Type that
 * says nothing (none, application/json, text/plain) is taken from the body, whose mediaType
 * must then be a manifest type or, absent, is told by its shape. Anything else (text/html,
 * schema 1, ...) is refused: nothing is cached, the client gets 502 MANIFEST_INVALID. */
static int no_key(void *ud, const char *value)
{
    (void)ud;
    (void)value;
    return 0;
}

static int has_member(const char *body, size_t len, const char *key, char open)
{
    const char *v;
    size_t vlen;
    return json_get_raw(body, len, key, &v, &vlen) == 0 && vlen && v[0] == open;
}

int cache_check_manifest(const char *content_type, const char *body, size_t len,
                         const char **type, char *why, size_t whylen)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i == len || body[i] != '{' ||
        json_each_string(body, len, "\x01", no_key, NULL) == -EINVAL) {
        snprintf(why, whylen, "its body is not a JSON object");
        return -EINVAL;
    }
    uint64_t version = 0;
    if (json_get_uint(body, len, "schemaVersion", &version) != 0 || version != 2) {
        snprintf(why, whylen, "it has no schemaVersion 2");
        return -EINVAL;
    }
    char declared[MEDIA_TYPE_MAX] = "";
    int dr = json_get_string(body, len, "mediaType", declared, sizeof(declared));
    if (dr < 0 && dr != -ENOENT) {
        snprintf(why, whylen, "its mediaType is not a media type string");
        return -EINVAL;
    }
    const char *ct = content_type ? content_type : "";
    size_t ctlen = strcspn(ct, ";");
    while (ctlen && ct[ctlen - 1] == ' ')
        ctlen--;
    const char *t = index_manifest_type(ct);
    int generic = ctlen == 0 || (ctlen == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
                  (ctlen == 10 && strncasecmp(ct, "text/plain", 10) == 0);
    if (!t && !generic) {
        snprintf(why, whylen, "its Content-Type %.*s is not a manifest media type",
                 (int)(ctlen > 100 ? 100 : ctlen), ct);
        return -EINVAL;
    }
    if (dr > 0) {
        const char *bt = index_manifest_type(declared);
        if (!bt || (t && bt != t)) {
            snprintf(why, whylen, "its mediaType %.100s is not %s", declared,
                     t ? t : "a manifest media type");
            return -EINVAL;
        }
        t = bt;
    } else if (t && (!strcmp(t, MEDIA_DOCKER_LIST) || !strcmp(t, MEDIA_DOCKER_MANIFEST))) {
        snprintf(why, whylen, "a %s must name its mediaType", t);
        return -EINVAL;
    } else if (!t) {
        t = has_member(body, len, "manifests", '[') ? index_manifest_type(MEDIA_OCI_INDEX)
                                                    : index_manifest_type(MEDIA_OCI_MANIFEST);
    }
    int is_list = !strcmp(t, MEDIA_OCI_INDEX) || !strcmp(t, MEDIA_DOCKER_LIST);
    if (is_list ? !has_member(body, len, "manifests", '[')
                : !has_member(body, len, "config", '{')) {
        snprintf(why, whylen, "a %s without \"%s\"", t, is_list ? "manifests" : "config");
        return -EINVAL;
    }
    *type = t;
    return 0;
}

static void answer_one(manifest_cb cb, void *ud, enum cache_outcome outcome, const char *digest,
                       const char *media_type, const char *body, size_t size)
{
    struct manifest_answer a = {0};
    a.outcome = outcome;
    a.digest = digest;
    a.media_type = media_type;
    a.body = body;
    a.size = size;
    cb(ud, &a);
}

static void answer_error(manifest_cb cb, void *ud, const struct cache_error *err)
{
    struct manifest_answer a = {0};
    a.err = *err;
    cb(ud, &a);
}

/* ---- hits: bytes from memory, or from the store on the thread pool ---- */

struct load_req {
    uv_work_t work;
    struct cache *c;
    char digest[DIGEST_MAX];
    enum cache_outcome outcome;
    manifest_cb cb;
    void *ud;
    char *bytes;
    uint64_t size;
    int result;
    /* when the store lost the file: where to go instead */
    struct upstream *u;
    char *repo;
};

static void fetch(struct cache *c, struct upstream *u, const char *repo, const char *reference,
                  manifest_cb cb, void *ud);
static struct manifest_meta *tag_manifest(struct cache *c, const struct upstream *u,
                                          const char *repo, const char *tag);

static void work_load(uv_work_t *w)
{
    struct load_req *l = w->data;
    int fd;
    uint64_t size;
    l->result = store_blob_open(l->c->store, l->digest, &fd, &size);
    if (l->result)
        return;
    l->bytes = malloc(size ? size : 1);
    if (!l->bytes) {
        l->result = -ENOMEM;
        close(fd);
        return;
    }
    uint64_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, l->bytes + got, size - got, (off_t)got);
        if (n <= 0) {
            l->result = n < 0 ? -errno : -EIO;
            break;
        }
        got += (uint64_t)n;
    }
    l->size = got;
    close(fd);
}

static void after_load(uv_work_t *w, int status)
{
    struct load_req *l = w->data;
    struct cache *c = l->c;
    struct manifest_meta *m = index_manifest(c, l->digest);
    if (status == 0 && l->result == 0 && m) {
        if (m->size != l->size)
            m->size = l->size;
        index_remember_bytes(c, m, l->bytes);
        answer_one(l->cb, l->ud, l->outcome, l->digest, m->media_type, l->bytes, l->size);
    } else if (l->result == -ENOENT || !m) {
        /* The store no longer has it: forget it and fetch it by digest again. */
        log_warn("manifest %s is indexed but missing from the store; fetching again", l->digest);
        index_drop_manifest(c, l->digest);
        fetch(c, l->u, l->repo, l->digest, l->cb, l->ud);
    } else {
        struct cache_error e = {0};
        cache__error_set(&e, 500, "UNKNOWN", "cannot read manifest: %s", strerror(-l->result));
        answer_error(l->cb, l->ud, &e);
    }
    free(l->bytes);
    free(l->repo);
    free(l);
}

static void serve_cached(struct cache *c, struct manifest_meta *m, enum cache_outcome outcome,
                         struct upstream *u, const char *repo, manifest_cb cb, void *ud)
{
    if (m->bytes) {
        index_touch_bytes(c, m);
        answer_one(cb, ud, outcome, m->digest, m->media_type, m->bytes, m->size);
        return;
    }
    struct load_req *l = calloc(1, sizeof(*l));
    if (!l || !(l->repo = strdup(repo))) {
        free(l);
        struct cache_error e = {0};
        cache__error_set(&e, 503, "UNAVAILABLE", "out of memory");
        answer_error(cb, ud, &e);
        return;
    }
    l->c = c;
    snprintf(l->digest, sizeof(l->digest), "%s", m->digest);
    l->outcome = outcome;
    l->cb = cb;
    l->ud = ud;
    l->u = u;
    l->work.data = l;
    if (uv_queue_work(c->loop, &l->work, work_load, after_load)) {
        struct cache_error e = {0};
        cache__error_set(&e, 503, "UNAVAILABLE", "cannot queue disk read");
        answer_error(cb, ud, &e);
        free(l->repo);
        free(l);
    }
}

/* serve_cached, or for a waiter inside the cache (WAIT_NOTIFY) only what was found. */
static void deliver(struct cache *c, struct manifest_meta *m, enum cache_outcome outcome,
                    struct upstream *u, const char *repo, manifest_cb cb, void *ud,
                    unsigned flags)
{
    if (flags & WAIT_NOTIFY)
        answer_one(cb, ud, outcome, m->digest, m->media_type, NULL, (size_t)m->size);
    else
        serve_cached(c, m, outcome, u, repo, cb, ud);
}

/* ---- flights ---- */

static void flight_closed(uv_handle_t *h)
{
    free(h->data);
}

static void flight_free(struct manifest_flight *f)
{
    if (f->listed)
        map_del(f->c->manifest_flights, f->key);
    buf_free(&f->body);
    free(f->key);
    free(f->owner_key);
    free(f->repo);
    free(f->reference);
    free(f->tag);
    free(f->accept);
    f->key = f->repo = f->reference = f->tag = f->accept = f->owner_key = NULL;
    if (f->timer_on) {
        uv_timer_stop(&f->timer);
        uv_close((uv_handle_t *)&f->timer, flight_closed); /* frees f */
    } else {
        free(f);
    }
}

/* Answers every waiter; each callback may start new requests. */
static void waiter_free(struct manifest_waiter *w)
{
    free(w->repo);
    free(w);
}

static void flight_answer_cached(struct manifest_flight *f, struct manifest_meta *m,
                                 enum cache_outcome outcome)
{
    struct manifest_waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct manifest_waiter *next = w->next;
        deliver(f->c, m, outcome, f->u, w->repo, w->cb, w->ud, w->flags);
        waiter_free(w);
        w = next;
    }
}

static void flight_answer_error(struct manifest_flight *f, const struct cache_error *e)
{
    struct manifest_waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct manifest_waiter *next = w->next;
        answer_error(w->cb, w->ud, e);
        waiter_free(w);
        w = next;
    }
}

static void flight_answer_body(struct manifest_flight *f)
{
    struct manifest_waiter *w = f->waiters;
    f->waiters = NULL;
    f->answered = 1;
    while (w) {
        struct manifest_waiter *next = w->next;
        answer_one(w->cb, w->ud, f->outcome, f->digest, f->media_type, f->body.data,
                   f->body.len);
        waiter_free(w);
        w = next;
    }
}

static void start_phase(struct manifest_flight *f, enum flight_phase phase);
static void fetch_phase(struct cache *c, struct upstream *u, const char *repo,
                        const char *reference, const char *tag, const char *accept,
                        enum flight_phase phase, int head_only, manifest_cb cb, void *ud);

/* A flight by digest serves everyone asking through one upstream, whatever the repository;
 * the upstream lacking it in (or refusing) the flight's repository says nothing of the
 * others': those waiters ask again through their own. */
static void retry_other_repos(struct manifest_flight *f)
{
    if (f->listed) {
        map_del(f->c->manifest_flights, f->key);
        f->listed = 0;
    }
    struct manifest_waiter **pw = &f->waiters, *retry = NULL;
    while (*pw) {
        struct manifest_waiter *w = *pw;
        if (strcmp(w->repo, f->repo) != 0) {
            *pw = w->next;
            w->next = retry;
            retry = w;
        } else {
            pw = &w->next;
        }
    }
    while (retry) {
        struct manifest_waiter *next = retry->next;
        fetch_phase(f->c, f->u, retry->repo, f->reference, f->reference, ALL_MANIFEST_TYPES,
                    PHASE_GET, 0, retry->cb, retry->ud);
        waiter_free(retry);
        retry = next;
    }
}

static int l2_read_tag(struct manifest_flight *f, const struct upstream_response *resp,
                       const struct cache_error *e);

/* Upstream unreachable or failing: serve the cached manifest of a tag when there is one, else
 * the bucket's (1: it is asked, the flight goes on). */
static int flight_fail(struct manifest_flight *f, const struct upstream_response *resp)
{
    struct cache *c = f->c;
    struct cache_error e = {0};
    cache__error_from_upstream(&e, f->u, resp, "MANIFEST_UNKNOWN");
    int missing = resp->status == 404 || resp->status == 401 || resp->status == 403;
    if (missing && f->shared)
        health_note_missing(c, f->u, "manifest", f->repo, f->tag);
    if (missing && f->by_digest)
        retry_other_repos(f);
    if (!f->by_digest && resp->status != 404) {
        struct tag_entry *t = index_tag(c, f->u, f->repo, f->tag);
        struct manifest_meta *m = t ? index_manifest(c, t->digest) : NULL;
        if (m && accept_allows(f->accept, m->media_type)) {
            if (f->waiters)
                log_warn("upstream %s: %s; serving %s:%s stale", upstream_name(f->u), e.message,
                         f->repo, f->reference);
            flight_answer_cached(f, m, OUTCOME_STALE);
            return 0;
        }
        if (l2_read_tag(f, resp, &e))
            return 1;
    }
    if (resp->status == 404 && !f->by_digest && f->shared)
        index_forget_tag(c, f->u, f->repo, f->tag);
    flight_answer_error(f, &e);
    return 0;
}

static void on_headers(void *ud, const struct upstream_response *resp)
{
    struct manifest_flight *f = ud;
    f->status = resp->status;
    snprintf(f->media_type, sizeof(f->media_type), "%s",
             resp->content_type ? resp->content_type : "");
    snprintf(f->upstream_digest, sizeof(f->upstream_digest), "%s",
             resp->digest ? resp->digest : "");
}

static int on_data(void *ud, const char *data, size_t len)
{
    struct manifest_flight *f = ud;
    if (f->status != 200)
        return 0;
    if (buf_append(&f->body, data, len)) {
        f->too_large = 1;
        return UPSTREAM_ABORT;
    }
    return 0;
}

static void work_store(uv_work_t *w)
{
    struct manifest_flight *f = w->data;
    f->store_result = store_put(f->c->store, f->digest, f->body.data ? f->body.data : "",
                                f->body.len);
}

/* A tag flight's digest is still the tag's: no later answer moved it meanwhile. */
static int still_ours(struct manifest_flight *f)
{
    if (f->by_digest || !f->shared)
        return 0;
    struct tag_entry *t = index_tag(f->c, f->u, f->repo, f->tag);
    return t && strcmp(t->digest, f->digest) == 0;
}

/* An Accept class's answer was set or confirmed: records what the tag itself was then. */
static void note_basis(struct manifest_flight *f)
{
    if (f->by_digest || !f->shared || strcmp(f->tag, f->reference) == 0)
        return;
    struct tag_entry *t = index_tag(f->c, f->u, f->repo, f->tag);
    if (t)
        snprintf(t->basis, sizeof(t->basis), "%s", f->basis);
}

static void after_store(uv_work_t *w, int status)
{
    struct manifest_flight *f = w->data;
    struct cache *c = f->c;
    if (status == 0 && f->store_result == 0) {
        index_add_manifest(c, f->digest, f->media_type, f->body.len, 1);
        if (!f->known_before)
            cache_stored(c, f->body.len);
        int fetched = !f->from_l2 && f->via == f->u; /* from the upstream, by this replica */
        if (fetched)
            l2_commit_manifest(c, f->digest);
        if (still_ours(f)) {
            index_set_tag(c, f->u, f->repo, f->tag, f->digest, f->media_type,
                          f->validated_ms, 1);
            note_basis(f);
            if (fetched)
                l2_share_tag(c, f->u, f->repo, f->tag);
        }
    } else {
        log_error("cannot store manifest %s: %s", f->digest,
                  strerror(status ? -status : -f->store_result));
        if (!f->known_before)
            index_drop_manifest(c, f->digest);
        if (still_ours(f))
            index_forget_tag(c, f->u, f->repo, f->tag);
    }
    flight_answer_body(f); /* anyone who joined while it was being stored */
    flight_free(f);
}

/* The index learns a verified manifest at once (its bytes stay in memory, so hits never need
 * the file before it is written); the database only once the store has it. */
static void index_early(struct manifest_flight *f)
{
    struct cache *c = f->c;
    const char *body = f->body.data ? f->body.data : "";
    f->known_before = index_manifest(c, f->digest) != NULL;
    struct manifest_meta *m = index_add_manifest(c, f->digest, f->media_type, f->body.len, 0);
    if (m)
        index_remember_bytes(c, m, body);
    f->validated_ms = clock_wall_ms();
    if (f->from_l2 && !f->by_digest && f->rec.confirmed_ms < f->validated_ms)
        f->validated_ms = f->rec.confirmed_ms; /* as old as the bucket's record says */
    if (!f->by_digest && f->shared) {
        index_set_tag(c, f->u, f->repo, f->tag, f->digest, f->media_type, f->validated_ms,
                      0);
        note_basis(f);
    }
}

/* The upstream named a digest the bytes it sends for it do not hash to (lately, or now): the
 * tag's cached manifest, verified when it was stored, is served stale; with none, the request
 * is refused, and so is the tag and the digest for cache.negative_ttl, since asking again
 * would spend another GET on the same refusal. (distribution answers an Accept without its
 * manifest's type with a converted, signed schema 1 whose bytes never hash to the digest it
 * names.) Frees f. */
static void refuse_unverified(struct manifest_flight *f, const char *claimed, int now)
{
    struct cache_error e = {0};
    cache__error_set(&e, 502, "UNAVAILABLE",
                     "upstream %s %s manifest bytes that do not hash to %s", upstream_name(f->u),
                     now ? "sent" : "lately sent", claimed);
    log_error("%s", e.message);
    struct manifest_meta *m = f->by_digest ? NULL : tag_manifest(f->c, f->u, f->repo, f->tag);
    if (f->shared && now)
        health_note_missing(f->c, f->u, "manifest", f->repo, claimed);
    if (m && f->shared) {
        flight_answer_cached(f, m, OUTCOME_STALE); /* what it said before, verified then */
    } else {
        if (f->shared && !f->by_digest)
            health_note_missing(f->c, f->u, "manifest", f->repo, f->tag);
        flight_answer_error(f, &e);
    }
    flight_free(f);
}

/* Members a flight asks at most before it asks the upstream itself. */
#define FLIGHT_PEER_ASKS_MAX 3

/* What a member sent cannot be served (bytes that do not hash to the digest, not a manifest):
 * the upstream is asked with a GET instead, and nothing is recorded against the upstream.
 * 1 when it was; 0 when the flight asked the upstream itself. */
static int member_sent_wrong(struct manifest_flight *f, const char *why)
{
    if (f->via == f->u)
        return 0;
    log_warn("manifest %s/%s: member %s sent %s; asking the upstream", f->repo, f->reference,
             upstream_source_name(f->via), why);
    metrics_cluster_asked(METRICS_MANIFEST, METRICS_CLUSTER_FAILED);
    f->via = f->u;
    f->peer_asks = FLIGHT_PEER_ASKS_MAX;
    start_phase(f, PHASE_GET);
    return 1;
}

static void got_manifest(struct manifest_flight *f)
{
    char digest[DIGEST_MAX];
    const char *body = f->body.data ? f->body.data : "";
    store_digest_of(body, f->body.len, digest);
    /* by digest: the bytes must hash to it; by tag: to what the upstream said, when it did */
    const char *expected = f->by_digest ? f->reference : f->upstream_digest;
    if ((f->by_digest || ref_digest_is_sha256(expected, strlen(expected))) &&
        strcmp(expected, digest) != 0) {
        char claimed[sizeof(f->upstream_digest)];
        snprintf(claimed, sizeof(claimed), "%s", expected);
        char why[400];
        snprintf(why, sizeof(why), "bytes that hash to %s, not %s", digest, claimed);
        if (member_sent_wrong(f, why))
            return;
        refuse_unverified(f, claimed, 1);
        return;
    }
    const char *type;
    char why[300];
    if (cache_check_manifest(f->media_type, body, f->body.len, &type, why, sizeof(why))) {
        char what[340];
        snprintf(what, sizeof(what), "what is not a manifest (%s)", why);
        if (member_sent_wrong(f, what))
            return;
        struct cache_error e = {0};
        cache__error_set(&e, 502, "MANIFEST_INVALID",
                         "upstream %s sent %s/%s that is not a manifest: %s", upstream_name(f->u),
                         f->repo, f->reference, why);
        log_error("%s", e.message);
        struct manifest_meta *m =
            f->by_digest ? NULL : tag_manifest(f->c, f->u, f->repo, f->tag);
        if (m && f->shared) {
            flight_answer_cached(f, m, OUTCOME_STALE);
        } else {
            /* asking again would spend another GET on the same refusal */
            health_note_missing(f->c, f->u, "manifest", f->repo, f->tag);
            flight_answer_error(f, &e);
        }
        flight_free(f);
        return;
    }
    snprintf(f->media_type, sizeof(f->media_type), "%s", type);
    snprintf(f->digest, sizeof(f->digest), "%s", digest);
    /* Answer now from memory; the store write finishes in the background. */
    index_early(f);
    flight_answer_body(f);
    struct manifest_meta *m = index_manifest(f->c, f->digest);
    if (f->listed && m && m->bytes) {
        /* hits come from memory now: a later revalidation asks the upstream itself */
        map_del(f->c->manifest_flights, f->key);
        f->listed = 0;
    }
    f->phase = PHASE_STORING;
    f->work.data = f;
    if (uv_queue_work(f->c->loop, &f->work, work_store, after_store)) {
        log_error("cannot queue manifest store");
        flight_free(f);
    }
}

/* The HEAD names a digest the index already has (the tag moved back, another tag or Accept
 * class has it): the tag points there, and no GET is spent. */
static int head_known(struct manifest_flight *f, const struct upstream_response *resp)
{
    struct cache *c = f->c;
    if (f->by_digest || !resp->digest || !ref_digest_is_sha256(resp->digest, strlen(resp->digest)))
        return 0;
    struct manifest_meta *m = index_manifest(c, resp->digest);
    if (!m)
        return 0;
    index_set_tag(c, f->u, f->repo, f->tag, m->digest, m->media_type, clock_wall_ms(), 1);
    note_basis(f);
    if (f->via == f->u)
        l2_share_tag(c, f->u, f->repo, f->tag); /* moved */
    flight_answer_cached(f, m, OUTCOME_HIT);
    flight_free(f);
    return 1;
}

/* The manifest an Accept class's HEAD named arrived by digest (or could not be had). */
static void on_class_digest(void *ud, const struct manifest_answer *a)
{
    struct manifest_flight *f = ud;
    struct cache *c = f->c;
    if (a->err.status) {
        flight_answer_error(f, &a->err);
        flight_free(f);
        return;
    }
    index_set_tag(c, f->u, f->repo, f->tag, a->digest, a->media_type, clock_wall_ms(), 1);
    note_basis(f);
    if (f->via == f->u)
        l2_share_tag(c, f->u, f->repo, f->tag);
    struct manifest_waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct manifest_waiter *next = w->next;
        answer_one(w->cb, w->ud, f->outcome, a->digest, a->media_type, a->body, a->size);
        waiter_free(w);
        w = next;
    }
    flight_free(f);
}

/* An Accept class's HEAD named a digest the index lacks: it is fetched by digest, in the one
 * flight every class, tag and repository asking for that digest shares. Several classes of a
 * tag often resolve to the same manifest, and a client may ask them all at once: by tag, each
 * would spend a GET on it. 1 when the flight now waits for it (f may be freed already). */
static int class_by_digest(struct manifest_flight *f, const struct upstream_response *resp)
{
    if (f->by_digest || strcmp(f->tag, f->reference) == 0 || !resp->digest ||
        !ref_digest_is_sha256(resp->digest, strlen(resp->digest)))
        return 0;
    struct cache *c = f->c;
    char digest[DIGEST_MAX];
    snprintf(digest, sizeof(digest), "%s", resp->digest);
    f->phase = PHASE_GET;
    int was = c->direct_now;
    c->direct_now = f->direct;
    fetch(c, f->u, f->repo, digest, on_class_digest, f);
    c->direct_now = was;
    return 1;
}

/* A client's HEAD of a tag not cached, answered by a HEAD upstream (which costs no pull): what
 * it said is trusted for revalidate_after. 0 when the HEAD said too little (no digest, size or
 * manifest media type): a GET follows, as containerd does. */
static int head_answers(struct manifest_flight *f, const struct upstream_response *resp)
{
    struct cache *c = f->c;
    const char *type = index_manifest_type(resp->content_type);
    if (!type || !resp->digest || !ref_digest_is_sha256(resp->digest, strlen(resp->digest)) ||
        resp->content_length < 0 || (uint64_t)resp->content_length > c->cfg->max_manifest_bytes)
        return 0;
    char digest[DIGEST_MAX];
    snprintf(digest, sizeof(digest), "%s", resp->digest);
    index_set_tag(c, f->u, f->repo, f->tag, digest, type, clock_wall_ms(), 0);
    note_basis(f);
    struct tag_entry *t = index_tag(c, f->u, f->repo, f->tag);
    struct manifest_waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct manifest_waiter *next = w->next;
        answer_one(w->cb, w->ud, OUTCOME_MISS, digest, type, NULL,
                   (size_t)resp->content_length);
        waiter_free(w);
        w = next;
    }
    if (t) {
        t->head_size = (uint64_t)resp->content_length;
        t->head_size_known = 1;
    }
    flight_free(f);
    return 1;
}


/* A member gave no usable answer: one that gave none at all is down and the key's successor is
 * asked (the upstream, when that is this replica); one that refused (5xx, 401, 403) has the
 * upstream asked directly. Its 404 and 429 are the upstream's (the member asked it, and keeps
 * to the pause): not here. 1 when the phase was asked again. */
static int peer_failed(struct manifest_flight *f, const struct upstream_response *resp)
{
    if (f->via == f->u || resp->status == 404 || resp->status == 429 ||
        (resp->status >= 200 && resp->status < 300))
        return 0;
    char why[300];
    if (resp->status)
        snprintf(why, sizeof(why), "HTTP %ld", resp->status);
    else
        snprintf(why, sizeof(why), "%s", resp->error ? resp->error : "no answer");
    const char *member = upstream_source_name(f->via);
    struct upstream *next = f->u;
    metrics_cluster_asked(METRICS_MANIFEST, METRICS_CLUSTER_FAILED);
    if (!resp->status) {
        cluster_member_failed(f->c->cluster, f->via, why);
        if (f->peer_asks < FLIGHT_PEER_ASKS_MAX)
            next = cluster_via(f->c->cluster, f->u, f->owner_key);
    }
    log_warn("manifest %s/%s: member %s: %s; asking %s", f->repo, f->reference, member, why,
             next == f->u ? "the upstream" : upstream_source_name(next));
    f->peer_asks += next != f->u;
    f->via = next;
    start_phase(f, f->phase);
    return 1;
}

static void on_done(void *ud, const struct upstream_response *resp, int result)
{
    struct manifest_flight *f = ud;
    struct cache *c = f->c;
    f->req = NULL;
    if (!f->too_large && (resp->status != 200 || result != 0) && peer_failed(f, resp))
        return;
    if (f->via != f->u)
        metrics_cluster_asked(METRICS_MANIFEST, METRICS_CLUSTER_ANSWERED);
    if (f->too_large) {
        struct cache_error e = {0};
        cache__error_set(&e, 502, "MANIFEST_INVALID", "upstream manifest larger than %llu bytes",
                  (unsigned long long)c->cfg->max_manifest_bytes);
        flight_answer_error(f, &e);
        flight_free(f);
        return;
    }
    int ok = resp->status == 200 && result == 0;
    if (f->phase == PHASE_HEAD) {
        struct tag_entry *t = index_tag(c, f->u, f->repo, f->tag);
        if (ok && t && resp->digest && strcmp(resp->digest, t->digest) == 0) {
            struct manifest_meta *m = index_manifest(c, t->digest);
            if (m) {
                index_tag_validated(c, f->u, f->repo, f->tag, clock_wall_ms());
                note_basis(f);
                if (f->via == f->u)
                    l2_share_tag(c, f->u, f->repo, f->tag); /* at most every L2_TAG_SHARE_MS */
                flight_answer_cached(f, m, OUTCOME_HIT);
                flight_free(f);
                return;
            }
        }
        if (ok && head_known(f, resp))
            return;
        if (ok && resp->digest && ref_digest_is_sha256(resp->digest, strlen(resp->digest)) &&
            health_known_missing(c, f->u, "manifest", f->repo, resp->digest)) {
            char claimed[sizeof(f->upstream_digest)];
            snprintf(claimed, sizeof(claimed), "%s", resp->digest);
            refuse_unverified(f, claimed, 0); /* no GET for it until negative_ttl passes */
            return;
        }
        if (ok && f->head_only && head_answers(f, resp))
            return;
        if (ok && class_by_digest(f, resp))
            return;
        if (ok || (resp->status == 405 && !tag_manifest(c, f->u, f->repo, f->tag))) {
            start_phase(f, PHASE_GET); /* moved, no digest given, or HEAD not allowed */
            return;
        }
    }
    if (ok) {
        got_manifest(f);
        return;
    }
    if (!flight_fail(f, resp))
        flight_free(f);
}

static const struct upstream_callbacks flight_callbacks = {on_headers, on_data, on_done};

static void start_phase(struct manifest_flight *f, enum flight_phase phase)
{
    char what[300];
    f->phase = phase;
    f->status = 0;
    f->too_large = 0;
    buf_reset(&f->body);
    snprintf(what, sizeof(what), "manifests/%s", f->reference);
    f->req = upstream_request(f->via, phase == PHASE_HEAD ? UPSTREAM_HEAD : UPSTREAM_GET,
                              f->repo, what, NULL, f->accept, &flight_callbacks, f);
    if (!f->req) {
        struct cache_error e = {0};
        cache__error_set(&e, 503, "UNAVAILABLE", "out of memory");
        flight_answer_error(f, &e);
        flight_free(f);
    }
}

/* ---- the S3 tier's manifests and tag records ---- */

static int l2_body(void *ud, const char *data, size_t len)
{
    struct manifest_flight *f = ud;
    if (buf_append(&f->body, data, len)) {
        f->too_large = 1;
        return -1;
    }
    return 0;
}

static enum metrics_s3_shared_result l2_failure(const struct s3_reply *r)
{
    return r->result == -ENOENT ? METRICS_S3_SHARED_NOT_FOUND : METRICS_S3_SHARED_ERROR;
}

/* The bucket had nothing usable: by digest the flight goes on as without the tier; a tag's
 * waiters get the upstream's error. Frees f in the second case. */
static void l2_nothing(struct manifest_flight *f)
{
    buf_reset(&f->body);
    f->too_large = 0;
    f->from_l2 = 0;
    if (f->by_digest) {
        start_phase(f, PHASE_GET);
        return;
    }
    flight_answer_error(f, &f->l2_err);
    flight_free(f);
}

static void l2_manifest_done(void *ud, const struct s3_reply *r)
{
    struct manifest_flight *f = ud;
    f->l2op = NULL;
    const char *want = f->by_digest ? f->reference : f->rec.digest;
    if (r->result || f->too_large) {
        if (f->too_large)
            log_error("s3 tier: the manifest object of %s is larger than %llu bytes; refused",
                      want, (unsigned long long)f->c->cfg->max_manifest_bytes);
        else if (r->result != -ENOENT || !f->by_digest)
            log_warn("s3 tier: reading the manifest %s failed (%s)", want,
                     r->result == -ENOENT ? "not in the bucket" : r->message);
        metrics_s3_shared(METRICS_S3_SHARED_MANIFEST, 0,
                          f->too_large ? METRICS_S3_SHARED_REFUSED : l2_failure(r));
        l2_nothing(f);
        return;
    }
    char digest[DIGEST_MAX], why[300] = "";
    const char *body = f->body.data ? f->body.data : "", *type = NULL;
    store_digest_of(body, f->body.len, digest);
    /* a Content-Type that is not a manifest type says nothing: the body tells */
    const char *ct = index_manifest_type(r->content_type) ? r->content_type : NULL;
    if (strcmp(digest, want) != 0)
        snprintf(why, sizeof(why), "bytes that hash to %s", digest);
    else if (cache_check_manifest(ct, body, f->body.len, &type, why, sizeof(why)))
        ;
    else if (!f->by_digest && strcmp(type, f->rec.media_type) != 0)
        snprintf(why, sizeof(why), "a %s, not the %s its tag record names", type,
                 f->rec.media_type);
    if (why[0]) {
        log_error("s3 tier: the manifest object of %s holds %s; refused", want, why);
        metrics_s3_shared(METRICS_S3_SHARED_MANIFEST, 0, METRICS_S3_SHARED_REFUSED);
        l2_nothing(f);
        return;
    }
    metrics_s3_shared(METRICS_S3_SHARED_MANIFEST, 0, METRICS_S3_SHARED_OK);
    f->from_l2 = 1;
    f->status = 200;
    snprintf(f->media_type, sizeof(f->media_type), "%s", type);
    snprintf(f->upstream_digest, sizeof(f->upstream_digest), "%s", want);
    if (!f->by_digest) {
        f->outcome = OUTCOME_STALE;
        log_warn("upstream %s: %s; serving %s:%s stale from the s3 tier (%s)",
                 upstream_name(f->u), f->l2_err.message, f->repo, f->reference, want);
    }
    got_manifest(f); /* stored and indexed like one from the upstream; not written back */
}

/* By digest, before anything else: 1 when the bucket is asked. */
static int l2_read_manifest(struct manifest_flight *f)
{
    if (f->l2_tried || !l2_enabled(f->c))
        return 0;
    f->l2_tried = 1;
    buf_reset(&f->body);
    f->too_large = 0;
    f->l2op = l2_get_manifest(f->c, f->reference, l2_body, l2_manifest_done, f);
    return f->l2op != NULL;
}

static void l2_tag_done(void *ud, const struct s3_reply *r)
{
    struct manifest_flight *f = ud;
    struct cache *c = f->c;
    f->l2op = NULL;
    char why[300] = "";
    if (r->result || f->too_large) {
        if (r->result != -ENOENT)
            log_warn("s3 tier: reading the tag record of %s:%s failed (%s)", f->repo,
                     f->reference, f->too_large ? "too large" : r->message);
        metrics_s3_shared(METRICS_S3_SHARED_TAG, 0,
                          f->too_large ? METRICS_S3_SHARED_REFUSED : l2_failure(r));
        l2_nothing(f);
        return;
    }
    if (l2_tag_record_parse(f->body.data ? f->body.data : "", f->body.len, upstream_name(f->u),
                            f->repo, f->reference, &f->rec, why, sizeof(why))) {
        log_error("s3 tier: the tag record of %s:%s is refused: %s", f->repo, f->reference,
                  why);
        metrics_s3_shared(METRICS_S3_SHARED_TAG, 0, METRICS_S3_SHARED_REFUSED);
        l2_nothing(f);
        return;
    }
    metrics_s3_shared(METRICS_S3_SHARED_TAG, 0, METRICS_S3_SHARED_OK);
    if (!accept_allows(f->accept, f->rec.media_type)) {
        l2_nothing(f); /* not what this client takes */
        return;
    }
    uint64_t now = clock_wall_ms();
    if (f->rec.confirmed_ms > now)
        f->rec.confirmed_ms = now; /* another clock */
    struct manifest_meta *m = index_manifest(c, f->rec.digest);
    if (m) { /* the manifest is here already (another tag has it) */
        log_warn("upstream %s: %s; serving %s:%s stale from the s3 tier's record",
                 upstream_name(f->u), f->l2_err.message, f->repo, f->reference);
        index_set_tag(c, f->u, f->repo, f->tag, m->digest, m->media_type, f->rec.confirmed_ms,
                      1);
        flight_answer_cached(f, m, OUTCOME_STALE);
        flight_free(f);
        return;
    }
    buf_reset(&f->body);
    f->too_large = 0;
    if (!(f->l2op = l2_get_manifest(c, f->rec.digest, l2_body, l2_manifest_done, f)))
        l2_nothing(f);
}

/* A tag the index cannot serve, with the upstream unable to answer: its record in the bucket.
 * 1 when asked (the flight answers its waiters). */
static int l2_read_tag(struct manifest_flight *f, const struct upstream_response *resp,
                       const struct cache_error *e)
{
    long st = resp->status;
    if (f->by_digest || !f->shared || f->l2_tried || !f->waiters || !l2_enabled(f->c) ||
        !(st == 0 || st == 429 || st >= 500))
        return 0;
    f->l2_tried = 1;
    f->l2_err = *e;
    buf_reset(&f->body);
    f->too_large = 0;
    f->l2op = l2_get_tag(f->c, f->u, f->repo, f->reference, l2_body, l2_tag_done, f);
    return f->l2op != NULL;
}

/* Flights by digest are shared within one upstream (any repository); by tag within one
 * repository and Accept class; a client's HEAD of an uncached tag has its own. */
static void flight_key(char *key, size_t len, const struct upstream *u, const char *repo,
                       const char *reference, const char *tag, int head_only)
{
    if (strchr(reference, ':'))
        snprintf(key, len, "%s" KEY_SEP "%s", upstream_name(u), reference);
    else {
        tag_key(key, len, u, repo, tag);
        if (head_only)
            snprintf(key + strlen(key), len - strlen(key), "%s", KEY_SEP "head");
    }
}

static struct manifest_flight *flight_new(struct cache *c, struct upstream *u, const char *repo,
                                          const char *reference, const char *tag,
                                          const char *accept, const char *key)
{
    struct manifest_flight *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->c = c;
    f->u = u;
    f->via = u;
    f->by_digest = strchr(reference, ':') != NULL;
    f->repo = strdup(repo);
    f->reference = strdup(reference);
    f->tag = strdup(tag);
    f->accept = strdup(accept);
    f->key = strdup(key);
    buf_init(&f->body, c->cfg->max_manifest_bytes);
    if (!f->repo || !f->reference || !f->tag || !f->accept || !f->key) {
        flight_free(f);
        return NULL;
    }
    if (map_put(c->manifest_flights, key, f) == MAP_NOMEM) {
        flight_free(f);
        return NULL;
    }
    f->shared = f->listed = 1;
    f->outcome = OUTCOME_MISS;
    return f;
}

static int flight_join(struct manifest_flight *f, const char *repo, manifest_cb cb, void *ud,
                       unsigned flags, void (*drop)(void *ud))
{
    if (f->answered) {
        answer_one(cb, ud, f->outcome, f->digest, f->media_type, f->body.data, f->body.len);
        return 0;
    }
    struct manifest_waiter *w = calloc(1, sizeof(*w));
    if (!w || !(w->repo = strdup(repo))) {
        free(w);
        return -ENOMEM;
    }
    w->cb = cb;
    w->ud = ud;
    w->flags = flags;
    w->drop = drop;
    w->next = f->waiters;
    f->waiters = w;
    return 0;
}

/* The tag's cached manifest, when there is one. */
static struct manifest_meta *tag_manifest(struct cache *c, const struct upstream *u,
                                          const char *repo, const char *tag)
{
    struct tag_entry *t = index_tag(c, u, repo, tag);
    return t ? index_manifest(c, t->digest) : NULL;
}

static void on_revalidate_timeout(uv_timer_t *timer)
{
    struct manifest_flight *f = timer->data;
    struct cache *c = f->c;
    struct manifest_meta *m = tag_manifest(c, f->u, f->repo, f->tag);
    struct manifest_waiter *w, **pw, *told = NULL;
    int deadline = 0;
    f->overdue = 1;
    for (w = f->waiters; w; w = w->next)
        deadline |= (w->flags & WAIT_DEADLINE) != 0;
    if (!f->waiters || (!m && !deadline))
        return;
    char why[128];
    snprintf(why, sizeof(why), "no answer to a tag revalidation within %llu ms",
             (unsigned long long)c->cfg->revalidate_timeout_ms);
    health_overdue(c, f->u, why);
    if (m) {
        f->stale_answered = 1;
        flight_answer_cached(f, m, OUTCOME_STALE); /* the flight goes on for the tag's sake */
        return;
    }
    /* nothing cached to serve: only the waiters with a stale answer of their own are told */
    for (pw = &f->waiters; (w = *pw);) {
        if (w->flags & WAIT_DEADLINE) {
            *pw = w->next;
            w->next = told;
            told = w;
        } else {
            pw = &w->next;
        }
    }
    struct cache_error e = {0};
    cache__error_set(&e, 504, "UNAVAILABLE", "%s", why);
    while (told) {
        struct manifest_waiter *next = told->next;
        answer_error(told->cb, told->ud, &e);
        waiter_free(told);
        told = next;
    }
}

static void answer_oom(manifest_cb cb, void *ud)
{
    struct cache_error e = {0};
    cache__error_set(&e, 503, "UNAVAILABLE", "out of memory");
    answer_error(cb, ud, &e);
}

/* A tag the index lacks while its upstream asked for a pause: a flight that asks only the
 * bucket (its record, then the manifest), answering e when it has nothing. 1 when started. */
static int paused_from_bucket(struct cache *c, struct upstream *u, const char *repo,
                              const char *reference, const char *tag, const char *accept,
                              const char *key, manifest_cb cb, void *ud, unsigned flags,
                              void (*drop)(void *ud), const struct cache_error *e)
{
    if (strchr(reference, ':') || !l2_enabled(c))
        return 0;
    struct manifest_flight *f = flight_new(c, u, repo, reference, tag, accept, key);
    if (!f)
        return 0;
    struct upstream_response paused = {.status = 429, .content_length = -1};
    if (flight_join(f, repo, cb, ud, flags, drop) == 0 && l2_read_tag(f, &paused, e))
        return 1;
    while (f->waiters) { /* the caller answers it */
        struct manifest_waiter *w = f->waiters;
        f->waiters = w->next;
        waiter_free(w);
    }
    flight_free(f);
    return 0;
}

/* Asks upstream, joining an identical request in flight. tag: the index's name for the answer
 * (reference, or reference KEY_SEP class); accept: what is sent upstream; flags, drop: the
 * waiter's (WAIT_*). */
static void ask(struct cache *c, struct upstream *u, const char *repo, const char *reference,
                const char *tag, const char *accept, enum flight_phase phase, int head_only,
                manifest_cb cb, void *ud, unsigned flags, void (*drop)(void *ud))
{
    char key[TAG_KEY_MAX + 176];
    flight_key(key, sizeof(key), u, repo, reference, tag, head_only);
    struct manifest_flight *f = map_get(c->manifest_flights, key);
    struct manifest_meta *m;
    int direct = c->direct_now;
    if (f && direct && f->via != f->u) {
        /* a member's request joins no flight waiting for a member (it may be that one) */
        snprintf(key + strlen(key), sizeof(key) - strlen(key), "%s", KEY_SEP "direct");
        f = map_get(c->manifest_flights, key);
    }
    if (f && f->stale_answered && (m = tag_manifest(c, u, repo, tag))) {
        deliver(c, m, OUTCOME_STALE, u, repo, cb, ud, flags); /* it is taking too long */
        return;
    }
    if (f && f->overdue && (flags & WAIT_DEADLINE)) {
        /* it is taking too long, and this waiter has a stale answer of its own */
        char why[128];
        snprintf(why, sizeof(why), "no answer to a tag revalidation within %llu ms",
                 (unsigned long long)c->cfg->revalidate_timeout_ms);
        health_overdue(c, u, why);
        struct cache_error late = {0};
        cache__error_set(&late, 504, "UNAVAILABLE", "%s", why);
        answer_error(cb, ud, &late);
        return;
    }
    if (f) {
        metrics_fill_joined(METRICS_MANIFEST);
        if (flight_join(f, repo, cb, ud, flags, drop))
            answer_oom(cb, ud);
        return;
    }
    struct cache_error e = {0};
    if (health_backoff(c, u, &e)) {
        /* the upstream asked for a pause (429 Retry-After): ask it nothing until then */
        if (!strchr(reference, ':') && (m = tag_manifest(c, u, repo, tag)))
            deliver(c, m, OUTCOME_STALE, u, repo, cb, ud, flags);
        else if (!paused_from_bucket(c, u, repo, reference, tag, accept, key, cb, ud, flags,
                                     drop, &e))
            answer_error(cb, ud, &e);
        return;
    }
    f = flight_new(c, u, repo, reference, tag, accept, key);
    if (!f || flight_join(f, repo, cb, ud, flags, drop)) {
        if (f)
            flight_free(f);
        answer_oom(cb, ud);
        return;
    }
    f->head_only = head_only;
    f->direct = direct;
    if (!direct && c->cluster) {
        /* the owner of the digest, or of the tag itself (every Accept class of a tag with it) */
        char owner_key[TAG_KEY_MAX];
        if (f->by_digest)
            snprintf(owner_key, sizeof(owner_key), "%s", reference);
        else
            tag_key(owner_key, sizeof(owner_key), u, repo, reference);
        if ((f->owner_key = strdup(owner_key))) /* else asked directly */
            f->via = cluster_via(c->cluster, u, owner_key);
    }
    if (!f->by_digest && strcmp(tag, reference) != 0) {
        struct tag_entry *ct = index_tag(c, u, repo, reference);
        if (ct && clock_wall_ms() - ct->validated_ms < c->cfg->revalidate_after_ms)
            snprintf(f->basis, sizeof(f->basis), "%s", ct->digest);
    }
    if (phase == PHASE_HEAD && !f->by_digest) {
        uv_timer_init(c->loop, &f->timer);
        f->timer.data = f;
        f->timer_on = 1;
        uv_timer_start(&f->timer, on_revalidate_timeout, c->cfg->revalidate_timeout_ms, 0);
    }
    /* by digest: the bucket first (a member asking has asked it already) */
    if (f->by_digest && !direct && l2_read_manifest(f))
        return;
    start_phase(f, phase);
}

static void fetch_phase(struct cache *c, struct upstream *u, const char *repo,
                        const char *reference, const char *tag, const char *accept,
                        enum flight_phase phase, int head_only, manifest_cb cb, void *ud)
{
    ask(c, u, repo, reference, tag, accept, phase, head_only, cb, ud, 0, NULL);
}

/* By digest, through one upstream: shared by every repository asking through it. */
static void fetch(struct cache *c, struct upstream *u, const char *repo, const char *reference,
                  manifest_cb cb, void *ud)
{
    fetch_phase(c, u, repo, reference, reference, ALL_MANIFEST_TYPES, PHASE_GET, 0, cb, ud);
}

/* ---- Accept classes ----
 * What a tag resolves to depends on the Accept list, so an answer is cached per class: the
 * set of manifest media types the list takes. A list that takes all of them (or none: no
 * preference the mirror can honour) is the common class, the tag itself; any other is asked
 * upstream with exactly that set, and its answer kept under "tag" KEY_SEP class. */
static const char *const class_types[N_MANIFEST_TYPES] = {MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST,
                                                          MEDIA_OCI_MANIFEST,
                                                          MEDIA_DOCKER_MANIFEST};
#define CLASS_ALL ((1u << N_MANIFEST_TYPES) - 1)

static unsigned accept_class(const char *accept)
{
    unsigned cls = 0;
    for (unsigned i = 0; i < N_MANIFEST_TYPES; i++)
        if (accept_allows(accept, class_types[i]))
            cls |= 1u << i;
    return cls ? cls : CLASS_ALL;
}

static void class_accept(unsigned cls, char *out, size_t len)
{
    out[0] = '\0';
    for (unsigned i = 0; i < N_MANIFEST_TYPES; i++)
        if (cls & (1u << i))
            snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? ", " : "",
                     class_types[i]);
}

static void answer_head(manifest_cb cb, void *ud, const struct tag_entry *t)
{
    answer_one(cb, ud, OUTCOME_HIT, t->digest, t->media_type, NULL, (size_t)t->head_size);
}

/* ---- an Accept class's answer follows the tag itself ----
 * A class's answer is a function of what the tag is upstream, and the tag's own digest (asked
 * with every type) says what that is. So a class's answer records the tag's digest when it was
 * validated (its basis), and a stale one is revalidated through the tag itself: while the tag
 * (fresh) still has that digest, the answer holds, and a stale tag is revalidated first (its
 * flight joined, or started: a HEAD with every type, shared by every class and client). Only
 * when the tag moved does a class ask upstream for its own answer. However many classes a
 * client cycles through, the tag costs one HEAD per revalidate_after, plus one per class when
 * it is first asked or the tag moves. */
struct class_wait {
    struct cache *c;
    struct upstream *u;
    char *repo, *reference, *accept;
    int head, direct;
    manifest_cb cb;
    void *ud;
};

static void manifest_tag(struct cache *c, struct upstream *u, const char *repo,
                         const char *reference, const char *accept, int head, manifest_cb cb,
                         void *ud, int retried);

static void class_wait_free(void *ud)
{
    struct class_wait *cw = ud;
    free(cw->repo);
    free(cw->reference);
    free(cw->accept);
    free(cw);
}

/* The tag itself was revalidated, or failed to be: the class is decided again, once. */
static void on_tag_revalidated(void *ud, const struct manifest_answer *a)
{
    (void)a;
    struct class_wait *cw = ud;
    int was = cw->c->direct_now;
    cw->c->direct_now = cw->direct;
    manifest_tag(cw->c, cw->u, cw->repo, cw->reference, cw->accept, cw->head, cw->cb, cw->ud,
                 1);
    cw->c->direct_now = was;
    class_wait_free(cw);
}

/* 0 when the client will be answered once the tag itself is revalidated. */
static int revalidate_tag_first(struct cache *c, struct upstream *u, const char *repo,
                                const char *reference, const char *accept, int head,
                                int has_stale, manifest_cb cb, void *ud)
{
    struct class_wait *cw = calloc(1, sizeof(*cw));
    if (!cw || !(cw->repo = strdup(repo)) || !(cw->reference = strdup(reference)) ||
        (accept && !(cw->accept = strdup(accept)))) {
        if (cw)
            class_wait_free(cw);
        return -ENOMEM;
    }
    cw->c = c;
    cw->u = u;
    cw->head = head;
    cw->direct = c->direct_now;
    cw->cb = cb;
    cw->ud = ud;
    /* join the tag's flight, whatever it is doing; else a HEAD, as for a client's HEAD when
     * the tag's manifest is not cached (its digest is all a class needs) */
    char key[TAG_KEY_MAX + 160];
    flight_key(key, sizeof(key), u, repo, reference, reference, 0);
    int head_only = !map_get(c->manifest_flights, key) && !tag_manifest(c, u, repo, reference);
    ask(c, u, repo, reference, reference, ALL_MANIFEST_TYPES, PHASE_HEAD, head_only,
        on_tag_revalidated, cw, WAIT_NOTIFY | (has_stale ? WAIT_DEADLINE : 0), class_wait_free);
    return 0;
}

void cache_manifest(struct cache *c, struct upstream *u, const char *repo, const char *reference,
                    const char *accept, int head, manifest_cb cb, void *ud)
{
    struct cache_error e = {0};
    if (strchr(reference, ':')) {
        struct manifest_meta *m = index_manifest(c, reference);
        if (m)
            serve_cached(c, m, OUTCOME_HIT, u, repo, cb, ud);
        else if (health_known_missing(c, u, "manifest", repo, reference)) {
            cache__error_set(&e, 404, "MANIFEST_UNKNOWN",
                             "not found upstream (%s said so lately)", upstream_name(u));
            answer_error(cb, ud, &e);
        } else
            fetch(c, u, repo, reference, cb, ud);
        return;
    }
    manifest_tag(c, u, repo, reference, accept, head, cb, ud, 0);
}

void cache_manifest_direct(struct cache *c, struct upstream *u, const char *repo,
                           const char *reference, const char *accept, int head, manifest_cb cb,
                           void *ud)
{
    int was = c->direct_now;
    c->direct_now = 1;
    cache_manifest(c, u, repo, reference, accept, head, cb, ud);
    c->direct_now = was;
}

/* retried: the tag itself was just revalidated (or failed to be) for this request. */
static void manifest_tag(struct cache *c, struct upstream *u, const char *repo,
                         const char *reference, const char *accept, int head, manifest_cb cb,
                         void *ud, int retried)
{
    struct cache_error e = {0};
    const char *tag = reference, *up_accept = ALL_MANIFEST_TYPES;
    char ntag[300], naccept[sizeof(ALL_MANIFEST_TYPES) + 8];
    struct tag_entry *t = index_tag(c, u, repo, reference);
    struct manifest_meta *m = t ? index_manifest(c, t->digest) : NULL;
    unsigned cls = accept_class(accept);
    if (cls != CLASS_ALL && !(m && accept_allows(accept, m->media_type))) {
        /* The client cannot take (or may not get) what the tag resolves to: its own class. */
        snprintf(ntag, sizeof(ntag), "%s" KEY_SEP "%u", reference, cls);
        class_accept(cls, naccept, sizeof(naccept));
        tag = ntag;
        up_accept = naccept;
        t = index_tag(c, u, repo, tag);
        m = t ? index_manifest(c, t->digest) : NULL;
    }
    uint64_t now = clock_wall_ms();
    int fresh = t && now - t->validated_ms < c->cfg->revalidate_after_ms;
    if (m && fresh) {
        serve_cached(c, m, OUTCOME_HIT, u, repo, cb, ud);
        return;
    }
    if (!m && head && t && fresh && t->head_size_known) {
        answer_head(cb, ud, t); /* what a HEAD upstream said lately */
        return;
    }
    if (m && health_is_down(c, u)) {
        /* its probe brings it back; until then the cached manifest is the answer */
        serve_cached(c, m, OUTCOME_STALE, u, repo, cb, ud);
        return;
    }
    /* missing for every class when the common class was told so; for its own class only
     * otherwise (a narrow Accept's 404 says nothing of what others may get) */
    if (!m && (health_known_missing(c, u, "manifest", repo, tag) ||
               (tag != reference && health_known_missing(c, u, "manifest", repo, reference)))) {
        cache__error_set(&e, 404, "MANIFEST_UNKNOWN",
                         "not found upstream (%s said so lately)", upstream_name(u));
        answer_error(cb, ud, &e);
        return;
    }
    if (tag != reference) {
        struct tag_entry *ct = index_tag(c, u, repo, reference);
        int tag_fresh = ct && now - ct->validated_ms < c->cfg->revalidate_after_ms;
        if (t && t->basis[0] && tag_fresh && strcmp(t->basis, ct->digest) == 0) {
            /* the tag has not moved since the class's answer was validated: it holds */
            t->validated_ms = ct->validated_ms;
            if (m)
                serve_cached(c, m, OUTCOME_HIT, u, repo, cb, ud);
            else if (head && t->head_size_known)
                answer_head(cb, ud, t);
            else /* its digest is known: by digest (cached, known missing, or one GET) */
                cache_manifest(c, u, repo, t->digest, NULL, 0, cb, ud);
            return;
        }
        if (!tag_fresh && !retried && !health_is_down(c, u) &&
            revalidate_tag_first(c, u, repo, reference, accept, head, m != NULL, cb, ud) == 0)
            return;
    }
    /* A HEAD first when it may spare a GET (a HEAD costs no pull): a cached tag may be
     * unchanged, a client may only want the HEAD, a narrow Accept class's answer may be a
     * manifest the index already has. A GET follows only for a digest not cached. A GET of a
     * tag nobody asked for yet goes straight to GET: one request, one pull. */
    fetch_phase(c, u, repo, reference, tag, up_accept,
                m || head || tag != reference ? PHASE_HEAD : PHASE_GET, !m && head, cb, ud);
}

void manifests_free_all(struct cache *c)
{
    /* Only at shutdown: requests are dropped, waiters are not answered. A flight writing to
     * the store finishes on its own (after_store). */
    void **all;
    size_t n;
    if (map_values(c->manifest_flights, &all, &n))
        return;
    for (size_t i = 0; i < n; i++) {
        struct manifest_flight *f = all[i];
        if (f->req)
            upstream_req_cancel(f->req);
        f->req = NULL;
        if (f->l2op)
            s3_cancel(f->l2op);
        f->l2op = NULL;
        if (f->phase == PHASE_STORING)
            continue;
        while (f->waiters) {
            struct manifest_waiter *w = f->waiters;
            f->waiters = w->next;
            if (w->drop)
                w->drop(w->ud);
            waiter_free(w);
        }
        flight_free(f);
    }
    free(all);
}
