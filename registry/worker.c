/* SPDX-License-Identifier: Apache-2.0 */
#include "registry/worker.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "cache/cache.h"
#include "hosted/hosted.h"
#include "metrics/metrics.h"
#include "registry/impl.h"
#include "registry/respond.h"
#include "registry/route.h"
#include "registry/via.h"
#include "store/store.h"
#include "ui/ui.h"
#include "upstream/upstream.h"
#include "util/clock.h"
#include "util/epoch.h"
#include "util/held_fd.h"
#include "util/log.h"
#include "util/list.h"
#include "util/map.h"
#include "util/shared.h"

/* A pass: an Authorization header the first loop found good, and whose caller it was. */
enum lesson_kind { LESSON_BLOB, LESSON_MANIFEST, LESSON_PASS };

/* One answer a worker may give alone (or a caller it may take as known): taught on the first
 * loop, kept by the worker. */
struct lesson {
    struct lesson *next;          /* in the worker's mail */
    struct list_node recency;     /* in the worker's recency list */
    char *key;
    enum lesson_kind kind;
    uint64_t epoch;
    uint64_t fresh_until_ms; /* a tag or a pass: until then (wall clock); 0: a digest */
    uint64_t fd_until_ms;    /* the descriptor is used until then (monotonic) */
    struct held_fd *file;    /* a blob's (shared with the first loop's); NULL: a HEAD's only */
    uint64_t size;
    struct upstream *u;
    char repo[REPO_MAX];
    char digest[REF_DIGEST_MAX + 1];
    char media_type[128];
    char user[sizeof(((struct http_request *)0)->user)]; /* a pass's caller; "": anonymous */
    char *bytes; /* a manifest's, as taught; made into body on the worker's thread */
    size_t len;
    struct shared_body *body;
};

struct visit {
    struct upstream *u;
    char repo[REPO_MAX];
    char digest[REF_DIGEST_MAX + 1];
    int blob;
    uint64_t times; /* served this many times in the batch */
};

#define VISITS_LOOK_BACK 8 /* a hit like one of the last few is counted there */

struct visit_batch {
    struct visit_batch *next;
    size_t n;
    struct visit v[VISITS_BATCH];
};

struct registry_worker {
    struct registry *r;
    unsigned index;
    uv_loop_t *loop;
    struct map *lessons; /* by key */
    struct list recency; /* of lessons, the least recently used first */
    size_t n, bytes, fds; /* kept: lessons, manifest bytes, descriptors */
    /* lessons sent by the first loop, taken at the worker's next request */
    pthread_mutex_t lock;
    struct lesson *mail;
    atomic_int has_mail;
    /* what was served and not reported yet */
    struct visit_batch *batch;
    uv_timer_t flush_timer;
    uv_timer_t sweep_timer; /* lets go of descriptors past their time, used or not */
    /* the first loop's: what it taught this worker lately (key -> struct taught) */
    struct map *taught;
};

/* A lesson is taught once per TEACH_AGAIN_MS and epoch: a crowd of connections handed over at
 * once (before the first lesson arrived) does not make a copy each. */
#define TEACH_AGAIN_MS 1000
#define TAUGHT_MAX 8192
struct taught {
    uint64_t epoch, at_ms;
    int fd; /* it carried a descriptor */
};

/* ---- keys ---- */

/* u NULL: a hosted repository's */
static const char *owner(const struct upstream *u)
{
    return u ? upstream_name(u) : "";
}

/* Content is taught per caller (user: "" for anonymous), as the first loop judged the pull
 * rules and the anonymous-pull setting for that caller. */
static char *blob_key(const struct upstream *u, const char *user, const char *repo,
                      const char *digest)
{
    size_t n = strlen(owner(u)) + strlen(user) + strlen(repo) + strlen(digest) + 8;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%c\n%s\n%s\n%s\n%s", u ? 'b' : 'B', user, owner(u), repo, digest);
    return k;
}

/* A manifest's answer depends on the Accept header too (the media types negotiated). */
static char *manifest_key(const struct upstream *u, const char *user, const char *repo,
                          const char *reference, const char *accept)
{
    accept = accept ? accept : "";
    size_t n = strlen(owner(u)) + strlen(user) + strlen(repo) + strlen(reference) +
               strlen(accept) + 8;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%c\n%s\n%s\n%s\n%s\n%s", u ? 'm' : 'M', user, owner(u), repo,
                 reference, accept);
    return k;
}

/* A pass is found by a hash of the header: no credentials are kept in a worker. */
static char *pass_key(const char *authorization)
{
    char digest[80];
    store_digest_of(authorization, strlen(authorization), digest);
    size_t n = strlen(digest) + 3;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "p\n%s", digest);
    return k;
}

/* ---- the lessons a worker keeps (its own thread) ---- */

static void lesson_free(struct lesson *l)
{
    if (!l)
        return;
    held_fd_drop(l->file);
    shared_body_unref(l->body);
    free(l->bytes);
    free(l->key);
    free(l);
}

static struct lesson *oldest(struct registry_worker *w)
{
    return LIST_ENTRY(w->recency.head, struct lesson, recency);
}

static void forget(struct registry_worker *w, struct lesson *l)
{
    map_del(w->lessons, l->key);
    list_unlink(&w->recency, &l->recency);
    w->n--;
    w->bytes -= l->len;
    w->fds -= l->file != NULL;
    lesson_free(l);
}

static void learn(struct registry_worker *w, struct lesson *l)
{
    if (l->len > WORKER_BYTES_MAX) {
        lesson_free(l);
        return;
    }
    if (l->bytes) {
        l->body = shared_body_adopt(l->bytes, l->len);
        l->bytes = NULL;
        if (!l->body) {
            lesson_free(l);
            return;
        }
    }
    struct lesson *old = map_get(w->lessons, l->key);
    if (old && l->kind == LESSON_BLOB && !l->file && old->file && old->epoch == l->epoch) {
        lesson_free(l); /* a HEAD's lesson: the one kept knows more */
        return;
    }
    if (old)
        forget(w, old);
    if (map_put(w->lessons, l->key, l) == MAP_NOMEM) {
        lesson_free(l);
        return;
    }
    list_push(&w->recency, &l->recency);
    w->n++;
    w->bytes += l->len;
    w->fds += l->file != NULL;
    while (w->n > WORKER_LESSONS_MAX || w->bytes > WORKER_BYTES_MAX || w->fds > WORKER_FDS_MAX)
        forget(w, oldest(w));
}

static void take_mail(struct registry_worker *w)
{
    if (!atomic_load_explicit(&w->has_mail, memory_order_acquire))
        return;
    pthread_mutex_lock(&w->lock);
    struct lesson *list = w->mail;
    w->mail = NULL;
    atomic_store_explicit(&w->has_mail, 0, memory_order_relaxed);
    pthread_mutex_unlock(&w->lock);
    while (list) {
        struct lesson *next = list->next;
        list->next = NULL;
        learn(w, list);
        list = next;
    }
}

/* The lesson for key if it still holds, made the most recent. */
static struct lesson *recall(struct registry_worker *w, const char *key)
{
    struct lesson *l = map_get(w->lessons, key);
    if (!l)
        return NULL;
    if (l->epoch != content_epoch()) {
        forget(w, l);
        return NULL;
    }
    list_touch(&w->recency, &l->recency);
    return l;
}

/* The caller an Authorization header was found to be ("" anonymous), while its pass holds;
 * NULL otherwise. */
static const char *caller_of(struct registry_worker *w, const char *authorization)
{
    char *key = pass_key(authorization);
    struct lesson *l = key ? recall(w, key) : NULL;
    free(key);
    if (!l)
        return NULL;
    if (clock_wall_ms() >= l->fresh_until_ms) {
        forget(w, l);
        return NULL;
    }
    return l->user;
}

/* Every lesson whose descriptor's time is over goes (at most WORKER_LESSONS_MAX looked at),
 * so that a file the GC removed does not stay held by a worker nobody asks for it. */
static void on_sweep_timer(uv_timer_t *t)
{
    struct registry_worker *w = t->data;
    uint64_t now = clock_mono_us() / 1000;
    for (struct lesson *l = oldest(w), *next; l; l = next) {
        next = LIST_ENTRY(l->recency.next, struct lesson, recency);
        if (l->file && now >= l->fd_until_ms)
            forget(w, l);
    }
}

/* ---- what a worker served, reported to the first loop ---- */

static void post_batch(struct registry *r, struct visit_batch *b)
{
    pthread_mutex_lock(&r->visits_lock);
    if (r->visits_on) {
        b->next = r->visits;
        r->visits = b;
        uv_async_send(&r->visits_async); /* under the lock: not closed meanwhile */
        b = NULL;
    }
    pthread_mutex_unlock(&r->visits_lock);
    free(b); /* stopping: the last access times of a moment are not worth keeping it up */
}

static void flush_visits(struct registry_worker *w)
{
    if (!w->batch)
        return;
    post_batch(w->r, w->batch);
    w->batch = NULL;
}

static void on_flush_timer(uv_timer_t *t)
{
    flush_visits(t->data);
}

static void note_visit(struct registry_worker *w, const struct lesson *l)
{
    if (!w->batch) {
        if (!(w->batch = calloc(1, sizeof(*w->batch))))
            return;
        uv_timer_start(&w->flush_timer, on_flush_timer, VISITS_FLUSH_MS, 0);
    }
    /* the first loop records an access per digest and batch: the rest only count */
    for (size_t i = w->batch->n, k = 0; i > 0 && k < VISITS_LOOK_BACK; i--, k++) {
        struct visit *v = &w->batch->v[i - 1];
        if (v->u == l->u && strcmp(v->digest, l->digest) == 0 && strcmp(v->repo, l->repo) == 0) {
            v->times++;
            return;
        }
    }
    struct visit *v = &w->batch->v[w->batch->n++];
    v->times = 1;
    v->u = l->u;
    snprintf(v->repo, sizeof(v->repo), "%s", l->repo);
    snprintf(v->digest, sizeof(v->digest), "%s", l->digest);
    v->blob = l->kind == LESSON_BLOB;
    if (w->batch->n == VISITS_BATCH) {
        uv_timer_stop(&w->flush_timer);
        flush_visits(w);
    }
}

/* The first loop records what workers served as it does for its own hits. */
static void on_visits(uv_async_t *a)
{
    struct registry *r = a->data;
    pthread_mutex_lock(&r->visits_lock);
    struct visit_batch *list = r->visits;
    r->visits = NULL;
    pthread_mutex_unlock(&r->visits_lock);
    while (list) {
        struct visit_batch *next = list->next;
        for (size_t i = 0; i < list->n; i++) {
            const struct visit *v = &list->v[i];
            cache_note_access(r->cache, v->u, v->repo, v->digest, OUTCOME_HIT);
            cache_count_hits(r->cache, v->times - 1);
            if (v->blob)
                cache_blob_served(r->cache, v->digest);
        }
        free(list);
        list = next;
    }
}

/* ---- answering ---- */

/* A hit sends the lesson's descriptor with a reference of the response's own (no dup(2) and
 * close(2) per hit): a lesson forgotten meanwhile closes its file after the last send. */
static void lesson_source(void *ud, uint64_t first, uint64_t end, struct body_source *src)
{
    struct held_fd *file = ud;
    src->fd = file->fd;
    src->offset = first;
    src->end = end;
    src->release = held_fd_release;
    src->ctx = held_fd_take(file);
}

/* 1 when answered here; 0 when the first loop must answer (nothing was sent). */
static int answer(struct registry_worker *w, struct conn *c, struct http_request *req)
{
    struct registry *r = w->r;
    if (req->method == HTTP_METHOD_OTHER || req->peer || req->relay || req->origin ||
        req->cors_method || conn_draining(c))
        return 0;
    const char *user = ""; /* without auth, credentials sent change nothing */
    if (r->auth && req->authorization) {
        if (!(user = caller_of(w, req->authorization)))
            return 0; /* not a caller the first loop vouched for lately */
        snprintf(req->user, sizeof(req->user), "%s", user);
    } else if (r->auth && !auth_anonymous_pull(r->auth)) {
        return 0;
    }
    if (r->instance[0] && (req->via || req->via_too_long)) {
        /* a child mirror's pull: a hit goes nowhere upstream, so the loop check (pure) is all
         * the first loop would do; a loop is refused there, with its 508 */
        char chain[VIA_CHAIN_MAX];
        size_t hops;
        if (via_check(req->via, req->via_too_long, r->instance, chain, &hops) != VIA_OK)
            return 0;
    }
    if (ui_path(r->ui, req->path))
        return 0;
    int head = req->method == HTTP_METHOD_HEAD;
    if (strcmp(req->path, "/healthz") == 0) { /* liveness, as the first loop answers it */
        conn_respond(c, 200, "Content-Type: text/plain\r\n", "ok\n", 3, head);
        return 1;
    }
    struct route rt;
    if (route_parse(req->path, req->query, &rt) != 0)
        return 0;
    if (rt.kind == ROUTE_BASE && !r->auth) { /* the ping every pull starts with */
        req->handler = route_handler_name(&rt);
        metrics_http_started(req);
        conn_respond(c, 200, "Content-Type: application/json\r\n", "{}\n", 3, head);
        return 1;
    }
    if (rt.kind != ROUTE_BLOB && rt.kind != ROUTE_MANIFEST)
        return 0;
    char repo[REPO_MAX];
    struct upstream *u = NULL;
    if (registry__for_hosted(r, &rt)) {
        if (r->cluster)
            return 0; /* the repository's holder may move: every pull goes by the first loop */
        snprintf(repo, sizeof(repo), "%s", rt.name);
    } else if (!(u = registry__pick_upstream(r, &rt, repo, sizeof(repo)))) {
        return 0;
    }
    int blob = rt.kind == ROUTE_BLOB;
    char *key = blob ? blob_key(u, user, repo, rt.reference)
                     : manifest_key(u, user, repo, rt.reference, req->accept);
    struct lesson *l = key ? recall(w, key) : NULL;
    free(key);
    if (!l)
        return 0;
    if (l->fresh_until_ms && clock_wall_ms() >= l->fresh_until_ms)
        return 0; /* a tag to revalidate: the first loop does, and teaches again */
    if (blob && !head) {
        if (!l->file)
            return 0;
        if (clock_mono_us() / 1000 >= l->fd_until_ms) {
            forget(w, l); /* let go of a file the GC may have removed meanwhile */
            return 0;
        }
    }
    char nsh[300] = "";
    if (rt.ns[0])
        snprintf(nsh, sizeof(nsh), "OCI-Namespace: %s\r\n", rt.ns);
    req->handler = route_handler_name(&rt);
    req->upstream = u ? upstream_name(u) : NULL;
    req->outcome = "hit";
    metrics_http_started(req);
    if (u) /* hosted content has no access times to keep */
        note_visit(w, l);
    if (blob) {
        respond_blob(c, req, l->digest, l->size, nsh, lesson_source, l->file);
    } else {
        respond_manifest_shared(c, head, l->media_type, l->digest, l->body, nsh);
    }
    return 1;
}

static void worker_handle(struct conn *c, struct http_request *req, void *ud)
{
    struct registry_worker *w = ud;
    take_mail(w);
    if (!answer(w, c, req))
        http_hand_over(c);
}

/* ---- teaching (the first loop) ---- */

static void send_lesson(struct registry_worker *w, struct lesson *l);

/* The caller content is taught for: the user the first loop found, "" for anonymous (and
 * for everyone without auth, where credentials sent change nothing). */
static const char *caller(const struct registry *r, const struct http_request *req)
{
    return r->auth ? req->user : "";
}

/* Tells w that req's Authorization header is the caller the first loop found, for as long as
 * auth_pass_until_ms allows. 0 when it may not be told. */
static int teach_pass(struct registry *r, struct registry_worker *w,
                      const struct http_request *req)
{
    uint64_t until = auth_pass_until_ms(r->auth, req->authorization, clock_wall_ms());
    if (!until)
        return 0;
    struct lesson *l = calloc(1, sizeof(*l));
    if (!l)
        return 0;
    l->kind = LESSON_PASS;
    l->epoch = content_epoch();
    l->fresh_until_ms = until;
    snprintf(l->user, sizeof(l->user), "%s", req->user);
    if (!(l->key = pass_key(req->authorization))) {
        lesson_free(l);
        return 0;
    }
    send_lesson(w, l);
    return 1;
}

static struct registry_worker *home_of(struct registry *r, struct conn *c,
                                       const struct http_request *req)
{
    unsigned home = conn_home_index(c);
    if (!home || home >= r->n_workers || !r->workers || !r->workers[home])
        return NULL;
    /* cluster peers, relays and CORS requests are the first loop's alone */
    if (req->peer || req->relay || req->origin)
        return NULL;
    struct registry_worker *w = r->workers[home];
    if (r->auth && req->authorization && !teach_pass(r, w, req))
        return NULL;
    return w;
}

static int free_taught(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    free(value);
    return 0;
}

/* 1 when key was taught to w in this epoch within TEACH_AGAIN_MS; else notes it is now. */
static int taught_lately(struct registry_worker *w, const char *key, uint64_t epoch, int fd)
{
    uint64_t now = clock_mono_us() / 1000;
    struct taught *t = map_get(w->taught, key);
    if (t && t->epoch == epoch && now - t->at_ms < TEACH_AGAIN_MS && (t->fd || !fd))
        return 1;
    if (!t) {
        if (map_count(w->taught) >= TAUGHT_MAX) {
            map_each(w->taught, free_taught, NULL);
            map_free(w->taught);
            if (!(w->taught = map_new()))
                return 1;
        }
        if (!(t = malloc(sizeof(*t))) || map_put(w->taught, key, t) == MAP_NOMEM) {
            free(t);
            return 0;
        }
    }
    t->epoch = epoch;
    t->at_ms = now;
    t->fd = fd;
    return 0;
}

static void send_lesson(struct registry_worker *w, struct lesson *l)
{
    if (w->taught && taught_lately(w, l->key, l->epoch, l->file != NULL)) {
        lesson_free(l);
        return;
    }
    pthread_mutex_lock(&w->lock);
    l->next = w->mail;
    w->mail = l;
    atomic_store_explicit(&w->has_mail, 1, memory_order_release);
    pthread_mutex_unlock(&w->lock);
}

static struct lesson *lesson_new(struct upstream *u, const char *repo, const char *digest)
{
    struct lesson *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->u = u;
    l->epoch = content_epoch();
    snprintf(l->repo, sizeof(l->repo), "%s", repo);
    snprintf(l->digest, sizeof(l->digest), "%s", digest);
    return l;
}

/* A blob's lesson for user: its size, and a reference to file when there is one. */
static struct lesson *blob_lesson(struct upstream *u, const char *user, const char *repo,
                                  const char *digest, struct held_fd *file, uint64_t size)
{
    struct lesson *l = lesson_new(u, repo, digest);
    if (!l || !(l->key = blob_key(u, user, repo, digest))) {
        lesson_free(l);
        return NULL;
    }
    l->kind = LESSON_BLOB;
    l->size = size;
    if (file) {
        l->file = held_fd_take(file);
        l->fd_until_ms = clock_mono_us() / 1000 + WORKER_FD_TTL_MS;
    }
    return l;
}

/* A manifest's lesson for user: a copy of its bytes, for requests naming reference with
 * accept. */
static struct lesson *manifest_lesson(struct upstream *u, const char *user, const char *repo,
                                      const char *reference, const char *accept,
                                      const char *digest,
                                      const char *media_type, const char *body, size_t len,
                                      uint64_t fresh_until_ms)
{
    if (!body || !len || strlen(media_type) >= sizeof(((struct lesson *)0)->media_type))
        return NULL;
    struct lesson *l = lesson_new(u, repo, digest);
    if (!l || !(l->key = manifest_key(u, user, repo, reference, accept)) ||
        !(l->bytes = malloc(len))) {
        lesson_free(l);
        return NULL;
    }
    memcpy(l->bytes, body, len);
    l->len = len;
    l->kind = LESSON_MANIFEST;
    l->fresh_until_ms = fresh_until_ms;
    snprintf(l->media_type, sizeof(l->media_type), "%s", media_type);
    return l;
}

void registry__teach_blob(struct registry *r, struct conn *c, const struct http_request *req,
                          struct upstream *u, const char *repo, const char *digest,
                          struct held_fd *file, uint64_t size)
{
    struct registry_worker *w = home_of(r, c, req);
    struct lesson *l = w ? blob_lesson(u, caller(r, req), repo, digest, file, size) : NULL;
    if (l)
        send_lesson(w, l);
}

void registry__teach_manifest(struct registry *r, struct conn *c, const struct http_request *req,
                              struct upstream *u, const char *repo, const char *reference,
                              const char *digest, const char *media_type, const char *body,
                              size_t len)
{
    struct registry_worker *w = home_of(r, c, req);
    if (!w)
        return;
    uint64_t fresh_until = 0;
    if (!strchr(reference, ':')) { /* a tag: fresh as long as the first loop would say */
        uint64_t validated;
        if (!cache_tag_validated(r->cache, u, repo, reference, digest, &validated))
            return; /* answered through an Accept class of its own: the first loop's */
        fresh_until = validated + r->revalidate_after_ms;
        if (fresh_until <= clock_wall_ms())
            return;
    }
    struct lesson *l = manifest_lesson(u, caller(r, req), repo, reference, req->accept, digest,
                                       media_type, body, len, fresh_until);
    if (l)
        send_lesson(w, l);
}

/* Hosted content: no upstream, and a tag holds until a push or delete moves the epoch. */
static void teach_hosted(void *ud, const struct hosted_answer *a)
{
    struct registry *r = ud;
    struct registry_worker *w = home_of(r, a->c, a->req);
    if (!w || r->cluster)
        return;
    struct lesson *l =
        a->body ? manifest_lesson(NULL, caller(r, a->req), a->repo, a->reference,
                                  a->req->accept, a->digest, a->media_type, a->body, a->len, 0)
                : blob_lesson(NULL, caller(r, a->req), a->repo, a->digest, a->file, a->size);
    if (l)
        send_lesson(w, l);
}

/* ---- the workers' lives ---- */

static void *worker_start(void *ctx, unsigned i, uv_loop_t *loop)
{
    struct registry *r = ctx;
    struct registry_worker *w = calloc(1, sizeof(*w));
    if (!w || !(w->lessons = map_new()) || !(w->taught = map_new())) {
        if (w)
            map_free(w->lessons);
        free(w);
        return NULL;
    }
    metrics_set_loop(i);
    w->r = r;
    w->index = i;
    w->loop = loop;
    pthread_mutex_init(&w->lock, NULL);
    uv_timer_init(loop, &w->flush_timer);
    w->flush_timer.data = w;
    uv_unref((uv_handle_t *)&w->flush_timer); /* the loop ends with its connections */
    uv_timer_init(loop, &w->sweep_timer);
    w->sweep_timer.data = w;
    uv_timer_start(&w->sweep_timer, on_sweep_timer, WORKER_FD_TTL_MS / 4, WORKER_FD_TTL_MS / 4);
    uv_unref((uv_handle_t *)&w->sweep_timer);
    r->workers[i] = w; /* before the worker accepts: seen by the first loop through the
                        * hand-over that brings it a connection of this worker */
    return w;
}

/* The lessons sent to w and not yet taken. */
static void free_mail(struct registry_worker *w)
{
    pthread_mutex_lock(&w->lock);
    struct lesson *mail = w->mail;
    w->mail = NULL;
    atomic_store_explicit(&w->has_mail, 0, memory_order_relaxed);
    pthread_mutex_unlock(&w->lock);
    while (mail) {
        struct lesson *next = mail->next;
        lesson_free(mail);
        mail = next;
    }
}

static void worker_stop(void *ctx, unsigned i, void *ud)
{
    struct registry *r = ctx;
    struct registry_worker *w = ud;
    (void)i;
    (void)r;
    flush_visits(w);
    uv_close((uv_handle_t *)&w->flush_timer, NULL);
    uv_close((uv_handle_t *)&w->sweep_timer, NULL);
    while (w->recency.head)
        forget(w, oldest(w));
    map_free(w->lessons);
    w->lessons = NULL;
    free_mail(w);
    /* the struct goes with the registry: the first loop may still look it up (home_of), and
     * teach it what no one will read (registry_free_workers frees that) */
}

int registry_start_workers(struct registry *r, struct http_server *http, unsigned n,
                           uint64_t revalidate_after_ms, uv_loop_t *loop)
{
    r->revalidate_after_ms = revalidate_after_ms;
    if (n <= 1)
        return 0;
    if (!(r->workers = calloc(n, sizeof(*r->workers))))
        return -ENOMEM;
    r->n_workers = n;
    pthread_mutex_init(&r->visits_lock, NULL);
    uv_async_init(loop, &r->visits_async, on_visits);
    r->visits_async.data = r;
    r->visits_on = 1;
    hosted_on_answer(r->hosted, teach_hosted, r);
    struct http_workers_opts o = {
        .n = n,
        .handler = worker_handle,
        .start = worker_start,
        .stop = worker_stop,
        .ctx = r,
    };
    int rc = http_server_start_workers(http, &o);
    if (!rc)
        log_info("workers: %u event loops serve connections", n);
    return rc;
}

void registry_stop_workers(struct registry *r)
{
    if (!r || !r->visits_on)
        return;
    pthread_mutex_lock(&r->visits_lock);
    r->visits_on = 0;
    struct visit_batch *list = r->visits;
    r->visits = NULL;
    pthread_mutex_unlock(&r->visits_lock);
    while (list) {
        struct visit_batch *next = list->next;
        free(list);
        list = next;
    }
    uv_close((uv_handle_t *)&r->visits_async, NULL);
}

void registry_free_workers(struct registry *r)
{
    if (!r->workers)
        return;
    for (unsigned i = 1; i < r->n_workers; i++) {
        struct registry_worker *w = r->workers[i];
        if (!w)
            continue;
        free_mail(w); /* taught after the worker stopped */
        pthread_mutex_destroy(&w->lock);
        free(w->batch);
        if (w->taught) {
            map_each(w->taught, free_taught, NULL);
            map_free(w->taught);
        }
        free(w);
    }
    free(r->workers);
    r->workers = NULL;
    pthread_mutex_destroy(&r->visits_lock);
}
