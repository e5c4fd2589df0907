/* SPDX-License-Identifier: Apache-2.0 */
/* Putting content from elsewhere (a registry:2 storage root, an offline bundle) into the store
 * and the index, offline, so that the mirror serves it as if it had pulled or been pushed it.
 *
 * - Nothing lands under a digest's name unverified: a blob is hashed while it is read (or, for
 *   a hard link, the linked inode itself is hashed) and published only when it matches; a
 *   partial copy lives in <storage>/tmp and the next store_open removes it. A blob already
 *   stored under its digest is not read again (the store only ever holds verified files).
 * - Idempotent: every adopt_* answers ADOPT_NEW when it changed the store or the index and
 *   ADOPT_SAME when it was there already, and then writes nothing (a second import leaves the
 *   database as it was, access times included).
 * - Exclusive: adopt_open takes an exclusive lock on the storage root (store_lock) before the
 *   store is opened; a daemon serving the store holds a shared one. So an import never runs
 *   while a daemon serves the store (its in-memory index, loaded at start-up, would not see the
 *   imported content, and its partial fills would be removed), and a daemon does not start
 *   while an import runs: adopt_open answers -EWOULDBLOCK and says so in err.
 * - Index changes are queued in memory and written synchronously by adopt_checkpoint (call it
 *   every few hundred items: what was written survives an interruption) and adopt_close. An
 *   interrupted import leaves verified files whose rows may be missing: running it again
 *   records them without reading them (and the daemon's start-up reconciliation would adopt
 *   them anyway).
 * - With an `s3` section in cfg, every new blob row (manifests included) is also recorded as
 *   waiting for the S3 tier (db_s3_pending): the daemon's next start writes it into the bucket.
 * - Blob rows get the import time as first-cached and last-access time: TTL GC counts from
 *   the import, not from when the content was first pulled elsewhere.
 *
 * Single-threaded, blocking. Digests are "sha256:<64 hex>" (others are refused: -EINVAL). */
#ifndef REGCACHE_MIGRATE_ADOPT_H
#define REGCACHE_MIGRATE_ADOPT_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct adopt;

/* What an adopt_* call did (negative values are -errno). */
enum { ADOPT_SAME = 0, ADOPT_NEW = 1 };

/* How a blob got into the store (adopt_blob_file's *how). */
enum adopt_how {
    ADOPT_PRESENT = 0, /* stored under its digest already: not read */
    ADOPT_LINKED,      /* hard-linked: same filesystem, no byte copied */
    ADOPT_COPIED,      /* copied through the store's verified write path */
};

/* Opens cfg->storage (creating it as the daemon would), takes the exclusive lock and reads what
 * the index holds. 0, or -errno with a message in err (naming the storage, or telling that a
 * daemon serves it: -EWOULDBLOCK). */
int adopt_open(const struct config *cfg, struct adopt **out, char *err, size_t errlen);
/* Writes the queued index changes and closes; 0, or -EIO when some could not be written (said
 * on stderr). a may be NULL. */
int adopt_close(struct adopt *a);
/* Writes the queued index changes now. 0 or -EIO. */
int adopt_checkpoint(struct adopt *a);

/* A blob from a file: path must be a regular file. Hard-linked into the store when it is on
 * the store's filesystem and linking works, else copied; hashed either way. ADOPT_NEW (also when
 * the file was stored but had no row) or ADOPT_SAME; *how and *size say what happened.
 * -EBADMSG: its bytes do not match digest (nothing stored); -ENOENT: path missing; -EINVAL: not
 * a regular file or digest not sha256; -ENOSPC, -EIO, ... */
int adopt_blob_file(struct adopt *a, const char *path, const char *digest, enum adopt_how *how,
                    uint64_t *size);
/* A blob from the next size bytes of fd (a pipe or a tar member: read sequentially, never
 * seeked), copied and hashed. As adopt_blob_file; -EPIPE when fd ends before size bytes. A
 * digest already stored is skipped over without hashing (its bytes are still read off fd). */
int adopt_blob_fd(struct adopt *a, int fd, uint64_t size, const char *digest, enum adopt_how *how);

/* A manifest's bytes. media_type: what came with it (its Content-Type; NULL or "" when unknown:
 * its own mediaType, else its shape, decides, as the proxy does: cache_check_manifest). The
 * bytes must hash to digest (-EBADMSG) and be a manifest the mirror serves (-EINVAL, why in
 * why). Stored with its manifest and blob rows. ADOPT_NEW or ADOPT_SAME. */
int adopt_manifest(struct adopt *a, const char *digest, const void *bytes, size_t len,
                   const char *media_type, char *why, size_t whylen);
/* The canonical media type of a manifest adopted or already in the index, NULL if unknown. */
const char *adopt_manifest_type(const struct adopt *a, const char *digest);

/* A cached tag of upstream (a configured upstream's name) pointing at an adopted manifest.
 * validated_ms: when the upstream last confirmed it; 0 makes the first pull revalidate it with
 * one HEAD (no GET when the digest did not move). Rewritten only when its digest differs.
 * ADOPT_NEW, ADOPT_SAME, or -ENOENT when the manifest is not known. */
int adopt_tag(struct adopt *a, const char *upstream, const char *repo, const char *tag,
              const char *digest, uint64_t validated_ms);
/* Repository upstream/repo references digest (what the GC and `regcache ls` count per
 * repository). Always queued: the row is written once however often it is given. */
void adopt_ref(struct adopt *a, const char *upstream, const char *repo, const char *digest);

/* Hosted repositories (names the config's hosted patterns match), recorded exactly as a push
 * records them (hosted_record_*). A blob uploaded to repo: it must be in the store already
 * (adopt_blob_*). ADOPT_NEW, ADOPT_SAME, -ENOENT. */
int adopt_hosted_blob(struct adopt *a, const char *repo, const char *digest);
/* A manifest pushed to repo (tag NULL: by digest): adopted already (adopt_manifest); every
 * blob and manifest it refers to must be in the store (-ENOENT otherwise, nothing recorded).
 * ADOPT_NEW when the manifest or the tag is new to repo, else ADOPT_SAME. */
int adopt_hosted_manifest(struct adopt *a, const char *repo, const char *tag, const char *digest);

struct adopt_counts {
    uint64_t blobs_linked, blobs_copied, blobs_present; /* adopt_blob_* by enum adopt_how */
    uint64_t bytes_linked, bytes_copied, bytes_present;
    uint64_t blob_rows_new; /* rows added (files stored or found) */
    uint64_t manifests_new, manifests_present;
    uint64_t tags_new, tags_present; /* cached and hosted tags */
    uint64_t hosted_new;             /* hosted blobs and manifests newly held */
};
const struct adopt_counts *adopt_counts(const struct adopt *a);

/* The store and the index, for callers that need more (bundles reading what is there). */
struct store *adopt_store(struct adopt *a);
struct db *adopt_db(struct adopt *a);

#endif
