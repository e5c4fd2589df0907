#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct store {
    char *root;
    char blobs[STORE_PATH_MAX]; /* <root>/blobs/sha256 */
    char tmp[STORE_PATH_MAX];   /* <root>/tmp */
    unsigned long seq;
};

struct store_fill {
    struct store *store;
    char digest[80];
    char tmp_path[STORE_PATH_MAX];
    int fd;
    uint64_t size;
    EVP_MD_CTX *md;
    int finished; /* committed or aborted */
};

static int mkdir_p(const char *path)
{
    char buf[STORE_PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST)
        return -errno;
    return 0;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) ? -errno : 0;
    close(fd);
    return r;
}

static void remove_stale_fills(const char *tmp)
{
    DIR *d = opendir(tmp);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "fill-", 5) == 0)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

int store_open(const char *root, struct store **out)
{
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int r = -ENAMETOOLONG;
    s->root = strdup(root);
    if (!s->root) {
        r = -ENOMEM;
        goto fail;
    }
    if ((size_t)snprintf(s->blobs, sizeof(s->blobs), "%s/blobs/sha256", root) >= sizeof(s->blobs) ||
        (size_t)snprintf(s->tmp, sizeof(s->tmp), "%s/tmp", root) >= sizeof(s->tmp))
        goto fail;
    if ((r = mkdir_p(s->blobs)) || (r = mkdir_p(s->tmp)))
        goto fail;
    remove_stale_fills(s->tmp);
    *out = s;
    return 0;
fail:
    free(s->root);
    free(s);
    return r;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    free(s->root);
    free(s);
}

const char *store_root(const struct store *s)
{
    return s->root;
}

void store_blob_path(const struct store *s, const char *digest, char *out, size_t outlen)
{
    const char *hex = digest + 7; /* after "sha256:" */
    snprintf(out, outlen, "%s/%.2s/%s", s->blobs, hex, hex);
}

int store_blob_open(struct store *s, const char *digest, int *fd, uint64_t *size)
{
    char path[STORE_PATH_MAX];
    struct stat st;
    store_blob_path(s, digest, path, sizeof(path));
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return -errno;
    if (fstat(f, &st)) {
        int r = -errno;
        close(f);
        return r;
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    return 0;
}

static void hex_of(const unsigned char *md, unsigned n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * n] = '\0';
}

void store_digest_of(const void *data, size_t len, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    memcpy(out, "sha256:", 7);
    hex_of(md, n, out + 7);
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Moves a complete, verified temporary file into its content address. */
static int publish(struct store *s, int fd, const char *tmp_path, const char *digest)
{
    char dir[STORE_PATH_MAX], path[STORE_PATH_MAX];
    int r;
    if (fsync(fd))
        return -errno;
    snprintf(dir, sizeof(dir), "%s/%.2s", s->blobs, digest + 7);
    if (mkdir(dir, 0755) && errno != EEXIST)
        return -errno;
    store_blob_path(s, digest, path, sizeof(path));
    if (rename(tmp_path, path))
        return -errno;
    if ((r = fsync_dir(dir)))
        return r;
    return 0;
}

static int tmp_create(struct store *s, char *path, size_t len)
{
    /* Unique per process and call; O_EXCL guards against anything left behind. */
    unsigned long seq = __atomic_add_fetch(&s->seq, 1, __ATOMIC_RELAXED);
    snprintf(path, len, "%s/fill-%ld-%lu", s->tmp, (long)getpid(), seq);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

int store_put(struct store *s, const char *digest, const void *data, size_t len)
{
    char actual[80], tmp[STORE_PATH_MAX], path[STORE_PATH_MAX];
    store_digest_of(data, len, actual);
    if (strcmp(actual, digest) != 0)
        return -EBADMSG;
    store_blob_path(s, digest, path, sizeof(path));
    if (access(path, F_OK) == 0)
        return 0;
    int fd = tmp_create(s, tmp, sizeof(tmp));
    if (fd < 0)
        return fd;
    int r = write_all(fd, data, len);
    if (!r)
        r = publish(s, fd, tmp, digest);
    close(fd);
    if (r)
        unlink(tmp);
    return r;
}

int store_fill_begin(struct store *s, const char *digest, struct store_fill **out)
{
    struct store_fill *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->store = s;
    snprintf(f->digest, sizeof(f->digest), "%s", digest);
    f->md = EVP_MD_CTX_new();
    if (!f->md || !EVP_DigestInit_ex(f->md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(f->md);
        free(f);
        return -ENOMEM;
    }
    f->fd = tmp_create(s, f->tmp_path, sizeof(f->tmp_path));
    if (f->fd < 0) {
        int r = f->fd;
        EVP_MD_CTX_free(f->md);
        free(f);
        return r;
    }
    *out = f;
    return 0;
}

int store_fill_fd(const struct store_fill *f)
{
    return f->fd;
}

uint64_t store_fill_size(const struct store_fill *f)
{
    return f->size;
}

int store_fill_park(struct store_fill *f)
{
    if (f->fd < 0)
        return 0;
    int r = close(f->fd) ? -errno : 0;
    f->fd = -1;
    return r;
}

/* Reopens a parked fill's file, at its end. */
static int fill_unpark(struct store_fill *f)
{
    if (f->fd >= 0)
        return 0;
    f->fd = open(f->tmp_path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    return f->fd < 0 ? -errno : 0;
}

int store_fill_write(struct store_fill *f, const void *data, size_t len)
{
    int r = fill_unpark(f);
    if (r)
        return r;
    r = write_all(f->fd, data, len);
    if (r)
        return r;
    EVP_DigestUpdate(f->md, data, len);
    f->size += len;
    return 0;
}

int store_fill_commit(struct store_fill *f)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    char actual[80];
    EVP_DigestFinal_ex(f->md, md, &n);
    memcpy(actual, "sha256:", 7);
    hex_of(md, n, actual + 7);
    f->finished = 1;
    if (strcmp(actual, f->digest) != 0) {
        unlink(f->tmp_path);
        return -EBADMSG;
    }
    int r = fill_unpark(f);
    if (!r)
        r = publish(f->store, f->fd, f->tmp_path, f->digest);
    if (r)
        unlink(f->tmp_path);
    return r;
}

int store_fill_commit_as(struct store_fill *f, const char *digest)
{
    snprintf(f->digest, sizeof(f->digest), "%s", digest);
    return store_fill_commit(f);
}

void store_fill_abort(struct store_fill *f)
{
    if (!f->finished)
        unlink(f->tmp_path);
    f->finished = 1;
}

void store_fill_free(struct store_fill *f)
{
    if (!f)
        return;
    store_fill_abort(f);
    if (f->fd >= 0)
        close(f->fd);
    EVP_MD_CTX_free(f->md);
    free(f);
}

int store_remove(struct store *s, const char *digest)
{
    char path[STORE_PATH_MAX];
    store_blob_path(s, digest, path, sizeof(path));
    return unlink(path) ? -errno : 0;
}

int store_verify(struct store *s, const char *digest)
{
    char path[STORE_PATH_MAX], actual[80];
    unsigned char md[EVP_MAX_MD_SIZE], buf[1 << 16];
    unsigned n = 0;
    store_blob_path(s, digest, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int r = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ? 0 : -ENOMEM;
    ssize_t got;
    while (!r && (got = read(fd, buf, sizeof(buf))) != 0) {
        if (got < 0) {
            if (errno != EINTR)
                r = -errno;
            continue;
        }
        EVP_DigestUpdate(ctx, buf, (size_t)got);
    }
    if (!r) {
        EVP_DigestFinal_ex(ctx, md, &n);
        memcpy(actual, "sha256:", 7);
        hex_of(md, n, actual + 7);
        r = strcmp(actual, digest) == 0 ? 0 : -EBADMSG;
    }
    EVP_MD_CTX_free(ctx);
    close(fd);
    return r;
}

static int is_hex64(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return i == 64;
}

int store_each(struct store *s, int (*fn)(void *ud, const char *digest, const char *path,
                                          uint64_t size),
               void *ud)
{
    DIR *top = opendir(s->blobs);
    if (!top)
        return -errno;
    struct dirent *shard;
    int r = 0;
    while (!r && (shard = readdir(top))) {
        if (shard->d_name[0] == '.')
            continue;
        char dir[STORE_PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/%s", s->blobs, shard->d_name);
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *e;
        while (!r && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[STORE_PATH_MAX], digest[80];
            struct stat st;
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            if (stat(path, &st) || !S_ISREG(st.st_mode))
                continue;
            int named = is_hex64(e->d_name) && strncmp(e->d_name, shard->d_name, 2) == 0 &&
                        strlen(shard->d_name) == 2;
            snprintf(digest, sizeof(digest), "sha256:%s", e->d_name);
            r = fn(ud, named ? digest : NULL, path, (uint64_t)st.st_size);
        }
        closedir(d);
    }
    closedir(top);
    return r;
}

int store_room_for(struct store *s, uint64_t bytes)
{
    struct statvfs v;
    if (statvfs(s->blobs, &v))
        return 0;
    return bytes > (uint64_t)v.f_bavail * v.f_frsize ? -ENOSPC : 0;
}

uint64_t store_free_bytes(struct store *s)
{
    struct statvfs v;
    if (statvfs(s->blobs, &v))
        return 0;
    return (uint64_t)v.f_bavail * v.f_frsize;
}
