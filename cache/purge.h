/* SPDX-License-Identifier: Apache-2.0 */
/* `regcache purge`: removes one image, a whole repository or one digest from the cache, safely
 * next to running daemons. Blocking (the command runs it directly).
 *
 * - A tag (upstream/repo:tag): the tag, and the manifests and blobs it reaches that no other
 *   cached content still needs.
 * - A repository (upstream/repo): its tags and every manifest and blob pulled through it, except
 *   what other cached content still needs.
 * - A digest (or upstream/repo@digest): that one file and the tags pointing at it, even when
 *   cached manifests still name it (the next pull fetches it again).
 * Content is still needed when a remaining tag or any other cached manifest reaches it, or a
 * repository other than the purged one pulled it. Hosted content is never purged.
 *
 * The index is changed first, in one transaction that also journals what went (db_purge), then
 * the files are removed: a reader holding one open keeps its bytes. Running daemons read the
 * journal and stop serving what went; purge_wait lets the command wait for them. */
#ifndef REGCACHE_CACHE_PURGE_H
#define REGCACHE_CACHE_PURGE_H

#include <stddef.h>
#include <stdint.h>

struct db;
struct store;

enum purge_kind { PURGE_TAG, PURGE_REPO, PURGE_DIGEST };

struct purge_target {
    enum purge_kind kind;
    char upstream[256], repo[512], tag[256], digest[136];
};

/* Parses "upstream/repo:tag", "upstream/repo", "upstream/repo@digest" or "digest". 0, or
 * -EINVAL with why in err. */
int purge_parse(const char *s, struct purge_target *t, char *err, size_t len);

/* Whether digest is pinned (never purged): a pinned digest a tag or repository reaches is kept
 * and reported, a pinned digest named by itself is refused. NULL: nothing is pinned. */
typedef int (*purge_pinned_fn)(void *ud, const char *digest);

struct purge_options {
    const struct purge_target *target;
    int dry_run;
    uint64_t now_ms;
    purge_pinned_fn pinned;
    void *pinned_ud;
};

struct purge_file {
    char digest[136];
    uint64_t size;
    int manifest;
};

struct purge_report {
    char **tags; /* "upstream/repo:tag" removed (or, dry run, to be removed) */
    size_t n_tags;
    struct purge_file *files; /* removed (to be removed) */
    size_t n_files;
    uint64_t bytes;
    size_t kept_shared, kept_pinned; /* reached, but kept: still needed, pinned */
    char **pinned;                   /* the digests kept for being pinned */
    int64_t seq;                     /* the journal's last row, 0 when nothing was written */
};

/* 0 with the report; -ENOENT when the target is not cached, -EPERM when it is a pinned digest,
 * other -errno on failure; err says why. */
int purge_run(struct db *db, struct store *store, const struct purge_options *o,
              struct purge_report *r, char *err, size_t len);
void purge_report_free(struct purge_report *r);

/* Waits up to timeout_ms until every running daemon has applied the journal up to seq. Returns
 * how many daemons have not (0: all did, or none runs); their pids go into lagging (up to
 * max). */
size_t purge_wait(struct db *db, int64_t seq, uint64_t timeout_ms, long *lagging, size_t max);

#endif
