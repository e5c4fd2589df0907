/* SPDX-License-Identifier: Apache-2.0 */
/* The members of a cluster of replicas, and who owns what: every key (a blob's digest, or
 * "upstream/repo:tag" for a tag) is ranked over the members by rendezvous hashing (HRW), and
 * its owner is the first member in that order that is up. Removing a member moves only the
 * keys it owned; adding one takes about 1/N of the keys from the others.
 *
 * A member's weight for a key is the first 8 bytes (big-endian) of
 * SHA-256(member URL '\n' key); higher ranks first, equal weights by URL. Member URLs are
 * normalised to scheme://host[:port] (lower-case scheme and host, no trailing slash). Pure
 * apart from the up/down marks, which the caller keeps current: loop thread only. */
#ifndef REGCACHE_CLUSTER_MEMBERS_H
#define REGCACHE_CLUSTER_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#define MEMBERS_MAX 64
#define MEMBERS_URL_MAX 256

struct members;

/* A set from urls (n of them, 1..MEMBERS_MAX); self_url must be one of them. 0, or -EINVAL
 * with the reason in why (a URL that is not http(s)://host[:port], a duplicate after
 * normalisation, self not listed), or -ENOMEM. */
int members_new(const char *const *urls, size_t n, const char *self_url, struct members **out,
                char *why, size_t whylen);
void members_free(struct members *m);

size_t members_count(const struct members *m);
size_t members_self(const struct members *m);
/* The normalised URL of member i. */
const char *members_url(const struct members *m, size_t i);
/* The index of a member given by URL (normalised first), or -1. */
int members_find(const struct members *m, const char *url);

/* Marks member i up or down since at_ms; self is always up. */
void members_set_up(struct members *m, size_t i, int up, uint64_t at_ms);
int members_is_up(const struct members *m, size_t i);
uint64_t members_since_ms(const struct members *m, size_t i);

/* Every member in key's HRW order into order (room for members_count entries). */
void members_order(const struct members *m, const char *key, size_t *order);
/* The first member in key's order that is up (self when every other is down). */
size_t members_owner(const struct members *m, const char *key);
/* The first member after `after` in key's order that is up, or -1: who takes over when
 * `after` fails. */
int members_successor(const struct members *m, const char *key, size_t after);

/* URL normalised into out: 0, or -EINVAL. */
int members_normalise(const char *url, char *out, size_t len);

#endif
