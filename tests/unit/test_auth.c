/* Upstream token handling: the token endpoint's JSON, the per-scope token cache, and the
 * small JSON reader it relies on. */
#include <errno.h>
#include <stdlib.h>

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

int main(void)
{
    test_parse();
    test_cache();
    test_json_put();
    CHECK_DONE();
}
