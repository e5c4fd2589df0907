/* The content-addressed store: verified writes, streaming fills, and that nothing unverified
 * ever appears under a digest's name. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "store/store.h"

static char root[256];

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static size_t count_tmp(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ls %s/tmp | wc -l", root);
    FILE *p = popen(cmd, "r");
    unsigned n = 0;
    if (p) {
        if (fscanf(p, "%u", &n) != 1)
            n = 999;
        pclose(p);
    }
    return n;
}

static void test_digest_of(void)
{
    char d[80];
    store_digest_of("", 0, d);
    CHECK_STR(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    store_digest_of("abc", 3, d);
    CHECK_STR(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_put_and_open(struct store *s)
{
    const char *data = "{\"schemaVersion\":2}";
    char d[80], path[STORE_PATH_MAX];
    store_digest_of(data, strlen(data), d);
    store_blob_path(s, d, path, sizeof(path));
    char want[STORE_PATH_MAX];
    snprintf(want, sizeof(want), "%s/blobs/sha256/%.2s/%s", root, d + 7, d + 7);
    CHECK_STR(path, want);

    int fd;
    uint64_t size;
    CHECK_EQ_INT(store_blob_open(s, d, &fd, &size), -ENOENT);
    CHECK_EQ_INT(store_put(s, d, data, strlen(data)), 0);
    CHECK(exists(path));
    CHECK_EQ_INT(store_blob_open(s, d, &fd, &size), 0);
    CHECK_EQ_U64(size, strlen(data));
    char back[64] = {0};
    CHECK_EQ_INT(read(fd, back, sizeof(back)), (int)strlen(data));
    CHECK_STR(back, data);
    close(fd);
    /* again: a no-op */
    CHECK_EQ_INT(store_put(s, d, data, strlen(data)), 0);

    /* bytes that do not hash to the name are refused and leave nothing behind */
    char other[80];
    store_digest_of("x", 1, other);
    CHECK_EQ_INT(store_put(s, other, data, strlen(data)), -EBADMSG);
    store_blob_path(s, other, path, sizeof(path));
    CHECK(!exists(path));
    CHECK_EQ_INT(count_tmp(), 0);
}

static void test_fill_ok(struct store *s)
{
    size_t n = 3 * 1024 * 1024 + 17;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 2654435761u >> 13);
    char d[80], path[STORE_PATH_MAX];
    store_digest_of(data, n, d);
    store_blob_path(s, d, path, sizeof(path));

    struct store_fill *f;
    CHECK_EQ_INT(store_fill_begin(s, d, &f), 0);
    int fd = store_fill_fd(f);
    /* a reader sees the bytes as they are written, before the commit */
    CHECK_EQ_INT(store_fill_write(f, data, 1000), 0);
    char buf[1000];
    CHECK_EQ_INT(pread(fd, buf, sizeof(buf), 0), 1000);
    CHECK(memcmp(buf, data, 1000) == 0);
    CHECK(!exists(path));
    for (size_t off = 1000; off < n; off += 65536)
        CHECK_EQ_INT(store_fill_write(f, data + off, n - off < 65536 ? n - off : 65536), 0);
    CHECK_EQ_U64(store_fill_size(f), n);
    CHECK(!exists(path));
    CHECK_EQ_INT(store_fill_commit(f), 0);
    CHECK(exists(path));
    /* the descriptor survives the rename */
    CHECK_EQ_INT(pread(fd, buf, 10, (off_t)n - 10), 10);
    CHECK(memcmp(buf, data + n - 10, 10) == 0);
    store_fill_free(f);
    CHECK(exists(path));
    CHECK_EQ_INT(count_tmp(), 0);
    free(data);
}

/* A parked fill holds no descriptor; writing and committing reopen it at its end. */
static void test_fill_parked(struct store *s)
{
    const char *data = "first piece|second piece";
    char d[80], path[STORE_PATH_MAX];
    store_digest_of(data, strlen(data), d);
    store_blob_path(s, d, path, sizeof(path));
    struct store_fill *f;
    CHECK_EQ_INT(store_fill_begin(s, "", &f), 0);
    CHECK_EQ_INT(store_fill_park(f), 0);
    CHECK_EQ_INT(store_fill_fd(f), -1);
    CHECK_EQ_INT(store_fill_park(f), 0); /* twice is harmless */
    CHECK_EQ_INT(store_fill_write(f, data, 12), 0);
    CHECK(store_fill_fd(f) >= 0);
    CHECK_EQ_INT(store_fill_park(f), 0);
    CHECK_EQ_INT(store_fill_write(f, data + 12, strlen(data) - 12), 0);
    CHECK_EQ_INT(store_fill_park(f), 0);
    CHECK_EQ_INT(store_fill_commit_as(f, d), 0);
    CHECK(exists(path));
    store_fill_free(f);
    CHECK_EQ_INT(store_verify(s, d), 0);
    /* freed while parked: nothing left behind */
    CHECK_EQ_INT(store_fill_begin(s, "", &f), 0);
    CHECK_EQ_INT(store_fill_write(f, "x", 1), 0);
    CHECK_EQ_INT(store_fill_park(f), 0);
    store_fill_free(f);
    CHECK_EQ_INT(count_tmp(), 0);
}

static void test_fill_mismatch_and_abort(struct store *s)
{
    char d[80], path[STORE_PATH_MAX];
    store_digest_of("expected", 8, d);
    store_blob_path(s, d, path, sizeof(path));
    struct store_fill *f;
    CHECK_EQ_INT(store_fill_begin(s, d, &f), 0);
    CHECK_EQ_INT(store_fill_write(f, "tampered", 8), 0);
    CHECK_EQ_INT(store_fill_commit(f), -EBADMSG);
    CHECK(!exists(path));
    store_fill_free(f);
    CHECK_EQ_INT(count_tmp(), 0);

    /* a short fill abandoned: nothing visible, temp file removed */
    CHECK_EQ_INT(store_fill_begin(s, d, &f), 0);
    CHECK_EQ_INT(store_fill_write(f, "expec", 5), 0);
    CHECK_EQ_INT(count_tmp(), 1);
    store_fill_free(f);
    CHECK(!exists(path));
    CHECK_EQ_INT(count_tmp(), 0);
}

static void test_stale_fills_removed(void)
{
    char stale[512];
    snprintf(stale, sizeof(stale), "%s/tmp/fill-1-1", root);
    int fd = open(stale, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0);
    close(fd);
    struct store *s;
    CHECK_EQ_INT(store_open(root, &s), 0);
    CHECK(!exists(stale));
    store_close(s);
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/regcache-store-test-XXXXXX");
    if (!mkdtemp(root))
        return 1;
    test_digest_of();
    struct store *s;
    CHECK_EQ_INT(store_open(root, &s), 0);
    test_put_and_open(s);
    test_fill_ok(s);
    test_fill_parked(s);
    test_fill_mismatch_and_abort(s);
    store_close(s);
    test_stale_fills_removed();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd))
        return 1;
    CHECK_DONE();
}
