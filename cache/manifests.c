/* Manifests: by digest (immutable) and by tag (revalidated with HEAD), one upstream request per
 * key however many clients ask at once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cache/impl.h"
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
};

enum flight_phase { PHASE_HEAD, PHASE_GET, PHASE_STORING };

struct manifest_flight {
    struct cache *c;
    char *key;
    struct upstream *u;
    char *repo, *reference;
    char *accept; /* what is sent upstream */
    int by_digest;
    int shared; /* asks for every media type and records the tag (passthroughs do not) */
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
    /* a tag revalidation: cache.revalidate_timeout, after which waiters get the cached
     * manifest (stale) and the flight goes on in the background to update the tag */
    uv_timer_t timer;
    int timer_on, stale_answered;
};

/* The media type of manifest bytes when the upstream did not say. */
static void sniff_media_type(const char *body, size_t len, char *out, size_t outlen)
{
    if (json_get_string(body, len, "mediaType", out, outlen) > 0)
        return;
    snprintf(out, outlen, "%s", "application/vnd.oci.image.manifest.v1+json");
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
                  const char *accept, manifest_cb cb, void *ud);
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
        fetch(c, l->u, l->repo, l->digest, NULL, l->cb, l->ud);
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
    free(f->repo);
    free(f->reference);
    free(f->accept);
    f->key = f->repo = f->reference = f->accept = NULL;
    if (f->timer_on) {
        uv_timer_stop(&f->timer);
        uv_close((uv_handle_t *)&f->timer, flight_closed); /* frees f */
    } else {
        free(f);
    }
}

/* Answers every waiter; each callback may start new requests. */
static void flight_answer_cached(struct manifest_flight *f, struct manifest_meta *m,
                                 enum cache_outcome outcome)
{
    struct manifest_waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct manifest_waiter *next = w->next;
        serve_cached(f->c, m, outcome, f->u, f->repo, w->cb, w->ud);
        free(w);
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
        free(w);
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
        answer_one(w->cb, w->ud, OUTCOME_MISS, f->digest, f->media_type, f->body.data,
                   f->body.len);
        free(w);
        w = next;
    }
}

static void start_phase(struct manifest_flight *f, enum flight_phase phase);

/* Upstream unreachable or failing: serve the cached manifest of a tag when there is one. */
static void flight_fail(struct manifest_flight *f, const struct upstream_response *resp)
{
    struct cache *c = f->c;
    struct cache_error e = {0};
    cache__error_from_upstream(&e, f->u, resp, "MANIFEST_UNKNOWN");
    if (!f->by_digest && resp->status != 404) {
        struct tag_entry *t = index_tag(c, f->u, f->repo, f->reference);
        struct manifest_meta *m = t ? index_manifest(c, t->digest) : NULL;
        if (m && accept_allows(f->accept, m->media_type)) {
            if (f->waiters)
                log_warn("upstream %s: %s; serving %s:%s stale", upstream_name(f->u), e.message,
                         f->repo, f->reference);
            flight_answer_cached(f, m, OUTCOME_STALE);
            return;
        }
    }
    if (resp->status == 404 && !f->by_digest && f->shared)
        index_forget_tag(c, f->u, f->repo, f->reference);
    flight_answer_error(f, &e);
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
    struct tag_entry *t = index_tag(f->c, f->u, f->repo, f->reference);
    return t && strcmp(t->digest, f->digest) == 0;
}

static void after_store(uv_work_t *w, int status)
{
    struct manifest_flight *f = w->data;
    struct cache *c = f->c;
    if (status == 0 && f->store_result == 0) {
        index_add_manifest(c, f->digest, f->media_type, f->body.len, 1);
        if (!f->known_before)
            cache_stored(c, f->body.len);
        if (still_ours(f))
            index_set_tag(c, f->u, f->repo, f->reference, f->digest, f->media_type,
                          f->validated_ms, 1);
    } else {
        log_error("cannot store manifest %s: %s", f->digest,
                  strerror(status ? -status : -f->store_result));
        if (!f->known_before)
            index_drop_manifest(c, f->digest);
        if (still_ours(f))
            index_forget_tag(c, f->u, f->repo, f->reference);
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
    if (!f->by_digest && f->shared)
        index_set_tag(c, f->u, f->repo, f->reference, f->digest, f->media_type, f->validated_ms,
                      0);
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
        struct cache_error e = {0};
        cache__error_set(&e, 502, "UNAVAILABLE",
                         "upstream %s sent manifest bytes that do not hash to %s",
                         upstream_name(f->u), expected);
        log_error("%s", e.message);
        struct manifest_meta *m =
            f->by_digest ? NULL : tag_manifest(f->c, f->u, f->repo, f->reference);
        if (m && f->shared)
            flight_answer_cached(f, m, OUTCOME_STALE); /* what it said before, verified then */
        else
            flight_answer_error(f, &e);
        flight_free(f);
        return;
    }
    snprintf(f->digest, sizeof(f->digest), "%s", digest);
    if (!f->media_type[0] || strncasecmp(f->media_type, "application/json", 16) == 0 ||
        strncasecmp(f->media_type, "text/plain", 10) == 0)
        sniff_media_type(body, f->body.len, f->media_type, sizeof(f->media_type));
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

static void on_done(void *ud, const struct upstream_response *resp, int result)
{
    struct manifest_flight *f = ud;
    struct cache *c = f->c;
    f->req = NULL;
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
        struct tag_entry *t = index_tag(c, f->u, f->repo, f->reference);
        if (ok && t && resp->digest && strcmp(resp->digest, t->digest) == 0) {
            struct manifest_meta *m = index_manifest(c, t->digest);
            if (m) {
                index_tag_validated(c, f->u, f->repo, f->reference, clock_wall_ms());
                flight_answer_cached(f, m, OUTCOME_HIT);
                flight_free(f);
                return;
            }
        }
        if (ok) {
            start_phase(f, PHASE_GET); /* moved, or the upstream gave no digest */
            return;
        }
    }
    if (ok) {
        got_manifest(f);
        return;
    }
    flight_fail(f, resp);
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
    f->req = upstream_request(f->u, phase == PHASE_HEAD ? UPSTREAM_HEAD : UPSTREAM_GET, f->repo,
                              what, NULL, f->accept, &flight_callbacks, f);
    if (!f->req) {
        struct cache_error e = {0};
        cache__error_set(&e, 503, "UNAVAILABLE", "out of memory");
        flight_answer_error(f, &e);
        flight_free(f);
    }
}

static struct manifest_flight *flight_new(struct cache *c, struct upstream *u, const char *repo,
                                          const char *reference, const char *accept,
                                          const char *key)
{
    struct manifest_flight *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->c = c;
    f->u = u;
    f->by_digest = strchr(reference, ':') != NULL;
    f->repo = strdup(repo);
    f->reference = strdup(reference);
    f->accept = strdup(accept);
    f->key = key ? strdup(key) : NULL;
    buf_init(&f->body, c->cfg->max_manifest_bytes);
    if (!f->repo || !f->reference || !f->accept || (key && !f->key)) {
        flight_free(f);
        return NULL;
    }
    if (key) {
        if (map_put(c->manifest_flights, key, f) == MAP_NOMEM) {
            flight_free(f);
            return NULL;
        }
        f->shared = f->listed = 1;
    }
    return f;
}

static int flight_join(struct manifest_flight *f, manifest_cb cb, void *ud)
{
    if (f->answered) {
        answer_one(cb, ud, OUTCOME_MISS, f->digest, f->media_type, f->body.data, f->body.len);
        return 0;
    }
    struct manifest_waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->cb = cb;
    w->ud = ud;
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
    struct manifest_meta *m = tag_manifest(c, f->u, f->repo, f->reference);
    if (!m || !f->waiters)
        return;
    char why[128];
    snprintf(why, sizeof(why), "no answer to a tag revalidation within %llu ms",
             (unsigned long long)c->cfg->revalidate_timeout_ms);
    health_failed(c, f->u, why);
    f->stale_answered = 1;
    flight_answer_cached(f, m, OUTCOME_STALE); /* the flight goes on for the tag's sake */
}

/* Asks upstream (joining an identical request in flight). accept NULL = every manifest type,
 * shared with others; otherwise the client's own list, not shared and not recorded as the
 * tag's manifest. */
static void fetch_phase(struct cache *c, struct upstream *u, const char *repo,
                        const char *reference, const char *accept, enum flight_phase phase,
                        manifest_cb cb, void *ud)
{
    char key[800];
    const char *k = NULL;
    if (!accept) {
        if (strchr(reference, ':'))
            snprintf(key, sizeof(key), "%s", reference); /* by digest: any repository */
        else
            tag_key(key, sizeof(key), u, repo, reference);
        k = key;
        struct manifest_flight *f = map_get(c->manifest_flights, key);
        struct manifest_meta *m;
        if (f && f->stale_answered && (m = tag_manifest(c, u, repo, reference))) {
            serve_cached(c, m, OUTCOME_STALE, u, repo, cb, ud); /* it is taking too long */
            return;
        }
        if (f) {
            if (flight_join(f, cb, ud)) {
                struct cache_error e = {0};
                cache__error_set(&e, 503, "UNAVAILABLE", "out of memory");
                answer_error(cb, ud, &e);
            }
            return;
        }
    }
    struct manifest_flight *f =
        flight_new(c, u, repo, reference, accept ? accept : ALL_MANIFEST_TYPES, k);
    if (!f || flight_join(f, cb, ud)) {
        if (f)
            flight_free(f);
        struct cache_error e = {0};
        cache__error_set(&e, 503, "UNAVAILABLE", "out of memory");
        answer_error(cb, ud, &e);
        return;
    }
    if (phase == PHASE_HEAD && k) {
        uv_timer_init(c->loop, &f->timer);
        f->timer.data = f;
        f->timer_on = 1;
        uv_timer_start(&f->timer, on_revalidate_timeout, c->cfg->revalidate_timeout_ms, 0);
    }
    start_phase(f, phase);
}

static void fetch(struct cache *c, struct upstream *u, const char *repo, const char *reference,
                  const char *accept, manifest_cb cb, void *ud)
{
    fetch_phase(c, u, repo, reference, accept, PHASE_GET, cb, ud);
}

void cache_manifest(struct cache *c, struct upstream *u, const char *repo, const char *reference,
                    const char *accept, manifest_cb cb, void *ud)
{
    if (strchr(reference, ':')) {
        struct manifest_meta *m = index_manifest(c, reference);
        if (m)
            serve_cached(c, m, OUTCOME_HIT, u, repo, cb, ud);
        else
            fetch(c, u, repo, reference, NULL, cb, ud);
        return;
    }
    struct tag_entry *t = index_tag(c, u, repo, reference);
    struct manifest_meta *m = t ? index_manifest(c, t->digest) : NULL;
    if (m && !accept_allows(accept, m->media_type)) {
        /* The client cannot take what the tag resolves to: let the upstream negotiate. */
        fetch(c, u, repo, reference, accept, cb, ud);
        return;
    }
    if (m && clock_wall_ms() - t->validated_ms < c->cfg->revalidate_after_ms) {
        serve_cached(c, m, OUTCOME_HIT, u, repo, cb, ud);
        return;
    }
    if (m && health_is_down(c, u)) {
        /* its probe brings it back; until then the cached manifest is the answer */
        serve_cached(c, m, OUTCOME_STALE, u, repo, cb, ud);
        return;
    }
    fetch_phase(c, u, repo, reference, NULL, m ? PHASE_HEAD : PHASE_GET, cb, ud);
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
        if (f->phase == PHASE_STORING)
            continue;
        while (f->waiters) {
            struct manifest_waiter *w = f->waiters;
            f->waiters = w->next;
            free(w);
        }
        flight_free(f);
    }
    free(all);
}
