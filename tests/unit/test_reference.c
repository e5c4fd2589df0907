/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for util/reference.c: repository names, tags and digests. */
#include <stdlib.h>

#include "check.h"
#include "util/reference.h"

#define NAME_OK(s) CHECK(ref_name_valid((s), strlen(s)))
#define NAME_BAD(s) CHECK(!ref_name_valid((s), strlen(s)))
#define TAG_OK(s) CHECK(ref_tag_valid((s), strlen(s)))
#define TAG_BAD(s) CHECK(!ref_tag_valid((s), strlen(s)))
#define DIGEST_OK(s) CHECK(ref_digest_valid((s), strlen(s)))
#define DIGEST_BAD(s) CHECK(!ref_digest_valid((s), strlen(s)))

static const char hex64[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* A string of n copies of c (callers free it). */
static char *rep(char c, size_t n)
{
    char *s = malloc(n + 1);

    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_names(void)
{
    char *s;

    NAME_OK("a");
    NAME_OK("0");
    NAME_OK("alpine");
    NAME_OK("library/alpine");
    NAME_OK("docker.io/library/alpine");
    NAME_OK("a/b/c/d/e/f");
    NAME_OK("a.b");
    NAME_OK("a_b");
    NAME_OK("a__b");
    NAME_OK("a-b");
    NAME_OK("a--b");
    NAME_OK("a---------b");
    NAME_OK("a.b_c__d-e--f");
    NAME_OK("a1.b2/c3");
    NAME_OK("0.0/9-9");

    NAME_BAD("");
    NAME_BAD("A");
    NAME_BAD("Alpine");
    NAME_BAD("library/Alpine");
    NAME_BAD("a___b");
    NAME_BAD("a..b");
    NAME_BAD("..");
    NAME_BAD(".");
    NAME_BAD("a/..");
    NAME_BAD("../a");
    NAME_BAD("a/../b");
    NAME_BAD("a._b");
    NAME_BAD("a_.b");
    NAME_BAD("a-.b");
    NAME_BAD("a.-b");
    NAME_BAD("a_-b");
    NAME_BAD("a-_b");
    NAME_BAD(".a");
    NAME_BAD("a.");
    NAME_BAD("_a");
    NAME_BAD("a_");
    NAME_BAD("-a");
    NAME_BAD("a-");
    NAME_BAD("a__");
    NAME_BAD("/a");
    NAME_BAD("a/");
    NAME_BAD("a//b");
    NAME_BAD("/");
    NAME_BAD("a/.b");
    NAME_BAD("a b");
    NAME_BAD("a:b");
    NAME_BAD("a@b");
    NAME_BAD("a\\b");
    NAME_BAD("a%2fb");
    NAME_BAD("\xc3\xa9");
    NAME_BAD("a\nb");

    /* Not NUL-terminated: only len bytes count. */
    CHECK(ref_name_valid("abc/../x", 3));
    CHECK(!ref_name_valid("abc/../x", 4));
    CHECK(!ref_name_valid("abc", 0));
    CHECK(!ref_name_valid(NULL, 0));
    CHECK(!ref_name_valid("a\0b", 3)); /* an embedded NUL is not a valid byte */

    /* Total length 255 vs 256, both single component and split ones. */
    s = rep('a', REF_NAME_MAX);
    CHECK(ref_name_valid(s, REF_NAME_MAX));
    s[100] = '/';
    CHECK(ref_name_valid(s, REF_NAME_MAX));
    free(s);
    s = rep('a', REF_NAME_MAX + 1);
    CHECK(!ref_name_valid(s, REF_NAME_MAX + 1));
    s[100] = '/';
    CHECK(!ref_name_valid(s, REF_NAME_MAX + 1));
    CHECK(ref_name_valid(s, REF_NAME_MAX)); /* prefix of it is fine */
    free(s);
}

static void test_tags(void)
{
    char *s;

    TAG_OK("latest");
    TAG_OK("v1.2.3");
    TAG_OK("V1");
    TAG_OK("_");
    TAG_OK("_x");
    TAG_OK("0");
    TAG_OK("3.19-alpine_AMD64");
    TAG_OK("a..b");
    TAG_OK("a--");
    TAG_OK("a__");
    TAG_OK("a.");

    TAG_BAD("");
    TAG_BAD(".latest");
    TAG_BAD("-latest");
    TAG_BAD(".");
    TAG_BAD("..");
    TAG_BAD("a/b");
    TAG_BAD("a:b");
    TAG_BAD("a b");
    TAG_BAD("a+b");
    TAG_BAD("a@b");
    TAG_BAD("sha256:abc");
    TAG_BAD("\xc3\xa9");
    CHECK(!ref_tag_valid(NULL, 0));
    CHECK(!ref_tag_valid("a\0", 2));
    CHECK(ref_tag_valid("v1/../x", 2));

    s = rep('a', REF_TAG_MAX + 1);
    CHECK(ref_tag_valid(s, REF_TAG_MAX));
    CHECK(!ref_tag_valid(s, REF_TAG_MAX + 1));
    s[0] = '_';
    CHECK(ref_tag_valid(s, REF_TAG_MAX));
    s[0] = '.';
    CHECK(!ref_tag_valid(s, REF_TAG_MAX));
    free(s);
}

static void test_digests(void)
{
    char buf[300];
    char *up;

    snprintf(buf, sizeof(buf), "sha256:%s", hex64);
    DIGEST_OK(buf);
    CHECK(ref_digest_is_sha256(buf, strlen(buf)));
    CHECK_EQ_INT(strlen(buf), 71);

    /* sha512: 128 hex, exactly REF_DIGEST_MAX long. */
    snprintf(buf, sizeof(buf), "sha512:%s%s", hex64, hex64);
    CHECK_EQ_INT(strlen(buf), REF_DIGEST_MAX);
    DIGEST_OK(buf);
    CHECK(!ref_digest_is_sha256(buf, strlen(buf)));
    CHECK(!ref_digest_valid(buf, strlen(buf) - 1)); /* 127 hex */
    strcat(buf, "0");
    DIGEST_BAD(buf); /* 129 hex */

    /* sha512 prefix with only 64 hex, sha256 with 128 hex. */
    snprintf(buf, sizeof(buf), "sha512:%s", hex64);
    DIGEST_BAD(buf);
    snprintf(buf, sizeof(buf), "sha256:%s%s", hex64, hex64);
    DIGEST_BAD(buf);
    CHECK(!ref_digest_is_sha256(buf, strlen(buf)));

    /* 63 and 65 hex digits. */
    snprintf(buf, sizeof(buf), "sha256:%.63s", hex64);
    DIGEST_BAD(buf);
    CHECK(!ref_digest_is_sha256(buf, strlen(buf)));
    snprintf(buf, sizeof(buf), "sha256:%s0", hex64);
    DIGEST_BAD(buf);
    CHECK(!ref_digest_is_sha256(buf, strlen(buf)));

    /* Uppercase hex, non-hex, uppercase algorithm, unknown algorithm, bad separators. */
    snprintf(buf, sizeof(buf), "sha256:%s", hex64);
    up = strchr(buf, 'a');
    *up = 'A';
    DIGEST_BAD(buf);
    CHECK(!ref_digest_is_sha256(buf, strlen(buf)));
    *up = 'g';
    DIGEST_BAD(buf);
    *up = 'a';
    buf[7 + 63] = ' ';
    DIGEST_BAD(buf);
    snprintf(buf, sizeof(buf), "SHA256:%s", hex64);
    DIGEST_BAD(buf);
    snprintf(buf, sizeof(buf), "sha384:%s", hex64);
    DIGEST_BAD(buf);
    snprintf(buf, sizeof(buf), "md5:%s", hex64);
    DIGEST_BAD(buf);
    snprintf(buf, sizeof(buf), "sha256%s", hex64);
    DIGEST_BAD(buf);
    snprintf(buf, sizeof(buf), "sha256=%s", hex64);
    DIGEST_BAD(buf);
    snprintf(buf, sizeof(buf), "sha256::%.63s", hex64);
    DIGEST_BAD(buf);
    snprintf(buf, sizeof(buf), " sha256:%.63s", hex64);
    DIGEST_BAD(buf);
    snprintf(buf, sizeof(buf), "sha256+b64u:%s", hex64);
    DIGEST_BAD(buf);
    DIGEST_BAD("");
    DIGEST_BAD("sha256:");
    DIGEST_BAD("sha256");
    DIGEST_BAD(":");
    CHECK(!ref_digest_valid(NULL, 0));
    CHECK(!ref_digest_is_sha256(NULL, 0));

    /* Not NUL-terminated: a valid digest followed by more bytes. */
    snprintf(buf, sizeof(buf), "sha256:%s/blobs", hex64);
    CHECK(ref_digest_valid(buf, 71));
    CHECK(ref_digest_is_sha256(buf, 71));
    CHECK(!ref_digest_valid(buf, 72));
    CHECK(!ref_digest_valid(buf, 70));
}

int main(void)
{
    test_names();
    test_tags();
    test_digests();
    CHECK_DONE();
}
