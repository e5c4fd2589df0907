/* SPDX-License-Identifier: Apache-2.0 */
/* Pull-through policy: what is served from the store, what is asked upstream, and how
 * concurrent requests for the same thing share one upstream request.
 *
 * - Only manifest media types with a matching JSON body are accepted from an upstream and
 *   served (cache_check_manifest); anything else is 502 MANIFEST_INVALID, not stored.
 * - Manifest by digest: immutable; a miss costs one upstream GET, shared within one upstream.
 * - Manifest by tag: trusted for revalidate_after, then one HEAD upstream shared by everyone
 *   asking; a new digest is fetched with GET; upstream unreachable, 5xx, 429 or timed out:
 *   the cached manifest is served (stale on error). Answers are cached per Accept class.
 * - Blob miss: one upstream GET per digest and upstream, streamed into the store while every
 *   waiting client reads the same temporary file as it grows.
 * - A flight's 404/401 through one repository sends the waiters of other repositories through
 *   their own. 404s are remembered for cache.negative_ttl; a 429's Retry-After stops asking
 *   that upstream until it passes (health.c).
 *
 * Every request function calls its callback exactly once, possibly before returning. */
#ifndef REGCACHE_CACHE_CACHE_H
#define REGCACHE_CACHE_CACHE_H

#include "util/held_fd.h"
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "http/http.h"
#include "util/buf.h"

struct cache;
struct store;
struct db;
struct upstream;
struct upstream_client;
struct blob_fill;
struct shared_body;

enum cache_outcome { OUTCOME_NONE = 0, OUTCOME_HIT, OUTCOME_MISS, OUTCOME_FILL, OUTCOME_STALE };
const char *cache_outcome_name(enum cache_outcome o);

/* A refusal to pass on to the client: HTTP status, spec error code, message. */
struct cache_error {
    int status;
    const char *code;
    char message[256];
    char retry_after[32];
};

struct manifest_answer {
    struct cache_error err; /* err.status == 0 on success */
    enum cache_outcome outcome;
    const char *digest;
    const char *media_type;
    const char *body; /* the manifest bytes, valid during the callback */
    size_t size;
};
typedef void (*manifest_cb)(void *ud, const struct manifest_answer *a);

/* Whether body is a manifest the mirror accepts and serves (the check every upstream answer
 * passes, see manifests.c): content_type is what came with it (NULL or "" when nothing did:
 * the body's mediaType tells, else its shape). 0 with the canonical media type in *type (a
 * static string), or -EINVAL and why in why. Pure: any thread. */
int cache_check_manifest(const char *content_type, const char *body, size_t len,
                         const char **type, char *why, size_t whylen);

struct blob_answer {
    struct cache_error err;
    enum cache_outcome outcome;
    uint64_t size;
    struct held_fd *file;    /* a complete stored blob: a reference the receiver now owns */
    struct blob_fill *fill;  /* non-NULL: a fill in progress; see cache_fill_source */
    const char *upstream_digest; /* HEAD of an uncached blob: what the upstream said */
};
typedef void (*blob_cb)(void *ud, const struct blob_answer *a);

struct tags_answer {
    struct cache_error err;
    enum cache_outcome outcome;
    /* on success: the body, shared by every client answered with the same bytes (take a
     * reference to keep it past the callback); body and len are its bytes */
    struct shared_body *shared;
    const char *body;
    size_t len;
    const char *link; /* upstream pagination, NULL when none */
};
typedef void (*tags_cb)(void *ud, const struct tags_answer *a);

struct referrers_answer {
    struct cache_error err;
    enum cache_outcome outcome;
    const char *body; /* an image index (application/vnd.oci.image.index.v1+json) */
    size_t len;
    int filtered; /* an artifactType filter was applied: OCI-Filters-Applied: artifactType */
};
typedef void (*referrers_cb)(void *ud, const struct referrers_answer *a);

int cache_new(uv_loop_t *loop, const struct config *cfg, struct store *store, struct db *db,
              struct upstream_client *up, struct cache **out);
/* Starts the lifecycle: a first GC shortly after start, then every cache.gc_interval.
 * stored_bytes: what the store holds now. */
void cache_start(struct cache *c, uint64_t stored_bytes);
/* The number of files the store holds now (at start, from the reconciliation): the figure
 * then moves with every file stored and every GC run. */
void cache_count_files(struct cache *c, uint64_t files);
/* What cache_stored added so far: taken when a database call that reads the index's totals is
 * queued. The database runs its calls in order, so the totals it reads hold every file stored
 * before the mark and none stored after it. */
struct cache_stored_mark {
    uint64_t files, bytes;
};
void cache_stored_mark(const struct cache *c, struct cache_stored_mark *out);
/* Both figures at once, as a database call read them (once the background walk of the store
 * brought the index in line); what was stored since the mark is added. */
void cache_set_stored(struct cache *c, uint64_t bytes, uint64_t files,
                      const struct cache_stored_mark *since);
/* While on (the walk of the store after an unclean stop), a stored file the index has no row
 * for is re-hashed before it is served, and removed (a miss) when it does not match its
 * name. */
void cache_set_unverified(struct cache *c, int on);
/* Runs a GC now (reason for the log: "scheduled", "size", "manual"); when one is running, one
 * more follows it. */
void cache_gc(struct cache *c, const char *reason);

/* Drops every upstream request in flight (at shutdown; waiters are not answered). */
void cache_shutdown(struct cache *c);
/* Frees the cache once the loop has finished its work. */
void cache_free(struct cache *c);

/* accept: the client's Accept list (NULL when none). head: the client asked HEAD; a tag not
 * cached may then be answered from a HEAD upstream, with body NULL. */
void cache_manifest(struct cache *c, struct upstream *u, const char *repo, const char *reference,
                    const char *accept, int head, manifest_cb cb, void *ud);

/* head: answer with the size without downloading a cold blob. */
void cache_blob(struct cache *c, struct upstream *u, const char *repo, const char *digest,
                int head, blob_cb cb, void *ud);

/* ---- in a cluster (cluster/cluster.h) ----
 * A miss is asked of the key's owner among the members rather than the upstream. The _direct
 * forms answer a member's request: a miss goes to the upstream itself (never to another
 * member), and such a request joins no flight that is waiting for a member. */
struct cluster;
void cache_set_cluster(struct cache *c, struct cluster *cl);
void cache_manifest_direct(struct cache *c, struct upstream *u, const char *repo,
                           const char *reference, const char *accept, int head, manifest_cb cb,
                           void *ud);
void cache_blob_direct(struct cache *c, struct upstream *u, const char *repo,
                       const char *digest, int head, blob_cb cb, void *ud);

/* Turns a fill from a blob_answer into a response body for bytes [first, end): wake is called
 * whenever more bytes become readable. Takes over the answer's reference to the fill. */
void cache_fill_source(struct blob_fill *f, uint64_t first, uint64_t end, void (*wake)(void *),
                       void *wake_ud, struct body_source *src);
/* Drops an answer's reference to a fill that will not be read. */
void cache_fill_release(struct blob_fill *f);

/* A manifest or blob was served (GET or HEAD): its last access becomes now, the repository is
 * recorded as referencing it, and the hit/miss counters move. */
void cache_note_access(struct cache *c, struct upstream *u, const char *repo, const char *digest,
                       enum cache_outcome outcome);
/* n more hits served from the store (what worker loops served beyond the one access each of
 * their batches records per digest). */
void cache_count_hits(struct cache *c, uint64_t n);
/* A blob was served (to a client or a member): with the S3 tier, its access marker is
 * written in the bucket, at most once per s3.access_interval. */
void cache_blob_served(struct cache *c, const char *digest);
/* Descriptors of blobs served lately (hosted repositories share them): the kept one of digest,
 * a reference of the caller's own in *file (file NULL: only its size), 1 when one was kept; and
 * keeping one (a reference of the cache's own: the caller keeps its own). A blob the GC or a
 * purge removes is forgotten at once (closed once the responses sending it are done). */
int cache_hot_file(struct cache *c, const char *digest, uint64_t *size, struct held_fd **file);
void cache_keep_file(struct cache *c, const char *digest, struct held_fd *file, uint64_t size);

/* With pull rules on: whether repo is known to reference digest (served under it, listed by a
 * manifest served under it, or confirmed by its upstream); always 1 without rules. */
int cache_known(struct cache *c, const struct upstream *u, const char *repo, const char *digest);
/* A manifest was served under repo: what it lists (layers, config, manifests) is known to be
 * referenced by repo. */
void cache_note_manifest(struct cache *c, const struct upstream *u, const char *repo,
                         const char *body, size_t len);
/* Asks u, with HEAD through repo, whether repo has digest (a manifest or a blob); answers with
 * err.status 0 when it does (and repo is then known to reference it), else the upstream's
 * refusal (404 BLOB_UNKNOWN or MANIFEST_UNKNOWN). Never answers from the store. */
void cache_confirm(struct cache *c, struct upstream *u, const char *repo, int manifest,
                   const char *digest, blob_cb cb, void *ud);

/* One upstream request per (upstream, repository, query) at a time, whoever asks. */
void cache_tags(struct cache *c, struct upstream *u, const char *repo, const char *query,
                tags_cb cb, void *ud);

/* The referrers of subject (a digest) in repo: the upstream's referrers API, or its sha256-<hex>
 * tag when it has none; cached and revalidated like a tag. artifact_type (NULL or "": none)
 * filters the descriptors. */
void cache_referrers(struct cache *c, struct upstream *u, const char *repo, const char *subject,
                     const char *artifact_type, referrers_cb cb, void *ud);

/* What a caller that spends the pull budget on its own (prefetch) checks before it asks an
 * upstream anything: down (no request until its probe brings it back), backing off after a
 * 429, and the ratelimit-remaining it last announced (-1: none announced since start). */
struct cache_upstream_state {
    int down, backoff;
    int64_t remaining;
};
void cache_upstream_state(struct cache *c, const struct upstream *u,
                          struct cache_upstream_state *out);
/* Whether the store holds manifest digest. */
int cache_has_manifest(struct cache *c, const char *digest);
/* Whether tag (as named, not an Accept class of it) points to digest now, and when it was last
 * validated upstream (wall clock ms). */
int cache_tag_validated(struct cache *c, const struct upstream *u, const char *repo,
                        const char *tag, const char *digest, uint64_t *validated_ms);
/* Whether tag is cached with its manifest, and when it was last validated upstream. */
int cache_tag_cached(struct cache *c, const struct upstream *u, const char *repo,
                     const char *tag, uint64_t *validated_ms);

/* Calls fn with the name of every cached repository (in no order); names of repositories
 * cached from an upstream other than the first are prefixed with that upstream's name. fn's
 * non-zero return stops and is returned. */
int cache_catalog(struct cache *c, int (*fn)(void *ud, const char *name), void *ud);

/* Content now in the store that did not come through a fill (a hosted push): written behind
 * into the S3 tier's bucket when there is one, with a hold beside it that the bucket GC keeps.
 * c may be NULL. */
void cache_write_behind(struct cache *c, const char *digest);

#endif
