/* SPDX-License-Identifier: Apache-2.0 */
/* The mirror's figures, for Prometheus (GET /metrics) and the status page.
 *
 * One process-wide registry, in memory. Every figure is updated on the loop thread, except
 * the few a pool or the index's own thread measure (filesystem free bytes, index writes
 * pending), which are atomics. A scrape (metrics_expose) and a page view (metrics_view) read
 * only memory: no SQLite query, no statvfs; the filesystem's free bytes are measured on the
 * thread pool every METRICS_FS_INTERVAL_MS.
 *
 * Label values are bounded and known at start: handler names, type blob|manifest, each
 * configured upstream, status classes, methods. Nothing is labelled by repository or digest.
 * Every series exists from metrics_init on, at 0.
 *
 * Where the names are the distribution registry's (registry_proxy_*, registry_http_*), the
 * meaning is too: a proxy request is a manifest or blob GET or HEAD the mirror answered for
 * an upstream; a hit was answered from the store (stale answers included), a miss needed the
 * upstream (joining a fill in progress included); pulled bytes are bytes received from the
 * upstream. Before metrics_init every function is a no-op, so modules may be used without it
 * (unit tests). */
#ifndef REGCACHE_METRICS_METRICS_H
#define REGCACHE_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/buf.h"

struct config;
struct http_request;
struct http_response_info;

#define METRICS_FS_INTERVAL_MS 5000
#define METRICS_GC_RUNS 16 /* GC runs remembered for the page */
#define METRICS_REASON_MAX 200
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum metrics_type { METRICS_BLOB = 0, METRICS_MANIFEST = 1, METRICS_N_TYPES };

/* Creates the registry with one set of series per configured upstream, and starts the timer
 * that measures the free bytes of cfg->storage's filesystem off the loop. 0 or -errno. */
int metrics_init(uv_loop_t *loop, const struct config *cfg);
/* Stops the timer (at shutdown, before the loop's last run). */
void metrics_shutdown(void);
/* Frees the registry once the loop has stopped. */
void metrics_free(void);

/* ---- the registry's HTTP front (registry_http_*) ---- */

/* The calling thread is event loop i's (workers): the front's figures it counts go in a set of
 * their own, summed by every scrape. Threads that never call it count as loop 0. */
void metrics_set_loop(unsigned i);

/* A request was given to its handler (req->handler now set): in flight until its response. */
void metrics_http_started(const struct http_request *req);
/* The http_server_opts.on_response hook's work: counts the response under req->handler (none
 * when NULL), ends its flight, and adds its body bytes to what was served from the cache
 * (outcome hit or stale) or through the upstream (miss or fill). */
void metrics_http_finished(const struct http_request *req, const struct http_response_info *info);

/* ---- the pull-through cache (registry_proxy_*) ---- */

/* A manifest or blob request answered for an upstream: hit (from the store) or miss. Called
 * by metrics_http_finished for responses with an outcome. */
void metrics_proxy_request(enum metrics_type t, int hit);
/* A request joined a blob fill, a blob HEAD or a manifest flight in progress rather than
 * asking the upstream itself. */
void metrics_fill_joined(enum metrics_type t);
/* A blob fill the upstream cut: it went on from where it was (a 206 accepted), started again
 * from byte 0 (the upstream would not answer the Range as asked), or gave up (no retries
 * left). */
enum metrics_resume { METRICS_RESUMED, METRICS_RESTARTED, METRICS_GAVE_UP, METRICS_N_RESUMES };
void metrics_fill_resume(enum metrics_resume outcome);
/* A pull refused by the pull rules: rule is the deciding rule's number, 0 for the default. */
void metrics_rule_denied(size_t rule);

/* ---- upstreams (regcache_upstream_*); upstream is the configured name ---- */

/* One HTTP exchange with an upstream ended (each attempt: a 401 challenge answered and the
 * retry with a token are two): status 0 when no answer came; latency from sending the request
 * to the response headers (or to the failure). */
void metrics_upstream_request(const char *upstream, int head, long status, uint64_t latency_us);
/* Body bytes received from an upstream; t: METRICS_BLOB or METRICS_MANIFEST for the body of
 * a 2xx answer to a GET of one (registry_proxy_pulled_bytes_total), -1 for anything else. */
void metrics_upstream_body(const char *upstream, int t, uint64_t bytes);
/* A response announced a pull budget (-1: that part absent), or was a 429. */
void metrics_upstream_ratelimit(const char *upstream, int64_t limit, int64_t remaining,
                                int64_t window_s, int is_429);
/* The upstream went up or down at since_ms (wall clock); reason: why it is down. */
void metrics_upstream_state(const char *upstream, int up, uint64_t since_ms, const char *reason);

/* ---- blob sources (regcache_blob_source_requests_total) ---- */

enum metrics_source_outcome {
    METRICS_SOURCE_SERVED = 0, /* its bytes matched the digest and were stored */
    METRICS_SOURCE_MISSING,    /* 401, 403 or 404 */
    METRICS_SOURCE_WRONG,      /* bytes that did not hash to the digest */
    METRICS_SOURCE_FAILED,     /* no answer, another status, a cut */
    METRICS_SOURCE_SKIPPED,    /* down: not asked */
    METRICS_SOURCE_N_OUTCOMES
};
/* A fill of upstream asked its blob source source (both the configured names). */
void metrics_blob_source(const char *upstream, const char *source,
                         enum metrics_source_outcome outcome);

/* ---- GC ---- */

/* One GC run, as the page lists them. */
struct metrics_gc_run {
    uint64_t started_ms; /* wall clock */
    uint64_t duration_ms;
    int ok;         /* 0: failed */
    uint64_t files; /* files removed */
    uint64_t evicted_ttl_bytes, evicted_size_bytes;
    uint64_t pinned_files, pinned_bytes; /* stored content it kept for the pin and prefetch
                                          * lists (and fills in progress) */
    char reason[16]; /* "scheduled", "size", "manual" */
};
void metrics_gc_run(const struct metrics_gc_run *run);
/* The daemon forgot content another process (`regcache purge`, `regcache gc`) removed. */
void metrics_purged(uint64_t files, uint64_t bytes);

/* ---- prefetch (metrics/prefetch.c) ---- */
/* A run ended: outcome "ok", "budget", "down" or "error"; at finished_ms (wall clock). */
void metrics_prefetch_run(const char *outcome, uint64_t finished_ms);
/* A manifest GET it made (one pull). */
void metrics_prefetch_pull(void);
/* Blob bytes it fetched. */
void metrics_prefetch_bytes(uint64_t bytes);

/* ---- the S3 tier (metrics/s3.c) ---- */
enum metrics_s3_op {
    METRICS_S3_GET, METRICS_S3_HEAD, METRICS_S3_PUT, METRICS_S3_DELETE, METRICS_S3_LIST,
    METRICS_S3_LIST_UPLOADS, METRICS_S3_CREATE_UPLOAD, METRICS_S3_PUT_PART,
    METRICS_S3_COMPLETE_UPLOAD, METRICS_S3_ABORT_UPLOAD, METRICS_S3_N_OPS
};
enum metrics_s3_result {
    METRICS_S3_OK, METRICS_S3_NOT_FOUND, METRICS_S3_EXISTS, METRICS_S3_BAD_DIGEST,
    METRICS_S3_DENIED, METRICS_S3_ERROR, METRICS_S3_UNREACHABLE, METRICS_S3_TIMEOUT,
    METRICS_S3_N_RESULTS
};
/* One request to the bucket ended (a cancelled one is not counted). */
void metrics_s3_request(enum metrics_s3_op op, enum metrics_s3_result result);
/* Object bytes read from the bucket (written 0) or sent into it (written 1). */
void metrics_s3_bytes(int written, uint64_t n);
/* The write-behind queue holds n blobs now. */
void metrics_s3_queue(uint64_t n);
/* The janitor aborted an abandoned multipart upload. */
void metrics_s3_janitor_abort(void);
/* Access markers (cache/l2_access.c): one written, or one dropped (a full queue, a failed
 * PUT). */
void metrics_s3_marker(int written);
/* The bucket GC (cache/l2_gc.c): a run ended (ok or not), what it deleted, and whether this
 * replica holds the GC lease. */
void metrics_s3_gc_run(int ok);
void metrics_s3_gc_evicted(uint64_t objects, uint64_t bytes);
void metrics_s3_gc_lease(int held);
/* Manifests and tag records in the bucket: read (when the upstream cannot answer, or a
 * manifest by digest is missing locally) or written behind, by result (refused: a read that
 * did not verify, a write the store refused). */
enum metrics_s3_shared_kind { METRICS_S3_SHARED_MANIFEST, METRICS_S3_SHARED_TAG,
                              METRICS_S3_SHARED_N_KINDS };
enum metrics_s3_shared_result { METRICS_S3_SHARED_OK, METRICS_S3_SHARED_NOT_FOUND,
                                METRICS_S3_SHARED_REFUSED, METRICS_S3_SHARED_ERROR,
                                METRICS_S3_SHARED_N_RESULTS };
void metrics_s3_shared(enum metrics_s3_shared_kind kind, int written,
                       enum metrics_s3_shared_result result);

/* ---- the cluster (metrics/cluster.c): written only once metrics_cluster_members ran ---- */
enum metrics_cluster_result { METRICS_CLUSTER_ANSWERED, METRICS_CLUSTER_FAILED,
                              METRICS_N_CLUSTER_RESULTS };
/* Members up (this one included) and down, whenever that changes. */
void metrics_cluster_members(uint64_t up, uint64_t down);
/* A miss asked of a member: it answered, or it failed (no answer, cut, refused). */
void metrics_cluster_asked(enum metrics_type kind, enum metrics_cluster_result result);
/* A member's request came in: served, or refused (its signature did not verify). */
void metrics_cluster_peer_request(int refused);
/* A hosted repository's request relayed to the member that holds it (cluster/relay.h). */
enum metrics_relay_result { METRICS_RELAY_ANSWERED, METRICS_RELAY_FAILED,
                            METRICS_RELAY_ABANDONED, METRICS_N_RELAY_RESULTS };
void metrics_cluster_relayed(enum metrics_relay_result result);

/* ---- figures read when asked ----
 * Modules that already keep a figure in memory (the cache's index, the HTTP server, the
 * index's write queue) are asked for it at scrape time instead of reporting every change.
 * A source adds what it knows to *out (which starts at 0); it runs on the loop thread and
 * must only read memory. */
struct metrics_live {
    uint64_t store_bytes;
    uint64_t blobs, manifests, tags;
    uint64_t fills[METRICS_N_TYPES]; /* blob fills, manifest flights in progress */
    uint64_t index_pending;          /* index writes not yet committed */
    uint64_t connections_open, connections_refused;
    /* the connections open on each event loop (workers), n_loops of them */
#define METRICS_LOOPS_MAX 64
    uint64_t loop_connections[METRICS_LOOPS_MAX];
    unsigned n_loops;
    uint64_t tls_ok, tls_failed;
};
typedef void (*metrics_source_fn)(void *ud, struct metrics_live *out);
/* At most METRICS_MAX_SOURCES; 0 or -ENOSPC. */
#define METRICS_MAX_SOURCES 8
int metrics_add_source(metrics_source_fn fn, void *ud);
void metrics_remove_source(metrics_source_fn fn, void *ud);

/* ---- reading ---- */

/* One upstream as the page shows it. */
struct metrics_upstream_view {
    const char *name; /* valid until metrics_free */
    int up;
    uint64_t since_ms;               /* last change of state (wall clock); 0: up since start */
    char reason[METRICS_REASON_MAX]; /* why it is down, "" when up */
    int64_t ratelimit_limit, ratelimit_remaining, ratelimit_window_s; /* -1: never announced */
    uint64_t ratelimit_seen_ms;          /* last announcement, 0: none */
    uint64_t responses_429, last_429_ms; /* 0: none */
    uint64_t requests, bytes;            /* requests made, body bytes received */
};

/* The whole-mirror figures the page shows. */
struct metrics_view {
    uint64_t start_ms; /* the process's start, wall clock */
    uint64_t requests[METRICS_N_TYPES], hits[METRICS_N_TYPES], misses[METRICS_N_TYPES];
    uint64_t pulled_bytes[METRICS_N_TYPES]; /* received from upstreams */
    uint64_t pushed_bytes[METRICS_N_TYPES]; /* response bodies sent for them */
    uint64_t served_cache_bytes;    /* response bodies answered from the store (hit, stale) */
    uint64_t served_upstream_bytes; /* response bodies that came through an upstream (miss, fill) */
    uint64_t max_size_bytes, fs_free_bytes; /* max_size 0: no limit; free 0: unknown */
    struct metrics_live live;               /* store bytes, counts, fills, connections */
    size_t n_gc;                            /* runs in gc[], newest first */
    struct metrics_gc_run gc[METRICS_GC_RUNS];
};

void metrics_view(struct metrics_view *out);
size_t metrics_upstream_count(void);
/* The i-th configured upstream; -ENOENT past the end. */
int metrics_upstream_view(size_t i, struct metrics_upstream_view *out);

/* Appends the Prometheus text exposition (format 0.0.4) of every series to out. 0 or
 * -ENOMEM. */
int metrics_expose(struct buf *out);

/* Answers GET or HEAD /metrics with the exposition (405 for other methods, 500 when out of
 * memory). Who may ask is the caller's decision. */
#define METRICS_EXPOSITION_MAX (16u << 20)
struct conn;
void metrics_respond(struct conn *c, const struct http_request *req);

/* Escapes a label value for the exposition (backslash, double quote, newline) into out. */
int metrics_escape_label(struct buf *out, const char *value);

#endif
