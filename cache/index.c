/* SPDX-License-Identifier: Apache-2.0 */
/* The cache's in-memory index: tags, manifests (with a budget of their bytes kept in memory
 * for hits) and repositories, loaded from the database after the start (in the background:
 * the rows on the thread pool, merged in on the loop a slice at a time; misses ask the
 * database meanwhile) and written back through it. A leaf of cache/: it calls nothing else in
 * the module. Loop thread, but for the staging of the load. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/impl.h"
#include "util/epoch.h"
#include "db/db.h"
#include "util/clock.h"
#include "util/log.h"

void tag_key(char *out, size_t len, const struct upstream *u, const char *repo, const char *tag)
{
    snprintf(out, len, "%s" KEY_SEP "%s" KEY_SEP "%s", upstream_name(u), repo, tag);
}

/* Per repository: how many tags (and negotiated answers) the index holds for it. */
struct repo_entry {
    size_t tags;
};

static struct repo_entry *note_repo(struct cache *c, const char *upstream, const char *repo)
{
    char key[TAG_KEY_MAX];
    snprintf(key, sizeof(key), "%s" KEY_SEP "%s", upstream, repo);
    struct repo_entry *r = map_get(c->repos, key);
    if (r)
        return r;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (map_put(c->repos, key, r) == MAP_NOMEM) {
        free(r);
        return NULL;
    }
    return r;
}

/* The repository part ("upstream" KEY_SEP "repo") of a tag key; 0 when it has none. */
static int repo_of_key(const char *key, char *out, size_t len)
{
    const char *a = strstr(key, KEY_SEP);
    const char *b = a ? strstr(a + 1, KEY_SEP) : NULL;
    if (!b || (size_t)(b - key) >= len)
        return 0;
    memcpy(out, key, (size_t)(b - key));
    out[b - key] = '\0';
    return 1;
}

static void repo_untag(struct cache *c, const char *key)
{
    char rk[TAG_KEY_MAX];
    struct repo_entry *r = repo_of_key(key, rk, sizeof(rk)) ? map_get(c->repos, rk) : NULL;
    if (r && r->tags)
        r->tags--;
}

/* Negotiated answers (a tag for one Accept class: "tag" KEY_SEP class) live in memory only,
 * in their own map, so that tags lists and the database see only real tags. */
static int is_negotiated(const char *tag)
{
    return strstr(tag, KEY_SEP) != NULL;
}

static struct map *map_for(struct cache *c, const char *tag)
{
    return is_negotiated(tag) ? c->negotiated : c->tags;
}

static void set_tag_raw(struct cache *c, struct map *map, const char *key, const char *digest,
                        const char *media_type, uint64_t validated_ms);
static struct manifest_meta *add_manifest_raw(struct cache *c, const char *digest,
                                              const char *media_type, uint64_t size);
static void load_tag(void *ud, const struct db_tag_row *row);
static void load_manifest(void *ud, const struct db_manifest_row *row);

/* While loading: what is forgotten is remembered as gone, so that the load does not bring it
 * back. */
static void note_gone(struct map *gone, const char *key)
{
    if (gone)
        map_put(gone, key, (void *)1);
}

struct tag_entry *index_tag(struct cache *c, const struct upstream *u, const char *repo,
                            const char *tag)
{
    char key[TAG_KEY_MAX];
    tag_key(key, sizeof(key), u, repo, tag);
    struct tag_entry *t = map_get(map_for(c, tag), key);
    if (t || !c->loading || is_negotiated(tag) || map_get(c->gone_tags, key))
        return t;
    /* not merged in yet: the database has it if anything does */
    db_get_tag(c->db, upstream_name(u), repo, tag, load_tag, c);
    return map_get(c->tags, key);
}

struct oldest_ctx {
    const char *prefix;
    size_t prefix_len;
    char key[TAG_KEY_MAX];
    uint64_t validated_ms;
    int found;
};

static int find_oldest(const char *key, void *value, void *ud)
{
    struct oldest_ctx *o = ud;
    struct tag_entry *t = value;
    if (strncmp(key, o->prefix, o->prefix_len) != 0 || strlen(key) >= sizeof(o->key))
        return 0;
    if (!o->found || t->validated_ms < o->validated_ms) {
        o->found = 1;
        o->validated_ms = t->validated_ms;
        memcpy(o->key, key, strlen(key) + 1);
    }
    return 0;
}

/* The repository holds cache.max_tags_per_repository tags: forgets the one validated longest
 * ago (in memory and in the database), so that an upstream that answers every tag name cannot
 * grow the index without bound. One walk of the index per eviction. */
static void evict_oldest_tag(struct cache *c, const char *repo_key)
{
    char prefix[TAG_KEY_MAX];
    snprintf(prefix, sizeof(prefix), "%s" KEY_SEP, repo_key);
    struct oldest_ctx o[2];
    struct map *maps[2] = {c->tags, c->negotiated};
    for (int i = 0; i < 2; i++) {
        memset(&o[i], 0, sizeof(o[i]));
        o[i].prefix = prefix;
        o[i].prefix_len = strlen(prefix);
        map_each(maps[i], find_oldest, &o[i]);
    }
    int pick = o[0].found && (!o[1].found || o[0].validated_ms <= o[1].validated_ms) ? 0 : 1;
    struct map *in = maps[pick];
    struct oldest_ctx *old = &o[pick];
    if (!old->found)
        return;
    struct tag_entry *t = map_del(in, old->key);
    content_epoch_bump(); /* what workers kept of it goes */
    if (!t)
        return;
    free(t);
    if (in == c->tags)
        note_gone(c->gone_tags, old->key);
    repo_untag(c, old->key);
    log_info("index: %s holds %llu tags; forgot the least recently validated one", repo_key,
             (unsigned long long)c->cfg->max_tags_per_repo);
    if (in == c->tags) {
        const char *a = strstr(old->key, KEY_SEP);
        const char *b = a ? strstr(a + 1, KEY_SEP) : NULL;
        if (a && b) {
            char up[TAG_KEY_MAX], repo[TAG_KEY_MAX];
            snprintf(up, sizeof(up), "%.*s", (int)(a - old->key), old->key);
            snprintf(repo, sizeof(repo), "%.*s", (int)(b - a - 1), a + 1);
            db_del_tag(c->db, up, repo, b + 1);
        }
    }
}

/* Points the tag at digest. The strings must not live in the entry itself: a tag whose digest
 * is unchanged is refreshed with index_tag_validated, never rewritten from itself. */
static void set_tag_raw(struct cache *c, struct map *map, const char *key, const char *digest,
                        const char *media_type, uint64_t validated_ms)
{
    struct tag_entry *t = map_get(map, key);
    if (t && (digest == t->digest || media_type == t->media_type)) {
        /* a caller bug; copying would be an overlapping copy (undefined, and glibc empties it) */
        log_error("index: tag %s rewritten from itself; kept as it was", key);
        t->validated_ms = validated_ms;
        return;
    }
    if (strlen(digest) >= sizeof(t->digest) || strlen(media_type) >= sizeof(t->media_type) ||
        !*digest) {
        log_error("index: tag %s: digest or media type does not fit; not recorded", key);
        return;
    }
    if (!t) {
        char rk[TAG_KEY_MAX];
        if (!repo_of_key(key, rk, sizeof(rk)))
            return;
        struct repo_entry *r = map_get(c->repos, rk);
        if (r && !c->loading && c->cfg->max_tags_per_repo &&
            r->tags >= c->cfg->max_tags_per_repo)
            evict_oldest_tag(c, rk); /* while loading, the counts are not complete yet */
        t = calloc(1, sizeof(*t));
        if (!t)
            return;
        if (map_put(map, key, t) == MAP_NOMEM) {
            free(t);
            return;
        }
        if ((r = map_get(c->repos, rk)))
            r->tags++;
    }
    if (strcmp(t->digest, digest) != 0) {
        t->shared_ms = 0; /* moved: its record is written again */
        if (t->digest[0])
            content_epoch_bump();
    }
    memcpy(t->digest, digest, strlen(digest) + 1);
    memcpy(t->media_type, media_type, strlen(media_type) + 1);
    t->validated_ms = validated_ms;
    t->head_size_known = 0;
    t->basis[0] = '\0';
}

void index_set_tag(struct cache *c, const struct upstream *u, const char *repo, const char *tag,
                   const char *digest, const char *media_type, uint64_t validated_ms,
                   int persist)
{
    char key[TAG_KEY_MAX];
    tag_key(key, sizeof(key), u, repo, tag);
    note_repo(c, upstream_name(u), repo);
    set_tag_raw(c, map_for(c, tag), key, digest, media_type, validated_ms);
    if (!persist || is_negotiated(tag))
        return;
    struct db_tag_row row = {upstream_name(u), repo, tag, digest, media_type, validated_ms};
    db_put_tag(c->db, &row);
}

int index_tag_validated(struct cache *c, const struct upstream *u, const char *repo,
                        const char *tag, uint64_t validated_ms)
{
    char key[TAG_KEY_MAX];
    tag_key(key, sizeof(key), u, repo, tag);
    struct tag_entry *t = map_get(map_for(c, tag), key);
    if (!t)
        return -ENOENT;
    t->validated_ms = validated_ms;
    if (!is_negotiated(tag))
        db_tag_validated(c->db, upstream_name(u), repo, tag, validated_ms);
    return 0;
}

void index_forget_tag(struct cache *c, const struct upstream *u, const char *repo,
                      const char *tag)
{
    char key[TAG_KEY_MAX];
    tag_key(key, sizeof(key), u, repo, tag);
    struct tag_entry *t = map_del(map_for(c, tag), key);
    content_epoch_bump(); /* what workers kept of it goes */
    if (t)
        repo_untag(c, key);
    free(t);
    if (!is_negotiated(tag)) {
        note_gone(c->gone_tags, key);
        db_del_tag(c->db, upstream_name(u), repo, tag);
    }
}

const char *index_manifest_type(const char *media_type)
{
    static const char *const types[] = {MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST,
                                        MEDIA_DOCKER_MANIFEST};
    if (!media_type)
        return NULL;
    size_t len = strcspn(media_type, ";");
    while (len && (media_type[len - 1] == ' ' || media_type[len - 1] == '\t'))
        len--;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strlen(types[i]) == len && strncasecmp(types[i], media_type, len) == 0)
            return types[i];
    return NULL;
}

struct manifest_meta *index_manifest(struct cache *c, const char *digest)
{
    struct manifest_meta *m = map_get(c->manifests, digest);
    if (m || !c->loading || map_get(c->gone_manifests, digest))
        return m;
    db_get_manifest(c->db, digest, load_manifest, c);
    return map_get(c->manifests, digest);
}

static void lru_unlink(struct cache *c, struct manifest_meta *m)
{
    if (m->lru_prev)
        m->lru_prev->lru_next = m->lru_next;
    else if (c->lru_head == m)
        c->lru_head = m->lru_next;
    if (m->lru_next)
        m->lru_next->lru_prev = m->lru_prev;
    else if (c->lru_tail == m)
        c->lru_tail = m->lru_prev;
    m->lru_prev = m->lru_next = NULL;
}

static void lru_push_front(struct cache *c, struct manifest_meta *m)
{
    m->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = m;
    c->lru_head = m;
    if (!c->lru_tail)
        c->lru_tail = m;
}

static void forget_bytes(struct cache *c, struct manifest_meta *m)
{
    if (!m->bytes)
        return;
    lru_unlink(c, m);
    free(m->bytes);
    m->bytes = NULL;
    c->mem_bytes -= m->size;
}

void index_remember_bytes(struct cache *c, struct manifest_meta *m, const char *bytes)
{
    if (m->bytes || m->size > MANIFEST_MEMORY_BUDGET / 4)
        return;
    while (c->lru_tail && c->mem_bytes + m->size > MANIFEST_MEMORY_BUDGET)
        forget_bytes(c, c->lru_tail);
    m->bytes = malloc(m->size ? m->size : 1);
    if (!m->bytes)
        return;
    memcpy(m->bytes, bytes, m->size);
    c->mem_bytes += m->size;
    lru_push_front(c, m);
}

void index_touch_bytes(struct cache *c, struct manifest_meta *m)
{
    if (m->bytes && c->lru_head != m) {
        lru_unlink(c, m);
        lru_push_front(c, m);
    }
}

static struct manifest_meta *add_manifest_raw(struct cache *c, const char *digest,
                                              const char *media_type, uint64_t size)
{
    struct manifest_meta *m = map_get(c->manifests, digest);
    if (m)
        return m;
    m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    snprintf(m->digest, sizeof(m->digest), "%s", digest);
    snprintf(m->media_type, sizeof(m->media_type), "%s", media_type);
    m->size = size;
    if (map_put(c->manifests, digest, m) == MAP_NOMEM) {
        free(m);
        return NULL;
    }
    return m;
}

struct manifest_meta *index_add_manifest(struct cache *c, const char *digest,
                                         const char *media_type, uint64_t size, int persist)
{
    struct manifest_meta *m = add_manifest_raw(c, digest, media_type, size);
    if (m && persist) {
        struct db_manifest_row row = {digest, media_type, size};
        db_put_manifest(c->db, &row);
        db_put_blob(c->db, digest, size, media_type, clock_wall_ms());
    }
    return m;
}

void index_drop_manifest(struct cache *c, const char *digest)
{
    note_gone(c->gone_manifests, digest);
    struct manifest_meta *m = map_del(c->manifests, digest);
    content_epoch_bump(); /* what workers kept of it goes */
    if (m) {
        forget_bytes(c, m);
        free(m);
    }
}

static void load_tag(void *ud, const struct db_tag_row *row)
{
    struct cache *c = ud;
    if (!row->digest[0] || !row->media_type[0])
        return; /* written by an older version that could blank a tag: ask upstream again */
    char key[TAG_KEY_MAX];
    snprintf(key, sizeof(key), "%s" KEY_SEP "%s" KEY_SEP "%s", row->upstream, row->repo,
             row->tag);
    if (!index_manifest_type(row->media_type))
        return; /* not a manifest media type (stored by an older version): ask again */
    note_repo(c, row->upstream, row->repo);
    set_tag_raw(c, c->tags, key, row->digest, row->media_type, row->validated_ms);
}

static void load_manifest(void *ud, const struct db_manifest_row *row)
{
    if (index_manifest_type(row->media_type))
        add_manifest_raw(ud, row->digest, row->media_type, row->size);
}


int index_load(struct cache *c)
{
    return db_load(c->db, load_tag, load_manifest, c);
}

/* ---- loading in the background ---- */

#define MERGE_SLICE 4096 /* entries merged in per turn of the loop */

struct staged_tag {
    char *key;
    char *repo_key; /* upstream KEY_SEP repo */
    struct tag_entry *t;
};

struct index_load {
    uv_work_t work;
    uv_idle_t idle;
    struct cache *c;
    void (*done)(struct cache *c);
    int rc, stopped, idle_open;
    uint64_t t0;
    struct staged_tag *tags;
    size_t n_tags, cap_tags, tag_pos;
    struct manifest_meta **manifests;
    size_t n_manifests, cap_manifests, manifest_pos;
};

/* Thread pool: rows into the staging arrays (the maps are the loop's). */
static void stage_tag(void *ud, const struct db_tag_row *row)
{
    struct index_load *l = ud;
    if (!row->digest[0] || !row->media_type[0] || !index_manifest_type(row->media_type) ||
        l->rc)
        return; /* as load_tag */
    if (l->n_tags == l->cap_tags) {
        size_t cap = l->cap_tags ? l->cap_tags * 2 : 1024;
        struct staged_tag *t = realloc(l->tags, cap * sizeof(*t));
        if (!t) {
            l->rc = -ENOMEM;
            return;
        }
        l->tags = t;
        l->cap_tags = cap;
    }
    struct tag_entry *t = calloc(1, sizeof(*t));
    char key[TAG_KEY_MAX], rk[TAG_KEY_MAX];
    snprintf(key, sizeof(key), "%s" KEY_SEP "%s" KEY_SEP "%s", row->upstream, row->repo,
             row->tag);
    snprintf(rk, sizeof(rk), "%s" KEY_SEP "%s", row->upstream, row->repo);
    if (!t || strlen(row->digest) >= sizeof(t->digest) ||
        strlen(row->media_type) >= sizeof(t->media_type)) {
        free(t);
        return;
    }
    memcpy(t->digest, row->digest, strlen(row->digest) + 1);
    memcpy(t->media_type, row->media_type, strlen(row->media_type) + 1);
    t->validated_ms = row->validated_ms;
    struct staged_tag *s = &l->tags[l->n_tags];
    s->t = t;
    s->key = strdup(key);
    s->repo_key = strdup(rk);
    if (!s->key || !s->repo_key) {
        free(s->key);
        free(s->repo_key);
        free(t);
        l->rc = -ENOMEM;
        return;
    }
    l->n_tags++;
}

static void stage_manifest(void *ud, const struct db_manifest_row *row)
{
    struct index_load *l = ud;
    if (!index_manifest_type(row->media_type) || l->rc)
        return;
    if (l->n_manifests == l->cap_manifests) {
        size_t cap = l->cap_manifests ? l->cap_manifests * 2 : 1024;
        struct manifest_meta **m = realloc(l->manifests, cap * sizeof(*m));
        if (!m) {
            l->rc = -ENOMEM;
            return;
        }
        l->manifests = m;
        l->cap_manifests = cap;
    }
    struct manifest_meta *m = calloc(1, sizeof(*m));
    if (!m) {
        l->rc = -ENOMEM;
        return;
    }
    snprintf(m->digest, sizeof(m->digest), "%s", row->digest);
    snprintf(m->media_type, sizeof(m->media_type), "%s", row->media_type);
    m->size = row->size;
    l->manifests[l->n_manifests++] = m;
}

static void load_work(uv_work_t *w)
{
    struct index_load *l = w->data;
    int r = db_load_apart(l->c->db, stage_tag, stage_manifest, l);
    if (!l->rc)
        l->rc = r;
}

static void load_free(struct index_load *l)
{
    for (size_t i = l->tag_pos; i < l->n_tags; i++) {
        free(l->tags[i].key);
        free(l->tags[i].repo_key);
        free(l->tags[i].t);
    }
    free(l->tags);
    for (size_t i = l->manifest_pos; i < l->n_manifests; i++)
        free(l->manifests[i]);
    free(l->manifests);
    free(l);
}

static void idle_closed(uv_handle_t *h)
{
    load_free(h->data);
}

/* The end of the load: the maps are complete, misses are misses again. */
static void load_finished(struct index_load *l)
{
    struct cache *c = l->c;
    c->loading = NULL;
    map_free(c->gone_tags);
    map_free(c->gone_manifests);
    c->gone_tags = c->gone_manifests = NULL;
    if (l->rc)
        log_error("index: cannot load the tags and manifests (%d): they are asked upstream "
                  "again",
                  l->rc);
    else
        log_info("index: %zu tags, %zu manifests, %zu repositories (loaded in the background "
                 "in %llu ms)",
                 map_count(c->tags), map_count(c->manifests), map_count(c->repos),
                 (unsigned long long)((clock_mono_us() - l->t0) / 1000));
    void (*done)(struct cache *) = l->done;
    if (l->idle_open) {
        uv_idle_stop(&l->idle);
        uv_close((uv_handle_t *)&l->idle, idle_closed);
    } else {
        load_free(l);
    }
    if (done)
        done(c);
}

/* One slice: what is in memory already (set, or asked from the database, meanwhile) is newer;
 * what was forgotten meanwhile stays forgotten. */
static void merge_slice(uv_idle_t *h)
{
    struct index_load *l = h->data;
    struct cache *c = l->c;
    size_t budget = MERGE_SLICE;
    for (; l->manifest_pos < l->n_manifests && budget; budget--) {
        struct manifest_meta *m = l->manifests[l->manifest_pos++];
        if (map_get(c->manifests, m->digest) || map_get(c->gone_manifests, m->digest) ||
            map_put(c->manifests, m->digest, m) == MAP_NOMEM)
            free(m);
    }
    for (; l->tag_pos < l->n_tags && budget; budget--) {
        struct staged_tag *s = &l->tags[l->tag_pos++];
        int keep = !map_get(c->tags, s->key) && !map_get(c->gone_tags, s->key) &&
                   !map_get(c->gone_manifests, s->t->digest);
        struct repo_entry *r = NULL;
        if (keep && !(r = map_get(c->repos, s->repo_key)) && (r = calloc(1, sizeof(*r))) &&
            map_put(c->repos, s->repo_key, r) == MAP_NOMEM) {
            free(r);
            r = NULL;
        }
        if (keep && r && map_put(c->tags, s->key, s->t) != MAP_NOMEM) {
            r->tags++;
        } else {
            free(s->t);
        }
        free(s->key);
        free(s->repo_key);
    }
    if (l->manifest_pos == l->n_manifests && l->tag_pos == l->n_tags)
        load_finished(l);
}

static void load_done(uv_work_t *w, int status)
{
    struct index_load *l = w->data;
    if (status && !l->rc)
        l->rc = status;
    if (l->stopped || l->rc) {
        l->tag_pos = l->manifest_pos = 0;
        if (l->stopped) {
            load_free(l);
            return;
        }
        load_finished(l);
        return;
    }
    uv_idle_init(l->c->loop, &l->idle);
    l->idle.data = l;
    l->idle_open = 1;
    uv_idle_start(&l->idle, merge_slice);
}

int index_load_background(struct cache *c, void (*done)(struct cache *c))
{
    struct index_load *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    if (!(c->gone_tags = map_new()) || !(c->gone_manifests = map_new())) {
        map_free(c->gone_tags);
        c->gone_tags = NULL;
        free(l);
        return -ENOMEM;
    }
    l->c = c;
    l->done = done;
    l->t0 = clock_mono_us();
    l->work.data = l;
    int r = uv_queue_work(c->loop, &l->work, load_work, load_done);
    if (r) {
        map_free(c->gone_tags);
        map_free(c->gone_manifests);
        c->gone_tags = c->gone_manifests = NULL;
        free(l);
        return -ENOMEM;
    }
    c->loading = l;
    return 0;
}

int index_loading(const struct cache *c)
{
    return c->loading != NULL;
}

void index_load_stop(struct cache *c)
{
    struct index_load *l = c->loading;
    if (!l)
        return;
    c->loading = NULL;
    map_free(c->gone_tags);
    map_free(c->gone_manifests);
    c->gone_tags = c->gone_manifests = NULL;
    if (l->idle_open) {
        uv_idle_stop(&l->idle);
        uv_close((uv_handle_t *)&l->idle, idle_closed);
    } else {
        l->stopped = 1; /* load_done frees it */
    }
}

struct tag_sweep {
    struct map *evicted;
    char **keys;
    size_t n, cap;
};

static int find_stale_tag(const char *key, void *value, void *ud)
{
    struct tag_sweep *sw = ud;
    struct tag_entry *t = value;
    if (!map_get(sw->evicted, t->digest))
        return 0;
    if (sw->n == sw->cap) {
        size_t cap = sw->cap ? sw->cap * 2 : 16;
        char **k = realloc(sw->keys, cap * sizeof(*k));
        if (!k)
            return 1;
        sw->keys = k;
        sw->cap = cap;
    }
    sw->keys[sw->n] = strdup(key);
    if (sw->keys[sw->n])
        sw->n++;
    return 0;
}

/* Forgets what points at digests in the maps from first on (0: tags and negotiated answers,
 * 1: negotiated answers only). */
static void forget_pointing(struct cache *c, char *const *digests, size_t n, int first)
{
    if (!n)
        return;
    struct tag_sweep sw = {map_new(), NULL, 0, 0};
    if (!sw.evicted)
        return;
    for (size_t i = 0; i < n; i++)
        map_put(sw.evicted, digests[i], (void *)1);
    struct map *maps[2] = {c->tags, c->negotiated};
    for (int m = first; m < 2; m++) {
        if (!map_count(maps[m]))
            continue;
        sw.n = 0;
        map_each(maps[m], find_stale_tag, &sw);
        for (size_t i = 0; i < sw.n; i++) {
            struct tag_entry *t = map_del(maps[m], sw.keys[i]);
            content_epoch_bump(); /* what workers kept of it goes */
            if (m == 0)
                note_gone(c->gone_tags, sw.keys[i]);
            if (t)
                repo_untag(c, sw.keys[i]);
            free(t);
            free(sw.keys[i]);
        }
    }
    free(sw.keys);
    map_free(sw.evicted);
}

void index_forget_digests(struct cache *c, char *const *digests, size_t n)
{
    for (size_t i = 0; i < n; i++)
        index_drop_manifest(c, digests[i]);
    forget_pointing(c, digests, n, 0);
}

void index_forget_evicted(struct cache *c, char *const *digests, size_t n,
                          char *const *tag_keys, size_t n_tag_keys)
{
    for (size_t i = 0; i < n; i++)
        index_drop_manifest(c, digests[i]);
    for (size_t i = 0; i < n_tag_keys; i++) {
        note_gone(c->gone_tags, tag_keys[i]);
        struct tag_entry *t = map_del(c->tags, tag_keys[i]);
        content_epoch_bump(); /* what workers kept of it goes */
        if (t)
            repo_untag(c, tag_keys[i]);
        free(t);
    }
    forget_pointing(c, digests, n, 1); /* negotiated answers live in memory only */
}

struct prefix_sweep {
    const char *prefix;
    size_t len;
    char **keys;
    size_t n, cap;
};

static int find_prefixed(const char *key, void *value, void *ud)
{
    (void)value;
    struct prefix_sweep *sw = ud;
    if (strncmp(key, sw->prefix, sw->len) != 0)
        return 0;
    if (sw->n == sw->cap) {
        size_t cap = sw->cap ? sw->cap * 2 : 8;
        char **k = realloc(sw->keys, cap * sizeof(*k));
        if (!k)
            return 1;
        sw->keys = k;
        sw->cap = cap;
    }
    if ((sw->keys[sw->n] = strdup(key)))
        sw->n++;
    return 0;
}

void index_purge_tag(struct cache *c, const char *key)
{
    note_gone(c->gone_tags, key);
    struct tag_entry *t = map_del(c->tags, key);
    content_epoch_bump(); /* what workers kept of it goes */
    if (t)
        repo_untag(c, key);
    free(t);
    char prefix[TAG_KEY_MAX];
    snprintf(prefix, sizeof(prefix), "%s" KEY_SEP, key);
    struct prefix_sweep sw = {prefix, strlen(prefix), NULL, 0, 0};
    map_each(c->negotiated, find_prefixed, &sw);
    for (size_t i = 0; i < sw.n; i++) {
        content_epoch_bump();
        if ((t = map_del(c->negotiated, sw.keys[i])))
            repo_untag(c, sw.keys[i]);
        free(t);
        free(sw.keys[i]);
    }
    free(sw.keys);
}

static int free_value(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    free(value);
    return 0;
}

static int free_manifest(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    struct manifest_meta *m = value;
    free(m->bytes);
    free(m);
    return 0;
}

int index_init(struct cache *c)
{
    c->tags = map_new();
    c->negotiated = map_new();
    c->manifests = map_new();
    c->repos = map_new();
    return c->tags && c->negotiated && c->manifests && c->repos ? 0 : -ENOMEM;
}

void index_free(struct cache *c)
{
    struct map *values[3] = {c->tags, c->negotiated, c->repos};
    for (int i = 0; i < 3; i++)
        if (values[i])
            map_each(values[i], free_value, NULL);
    if (c->manifests)
        map_each(c->manifests, free_manifest, NULL);
    map_free(c->tags);
    map_free(c->negotiated);
    map_free(c->manifests);
    map_free(c->repos);
    c->tags = c->negotiated = c->manifests = c->repos = NULL;
}
