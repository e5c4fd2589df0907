/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for cache/purge.c's target parsing: tags, repositories, digests, refusals. */
#include <errno.h>
#include <string.h>

#include "cache/purge.h"
#include "check.h"

#define D "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_targets(void)
{
    struct purge_target t;
    char err[256];
    CHECK_EQ_INT(purge_parse("docker.io/library/alpine:3.20", &t, err, sizeof(err)), 0);
    CHECK_EQ_INT(t.kind, PURGE_TAG);
    CHECK(strcmp(t.upstream, "docker.io") == 0);
    CHECK(strcmp(t.repo, "library/alpine") == 0);
    CHECK(strcmp(t.tag, "3.20") == 0);

    /* a port in the upstream's name is not a tag */
    CHECK_EQ_INT(purge_parse("localhost:5001/team/app", &t, err, sizeof(err)), 0);
    CHECK_EQ_INT(t.kind, PURGE_REPO);
    CHECK(strcmp(t.upstream, "localhost:5001") == 0);
    CHECK(strcmp(t.repo, "team/app") == 0);

    CHECK_EQ_INT(purge_parse(D, &t, err, sizeof(err)), 0);
    CHECK_EQ_INT(t.kind, PURGE_DIGEST);
    CHECK(strcmp(t.digest, D) == 0);
    CHECK_EQ_INT(purge_parse("quay.io/team/app@" D, &t, err, sizeof(err)), 0);
    CHECK_EQ_INT(t.kind, PURGE_DIGEST);
    CHECK(strcmp(t.digest, D) == 0);
}

static void test_refused(void)
{
    static const char *const bad[] = {
        "alpine", "sha256:abc", "/library/alpine", "docker.io/", "docker.io/library/alpine:",
        "docker.io/:tag", "docker.io/app@sha256:zz",
    };
    struct purge_target t;
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK_EQ_INT(purge_parse(bad[i], &t, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "expected upstream/repository") != NULL);
    }
}

int main(void)
{
    test_targets();
    test_refused();
    CHECK_DONE();
}
