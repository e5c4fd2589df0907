/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the files of hosted/: the module's state, one request in progress, and
 * the pure reading of a pushed manifest. Functions shared across files are prefixed hosted__. */
#ifndef REGCACHE_HOSTED_IMPL_H
#define REGCACHE_HOSTED_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "hosted/hosted.h"
#include "http/http.h"
#include "registry/route.h"
#include "util/buf.h"
#include "util/reference.h"

struct store_fill;

#define HOSTED_SEP "\x1f" /* between a repository and a tag or digest in map keys */
#define HOSTED_KEY_MAX (REF_NAME_MAX + REF_DIGEST_MAX + 8)
#define HOSTED_MEDIA_TYPE_MAX 256

struct htag {
    char digest[REF_DIGEST_MAX + 1];
    char media_type[HOSTED_MEDIA_TYPE_MAX];
};

/* A manifest that names a subject, as the referrers API lists it. */
struct hreferrer {
    char subject[REF_DIGEST_MAX + 1];
    char *artifact_type; /* "" when it has none */
    char *descriptor;    /* its descriptor in a referrers index, as JSON */
};

#define HOSTED_UPLOAD_FLUSH (256u << 10)    /* a push goes to disk in pieces of this size */
#define HOSTED_UPLOAD_BUFFER_MAX (1u << 20) /* bytes of a push held for the disk at most */
#define HOSTED_UPLOADS_MAX 1024             /* uploads in progress at once, all clients */
#define HOSTED_OWNER_MAX 300                /* "u:<user>" or "a:<address>" */

struct upload {
    char uuid[33];
    char repo[REF_NAME_MAX + 1];
    char owner[HOSTED_OWNER_MAX]; /* who started it: its user, or its address if anonymous */
    struct store_fill *sf;        /* its descriptor closed between requests */
    uint64_t size;                /* bytes on disk */
    uint64_t used_ms;             /* when a request last started or ended on it (monotonic) */
    int busy;                     /* a request is working on it */
};

struct hosted {
    uv_loop_t *loop;
    const struct config *cfg;
    struct store *store;
    struct db *db;
    struct map *tags;      /* repo SEP tag -> struct htag */
    struct map *manifests; /* repo SEP digest -> strdup'ed media type */
    struct kept_manifests *kept; /* manifests' bytes in memory (hosted/kept.h) */
    struct map *referrers; /* repo SEP digest -> struct hreferrer */
    struct map *uploads;   /* uuid -> struct upload */
    /* repo SEP digest -> a marker: what each repository holds (uploaded or mounted to it,
     * pushed as one of its manifests or referenced by one), so that a blob is read, mounted or
     * referenced only through a repository holding it */
    struct map *links;
    uv_timer_t sweep; /* expires idle uploads */
    /* hosted.max_size: bytes of hosted content (each digest once: sized), of uploads */
    struct map *sized;
    uint64_t bytes, upload_bytes;
    void (*stored)(void *ud, const char *digest); /* hosted_on_stored; NULL: none */
    void *stored_ud;
    void (*answered)(void *ud, const struct hosted_answer *a); /* hosted_on_answer */
    void *answered_ud;
    /* hosted_use_hot_files; NULL: none */
    int (*hot_get)(void *ud, const char *digest, uint64_t *size, struct held_fd **file);
    void (*hot_put)(void *ud, const char *digest, struct held_fd *file, uint64_t size);
    void *hot_ud;
};

/* One request in progress; freed by hosted__op_free once answered. */
struct op {
    struct hosted *h;
    struct conn *c;
    struct http_request *req;
    struct route rt;
    char owner[HOSTED_OWNER_MAX];
    int head;
    int rc;
    char digest[REF_DIGEST_MAX + 1]; /* what is read, stored or claimed */
    char media_type[HOSTED_MEDIA_TYPE_MAX];
    uint64_t epoch; /* manifest GET: the content epoch its read started in */
    struct buf body; /* manifest PUT and GET: the manifest; uploads: bytes waiting for the disk */
    /* uploads */
    struct upload *up;
    struct buf writing; /* bytes being written */
    int write_busy, write_failed, body_ended, body_status, paused;
    /* blob GET: the descriptor the thread pool opened, then the reference the answer sends */
    int fd;
    struct held_fd *file;
    uint64_t size;
    /* manifest PUT: what it must find in the store, and its subject */
    char **refs;
    size_t n_refs, missing;
    char subject[REF_DIGEST_MAX + 1];
    char *artifact_type, *annotations; /* for the referrers index; NULL when none */
    uv_work_t work;
    void (*then)(struct op *o);
};

void hosted__key(char *out, size_t len, const char *repo, const char *what);
/* Runs work on the thread pool, then `then` on the loop (with o->rc = -ECANCELED or -EIO when
 * the work could not run). */
void hosted__run(struct op *o, void (*work)(uv_work_t *), void (*then)(struct op *o));
void hosted__op_free(struct op *o);
/* Answers an error (HEAD: headers only) and frees o. */
void hosted__fail(struct op *o, int status, const char *code, const char *message);

/* Records that repo holds digest (out of memory: it does not, which is safe); is it held? */
void hosted__link(struct hosted *h, const char *repo, const char *digest);
/* A push stored digest anew: tells hosted_on_stored's hook. */
void hosted__stored(struct hosted *h, const char *digest);
int hosted__linked(const struct hosted *h, const char *repo, const char *digest);

/* blob.c */
void hosted__get_blob(struct op *o);
/* manifest.c */
void hosted__get_manifest(struct op *o);
void hosted__put_manifest(struct op *o);
void hosted__delete_manifest(struct op *o);
/* tags.c */
int hosted__tag_set(struct hosted *h, const char *repo, const char *tag, const char *digest,
                    const char *media_type);
void hosted__untag_digest(struct hosted *h, const char *repo, const char *digest);
void hosted__list_tags(struct op *o);
/* Counts digest (size bytes) in the hosted content once. */
void hosted__count(struct hosted *h, const char *digest, uint64_t size);
/* Can len more bytes be stored: 0, or -ENOSPC (cache.min_free would be crossed), -EDQUOT
 * (hosted.max_size would). */
int hosted__room(struct hosted *h, uint64_t len);
/* Answers a refusal of hosted__room and frees o. */
void hosted__fail_room(struct op *o, int rc);

/* upload.c */
void hosted__upload(struct op *o);
/* Expires uploads idle for hosted.upload_timeout (a timer runs this). */
void hosted__uploads_sweep(struct hosted *h);
void hosted__uploads_free(struct hosted *h);
/* referrers.c */
int hosted__referrer_set(struct hosted *h, const char *repo, const char *digest,
                         const char *subject, const char *artifact_type, const char *descriptor);
void hosted__referrer_drop(struct hosted *h, const char *repo, const char *digest);
void hosted__referrers_free(struct hosted *h);
void hosted__list_referrers(struct op *o);

/* ---- reading a pushed manifest (pure, refs.c) ---- */

struct hosted_manifest_info {
    /* what must be in the store: config, layers[], manifests[] and blobs[] digests */
    char **refs;
    size_t n_refs;
    char subject[REF_DIGEST_MAX + 1];          /* subject.digest, "" when none */
    char artifact_type[HOSTED_MEDIA_TYPE_MAX]; /* artifactType, else config.mediaType, or "" */
    const char *annotations;                   /* the annotations object within the body */
    size_t annotations_len;                    /* 0 when none */
};

/* Reads a manifest or index: -EINVAL when body is not one JSON object, -EBADMSG when a
 * descriptor (config, layers, manifests, blobs, subject) lacks a valid digest, -ENOMEM. On
 * success info->refs is malloc'ed: hosted_manifest_info_free. */
int hosted__manifest_parse(const char *body, size_t len, struct hosted_manifest_info *info);
void hosted__manifest_info_free(struct hosted_manifest_info *info);

/* The manifest media type [s, s+len) names (compared without case, parameters after ';' and
 * spaces ignored), in its canonical spelling: OCI and Docker image manifests, indexes and
 * lists, the OCI artifact manifest. NULL for anything else (text/html included): only these
 * are accepted and served. */
const char *hosted__manifest_type(const char *s, size_t len);

/* Appends a referrers-index descriptor:
 * {"mediaType":..,"digest":..,"size":..[,"artifactType":..][,"annotations":{..}]}. */
int hosted__descriptor(struct buf *out, const char *media_type, const char *digest, uint64_t size,
                       const char *artifact_type, const char *annotations, size_t annotations_len);

#endif
