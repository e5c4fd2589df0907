/* SPDX-License-Identifier: Apache-2.0 */
/* Upstream token handling: the token endpoint's JSON, the per-scope token cache, and the
 * small JSON reader it relies on. The mirror's own login memory: verdicts and wrong passwords
 * per address (auth/verdicts.h). */
#include <errno.h>
#include <stdlib.h>

#include "auth/verdicts.h"
#include "check.h"
#include "upstream/auth.h"
#include "util/json.h"

static void test_parse(void)
{
    char *tok = NULL;
    uint64_t exp = 0;
    const char *docker = "{\"token\":\"abc.def.ghi\",\"access_token\":\"abc.def.ghi\","
                         "\"expires_in\":300,\"issued_at\":\"2026-11-27T10:00:00Z\"}";
    CHECK_EQ_INT(token_parse_response(docker, strlen(docker), &tok, &exp), 0);
    CHECK_STR(tok, "abc.def.ghi");
    CHECK_EQ_U64(exp, 300);
    free(tok);

    const char *oauth = " { \"access_token\" : \"x\\/y\" } ";
    CHECK_EQ_INT(token_parse_response(oauth, strlen(oauth), &tok, &exp), 0);
    CHECK_STR(tok, "x/y");
    CHECK_EQ_U64(exp, 60); /* the spec's default lifetime */
    free(tok);

    const char *nested = "{\"details\":{\"token\":\"no\"},\"list\":[1,{\"a\":\"}\"}],"
                         "\"token\":\"yes\",\"expires_in\":5}";
    CHECK_EQ_INT(token_parse_response(nested, strlen(nested), &tok, &exp), 0);
    CHECK_STR(tok, "yes");
    CHECK_EQ_U64(exp, 5);
    free(tok);

    const char *bad[] = {"", "[]", "{\"token\":1}", "{\"token\":\"unterminated}", "{\"x\":\"y\"}",
                         "{\"token\":\"\"}", "not json"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        tok = NULL;
        CHECK_EQ_INT(token_parse_response(bad[i], strlen(bad[i]), &tok, &exp), -EINVAL);
        CHECK(tok == NULL);
    }
}

static void test_cache(void)
{
    struct token_cache *tc = token_cache_new();
    CHECK(token_cache_get(tc, "repository:a:pull", 0) == NULL);
    CHECK_EQ_INT(token_cache_put(tc, "repository:a:pull", "T1", 1000), 0);
    CHECK_STR(token_cache_get(tc, "repository:a:pull", 999), "T1");
    CHECK(token_cache_get(tc, "repository:b:pull", 999) == NULL);
    CHECK(token_cache_get(tc, "repository:a:pull", 1000) == NULL); /* expired */
    CHECK_EQ_INT(token_cache_put(tc, "repository:a:pull", "T2", 5000), 0);
    CHECK_STR(token_cache_get(tc, "repository:a:pull", 10), "T2");
    token_cache_drop(tc, "repository:a:pull");
    CHECK(token_cache_get(tc, "repository:a:pull", 10) == NULL);

    /* bounded: the oldest entry makes room */
    char scope[64];
    for (int i = 0; i < TOKEN_CACHE_SLOTS + 10; i++) {
        snprintf(scope, sizeof(scope), "repository:r%d:pull", i);
        CHECK_EQ_INT(token_cache_put(tc, scope, "T", 1000000), 0);
    }
    CHECK(token_cache_get(tc, "repository:r0:pull", 1) == NULL);
    snprintf(scope, sizeof(scope), "repository:r%d:pull", TOKEN_CACHE_SLOTS + 9);
    CHECK_STR(token_cache_get(tc, scope, 1), "T");
    token_cache_free(tc);

    /* tokens stop being used before they lapse */
    CHECK(token_use_until(0, 60) < 60000);
    CHECK(token_use_until(0, 60) >= 45000);
    CHECK(token_use_until(0, 3600) == 3600000 - 10000);
}

static void test_json_put(void)
{
    struct buf b;
    buf_init(&b, 1024);
    CHECK_EQ_INT(json_put_string(&b, "a\"b\\c\n"), 0);
    CHECK_EQ_INT(buf_terminate(&b), 0);
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\u000a\"");
    buf_free(&b);
}

static void test_verdicts(void)
{
    const char *h1 = "$2y$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234";
    const char *h2 = "$2y$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ56789";
    struct verdicts *v = verdicts_new(4096);
    CHECK_EQ_INT(verdicts_get(v, "good", h1, 0), -1);
    CHECK_EQ_INT(verdicts_put(v, "good", h1, 1, 1000), 0);
    CHECK_EQ_INT(verdicts_get(v, "good", h1, 999), 1);
    CHECK_EQ_INT(verdicts_get(v, "good", h1, 1000), -1); /* expired, and dropped */
    CHECK_EQ_INT(verdicts_count(v), 0);

    /* a good login survives 5000 distinct wrong ones (the cache holds 4096) */
    CHECK_EQ_INT(verdicts_put(v, "good", h1, 1, 1000000), 0);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "bad%d", i);
        CHECK_EQ_INT(verdicts_put(v, key, i % 2 ? h1 : NULL, 0, 1000000), 0);
    }
    CHECK_EQ_INT(verdicts_count(v), 4096);
    CHECK_EQ_INT(verdicts_get(v, "good", h1, 10), 1);
    CHECK_EQ_INT(verdicts_get(v, "bad4998", NULL, 10), 0); /* the newest failures are kept */
    CHECK_EQ_INT(verdicts_get(v, "bad0", NULL, 10), -1);
    /* checked against another line of the user (a reload changed or removed it): void */
    CHECK_EQ_INT(verdicts_get(v, "good", h2, 10), -1);
    CHECK_EQ_INT(verdicts_put(v, "good", h1, 1, 1000000), 0);
    CHECK_EQ_INT(verdicts_get(v, "good", NULL, 10), -1);
    CHECK_EQ_INT(verdicts_get(v, "bad4998", h2, 10), -1); /* a wrong password of another line */
    verdicts_free(v);

    /* only good verdicts: the least recently used goes */
    v = verdicts_new(3);
    CHECK_EQ_INT(verdicts_put(v, "a", h1, 1, 100), 0);
    CHECK_EQ_INT(verdicts_put(v, "b", h1, 1, 100), 0);
    CHECK_EQ_INT(verdicts_put(v, "c", h1, 1, 100), 0);
    CHECK_EQ_INT(verdicts_get(v, "a", h1, 1), 1);
    CHECK_EQ_INT(verdicts_put(v, "d", h1, 1, 100), 0);
    CHECK_EQ_INT(verdicts_get(v, "b", h1, 1), -1);
    CHECK_EQ_INT(verdicts_get(v, "a", h1, 1), 1);
    CHECK_EQ_INT(verdicts_put(v, "a", h1, 0, 100), 0); /* replaced */
    CHECK_EQ_INT(verdicts_get(v, "a", h1, 1), 0);
    CHECK_EQ_INT(verdicts_count(v), 3);
    verdicts_free(v);
}

static void test_failures(void)
{
    struct failures *f = failures_new(3, 10, 60000);
    for (int i = 0; i < 9; i++)
        CHECK_EQ_INT(failures_add(f, "10.0.0.1", 1000 + (uint64_t)i), 0);
    CHECK_EQ_U64(failures_blocked(f, "10.0.0.1", 2000), 0);
    CHECK_EQ_INT(failures_add(f, "10.0.0.1", 2000), 1); /* the 10th */
    CHECK_EQ_U64(failures_blocked(f, "10.0.0.1", 2000), 59000);
    CHECK_EQ_U64(failures_blocked(f, "10.0.0.2", 2000), 0); /* another address */
    CHECK_EQ_U64(failures_blocked(f, "10.0.0.1", 60999), 1);
    CHECK_EQ_U64(failures_blocked(f, "10.0.0.1", 61000), 0); /* the window is over */
    CHECK_EQ_INT(failures_count(f), 0);
    /* failures of an old window do not add up */
    for (int i = 0; i < 9; i++)
        CHECK_EQ_INT(failures_add(f, "10.0.0.3", 0), 0);
    CHECK_EQ_INT(failures_add(f, "10.0.0.3", 60000), 0);
    CHECK_EQ_U64(failures_blocked(f, "10.0.0.3", 60000), 0);
    /* bounded: the address that failed least recently is forgotten */
    failures_add(f, "a", 1);
    failures_add(f, "b", 2);
    failures_add(f, "10.0.0.3", 3);
    failures_add(f, "c", 4);
    CHECK_EQ_INT(failures_count(f), 3);
    for (int i = 0; i < 10; i++)
        failures_add(f, "b", 5);
    CHECK(failures_blocked(f, "b", 5) > 0);
    failures_free(f);
    /* limit 0: off */
    f = failures_new(3, 0, 60000);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(failures_add(f, "x", 0), 0);
    CHECK_EQ_U64(failures_blocked(f, "x", 0), 0);
    failures_free(f);
}

int main(void)
{
    test_verdicts();
    test_failures();
    test_parse();
    test_cache();
    test_json_put();
    CHECK_DONE();
}
