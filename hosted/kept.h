/* SPDX-License-Identifier: Apache-2.0 */
/* The bytes of hosted manifests kept in memory, so that a hit on the first loop reads no file:
 * by digest (a manifest's bytes are its digest's, whatever repository or tag names it), the
 * least recently used out past a byte budget. An entry holds only under the content epoch
 * (util/epoch.h) it was read in: a push, a delete or a removal from the store ends them all.
 * Whether a repository has the manifest, and under which tag, is still asked of the hosted
 * maps first; this only spares the read. One loop's: no locking. */
#ifndef REGCACHE_HOSTED_KEPT_H
#define REGCACHE_HOSTED_KEPT_H

#include <stddef.h>
#include <stdint.h>

#define HOSTED_KEPT_BYTES (16u << 20)

struct kept_manifests;

struct kept_manifests *kept_new(size_t max_bytes);
void kept_free(struct kept_manifests *k);
/* The bytes of digest read under epoch (valid until the next call), or NULL; an entry of
 * another epoch is dropped. */
const char *kept_get(struct kept_manifests *k, const char *digest, uint64_t epoch, size_t *len);
/* Keeps a copy of data for digest, read under epoch (nothing when it does not fit). */
void kept_put(struct kept_manifests *k, const char *digest, uint64_t epoch, const char *data,
              size_t len);
size_t kept_bytes(const struct kept_manifests *k);
size_t kept_count(const struct kept_manifests *k);

#endif
