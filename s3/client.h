/* SPDX-License-Identifier: Apache-2.0 */
/* The S3 store tier's requests: objects in one bucket of an S3-compatible store (path-style
 * URLs, SigV4 signed by s3/sigv4.c), on the upstream client's curl multi and so on the loop.
 *
 * Every request carries x-amz-content-sha256. A blob's PUT carries the blob's own digest
 * there, so the store checks the bytes before the object exists (a mismatch is refused and
 * nothing is stored), and If-None-Match: * so that one writer wins: a 412 means the object is
 * stored already. A file larger than the part size goes as a multipart upload: each part
 * carries its own SHA-256, hashed on the thread pool as the parts are read, and the upload is
 * completed only when the whole file has hashed to the digest it is stored under; otherwise it
 * is aborted. A multipart upload first asks (HEAD) whether the object is there already, since
 * completing one overwrites. Answers are s3_reply: the HTTP status, a result (0, or -ENOENT
 * for 404, -EEXIST for 412, -EBADMSG for bytes that do not match their hash, -EACCES for
 * 401/403, -EIO otherwise and -EHOSTUNREACH/-ETIMEDOUT for transport failures) and the store's
 * error code and message when it sent one. Every request is bounded in time: 5 s to connect,
 * and no more than 10 s without a byte moving (30 s for one that sends a body), so a store that
 * accepts connections and never answers fails the request with -ETIMEDOUT. Each request that
 * ends is counted in the regcache_s3_* metrics (metrics/s3.c).
 *
 * Callbacks run on the loop. A cancelled request calls nothing. */
#ifndef REGCACHE_S3_CLIENT_H
#define REGCACHE_S3_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct upstream_client;
struct s3_client;
struct s3_op;     /* one request */
struct s3_upload; /* a file's PUT, single or multipart */

#define S3_PART_MIN (5ULL << 20)
#define S3_PART_DEFAULT (64ULL << 20)
#define S3_PARTS_MAX 10000

struct s3_settings {
    const char *endpoint; /* http(s)://host[:port], no path */
    const char *bucket;
    const char *region;     /* "us-east-1" when NULL */
    const char *access_key, *secret_key;
    const char *prefix;     /* prepended to every key; NULL or "" for none */
    const char *ca_file;    /* NULL: the system's */
    uint64_t part_size;     /* 0: S3_PART_DEFAULT; at least S3_PART_MIN */
};

struct s3_reply {
    long status;         /* 0 when nothing answered */
    int result;          /* 0 or a negative errno, see above */
    const char *code;    /* the store's error code ("NoSuchKey"), "" when none */
    const char *message; /* what went wrong, "" on success */
    int64_t length;      /* Content-Length, -1 when unknown */
    int64_t mtime;       /* Last-Modified in seconds since the epoch, -1 when unknown */
    const char *etag;    /* "" when absent */
    const char *content_range;
    const char *content_type; /* "" when absent */
};

struct s3_object {
    const char *key; /* without the settings' prefix */
    uint64_t size;
    int64_t mtime;   /* LastModified, the store's clock */
};

struct s3_multipart {
    const char *key; /* without the prefix */
    const char *upload_id;
    int64_t initiated;
};

typedef void (*s3_done_fn)(void *ud, const struct s3_reply *r);
/* body bytes of a successful GET: 0, S3_PAUSE (delivered again after s3_resume) or -1 */
typedef int (*s3_data_fn)(void *ud, const char *data, size_t len);
typedef void (*s3_object_fn)(void *ud, const struct s3_object *o);
typedef void (*s3_multipart_fn)(void *ud, const struct s3_multipart *m);
#define S3_PAUSE 1

/* settings are copied. 0, -EINVAL (a missing or bad setting, with why filled) or -ENOMEM. */
int s3_client_new(struct upstream_client *uc, const struct s3_settings *settings,
                  struct s3_client **out, char *why, size_t whylen);
/* Cancels everything in flight (nothing is called back) and frees. */
void s3_client_free(struct s3_client *c);
uint64_t s3_part_size(const struct s3_client *c);

/* GET key, bytes from..to inclusive (to UINT64_MAX: to the end; from 0 and to UINT64_MAX: no
 * Range header). on_data sees only a 200's or 206's body. */
struct s3_op *s3_get(struct s3_client *c, const char *key, uint64_t from, uint64_t to,
                     s3_data_fn on_data, s3_done_fn done, void *ud);
struct s3_op *s3_head(struct s3_client *c, const char *key, s3_done_fn done, void *ud);
struct s3_op *s3_delete(struct s3_client *c, const char *key, s3_done_fn done, void *ud);
/* PUT of len bytes at data (kept by the caller until done) whose SHA-256 is sha256_hex; with
 * if_none_match, If-None-Match: * (-EEXIST when stored already). */
struct s3_op *s3_put(struct s3_client *c, const char *key, const void *data, size_t len,
                     const char *sha256_hex, int if_none_match, const char *content_type,
                     s3_done_fn done, void *ud);
/* PUT that replaces key only while its ETag is still etag (If-Match, sent unquoted as RGW 16
 * compares it): -EEXIST (412) when the object changed or is gone. */
struct s3_op *s3_put_if_match(struct s3_client *c, const char *key, const void *data, size_t len,
                              const char *sha256_hex, const char *etag, s3_done_fn done,
                              void *ud);
/* ListObjectsV2 of keys under prefix (the settings' prefix added), one page of at most
 * max_keys (1..1000) after the continuation token (NULL: from the start). each sees every
 * object; done's reply carries the next token in message when the listing goes on, "" when it
 * was the last page. */
struct s3_op *s3_list(struct s3_client *c, const char *prefix, const char *token,
                      unsigned max_keys, s3_object_fn each, s3_done_fn done, void *ud);
/* Multipart uploads in progress under prefix (one page of up to 1000). */
struct s3_op *s3_list_multiparts(struct s3_client *c, const char *prefix, s3_multipart_fn each,
                                 s3_done_fn done, void *ud);
struct s3_op *s3_abort_multipart(struct s3_client *c, const char *key, const char *upload_id,
                                 s3_done_fn done, void *ud);
void s3_resume(struct s3_op *op);
void s3_cancel(struct s3_op *op);

/* PUT of the file at path (read with pread on the loop as it is sent, so meant for files the
 * page cache holds, such as a blob just stored; it must not change) under key, whose bytes
 * hash to sha256_hex: one PUT with If-None-Match: * up to the part size, a multipart upload
 * above it. -EEXIST when the object was there already. */
struct s3_upload *s3_put_file(struct s3_client *c, const char *key, const char *path,
                              const char *sha256_hex, const char *content_type, s3_done_fn done,
                              void *ud);
void s3_upload_cancel(struct s3_upload *u);

/* The object key of a blob: blobs/sha256/<2>/<64>, as in the local store. -EINVAL for a digest
 * that is not sha256. */
int s3_blob_key(const char *digest, char *out, size_t len);

#endif
