/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>

#include "rules/rules.h"
#include "tests/unit/check.h"

static int judge(const struct rules *r, const char *user, const char *up, const char *repo,
                 const char *tag, int known, size_t *rule)
{
    struct rules_verdict v;
    rules_judge(r, user, up, repo, tag, known, &v);
    if (rule)
        *rule = v.rule;
    return v.allow;
}

/* First match wins; the default decides the rest. */
static void test_order(void)
{
    struct rules *r = rules_new();
    size_t rule;
    CHECK(rules_add(r, 0, "docker.io/library/ubuntu", NULL, 0) == NULL);
    CHECK(rules_add(r, 1, "*/library/*", NULL, 0) == NULL);
    CHECK(judge(r, NULL, "docker.io", "library/ubuntu", "22.04", 0, &rule) == 0);
    CHECK_EQ_INT(rule, 1);
    CHECK(judge(r, NULL, "docker.io", "library/alpine", "3.20", 0, &rule) == 1);
    CHECK_EQ_INT(rule, 2);
    CHECK(judge(r, NULL, "quay.io", "library/ubuntu", "1", 0, &rule) == 1); /* other upstream */
    CHECK(judge(r, NULL, "docker.io", "team/app", "1", 0, &rule) == 1);
    CHECK_EQ_INT(rule, 0); /* the default: allow */
    rules_set_default(r, 0);
    CHECK(judge(r, NULL, "docker.io", "team/app", "1", 0, &rule) == 0);
    CHECK(judge(r, NULL, NULL, "library/x", "1", 0, &rule) == 1); /* hosted: upstream * only */
    CHECK(judge(r, NULL, NULL, "library/ubuntu", "1", 0, &rule) == 1);
    CHECK_STR(rules_text(r, 1), "deny docker.io/library/ubuntu:*");
    CHECK_STR(rules_text(r, 2), "allow */library/*:*");
    rules_free(r);
}

/* Digests: a deny rule naming tags never matches one; an allow rule naming tags matches only
 * what the repository is known to reference; a rule for every tag matches any. */
static void test_digests(void)
{
    struct rules *r = rules_new();
    rules_set_default(r, 0);
    CHECK(rules_add(r, 0, "docker.io/library/alpine:edge", NULL, 0) == NULL);
    CHECK(rules_add(r, 1, "docker.io/library/alpine:3.*", NULL, 0) == NULL);
    CHECK(rules_add(r, 0, "docker.io/library/ubuntu", NULL, 0) == NULL);
    CHECK(rules_add(r, 1, "docker.io/library/*", NULL, 0) == NULL);
    CHECK(judge(r, NULL, "docker.io", "library/alpine", "edge", 0, NULL) == 0);
    CHECK(judge(r, NULL, "docker.io", "library/alpine", "3.20", 0, NULL) == 1);
    CHECK(judge(r, NULL, "docker.io", "library/alpine", "latest", 0, NULL) == 1); /* rule 4 */
    CHECK(judge(r, NULL, "docker.io", "library/alpine", NULL, 1, NULL) == 1);
    CHECK(judge(r, NULL, "docker.io", "library/ubuntu", NULL, 1, NULL) == 0);
    CHECK(judge(r, NULL, "docker.io", "library/ubuntu", NULL, 0, NULL) == 0);
    rules_free(r);

    r = rules_new();
    rules_set_default(r, 0);
    CHECK(rules_add(r, 1, "docker.io/library/alpine:3.*", NULL, 0) == NULL);
    CHECK(judge(r, NULL, "docker.io", "library/alpine", NULL, 1, NULL) == 1);
    CHECK(judge(r, NULL, "docker.io", "library/alpine", NULL, 0, NULL) == 0);
    CHECK(rules_listable(r, NULL, "docker.io", "library/alpine"));
    CHECK(!rules_listable(r, NULL, "docker.io", "library/ubuntu"));
    rules_free(r);
}

/* Users, groups and anonymous. */
static void test_users(void)
{
    struct rules *r = rules_new();
    const char *ci[] = {"alice", "bob"}, *sel[] = {"@ci"}, *anon[] = {"anonymous"},
               *carol[] = {"carol"}, *bad[] = {"@ops"};
    CHECK(rules_add_group(r, "ci", ci, 2) == NULL);
    CHECK(rules_add_group(r, "ci", ci, 2) != NULL);
    CHECK(rules_add(r, 1, "*/private/*", sel, 1) == NULL);
    CHECK(rules_add(r, 1, "*/private/carol", carol, 1) == NULL);
    CHECK(rules_add(r, 0, "*/private/*", NULL, 0) == NULL);
    CHECK(rules_add(r, 0, "*/public/secret", anon, 1) == NULL);
    CHECK(rules_add(r, 1, "*/x", bad, 1) != NULL);
    CHECK(judge(r, "alice", "docker.io", "private/app", "1", 0, NULL) == 1);
    CHECK(judge(r, "bob", "docker.io", "private/app", "1", 0, NULL) == 1);
    CHECK(judge(r, "carol", "docker.io", "private/app", "1", 0, NULL) == 0);
    CHECK(judge(r, "carol", "docker.io", "private/carol", "1", 0, NULL) == 1);
    CHECK(judge(r, NULL, "docker.io", "private/app", "1", 0, NULL) == 0);
    CHECK(judge(r, NULL, "docker.io", "public/secret", "1", 0, NULL) == 0);
    CHECK(judge(r, "alice", "docker.io", "public/secret", "1", 0, NULL) == 1);
    rules_free(r);
}

static void test_bad_patterns(void)
{
    struct rules *r = rules_new();
    CHECK(rules_add(r, 1, "alpine", NULL, 0) != NULL);
    CHECK(rules_add(r, 1, "/alpine", NULL, 0) != NULL);
    CHECK(rules_add(r, 1, "docker.io/", NULL, 0) != NULL);
    CHECK(rules_add(r, 1, "docker.io/a[b", NULL, 0) != NULL);
    CHECK(rules_add(r, 1, "docker.io/A", NULL, 0) != NULL);
    CHECK(rules_add(r, 1, "docker.io/a:", NULL, 0) != NULL);
    CHECK(rules_add(r, 1, "dock*/a", NULL, 0) != NULL);
    CHECK(rules_add(r, 1, "docker.io/a:V1.[0-9]*", NULL, 0) == NULL);
    CHECK(rules_add(r, 1, "*/**", NULL, 0) == NULL);
    CHECK_EQ_INT(rules_count(r), 2);
    rules_free(r);
}

int main(void)
{
    test_order();
    test_digests();
    test_users();
    test_bad_patterns();
    CHECK_DONE();
}
