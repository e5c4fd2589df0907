/* Content-addressed blob store: <root>/blobs/sha256/<2 hex>/<64 hex>, manifests included.
 *
 * A file appears under its digest's name only after its bytes were hashed and found to match,
 * fsynced, renamed into place and the directory fsynced. Partial fills live in <root>/tmp.
 *
 * Every function here does blocking disk I/O: callers on the event loop run them on libuv's
 * thread pool. A struct store_fill is used by one thread at a time. */
#ifndef REGCACHE_STORE_STORE_H
#define REGCACHE_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define STORE_PATH_MAX 4096

struct store;
struct store_fill;

/* Creates root/blobs/sha256 and root/tmp as needed and removes stale partial fills. */
int store_open(const char *root, struct store **out);
void store_close(struct store *s);
const char *store_root(const struct store *s);

/* digest must be a valid "sha256:<64 hex>" (checked by the caller). */
void store_blob_path(const struct store *s, const char *digest, char *out, size_t outlen);

/* Opens a stored blob read-only. Returns 0 with *fd and *size, -ENOENT when absent. */
int store_blob_open(struct store *s, const char *digest, int *fd, uint64_t *size);

/* Stores a complete in-memory object (a manifest) under digest after checking the bytes hash to
 * it. -EBADMSG on mismatch. Storing an object that is already present is a no-op. */
int store_put(struct store *s, const char *digest, const void *data, size_t len);

/* Starts a streaming fill of digest: a temporary file readers may already read from. */
int store_fill_begin(struct store *s, const char *digest, struct store_fill **out);
/* The temporary file's descriptor: readable from any thread, valid until store_fill_free. */
int store_fill_fd(const struct store_fill *f);
/* Appends and hashes len bytes. Returns 0 or -errno. */
int store_fill_write(struct store_fill *f, const void *data, size_t len);
uint64_t store_fill_size(const struct store_fill *f);
/* Verifies the hash, fsyncs, renames into place, fsyncs the directory. -EBADMSG on mismatch
 * (the temporary file is removed). The descriptor stays valid. */
int store_fill_commit(struct store_fill *f);
/* The same for content whose digest is only known at the end (a push: begin with ""). */
int store_fill_commit_as(struct store_fill *f, const char *digest);
/* Closes the descriptor of a fill nobody reads and nobody writes for now (an upload session
 * between two requests), so that idle fills hold no descriptor; the next store_fill_write or
 * commit reopens its file. store_fill_fd is -1 meanwhile. 0 or -errno. */
int store_fill_park(struct store_fill *f);
/* Removes the temporary file of a fill that will not be committed. */
void store_fill_abort(struct store_fill *f);
/* Closes the descriptor and frees; aborts the fill if neither committed nor aborted. */
void store_fill_free(struct store_fill *f);

/* Removes a stored blob (a reader holding it open keeps its bytes). 0, or -ENOENT. */
int store_remove(struct store *s, const char *digest);

/* Re-hashes a stored blob: 0 when its bytes match its name, -EBADMSG when not, -ENOENT. */
int store_verify(struct store *s, const char *digest);

/* Calls fn for every file under blobs/sha256 named like a digest, with its size; stops when fn
 * returns non-zero. Anything else found there is reported with digest NULL (name in path). */
int store_each(struct store *s, int (*fn)(void *ud, const char *digest, const char *path,
                                          uint64_t size),
               void *ud);

/* Free bytes on the store's filesystem (for unprivileged users), or 0 when unknown. */
uint64_t store_free_bytes(struct store *s);
/* 0 when a file of bytes fits on the store's filesystem now (or nobody can tell), -ENOSPC when
 * it does not. One statvfs(2): cheap enough for the event loop on a local filesystem. */
int store_room_for(struct store *s, uint64_t bytes);

/* sha256 of data as "sha256:<hex>" into out (at least 72 bytes). */
void store_digest_of(const void *data, size_t len, char *out);

#endif
