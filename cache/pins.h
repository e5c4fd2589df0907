/* SPDX-License-Identifier: Apache-2.0 */
/* Pins: references whose content no GC evicts, neither for the TTL nor for a size cap.
 *
 * A reference is [upstream/]repository[:tag][@digest], routed as the mirror routes a request
 * (the upstream its first component names, else the first upstream); the tag may be a glob
 * (library/postgres:16*). What it pins is the closure of what it reaches in the store: the
 * manifest each matching tag points at (or the digest), an index's child manifests (all, or
 * those for the listed platforms), and each image manifest's config and layers. Every pinned
 * digest carries its reason: "pin: <reference>" for the pin list, "prefetch: <reference>" for
 * the prefetch list (which keeps what it fetches while it is listed).
 *
 * A pin set is built in two steps: the roots from the tags the index knows (loop thread, or an
 * admin command's own reading of the database), then pin_set_close, which reads manifests from
 * the store (blocking: the thread pool, or a command). */
#ifndef REGCACHE_CACHE_PINS_H
#define REGCACHE_CACHE_PINS_H

#include <stddef.h>
#include <stdint.h>

#include "bundle/layout.h"
#include "config/config.h"

#define PIN_REASON_MAX 600

struct pin_ref {
    const char *text; /* as configured */
    char reason[PIN_REASON_MAX]; /* "pin: <text>" or "prefetch: <text>" */
    int prefetch;
    char upstream[256];
    char repo[REF_NAME_MAX + 1];
    char tag[REF_TAG_MAX * 2 + 1]; /* a tag or a tag glob; "" when named by digest */
    int glob;                      /* tag holds * ? or [ */
    char digest[REF_DIGEST_MAX + 1]; /* "" when named by tag */
    struct bundle_platform platforms[BUNDLE_PLATFORMS_MAX]; /* of an index: these only */
    size_t n_platforms;                                      /* 0: every platform */
};

struct pins;
struct pin_set;
struct store;

/* Routes one reference (prefetch: from the prefetch list, with its platforms). 0, or -EINVAL
 * with the reference and why in err. */
int pins_parse_ref(const struct config *cfg, const char *text, int prefetch,
                   struct pin_ref *out, char *err, size_t errlen);

/* The pin and prefetch lists of cfg (which must outlive it). 0, or -EINVAL with the list, the
 * reference and why in err. */
int pins_new(const struct config *cfg, struct pins **out, char *err, size_t errlen);
void pins_free(struct pins *p);
size_t pins_count(const struct pins *p);
const struct pin_ref *pins_ref(const struct pins *p, size_t i);

/* Does ref name tag of upstream/repo (a glob matching it, or the very tag)? */
int pin_ref_matches_tag(const struct pin_ref *r, const char *upstream, const char *repo,
                        const char *tag);

struct pin_set *pin_set_new(void);
void pin_set_free(struct pin_set *s);
/* A root: digest (a manifest), pinned for r. First reason wins. 0 or -ENOMEM. */
int pin_set_add(struct pin_set *s, const struct pin_ref *r, const char *digest);
/* Roots for every reference of p that names tag (upstream/repo:tag -> digest), and for every
 * reference by digest (with tag NULL: those only). */
int pins_add_tag(const struct pins *p, struct pin_set *s, const char *upstream,
                 const char *repo, const char *tag, const char *digest);
int pins_add_digests(const struct pins *p, struct pin_set *s);
/* Adds what the roots reach, reading manifests (at most max_manifest bytes each) from the
 * store. Blocking. 0 or -ENOMEM; a manifest not stored reaches nothing. */
int pin_set_close(struct pin_set *s, struct store *store, uint64_t max_manifest);

/* Why digest is pinned, or NULL when it is not. */
const char *pin_set_reason(const struct pin_set *s, const char *digest);
size_t pin_set_count(const struct pin_set *s);
/* Calls fn for every pinned digest with its reason; fn's non-zero return stops and is
 * returned. */
int pin_set_each(const struct pin_set *s, int (*fn)(void *ud, const char *digest,
                                                    const char *reason),
                 void *ud);

#endif
