/* SPDX-License-Identifier: Apache-2.0 */
/* Putting rendered files in place: unchanged ones are left alone, replaced ones are backed up
 * first, and no reader ever sees half a file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clients/clients.h"

static int fail(char *err, size_t errlen, const char *what, const char *path, int e)
{
    snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
    return -e;
}

/* mkdir -p of path's parent directories (each made 0755). */
static int make_parents(char *path, char *err, size_t errlen)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int r = mkdir(path, 0755);
        int e = errno;
        struct stat st;
        if (r && e == EEXIST && (stat(path, &st) || !S_ISDIR(st.st_mode)))
            e = ENOTDIR, r = -1;
        else if (r && e == EEXIST)
            r = 0;
        if (r) {
            fail(err, errlen, "cannot create the directory", path, e);
            *p = '/';
            return -e;
        }
        *p = '/';
    }
    return 0;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* 1 when the file at path holds exactly data, 0 when it differs, -errno when it cannot be
 * read (-ENOENT: there is none). */
static int same_content(const char *path, const struct buf *data)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int result;
    if (fstat(fd, &st))
        result = -errno;
    else if (!S_ISREG(st.st_mode))
        result = -EISDIR;
    else if ((size_t)st.st_size != data->len)
        result = 0;
    else
        result = 1;
    size_t off = 0;
    char chunk[8192];
    while (result == 1) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            result = -errno;
        else if (n == 0)
            break;
        else if (off + (size_t)n > data->len || memcmp(data->data + off, chunk, (size_t)n))
            result = 0;
        else
            off += (size_t)n;
    }
    if (result == 1 && off != data->len)
        result = 0;
    close(fd);
    return result;
}

/* Copies src to dst (created, never overwritten), for filesystems without hard links. */
static int copy_file(const char *src, const char *dst, mode_t mode)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (out < 0) {
        int e = errno;
        close(in);
        return -e;
    }
    int r = 0;
    char chunk[8192];
    for (;;) {
        ssize_t n = read(in, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = n < 0 ? -errno : 0;
            break;
        }
        if ((r = write_all(out, chunk, (size_t)n)))
            break;
    }
    if (!r && fsync(out))
        r = -errno;
    close(in);
    if (close(out) && !r)
        r = -errno;
    if (r)
        unlink(dst);
    return r;
}

/* Keeps the current file as path.regcache-backup-<UTC time>[-N]; its name into backup. */
static int back_up(const char *path, mode_t mode, char *backup, size_t backup_len)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    for (int n = 1; n < 100; n++) {
        if (n == 1)
            snprintf(backup, backup_len, "%s.regcache-backup-%s", path, stamp);
        else
            snprintf(backup, backup_len, "%s.regcache-backup-%s-%d", path, stamp, n);
        int r = link(path, backup) ? -errno : 0;
        if (r == -EPERM || r == -EOPNOTSUPP || r == -EMLINK)
            r = copy_file(path, backup, mode);
        if (r != -EEXIST)
            return r;
    }
    return -EEXIST;
}

static int install_one(const struct clients_file *f, const char *root, FILE *report, char *err,
                       size_t errlen)
{
    char full[CLIENTS_PATH_MAX], tmp[CLIENTS_PATH_MAX + 64], backup[CLIENTS_PATH_MAX + 64];
    if ((size_t)snprintf(full, sizeof(full), "%s%s", root, f->path) >= sizeof(full)) {
        snprintf(err, errlen, "%s%s: path too long", root, f->path);
        return -ENAMETOOLONG;
    }
    int same = same_content(full, &f->content);
    if (same == 1) {
        fprintf(report, "regcache: %s: unchanged\n", full);
        return 0;
    }
    if (same < 0 && same != -ENOENT)
        return fail(err, errlen, "cannot read", full, -same);
    int r = make_parents(full, err, errlen);
    if (r)
        return r;
    mode_t mode = 0644;
    struct stat st;
    int existed = same == 0;
    if (existed && stat(full, &st) == 0)
        mode = st.st_mode & 07777;
    backup[0] = '\0';
    if (existed && (r = back_up(full, mode, backup, sizeof(backup))))
        return fail(err, errlen, "cannot back up", full, -r);
    snprintf(tmp, sizeof(tmp), "%s.regcache-new-%ld", full, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return fail(err, errlen, "cannot create", tmp, errno);
    r = write_all(fd, f->content.data, f->content.len);
    if (!r && fchmod(fd, mode))
        r = -errno; /* the umask does not get to narrow or widen what the file had */
    if (!r && fsync(fd))
        r = -errno;
    if (close(fd) && !r)
        r = -errno;
    if (!r && rename(tmp, full))
        r = -errno;
    if (r) {
        unlink(tmp);
        return fail(err, errlen, "cannot write", full, -r);
    }
    if (backup[0])
        fprintf(report, "regcache: %s: replaced; the previous version is %s\n", full, backup);
    else
        fprintf(report, "regcache: %s: written\n", full);
    return 0;
}

int clients_plan_write(const struct clients_plan *plan, const char *root, FILE *report, char *err,
                       size_t errlen)
{
    root = root ? root : "";
    for (size_t i = 0; i < plan->n_files; i++) {
        int r = install_one(&plan->files[i], root, report, err, errlen);
        if (r)
            return r;
    }
    return 0;
}
