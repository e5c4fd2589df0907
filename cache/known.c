/* SPDX-License-Identifier: Apache-2.0 */
/* What each repository is known to reference, for pull rules: blobs are shared across
 * repositories, so a cached digest is served under a repository only when it came with that
 * repository (served under it, listed by a manifest served under it) or its upstream confirms,
 * through that repository, that it has it. The set lives in memory (the loop never runs SQL):
 * loaded from the database's references at start, added to as references are recorded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/impl.h"
#include "db/db.h"
#include "util/json.h"

#define KNOWN_KEY_MAX (TAG_KEY_MAX + DIGEST_MAX)

static void known_key(char *out, size_t len, const char *upstream, const char *repo,
                      const char *digest)
{
    snprintf(out, len, "%s" KEY_SEP "%s" KEY_SEP "%s", upstream, repo, digest);
}

static void add(struct cache *c, const char *upstream, const char *repo, const char *digest)
{
    char key[KNOWN_KEY_MAX];
    known_key(key, sizeof(key), upstream, repo, digest);
    if (!map_get(c->known, key))
        map_put(c->known, key, (void *)1); /* out of memory: not known, asked upstream again */
}

static void load_row(void *ud, const char *upstream, const char *repo, const char *digest)
{
    add(ud, upstream, repo, digest);
}

int known_init(struct cache *c)
{
    if (!c->cfg->rules)
        return 0;
    if (!(c->known = map_new()))
        return -ENOMEM;
    return db_load_refs(c->db, load_row, c);
}

void known_free(struct cache *c)
{
    map_free(c->known);
    c->known = NULL;
}

void known_note(struct cache *c, const struct upstream *u, const char *repo, const char *digest)
{
    if (c->known)
        add(c, upstream_name(u), repo, digest);
}

int cache_known(struct cache *c, const struct upstream *u, const char *repo, const char *digest)
{
    char key[KNOWN_KEY_MAX];
    if (!c->known)
        return 1;
    known_key(key, sizeof(key), upstream_name(u), repo, digest);
    return map_get(c->known, key) != NULL;
}

struct listed {
    struct cache *c;
    const struct upstream *u;
    const char *repo;
};

static int note_listed(void *ud, const char *digest)
{
    struct listed *l = ud;
    if (!cache_known(l->c, l->u, l->repo, digest)) {
        add(l->c, upstream_name(l->u), l->repo, digest);
        db_ref(l->c->db, upstream_name(l->u), l->repo, digest);
    }
    return 0;
}

void cache_note_manifest(struct cache *c, const struct upstream *u, const char *repo,
                         const char *body, size_t len)
{
    struct listed l = {c, u, repo};
    if (c->known && body)
        json_each_string(body, len, "digest", note_listed, &l);
}

/* ---- asking the upstream, through the repository ---- */

struct confirm {
    struct confirm *prev, *next; /* the cache's confirms in flight */
    struct upstream_req *req;
    struct cache *c;
    struct upstream *u;
    char repo[TAG_KEY_MAX];
    char digest[DIGEST_MAX];
    int manifest;
    blob_cb cb;
    void *ud;
};

static void confirm_headers(void *ud, const struct upstream_response *resp)
{
    (void)ud;
    (void)resp;
}

static int confirm_data(void *ud, const char *data, size_t len)
{
    (void)ud;
    (void)data;
    (void)len;
    return 0;
}

static void confirm_unlink(struct confirm *k)
{
    if (k->prev)
        k->prev->next = k->next;
    else
        k->c->confirms = k->next;
    if (k->next)
        k->next->prev = k->prev;
}

static void confirm_done(void *ud, const struct upstream_response *resp, int result)
{
    (void)result;
    struct confirm *k = ud;
    confirm_unlink(k);
    struct blob_answer a = {.outcome = OUTCOME_MISS};
    const char *kind = k->manifest ? "manifest" : "blob";
    if (resp->status == 200 && (!resp->digest || !strcmp(resp->digest, k->digest))) {
        add(k->c, upstream_name(k->u), k->repo, k->digest);
        db_ref(k->c->db, upstream_name(k->u), k->repo, k->digest);
    } else if (resp->status == 200) {
        cache__error_set(&a.err, 502, "UNAVAILABLE", "the upstream named another digest");
    } else {
        cache__error_from_upstream(&a.err, k->u, resp,
                                   k->manifest ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN");
        if (resp->status == 404)
            health_note_missing(k->c, k->u, kind, k->repo, k->digest);
    }
    k->cb(k->ud, &a);
    free(k);
}

static const struct upstream_callbacks confirm_callbacks = {confirm_headers, confirm_data,
                                                            confirm_done};

void cache_confirm(struct cache *c, struct upstream *u, const char *repo, int manifest,
                   const char *digest, blob_cb cb, void *ud)
{
    struct blob_answer a = {0};
    struct confirm *k;
    char what[DIGEST_MAX + 16];
    if (health_known_missing(c, u, manifest ? "manifest" : "blob", repo, digest)) {
        cache__error_set(&a.err, 404, manifest ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN",
                         "not found upstream (%s said so lately)", upstream_name(u));
        cb(ud, &a);
        return;
    }
    if (health_backoff(c, u, &a.err)) {
        cb(ud, &a);
        return;
    }
    if (strlen(repo) >= sizeof(k->repo) || strlen(digest) >= sizeof(k->digest) ||
        !(k = calloc(1, sizeof(*k)))) {
        cache__error_set(&a.err, 503, "UNAVAILABLE", "out of memory");
        cb(ud, &a);
        return;
    }
    k->c = c;
    k->u = u;
    snprintf(k->repo, sizeof(k->repo), "%s", repo);
    snprintf(k->digest, sizeof(k->digest), "%s", digest);
    k->manifest = manifest;
    k->cb = cb;
    k->ud = ud;
    snprintf(what, sizeof(what), "%s/%s", manifest ? "manifests" : "blobs", digest);
    k->req = upstream_request(u, UPSTREAM_HEAD, repo, what, NULL,
                              manifest ? ALL_MANIFEST_TYPES : NULL, &confirm_callbacks, k);
    if (!k->req) {
        free(k);
        cache__error_set(&a.err, 503, "UNAVAILABLE", "out of memory");
        cb(ud, &a);
        return;
    }
    k->next = c->confirms;
    if (k->next)
        k->next->prev = k;
    c->confirms = k;
}

void known_stop(struct cache *c)
{
    while (c->confirms) {
        struct confirm *k = c->confirms;
        c->confirms = k->next;
        upstream_req_cancel(k->req);
        struct blob_answer a = {0};
        cache__error_set(&a.err, 503, "UNAVAILABLE", "the mirror is shutting down");
        k->cb(k->ud, &a); /* the client's connection is closed by now: this frees its state */
        free(k);
    }
}
