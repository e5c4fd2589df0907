/* SPDX-License-Identifier: Apache-2.0 */
/* The S3 tier in the blob path (the `s3` section): between the local store (L1) and the
 * upstreams. A fill asks the bucket first (blobs.c), and so does a blob HEAD the store cannot
 * answer; what the bucket lacks comes from the upstream, and once it is committed to the local
 * store it is written behind into the bucket, so the next replica or a rebuilt node finds it
 * there. The same goes for what is pushed to hosted repositories (l2_commit through
 * cache_write_behind) and what an import adopted while the daemon was stopped.
 *
 * The write-behind queue survives restarts: an entry is recorded in the index (s3_pending)
 * when it is queued and forgotten once the bucket holds it (or it can never be written: the
 * store refused the bytes, or the blob left the local store), and l2_start queues again what
 * the last run left, oldest first. A stop, graceful or not, loses nothing but the writes in
 * flight, which the next start sends again.
 *
 * A write-behind PUT carries the blob's digest (the store checks the bytes) and If-None-Match
 * (a 412: another replica stored it first, which is as good). At most L2_PUTS_AT_ONCE go at
 * once; the rest wait in order. One that fails for want of the store (no answer, a 5xx, a
 * bucket that is not there) is kept and tried again every L2_RETRY_MS, so commits drain once
 * the store is back; at most L2_QUEUE_MAX wait in memory, past that the oldest leave memory
 * with a warning but stay recorded (the next start, or `regcache s3-sync`, sends them).
 * Nothing here blocks a client: a pull never waits for a write-behind.
 *
 * Manifests and tags go the same way. A manifest the replica fetched from its upstream (in a
 * cluster, the owner: a member's answer is not written again) is queued as
 * "manifest/<digest>" and written under manifests/sha256/<2>/<64> with its media type as the
 * object's Content-Type; its tag as "tag/<tag_key>", whose record (l2_records.c) is made from
 * the index when it is sent, so a tag that moved meanwhile is written as it is then. A tag's
 * record is rewritten when the tag moves, and while unchanged at most every L2_TAG_SHARE_MS
 * (l2_share_tag): a long run of revalidations costs a bounded number of PUTs. Queued entries
 * of every kind share the order, the retry and the index's record (s3_pending names them).
 *
 * The janitor (l2_janitor.c) aborts multipart uploads abandoned under the prefix. Lifecycle
 * across the replicas on the bucket: each writes access markers for what it serves
 * (l2_access.c), and the one holding the GC lease (l2_lease.c) runs the bucket GC (l2_gc.c).
 * Loop thread only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache/impl.h"
#include "db/db.h"
#include "metrics/metrics.h"
#include "s3/client.h"
#include "s3/settings.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"
#include "util/map.h"

#define L2_PUTS_AT_ONCE 4
#define L2_RETRY_MS 5000
#define L2_QUEUE_MAX 100000

#define L2_NAME_MAX (TAG_KEY_MAX + 16) /* a digest, "manifest/" digest or "tag/" tag_key */

enum l2_kind { L2_BLOB, L2_MANIFEST, L2_TAG, L2_UNTAG, L2_HOLD };

struct l2_put {
    struct l2 *l2;
    char name[L2_NAME_MAX];
    struct s3_upload *up; /* a blob's or manifest's file */
    struct s3_op *op;     /* a tag record's PUT, of body */
    struct buf body;
    struct l2_put *next;
};

struct l2 {
    struct cache *c;
    struct s3_client *s3;
    struct l2_put *head, *tail; /* waiting, in order */
    size_t queued, running;
    struct map *known; /* name -> its l2_put, waiting or in flight */
    struct l2_put *inflight[L2_PUTS_AT_ONCE];
    uv_timer_t retry;
    int retry_on, stopping;
    struct l2_janitor *janitor;
    struct l2_access *access; /* NULL: no markers */
    struct l2_lease *lease;
    struct l2_gc *gc;
};

static void count_queue(const struct l2 *l)
{
    metrics_s3_queue(l->queued + l->running);
}

static void pump(struct l2 *l);

/* Forgets p: out of the map, and out of the index when written (or never writable). */
static enum l2_kind kind_of(const char *name)
{
    return !strncmp(name, "tag/", 4)        ? L2_TAG
           : !strncmp(name, "untag/", 6)    ? L2_UNTAG
           : !strncmp(name, "hold/", 5)     ? L2_HOLD
           : !strncmp(name, "manifest/", 9) ? L2_MANIFEST
                                            : L2_BLOB;
}

/* What the name is written for: a blob's digest, a manifest's, a tag's tag_key. */
static const char *name_id(const char *name)
{
    enum l2_kind k = kind_of(name);
    return k == L2_TAG       ? name + 4
           : k == L2_UNTAG   ? name + 6
           : k == L2_HOLD    ? name + 5
           : k == L2_MANIFEST ? name + 9
                             : name;
}

static void put_free(struct l2_put *p)
{
    buf_free(&p->body);
    free(p);
}

static void put_done(struct l2 *l, struct l2_put *p, int forget_row)
{
    if (map_get(l->known, p->name) == p)
        map_del(l->known, p->name);
    if (forget_row)
        db_s3_pending(l->c->db, p->name, 0, 0);
    put_free(p);
}

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
        log_warn("s3 tier: %s not written now (more than %d waiting); the next start or "
                 "regcache s3-sync sends it", old->name, L2_QUEUE_MAX);
        put_done(l, old, 0); /* its row stays */
    }
    count_queue(l);
}

/* Queues name unless it is queued already; record: write its row (a new commit). */
static void queue_name(struct l2 *l, const char *name, int record)
{
    if (map_get(l->known, name) || strlen(name) >= L2_NAME_MAX)
        return;
    struct l2_put *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->l2 = l;
    buf_init(&p->body, 4096);
    snprintf(p->name, sizeof(p->name), "%s", name);
    if (map_put(l->known, p->name, p) == MAP_NOMEM) {
        put_free(p);
        return;
    }
    if (record)
        db_s3_pending(l->c->db, name, 1, clock_wall_ms());
    enqueue(l, p);
}

static void queue_loaded(void *ud, const char *digest)
{
    queue_name(ud, digest, 0);
}

int l2_start(struct cache *c)
{
    const struct config *cfg = c->cfg;
    if (!cfg->s3_endpoint)
        return 0;
    struct l2 *l = calloc(1, sizeof(*l));
    if (!l || !(l->known = map_new())) {
        free(l);
        return -ENOMEM;
    }
    l->c = c;
    struct s3_settings st;
    s3_settings_from_config(cfg, &st);
    char why[256];
    int r = s3_client_new(c->up, &st, &l->s3, why, sizeof(why));
    if (r) {
        log_error("s3: %s", why);
        map_free(l->known);
        free(l);
        return r;
    }
    uv_timer_init(c->loop, &l->retry);
    l->retry.data = l;
    uv_unref((uv_handle_t *)&l->retry);
    c->l2 = l;
    log_info("s3 tier: bucket %s at %s", cfg->s3_bucket, cfg->s3_endpoint);
    size_t total = 0;
    if (db_load_s3_pending(c->db, L2_QUEUE_MAX, queue_loaded, l, &total))
        log_warn("s3 tier: cannot read what the last run left to write behind");
    else if (total)
        log_info("s3 tier: %zu blobs, manifests, tags or holds left to write into the bucket by the "
                 "last run%s", total,
                 total > L2_QUEUE_MAX ? " (the oldest are queued now)" : "");
    l->janitor = l2_janitor_start(c, l->s3);
    l->access = l2_access_new(c->loop, l->s3, cfg->s3_access_interval_ms);
    l->lease = cfg->s3_gc_lease_ms ? l2_lease_start(c, l->s3) : NULL;
    l->gc = l->lease ? l2_gc_start(c, l->s3, l->lease) : NULL;
    pump(l);
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

struct s3_op *l2_head(struct cache *c, const char *digest, s3_done_fn done, void *ud)
{
    char key[128];
    if (!l2_enabled(c) || s3_blob_key(digest, key, sizeof(key)))
        return NULL;
    return s3_head(c->l2->s3, key, done, ud);
}

struct s3_op *l2_get_manifest(struct cache *c, const char *digest, s3_data_fn on_data,
                              s3_done_fn done, void *ud)
{
    char key[160];
    if (!l2_enabled(c) || l2_manifest_key(digest, key, sizeof(key)))
        return NULL;
    return s3_get(c->l2->s3, key, 0, UINT64_MAX, on_data, done, ud);
}

struct s3_op *l2_get_tag(struct cache *c, const struct upstream *u, const char *repo,
                         const char *tag, s3_data_fn on_data, s3_done_fn done, void *ud)
{
    char key[TAG_KEY_MAX + 16];
    if (!l2_enabled(c) || l2_tag_key(upstream_name(u), repo, tag, key, sizeof(key)))
        return NULL;
    return s3_get(c->l2->s3, key, 0, UINT64_MAX, on_data, done, ud);
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

static void retry_later(struct l2 *l, struct l2_put *p)
{
    enqueue(l, p);
    if (!l->retry_on && !l->stopping) {
        l->retry_on = 1;
        uv_timer_start(&l->retry, on_retry, L2_RETRY_MS, 0);
    }
}

static void count_shared(const struct l2_put *p, enum metrics_s3_shared_result result)
{
    enum l2_kind k = kind_of(p->name);
    if (k == L2_TAG || k == L2_MANIFEST)
        metrics_s3_shared(k == L2_TAG ? METRICS_S3_SHARED_TAG : METRICS_S3_SHARED_MANIFEST, 1,
                          result);
}

static void on_put(void *ud, const struct s3_reply *r)
{
    struct l2_put *p = ud;
    struct l2 *l = p->l2;
    p->up = NULL;
    p->op = NULL;
    slot_free(l, p);
    if (r->result == 0 || r->result == -EEXIST ||
        (r->result == -ENOENT && r->status == 404 && kind_of(p->name) == L2_UNTAG &&
         !strcmp(r->code, "NoSuchKey"))) {
        log_debug("s3 tier: %s %s", p->name, r->result ? "was there already" : "written");
        count_shared(p, METRICS_S3_SHARED_OK);
        put_done(l, p, 1);
    } else if (r->result == -EBADMSG) {
        log_error("s3 tier: the store refused %s: the local bytes do not match their digest",
                  p->name);
        count_shared(p, METRICS_S3_SHARED_REFUSED);
        put_done(l, p, 1);
    } else {
        /* the store is away, failing or without the bucket: kept for later, after everything
         * waiting */
        log_warn("s3 tier: writing %s failed (%s%s); trying again", p->name, r->message,
                 r->result == -ENOENT && r->status == 404 ? ": does the bucket exist?" : "");
        count_shared(p, METRICS_S3_SHARED_ERROR);
        retry_later(l, p);
        return;
    }
    count_queue(l);
    if (!l->retry_on)
        pump(l);
}

/* What send() did with an entry. */
enum sent { SENT, NOTHING_TO_WRITE, NOT_SENT, NOT_YET };

/* A blob's or manifest's file from the store, under its digest. */
static enum sent send_file(struct l2 *l, struct l2_put *p)
{
    const char *digest = name_id(p->name);
    const char *type = "application/octet-stream";
    char key[160], path[STORE_PATH_MAX];
    if (kind_of(p->name) == L2_MANIFEST) {
        struct manifest_meta *m = index_manifest(l->c, digest);
        if (!m)
            return index_loading(l->c) ? NOT_YET : NOTHING_TO_WRITE;
        type = m->media_type;
        if (l2_manifest_key(digest, key, sizeof(key)))
            return NOTHING_TO_WRITE;
    } else if (s3_blob_key(digest, key, sizeof(key))) {
        return NOTHING_TO_WRITE;
    }
    if (!store_has(l->c->store, digest))
        return NOTHING_TO_WRITE; /* evicted or purged meanwhile */
    store_blob_path(l->c->store, digest, path, sizeof(path));
    p->up = s3_put_file(l->s3, key, path, digest + 7, type, on_put, p);
    return p->up ? SENT : NOT_SENT;
}

struct tag_names {
    char upstream[128], repo[TAG_KEY_MAX], tag[256], okey[TAG_KEY_MAX + 16];
};

/* The parts of a tag_key and the record's object key; 0, or -EINVAL (not one a key carries). */
static int tag_names(const char *key, struct tag_names *n)
{
    const char *a = strstr(key, KEY_SEP), *b = a ? strstr(a + 1, KEY_SEP) : NULL;
    if (!a || !b || (size_t)(a - key) >= sizeof(n->upstream) || strlen(b + 1) >= sizeof(n->tag))
        return -EINVAL;
    snprintf(n->upstream, sizeof(n->upstream), "%.*s", (int)(a - key), key);
    snprintf(n->repo, sizeof(n->repo), "%.*s", (int)(b - a - 1), a + 1);
    snprintf(n->tag, sizeof(n->tag), "%s", b + 1);
    return l2_tag_key(n->upstream, n->repo, n->tag, n->okey, sizeof(n->okey));
}

/* A purged tag's record is deleted, unless the tag is back in the index (pulled again since:
 * its new record is written by l2_share_tag). */
static enum sent send_untag(struct l2 *l, struct l2_put *p)
{
    const char *key = name_id(p->name);
    struct tag_names n;
    if (index_loading(l->c))
        return NOT_YET;
    if (map_get(l->c->tags, key) || tag_names(key, &n))
        return NOTHING_TO_WRITE;
    p->op = s3_delete(l->s3, n.okey, on_put, p);
    return p->op ? SENT : NOT_SENT;
}

/* A hosted blob's hold: the zero-byte hold/sha256/<2>/<64> the bucket GC never evicts beside,
 * while the blob is still in the local store. */
static enum sent send_hold(struct l2 *l, struct l2_put *p)
{
    static const char empty_sha256[] =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const char *digest = name_id(p->name);
    char blob[160], key[160];
    if (!store_has(l->c->store, digest) || s3_blob_key(digest, blob, sizeof(blob)) ||
        strncmp(blob, "blobs/", 6))
        return NOTHING_TO_WRITE;
    snprintf(key, sizeof(key), "hold/%s", blob + 6); /* beside blobs/sha256/<2>/<64> */
    p->op = s3_put(l->s3, key, NULL, 0, empty_sha256, 0, "application/octet-stream", on_put, p);
    return p->op ? SENT : NOT_SENT;
}

/* A tag's record, as the index has the tag now (one that moved is written as it is). */
static enum sent send_tag(struct l2 *l, struct l2_put *p)
{
    const char *key = name_id(p->name);
    struct tag_entry *t = map_get(l->c->tags, key);
    if (!t)
        return index_loading(l->c) ? NOT_YET : NOTHING_TO_WRITE;
    struct tag_names n;
    if (tag_names(key, &n))
        return NOTHING_TO_WRITE;
    const char *upstream = n.upstream, *repo = n.repo, *tag = n.tag, *okey = n.okey;
    buf_reset(&p->body);
    if (l2_tag_record_format(&p->body, upstream, repo, tag, t->digest, t->media_type,
                             t->validated_ms))
        return NOT_SENT;
    char sha[DIGEST_MAX];
    store_digest_of(p->body.data, p->body.len, sha);
    p->op = s3_put(l->s3, okey, p->body.data, p->body.len, sha + 7, 0, "application/json",
                   on_put, p);
    return p->op ? SENT : NOT_SENT;
}

static void pump(struct l2 *l)
{
    while (!l->stopping && l->running < L2_PUTS_AT_ONCE && l->head) {
        struct l2_put *p = l->head;
        l->head = p->next;
        if (!l->head)
            l->tail = NULL;
        l->queued--;
        enum l2_kind k = kind_of(p->name);
        enum sent s = k == L2_TAG     ? send_tag(l, p)
                      : k == L2_UNTAG ? send_untag(l, p)
                      : k == L2_HOLD  ? send_hold(l, p)
                                      : send_file(l, p);
        if (s == NOTHING_TO_WRITE) {
            put_done(l, p, 1);
            continue;
        }
        if (s == NOT_YET) { /* the index is still loading what it names */
            retry_later(l, p);
            break;
        }
        if (s == NOT_SENT) {
            log_warn("s3 tier: %s could not be sent; the next start tries again", p->name);
            put_done(l, p, 0);
            continue;
        }
        for (size_t i = 0; i < L2_PUTS_AT_ONCE; i++)
            if (!l->inflight[i]) {
                l->inflight[i] = p;
                break;
            }
        l->running++;
    }
    count_queue(l);
}

void l2_commit(struct cache *c, const char *digest)
{
    struct l2 *l = c->l2;
    if (!l2_enabled(c))
        return;
    queue_name(l, digest, 1);
    if (!l->retry_on)
        pump(l);
}

void cache_blob_served(struct cache *c, const char *digest)
{
    if (c && l2_enabled(c))
        l2_access_note(c->l2->access, digest);
}

void l2_commit_manifest(struct cache *c, const char *digest)
{
    char name[L2_NAME_MAX];
    snprintf(name, sizeof(name), "manifest/%s", digest);
    l2_commit(c, name);
}

void l2_share_tag(struct cache *c, const struct upstream *u, const char *repo, const char *tag)
{
    if (!l2_enabled(c) || strstr(tag, KEY_SEP))
        return; /* a negotiated answer is not the tag's */
    struct tag_entry *t = index_tag(c, u, repo, tag);
    uint64_t now = clock_wall_ms();
    if (!t || (t->shared_ms && now - t->shared_ms < L2_TAG_SHARE_MS))
        return;
    t->shared_ms = now;
    char name[L2_NAME_MAX];
    int n = snprintf(name, sizeof(name), "tag/");
    tag_key(name + n, sizeof(name) - (size_t)n, u, repo, tag);
    l2_commit(c, name);
}

void l2_forget_tag(struct cache *c, const char *key)
{
    char name[L2_NAME_MAX];
    if (!l2_enabled(c) || snprintf(name, sizeof(name), "untag/%s", key) >= (int)sizeof(name))
        return;
    l2_commit(c, name);
}

void cache_write_behind(struct cache *c, const char *digest)
{
    if (!c)
        return;
    l2_commit(c, digest);
    char name[L2_NAME_MAX]; /* and its hold, retried like the blob itself until written */
    if (snprintf(name, sizeof(name), "hold/%s", digest) < (int)sizeof(name))
        l2_commit(c, name);
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
    l2_janitor_stop(l->janitor);
    l->janitor = NULL;
    l2_gc_stop(l->gc);
    l->gc = NULL;
    l2_lease_stop(l->lease);
    l->lease = NULL;
    l2_access_free(l->access);
    l->access = NULL;
    if (l->queued + l->running)
        log_info("s3 tier: %zu blobs, manifests, tags or holds not written into the bucket yet; the "
                 "next start writes them", l->queued + l->running);
    for (size_t i = 0; i < L2_PUTS_AT_ONCE; i++)
        if (l->inflight[i]) {
            if (l->inflight[i]->up)
                s3_upload_cancel(l->inflight[i]->up);
            if (l->inflight[i]->op)
                s3_cancel(l->inflight[i]->op);
            put_free(l->inflight[i]);
            l->inflight[i] = NULL;
        }
    while (l->head) {
        struct l2_put *p = l->head;
        l->head = p->next;
        put_free(p);
    }
    l->tail = NULL;
    map_free(l->known);
    uv_timer_stop(&l->retry);
    s3_client_free(l->s3);
    l->s3 = NULL;
    uv_close((uv_handle_t *)&l->retry, on_retry_closed);
    c->l2 = NULL;
}
