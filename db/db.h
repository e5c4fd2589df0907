/* SPDX-License-Identifier: Apache-2.0 */
/* The mirror's index in SQLite (WAL): which tags point at which manifests, each manifest's
 * media type, and the blobs the store holds.
 *
 * The event loop never runs a statement: changes are queued in memory and written in one
 * transaction on libuv's thread pool, one batch at a time. The index is read once, at start-up,
 * by db_load (the cache keeps it in memory). */
#ifndef REGCACHE_DB_DB_H
#define REGCACHE_DB_DB_H

#include <stdint.h>
#include <uv.h>

#define DB_FLUSH_MS 2000 /* access times and references are written this often */

struct db;
struct db_blob;

int db_open(const char *path, struct db **out);
/* The same without PRAGMA quick_check (a read of the whole file): the daemon opens so and runs
 * db_check_intact once it serves. */
int db_open_unchecked(const char *path, struct db **out);
/* PRAGMA quick_check on a read-only connection of its own: 0, or -EIO with the first problem
 * found in why. Reads the whole file; blocking (any thread). */
int db_check_intact(struct db *d, char *why, size_t len);
/* Writes what is still queued (synchronously) and closes. */
void db_close(struct db *d);
/* The same; returns how many changes could not be written (0: the index is complete). */
size_t db_close_lost(struct db *d);

struct db_tag_row {
    const char *upstream, *repo, *tag, *digest, *media_type;
    uint64_t validated_ms;
};
struct db_manifest_row {
    const char *digest, *media_type;
    uint64_t size;
};
int db_load(struct db *d, void (*tag)(void *ud, const struct db_tag_row *row),
            void (*manifest)(void *ud, const struct db_manifest_row *row), void *ud);
/* The same on a connection of its own, read-only (one snapshot), so that the daemon's loading
 * on the thread pool holds up neither the loop's queries nor the writes. */
int db_load_apart(struct db *d, void (*tag)(void *ud, const struct db_tag_row *row),
                  void (*manifest)(void *ud, const struct db_manifest_row *row), void *ud);
/* One tag or one manifest, to fn: 0, or -ENOENT when there is none (while the index loads). */
int db_get_tag(struct db *d, const char *upstream, const char *repo, const char *tag,
               void (*fn)(void *ud, const struct db_tag_row *row), void *ud);
int db_get_manifest(struct db *d, const char *digest,
                    void (*fn)(void *ud, const struct db_manifest_row *row), void *ud);

/* From here on changes are written asynchronously on loop's thread pool; access times,
 * references and counters are coalesced in memory and written every DB_FLUSH_MS. */
void db_attach(struct db *d, uv_loop_t *loop);
/* Writes what is coalesced and stops the flush timer (at shutdown, before the loop ends). */
void db_detach(struct db *d);
/* Whether the index takes writes: 0 when the last batch of changes that wrote anything was
 * committed (or none was written yet); -EIO when it failed (locked by another process, disk
 * full, read-only, I/O error), with a message naming the database in msg. Loop thread; no
 * statement runs. */
int db_write_status(const struct db *d, char *msg, size_t len);

void db_put_tag(struct db *d, const struct db_tag_row *row);
/* The upstream confirmed a tag's digest: only its validated_ms changes. */
void db_tag_validated(struct db *d, const char *upstream, const char *repo, const char *tag,
                      uint64_t validated_ms);
void db_del_tag(struct db *d, const char *upstream, const char *repo, const char *tag);
void db_put_manifest(struct db *d, const struct db_manifest_row *row);
/* A file now in the store (blob or manifest; media_type NULL for plain blobs). */
void db_put_blob(struct db *d, const char *digest, uint64_t size, const char *media_type,
                 uint64_t now_ms);
/* A GET or HEAD served for digest (coalesced: the latest time per digest is written). */
void db_touch(struct db *d, const char *digest, uint64_t now_ms);
/* Repository upstream/repo referenced digest (coalesced). */
void db_ref(struct db *d, const char *upstream, const char *repo, const char *digest);
/* Calls fn with every recorded reference (at start, before the loop runs). */
int db_load_refs(struct db *d,
                 void (*fn)(void *ud, const char *upstream, const char *repo, const char *digest),
                 void *ud);
/* A named counter for operators (hits, misses, started), written with the next flush. */
void db_set_counter(struct db *d, const char *name, uint64_t value);
/* A counter as the database holds it now (not what is queued): 0, or -ENOENT. */
int db_get_counter(struct db *d, const char *name, uint64_t *value);

/* The pull budget an upstream announced. Numbers are -1 and source NULL where unknown: they
 * keep what was recorded before. Coalesced: the latest per upstream is written. */
struct db_ratelimit {
    const char *upstream;
    int64_t limit, remaining, window_s;
    const char *source;
    uint64_t seen_ms;     /* when the response came */
    uint64_t last_429_ms; /* 0: not a 429 (and never one, when read back) */
};
void db_set_ratelimit(struct db *d, const struct db_ratelimit *rl);

/* The referrers of a proxied subject: the image index answered for it. */
struct db_referrers_row {
    const char *upstream, *repo, *subject, *document;
    uint64_t validated_ms;
};
void db_put_referrers(struct db *d, const struct db_referrers_row *row);
int db_load_referrers(struct db *d, void (*fn)(void *ud, const struct db_referrers_row *row),
                      void *ud);

/* An upstream's health changed: state "up" or "down" since since_ms (reason: why it is down,
 * NULL when up). */
void db_set_upstream_state(struct db *d, const char *upstream, const char *state,
                           uint64_t since_ms, const char *reason);
struct db_upstream_state {
    const char *upstream, *state, *reason; /* reason NULL when up */
    uint64_t since_ms;
};
int db_each_upstream_state(struct db *d,
                           int (*fn)(void *ud, const struct db_upstream_state *st), void *ud);


/* Hosted repositories: a tag set (digest) or deleted (digest NULL); content a repository
 * holds (held) or let go. Held content is never a GC candidate. */
void db_hosted_tag(struct db *d, const char *repo, const char *tag, const char *digest,
                   const char *media_type);
/* held: 1 held (media_type NULL keeps the type recorded: a manifest an index refers to stays
 * one), 0 let go, DB_HOSTED_PLAIN held as plain content (a deleted manifest's bytes). */
#define DB_HOSTED_PLAIN 2
void db_hosted_blob(struct db *d, const char *repo, const char *digest, const char *media_type,
                    int held);
/* Manifest references digest (recorded at manifest PUT). */
void db_hosted_ref(struct db *d, const char *manifest, const char *digest);

/* Hosted manifest digest of repo names subject (the referrers API); descriptor is its entry in
 * a referrers index (JSON). subject NULL: it is gone (the manifest was deleted). */
void db_hosted_referrer(struct db *d, const char *repo, const char *digest, const char *subject,
                        const char *artifact_type, const char *descriptor);

/* ---- maintenance (blocking) for hosted content ---- */
/* Hosted content no tag and no held manifest reaches any more, stored before cutoff_ms (a push
 * uploads its blobs before its manifest). *out is malloc'ed. */
int db_hosted_unreferenced(struct db *d, uint64_t cutoff_ms, struct db_blob **out, size_t *n);
/* Lets go of hosted content: afterwards it is ordinary cached content. */
int db_hosted_release(struct db *d, char *const *digests, size_t n);

int db_load_hosted(struct db *d,
                   void (*tag)(void *ud, const char *repo, const char *tag, const char *digest,
                               const char *media_type),
                   void (*blob)(void *ud, const char *repo, const char *digest,
                                const char *media_type),
                   void *ud);

int db_load_hosted_referrers(struct db *d,
                             void (*fn)(void *ud, const char *repo, const char *digest,
                                        const char *subject, const char *artifact_type,
                                        const char *descriptor),
                             void *ud);

/* Changes not yet written: queued, being written, kept while the database refuses them, and
 * coalesced until the next flush. Loop thread. */
size_t db_pending(const struct db *d);

/* Runs fn on the thread pool in turn with the queued writes (after the coalesced access times,
 * so it sees them), then done on the loop. fn may use the maintenance functions below. */
int db_call(struct db *d, void (*fn)(struct db *d, void *ud), void (*done)(void *ud), void *ud);

/* ---- maintenance: synchronous, for the GC (on the thread pool or in `regcache gc`) and the
 * admin commands. Each uses the connection of its own struct db. ---- */

struct db_blob {
    char digest[80];
    uint64_t size;
    uint64_t first_cached_ms, last_access_ms;
};

/* Every blob row (manifests included); *out is malloc'ed. */
int db_list_blobs(struct db *d, struct db_blob **out, size_t *n);
/* Forgets digests in one transaction: their blob and manifest rows, repository references, and
 * the tags pointing at them (counted into *tags_forgotten). */
int db_forget_blobs(struct db *d, char *const *digests, size_t n, size_t *tags_forgotten);
/* How many blob rows there are and their bytes (kept by triggers: no row is read). */
int db_blob_totals(struct db *d, uint64_t *files, uint64_t *bytes);
/* The same for the blobs that hosted repositories hold (never evicted). */
int db_hosted_totals(struct db *d, uint64_t *files, uint64_t *bytes);
/* Blob rows that are not hosted content, least recently used first, after the position
 * (*last_access_ms, *rowid) (0, 0: from the start), at most limit of them, through the
 * index on last access; each to fn (nonzero stops). The position is moved past what was read.
 * Returns how many rows were read, or a negative errno. */
struct db_lru_row {
    const char *digest;
    uint64_t size, last_access_ms;
};
int db_each_lru(struct db *d, uint64_t *last_access_ms, int64_t *rowid, size_t limit,
                int (*fn)(void *ud, const struct db_lru_row *row), void *ud);
/* The tags (upstream KEY_SEP repo KEY_SEP tag, with sep between) that point at digest, each to
 * fn. */
int db_each_tag_of(struct db *d, const char *digest, char sep,
                   int (*fn)(void *ud, const char *key), void *ud);
/* Every blob row's digest, to fn (nonzero stops and is returned). */
int db_each_blob_digest(struct db *d, int (*fn)(void *ud, const char *digest), void *ud);
/* db_adopt_blob for n files, in transactions of DB_FORGET_BATCH. */
int db_adopt_blobs(struct db *d, char *const *digests, const uint64_t *sizes, size_t n,
                   uint64_t now_ms);
/* Records a file found in the store without a row (after it verified). */
int db_adopt_blob(struct db *d, const char *digest, uint64_t size, uint64_t now_ms);

struct db_gc_run {
    uint64_t started_ms, duration_ms;
    int dry_run;
    uint64_t evicted_count, evicted_bytes;
    char reason[32];
};
int db_add_gc_run(struct db *d, const struct db_gc_run *run);
/* The most recent runs first; returns how many were written into out. */
int db_gc_runs(struct db *d, struct db_gc_run *out, size_t max);

struct db_stats {
    uint64_t blobs, blob_bytes, manifests, tags, repositories;
    uint64_t oldest_access_ms; /* 0 when empty */
    uint64_t hits, misses, started_ms;
};
int db_stats(struct db *d, struct db_stats *out);
/* Every upstream's last recorded budget, by upstream name. */
int db_each_ratelimit(struct db *d, int (*fn)(void *ud, const struct db_ratelimit *rl), void *ud);

struct db_repo_row {
    const char *upstream, *repo;
    uint64_t bytes;          /* cached blobs this repository referenced */
    uint64_t last_access_ms; /* the latest access among them */
    uint64_t tags;           /* its tags */
};
int db_each_repo(struct db *d, int (*fn)(void *ud, const struct db_repo_row *row), void *ud);
/* Tags of one repository, with their manifest's last access. */
int db_each_tag(struct db *d, const char *upstream, const char *repo,
                int (*fn)(void *ud, const struct db_tag_row *row, uint64_t last_access_ms),
                void *ud);

/* ---- prefetch runs (db/prefetch_runs.c): synchronous (the daemon calls them through
 * db_call, in turn with its writes) ---- */
#define DB_PREFETCH_RUNS_KEEP 50 /* runs kept; the totals count every run */

struct db_prefetch_run {
    uint64_t started_ms, finished_ms;
    char trigger[16];    /* "scheduled" or "command" */
    char upstreams[512]; /* the upstreams its references name, comma-separated */
    uint64_t references, tags, heads, gets, blobs, bytes, errors;
    char outcome[16]; /* "ok", "budget", "down", "error" */
    char stopped[200]; /* why it stopped early; "" when it went to the end */
    char error[300];   /* the first error; "" when none */
};
struct db_prefetch_totals {
    uint64_t since_ms; /* the first run's start; 0: no run yet */
    uint64_t runs, tags, heads, gets, blobs, bytes, errors;
    uint64_t stopped; /* runs stopped early (budget, upstream down) */
};
/* Records a run, adds it to the totals and keeps the last DB_PREFETCH_RUNS_KEEP runs. */
int db_add_prefetch_run(struct db *d, const struct db_prefetch_run *run);
/* The most recent runs first (upstream non-NULL: only those naming it); returns how many were
 * written into out, or -EIO. */
int db_prefetch_runs(struct db *d, const char *upstream, struct db_prefetch_run *out,
                     size_t max);
int db_prefetch_totals(struct db *d, struct db_prefetch_totals *out);

/* ---- the purge journal (db/purges.c): synchronous ----
 * What a process other than the daemon removed from the index (a purge, a `regcache gc`) is
 * journaled in the same transaction; every running daemon reads the journal every
 * DB_PURGE_POLL_MS, forgets what it names in memory, and records how far it has read, so that
 * the command can wait until every daemon has stopped serving it. */
#define DB_PURGE_POLL_MS 1000
#define DB_PURGE_KEEP_MS (3600 * 1000) /* journal rows older than this are pruned */

struct db_purge_tag {
    const char *upstream, *repo, *tag;
};
/* Forgets tags and digests (as db_forget_blobs) in one transaction and journals each; *seq is
 * the last journal row written (unchanged when none was). */
int db_purge(struct db *d, const struct db_purge_tag *tags, size_t n_tags,
             char *const *digests, const uint64_t *sizes, size_t n, uint64_t now_ms,
             size_t *tags_forgotten, int64_t *seq);
/* The last journal row (0: none). */
int64_t db_purge_seq(struct db *d);
/* A journal row: a tag (digest NULL) or a digest (upstream, repo, tag NULL). */
struct db_purge_row {
    int64_t seq;
    const char *upstream, *repo, *tag, *digest;
    uint64_t size;
};
/* Calls fn for every row after seq, oldest first (at most max rows); *last: the last row's. */
int db_purges_since(struct db *d, int64_t seq, size_t max,
                    void (*fn)(void *ud, const struct db_purge_row *row), void *ud,
                    int64_t *last);
/* Process pid (a daemon) has read the journal up to seq; seq < 0 removes its row. */
int db_purge_reader(struct db *d, long pid, int64_t seq, uint64_t now_ms);
/* Every reader's row; fn's non-zero return stops. */
int db_each_purge_reader(struct db *d,
                         int (*fn)(void *ud, long pid, int64_t seq, uint64_t seen_ms), void *ud);

/* Every digest referenced by the repositories of exactly one upstream (fn gets it and that
 * upstream); a digest of several upstreams is not listed. */
int db_each_blob_upstream(struct db *d,
                          int (*fn)(void *ud, const char *digest, const char *upstream), void *ud);

/* Every (upstream, repository, digest) reference; fn's non-zero return stops. */
int db_each_ref(struct db *d,
                int (*fn)(void *ud, const char *upstream, const char *repo, const char *digest),
                void *ud);

/* ---- reads for the status page (on the db thread, through db_call) ---- */

/* Every hosted repository holding content or a tag, by name: the bytes of what it holds (each
 * blob of it once), its tags, and the latest access among its blobs. */
struct db_hosted_repo_row {
    const char *repo;
    uint64_t bytes, tags, last_access_ms;
};
int db_each_hosted_repo(struct db *d, int (*fn)(void *ud, const struct db_hosted_repo_row *row),
                        void *ud);
/* The tags of hosted repository repo by name (row->upstream NULL, validated_ms 0), with their
 * manifest's last access. */
int db_each_hosted_tag(struct db *d, const char *repo,
                       int (*fn)(void *ud, const struct db_tag_row *row, uint64_t last_access_ms),
                       void *ud);
/* What the index knows of a stored blob: its size, last access and media type (a manifest's;
 * "" for plain blobs). 0, or -ENOENT when it has no row. */
int db_blob_info(struct db *d, const char *digest, char *media_type, size_t len, uint64_t *size,
                 uint64_t *last_access_ms);

/* ---- the S3 tier's write-behind queue (db/s3_pending.c) ----
 * A digest stored locally that the bucket may lack (or what cache/l2.c names "manifest/"
 * digest and "tag/" tag_key for manifests and tag records): queued (pending 1) when it is committed,
 * removed (pending 0) once the bucket holds it or it cannot be written, so that a restart
 * writes behind what the last run left. Queued like every change. */
void db_s3_pending(struct db *d, const char *digest, int pending, uint64_t now_ms);
/* Calls fn with every pending digest, oldest first, at most max (at start, before the loop
 * runs); the number of rows in *total. 0 or -EIO. */
int db_load_s3_pending(struct db *d, size_t max, void (*fn)(void *ud, const char *digest),
                       void *ud, size_t *total);

#endif