/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for s3/sigv4.c: the published SigV4 test-suite cases and the S3 documentation's
 * examples (their inputs and expected signatures), then the encoding rules and the limits. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "s3/sigv4.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define T_20150830_123600 1440938160 /* the test suite's date */
#define T_20130524 1369353600        /* the S3 examples' date */

static struct sigv4_request suite(const char *method, const char *path)
{
    return (struct sigv4_request){
        .method = method, .host = "example.amazonaws.com", .path = path,
        .payload_sha256 = EMPTY_SHA256, .time = T_20150830_123600, .region = "us-east-1",
        .service = "service", .access_key = "AKIDEXAMPLE",
        .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"};
}

static struct sigv4_request s3_example(const char *method, const char *path)
{
    return (struct sigv4_request){
        .method = method, .host = "examplebucket.s3.amazonaws.com", .path = path,
        .payload_sha256 = EMPTY_SHA256, .time = T_20130524, .region = "us-east-1",
        .service = "s3", .access_key = "AKIAIOSFODNN7EXAMPLE",
        .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"};
}

static void test_suite_cases(void)
{
    struct sigv4_signed s;
    struct sigv4_request r = suite("GET", "/");
    CHECK_EQ_INT(sigv4_sign(&r, &s), 0);
    CHECK_STR(s.amz_date, "20150830T123600Z");
    CHECK_STR(s.signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    CHECK_STR(s.authorization,
              "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
              "SignedHeaders=host;x-amz-date, "
              "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");

    /* get-vanilla-query-order-key-case: parameters given out of order are sorted */
    struct sigv4_pair q[] = {{"Param2", "value2"}, {"Param1", "value1"}};
    r.query = q;
    r.n_query = 2;
    CHECK_EQ_INT(sigv4_sign(&r, &s), 0);
    CHECK_STR(s.signature, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
    struct sigv4_pair sorted[] = {{"Param1", "value1"}, {"Param2", "value2"}};
    r.query = sorted;
    CHECK_EQ_INT(sigv4_sign(&r, &s), 0);
    CHECK_STR(s.signature, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

static void test_s3_examples(void)
{
    struct sigv4_signed s;
    /* GET Object with a Range */
    struct sigv4_request r = s3_example("GET", "/test.txt");
    struct sigv4_pair get_h[] = {{"Range", "bytes=0-9"}, {"x-amz-content-sha256", EMPTY_SHA256}};
    r.headers = get_h;
    r.n_headers = 2;
    CHECK_EQ_INT(sigv4_sign(&r, &s), 0);
    CHECK_STR(s.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    CHECK_CONTAINS(s.authorization, "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,");
    CHECK_CONTAINS(s.authorization, "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/");

    /* PUT Object: a '$' in the key is encoded, headers sorted by lower-cased name */
    const char *put_sha = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
    r = s3_example("PUT", "/test$file.text");
    struct sigv4_pair put_h[] = {{"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                                 {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                 {"x-amz-content-sha256", put_sha}};
    r.headers = put_h;
    r.n_headers = 3;
    r.payload_sha256 = put_sha;
    CHECK_EQ_INT(sigv4_sign(&r, &s), 0);
    CHECK_STR(s.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    CHECK_CONTAINS(s.authorization,
                   "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,");

    /* GET Bucket lifecycle: a parameter without a value is signed as "lifecycle=" */
    r = s3_example("GET", "/");
    struct sigv4_pair ls_h[] = {{"x-amz-content-sha256", EMPTY_SHA256}};
    struct sigv4_pair lifecycle[] = {{"lifecycle", NULL}};
    r.headers = ls_h;
    r.n_headers = 1;
    r.query = lifecycle;
    r.n_query = 1;
    CHECK_EQ_INT(sigv4_sign(&r, &s), 0);
    CHECK_STR(s.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    lifecycle[0].value = "";
    CHECK_EQ_INT(sigv4_sign(&r, &s), 0);
    CHECK_STR(s.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");

    /* GET Bucket (list objects) with two parameters given in reverse order */
    struct sigv4_pair list[] = {{"prefix", "J"}, {"max-keys", "2"}};
    r.query = list;
    r.n_query = 2;
    CHECK_EQ_INT(sigv4_sign(&r, &s), 0);
    CHECK_STR(s.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void test_presign(void)
{
    struct sigv4_request r = s3_example("GET", "/test.txt");
    char url[2048];
    CHECK_EQ_INT(sigv4_presign(&r, 86400, url, sizeof(url)), 0);
    CHECK_STR(url, "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                   "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                   "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                   "&X-Amz-Signature="
                   "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    CHECK_EQ_INT(sigv4_presign(&r, 0, url, sizeof(url)), -EINVAL);
    CHECK_EQ_INT(sigv4_presign(&r, 604801, url, sizeof(url)), -EINVAL);
    CHECK_EQ_INT(sigv4_presign(&r, 60, url, 40), -ENAMETOOLONG);
}

static void test_encoding(void)
{
    char out[128];
    CHECK_EQ_INT(sigv4_uri_encode("/a b/c~d_e.f-g/é", 1, out, sizeof(out)), 0);
    CHECK_STR(out, "/a%20b/c~d_e.f-g/%C3%A9");
    CHECK_EQ_INT(sigv4_uri_encode("a/b+c=d&e", 0, out, sizeof(out)), 0);
    CHECK_STR(out, "a%2Fb%2Bc%3Dd%26e");
    CHECK_EQ_INT(sigv4_uri_encode("abc", 0, out, 3), -ENAMETOOLONG);
    CHECK_EQ_INT(sigv4_uri_encode("abc", 0, out, 4), 0);

    /* header values are trimmed and inner runs of spaces collapsed: same signature */
    struct sigv4_signed a, b;
    struct sigv4_request r = suite("GET", "/");
    struct sigv4_pair plain[] = {{"My-Header1", "value1 value2"}};
    struct sigv4_pair spaced[] = {{"my-header1", "  value1    value2 \t"}};
    r.headers = plain;
    r.n_headers = 1;
    CHECK_EQ_INT(sigv4_sign(&r, &a), 0);
    r.headers = spaced;
    CHECK_EQ_INT(sigv4_sign(&r, &b), 0);
    CHECK_STR(a.signature, b.signature);
    CHECK(strcmp(a.signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"));

    /* a path is encoded once: a literal "%" becomes %25, so "/a%20b" and "/a b" differ */
    struct sigv4_request p1 = suite("GET", "/a b"), p2 = suite("GET", "/a%20b");
    CHECK_EQ_INT(sigv4_sign(&p1, &a), 0);
    CHECK_EQ_INT(sigv4_sign(&p2, &b), 0);
    CHECK(strcmp(a.signature, b.signature));
}

static void test_refusals(void)
{
    struct sigv4_signed s;
    struct sigv4_request r = suite("GET", "/");
    struct sigv4_pair dup[] = {{"X-A", "1"}, {"x-a", "2"}};
    r.headers = dup;
    r.n_headers = 2;
    CHECK_EQ_INT(sigv4_sign(&r, &s), -EINVAL); /* a header twice */
    struct sigv4_pair host[] = {{"Host", "other"}};
    r.headers = host;
    r.n_headers = 1;
    CHECK_EQ_INT(sigv4_sign(&r, &s), -EINVAL); /* host is the signer's */
    struct sigv4_pair empty[] = {{"", "x"}};
    r.headers = empty;
    CHECK_EQ_INT(sigv4_sign(&r, &s), -EINVAL);
    r = suite("GET", "relative");
    CHECK_EQ_INT(sigv4_sign(&r, &s), -EINVAL);
    r = suite("GET", "/");
    r.payload_sha256 = NULL;
    CHECK_EQ_INT(sigv4_sign(&r, &s), -EINVAL);
    r = suite("GET", "/");
    r.region = "";
    CHECK_EQ_INT(sigv4_sign(&r, &s), -EINVAL);
    r = suite("GET", "/");
    r.n_query = SIGV4_MAX_PAIRS + 1;
    struct sigv4_pair many[SIGV4_MAX_PAIRS + 1];
    for (int i = 0; i < SIGV4_MAX_PAIRS + 1; i++)
        many[i] = (struct sigv4_pair){"k", "v"};
    r.query = many;
    CHECK_EQ_INT(sigv4_sign(&r, &s), -EINVAL);

    /* a path longer than the canonical request can hold */
    static char longpath[9000];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    r = suite("GET", longpath);
    CHECK_EQ_INT(sigv4_sign(&r, &s), -ENAMETOOLONG);
}

int main(void)
{
    test_suite_cases();
    test_s3_examples();
    test_presign();
    test_encoding();
    test_refusals();
    CHECK_DONE();
}
