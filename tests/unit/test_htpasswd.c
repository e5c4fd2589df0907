/* SPDX-License-Identifier: Apache-2.0 */
/* htpasswd files: bcrypt only, parsing, verification, and atomic updates. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "auth/htpasswd.h"
#include "check.h"
#include "util/json.h"

static char dir[128];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static int count_digest(void *ud, const char *value)
{
    (*(int *)ud)++;
    return strncmp(value, "sha256:", 7) == 0 ? 0 : -1;
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/regcache-htpasswd-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    char path[256], hash[128], err[512];
    snprintf(path, sizeof(path), "%s/htpasswd", dir);

    CHECK_EQ_INT(htpasswd_make_hash("s3cret", hash, sizeof(hash)), 0);
    CHECK(strncmp(hash, "$2y$10$", 7) == 0);
    CHECK_EQ_INT(strlen(hash), 60);
    CHECK(htpasswd_verify(hash, "s3cret"));
    CHECK(!htpasswd_verify(hash, "s3cret "));
    CHECK(!htpasswd_verify(hash, ""));
    CHECK(!htpasswd_verify("{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", "test"));

    /* a file with comments, blank lines, CRLF, a non-bcrypt user (skipped) */
    char text[1024];
    snprintf(text, sizeof(text), "# users\n\nalice:%s\r\ncarol:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n",
             hash);
    write_file(path, text);
    struct htpasswd *h;
    CHECK_EQ_INT(htpasswd_load(path, &h, err, sizeof(err)), 0);
    CHECK_EQ_INT(htpasswd_count(h), 1);
    CHECK_STR(htpasswd_hash(h, "alice"), hash);
    CHECK(htpasswd_hash(h, "carol") == NULL);
    htpasswd_free(h);

    write_file(path, "no colon here\n");
    CHECK_EQ_INT(htpasswd_load(path, &h, err, sizeof(err)), -EINVAL);
    CHECK_CONTAINS(err, ":1:");
    CHECK(htpasswd_load("/nonexistent/htpasswd", &h, err, sizeof(err)) < 0);

    /* set: creates, replaces, keeps others */
    unlink(path);
    CHECK_EQ_INT(htpasswd_set(path, "alice", hash), 0);
    CHECK_EQ_INT(htpasswd_set(path, "bob", hash), 0);
    char other[128];
    CHECK_EQ_INT(htpasswd_make_hash("new", other, sizeof(other)), 0);
    CHECK_EQ_INT(htpasswd_set(path, "alice", other), 0);
    CHECK_EQ_INT(htpasswd_load(path, &h, err, sizeof(err)), 0);
    CHECK_EQ_INT(htpasswd_count(h), 2);
    CHECK(htpasswd_verify(htpasswd_hash(h, "alice"), "new"));
    CHECK(htpasswd_verify(htpasswd_hash(h, "bob"), "s3cret"));
    htpasswd_free(h);

    /* unknown users are checked at the file's highest cost: a wrong name costs what a wrong
     * password does (Apache's `htpasswd -B` writes cost 5) */
    CHECK_EQ_INT(htpasswd_cost(hash), 10);
    CHECK_EQ_INT(htpasswd_cost("{SHA}x"), -1);
    char five[128] = "", twelve[128] = "", dummy[128];
    CHECK_EQ_INT(htpasswd_make_dummy(5, five, sizeof(five)), 0);
    CHECK_EQ_INT(htpasswd_cost(five), 5);
    CHECK_EQ_INT(strlen(five), 60);
    CHECK(!htpasswd_verify(five, "")); /* a hash no password matches */
    CHECK(!htpasswd_verify(five, "x"));
    CHECK_EQ_INT(htpasswd_make_dummy(12, twelve, sizeof(twelve)), 0);
    CHECK(strncmp(twelve, "$2y$12$", 7) == 0);
    CHECK(htpasswd_make_dummy(3, dummy, sizeof(dummy)) < 0);
    snprintf(text, sizeof(text), "weak:%s\n", five);
    write_file(path, text);
    CHECK_EQ_INT(htpasswd_load(path, &h, err, sizeof(err)), 0);
    CHECK_EQ_INT(htpasswd_dummy_cost(h), 5);
    htpasswd_free(h);
    snprintf(text, sizeof(text), "weak:%s\nstrong:%s\nmid:%s\n", five, twelve, hash);
    write_file(path, text);
    CHECK_EQ_INT(htpasswd_load(path, &h, err, sizeof(err)), 0);
    CHECK_EQ_INT(htpasswd_dummy_cost(h), 12);
    htpasswd_free(h);
    write_file(path, "# nobody yet\n");
    CHECK_EQ_INT(htpasswd_load(path, &h, err, sizeof(err)), 0);
    CHECK_EQ_INT(htpasswd_dummy_cost(h), HTPASSWD_BCRYPT_COST);
    htpasswd_free(h);
    /* a cost no check should ever pay is capped for the dummy */
    char huge[128];
    snprintf(huge, sizeof(huge), "$2y$20$%s", twelve + 7);
    snprintf(text, sizeof(text), "slow:%s\n", huge);
    write_file(path, text);
    CHECK_EQ_INT(htpasswd_load(path, &h, err, sizeof(err)), 0);
    CHECK_EQ_INT(htpasswd_dummy_cost(h), HTPASSWD_COST_MAX);
    htpasswd_free(h);

    CHECK(htpasswd_user_valid("alice"));
    CHECK(!htpasswd_user_valid(""));
    CHECK(!htpasswd_user_valid("a:b"));
    CHECK(!htpasswd_user_valid("a\nb"));

    /* the manifest reference walk used by hosted pushes */
    const char *m = "{\"config\":{\"digest\":\"sha256:aa\"},\"layers\":[{\"digest\":\"sha256:bb\"},"
                    "{\"x\":[1,2,{\"digest\":\"sha256:cc\"}]}],\"digest\":\"sha256:dd\"}";
    int n = 0;
    CHECK_EQ_INT(json_each_string(m, strlen(m), "digest", count_digest, &n), 0);
    CHECK_EQ_INT(n, 4);
    n = 0;
    CHECK_EQ_INT(json_each_string("{\"digest\":", 10, "digest", count_digest, &n), -EINVAL);
    CHECK_EQ_INT(json_each_string("{} trailing", 11, "digest", count_digest, &n), -EINVAL);

    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd))
        return 1;
    CHECK_DONE();
}
