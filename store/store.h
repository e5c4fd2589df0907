/* SPDX-License-Identifier: Apache-2.0 */
/* Content-addressed blob store: <root>/blobs/sha256/<2 hex>/<64 hex>, manifests included.
 *
 * A file appears under its digest's name only after its bytes were hashed and found to match,
 * fsynced, renamed into place and the directory fsynced. Partial fills live in <root>/tmp.
 *
 * The store never follows a symbolic link below its root and never opens anything but a
 * regular file as a blob: its directories are opened with O_NOFOLLOW and every name inside
 * them is resolved relative to those descriptors (openat, renameat, unlinkat), so a link
 * planted in place of a shard directory or a blob cannot make it read, write or remove a file
 * elsewhere, and a FIFO or device planted as a blob is never waited on. It refuses a root that
 * users other than its owner can write (sshd's StrictModes), and creates its directories 0700
 * and its files 0600 whatever the umask.
 *
 * Every function here does blocking disk I/O: callers on the event loop run them on libuv's
 * thread pool. A struct store_fill is used by one thread at a time. */
#ifndef REGCACHE_STORE_STORE_H
#define REGCACHE_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define STORE_PATH_MAX 4096
/* A fill re-reads the free space at least once per this many bytes written. */
#define STORE_ROOM_CHECK_BYTES (1024 * 1024)

struct store;
struct store_fill;

/* Creates root (0700; missing parents 0755), root/blobs/sha256 and root/tmp as needed and
 * removes stale temporary files (the partial fills of store_fill_begin_partial stay: see
 * store_partials_prune). Refuses (-EPERM) a root, one of its directories or a parent of
 * the root that a user other than the owner can write (a sticky parent such as /tmp is
 * allowed), a root owned by another user (unless running as root) and symbolic links in place
 * of its directories (-ELOOP), with a message naming the path and its mode in err. Warns when
 * other users can read the root. */
int store_open(const char *root, struct store **out, char *err, size_t errlen);
void store_close(struct store *s);
const char *store_root(const struct store *s);

/* Bytes every write into the store leaves free on its filesystem (cache.min_free): a fill, an
 * upload or a put that would go below it fails with -ENOSPC, and store_room_for counts it. */
void store_set_reserve(struct store *s, uint64_t bytes);

/* Creates <root>/name as an empty file of mode 0600 unless it exists (the index database, so
 * that SQLite and its -wal and -shm files inherit the mode), and writes its path into path.
 * Refuses a symbolic link or anything but a regular file there (-ELOOP, -EINVAL). */
int store_private_file(struct store *s, const char *name, char *path, size_t len);

/* The clean-shutdown record: <root>/STORE_CLEAN_MARK, written (and synced) by a daemon that
 * stopped gracefully with its index and store in agreement, taken (removed, and the removal
 * synced) by the next start, which then trusts the index without walking the store. An
 * exclusive store_lock (an import) removes it too. */
#define STORE_CLEAN_MARK "clean-shutdown"
int store_mark_clean(struct store *s, const char *text);
/* 1 when the record was there (now removed) with its text in text (cut to len), 0 when not,
 * or a negative errno. */
int store_take_clean_mark(struct store *s, char *text, size_t len);

/* digest must be a valid "sha256:<64 hex>" (checked by the caller). For messages and tests:
 * the store itself never opens files by this path. */
void store_blob_path(const struct store *s, const char *digest, char *out, size_t outlen);

/* Opens a stored blob read-only. Returns 0 with *fd and *size, -ENOENT when absent (or when
 * something other than a regular file has its name), -ELOOP when its shard directory is a
 * symbolic link. */
int store_blob_open(struct store *s, const char *digest, int *fd, uint64_t *size);

/* 1 when a regular file is stored under digest, else 0. */
int store_has(struct store *s, const char *digest);

/* Stores a complete in-memory object (a manifest) under digest after checking the bytes hash to
 * it. -EBADMSG on mismatch. Storing an object that is already present is a no-op. */
int store_put(struct store *s, const char *digest, const void *data, size_t len);

/* Starts a streaming fill of digest: a temporary file readers may already read from. */
int store_fill_begin(struct store *s, const char *digest, struct store_fill **out);
/* The temporary file's descriptor: readable from any thread, valid until store_fill_free. */
int store_fill_fd(const struct store_fill *f);
/* Appends and hashes len bytes. Returns 0 or -errno; -ENOSPC also when the bytes would leave
 * less than the reserve free (checked at least every STORE_ROOM_CHECK_BYTES). */
int store_fill_write(struct store_fill *f, const void *data, size_t len);
uint64_t store_fill_size(const struct store_fill *f);
/* Empties the temporary file and starts its hash afresh, for a fill that begins again from
 * byte 0 (readers must not be reading it meanwhile). 0 or -errno. */
int store_fill_reset(struct store_fill *f);
/* Partial fills that outlive the process: a fill of digest from the source named source (an
 * upstream) whose file is <root>/tmp/partial-<64 hex>-<source, other bytes than [A-Za-z0-9.-]
 * as '_', at most 40>, held with flock(2) while in use. When that file is there already (a
 * fill cut by a restart) and nobody holds it, it is taken over: its bytes are re-hashed and
 * *have gets their count, so the caller asks its source only for the rest; else *have is 0.
 * When another fill holds it, an ordinary temporary file is used instead. 0 or -errno. */
int store_fill_begin_partial(struct store *s, const char *digest, const char *source,
                             struct store_fill **out, uint64_t *have);
/* Leaves the fill's file in place when the fill is freed (the process stops mid-fill). */
void store_fill_keep(struct store_fill *f);
/* Removes the partial fills (see store_fill_begin_partial) of a source not in sources[0..n)
 * or last written more than max_age_s ago, unless in use. Returns how many were removed. */
int store_partials_prune(struct store *s, const char *const *sources, size_t n,
                         uint64_t max_age_s);
/* Verifies the hash, fsyncs, renames into place, fsyncs the directory. -EBADMSG on mismatch
 * (the temporary file is removed). The descriptor stays valid. */
int store_fill_commit(struct store_fill *f);
/* The digest the written bytes hashed to, once store_fill_commit ran ("" before). */
const char *store_fill_actual(const struct store_fill *f);
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

/* Adopts the regular file at path, outside the store, as digest without copying it: hard-links
 * it into <root>/tmp, hashes the linked file (the very inode that is published), makes it the
 * store's (owner of the root, mode 0600: the other name sees that too) and renames it into
 * place when its bytes match. The file then has two names: nothing may write to it in place
 * afterwards (registry:2 never does). 0 with *size; -EBADMSG when the bytes do not match
 * (nothing is left behind); -EXDEV when path is on another filesystem, or another reason why
 * no link could be made (-EPERM, -EMLINK, ...): the caller copies through store_fill_*; -ENOENT
 * or -EINVAL when path is missing or not a regular file; -ENOSPC as a fill would. Storing a
 * digest already present is a no-op (0, the file is not read). */
int store_link(struct store *s, const char *digest, const char *path, uint64_t *size);

/* Takes flock(2) on the store's root directory without waiting, shared (the daemon: several
 * may serve one store) or exclusive (an offline import: nobody serves the store meanwhile, so
 * nobody's in-memory index goes stale). Returns the descriptor that holds it (close it to
 * release), -EWOULDBLOCK when the other kind is held, -ENOENT when the root does not exist yet,
 * or -errno. Works before store_open, which removes partial fills. */
int store_lock(const char *root, int exclusive);

/* Removes a stored blob (a reader holding it open keeps its bytes). 0, or -ENOENT. */
int store_remove(struct store *s, const char *digest);

/* Re-hashes a stored blob: 0 when its bytes match its name, -EBADMSG when not, -ENOENT. */
int store_verify(struct store *s, const char *digest);

/* What store_each's fn returns for an entry reported with digest NULL to have it removed. */
#define STORE_EACH_REMOVE 1

/* Calls fn for every regular file under blobs/sha256 named like a digest, with its size; stops
 * when fn returns a negative value and returns it. Anything else found there (other names,
 * symbolic links, FIFOs, sockets, devices, a link in place of a shard directory) is reported
 * with digest NULL and its path; when fn answers STORE_EACH_REMOVE that entry itself is
 * removed (a link, never what it points to). Directories inside shards are left alone. The
 * walk never follows a link and never removes anything outside the store. */
int store_each(struct store *s, int (*fn)(void *ud, const char *digest, const char *path,
                                          uint64_t size),
               void *ud);

/* Whether the store takes writes now: creates a small file in <root>/tmp, writes, fsyncs and
 * removes it. 0, or -errno of the step that failed (-EROFS, -ENOSPC, -EIO, ...); path gets
 * the file's path (or the directory's) for messages. The reserve is not consulted: this says
 * whether the filesystem writes, not whether a fill would be allowed. */
int store_check_writable(struct store *s, char *path, size_t len);

/* Free bytes on the store's filesystem (for unprivileged users), or 0 when unknown. */
uint64_t store_free_bytes(struct store *s);
/* 0 when a file of bytes fits on the store's filesystem now with the reserve left free (or
 * nobody can tell), -ENOSPC when it does not. One statvfs(2): cheap enough for the event loop
 * on a local filesystem. */
int store_room_for(struct store *s, uint64_t bytes);

/* sha256 of data as "sha256:<hex>" into out (at least 72 bytes). */
void store_digest_of(const void *data, size_t len, char *out);

#endif
