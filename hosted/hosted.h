/* SPDX-License-Identifier: Apache-2.0 */
/* Hosted repositories: the LAN's own images, pushed per the OCI distribution spec (blob uploads:
 * monolithic, chunked and resumable; cross-repository mounts; manifest PUT with digest and
 * reference checks; DELETE; tags/list; the referrers API) and served from the store, never
 * from an upstream. Their content is never a candidate for the TTL or size GC; hosted_gc_run
 * collects what no tag and no held manifest reaches any more.
 *
 * Requests arrive parsed and checked (registry/route.h) and are answered through
 * registry/respond.h, like those for proxied repositories. Everything here runs on the event
 * loop; disk work goes to libuv's thread pool and index writes to the db's write queue. */
#ifndef REGCACHE_HOSTED_HOSTED_H
#define REGCACHE_HOSTED_HOSTED_H

#include "util/held_fd.h"
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "http/http.h"
#include "registry/route.h"

struct hosted;
struct store;
struct db;

/* Loads the hosted tags, manifests and referrers from db. *out stays NULL (and 0 is returned)
 * when cfg names no hosted repositories. */
int hosted_new(uv_loop_t *loop, const struct config *cfg, struct store *store, struct db *db,
               struct hosted **out);
void hosted_free(struct hosted *h);

/* Does repository name (as in the request path) fall under a hosted pattern? h may be NULL. */
int hosted_match(const struct hosted *h, const char *name);

/* Answers any request for a hosted repository; the caller has applied the access policy.
 * user is the authenticated caller, NULL when anonymous (uploads are counted per user, else
 * per address). */
void hosted_handle(struct hosted *h, struct conn *c, struct http_request *req,
                   const struct route *rt, const char *user);

/* fn(ud, digest) is called (on the loop) for every blob and manifest a push stored anew: the
 * daemon writes them behind into the S3 tier. h may be NULL. */
void hosted_on_stored(struct hosted *h, void (*fn)(void *ud, const char *digest), void *ud);

/* A pull about to be answered from the store: a blob (fd and size; body NULL) or a manifest
 * (its bytes), so that a worker loop can learn the answer (registry/worker.h). */
struct conn;
struct http_request;
struct hosted_answer {
    struct conn *c;
    const struct http_request *req;
    const char *repo, *reference, *digest, *media_type;
    const char *body;
    size_t len;
    struct held_fd *file; /* a blob's (borrowed: take a reference to keep it) */
    uint64_t size;
};
void hosted_on_answer(struct hosted *h, void (*fn)(void *ud, const struct hosted_answer *a),
                      void *ud);

/* Descriptors of blobs served lately, kept for hosted blob hits too: get(ud, digest, &size,
 * file) gives a reference to the kept descriptor in *file (file NULL: only the size) and
 * returns 1, else 0; put(ud, digest, file, size) keeps a reference of its own. Without them
 * every hit opens its file on the thread pool. Whether the repository holds the blob is
 * checked before either, on every request. h may be NULL. */
void hosted_use_hot_files(struct hosted *h,
                          int (*get)(void *ud, const char *digest, uint64_t *size,
                                     struct held_fd **file),
                          void (*put)(void *ud, const char *digest, struct held_fd *file,
                                      uint64_t size),
                          void *ud);

/* Stops the upload expiry timer (at shutdown, before the loop's last run); hosted_free after
 * that run. h may be NULL. */
void hosted_shutdown(struct hosted *h);

/* Calls fn with the name of every hosted repository holding a manifest or a tag (a name may
 * come more than once, in no order); fn's non-zero return stops and is returned. h may be
 * NULL. */
int hosted_repositories(const struct hosted *h, int (*fn)(void *ud, const char *name), void *ud);

/* ---- recording imported content (db writes only, queued: any thread that owns db) ---- */

/* What a finished upload of digest into repo records (the blob row itself is the caller's:
 * db_put_blob). */
void hosted_record_blob(struct db *db, const char *repo, const char *digest);
/* What a manifest PUT of body (its digest, its canonical media type) into repo records, tag
 * NULL for a push by digest: the manifest held, every blob it refers to held and referenced,
 * its referrer entry when it names a subject, the tag. 0, -ENOENT (something it refers to is
 * not in store, as a PUT answers MANIFEST_BLOB_UNKNOWN), -EINVAL (not a JSON object), -EBADMSG
 * (a descriptor without a valid digest) or -ENOMEM; nothing is recorded on error. */
int hosted_record_manifest(struct db *db, struct store *store, const char *repo, const char *tag,
                           const char *digest, const char *media_type, const char *body,
                           size_t len);

/* ---- collecting hosted content (blocking: `regcache gc --hosted`) ---- */

#define HOSTED_GC_GRACE_MS (3600ULL * 1000) /* younger hosted content may belong to a push */

struct hosted_gc_report {
    size_t collected;
    uint64_t bytes, duration_ms;
    char **digests; /* collected (or, dry run, to be collected) */
};

/* Collects hosted content that no tag and no held manifest reaches any more (deleted
 * manifests, layers only they used, abandoned pushes older than HOSTED_GC_GRACE_MS): from the
 * index first, then from the store; records the run. */
int hosted_gc_run(struct db *db, struct store *store, uint64_t now_ms, int dry_run,
                  struct hosted_gc_report *r);
void hosted_gc_report_free(struct hosted_gc_report *r);

#endif
