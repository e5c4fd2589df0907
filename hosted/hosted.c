/* SPDX-License-Identifier: Apache-2.0 */
/* Hosted repositories: set-up from the index, matching names, requests in progress and
 * dispatch to blob.c, manifest.c, tags.c, upload.c and referrers.c. */
#include "hosted/hosted.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db/db.h"
#include "hosted/impl.h"
#include "hosted/kept.h"
#include "registry/respond.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/map.h"

void hosted__key(char *out, size_t len, const char *repo, const char *what)
{
    snprintf(out, len, "%s" HOSTED_SEP "%s", repo, what);
}

static char link_marker;

void hosted__link(struct hosted *h, const char *repo, const char *digest)
{
    char key[HOSTED_KEY_MAX];
    hosted__key(key, sizeof(key), repo, digest);
    map_put(h->links, key, &link_marker);
}

void hosted__stored(struct hosted *h, const char *digest)
{
    if (h->stored)
        h->stored(h->stored_ud, digest);
}

void hosted_on_stored(struct hosted *h, void (*fn)(void *ud, const char *digest), void *ud)
{
    if (!h)
        return;
    h->stored = fn;
    h->stored_ud = ud;
}

void hosted_on_answer(struct hosted *h, void (*fn)(void *ud, const struct hosted_answer *a),
                      void *ud)
{
    if (!h)
        return;
    h->answered = fn;
    h->answered_ud = ud;
}

void hosted_use_hot_files(struct hosted *h,
                          int (*get)(void *ud, const char *digest, uint64_t *size,
                                     struct held_fd **file),
                          void (*put)(void *ud, const char *digest, struct held_fd *file,
                                      uint64_t size),
                          void *ud)
{
    if (!h)
        return;
    h->hot_get = get;
    h->hot_put = put;
    h->hot_ud = ud;
}

int hosted__linked(const struct hosted *h, const char *repo, const char *digest)
{
    char key[HOSTED_KEY_MAX];
    hosted__key(key, sizeof(key), repo, digest);
    return map_get(h->links, key) != NULL;
}

void hosted__count(struct hosted *h, const char *digest, uint64_t size)
{
    if (!h->sized || map_get(h->sized, digest))
        return;
    if (map_put(h->sized, digest, &link_marker) != MAP_NOMEM)
        h->bytes += size;
}

int hosted__room(struct hosted *h, uint64_t len)
{
    uint64_t max = h->cfg->hosted_max_size_bytes;
    if (max && (h->bytes + h->upload_bytes > max || len > max - h->bytes - h->upload_bytes))
        return -EDQUOT;
    if (store_room_for(h->store, len)) /* the store keeps cache.min_free in reserve */
        return -ENOSPC;
    return 0;
}

void hosted__fail_room(struct op *o, int rc)
{
    hosted__fail(o, 507, "DENIED",
                 rc == -EDQUOT ? "hosted content would pass hosted.max_size"
                               : "not enough free space: the push would cross cache.min_free");
}

static struct op *op_new(struct hosted *h, struct conn *c, struct http_request *req,
                         const struct route *rt)
{
    struct op *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->h = h;
    o->c = c;
    o->req = req;
    o->rt = *rt;
    o->head = req->method == HTTP_METHOD_HEAD;
    o->fd = -1;
    buf_init(&o->body, h->cfg->max_manifest_bytes);
    buf_init(&o->writing, HOSTED_UPLOAD_BUFFER_MAX + (64u << 10));
    conn_ref(c);
    return o;
}

void hosted__op_free(struct op *o)
{
    if (o->up) {
        o->up->busy = 0;
        o->up->used_ms = clock_mono_us() / 1000; /* idle from now */
    }
    for (size_t i = 0; i < o->n_refs; i++)
        free(o->refs[i]);
    free(o->refs);
    free(o->artifact_type);
    free(o->annotations);
    buf_free(&o->body);
    buf_free(&o->writing);
    conn_unref(o->c);
    free(o);
}

void hosted__fail(struct op *o, int status, const char *code, const char *message)
{
    if (conn_alive(o->c))
        respond_error(o->c, o->head, status, code, message, NULL);
    hosted__op_free(o);
}

static void after_work(uv_work_t *w, int status)
{
    struct op *o = w->data;
    if (status)
        o->rc = -ECANCELED;
    o->then(o);
}

void hosted__run(struct op *o, void (*work)(uv_work_t *), void (*then)(struct op *o))
{
    o->then = then;
    o->work.data = o;
    if (uv_queue_work(o->h->loop, &o->work, work, after_work)) {
        o->rc = -EIO;
        then(o);
    }
}

/* ---- set-up ---- */

static void load_tag(void *ud, const char *repo, const char *tag, const char *digest,
                     const char *media_type)
{
    hosted__tag_set(ud, repo, tag, digest, media_type);
}

static void load_blob(void *ud, const char *repo, const char *digest, const char *media_type)
{
    struct hosted *h = ud;
    char key[HOSTED_KEY_MAX];
    hosted__link(h, repo, digest);
    if (!media_type)
        return; /* a plain blob: the store has its bytes */
    hosted__key(key, sizeof(key), repo, digest);
    char *mt = strdup(media_type);
    if (mt)
        free(map_put(h->manifests, key, mt));
}

static void load_referrer(void *ud, const char *repo, const char *digest, const char *subject,
                          const char *artifact_type, const char *descriptor)
{
    hosted__referrer_set(ud, repo, digest, subject, artifact_type, descriptor);
}

static void on_sweep(uv_timer_t *t)
{
    hosted__uploads_sweep(t->data);
}

static int size_link(const char *key, void *value, void *ud)
{
    (void)value;
    struct hosted *h = ud;
    const char *digest = strstr(key, HOSTED_SEP);
    char path[STORE_PATH_MAX];
    struct stat st;
    if (!digest || !ref_digest_is_sha256(digest + 1, strlen(digest + 1)))
        return 0;
    store_blob_path(h->store, digest + 1, path, sizeof(path));
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
        hosted__count(h, digest + 1, (uint64_t)st.st_size);
    return 0;
}

/* hosted.max_size: what the hosted content holds now, each digest once (blocking: at start). */
static int size_hosted(struct hosted *h)
{
    if (!(h->sized = map_new()))
        return -ENOMEM;
    return map_each(h->links, size_link, h);
}

/* A pattern whose first component names an upstream matches only requests that go to that
 * upstream (registry/route.h: route_names_upstream): say so. */
static void warn_shadowed(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_hosted; i++) {
        const char *p = cfg->hosted[i];
        size_t n = strcspn(p, "/");
        if (!p[n])
            continue;
        for (size_t j = 0; j < cfg->n_upstreams; j++)
            if (strlen(cfg->upstreams[j].name) == n && !strncmp(p, cfg->upstreams[j].name, n))
                log_warn("hosted: pattern '%s' is never used: requests for %.*s/... go to the "
                         "upstream %s",
                         p, (int)n, p, cfg->upstreams[j].name);
    }
}

int hosted_new(uv_loop_t *loop, const struct config *cfg, struct store *store, struct db *db,
               struct hosted **out)
{
    *out = NULL;
    if (!cfg->n_hosted)
        return 0;
    struct hosted *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->loop = loop;
    h->cfg = cfg;
    h->store = store;
    h->db = db;
    h->tags = map_new();
    h->manifests = map_new();
    h->referrers = map_new();
    h->uploads = map_new();
    h->links = map_new();
    h->kept = kept_new(HOSTED_KEPT_BYTES);
    if (!h->tags || !h->manifests || !h->referrers || !h->uploads || !h->links || !h->kept ||
        db_load_hosted(db, load_tag, load_blob, h) ||
        db_load_hosted_referrers(db, load_referrer, h)) {
        hosted_free(h);
        return -ENOMEM;
    }
    if (cfg->hosted_max_size_bytes && size_hosted(h)) {
        hosted_free(h);
        return -ENOMEM;
    }
    uint64_t every = cfg->hosted_upload_timeout_ms / 4;
    every = every < 100 ? 100 : every > 60000 ? 60000 : every;
    warn_shadowed(cfg);
    uv_timer_init(loop, &h->sweep);
    h->sweep.data = h;
    uv_timer_start(&h->sweep, on_sweep, every, every);
    uv_unref((uv_handle_t *)&h->sweep);
    log_info("hosted: %zu patterns, %zu tags, %zu referrers", cfg->n_hosted, map_count(h->tags),
             map_count(h->referrers));
    if (cfg->hosted_max_size_bytes)
        log_info("hosted: %llu of hosted.max_size %llu bytes in use",
                 (unsigned long long)h->bytes, (unsigned long long)cfg->hosted_max_size_bytes);
    *out = h;
    return 0;
}

void hosted_shutdown(struct hosted *h)
{
    if (h && !uv_is_closing((uv_handle_t *)&h->sweep))
        uv_close((uv_handle_t *)&h->sweep, NULL);
}

static int free_value(const char *k, void *v, void *ud)
{
    (void)k;
    (void)ud;
    free(v);
    return 0;
}

void hosted_free(struct hosted *h)
{
    if (!h)
        return;
    if (h->tags)
        map_each(h->tags, free_value, NULL);
    if (h->manifests)
        map_each(h->manifests, free_value, NULL);
    if (h->referrers)
        hosted__referrers_free(h);
    if (h->uploads)
        hosted__uploads_free(h);
    map_free(h->tags);
    map_free(h->manifests);
    map_free(h->referrers);
    map_free(h->uploads);
    map_free(h->links);
    map_free(h->sized);
    kept_free(h->kept);
    free(h);
}

int hosted_match(const struct hosted *h, const char *name)
{
    if (!h)
        return 0;
    for (size_t i = 0; i < h->cfg->n_hosted; i++)
        if (fnmatch(h->cfg->hosted[i], name, 0) == 0)
            return 1;
    return 0;
}

struct repo_names {
    int (*fn)(void *ud, const char *name);
    void *ud;
};

static int repo_of_key(const char *key, void *value, void *ud)
{
    (void)value;
    struct repo_names *rn = ud;
    char name[REF_NAME_MAX + 1];
    size_t n = strcspn(key, HOSTED_SEP);
    if (n > REF_NAME_MAX)
        return 0;
    memcpy(name, key, n);
    name[n] = '\0';
    return rn->fn(rn->ud, name);
}

int hosted_repositories(const struct hosted *h, int (*fn)(void *ud, const char *name), void *ud)
{
    if (!h)
        return 0;
    struct repo_names rn = {fn, ud};
    int r = map_each(h->manifests, repo_of_key, &rn);
    return r ? r : map_each(h->tags, repo_of_key, &rn);
}

/* ---- dispatch ---- */

void hosted_handle(struct hosted *h, struct conn *c, struct http_request *req,
                   const struct route *rt, const char *user)
{
    struct op *o = op_new(h, c, req, rt);
    if (!o) {
        respond_error(c, req->method == HTTP_METHOD_HEAD, 503, "UNAVAILABLE", "out of memory",
                      NULL);
        return;
    }
    if (user)
        snprintf(o->owner, sizeof(o->owner), "u:%s", user);
    else
        snprintf(o->owner, sizeof(o->owner), "a:%s", req->client); /* behind trusted proxies */
    const char *m = req->method_name;
    int read = req->method == HTTP_METHOD_GET || req->method == HTTP_METHOD_HEAD;
    switch (rt->kind) {
    case ROUTE_UPLOAD:
        hosted__upload(o);
        return;
    case ROUTE_MANIFEST:
        if (read)
            hosted__get_manifest(o);
        else if (strcmp(m, "PUT") == 0)
            hosted__put_manifest(o);
        else if (strcmp(m, "DELETE") == 0)
            hosted__delete_manifest(o);
        else
            break;
        return;
    case ROUTE_BLOB:
        if (!read)
            break;
        hosted__get_blob(o);
        return;
    case ROUTE_TAGS:
        if (!read)
            break;
        hosted__list_tags(o);
        return;
    case ROUTE_REFERRERS:
        if (!read)
            break;
        hosted__list_referrers(o);
        return;
    default:
        break;
    }
    hosted__fail(o, 405, "UNSUPPORTED", "method not supported here");
}
