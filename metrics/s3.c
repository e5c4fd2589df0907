/* SPDX-License-Identifier: Apache-2.0 */
/* The S3 tier's series: requests by operation and result, bytes read from and written into the
 * bucket, the write-behind queue's length, the janitor's aborts, access markers, the bucket GC
 * and its lease, the manifests and tag records read and written. The client (s3/client.c)
 * counts its requests and bytes, the tier (cache/l2*.c, cache/manifests.c) the rest. Loop
 * thread only, like the rest of the registry; the counters are plain statics, so they count
 * (unseen) before metrics_init too. */
#include <stdio.h>

#include "metrics/impl.h"
#include "metrics/metrics.h"

static const char *const ops[METRICS_S3_N_OPS] = {
    "get", "head", "put", "delete", "list", "list_uploads", "create_upload", "put_part",
    "complete_upload", "abort_upload"};
static const char *const results[METRICS_S3_N_RESULTS] = {
    "ok", "not_found", "exists", "bad_digest", "denied", "error", "unreachable", "timeout"};

static uint64_t requests[METRICS_S3_N_OPS][METRICS_S3_N_RESULTS];
static const char *const shared_kinds[METRICS_S3_SHARED_N_KINDS] = {"manifest", "tag"};
static const char *const shared_results[METRICS_S3_SHARED_N_RESULTS] = {"ok", "not_found",
                                                                        "refused", "error"};
static uint64_t shared[METRICS_S3_SHARED_N_KINDS][2][METRICS_S3_SHARED_N_RESULTS];
static uint64_t bytes_read, bytes_written, queue_len, janitor_aborts;
static uint64_t markers_written, markers_dropped, gc_runs[2], gc_objects, gc_bytes, lease_held;

void metrics_s3_request(enum metrics_s3_op op, enum metrics_s3_result result)
{
    if ((unsigned)op < METRICS_S3_N_OPS && (unsigned)result < METRICS_S3_N_RESULTS)
        requests[op][result]++;
}

void metrics_s3_bytes(int written, uint64_t n)
{
    if (written)
        bytes_written += n;
    else
        bytes_read += n;
}

void metrics_s3_queue(uint64_t n)
{
    queue_len = n;
}

void metrics_s3_janitor_abort(void)
{
    janitor_aborts++;
}

void metrics_s3_marker(int written)
{
    if (written)
        markers_written++;
    else
        markers_dropped++;
}

void metrics_s3_gc_run(int ok)
{
    gc_runs[ok != 0]++;
}

void metrics_s3_gc_evicted(uint64_t objects, uint64_t bytes)
{
    gc_objects += objects;
    gc_bytes += bytes;
}

void metrics_s3_gc_lease(int held)
{
    lease_held = held != 0;
}

void metrics_s3_shared(enum metrics_s3_shared_kind kind, int written,
                       enum metrics_s3_shared_result result)
{
    if ((unsigned)kind < METRICS_S3_SHARED_N_KINDS &&
        (unsigned)result < METRICS_S3_SHARED_N_RESULTS)
        shared[kind][written != 0][result]++;
}

int metrics__s3_write(struct buf *out)
{
    char labels[96];
    TRY(metrics__family(out, "regcache_s3_requests_total", "counter",
                        "Requests to the S3 tier's bucket by operation and result (not_found: "
                        "404; exists: 412; bad_digest: the store refused bytes that do not "
                        "match their hash; denied: 401 or 403; error: another status; "
                        "unreachable and timeout: no answer)"));
    for (size_t o = 0; o < METRICS_S3_N_OPS; o++)
        for (size_t r = 0; r < METRICS_S3_N_RESULTS; r++) {
            snprintf(labels, sizeof(labels), "op=\"%s\",result=\"%s\"", ops[o], results[r]);
            TRY(metrics__u64(out, "regcache_s3_requests_total", labels, requests[o][r]));
        }
    TRY(metrics__family(out, "regcache_s3_bytes_total", "counter",
                        "Object bytes read from the bucket (direction=read: GET bodies) and "
                        "sent into it (direction=written: PUT and part bodies)"));
    TRY(metrics__u64(out, "regcache_s3_bytes_total", "direction=\"read\"", bytes_read));
    TRY(metrics__u64(out, "regcache_s3_bytes_total", "direction=\"written\"", bytes_written));
    TRY(metrics__family(out, "regcache_s3_write_behind_queue", "gauge",
                        "Blobs, manifests and tag records waiting to be written into the bucket "
                        "(being written included)"));
    TRY(metrics__u64(out, "regcache_s3_write_behind_queue", NULL, queue_len));
    TRY(metrics__family(out, "regcache_s3_janitor_aborts_total", "counter",
                        "Abandoned multipart uploads the janitor aborted "
                        "(s3.abandoned_upload_after)"));
    TRY(metrics__u64(out, "regcache_s3_janitor_aborts_total", NULL, janitor_aborts));
    TRY(metrics__family(out, "regcache_s3_access_markers_total", "counter",
                        "Access markers (access/sha256/<2>/<64>) this replica wrote into the "
                        "bucket (result=written) or gave up on (result=dropped: a full queue "
                        "or a failed PUT)"));
    TRY(metrics__u64(out, "regcache_s3_access_markers_total", "result=\"written\"",
                     markers_written));
    TRY(metrics__u64(out, "regcache_s3_access_markers_total", "result=\"dropped\"",
                     markers_dropped));
    TRY(metrics__family(out, "regcache_s3_gc_runs_total", "counter",
                        "Bucket GC runs this replica made as the GC leader, by result (failed: "
                        "a listing that did not complete or the lease lost; nothing planned is "
                        "deleted then)"));
    TRY(metrics__u64(out, "regcache_s3_gc_runs_total", "result=\"ok\"", gc_runs[1]));
    TRY(metrics__u64(out, "regcache_s3_gc_runs_total", "result=\"failed\"", gc_runs[0]));
    TRY(metrics__family(out, "regcache_s3_gc_evicted_objects_total", "counter",
                        "Blob objects the bucket GC deleted from the bucket (their markers "
                        "with them)"));
    TRY(metrics__u64(out, "regcache_s3_gc_evicted_objects_total", NULL, gc_objects));
    TRY(metrics__family(out, "regcache_s3_gc_evicted_bytes_total", "counter",
                        "Bytes of the blob objects the bucket GC deleted"));
    TRY(metrics__u64(out, "regcache_s3_gc_evicted_bytes_total", NULL, gc_bytes));
    TRY(metrics__family(out, "regcache_s3_gc_lease_held", "gauge",
                        "1 while this replica holds the bucket GC lease (gc/lease) and so is "
                        "the one that runs the bucket GC"));
    TRY(metrics__u64(out, "regcache_s3_gc_lease_held", NULL, lease_held));
    TRY(metrics__family(out, "regcache_s3_shared_total", "counter",
                        "Manifests and tag records read from the bucket (when the upstream "
                        "cannot answer, or a manifest by digest is missing locally) and written "
                        "behind into it, by result (refused: a read that did not verify, or a "
                        "write the store refused; error: the store failed or was away)"));
    for (size_t k = 0; k < METRICS_S3_SHARED_N_KINDS; k++)
        for (int w = 0; w < 2; w++)
            for (size_t r = 0; r < METRICS_S3_SHARED_N_RESULTS; r++) {
                snprintf(labels, sizeof(labels), "kind=\"%s\",op=\"%s\",result=\"%s\"",
                         shared_kinds[k], w ? "write" : "read", shared_results[r]);
                TRY(metrics__u64(out, "regcache_s3_shared_total", labels, shared[k][w][r]));
            }
    return 0;
}
