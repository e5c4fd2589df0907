/* SPDX-License-Identifier: Apache-2.0 */
/* The content-addressed store: verified writes, streaming fills, that nothing unverified ever
 * appears under a digest's name, and that a hostile storage directory (links, FIFOs, loose
 * modes) cannot make it read, write or remove anything outside. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
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
/* A fill that starts again empties its file and its hash; a partial fill kept by one store
 * handle is taken over by the next with its bytes re-hashed; a held one is not; pruning keeps
 * the partials of known sources only. */
static void test_fill_reset_and_partials(struct store *s)
{
    static char data[300000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7 + 3);
    char d[80], path[512];
    store_digest_of(data, sizeof(data), d);
    store_blob_path(s, d, path, sizeof(path));
    struct store_fill *f, *g;
    uint64_t have = 99;

    CHECK_EQ_INT(store_fill_begin_partial(s, d, "docker.io", &f, &have), 0);
    CHECK_EQ_U64(have, 0);
    CHECK_EQ_INT(store_fill_write(f, "wrong bytes", 11), 0);
    CHECK_EQ_INT(store_fill_reset(f), 0);
    CHECK_EQ_U64(store_fill_size(f), 0);
    CHECK_EQ_INT(store_fill_write(f, data, 100000), 0);
    /* held: a second fill of the same digest and source gets a file of its own */
    CHECK_EQ_INT(store_fill_begin_partial(s, d, "docker.io", &g, &have), 0);
    CHECK_EQ_U64(have, 0);
    store_fill_free(g);
    store_fill_keep(f);
    store_fill_free(f); /* the process stopped mid-fill */
    CHECK_EQ_INT(count_tmp(), 1);

    CHECK_EQ_INT(store_fill_begin_partial(s, d, "docker.io", &f, &have), 0);
    CHECK_EQ_U64(have, 100000);
    CHECK_EQ_INT(store_fill_write(f, data + 100000, sizeof(data) - 100000), 0);
    CHECK_EQ_INT(store_fill_commit(f), 0); /* the hash covers the kept bytes too */
    store_fill_free(f);
    CHECK(exists(path));
    CHECK_EQ_INT(store_verify(s, d), 0);
    CHECK_EQ_INT(count_tmp(), 0);
    CHECK_EQ_INT(store_remove(s, d), 0);

    /* pruning: a known source's partial stays, an unknown one's goes, a held one stays */
    const char *known[] = {"docker.io", "quay.io"};
    CHECK_EQ_INT(store_fill_begin_partial(s, d, "quay.io", &f, &have), 0);
    CHECK_EQ_INT(store_fill_write(f, data, 10), 0);
    store_fill_keep(f);
    store_fill_free(f);
    CHECK_EQ_INT(store_fill_begin_partial(s, d, "gone/example", &f, &have), 0);
    CHECK_EQ_INT(store_fill_write(f, data, 10), 0);
    store_fill_keep(f);
    store_fill_free(f);
    CHECK_EQ_INT(store_fill_begin_partial(s, d, "held.example", &g, &have), 0);
    CHECK_EQ_INT(count_tmp(), 3);
    CHECK_EQ_INT(store_partials_prune(s, known, 2, 3600), 1);
    CHECK_EQ_INT(count_tmp(), 2);
    store_fill_free(g);
    CHECK_EQ_INT(store_partials_prune(s, known, 2, 3600), 0);
    CHECK_EQ_INT(store_partials_prune(s, known, 1, 3600), 1); /* quay.io no longer known */
    CHECK_EQ_INT(count_tmp(), 0);
}

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

/* A fill of a process that is gone is removed when the store opens; one of a process still
 * running (a daemon, while a command opens the same store) stays. */
static void test_stale_fills_removed(void)
{
    char stale[512], live[512], odd[512];
    snprintf(stale, sizeof(stale), "%s/tmp/fill-2147483646-1", root); /* above any pid_max */
    snprintf(live, sizeof(live), "%s/tmp/fill-%ld-7", root, (long)getpid());
    snprintf(odd, sizeof(odd), "%s/tmp/fill-x-1", root);
    const char *names[] = {stale, live, odd};
    for (int i = 0; i < 3; i++) {
        int fd = open(names[i], O_CREAT | O_WRONLY, 0644);
        CHECK(fd >= 0);
        close(fd);
    }
    struct store *s;
    CHECK_EQ_INT(store_open(root, &s, NULL, 0), 0);
    CHECK(!exists(stale));
    CHECK(!exists(odd));
    CHECK(exists(live));
    store_close(s);
    unlink(live);
}

/* The readiness check: a file written, fsynced and removed in tmp/; a tmp/ that is gone (its
 * descriptor is the store's) fails it, naming the directory. */
static void test_check_writable(void)
{
    struct store *s;
    char path[STORE_PATH_MAX], tmp[512];
    CHECK_EQ_INT(store_open(root, &s, NULL, 0), 0);
    CHECK_EQ_INT(store_check_writable(s, path, sizeof(path)), 0);
    snprintf(tmp, sizeof(tmp), "%s/tmp/fill-", root);
    CHECK(strncmp(path, tmp, strlen(tmp)) == 0);
    CHECK_EQ_INT(count_tmp(), 0);
    CHECK(!exists(path));
    snprintf(tmp, sizeof(tmp), "%s/tmp", root);
    CHECK_EQ_INT(rmdir(tmp), 0);
    CHECK_EQ_INT(store_check_writable(s, path, sizeof(path)), -ENOENT);
    snprintf(tmp, sizeof(tmp), "%s/tmp/", root);
    CHECK_STR(path, tmp);
    store_close(s);
    snprintf(tmp, sizeof(tmp), "%s/tmp", root);
    CHECK_EQ_INT(mkdir(tmp, 0700), 0);
}

static unsigned mode_of(const char *path)
{
    struct stat st;
    return lstat(path, &st) ? 0 : (unsigned)(st.st_mode & 07777);
}

static void sub(char *out, size_t len, const char *rel)
{
    snprintf(out, len, "%s/%s", root, rel);
}

/* A fresh store: directories 0700, files 0600, whatever the umask. */
static void test_fresh_modes(void)
{
    char r[300], p[STORE_PATH_MAX], d[80], path[STORE_PATH_MAX];
    snprintf(r, sizeof(r), "%s/fresh/store", root);
    mode_t old = umask(0);
    struct store *s;
    CHECK_EQ_INT(store_open(r, &s, NULL, 0), 0);
    CHECK_EQ_INT(mode_of(r), 0700);
    snprintf(p, sizeof(p), "%s/blobs", r);
    CHECK_EQ_INT(mode_of(p), 0700);
    snprintf(p, sizeof(p), "%s/blobs/sha256", r);
    CHECK_EQ_INT(mode_of(p), 0700);
    snprintf(p, sizeof(p), "%s/tmp", r);
    CHECK_EQ_INT(mode_of(p), 0700);
    store_digest_of("m", 1, d);
    CHECK_EQ_INT(store_put(s, d, "m", 1), 0);
    store_blob_path(s, d, path, sizeof(path));
    CHECK_EQ_INT(mode_of(path), 0600);
    snprintf(p, sizeof(p), "%s/blobs/sha256/%.2s", r, d + 7);
    CHECK_EQ_INT(mode_of(p), 0700);
    CHECK_EQ_INT(store_private_file(s, "regcache.db", p, sizeof(p)), 0);
    CHECK_EQ_INT(mode_of(p), 0600);
    CHECK_EQ_INT(store_private_file(s, "regcache.db", p, sizeof(p)), 0); /* exists: fine */
    umask(old);
    store_close(s);
}

/* sshd's StrictModes: a root (or a directory in it) others can write is refused by name. */
static void test_loose_modes_refused(void)
{
    char r[300], p[STORE_PATH_MAX], err[512];
    struct store *s = NULL;
    snprintf(r, sizeof(r), "%s/loose", root);
    CHECK_EQ_INT(mkdir(r, 0700), 0);
    CHECK_EQ_INT(chmod(r, 0777), 0);
    err[0] = '\0';
    CHECK_EQ_INT(store_open(r, &s, err, sizeof(err)), -EPERM);
    CHECK_CONTAINS(err, r);
    CHECK_CONTAINS(err, "0777");
    CHECK_EQ_INT(chmod(r, 0770), 0);
    CHECK_EQ_INT(store_open(r, &s, err, sizeof(err)), -EPERM);
    CHECK_CONTAINS(err, "0770");
    CHECK_EQ_INT(chmod(r, 0700), 0);
    CHECK_EQ_INT(store_open(r, &s, err, sizeof(err)), 0);
    store_close(s);
    snprintf(p, sizeof(p), "%s/tmp", r);
    CHECK_EQ_INT(chmod(p, 0733), 0);
    CHECK_EQ_INT(store_open(r, &s, err, sizeof(err)), -EPERM);
    CHECK_CONTAINS(err, p);
    CHECK_EQ_INT(chmod(p, 0700), 0);
    /* a link in place of blobs/ */
    char outside[300];
    snprintf(outside, sizeof(outside), "%s/outside-blobs", root);
    CHECK_EQ_INT(mkdir(outside, 0700), 0);
    snprintf(p, sizeof(p), "%s/blobs", r);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", p);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_EQ_INT(symlink(outside, p), 0);
    CHECK_EQ_INT(store_open(r, &s, err, sizeof(err)), -ELOOP);
    CHECK_CONTAINS(err, "symbolic link");
}

static int write_file(const char *path, const char *data, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        return -1;
    int r = write(fd, data, strlen(data)) == (ssize_t)strlen(data) ? 0 : -1;
    close(fd);
    return r;
}

static int count_entries(void *ud, const char *digest, const char *path, uint64_t size)
{
    (void)path;
    (void)size;
    size_t *n = ud;
    n[digest ? 0 : 1]++;
    return digest ? 0 : STORE_EACH_REMOVE;
}

/* A link in place of a shard directory: nothing is read, written or removed through it. */
static void test_symlinked_shard(struct store *s)
{
    const char *secret = "top secret";
    char d[80], outside[300], p[STORE_PATH_MAX], shard[STORE_PATH_MAX], victim[STORE_PATH_MAX];
    store_digest_of(secret, strlen(secret), d);
    snprintf(outside, sizeof(outside), "%s/outside", root);
    CHECK_EQ_INT(mkdir(outside, 0700), 0);
    snprintf(p, sizeof(p), "%s/%s", outside, d + 7);
    CHECK_EQ_INT(write_file(p, secret, 0600), 0);
    snprintf(victim, sizeof(victim), "%s/victim", outside);
    CHECK_EQ_INT(write_file(victim, "keep me", 0644), 0);
    char rel[64];
    snprintf(rel, sizeof(rel), "blobs/sha256/%.2s", d + 7);
    sub(shard, sizeof(shard), rel);
    CHECK_EQ_INT(symlink(outside, shard), 0);

    int fd = -1;
    uint64_t size;
    CHECK_EQ_INT(store_blob_open(s, d, &fd, &size), -ELOOP);
    CHECK(!store_has(s, d));
    CHECK_EQ_INT(store_verify(s, d), -ELOOP);
    CHECK_EQ_INT(store_remove(s, d), -ENOENT);
    CHECK(exists(p));
    /* a write into that shard fails and leaves nothing in the link's target */
    char pushed[80];
    const char *evil = "* * * * * root evil";
    store_digest_of(evil, strlen(evil), pushed);
    char evil_shard[STORE_PATH_MAX];
    snprintf(rel, sizeof(rel), "blobs/sha256/%.2s", pushed + 7);
    sub(evil_shard, sizeof(evil_shard), rel);
    if (strcmp(evil_shard, shard)) {
        rmdir(evil_shard);
        CHECK_EQ_INT(symlink(outside, evil_shard), 0);
    }
    struct store_fill *f;
    CHECK_EQ_INT(store_fill_begin(s, "", &f), 0);
    CHECK_EQ_INT(store_fill_write(f, evil, strlen(evil)), 0);
    CHECK_EQ_INT(store_fill_commit_as(f, pushed), -ELOOP);
    store_fill_free(f);
    CHECK_EQ_INT(store_put(s, pushed, evil, strlen(evil)), -ELOOP);
    snprintf(p, sizeof(p), "%s/%s", outside, pushed + 7);
    CHECK(!exists(p));
    CHECK_EQ_INT(count_tmp(), 0);

    /* the walk reports the links (not what they point to) and removes only them */
    size_t n[2] = {0, 0};
    CHECK_EQ_INT(store_each(s, count_entries, n), 0);
    CHECK(n[1] >= 1);
    CHECK(!exists(shard));
    CHECK_EQ_INT(mode_of(shard), 0);
    snprintf(p, sizeof(p), "%s/%s", outside, d + 7);
    CHECK(exists(p));
    CHECK(exists(victim));
    rmdir(evil_shard);
    unlink(evil_shard);
}

/* A FIFO, a link to a file and a directory under a blob's name: never opened, never served. */
static void test_not_regular_blobs(struct store *s)
{
    char d[80], path[STORE_PATH_MAX], target[300];
    int fd = -1;
    uint64_t size;
    store_digest_of("fifo", 4, d);
    store_blob_path(s, d, path, sizeof(path));
    char dir[STORE_PATH_MAX];
    snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(path, '/') - path), path);
    mkdir(dir, 0700);
    CHECK_EQ_INT(mkfifo(path, 0600), 0);
    CHECK_EQ_INT(store_blob_open(s, d, &fd, &size), -ENOENT); /* returns: does not wait */
    CHECK(!store_has(s, d));
    CHECK_EQ_INT(store_verify(s, d), -ENOENT);
    /* a fill of that digest replaces the FIFO */
    CHECK_EQ_INT(store_put(s, d, "fifo", 4), 0);
    CHECK_EQ_INT(store_blob_open(s, d, &fd, &size), 0);
    CHECK_EQ_U64(size, 4);
    close(fd);

    store_digest_of("link", 4, d);
    store_blob_path(s, d, path, sizeof(path));
    snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(path, '/') - path), path);
    mkdir(dir, 0700);
    snprintf(target, sizeof(target), "%s/linked-secret", root);
    CHECK_EQ_INT(write_file(target, "link", 0600), 0);
    CHECK_EQ_INT(symlink(target, path), 0);
    CHECK_EQ_INT(store_blob_open(s, d, &fd, &size), -ENOENT);
    CHECK(!store_has(s, d));
    size_t n[2] = {0, 0};
    CHECK_EQ_INT(store_each(s, count_entries, n), 0);
    CHECK_EQ_INT(mode_of(path), 0); /* the link went */
    CHECK(exists(target));          /* its target stayed */
}

/* The reserve (cache.min_free): a write that would go below it fails with -ENOSPC and writes
 * nothing. (Other processes share this filesystem: the amounts leave them room; the crossing in
 * the middle of a blob is tested on a tmpfs of its own in test_files_hostile.py.) */
static uint64_t free_now(void)
{
    struct statvfs v;
    return statvfs(root, &v) ? 0 : (uint64_t)v.f_bavail * v.f_frsize;
}

static void test_reserve(struct store *s)
{
    char d[80];
    store_digest_of("x", 1, d);
    struct store_fill *f;
    static char chunk[4 << 20];
    memset(chunk, 'x', sizeof(chunk));

    /* 1 MiB above the reserve: 64 KiB go in, then 4 MiB do not, and nothing of them is written */
    store_set_reserve(s, free_now() - (1 << 20));
    CHECK_EQ_INT(store_fill_begin(s, d, &f), 0);
    CHECK_EQ_INT(store_fill_write(f, chunk, 64 << 10), 0);
    CHECK_EQ_INT(store_fill_write(f, chunk, sizeof(chunk)), -ENOSPC);
    CHECK_EQ_U64(store_fill_size(f), 64 << 10);
    struct stat st;
    CHECK_EQ_INT(fstat(store_fill_fd(f), &st), 0);
    CHECK_EQ_U64(st.st_size, 64 << 10);
    store_fill_free(f);
    CHECK_EQ_INT(count_tmp(), 0);
    store_set_reserve(s, free_now() - (1 << 20));
    CHECK_EQ_INT(store_room_for(s, 4 << 20), -ENOSPC);
    CHECK_EQ_INT(store_room_for(s, 1000), 0);
    CHECK_EQ_INT(store_put(s, d, "x", 1), 0); /* small writes still fit */
    uint64_t free_bytes = free_now();
    store_set_reserve(s, free_bytes + (1 << 20));
    char d2[80];
    store_digest_of("y", 1, d2);
    CHECK_EQ_INT(store_put(s, d2, "y", 1), -ENOSPC);
    CHECK_EQ_INT(store_room_for(s, 1), -ENOSPC);
    store_set_reserve(s, 0);
    CHECK_EQ_INT(store_put(s, d2, "y", 1), 0);
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/regcache-store-test-XXXXXX");
    if (!mkdtemp(root))
        return 1;
    test_digest_of();
    struct store *s;
    CHECK_EQ_INT(store_open(root, &s, NULL, 0), 0);
    test_put_and_open(s);
    test_fill_ok(s);
    test_fill_parked(s);
    test_fill_reset_and_partials(s);
    test_fill_mismatch_and_abort(s);
    test_symlinked_shard(s);
    test_not_regular_blobs(s);
    test_reserve(s);
    store_close(s);
    test_stale_fills_removed();
    test_check_writable();
    test_fresh_modes();
    test_loose_modes_refused();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd))
        return 1;
    CHECK_DONE();
}
