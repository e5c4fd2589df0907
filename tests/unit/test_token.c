/* SPDX-License-Identifier: Apache-2.0 */
/* Bearer tokens: issue and verify, expiry, tampering, another key, the key file. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/token.h"
#include "check.h"

int main(void)
{
    struct token_key k1, k2;
    char dir[] = "/tmp/regcache-token-XXXXXX", path[256], err[512], tok[TOKEN_MAX], user[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/token.key", dir);

    /* a new key is made once, mode 0600, and read back the same */
    CHECK(token_key_load(path, &k1, err, sizeof(err)) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == TOKEN_KEY_BYTES);
    CHECK(token_key_load(path, &k2, err, sizeof(err)) == 0);
    CHECK(memcmp(k1.bytes, k2.bytes, TOKEN_KEY_BYTES) == 0);

    /* round trip, user and anonymous */
    CHECK(token_issue(&k1, "alice", 2000, tok, sizeof(tok)) == 0);
    CHECK(token_verify(&k1, tok, strlen(tok), 1000, user, sizeof(user), NULL) == 0);
    CHECK_STR(user, "alice");
    CHECK(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") ==
          strlen(tok));
    CHECK(token_verify(&k1, tok, strlen(tok), 2000, user, sizeof(user), NULL) == -ETIMEDOUT);
    char anon[TOKEN_MAX];
    CHECK(token_issue(&k1, "", 2000, anon, sizeof(anon)) == 0);
    int64_t expires = 0;
    CHECK(token_verify(&k1, anon, strlen(anon), 1999, user, sizeof(user), &expires) == 0);
    CHECK_STR(user, "");
    CHECK(expires == 2000);

    /* every single-character change is refused */
    size_t n = strlen(tok);
    for (size_t i = 0; i < n; i++) {
        char bad[TOKEN_MAX];
        memcpy(bad, tok, n + 1);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        CHECK(token_verify(&k1, bad, n, 1000, user, sizeof(user), NULL) != 0);
    }
    /* truncated, empty, no dot, another key */
    CHECK(token_verify(&k1, tok, n - 1, 1000, user, sizeof(user), NULL) == -EINVAL);
    CHECK(token_verify(&k1, "", 0, 1000, user, sizeof(user), NULL) == -EINVAL);
    CHECK(token_verify(&k1, "abc", 3, 1000, user, sizeof(user), NULL) == -EINVAL);
    struct token_key other = k1;
    other.bytes[0] ^= 1;
    CHECK(token_verify(&other, tok, n, 1000, user, sizeof(user), NULL) == -EINVAL);
    /* a holder longer than the caller's buffer is refused, not cut */
    char small[4];
    CHECK(token_verify(&k1, tok, n, 1000, small, sizeof(small), NULL) == -EINVAL);
    /* out too small to hold a token */
    CHECK(token_issue(&k1, "alice", 2000, tok, 20) == -ENAMETOOLONG);

    /* a short key file is an error naming the file, never silently replaced */
    FILE *f = fopen(path, "w");
    fputs("short", f);
    fclose(f);
    CHECK(token_key_load(path, &k2, err, sizeof(err)) == -EINVAL);
    CHECK_CONTAINS(err, path);
    unlink(path);

    /* a link planted as the key is never read (its target would be a key someone knows), and
     * one planted as the temporary file is never written through */
    char victim[300], tmp[300];
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(victim, "w");
    fputs("0123456789abcdef0123456789abcdef", f);
    fclose(f);
    CHECK(symlink(victim, path) == 0);
    CHECK(token_key_load(path, &k2, err, sizeof(err)) < 0);
    CHECK_CONTAINS(err, path);
    unlink(path);
    CHECK(symlink(victim, tmp) == 0);
    CHECK(token_key_load(path, &k2, err, sizeof(err)) == 0);
    CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == TOKEN_KEY_BYTES);
    CHECK(stat(victim, &st) == 0 && st.st_size == 32);
    f = fopen(victim, "r");
    char got[40] = {0};
    CHECK(fread(got, 1, sizeof(got) - 1, f) == 32);
    fclose(f);
    CHECK(strcmp(got, "0123456789abcdef0123456789abcdef") == 0);
    CHECK(lstat(tmp, &st) != 0); /* the planted link was removed, not followed */
    unlink(path);
    unlink(victim);

    /* a FIFO planted as the key is refused at once, not waited on */
    CHECK(mkfifo(path, 0600) == 0);
    CHECK(token_key_load(path, &k2, err, sizeof(err)) == -EINVAL);
    CHECK_CONTAINS(err, "not a regular file");
    unlink(path);
    rmdir(dir);
    CHECK_DONE();
}
