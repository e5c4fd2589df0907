/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for cache/l2_records.c: the S3 tier's manifest and tag keys, and the tag record
 * written and read back, with the records it refuses. */
#include <errno.h>
#include <string.h>

#include "cache/impl.h"
#include "check.h"
#include "util/buf.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define MT "application/vnd.docker.distribution.manifest.v2+json"

static void test_keys(void)
{
    char k[300];
    CHECK_EQ_INT(l2_manifest_key(D1, k, sizeof(k)), 0);
    CHECK_STR(k, "manifests/sha256/11/1111111111111111111111111111111111111111111111111111111111111111");
    CHECK_EQ_INT(l2_manifest_key("sha512:11", k, sizeof(k)), -EINVAL);
    CHECK_EQ_INT(l2_manifest_key(D1, k, 20), -ENAMETOOLONG);
    CHECK_EQ_INT(l2_tag_key("docker.io", "library/x", "1.2-rc_3", k, sizeof(k)), 0);
    CHECK_STR(k, "tags/docker.io/library/x/1.2-rc_3");
    CHECK_EQ_INT(l2_tag_key("registry:5000", "a/b/c", "latest", k, sizeof(k)), 0);
    CHECK_STR(k, "tags/registry:5000/a/b/c/latest");
    /* nothing a key could read two ways, or climb out of its prefix with */
    CHECK_EQ_INT(l2_tag_key("docker.io", "library/x", "a/b", k, sizeof(k)), -EINVAL);
    CHECK_EQ_INT(l2_tag_key("docker.io", "library//x", "1", k, sizeof(k)), -EINVAL);
    CHECK_EQ_INT(l2_tag_key("docker.io", "library/x/", "1", k, sizeof(k)), -EINVAL);
    CHECK_EQ_INT(l2_tag_key("docker.io", "../x", "1", k, sizeof(k)), -EINVAL);
    CHECK_EQ_INT(l2_tag_key("docker.io", "x", "..", k, sizeof(k)), -EINVAL);
    CHECK_EQ_INT(l2_tag_key("", "x", "1", k, sizeof(k)), -EINVAL);
    CHECK_EQ_INT(l2_tag_key("docker.io", "x", "a b", k, sizeof(k)), -EINVAL);
    CHECK_EQ_INT(l2_tag_key("docker.io", "x", "1", k, 10), -ENAMETOOLONG);
}

static int parse(const char *body, const char *tag, struct l2_tag_record *r, char *why)
{
    return l2_tag_record_parse(body, strlen(body), "docker.io", "library/x", tag, r, why, 200);
}

static void test_record_round_trip(void)
{
    struct buf b;
    buf_init(&b, 4096);
    CHECK_EQ_INT(l2_tag_record_format(&b, "docker.io", "library/x", "1", D1, MT, 1700000000123ULL),
                 0);
    buf_terminate(&b);
    struct l2_tag_record r;
    char why[200] = "";
    CHECK_EQ_INT(parse(b.data, "1", &r, why), 0);
    CHECK_STR(r.digest, D1);
    CHECK_STR(r.media_type, MT);
    CHECK_EQ_U64(r.confirmed_ms, 1700000000123ULL);
    /* read for another tag: refused */
    CHECK_EQ_INT(parse(b.data, "2", &r, why), -EINVAL);
    CHECK_CONTAINS(why, "its tag is not 2");
    buf_free(&b);
}

static void test_bad_records(void)
{
    struct l2_tag_record r;
    char why[200];
    static const struct {
        const char *body, *why;
    } bad[] = {
        {"not json", "not JSON"},
        {"[1,2]", "upstream"},
        {"{\"upstream\":\"quay.io\",\"repository\":\"library/x\",\"tag\":\"1\"}", "upstream"},
        {"{\"upstream\":\"docker.io\",\"repository\":\"library/y\",\"tag\":\"1\"}", "repository"},
        {"{\"upstream\":\"docker.io\",\"repository\":\"library/x\",\"tag\":\"1\","
         "\"digest\":\"sha256:12\",\"mediaType\":\"" MT "\",\"confirmed\":1}", "digest"},
        {"{\"upstream\":\"docker.io\",\"repository\":\"library/x\",\"tag\":\"1\","
         "\"digest\":\"" D1 "\",\"mediaType\":\"text/html\",\"confirmed\":1}", "media type"},
        {"{\"upstream\":\"docker.io\",\"repository\":\"library/x\",\"tag\":\"1\","
         "\"digest\":\"" D1 "\",\"mediaType\":\"" MT "\"}", "confirmed"},
        {"{\"upstream\":\"docker.io\",\"repository\":\"library/x\",\"tag\":\"1\","
         "\"digest\":\"" D1 "\",\"mediaType\":\"" MT "\",\"confirmed\":-5}", "confirmed"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        CHECK_EQ_INT(parse(bad[i].body, "1", &r, why), -EINVAL);
        CHECK_CONTAINS(why, bad[i].why);
    }
}

int main(void)
{
    test_keys();
    test_record_round_trip();
    test_bad_records();
    CHECK_DONE();
}
