/* SPDX-License-Identifier: Apache-2.0 */
/* The referrers of a proxied manifest (signatures, SBOMs, attestations), kept like a tag: the
 * upstream's answer is trusted for revalidate_after, then asked again by everyone at once in
 * one request; an upstream that is down, fails or has not answered within revalidate_timeout
 * gets the cached answer (stale). An upstream without the referrers API (404) is read through
 * the tag schema clients use then: the image index tagged sha256-<hex>, itself pulled through
 * as a tag. The answer is always the whole list; an artifactType filter is applied here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/impl.h"
#include "db/db.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"
#include "util/reference.h"

#define INDEX_MEDIA_TYPE "application/vnd.oci.image.index.v1+json"
#define ARTIFACT_TYPE_MAX 256

struct referrers_entry {
    char *document; /* an image index of the referrers, as served unfiltered */
    size_t len;
    uint64_t validated_ms;
};

struct referrers_waiter {
    struct referrers_waiter *next;
    referrers_cb cb;
    void *ud;
    char artifact_type[ARTIFACT_TYPE_MAX]; /* empty: no filter */
};

struct referrers_flight {
    struct cache *c;
    struct upstream *u;
    char key[TAG_KEY_MAX];
    char repo[TAG_KEY_MAX], subject[DIGEST_MAX];
    struct referrers_waiter *waiters;
    struct upstream_req *req;
    struct buf body;
    long status;
    int fallback; /* asking for the sha256-<hex> tag */
    int stopping; /* at shutdown, waiting for the fallback: freed when it answers */
    uv_timer_t timer;
    int timer_on;
};

static void referrers_key(char *out, size_t len, const struct upstream *u, const char *repo,
                          const char *subject)
{
    snprintf(out, len, "%s" KEY_SEP "%s" KEY_SEP "%s", upstream_name(u), repo, subject);
}

/* ---- documents ---- */

struct filter_ctx {
    struct buf *out;
    const char *artifact_type; /* NULL: keep all */
    int n;
    int bad;
};

static int keep_descriptor(void *ud, const char *elem, size_t len)
{
    struct filter_ctx *fc = ud;
    char at[ARTIFACT_TYPE_MAX];
    char digest[DIGEST_MAX];
    if (json_get_string(elem, len, "digest", digest, sizeof(digest)) <= 0 ||
        !ref_digest_valid(digest, strlen(digest))) {
        fc->bad = 1; /* not a descriptor: the whole answer is refused */
        return -EINVAL;
    }
    if (fc->artifact_type &&
        (json_get_string(elem, len, "artifactType", at, sizeof(at)) <= 0 ||
         strcmp(at, fc->artifact_type) != 0))
        return 0;
    if ((fc->n++ && buf_append(fc->out, ",", 1)) || buf_append(fc->out, elem, len))
        return -ENOMEM;
    return 0;
}

/* Writes an image index of the descriptors in manifests (the raw JSON array), only those of
 * artifact_type when it is not NULL. */
static int build_index(const char *manifests, size_t len, const char *artifact_type,
                       struct buf *out)
{
    struct filter_ctx fc = {out, artifact_type, 0, 0};
    static const char head[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" INDEX_MEDIA_TYPE "\",\"manifests\":[";
    int r = buf_append(out, head, sizeof(head) - 1);
    if (!r && manifests)
        r = json_each_element(manifests, len, keep_descriptor, &fc);
    if (!r)
        r = buf_append(out, "]}\n", 3);
    return r;
}

/* The manifests array of an image index; NULL when doc is not one. */
static const char *manifests_of(const char *doc, size_t len, size_t *out_len)
{
    const char *v;
    if (json_get_raw(doc, len, "manifests", &v, out_len) || *v != '[')
        return NULL;
    return v;
}

static struct referrers_entry *entry_set(struct cache *c, const char *key, const char *doc,
                                         size_t len, uint64_t validated_ms)
{
    struct referrers_entry *e = map_get(c->referrers, key);
    char *copy = malloc(len + 1);
    if (!copy)
        return e;
    memcpy(copy, doc, len);
    copy[len] = '\0';
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e || map_put(c->referrers, key, e) == MAP_NOMEM) {
            free(e);
            free(copy);
            return NULL;
        }
    }
    free(e->document);
    e->document = copy;
    e->len = len;
    e->validated_ms = validated_ms;
    return e;
}

static void answer(referrers_cb cb, void *ud, enum cache_outcome outcome,
                   const struct referrers_entry *e, const char *artifact_type)
{
    struct referrers_answer a = {0};
    a.outcome = outcome;
    if (!artifact_type || !*artifact_type) {
        a.body = e->document;
        a.len = e->len;
        cb(ud, &a);
        return;
    }
    struct buf out;
    buf_init(&out, e->len + 128);
    size_t mlen;
    const char *m = manifests_of(e->document, e->len, &mlen);
    if (build_index(m, mlen, artifact_type, &out)) {
        cache__error_set(&a.err, 500, "UNKNOWN", "cannot filter the referrers");
    } else {
        a.body = out.data;
        a.len = out.len;
        a.filtered = 1;
    }
    cb(ud, &a);
    buf_free(&out);
}

static void answer_error(referrers_cb cb, void *ud, const struct cache_error *err)
{
    struct referrers_answer a = {0};
    a.err = *err;
    cb(ud, &a);
}

/* ---- flights ---- */

static void flight_closed(uv_handle_t *h)
{
    free(h->data);
}

static void flight_free(struct referrers_flight *f)
{
    map_del(f->c->referrers_flights, f->key);
    buf_free(&f->body);
    while (f->waiters) {
        struct referrers_waiter *w = f->waiters;
        f->waiters = w->next;
        free(w);
    }
    if (f->timer_on) {
        uv_timer_stop(&f->timer);
        uv_close((uv_handle_t *)&f->timer, flight_closed);
    } else {
        free(f);
    }
}

static void answer_all(struct referrers_flight *f, enum cache_outcome outcome,
                       const struct referrers_entry *e)
{
    struct referrers_waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct referrers_waiter *next = w->next;
        answer(w->cb, w->ud, outcome, e, w->artifact_type);
        free(w);
        w = next;
    }
}

/* The upstream failed: the cached answer when there is one, else err. */
static void fail_all(struct referrers_flight *f, const struct cache_error *err)
{
    struct referrers_entry *e = map_get(f->c->referrers, f->key);
    if (e) {
        if (f->waiters)
            log_warn("upstream %s: %s; serving the referrers of %s@%s stale",
                     upstream_name(f->u), err->message, f->repo, f->subject);
        answer_all(f, OUTCOME_STALE, e);
        return;
    }
    struct referrers_waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct referrers_waiter *next = w->next;
        answer_error(w->cb, w->ud, err);
        free(w);
        w = next;
    }
}

/* A new list of referrers: kept (memory and database) and answered. */
static void learnt(struct referrers_flight *f, const char *manifests, size_t len)
{
    struct cache *c = f->c;
    struct buf doc;
    buf_init(&doc, c->cfg->max_manifest_bytes + 256);
    if (build_index(manifests, len, NULL, &doc)) {
        struct cache_error e = {0};
        cache__error_set(&e, 502, "UNAVAILABLE", "upstream %s sent referrers that are not an "
                         "image index of descriptors", upstream_name(f->u));
        fail_all(f, &e);
        buf_free(&doc);
        return;
    }
    uint64_t now = clock_wall_ms();
    struct referrers_entry *e = entry_set(c, f->key, doc.data, doc.len, now);
    if (e) {
        struct db_referrers_row row = {upstream_name(f->u), f->repo, f->subject, e->document,
                                       now};
        db_put_referrers(c->db, &row);
        answer_all(f, OUTCOME_MISS, e);
    } else {
        struct cache_error err = {0};
        cache__error_set(&err, 503, "UNAVAILABLE", "out of memory");
        fail_all(f, &err);
    }
    buf_free(&doc);
}

static void on_fallback(void *ud, const struct manifest_answer *a)
{
    struct referrers_flight *f = ud;
    if (f->stopping) {
    } else if (!a->err.status) {
        size_t len;
        const char *m = manifests_of(a->body, a->size, &len);
        if (m) {
            learnt(f, m, len);
        } else {
            struct cache_error e = {0};
            cache__error_set(&e, 502, "UNAVAILABLE", "the referrers tag of %s is not an image "
                             "index", f->subject);
            fail_all(f, &e);
        }
    } else if (a->err.status == 404) {
        learnt(f, NULL, 0); /* no referrers API and no tag: none */
    } else {
        fail_all(f, &a->err);
    }
    flight_free(f);
}

static void on_headers(void *ud, const struct upstream_response *resp)
{
    struct referrers_flight *f = ud;
    f->status = resp->status;
}

static int on_data(void *ud, const char *data, size_t len)
{
    struct referrers_flight *f = ud;
    if (f->status != 200)
        return 0;
    return buf_append(&f->body, data, len) ? UPSTREAM_ABORT : 0;
}

static void on_done(void *ud, const struct upstream_response *resp, int result)
{
    struct referrers_flight *f = ud;
    f->req = NULL;
    if (resp->status == 200 && result == 0) {
        size_t len;
        const char *m = manifests_of(f->body.data ? f->body.data : "", f->body.len, &len);
        if (m) {
            learnt(f, m, len);
        } else {
            struct cache_error e = {0};
            cache__error_set(&e, 502, "UNAVAILABLE",
                             "upstream %s answered referrers that are not an image index",
                             upstream_name(f->u));
            fail_all(f, &e);
        }
        flight_free(f);
        return;
    }
    if (resp->status == 404 || resp->status == 405 || resp->status == 400) {
        /* no referrers API: the tag schema (sha256-<hex>), pulled through like any tag */
        char tag[DIGEST_MAX];
        const char *colon = strchr(f->subject, ':');
        snprintf(tag, sizeof(tag), "%.*s-%s", (int)(colon - f->subject), f->subject, colon + 1);
        f->fallback = 1;
        cache_manifest(f->c, f->u, f->repo, tag, NULL, 0, on_fallback, f);
        return;
    }
    struct cache_error e = {0};
    cache__error_from_upstream(&e, f->u, resp, "NAME_UNKNOWN");
    fail_all(f, &e);
    flight_free(f);
}

static const struct upstream_callbacks referrers_callbacks = {on_headers, on_data, on_done};

static void on_timeout(uv_timer_t *timer)
{
    struct referrers_flight *f = timer->data;
    struct referrers_entry *e = map_get(f->c->referrers, f->key);
    if (!e || !f->waiters || f->fallback)
        return; /* the fallback tag has a timeout of its own */
    char why[128];
    snprintf(why, sizeof(why), "no answer to a referrers revalidation within %llu ms",
             (unsigned long long)f->c->cfg->revalidate_timeout_ms);
    health_overdue(f->c, f->u, why);
    answer_all(f, OUTCOME_STALE, e); /* the flight goes on and updates the entry */
}

static int join(struct referrers_flight *f, const char *artifact_type, referrers_cb cb, void *ud)
{
    struct referrers_waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->cb = cb;
    w->ud = ud;
    snprintf(w->artifact_type, sizeof(w->artifact_type), "%s", artifact_type ? artifact_type : "");
    w->next = f->waiters;
    f->waiters = w;
    return 0;
}

void cache_referrers(struct cache *c, struct upstream *u, const char *repo, const char *subject,
                     const char *artifact_type, referrers_cb cb, void *ud)
{
    struct cache_error err = {0};
    char key[TAG_KEY_MAX];
    referrers_key(key, sizeof(key), u, repo, subject);
    if (strlen(artifact_type ? artifact_type : "") >= ARTIFACT_TYPE_MAX) {
        cache__error_set(&err, 400, "UNSUPPORTED", "artifactType too long");
        answer_error(cb, ud, &err);
        return;
    }
    struct referrers_entry *e = map_get(c->referrers, key);
    if (e && clock_wall_ms() - e->validated_ms < c->cfg->revalidate_after_ms) {
        answer(cb, ud, OUTCOME_HIT, e, artifact_type);
        return;
    }
    if (e && health_is_down(c, u)) {
        answer(cb, ud, OUTCOME_STALE, e, artifact_type);
        return;
    }
    struct referrers_flight *f = map_get(c->referrers_flights, key);
    if (f) {
        if (join(f, artifact_type, cb, ud)) {
            cache__error_set(&err, 503, "UNAVAILABLE", "out of memory");
            answer_error(cb, ud, &err);
        }
        return;
    }
    if (health_backoff(c, u, &err)) {
        /* a 429's Retry-After has not passed: ask nothing, serve what is cached */
        if (e)
            answer(cb, ud, OUTCOME_STALE, e, artifact_type);
        else
            answer_error(cb, ud, &err);
        return;
    }
    f = calloc(1, sizeof(*f));
    if (!f || map_put(c->referrers_flights, key, f) == MAP_NOMEM) {
        free(f);
        cache__error_set(&err, 503, "UNAVAILABLE", "out of memory");
        answer_error(cb, ud, &err);
        return;
    }
    f->c = c;
    f->u = u;
    snprintf(f->key, sizeof(f->key), "%s", key);
    snprintf(f->repo, sizeof(f->repo), "%s", repo);
    snprintf(f->subject, sizeof(f->subject), "%s", subject);
    buf_init(&f->body, c->cfg->max_manifest_bytes);
    if (join(f, artifact_type, cb, ud)) {
        flight_free(f);
        cache__error_set(&err, 503, "UNAVAILABLE", "out of memory");
        answer_error(cb, ud, &err);
        return;
    }
    if (e) {
        uv_timer_init(c->loop, &f->timer);
        f->timer.data = f;
        f->timer_on = 1;
        uv_timer_start(&f->timer, on_timeout, c->cfg->revalidate_timeout_ms, 0);
    }
    char what[DIGEST_MAX + 16];
    snprintf(what, sizeof(what), "referrers/%s", subject);
    f->req = upstream_request(u, UPSTREAM_GET, repo, what, NULL, INDEX_MEDIA_TYPE,
                              &referrers_callbacks, f);
    if (!f->req) {
        cache__error_set(&err, 503, "UNAVAILABLE", "out of memory");
        fail_all(f, &err);
        flight_free(f);
    }
}

/* ---- set-up ---- */

static void load_row(void *ud, const struct db_referrers_row *row)
{
    struct cache *c = ud;
    char key[TAG_KEY_MAX];
    snprintf(key, sizeof(key), "%s" KEY_SEP "%s" KEY_SEP "%s", row->upstream, row->repo,
             row->subject);
    entry_set(c, key, row->document, strlen(row->document), row->validated_ms);
}

int referrers_init(struct cache *c)
{
    c->referrers = map_new();
    c->referrers_flights = map_new();
    if (!c->referrers || !c->referrers_flights)
        return -ENOMEM;
    return db_load_referrers(c->db, load_row, c);
}

struct forget_ctx {
    struct map *subjects;
    char **keys;
    size_t n, cap;
};

static int find_forgotten(const char *key, void *value, void *ud)
{
    (void)value;
    struct forget_ctx *fc = ud;
    const char *subject = strrchr(key, KEY_SEP[0]);
    if (!subject || !map_get(fc->subjects, subject + 1))
        return 0;
    if (fc->n == fc->cap) {
        size_t cap = fc->cap ? fc->cap * 2 : 16;
        char **k = realloc(fc->keys, cap * sizeof(*k));
        if (!k)
            return 1;
        fc->keys = k;
        fc->cap = cap;
    }
    if ((fc->keys[fc->n] = strdup(key)))
        fc->n++;
    return 0;
}

static void entry_free(struct referrers_entry *e)
{
    if (e)
        free(e->document);
    free(e);
}

void referrers_forget_subjects(struct cache *c, char *const *digests, size_t n)
{
    struct forget_ctx fc = {map_new(), NULL, 0, 0};
    if (!fc.subjects)
        return;
    for (size_t i = 0; i < n; i++)
        map_put(fc.subjects, digests[i], (void *)1);
    map_each(c->referrers, find_forgotten, &fc);
    for (size_t i = 0; i < fc.n; i++) {
        entry_free(map_del(c->referrers, fc.keys[i]));
        free(fc.keys[i]);
    }
    free(fc.keys);
    map_free(fc.subjects);
}

static int free_entry(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    entry_free(value);
    return 0;
}

void referrers_stop(struct cache *c)
{
    /* Only at shutdown: requests are dropped, waiters are not answered. A flight waiting for
     * its fallback tag is freed when that answers. */
    if (!c->referrers_flights)
        return;
    void **all;
    size_t n;
    if (map_values(c->referrers_flights, &all, &n))
        return;
    for (size_t i = 0; i < n; i++) {
        struct referrers_flight *f = all[i];
        if (f->fallback) {
            f->stopping = 1;
            continue;
        }
        if (f->req)
            upstream_req_cancel(f->req);
        f->req = NULL;
        flight_free(f);
    }
    free(all);
}

void referrers_free(struct cache *c)
{
    if (c->referrers)
        map_each(c->referrers, free_entry, NULL);
    map_free(c->referrers);
    map_free(c->referrers_flights);
    c->referrers = c->referrers_flights = NULL;
}
