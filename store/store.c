/* SPDX-License-Identifier: Apache-2.0 */
#include "store/store.h"
#include "util/epoch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

#define DIR_MODE 0700
#define FILE_MODE 0600
#define PARENT_MODE 0755 /* missing parents of the root: ordinary directories */

struct store {
    char *root;
    char blobs[STORE_PATH_MAX]; /* <root>/blobs/sha256, for messages */
    char tmp[STORE_PATH_MAX];   /* <root>/tmp, for messages */
    int root_fd, blobs_fd, tmp_fd;
    uint64_t reserve;
    unsigned long seq;
};

struct store_fill {
    struct store *store;
    char digest[80];
    char tmp_name[128]; /* in <root>/tmp */
    int fd;
    uint64_t size;
    uint64_t margin; /* bytes that may still be written before the free space is read again */
    uint64_t since_check;
    EVP_MD_CTX *md;
    int finished; /* committed or aborted */
    char actual[80]; /* what the bytes hashed to, once committed */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Creates the missing parents of path (PARENT_MODE) and path itself (DIR_MODE). */
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
        if (mkdir(buf, PARENT_MODE) && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, DIR_MODE) && errno != EEXIST)
        return -errno;
    return 0;
}

/* sshd's StrictModes for a directory the store trusts: nobody but its owner may write it. */
static int check_private_dir(const char *path, const struct stat *st, char *err, size_t errlen)
{
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        set_err(err, errlen,
                "%s is writable by %s (mode %04o): refusing to use it, since anyone who can "
                "write there can change what the mirror serves (chmod go-w %s)",
                path, st->st_mode & S_IWOTH ? "all users" : "its group",
                (unsigned)(st->st_mode & 07777), path);
        return -EPERM;
    }
    uid_t me = geteuid();
    if (st->st_uid != me && me != 0) {
        set_err(err, errlen,
                "%s is owned by uid %u, not by the user the mirror runs as (uid %u): refusing "
                "to use it (chown -R %u %s)",
                path, (unsigned)st->st_uid, (unsigned)me, (unsigned)me, path);
        return -EPERM;
    }
    return 0;
}

/* The parents of the root: one that others can write (unless sticky, like /tmp) lets them
 * replace the root itself. */
static int check_parents(const char *root, char *err, size_t errlen)
{
    char real[PATH_MAX];
    if (!realpath(root, real))
        return 0; /* the root was opened already: nothing to say about it here */
    for (char *slash = strrchr(real, '/'); slash; slash = strrchr(real, '/')) {
        struct stat st;
        if (slash == real)
            slash[1] = '\0'; /* "/" itself, then stop */
        else
            *slash = '\0';
        if (stat(real, &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) &&
            !(st.st_mode & S_ISVTX)) {
            set_err(err, errlen,
                    "%s, a parent of the storage %s, is writable by %s (mode %04o) and not "
                    "sticky: refusing to use it (chmod go-w %s)",
                    real, root, st.st_mode & S_IWOTH ? "all users" : "its group",
                    (unsigned)(st.st_mode & 07777), real);
            return -EPERM;
        }
        if (slash == real)
            break;
    }
    return 0;
}

/* Why openat(O_DIRECTORY | O_NOFOLLOW) of name failed with ENOTDIR or ELOOP (Linux answers
 * ENOTDIR for a link): -ELOOP for a symbolic link, -ENOTDIR for anything else. */
static int not_dir_reason(int dirfd, const char *name)
{
    struct stat st;
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) ? -ELOOP
                                                                                      : -ENOTDIR;
}

/* Opens (creating it DIR_MODE if missing) the directory name under dirfd, never through a
 * symbolic link, and checks its mode. path names it in messages. */
static int open_subdir(int dirfd, const char *name, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (mkdirat(dirfd, name, DIR_MODE) && errno != EEXIST) {
        int e = errno;
        set_err(err, errlen, "cannot create %s: %s", path, strerror(e));
        return -e;
    }
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP || e == ENOTDIR) {
            int r = not_dir_reason(dirfd, name);
            set_err(err, errlen, "%s is %s: refusing to use it", path,
                    r == -ELOOP ? "a symbolic link" : "not a directory");
            return r;
        }
        set_err(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    int r = fstat(fd, &st) ? -errno : check_private_dir(path, &st, err, errlen);
    if (r) {
        close(fd);
        return r;
    }
    return fd;
}

/* Whether fill-<pid>-<seq> belongs to a process still running (a daemon serving this store while
 * a command opens it): its file is being written and must stay. */
static int fill_owner_alive(const char *name)
{
    char *end;
    errno = 0;
    long pid = strtol(name + 5, &end, 10);
    if (errno || end == name + 5 || *end != '-' || pid <= 0 || pid > INT_MAX)
        return 0;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Removes the temporary files of fills whose process is gone (a crash, a SIGKILL); partial files
 * kept for a resume are pruned by store_partials_prune. */
static void remove_stale_fills(struct store *s)
{
    int fd = openat(s->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "fill-", 5) == 0 && !fill_owner_alive(e->d_name))
            unlinkat(s->tmp_fd, e->d_name, 0); /* a link named so goes, never its target */
    closedir(d);
}

int store_open(const char *root, struct store **out, char *err, size_t errlen)
{
    struct stat st;
    char path[STORE_PATH_MAX];
    int fd, r = -ENAMETOOLONG;
    struct store *s = calloc(1, sizeof(*s));
    if (!s) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->root_fd = s->blobs_fd = s->tmp_fd = -1;
    s->root = strdup(root);
    if (!s->root) {
        set_err(err, errlen, "out of memory");
        r = -ENOMEM;
        goto fail;
    }
    if ((size_t)snprintf(s->blobs, sizeof(s->blobs), "%s/blobs/sha256", root) >= sizeof(s->blobs) ||
        (size_t)snprintf(s->tmp, sizeof(s->tmp), "%s/tmp", root) >= sizeof(s->tmp)) {
        set_err(err, errlen, "%s: path too long", root);
        goto fail;
    }
    if ((r = mkdir_p(root))) {
        set_err(err, errlen, "cannot create %s: %s", root, strerror(-r));
        goto fail;
    }
    /* The root itself may be a link (an administrator's choice); nothing below it may. */
    if ((s->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = -errno;
        set_err(err, errlen, "cannot open %s: %s", root, strerror(-r));
        goto fail;
    }
    if (fstat(s->root_fd, &st)) {
        r = -errno;
        set_err(err, errlen, "cannot stat %s: %s", root, strerror(-r));
        goto fail;
    }
    if ((r = check_private_dir(root, &st, err, errlen)) || (r = check_parents(root, err, errlen)))
        goto fail;
    if (st.st_mode & (S_IRGRP | S_IXGRP | S_IROTH | S_IXOTH))
        log_warn("storage %s can be read by other users (mode %04o): chmod 0700 %s keeps what "
                 "it caches and what is pushed to it private",
                 root, (unsigned)(st.st_mode & 07777), root);
    snprintf(path, sizeof(path), "%s/blobs", root);
    if ((fd = open_subdir(s->root_fd, "blobs", path, err, errlen)) < 0) {
        r = fd;
        goto fail;
    }
    s->blobs_fd = open_subdir(fd, "sha256", s->blobs, err, errlen);
    close(fd);
    if (s->blobs_fd < 0) {
        r = s->blobs_fd;
        goto fail;
    }
    if ((s->tmp_fd = open_subdir(s->root_fd, "tmp", s->tmp, err, errlen)) < 0) {
        r = s->tmp_fd;
        goto fail;
    }
    remove_stale_fills(s);
    *out = s;
    return 0;
fail:
    store_close(s);
    return r;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->root_fd >= 0)
        close(s->root_fd);
    if (s->blobs_fd >= 0)
        close(s->blobs_fd);
    if (s->tmp_fd >= 0)
        close(s->tmp_fd);
    free(s->root);
    free(s);
}

const char *store_root(const struct store *s)
{
    return s->root;
}

void store_set_reserve(struct store *s, uint64_t bytes)
{
    s->reserve = bytes;
}

int store_private_file(struct store *s, const char *name, char *path, size_t len)
{
    struct stat st;
    snprintf(path, len, "%s/%s", s->root, name);
    int fd = openat(s->root_fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
                    FILE_MODE);
    if (fd < 0)
        return -errno;
    int r = fstat(fd, &st) ? -errno : S_ISREG(st.st_mode) ? 0 : -EINVAL;
    close(fd);
    return r;
}

int store_mark_clean(struct store *s, const char *text)
{
    static const char tmp[] = STORE_CLEAN_MARK ".tmp";
    int fd = openat(s->root_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                    FILE_MODE);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    int r = write(fd, text, len) == (ssize_t)len ? 0 : -EIO;
    if (!r && fsync(fd))
        r = -errno;
    close(fd);
    if (!r && renameat(s->root_fd, tmp, s->root_fd, STORE_CLEAN_MARK))
        r = -errno;
    if (!r && fsync(s->root_fd))
        r = -errno;
    if (r)
        unlinkat(s->root_fd, tmp, 0);
    return r;
}

int store_take_clean_mark(struct store *s, char *text, size_t len)
{
    struct stat st;
    text[0] = '\0';
    if (fstatat(s->root_fd, STORE_CLEAN_MARK, &st, AT_SYMLINK_NOFOLLOW))
        return errno == ENOENT ? 0 : -errno;
    int fd = S_ISREG(st.st_mode)
                 ? openat(s->root_fd, STORE_CLEAN_MARK, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                 : -1;
    if (fd >= 0) {
        ssize_t n = read(fd, text, len ? len - 1 : 0);
        text[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    if (unlinkat(s->root_fd, STORE_CLEAN_MARK, 0))
        return -errno;
    if (fsync(s->root_fd))
        return -errno;
    return S_ISREG(st.st_mode) ? 1 : 0;
}

void store_blob_path(const struct store *s, const char *digest, char *out, size_t outlen)
{
    const char *hex = digest + 7; /* after "sha256:" */
    snprintf(out, outlen, "%s/%.2s/%s", s->blobs, hex, hex);
}

/* The shard directory of hex (its first two characters), never through a link. */
static int shard_open(struct store *s, const char *hex, int create)
{
    char name[3] = {hex[0], hex[1], '\0'};
    if (create && mkdirat(s->blobs_fd, name, DIR_MODE) && errno != EEXIST)
        return -errno;
    int fd = openat(s->blobs_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    int e = errno;
    if (e == ELOOP || e == ENOTDIR)
        e = -not_dir_reason(s->blobs_fd, name);
    if (e == ELOOP)
        log_warn("store: %s/%s is a symbolic link: refusing it (links are never followed; "
                 "the next start removes it)",
                 s->blobs, name);
    return -e;
}

/* Opens hex in shard dfd read-only if, and only if, it is a regular file: never through a
 * link, never waiting on a FIFO or a device. */
static int open_regular(struct store *s, int dfd, const char *hex, struct stat *st)
{
    if (fstatat(dfd, hex, st, AT_SYMLINK_NOFOLLOW))
        return -errno;
    if (!S_ISREG(st->st_mode))
        goto not_regular;
    int fd = openat(dfd, hex, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ELOOP ? -ENOENT : -errno;
    if (fstat(fd, st)) {
        int r = -errno;
        close(fd);
        return r;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        goto not_regular;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
not_regular:
    log_warn("store: %s/%.2s/%s is not a regular file: ignoring it", s->blobs, hex, hex);
    return -ENOENT;
}

int store_blob_open(struct store *s, const char *digest, int *fd, uint64_t *size)
{
    const char *hex = digest + 7;
    struct stat st;
    int dfd = shard_open(s, hex, 0);
    if (dfd < 0)
        return dfd;
    int f = open_regular(s, dfd, hex, &st);
    close(dfd);
    if (f < 0)
        return f;
    *fd = f;
    *size = (uint64_t)st.st_size;
    return 0;
}

int store_has(struct store *s, const char *digest)
{
    const char *hex = digest + 7;
    struct stat st;
    int dfd = shard_open(s, hex, 0);
    if (dfd < 0)
        return 0;
    int r = fstatat(dfd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    close(dfd);
    return r;
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

/* Free bytes above the reserve on fd's filesystem; UINT64_MAX when nobody can tell. */
static uint64_t room_above_reserve(const struct store *s, int fd)
{
    struct statvfs v;
    if (fstatvfs(fd, &v))
        return UINT64_MAX;
    uint64_t free_bytes = (uint64_t)v.f_bavail * v.f_frsize;
    return free_bytes > s->reserve ? free_bytes - s->reserve : 0;
}

/* Moves a complete, verified temporary file into its content address. */
static int publish(struct store *s, int fd, const char *tmp_name, const char *digest)
{
    const char *hex = digest + 7;
    if (fsync(fd))
        return -errno;
    int dfd = shard_open(s, hex, 1);
    if (dfd < 0)
        return dfd;
    int r = renameat(s->tmp_fd, tmp_name, dfd, hex) ? -errno : fsync(dfd) ? -errno : 0;
    close(dfd);
    return r;
}

static int tmp_create(struct store *s, char *name, size_t len)
{
    /* Unique per process and call; O_EXCL guards against anything left behind. */
    unsigned long seq = __atomic_add_fetch(&s->seq, 1, __ATOMIC_RELAXED);
    snprintf(name, len, "fill-%ld-%lu", (long)getpid(), seq);
    int fd = openat(s->tmp_fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    FILE_MODE);
    return fd < 0 ? -errno : fd;
}

int store_check_writable(struct store *s, char *path, size_t len)
{
    char name[64];
    static const char probe[] = "regcache store write check\n";
    int fd = tmp_create(s, name, sizeof(name));
    snprintf(path, len, "%s/%s", s->tmp, fd >= 0 ? name : "");
    if (fd < 0)
        return fd;
    int r = write_all(fd, probe, sizeof(probe) - 1);
    if (!r && fsync(fd))
        r = -errno;
    if (close(fd) && !r)
        r = -errno;
    if (unlinkat(s->tmp_fd, name, 0) && !r)
        r = -errno;
    return r;
}

int store_put(struct store *s, const char *digest, const void *data, size_t len)
{
    char actual[80], tmp[64];
    store_digest_of(data, len, actual);
    if (strcmp(actual, digest) != 0)
        return -EBADMSG;
    if (store_has(s, digest))
        return 0;
    if (s->reserve && room_above_reserve(s, s->tmp_fd) < len)
        return -ENOSPC;
    int fd = tmp_create(s, tmp, sizeof(tmp));
    if (fd < 0)
        return fd;
    int r = write_all(fd, data, len);
    if (!r)
        r = publish(s, fd, tmp, digest);
    close(fd);
    if (r)
        unlinkat(s->tmp_fd, tmp, 0);
    return r;
}

/* Adds fd's bytes from its start to md; 0 with *size (how many), or -errno. */
static int hash_into(int fd, EVP_MD_CTX *md, uint64_t *size)
{
    enum { CHUNK = 1 << 20 };
    char *buf = malloc(CHUNK);
    if (!buf)
        return -ENOMEM;
    uint64_t total = 0;
    int r = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, CHUNK, (off_t)total);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(md, buf, (size_t)n);
        total += (uint64_t)n;
    }
    free(buf);
    *size = total;
    return r;
}

/* sha256 of fd's bytes from its start as "sha256:<hex>"; 0 with *size, or -errno. */
static int hash_fd(int fd, char *out, uint64_t *size)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        return -ENOMEM;
    }
    int r = hash_into(fd, md, size);
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(md, d, &len);
    EVP_MD_CTX_free(md);
    memcpy(out, "sha256:", 7);
    hex_of(d, len, out + 7);
    return r;
}

int store_link(struct store *s, const char *digest, const char *path, uint64_t *size)
{
    struct stat src, root;
    if (lstat(path, &src))
        return -errno;
    if (!S_ISREG(src.st_mode))
        return -EINVAL;
    if (store_has(s, digest)) {
        *size = (uint64_t)src.st_size;
        return 0;
    }
    if (fstat(s->tmp_fd, &root))
        return -errno;
    if (src.st_dev != root.st_dev)
        return -EXDEV;
    char tmp[64];
    unsigned long seq = __atomic_add_fetch(&s->seq, 1, __ATOMIC_RELAXED);
    snprintf(tmp, sizeof(tmp), "fill-%ld-%lu", (long)getpid(), seq);
    if (linkat(AT_FDCWD, path, s->tmp_fd, tmp, 0))
        return -errno;
    /* from here on only the linked name is used: what is hashed is what is published */
    int fd = openat(s->tmp_fd, tmp, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    int r = fd < 0 ? -errno : 0;
    struct stat st;
    if (!r && (fstat(fd, &st) ? (r = -errno) : !S_ISREG(st.st_mode)))
        r = -EINVAL;
    char actual[80];
    if (!r)
        r = hash_fd(fd, actual, size);
    if (!r && strcmp(actual, digest) != 0)
        r = -EBADMSG;
    if (!r && fstat(s->root_fd, &root))
        r = -errno;
    if (!r && (st.st_uid != root.st_uid || st.st_gid != root.st_gid) &&
        fchown(fd, root.st_uid, root.st_gid))
        r = -EPERM; /* the daemon might not read it: the caller copies instead */
    if (!r && (st.st_mode & 07777) != FILE_MODE && fchmod(fd, FILE_MODE))
        r = -EPERM;
    if (!r)
        r = publish(s, fd, tmp, digest);
    if (fd >= 0)
        close(fd);
    if (r)
        unlinkat(s->tmp_fd, tmp, 0); /* the link only: the source keeps its name */
    return r;
}

int store_lock(const char *root, int exclusive)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    while (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB)) {
        if (errno == EINTR)
            continue;
        int r = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
        close(fd);
        return r;
    }
    /* an import changes the store behind the index's back: the next start walks it */
    if (exclusive && unlinkat(fd, STORE_CLEAN_MARK, 0) == 0)
        fsync(fd);
    return fd;
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
    f->fd = tmp_create(s, f->tmp_name, sizeof(f->tmp_name));
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

/* -ENOSPC when len more bytes would leave less than the reserve free. The free space is read
 * when the room known from the last reading runs out and at least every
 * STORE_ROOM_CHECK_BYTES, since other fills write to the same filesystem meanwhile. */
static int fill_room(struct store_fill *f, size_t len)
{
    if (!f->store->reserve)
        return 0; /* write(2) says when the disk is full */
    if (len <= f->margin && f->since_check + len < STORE_ROOM_CHECK_BYTES) {
        f->margin -= len;
        f->since_check += len;
        return 0;
    }
    uint64_t room = room_above_reserve(f->store, f->fd);
    if (room < len)
        return -ENOSPC;
    f->margin = room - len;
    f->since_check = 0;
    return 0;
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
    f->fd = openat(f->store->tmp_fd, f->tmp_name, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    return f->fd < 0 ? -errno : 0;
}

int store_fill_write(struct store_fill *f, const void *data, size_t len)
{
    int r = fill_unpark(f);
    if (!r)
        r = fill_room(f, len);
    if (!r)
        r = write_all(f->fd, data, len);
    if (r)
        return r;
    EVP_DigestUpdate(f->md, data, len);
    f->size += len;
    return 0;
}

int store_fill_reset(struct store_fill *f)
{
    int r = fill_unpark(f);
    if (r)
        return r;
    if (ftruncate(f->fd, 0) || lseek(f->fd, 0, SEEK_SET) < 0)
        return -errno;
    if (!EVP_DigestInit_ex(f->md, EVP_sha256(), NULL))
        return -ENOMEM;
    f->size = 0;
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
    snprintf(f->actual, sizeof(f->actual), "%s", actual);
    if (strcmp(actual, f->digest) != 0) {
        unlinkat(f->store->tmp_fd, f->tmp_name, 0);
        return -EBADMSG;
    }
    int r = fill_unpark(f);
    if (!r)
        r = publish(f->store, f->fd, f->tmp_name, f->digest);
    if (r)
        unlinkat(f->store->tmp_fd, f->tmp_name, 0);
    return r;
}

const char *store_fill_actual(const struct store_fill *f)
{
    return f->actual;
}

int store_fill_commit_as(struct store_fill *f, const char *digest)
{
    snprintf(f->digest, sizeof(f->digest), "%s", digest);
    return store_fill_commit(f);
}

void store_fill_abort(struct store_fill *f)
{
    if (!f->finished)
        unlinkat(f->store->tmp_fd, f->tmp_name, 0);
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
    content_epoch_bump(); /* before: nothing kept from now on names the file */
    const char *hex = digest + 7;
    int dfd = shard_open(s, hex, 0);
    if (dfd < 0)
        return dfd == -ELOOP ? -ENOENT : dfd;
    int r = unlinkat(dfd, hex, 0) ? -errno : 0;
    close(dfd);
    return r;
}

int store_verify(struct store *s, const char *digest)
{
    char actual[80];
    unsigned char md[EVP_MAX_MD_SIZE], buf[1 << 16];
    unsigned n = 0;
    uint64_t size;
    int fd, r = store_blob_open(s, digest, &fd, &size);
    if (r)
        return r;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    r = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ? 0 : -ENOMEM;
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

/* A directory opened anew (its own read position) for walking. */
static DIR *open_walk(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0)
        close(fd);
    return d;
}

/* Reports a stray entry of directory dfd and removes it when fn asks to. */
static int stray(int dfd, const char *name, const char *path,
                 int (*fn)(void *, const char *, const char *, uint64_t), void *ud, uint64_t size)
{
    int r = fn(ud, NULL, path, size);
    if (r == STORE_EACH_REMOVE) {
        unlinkat(dfd, name, 0);
        r = 0;
    }
    return r < 0 ? r : 0;
}

static int walk_shard(struct store *s, const char *shard,
                      int (*fn)(void *, const char *, const char *, uint64_t), void *ud)
{
    DIR *d = open_walk(s->blobs_fd, shard);
    if (!d)
        return 0;
    int dfd = dirfd(d), r = 0;
    int shard_named = strlen(shard) == 2;
    struct dirent *e;
    while (!r && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[STORE_PATH_MAX], digest[80];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s/%s", s->blobs, shard, e->d_name);
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) || S_ISDIR(st.st_mode))
            continue;
        int named = S_ISREG(st.st_mode) && shard_named && is_hex64(e->d_name) &&
                    strncmp(e->d_name, shard, 2) == 0;
        if (!named) {
            r = stray(dfd, e->d_name, path, fn, ud, S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0);
            continue;
        }
        snprintf(digest, sizeof(digest), "sha256:%s", e->d_name);
        r = fn(ud, digest, path, (uint64_t)st.st_size);
        if (r > 0)
            r = 0;
    }
    closedir(d);
    return r;
}

int store_each(struct store *s, int (*fn)(void *ud, const char *digest, const char *path,
                                          uint64_t size),
               void *ud)
{
    DIR *top = open_walk(s->blobs_fd, ".");
    if (!top)
        return -errno;
    struct dirent *shard;
    int r = 0;
    while (!r && (shard = readdir(top))) {
        if (shard->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(s->blobs_fd, shard->d_name, &st, AT_SYMLINK_NOFOLLOW))
            continue;
        if (S_ISDIR(st.st_mode)) {
            r = walk_shard(s, shard->d_name, fn, ud);
        } else {
            char path[STORE_PATH_MAX];
            snprintf(path, sizeof(path), "%s/%s", s->blobs, shard->d_name);
            r = stray(s->blobs_fd, shard->d_name, path, fn, ud, 0);
        }
    }
    closedir(top);
    return r;
}

int store_room_for(struct store *s, uint64_t bytes)
{
    uint64_t room = room_above_reserve(s, s->blobs_fd);
    return bytes > room ? -ENOSPC : 0;
}

uint64_t store_free_bytes(struct store *s)
{
    struct statvfs v;
    if (fstatvfs(s->blobs_fd, &v))
        return 0;
    return (uint64_t)v.f_bavail * v.f_frsize;
}

/* ---- partial fills kept across restarts ---- */

#define PARTIAL_PREFIX "partial-"
#define PARTIAL_SOURCE_MAX 40

static void partial_source(const char *source, char *out)
{
    size_t i = 0;
    for (; source[i] && i < PARTIAL_SOURCE_MAX; i++) {
        char ch = source[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '-';
        out[i] = ok ? ch : '_';
    }
    out[i] = '\0';
}

int store_fill_begin_partial(struct store *s, const char *digest, const char *source,
                             struct store_fill **out, uint64_t *have)
{
    char src[PARTIAL_SOURCE_MAX + 1], name[64 + sizeof(PARTIAL_PREFIX) + PARTIAL_SOURCE_MAX + 2];
    struct stat st;
    *have = 0;
    partial_source(source, src);
    snprintf(name, sizeof(name), PARTIAL_PREFIX "%.64s-%s", digest + 7, src);
    int fd = openat(s->tmp_fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
                    FILE_MODE);
    if (fd >= 0 && (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
                    flock(fd, LOCK_EX | LOCK_NB))) {
        close(fd); /* held by another fill, or not a plain file of ours: not touched */
        fd = -1;
    }
    if (fd < 0)
        return store_fill_begin(s, digest, out);
    int r = -ENOMEM;
    struct store_fill *f = calloc(1, sizeof(*f));
    if (!f || !(f->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(f->md, EVP_sha256(), NULL))
        goto fail;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if ((r = hash_into(fd, f->md, &f->size)) || (r = lseek(fd, 0, SEEK_END) < 0 ? -errno : 0))
        goto fail;
    f->store = s;
    snprintf(f->digest, sizeof(f->digest), "%s", digest);
    snprintf(f->tmp_name, sizeof(f->tmp_name), "%s", name);
    f->fd = fd;
    *have = f->size;
    *out = f;
    return 0;
fail:
    if (f)
        EVP_MD_CTX_free(f->md);
    free(f);
    unlinkat(s->tmp_fd, name, 0);
    close(fd);
    return r;
}

void store_fill_keep(struct store_fill *f)
{
    f->finished = 1;
}

int store_partials_prune(struct store *s, const char *const *sources, size_t n,
                         uint64_t max_age_s)
{
    int fd = openat(s->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    int removed = 0;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t plen = sizeof(PARTIAL_PREFIX) - 1;
        if (strncmp(e->d_name, PARTIAL_PREFIX, plen) != 0)
            continue;
        const char *src = strlen(e->d_name) > plen + 65 ? e->d_name + plen + 65 : "";
        int known = 0;
        for (size_t i = 0; i < n && !known; i++) {
            char want[PARTIAL_SOURCE_MAX + 1];
            partial_source(sources[i], want);
            known = strcmp(src, want) == 0;
        }
        struct stat st;
        if (fstatat(s->tmp_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW))
            continue;
        int old = st.st_mtime + (time_t)max_age_s < now;
        if (known && !old && S_ISREG(st.st_mode))
            continue;
        int pfd = openat(s->tmp_fd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (pfd >= 0 && flock(pfd, LOCK_EX | LOCK_NB)) {
            close(pfd); /* a fill in another process is writing it */
            continue;
        }
        if (pfd >= 0)
            close(pfd);
        if (unlinkat(s->tmp_fd, e->d_name, 0) == 0) /* a link goes, never its target */
            removed++;
    }
    closedir(d);
    return removed;
}
