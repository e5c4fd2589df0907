/* SPDX-License-Identifier: Apache-2.0 */
/* Pull rules: an ordered list of allow and deny rules, each naming an upstream, a repository
 * glob, a tag glob and optionally the users it applies to; the first rule that matches decides,
 * else the default. Pure: no I/O, any thread once built.
 *
 * A rule's pattern is UPSTREAM/REPOSITORY[:TAG]: UPSTREAM is an upstream's name or "*" (any,
 * hosted repositories too), REPOSITORY and TAG are fnmatch(3) globs ("*" crosses "/"); TAG
 * defaults to "*". Users: htpasswd user names, "@group" for a group of rules_add_group, and
 * "anonymous" for callers without credentials; none listed: everyone.
 *
 * A digest reference (a manifest by digest, a blob) has no tag: a rule whose tag glob is "*"
 * matches it; a deny rule with a narrower tag glob never does (a digest is not a tag); an allow
 * rule with a narrower tag glob matches it only when the repository is known to reference the
 * digest (it came with content served under the repository, which passed the rules). So an
 * allow list of tags admits those tags' manifests and layers, and nothing else by digest. */
#ifndef REGCACHE_RULES_RULES_H
#define REGCACHE_RULES_RULES_H

#include <stddef.h>

#define RULES_MAX 1024
#define RULES_TEXT_MAX 560 /* "allow UPSTREAM/REPOSITORY:TAG" */

struct rules;

struct rules *rules_new(void);
void rules_free(struct rules *r);
void rules_set_default(struct rules *r, int allow);
/* Each returns NULL, or why the rule or group is refused (a static string). A user selector
 * "@name" must name a group added before. */
const char *rules_add_group(struct rules *r, const char *name, const char *const *users,
                            size_t n_users);
const char *rules_add(struct rules *r, int allow, const char *pattern, const char *const *users,
                      size_t n_users);
size_t rules_count(const struct rules *r);
/* Rule i's upstream (1-based), NULL when it is "*". */
const char *rules_upstream(const struct rules *r, size_t i);
/* "deny docker.io/library/ubuntu:*" for rule i (1-based). */
const char *rules_text(const struct rules *r, size_t i);

struct rules_verdict {
    int allow;
    size_t rule; /* 1-based index of the deciding rule; 0: the default decided */
};
/* user: NULL for an anonymous caller. upstream: NULL for a hosted repository. tag: NULL for a
 * digest reference, and then known says whether repo is known to reference the digest. */
void rules_judge(const struct rules *r, const char *user, const char *upstream, const char *repo,
                 const char *tag, int known, struct rules_verdict *v);
/* Whether a listing (catalog, tags list) may show repo: some rule may allow a pull from it. */
int rules_listable(const struct rules *r, const char *user, const char *upstream,
                   const char *repo);

#endif
