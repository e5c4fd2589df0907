/* SPDX-License-Identifier: Apache-2.0 */
#include "cache/purge.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/db.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/map.h"
#include "util/reference.h"

#define PURGE_MANIFEST_MAX (64u << 20) /* larger manifests are not read for what they reach */
#define READER_FRESH_MS (10 * DB_PURGE_POLL_MS) /* a daemon that read the journal this lately */

int purge_parse(const char *s, struct purge_target *t, char *err, size_t len)
{
    memset(t, 0, sizeof(*t));
    const char *at = strchr(s, '@');
    const char *digest = at ? at + 1 : strchr(s, '/') ? NULL : s;
    if (digest) {
        if (!ref_digest_valid(digest, strlen(digest))) {
            snprintf(err, len,
                     "'%s' is not a digest (sha256:<64 hex>); expected "
                     "upstream/repository[:tag] (as regcache ls shows it) or a digest",
                     digest);
            return -EINVAL;
        }
        t->kind = PURGE_DIGEST;
        snprintf(t->digest, sizeof(t->digest), "%s", digest);
        return 0;
    }
    const char *slash = strchr(s, '/');
    const char *colon = strrchr(slash, ':');
    size_t repo_len = colon ? (size_t)(colon - slash - 1) : strlen(slash + 1);
    if (slash == s || (size_t)(slash - s) >= sizeof(t->upstream) || !repo_len ||
        repo_len >= sizeof(t->repo) || (colon && (!colon[1] || strlen(colon + 1) >= sizeof(t->tag)))) {
        snprintf(err, len, "'%s': expected upstream/repository[:tag] (as regcache ls shows it) "
                 "or a digest", s);
        return -EINVAL;
    }
    snprintf(t->upstream, sizeof(t->upstream), "%.*s", (int)(slash - s), s);
    snprintf(t->repo, sizeof(t->repo), "%.*s", (int)repo_len, slash + 1);
    t->kind = colon ? PURGE_TAG : PURGE_REPO;
    if (colon)
        snprintf(t->tag, sizeof(t->tag), "%s", colon + 1);
    return 0;
}

/* ---- what the index holds ---- */

struct tag_row {
    char *upstream, *repo, *tag, *digest;
    int target; /* goes with the purge */
};

struct plan {
    struct db *db;
    struct store *store;
    const struct purge_target *t;
    const struct purge_options *o;
    struct db_blob *blobs;
    size_t n_blobs;
    struct map *sizes;     /* digest -> struct db_blob (cached, not hosted) */
    struct map *manifests; /* digest -> non-NULL */
    struct tag_row *tags;
    size_t n_tags, cap_tags;
    struct map *reach; /* what the target reaches */
    struct map *keep;  /* what other cached content reaches */
    int oom;
};

static int pinned(const struct purge_options *o, const char *digest)
{
    return o->pinned && o->pinned(o->pinned_ud, digest);
}

static void on_tag(void *ud, const struct db_tag_row *row)
{
    struct plan *p = ud;
    if (p->n_tags == p->cap_tags) {
        size_t cap = p->cap_tags ? 2 * p->cap_tags : 64;
        struct tag_row *v = realloc(p->tags, cap * sizeof(*v));
        if (!v) {
            p->oom = 1;
            return;
        }
        p->tags = v;
        p->cap_tags = cap;
    }
    struct tag_row *t = &p->tags[p->n_tags];
    t->upstream = strdup(row->upstream);
    t->repo = strdup(row->repo);
    t->tag = strdup(row->tag);
    t->digest = strdup(row->digest);
    t->target = 0;
    if (!t->upstream || !t->repo || !t->tag || !t->digest) {
        free(t->upstream);
        free(t->repo);
        free(t->tag);
        free(t->digest);
        p->oom = 1;
        return;
    }
    p->n_tags++;
}

static void on_manifest(void *ud, const struct db_manifest_row *row)
{
    struct plan *p = ud;
    if (map_put(p->manifests, row->digest, (void *)1) == MAP_NOMEM)
        p->oom = 1;
}

static void plan_free(struct plan *p)
{
    for (size_t i = 0; i < p->n_tags; i++) {
        free(p->tags[i].upstream);
        free(p->tags[i].repo);
        free(p->tags[i].tag);
        free(p->tags[i].digest);
    }
    free(p->tags);
    free(p->blobs);
    map_free(p->sizes);
    map_free(p->manifests);
    map_free(p->reach);
    map_free(p->keep);
}

/* ---- what a manifest reaches ---- */

struct walk {
    struct plan *p;
    struct map *into;
    char **queue;
    size_t n, cap;
};

static int enqueue(struct walk *w, const char *digest)
{
    if (map_get(w->into, digest))
        return 0;
    if (map_put(w->into, digest, (void *)1) == MAP_NOMEM)
        return -ENOMEM;
    if (!map_get(w->p->manifests, digest))
        return 0; /* a blob: it reaches nothing */
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        char **q = realloc(w->queue, cap * sizeof(*q));
        if (!q)
            return -ENOMEM;
        w->queue = q;
        w->cap = cap;
    }
    return (w->queue[w->n] = strdup(digest)) ? (w->n++, 0) : -ENOMEM;
}

static int on_descriptor(void *ud, const char *s, size_t len)
{
    char digest[REF_DIGEST_MAX + 1];
    int n = json_get_string(s, len, "digest", digest, sizeof(digest));
    if (n > 0 && ref_digest_valid(digest, (size_t)n))
        return enqueue(ud, digest);
    return 0;
}

/* The config, layers, index entries and artifact blobs a manifest names (not its subject: an
 * artifact does not hold the image it refers to). */
static int each_child(struct walk *w, const char *body, size_t len)
{
    static const char *const keys[] = {"config", "layers", "manifests", "blobs"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v;
        size_t vlen;
        if (json_get_raw(body, len, keys[i], &v, &vlen))
            continue;
        int r = *v == '[' ? json_each_element(v, vlen, on_descriptor, w)
                : *v == '{' ? on_descriptor(w, v, vlen)
                            : 0;
        if (r == -ENOMEM)
            return r;
    }
    return 0;
}

static int read_manifest(struct store *s, const char *digest, char **body, size_t *len)
{
    int fd;
    uint64_t size;
    int r = store_blob_open(s, digest, &fd, &size);
    if (r)
        return r;
    if (size > PURGE_MANIFEST_MAX) {
        close(fd);
        return -EFBIG;
    }
    char *b = malloc(size ? size : 1);
    size_t got = 0;
    while (b && got < size) {
        ssize_t n = read(fd, b + got, size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!b || got < size) {
        free(b);
        return b ? -EIO : -ENOMEM;
    }
    *body = b;
    *len = got;
    return 0;
}

static void walk_free(struct walk *w)
{
    while (w->n)
        free(w->queue[--w->n]);
    free(w->queue);
    w->queue = NULL;
    w->cap = 0;
}

/* Adds to w->into everything reachable from what is queued. */
static int walk(struct walk *w)
{
    int r = 0;
    while (w->n && !r) {
        char *digest = w->queue[--w->n];
        char *body;
        size_t len;
        if (read_manifest(w->p->store, digest, &body, &len) == 0) {
            r = each_child(w, body, len);
            free(body);
        }
        free(digest);
    }
    walk_free(w);
    return r;
}

/* ---- the plan ---- */

static int same_repo(const struct purge_target *t, const char *upstream, const char *repo)
{
    return strcmp(t->upstream, upstream) == 0 && strcmp(t->repo, repo) == 0;
}

struct refs_ctx {
    struct walk *reach, *keep;
    const struct purge_target *t;
};

/* A repository purge starts from what the repository pulled; another repository's pull keeps
 * what it pulled. */
static int on_ref(void *ud, const char *upstream, const char *repo, const char *digest)
{
    struct refs_ctx *x = ud;
    if (same_repo(x->t, upstream, repo))
        return x->t->kind == PURGE_REPO ? enqueue(x->reach, digest) : 0;
    return enqueue(x->keep, digest);
}

static int load(struct plan *p)
{
    int r = db_list_blobs(p->db, &p->blobs, &p->n_blobs);
    if (r)
        return r;
    p->sizes = map_new();
    p->manifests = map_new();
    p->reach = map_new();
    p->keep = map_new();
    if (!p->sizes || !p->manifests || !p->reach || !p->keep)
        return -ENOMEM;
    for (size_t i = 0; i < p->n_blobs; i++)
        if (map_put(p->sizes, p->blobs[i].digest, &p->blobs[i]) == MAP_NOMEM)
            return -ENOMEM;
    if ((r = db_load(p->db, on_tag, on_manifest, p)))
        return r;
    return p->oom ? -ENOMEM : 0;
}

/* Marks the target's tags and fills p->reach and p->keep. -ENOENT when nothing is cached. */
static int plan(struct plan *p)
{
    const struct purge_target *t = p->t;
    struct walk reach = {p, p->reach, NULL, 0, 0}, keep = {p, p->keep, NULL, 0, 0};
    int r = 0, found = 0;
    for (size_t i = 0; i < p->n_tags && !r; i++) {
        struct tag_row *tr = &p->tags[i];
        if (t->kind == PURGE_DIGEST)
            tr->target = strcmp(tr->digest, t->digest) == 0;
        else
            tr->target = same_repo(t, tr->upstream, tr->repo) &&
                         (t->kind == PURGE_REPO || strcmp(tr->tag, t->tag) == 0);
        found |= tr->target;
        if (tr->target && t->kind != PURGE_DIGEST)
            r = enqueue(&reach, tr->digest);
    }
    if (t->kind == PURGE_DIGEST) {
        if (!map_get(p->sizes, t->digest))
            return -ENOENT;
        return map_put(p->reach, t->digest, (void *)1) == MAP_NOMEM ? -ENOMEM : 0;
    }
    struct refs_ctx x = {&reach, &keep, t};
    size_t before = map_count(p->reach);
    if (!r)
        r = db_each_ref(p->db, on_ref, &x);
    found |= map_count(p->reach) > before;
    if (!r)
        r = walk(&reach);
    if (!r && !found)
        r = -ENOENT;
    if (r) {
        walk_free(&reach);
        walk_free(&keep);
        return r;
    }
    /* what stays: the other tags, every other cached manifest, other repositories' pulls,
     * pinned content and what it reaches */
    for (size_t i = 0; i < p->n_tags && !r; i++)
        if (!p->tags[i].target)
            r = enqueue(&keep, p->tags[i].digest);
    for (size_t i = 0; i < p->n_blobs && !r; i++) {
        const char *d = p->blobs[i].digest;
        if (map_get(p->manifests, d) && !map_get(p->reach, d))
            r = enqueue(&keep, d);
        else if (map_get(p->reach, d) && map_get(p->manifests, d) && pinned(p->o, d))
            r = enqueue(&keep, d);
    }
    if (!r)
        r = walk(&keep);
    walk_free(&keep);
    return r;
}

static int add_file(struct purge_report *r, const struct plan *p, const struct db_blob *b)
{
    struct purge_file *v = realloc(r->files, (r->n_files + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    r->files = v;
    struct purge_file *f = &v[r->n_files++];
    snprintf(f->digest, sizeof(f->digest), "%s", b->digest);
    f->size = b->size;
    f->manifest = map_get(p->manifests, b->digest) != NULL;
    r->bytes += b->size;
    return 0;
}

static int add_string(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    *v = nv;
    return (nv[*n] = strdup(s)) ? ((*n)++, 0) : -ENOMEM;
}

static int execute(struct plan *p, const struct purge_options *o, struct purge_report *r)
{
    size_t n = r->n_files, nt = 0;
    char **digests = calloc(n ? n : 1, sizeof(*digests));
    uint64_t *sizes = calloc(n ? n : 1, sizeof(*sizes));
    struct db_purge_tag *tags = calloc(p->n_tags ? p->n_tags : 1, sizeof(*tags));
    int rc = digests && sizes && tags ? 0 : -ENOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        digests[i] = r->files[i].digest;
        sizes[i] = r->files[i].size;
    }
    for (size_t i = 0; !rc && i < p->n_tags; i++)
        if (p->tags[i].target)
            tags[nt++] = (struct db_purge_tag){p->tags[i].upstream, p->tags[i].repo,
                                               p->tags[i].tag};
    /* the index first: a crash between the two leaves files without rows, which the next
     * start adopts again; never rows without files */
    if (!rc)
        rc = db_purge(p->db, tags, nt, digests, sizes, n, o->now_ms, NULL, &r->seq);
    for (size_t i = 0; !rc && i < n; i++)
        store_remove(p->store, digests[i]);
    free(digests);
    free(sizes);
    free(tags);
    return rc;
}

int purge_run(struct db *db, struct store *store, const struct purge_options *o,
              struct purge_report *r, char *err, size_t len)
{
    const struct purge_target *t = o->target;
    struct plan p = {.db = db, .store = store, .t = t, .o = o};
    memset(r, 0, sizeof(*r));
    err[0] = '\0';
    int rc = load(&p);
    if (!rc && t->kind == PURGE_DIGEST && pinned(o, t->digest)) {
        snprintf(err, len, "%s is pinned: not purged", t->digest);
        rc = -EPERM;
    }
    if (!rc && (rc = plan(&p)) == -ENOENT) {
        if (t->kind == PURGE_DIGEST)
            snprintf(err, len, "%s is not cached", t->digest);
        else if (t->kind == PURGE_TAG)
            snprintf(err, len, "%s/%s:%s is not cached", t->upstream, t->repo, t->tag);
        else
            snprintf(err, len, "%s/%s is not cached", t->upstream, t->repo);
    }
    for (size_t i = 0; !rc && i < p.n_tags; i++) {
        if (!p.tags[i].target)
            continue;
        char name[1100];
        snprintf(name, sizeof(name), "%s/%s:%s", p.tags[i].upstream, p.tags[i].repo,
                 p.tags[i].tag);
        rc = add_string(&r->tags, &r->n_tags, name);
    }
    for (size_t i = 0; !rc && i < p.n_blobs; i++) {
        const struct db_blob *b = &p.blobs[i];
        if (!map_get(p.reach, b->digest))
            continue;
        if (t->kind != PURGE_DIGEST && pinned(o, b->digest))
            rc = add_string(&r->pinned, &r->kept_pinned, b->digest);
        else if (t->kind != PURGE_DIGEST && map_get(p.keep, b->digest))
            r->kept_shared++;
        else
            rc = add_file(r, &p, b);
    }
    if (!rc && !o->dry_run && (r->n_tags || r->n_files))
        rc = execute(&p, o, r);
    if (rc && !err[0])
        snprintf(err, len, "%s", strerror(-rc));
    plan_free(&p);
    if (rc)
        purge_report_free(r);
    return rc;
}

void purge_report_free(struct purge_report *r)
{
    for (size_t i = 0; i < r->n_tags; i++)
        free(r->tags[i]);
    for (size_t i = 0; i < r->kept_pinned; i++)
        free(r->pinned[i]);
    free(r->tags);
    free(r->pinned);
    free(r->files);
    memset(r, 0, sizeof(*r));
}

/* ---- waiting for the daemons ---- */

struct lag {
    int64_t seq;
    uint64_t now_ms;
    long *pids;
    size_t n, max;
};

static int on_reader(void *ud, long pid, int64_t seq, uint64_t seen_ms)
{
    struct lag *l = ud;
    if (seq >= l->seq || seen_ms + READER_FRESH_MS < l->now_ms)
        return 0; /* caught up, or stopped reading (gone) */
    if (kill((pid_t)pid, 0) && errno == ESRCH)
        return 0;
    if (l->n < l->max)
        l->pids[l->n] = pid;
    l->n++;
    return 0;
}

size_t purge_wait(struct db *db, int64_t seq, uint64_t timeout_ms, long *lagging, size_t max)
{
    uint64_t until = clock_mono_us() / 1000 + timeout_ms;
    for (;;) {
        struct lag l = {seq, clock_wall_ms(), lagging, 0, max};
        if (db_each_purge_reader(db, on_reader, &l) || !l.n)
            return l.n;
        if (clock_mono_us() / 1000 >= until)
            return l.n;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}
