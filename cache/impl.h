/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the cache's parts: the wiring (cache.c), the in-memory index (index.c),
 * errors (errors.c), manifests (manifests.c), blobs (blobs.c), tags and the catalog (tags.c),
 * upstream health (health.c), the lifecycle (lifecycle.c). Names used across files but not
 * outside cache/ carry the cache__ prefix or their part's name. */
#ifndef REGCACHE_CACHE_IMPL_H
#define REGCACHE_CACHE_IMPL_H

#include "cache/cache.h"
#include "cache/fd_lru.h"
#include "upstream/upstream.h"
#include "util/buf.h"
#include "util/map.h"

#define MEDIA_TYPE_MAX 256
#define DIGEST_MAX 80
#define MANIFEST_MEMORY_BUDGET (64u << 20) /* manifest bytes kept in memory for hits */
#define FILL_BUFFER_MAX (1u << 20)         /* per fill: bytes received, not yet on disk */
#define TAGS_BODY_MAX (8u << 20)

/* The manifest media types the mirror accepts from an upstream and serves (OCI 1.1 artifacts
 * are image manifests with an artifactType). */
#define MEDIA_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MEDIA_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MEDIA_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MEDIA_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define N_MANIFEST_TYPES 4

/* Every manifest media type a tag may resolve to; sent upstream so the upstream's choice does
 * not depend on which client asked first. */
#define ALL_MANIFEST_TYPES                                                                     \
    MEDIA_OCI_INDEX ", " MEDIA_DOCKER_LIST ", " MEDIA_OCI_MANIFEST ", " MEDIA_DOCKER_MANIFEST

struct tag_entry {
    char digest[DIGEST_MAX];
    char media_type[MEDIA_TYPE_MAX];
    uint64_t validated_ms;
    uint64_t head_size; /* the manifest's size as a HEAD upstream gave it ... */
    int head_size_known; /* ... when it is not in the store (reset by every index_set_tag) */
    /* an Accept class's answer ("tag" KEY_SEP class): the digest the tag itself (asked with
     * every manifest type) had when this answer was validated, "" when unknown (reset by every
     * index_set_tag). While the tag itself still has it, the answer still holds. */
    char basis[DIGEST_MAX];
    /* when its record was last queued for the S3 tier with this digest (0: not since the
     * start, or since the tag moved); l2_share_tag rewrites it at most every L2_TAG_SHARE_MS */
    uint64_t shared_ms;
};

struct manifest_meta {
    char media_type[MEDIA_TYPE_MAX];
    uint64_t size;
    char *bytes; /* in memory when non-NULL; on the memory LRU list */
    struct manifest_meta *lru_prev, *lru_next;
    char digest[DIGEST_MAX];
};

struct cache {
    uv_loop_t *loop;
    const struct config *cfg;
    struct store *store;
    struct db *db;
    struct upstream_client *up;
    struct map *tags;      /* tag_key -> struct tag_entry */
    struct map *negotiated; /* tag_key of "tag" KEY_SEP Accept class -> struct tag_entry */
    struct map *manifests; /* digest -> struct manifest_meta */
    struct map *repos;     /* "upstream\x1frepo" -> its tag count (index.c) */
    /* while the index loads in the background (index.c): a miss in memory asks the database,
     * and what is forgotten meanwhile is not brought back by the load */
    struct index_load *loading;
    struct map *gone_tags, *gone_manifests;
    struct manifest_meta *lru_head, *lru_tail;
    size_t mem_bytes;
    struct map *manifest_flights; /* flight key -> struct manifest_flight */
    struct map *fills;            /* upstream KEY_SEP digest -> struct blob_fill */
    struct map *blob_heads;       /* upstream KEY_SEP repo KEY_SEP digest -> HEADs (blobs.c) */
    struct tags_req *tags_reqs;   /* tags lists asked upstream (tags.c) */
    struct map *referrers;         /* upstream KEY_SEP repo KEY_SEP subject -> entry */
    struct map *referrers_flights; /* the same key -> struct referrers_flight */
    uint64_t hits, misses; /* since start, for operators */
    /* upstream health (health.c) */
    struct map *ratelimits; /* upstream name -> struct ratelimit_seen */
    struct map *negative;   /* what an upstream said lately it lacks -> uint64_t until (ms) */
    struct health *health;  /* one per upstream, in configuration order */
    size_t n_health;
    uv_timer_t health_timer;
    int health_timer_on;
    struct fd_lru *open_files; /* descriptors of blobs served lately (open_files.c) */
    struct map *known; /* with pull rules: upstream KEY_SEP repo KEY_SEP digest (known.c) */
    struct confirm *confirms; /* HEADs asked through a repository, in flight (known.c) */
    uv_timer_t open_files_timer;
    int open_files_timer_on;
    /* lifecycle (lifecycle.c) */
    uint64_t stored_bytes; /* what the store holds, as the index knows it */
    uint64_t stored_files; /* files in the store (blobs and manifests), likewise */
    struct cache_stored_mark stored_added; /* what cache_stored added since the start */
    uint64_t bytes_since_gc; /* stored since the last GC started (upstreams' own caps) */
    int unverified; /* cache_set_unverified; read on the thread pool (__atomic) */
    uv_timer_t gc_timer;
    int timer_started, gc_running, gc_again, stopping;
    /* the purge journal (purge_watch.c): applied up to this row */
    int64_t purge_applied;
    uv_timer_t purge_timer;
    int purge_timer_on, purge_polling;
    struct pins *pins; /* pin and prefetch references: never evicted (pins.h) */
    struct l2 *l2;     /* the S3 tier (l2.c); NULL without an s3 section */
    struct cluster *cluster; /* NULL: not in a cluster */
    /* set while a member's request is being taken in (cache_*_direct): what it starts asks
     * the upstream itself */
    int direct_now;
};

/* A file of bytes was added to the store: runs a GC when the cap or the free floor is crossed. */
void cache_stored(struct cache *c, uint64_t bytes);
void cache_stop_lifecycle(struct cache *c);

/* ---- the S3 tier (l2.c) ---- */
#include "s3/client.h"
int l2_start(struct cache *c);
void l2_stop(struct cache *c);
int l2_enabled(const struct cache *c);
/* A GET of the blob's object; NULL when there is no tier (or it could not be asked). */
struct s3_op *l2_get(struct cache *c, const char *digest, s3_data_fn on_data, s3_done_fn done,
                     void *ud);
/* A HEAD of the blob's object; NULL when there is no tier (or it could not be asked). */
struct s3_op *l2_head(struct cache *c, const char *digest, s3_done_fn done, void *ud);
/* The blob is in the local store now (fetched upstream, pushed): write it behind into the
 * bucket (recorded in the index until it is there). */
void l2_commit(struct cache *c, const char *digest);
/* Manifests and tags in the bucket (l2.c, l2_records.c). The owner of what it fetched from the
 * upstream writes it behind: the manifest under its digest, and the tag's record. */
#define L2_TAG_SHARE_MS (3600ULL * 1000) /* a tag confirmed unchanged: its record at most this often */
struct l2_tag_record {
    char digest[DIGEST_MAX];
    char media_type[MEDIA_TYPE_MAX];
    uint64_t confirmed_ms;
};
/* manifests/sha256/<2>/<64>; -EINVAL for a digest that is not sha256. */
int l2_manifest_key(const char *digest, char *out, size_t len);
/* tags/<upstream>/<repo>/<tag>; -EINVAL for a name a key cannot carry as it is. */
int l2_tag_key(const char *upstream, const char *repo, const char *tag, char *out, size_t len);
int l2_tag_record_format(struct buf *b, const char *upstream, const char *repo,
                         const char *tag, const char *digest, const char *media_type,
                         uint64_t confirmed_ms);
/* 0, or -EINVAL (why filled) for a record that is not JSON, names another tag, or lacks a
 * sha256 digest, a manifest media type or its time. */
int l2_tag_record_parse(const char *body, size_t len, const char *upstream, const char *repo,
                        const char *tag, struct l2_tag_record *out, char *why, size_t whylen);
/* The manifest (stored locally and indexed) is written behind under its digest. */
void l2_commit_manifest(struct cache *c, const char *digest);
/* The tag (indexed, not a negotiated answer) was set or confirmed from the upstream: its
 * record is written behind when it moved, or was not written within L2_TAG_SHARE_MS. */
void l2_share_tag(struct cache *c, const struct upstream *u, const char *repo, const char *tag);
/* The tag (its tag_key) was purged: its record is deleted from the bucket (queued and kept in
 * the index like a write), so that no replica serves it from there again. */
void l2_forget_tag(struct cache *c, const char *key);
/* GETs of a manifest's object and of a tag's record; NULL without a tier (or a key). */
struct s3_op *l2_get_manifest(struct cache *c, const char *digest, s3_data_fn on_data,
                              s3_done_fn done, void *ud);
struct s3_op *l2_get_tag(struct cache *c, const struct upstream *u, const char *repo,
                         const char *tag, s3_data_fn on_data, s3_done_fn done, void *ud);
/* The janitor of abandoned multipart uploads (l2_janitor.c); NULL when out of memory. */
struct l2_janitor;
struct l2_janitor *l2_janitor_start(struct cache *c, struct s3_client *s3);
void l2_janitor_stop(struct l2_janitor *j);
/* Access markers and holds (l2_access.c): NULL when out of memory. */
struct l2_access;
struct l2_access *l2_access_new(uv_loop_t *loop, struct s3_client *s3, uint64_t interval_ms);
/* digest was served: its marker is written unless it was within the interval (or the interval
 * is 0: no markers). */
void l2_access_note(struct l2_access *a, const char *digest);
void l2_access_free(struct l2_access *a);
/* access/sha256/<2>/<64>; 0 or -EINVAL (not sha256) */
int l2_marker_key(const char *digest, char *out, size_t len);
/* The bucket GC's lease (l2_lease.c) and the bucket GC (l2_gc.c). */
struct l2_lease;
struct l2_lease *l2_lease_start(struct cache *c, struct s3_client *s3);
int l2_lease_held(struct l2_lease *l);
void l2_lease_stop(struct l2_lease *l);
struct l2_gc;
struct l2_gc *l2_gc_start(struct cache *c, struct s3_client *s3, struct l2_lease *lease);
void l2_gc_stop(struct l2_gc *g);
/* The roots of what the pin and prefetch lists pin, from the tags in memory (lifecycle.c);
 * *out NULL when nothing is pinned. 0 or -ENOMEM. */
struct pin_set;
int cache__pin_roots(struct cache *c, struct pin_set **out);

/* ---- the index (index.c): a leaf, loop thread only ---- */
#define KEY_SEP "\x1f"
#define TAG_KEY_MAX 800 /* upstream KEY_SEP repository KEY_SEP tag */
void tag_key(char *out, size_t len, const struct upstream *u, const char *repo, const char *tag);

int index_init(struct cache *c);
/* Reads the database's tags and manifests into memory (at start). */
int index_load(struct cache *c);
void index_free(struct cache *c);

struct tag_entry *index_tag(struct cache *c, const struct upstream *u, const char *repo,
                            const char *tag);
/* A tag name holding KEY_SEP ("tag" KEY_SEP class) is the answer negotiated for one Accept
 * class: kept in memory only, never listed or persisted. A repository holds at most
 * cache.max_tags_per_repository of them and tags together; the least recently validated goes.
 * Points a tag at a digest the upstream named (never at strings of the entry itself: a tag
 * whose digest is confirmed is refreshed with index_tag_validated). persist: also queue the
 * change for the database (only once the manifest is in the store). */
void index_set_tag(struct cache *c, const struct upstream *u, const char *repo, const char *tag,
                   const char *digest, const char *media_type, uint64_t validated_ms,
                   int persist);
/* The upstream confirmed the tag's digest at validated_ms: only the time changes, in memory
 * and in the database. -ENOENT when the tag is not indexed. */
int index_tag_validated(struct cache *c, const struct upstream *u, const char *repo,
                        const char *tag, uint64_t validated_ms);
void index_forget_tag(struct cache *c, const struct upstream *u, const char *repo,
                      const char *tag);
struct manifest_meta *index_manifest(struct cache *c, const char *digest);
/* The canonical spelling of media_type (parameters aside, any case) when it is one of the
 * manifest media types the mirror serves; NULL otherwise. */
const char *index_manifest_type(const char *media_type);
struct manifest_meta *index_add_manifest(struct cache *c, const char *digest,
                                         const char *media_type, uint64_t size, int persist);
/* Keeps bytes (copied) in memory for later hits, within MANIFEST_MEMORY_BUDGET. */
void index_remember_bytes(struct cache *c, struct manifest_meta *m, const char *bytes);
void index_touch_bytes(struct cache *c, struct manifest_meta *m);
void index_drop_manifest(struct cache *c, const char *digest);
/* Forgets manifests a GC evicted and the tags that pointed at them. */
void index_forget_digests(struct cache *c, char *const *digests, size_t n);
/* Loads the tags and manifests on the thread pool (a connection of its own), then merges them
 * in on the loop a slice per turn; until then misses ask the database. done (may be NULL) runs
 * on the loop once everything is in. */
int index_load_background(struct cache *c, void (*done)(struct cache *c));
/* 1 while index_load_background has not finished. */
int index_loading(const struct cache *c);
/* At shutdown: stops merging (a load still on the thread pool finishes on its own). */
void index_load_stop(struct cache *c);
/* Thread pool, while c->unverified: 1 when the stored file of digest has no row in the index
 * and does not match its name (it is removed then). */
int cache_unknown_file_bad(struct cache *c, const char *digest);
/* The same when the tags that pointed at digests are known (tag_keys, from the GC): no walk of
 * the tags, only of the negotiated answers (in memory only, and few). */
void index_forget_evicted(struct cache *c, char *const *digests, size_t n,
                          char *const *tag_keys, size_t n_tag_keys);
/* Forgets, in memory only, the tag of key (upstream KEY_SEP repo KEY_SEP tag) and the answers
 * negotiated for it (a purge another process wrote to the database). */
void index_purge_tag(struct cache *c, const char *key);

/* ---- the purge journal (purge_watch.c) ---- */
/* Notes where the journal ends (before index_load); start reads it every DB_PURGE_POLL_MS. */
void purge_watch_init(struct cache *c);
void purge_watch_start(struct cache *c);
void purge_watch_stop(struct cache *c);

/* Maps an upstream answer that is not a success onto what the client is told. */
void cache__error_from_upstream(struct cache_error *e, const struct upstream *u,
                         const struct upstream_response *resp, const char *unknown_code);
void cache__error_set(struct cache_error *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- upstream health (health.c) ---- */
struct health;
int health_init(struct cache *c);
/* Cancels the probes and closes the timer (at shutdown). */
void health_stop(struct cache *c);
void health_free(struct cache *c);
/* Down: cached tags and tags lists are answered from the cache without asking it. */
int health_is_down(struct cache *c, const struct upstream *u);
/* It failed to answer in time (or at all): down, if it was not already. */
void health_failed(struct cache *c, struct upstream *u, const char *reason);
/* A request has not been answered within cache.revalidate_timeout (what was cached is served
 * meanwhile): down, unless another of its endpoints is up, to which the request may still fail
 * over (it is down once every endpoint gave no answer). */
void health_overdue(struct cache *c, struct upstream *u, const char *reason);
/* It answered: up, if it was down. */
void health_answered(struct cache *c, struct upstream *u);
/* 1 (and *e: 429 TOOMANYREQUESTS with the seconds left as Retry-After) while the Retry-After of
 * the upstream's last 429 has not passed: ask it nothing, serve what is cached. */
int health_backoff(struct cache *c, const struct upstream *u, struct cache_error *e);
/* The upstream said it lacks ref (kind "manifest" or "blob") in repo: remembered for
 * cache.negative_ttl. */
void health_note_missing(struct cache *c, const struct upstream *u, const char *kind,
                         const char *repo, const char *ref);
int health_known_missing(struct cache *c, const struct upstream *u, const char *kind,
                         const char *repo, const char *ref);

/* ---- where a blob fill asks (sources.c) ----
 * The order: blob sources with order before, the primary, those with order after. */
/* The next upstream to ask from position *step on (advanced past it), skipping blob sources
 * that are down; NULL past the end. */
struct upstream *sources_next(struct upstream *primary, int *step);
/* 1 when the order goes on from position step. */
int sources_left(struct upstream *primary, int step);
/* What blob source src did for digest (outcome: an enum metrics_source_outcome): counted,
 * and logged with detail (the status or error; for wrong bytes, the digest they hashed to). */
void sources_report(struct upstream *primary, struct upstream *src, const char *digest, int outcome,
                    const char *detail);

void manifests_free_all(struct cache *c);

/* ---- what repositories reference, with pull rules on (known.c) ---- */
int known_init(struct cache *c);
void known_free(struct cache *c);
/* Cancels the HEADs in flight (at shutdown): each is answered 503, which frees its client's
 * state (the connections are closed by then). */
void known_stop(struct cache *c);
void known_note(struct cache *c, const struct upstream *u, const char *repo, const char *digest);
void tags_free_all(struct cache *c);

/* ---- referrers of proxied manifests (referrers.c) ---- */
int referrers_init(struct cache *c); /* also loads them from the database */
void referrers_stop(struct cache *c);
void referrers_free(struct cache *c);
/* Forgets the referrers of manifests a GC evicted. */
void referrers_forget_subjects(struct cache *c, char *const *digests, size_t n);
void blobs_free_all(struct cache *c);
/* Cancels blob HEADs in flight and forgets their answers (at shutdown). */
void blobs_free_heads(struct cache *c);

/* Descriptors of blobs served lately (open_files.c), so that a hit skips the open() on the
 * thread pool. */
#define OPEN_FILES_MAX 65536 /* the most kept, however high the descriptor limit */
#define OPEN_FILE_TTL_MS 10000
/* How many descriptors to keep under a soft RLIMIT_NOFILE of soft_limit (open_files.c). */
size_t open_files_capacity(uint64_t soft_limit);
int open_files_init(struct cache *c);
/* Starts closing descriptors kept too long (once the cache is up). */
void open_files_start(struct cache *c);
/* Closes every kept descriptor; stops the timer (its handle closes with the next loop run). */
void open_files_stop(struct cache *c);
/* 1 and the blob's size when a descriptor is kept; with fd, *fd is a new descriptor for the
 * caller to close. 0 when none is kept (or none can be made): open the file from the store. */
int open_files_get(struct cache *c, const char *digest, uint64_t *size, struct held_fd **file);
/* Keeps a duplicate of fd, the store's file for digest. */
void open_files_put(struct cache *c, const char *digest, struct held_fd *file, uint64_t size);
void open_files_forget(struct cache *c, const char *digest);

#endif
