/* SPDX-License-Identifier: Apache-2.0 */
/* registry:2's filesystem layout, below <rootdirectory>/docker/registry/v2:
 *   blobs/sha256/<2 hex>/<64 hex>/data                      every blob and manifest, once
 *   repositories/<name>/_manifests/tags/<tag>/current/link  "sha256:<hex>": the tag
 *   repositories/<name>/_manifests/revisions/sha256/<hex>/link  a manifest of the repository
 *   repositories/<name>/_layers/sha256/<hex>/link           a blob of the repository
 *   repositories/<name>/_uploads/                           pushes in progress (ignored)
 * Names are nested directories (library/alpine, org/team/app): a repository is a directory
 * holding _manifests. The link files are what registry:2 vouches for; a data file is trusted
 * only once it hashes to its name. */
#include "migrate/import_registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "migrate/adopt.h"
#include "util/clock.h"
#include "util/map.h"
#include "util/parse.h"
#include "util/reference.h"

#define PATH_MAX_LEN 4096
#define MAX_DEPTH 32              /* nested repository name components, at most */
#define CHECKPOINT_ITEMS 500      /* index changes written at least this often... */
#define CHECKPOINT_MS (10 * 1000) /* ...and this often */
#define PROGRESS_MS 200           /* the terminal line is redrawn this often */
#define MAX_HOSTED_GLOBS 64

struct repo {
    char *name;
    int hosted;
    char **tags, **tag_digests; /* parallel */
    size_t n_tags;
    char **revisions; /* manifest digests */
    size_t n_revisions;
    char **layers; /* blob digests */
    size_t n_layers;
};

struct strv {
    char **v;
    size_t n;
};

struct job {
    const struct config *cfg;
    const char *upstream;
    const char *hosted_globs[MAX_HOSTED_GLOBS];
    size_t n_hosted_globs;
    char v2[PATH_MAX_LEN]; /* .../docker/registry/v2 */
    struct repo *repos;
    size_t n_repos;
    struct map *blob_sizes; /* digest -> uint64_t* : data files found under blobs/ */
    struct map *revisions;  /* digest -> marker: every repository's manifests */
    struct map *usable;     /* digest -> marker: blobs and manifests now in the store */
    struct strv plain;      /* blobs to adopt (no repository's manifest) */
    struct strv manifests;  /* manifests to adopt */
    struct adopt *adopt;
    /* figures */
    size_t skipped_corrupt, skipped_missing, skipped_manifests, skipped_tags;
    uint64_t items_total, items_done, bytes_total, bytes_done;
    uint64_t t0_us, last_draw_us, last_checkpoint_ms;
    size_t since_checkpoint;
    int progress; /* stderr is a terminal */
    int drawn;    /* a progress line is on screen */
};

static volatile sig_atomic_t interrupted;
static char marker;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int strv_push(struct strv *s, const char *str)
{
    char **v = realloc(s->v, (s->n + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    s->v = v;
    if (!(v[s->n] = strdup(str)))
        return -ENOMEM;
    s->n++;
    return 0;
}

static void strv_free(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* ---- progress: one line on a terminal, nothing otherwise ---- */

static void clear_progress(struct job *j)
{
    if (j->drawn) {
        fprintf(stderr, "\r\033[K");
        j->drawn = 0;
    }
}

static void draw_progress(struct job *j, int force)
{
    if (!j->progress)
        return;
    uint64_t now = clock_mono_us();
    if (!force && now - j->last_draw_us < PROGRESS_MS * 1000ULL)
        return;
    j->last_draw_us = now;
    double secs = (double)(now - j->t0_us) / 1e6;
    double rate = secs > 0.05 ? (double)j->bytes_done / secs : 0;
    char done[32], total[32], r[32], eta[32] = "?";
    format_size(j->bytes_done, done, sizeof(done));
    format_size(j->bytes_total, total, sizeof(total));
    format_size((uint64_t)rate, r, sizeof(r));
    if (rate > 0 && j->bytes_total >= j->bytes_done) {
        unsigned long s = (unsigned long)((double)(j->bytes_total - j->bytes_done) / rate);
        snprintf(eta, sizeof(eta), "%lu:%02lu", s / 60, s % 60);
    }
    fprintf(
        stderr, "\r\033[Kimport-registry: %llu/%llu blobs and manifests, %s of %s, %s/s, ETA %s",
        (unsigned long long)j->items_done, (unsigned long long)j->items_total, done, total, r, eta);
    j->drawn = 1;
}

/* A message on stderr, without tearing the progress line. */
static void report(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(struct job *j, const char *fmt, ...)
{
    clear_progress(j);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "regcache: import-registry: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- reading the layout ---- */

/* The digest in a link file ("sha256:<hex>", maybe with a trailing newline) into out. */
static int read_link(const char *path, char *out, size_t len)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[REF_DIGEST_MAX + 8];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        return -EIO;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    if (!ref_digest_valid(buf, (size_t)n) || (size_t)n >= len)
        return -EINVAL;
    memcpy(out, buf, (size_t)n + 1);
    return 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The digests of <dir>/sha256/<hex>/link files into out (bad ones reported and left out). */
static int read_digest_links(struct job *j, const char *dir, const char *what, const char *repo,
                             char ***out, size_t *n)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "%s/sha256", dir);
    DIR *d = opendir(path);
    if (!d)
        return 0; /* none */
    struct strv s = {NULL, 0};
    struct dirent *e;
    int r = 0;
    while (!r && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char link[PATH_MAX_LEN], digest[REF_DIGEST_MAX + 1], name[80];
        snprintf(link, sizeof(link), "%s/%s/link", path, e->d_name);
        snprintf(name, sizeof(name), "sha256:%.70s", e->d_name);
        if (read_link(link, digest, sizeof(digest)) || strcmp(digest, name) != 0) {
            /* registry:2 writes link = its directory's digest: anything else is damage */
            if (access(link, F_OK) == 0)
                report(j, "%s: %s link %s does not name %s: left out", repo, what, link, name);
            continue;
        }
        r = strv_push(&s, digest);
    }
    closedir(d);
    *out = s.v;
    *n = s.n;
    return r;
}

static int read_tags(struct job *j, struct repo *rp, const char *dir)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "%s/_manifests/tags", dir);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct strv tags = {NULL, 0}, digests = {NULL, 0};
    struct dirent *e;
    int r = 0;
    while (!r && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char link[PATH_MAX_LEN], digest[REF_DIGEST_MAX + 1];
        snprintf(link, sizeof(link), "%s/%s/current/link", path, e->d_name);
        if (!ref_tag_valid(e->d_name, strlen(e->d_name))) {
            report(j, "%s: tag directory %s/%s is not a valid tag: left out", rp->name, path,
                   e->d_name);
            continue;
        }
        if (read_link(link, digest, sizeof(digest))) {
            if (access(link, F_OK) == 0)
                report(j, "%s:%s: %s holds no digest: left out", rp->name, e->d_name, link);
            continue; /* a tag deleted in registry:2 keeps its directory, not current/ */
        }
        if (!(r = strv_push(&tags, e->d_name)))
            r = strv_push(&digests, digest);
    }
    closedir(d);
    rp->tags = tags.v;
    rp->tag_digests = digests.v;
    rp->n_tags = digests.n;
    if (tags.n > digests.n) /* the last push failed half-way: free the odd one */
        free(tags.v[tags.n - 1]);
    return r;
}

static int hosted_by_flag(const struct job *j, const char *name)
{
    for (size_t i = 0; i < j->n_hosted_globs; i++)
        if (fnmatch(j->hosted_globs[i], name, 0) == 0)
            return 1;
    return 0;
}

static int hosted_by_config(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_hosted; i++)
        if (fnmatch(cfg->hosted[i], name, 0) == 0)
            return 1;
    return 0;
}

static int add_repo(struct job *j, const char *name, const char *dir)
{
    if (!ref_name_valid(name, strlen(name))) {
        report(j, "%s: not a valid repository name: left out", dir);
        return 0;
    }
    struct repo *v = realloc(j->repos, (j->n_repos + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    j->repos = v;
    struct repo *rp = &v[j->n_repos];
    memset(rp, 0, sizeof(*rp));
    if (!(rp->name = strdup(name)))
        return -ENOMEM;
    j->n_repos++;
    rp->hosted = hosted_by_flag(j, name);
    char sub[PATH_MAX_LEN];
    int r = read_tags(j, rp, dir);
    snprintf(sub, sizeof(sub), "%s/_manifests/revisions", dir);
    if (!r)
        r = read_digest_links(j, sub, "manifest", name, &rp->revisions, &rp->n_revisions);
    snprintf(sub, sizeof(sub), "%s/_layers", dir);
    if (!r)
        r = read_digest_links(j, sub, "layer", name, &rp->layers, &rp->n_layers);
    return r;
}

/* Walks repositories/ for directories holding _manifests. name: the path below it. */
static int walk_repos(struct job *j, const char *dir, const char *name, int depth)
{
    if (depth > MAX_DEPTH)
        return 0;
    char sub[PATH_MAX_LEN];
    snprintf(sub, sizeof(sub), "%s/_manifests", dir);
    int r = 0;
    if (name[0] && is_dir(sub) && (r = add_repo(j, name, dir)))
        return r;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    while (!r && (e = readdir(d))) {
        if (e->d_name[0] == '.' || e->d_name[0] == '_') /* _manifests, _layers, _uploads */
            continue;
        char child[PATH_MAX_LEN], child_name[PATH_MAX_LEN];
        snprintf(child, sizeof(child), "%s/%s", dir, e->d_name);
        if (!is_dir(child))
            continue;
        snprintf(child_name, sizeof(child_name), "%s%s%s", name, name[0] ? "/" : "", e->d_name);
        r = walk_repos(j, child, child_name, depth + 1);
    }
    closedir(d);
    return r;
}

static void data_path(const struct job *j, const char *digest, char *out, size_t len)
{
    const char *hex = digest + 7;
    snprintf(out, len, "%s/blobs/sha256/%.2s/%s/data", j->v2, hex, hex);
}

/* Every blobs/sha256/<2>/<hex>/data file, with its size. */
static int scan_blobs(struct job *j)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "%s/blobs/sha256", j->v2);
    DIR *top = opendir(path);
    if (!top)
        return 0;
    struct dirent *e;
    int r = 0;
    while (!r && (e = readdir(top))) {
        if (strlen(e->d_name) != 2)
            continue;
        char shard[PATH_MAX_LEN];
        snprintf(shard, sizeof(shard), "%s/%s", path, e->d_name);
        DIR *d = opendir(shard);
        if (!d)
            continue;
        struct dirent *f;
        while (!r && (f = readdir(d))) {
            char digest[80], data[PATH_MAX_LEN];
            if (strlen(f->d_name) != 64 || strncmp(f->d_name, e->d_name, 2) != 0)
                continue;
            snprintf(digest, sizeof(digest), "sha256:%s", f->d_name);
            if (!ref_digest_is_sha256(digest, strlen(digest)))
                continue;
            snprintf(data, sizeof(data), "%s/%s/data", shard, f->d_name);
            struct stat st;
            if (lstat(data, &st) || !S_ISREG(st.st_mode))
                continue; /* missing: reported if a repository links it */
            uint64_t *size = malloc(sizeof(*size));
            if (!size) {
                r = -ENOMEM;
                break;
            }
            *size = (uint64_t)st.st_size;
            if (map_put(j->blob_sizes, digest, size) == MAP_NOMEM) {
                free(size);
                r = -ENOMEM;
            }
        }
        closedir(d);
    }
    closedir(top);
    return r;
}

static int mark(struct map *m, const char *key)
{
    return map_put(m, key, &marker) == MAP_NOMEM ? -ENOMEM : 0;
}

/* What is to be adopted: manifests (each once), the other blobs, and what is missing. */
static int plan(struct job *j)
{
    int r = 0;
    struct map *missing = map_new();
    if (!missing)
        return -ENOMEM;
    for (size_t i = 0; !r && i < j->n_repos; i++) {
        struct repo *rp = &j->repos[i];
        for (size_t k = 0; !r && k < rp->n_revisions; k++) {
            const char *d = rp->revisions[k];
            if (map_get(j->revisions, d))
                continue;
            if (!(r = mark(j->revisions, d)) && map_get(j->blob_sizes, d))
                r = strv_push(&j->manifests, d);
        }
    }
    for (size_t i = 0; !r && i < j->n_repos; i++) {
        struct repo *rp = &j->repos[i];
        for (size_t k = 0; !r && k < rp->n_layers; k++)
            if (!map_get(j->blob_sizes, rp->layers[k]) && !map_get(missing, rp->layers[k])) {
                char p[PATH_MAX_LEN];
                data_path(j, rp->layers[k], p, sizeof(p));
                report(j, "blob %s of %s: missing (%s): skipped", rp->layers[k], rp->name, p);
                j->skipped_missing++;
                r = mark(missing, rp->layers[k]);
            }
        for (size_t k = 0; !r && k < rp->n_revisions; k++)
            if (!map_get(j->blob_sizes, rp->revisions[k]) && !map_get(missing, rp->revisions[k])) {
                char p[PATH_MAX_LEN];
                data_path(j, rp->revisions[k], p, sizeof(p));
                report(j, "manifest %s of %s: missing (%s): skipped with its tags",
                       rp->revisions[k], rp->name, p);
                j->skipped_missing++;
                r = mark(missing, rp->revisions[k]);
            }
    }
    map_free(missing);
    return r;
}

struct collect {
    struct job *j;
    int r;
};

static int collect_plain(const char *key, void *value, void *ud)
{
    struct collect *c = ud;
    uint64_t size = *(uint64_t *)value;
    c->j->bytes_total += size;
    if (map_get(c->j->revisions, key))
        return 0;
    return (c->r = strv_push(&c->j->plain, key));
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- adopting ---- */

static int checkpoint(struct job *j, int force)
{
    j->since_checkpoint++;
    uint64_t now = clock_wall_ms();
    if (!force && j->since_checkpoint < CHECKPOINT_ITEMS &&
        now - j->last_checkpoint_ms < CHECKPOINT_MS)
        return 0;
    j->since_checkpoint = 0;
    j->last_checkpoint_ms = now;
    return adopt_checkpoint(j->adopt);
}

static int adopt_plain(struct job *j, const char *digest)
{
    char path[PATH_MAX_LEN];
    data_path(j, digest, path, sizeof(path));
    enum adopt_how how;
    uint64_t size = 0;
    int r = adopt_blob_file(j->adopt, path, digest, &how, &size);
    uint64_t *known = map_get(j->blob_sizes, digest);
    j->bytes_done += known ? *known : size;
    j->items_done++;
    if (r >= 0)
        return mark(j->usable, digest);
    if (r == -EBADMSG) {
        report(j, "blob %s (%s): corrupt: its bytes do not hash to its digest: skipped", digest,
               path);
        j->skipped_corrupt++;
        return 0;
    }
    if (r == -ENOENT || r == -EINVAL) {
        report(j, "blob %s (%s): %s: skipped", digest, path,
               r == -ENOENT ? "missing" : "not a regular file");
        j->skipped_missing++;
        return 0;
    }
    report(j, "blob %s (%s): cannot store it: %s", digest, path, strerror(-r));
    return r; /* disk full, I/O error: stop rather than skip everything after */
}

/* Reads a manifest's data file (at most max bytes). */
static int read_file(const char *path, uint64_t max, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *b = malloc(size ? size : 1);
    int r = b ? 0 : -ENOMEM;
    while (!r && got < size) {
        ssize_t n = read(fd, b + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            r = -EIO;
        else
            got += (size_t)n;
    }
    close(fd);
    if (r) {
        free(b);
        return r;
    }
    *out = b;
    *len = got;
    return 0;
}

static int adopt_one_manifest(struct job *j, const char *digest)
{
    char path[PATH_MAX_LEN], why[300];
    data_path(j, digest, path, sizeof(path));
    char *body = NULL;
    size_t len = 0;
    uint64_t *known = map_get(j->blob_sizes, digest);
    j->bytes_done += known ? *known : 0;
    j->items_done++;
    int r = read_file(path, j->cfg->max_manifest_bytes, &body, &len);
    if (r) {
        report(j, "manifest %s (%s): %s: skipped with its tags", digest, path,
               r == -EFBIG ? "larger than limits.max_manifest_size" : strerror(-r));
        j->skipped_manifests++;
        return r == -ENOMEM ? r : 0;
    }
    r = adopt_manifest(j->adopt, digest, body, len, NULL, why, sizeof(why));
    free(body);
    if (r >= 0)
        return mark(j->usable, digest);
    if (r == -EBADMSG) {
        report(j, "manifest %s (%s): corrupt: %s: skipped with its tags", digest, path, why);
        j->skipped_corrupt++;
        return 0;
    }
    if (r == -EINVAL) {
        report(j, "manifest %s (%s): not a manifest regcache serves (%s): skipped with its tags",
               digest, path, why);
        j->skipped_manifests++;
        return 0;
    }
    report(j, "manifest %s (%s): %s", digest, path, why);
    return r;
}

/* Image manifests before indexes: a hosted index may only name what is there. */
static int manifest_rank(struct job *j, const char *digest)
{
    const char *t = adopt_manifest_type(j->adopt, digest);
    return t && (strstr(t, "index") || strstr(t, "list")) ? 1 : 0;
}

static int index_cached_repo(struct job *j, struct repo *rp)
{
    for (size_t k = 0; k < rp->n_layers; k++)
        if (map_get(j->usable, rp->layers[k]))
            adopt_ref(j->adopt, j->upstream, rp->name, rp->layers[k]);
    for (size_t k = 0; k < rp->n_revisions; k++)
        if (map_get(j->usable, rp->revisions[k]))
            adopt_ref(j->adopt, j->upstream, rp->name, rp->revisions[k]);
    for (size_t k = 0; k < rp->n_tags; k++) {
        const char *d = rp->tag_digests[k];
        if (!map_get(j->usable, d)) {
            report(j, "tag %s:%s: its manifest %s was skipped: tag left out", rp->name, rp->tags[k],
                   d);
            j->skipped_tags++;
            continue;
        }
        /* validated 0: the first pull asks the upstream with one HEAD whether it moved */
        int r = adopt_tag(j->adopt, j->upstream, rp->name, rp->tags[k], d, 0);
        if (r < 0)
            return r;
    }
    return 0;
}

static int index_hosted_repo(struct job *j, struct repo *rp)
{
    int r;
    for (size_t k = 0; k < rp->n_layers; k++)
        if (map_get(j->usable, rp->layers[k]) &&
            (r = adopt_hosted_blob(j->adopt, rp->name, rp->layers[k])) < 0)
            return r;
    struct map *ok = map_new();
    if (!ok)
        return -ENOMEM;
    for (int rank = 0; rank < 2; rank++)
        for (size_t k = 0; k < rp->n_revisions; k++) {
            const char *d = rp->revisions[k];
            if (!map_get(j->usable, d) || manifest_rank(j, d) != rank)
                continue;
            r = adopt_hosted_manifest(j->adopt, rp->name, NULL, d);
            if (r == -ENOENT) {
                report(j,
                       "%s@%s: refers to content the source does not hold (a push would "
                       "be refused): not imported as hosted",
                       rp->name, d);
                j->skipped_manifests++;
                continue;
            }
            if (r < 0 || (r = mark(ok, d))) {
                map_free(ok);
                return r;
            }
        }
    for (size_t k = 0; k < rp->n_tags; k++) {
        const char *d = rp->tag_digests[k];
        if (!map_get(ok, d)) {
            report(j, "tag %s:%s: its manifest %s was skipped: tag left out", rp->name, rp->tags[k],
                   d);
            j->skipped_tags++;
            continue;
        }
        if ((r = adopt_hosted_manifest(j->adopt, rp->name, rp->tags[k], d)) < 0) {
            map_free(ok);
            return r;
        }
    }
    map_free(ok);
    return 0;
}

/* ---- the command ---- */

static int usage(void)
{
    fprintf(stderr, "usage: regcache import-registry DIR [-c FILE] [--upstream NAME] "
                    "[--hosted GLOB]...\n"
                    "  DIR: registry:2's storage.filesystem.rootdirectory (or its "
                    "docker/registry/v2)\n");
    return 2;
}

static int find_v2(const char *dir, char *out, size_t len)
{
    char p[PATH_MAX_LEN], q[PATH_MAX_LEN];
    snprintf(p, sizeof(p), "%s/docker/registry/v2", dir);
    if (is_dir(p)) {
        snprintf(out, len, "%s", p);
        return 0;
    }
    snprintf(p, sizeof(p), "%s/repositories", dir);
    snprintf(q, sizeof(q), "%s/blobs", dir);
    if (is_dir(p) || is_dir(q)) {
        snprintf(out, len, "%s", dir);
        return 0;
    }
    return -ENOENT;
}

static int free_size(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    free(value);
    return 0;
}

static void job_free(struct job *j)
{
    for (size_t i = 0; i < j->n_repos; i++) {
        struct repo *rp = &j->repos[i];
        free(rp->name);
        for (size_t k = 0; k < rp->n_tags; k++) {
            free(rp->tags[k]);
            free(rp->tag_digests[k]);
        }
        free(rp->tags);
        free(rp->tag_digests);
        struct strv a = {rp->revisions, rp->n_revisions}, b = {rp->layers, rp->n_layers};
        strv_free(&a);
        strv_free(&b);
    }
    free(j->repos);
    if (j->blob_sizes) {
        map_each(j->blob_sizes, free_size, NULL);
        map_free(j->blob_sizes);
    }
    map_free(j->revisions);
    map_free(j->usable);
    strv_free(&j->plain);
    strv_free(&j->manifests);
}

/* Every --hosted repository must be a configured hosted one, or the daemon would not serve it. */
static int check_hosted(struct job *j)
{
    int bad = 0;
    for (size_t i = 0; i < j->n_repos; i++) {
        struct repo *rp = &j->repos[i];
        if (rp->hosted && !hosted_by_config(j->cfg, rp->name)) {
            report(j, "%s matches --hosted but no hosted pattern of %s", rp->name,
                   j->cfg->source ? j->cfg->source : "the configuration");
            bad = 1;
        } else if (!rp->hosted && hosted_by_config(j->cfg, rp->name)) {
            report(j,
                   "warning: %s matches a hosted pattern of the configuration but is imported "
                   "as cached content of %s: clients reach it only with ?ns=%s (use --hosted "
                   "to import it as hosted)",
                   rp->name, j->upstream, j->upstream);
        }
    }
    if (bad) {
        fprintf(stderr, "regcache: import-registry: add them to the configuration first, e.g.\n"
                        "hosted:\n");
        for (size_t i = 0; i < j->n_hosted_globs; i++)
            fprintf(stderr, "  - \"%s\"\n", j->hosted_globs[i]);
        return 2;
    }
    return 0;
}

static int run(struct job *j, const char *dir)
{
    int r;
    if (find_v2(dir, j->v2, sizeof(j->v2))) {
        fprintf(stderr,
                "regcache: import-registry: %s holds no registry:2 storage (neither "
                "%s/docker/registry/v2 nor blobs/ and repositories/ in it)\n",
                dir, dir);
        return 1;
    }
    j->blob_sizes = map_new();
    j->revisions = map_new();
    j->usable = map_new();
    if (!j->blob_sizes || !j->revisions || !j->usable)
        return 1;
    char repos[PATH_MAX_LEN];
    snprintf(repos, sizeof(repos), "%s/repositories", j->v2);
    if ((r = walk_repos(j, repos, "", 0)) || (r = check_hosted(j)))
        return r == 2 ? 2 : 1;
    if ((r = scan_blobs(j)) || (r = plan(j)))
        return 1;
    struct collect c = {j, 0};
    map_each(j->blob_sizes, collect_plain, &c);
    if (c.r)
        return 1;
    /* in digest order: shard after shard, as they lie on disk */
    if (j->plain.n)
        qsort(j->plain.v, j->plain.n, sizeof(char *), by_string);
    j->items_total = j->plain.n + j->manifests.n;

    char err[1024];
    if ((r = adopt_open(j->cfg, &j->adopt, err, sizeof(err)))) {
        fprintf(stderr, "regcache: import-registry: %s\n", err);
        return 1;
    }
    j->t0_us = clock_mono_us();
    j->last_checkpoint_ms = clock_wall_ms();
    r = 0;
    for (size_t i = 0; !r && !interrupted && i < j->plain.n; i++) {
        r = adopt_plain(j, j->plain.v[i]);
        draw_progress(j, 0);
        if (!r)
            r = checkpoint(j, 0);
    }
    for (size_t i = 0; !r && !interrupted && i < j->manifests.n; i++) {
        r = adopt_one_manifest(j, j->manifests.v[i]);
        draw_progress(j, 0);
        if (!r)
            r = checkpoint(j, 0);
    }
    size_t tagged = 0;
    for (size_t i = 0; !r && !interrupted && i < j->n_repos; i++) {
        r = j->repos[i].hosted ? index_hosted_repo(j, &j->repos[i])
                               : index_cached_repo(j, &j->repos[i]);
        tagged += j->repos[i].n_tags;
        if (!r)
            r = checkpoint(j, 0);
    }
    draw_progress(j, 1);
    clear_progress(j);
    const struct adopt_counts *n = adopt_counts(j->adopt);
    struct adopt_counts k = *n;
    adopt_close(j->adopt);
    j->adopt = NULL;

    double secs = (double)(clock_mono_us() - j->t0_us) / 1e6;
    char bytes[32], linked[32], copied[32];
    format_size(k.bytes_linked + k.bytes_copied + k.bytes_present, bytes, sizeof(bytes));
    format_size(k.bytes_linked, linked, sizeof(linked));
    format_size(k.bytes_copied, copied, sizeof(copied));
    size_t hosted_repos = 0;
    for (size_t i = 0; i < j->n_repos; i++)
        hosted_repos += j->repos[i].hosted;
    size_t skipped = j->skipped_corrupt + j->skipped_missing + j->skipped_manifests;
    printf("import-registry: %zu repositories (%zu hosted), %llu tags (%llu new), %llu manifests "
           "(%llu new), blobs %llu linked (%s), %llu copied (%s), %llu already present, %zu "
           "skipped corrupt, %zu missing; %s in %.1f s\n",
           j->n_repos, hosted_repos, (unsigned long long)(k.tags_new + k.tags_present),
           (unsigned long long)k.tags_new,
           (unsigned long long)(k.manifests_new + k.manifests_present),
           (unsigned long long)k.manifests_new, (unsigned long long)k.blobs_linked, linked,
           (unsigned long long)k.blobs_copied, copied, (unsigned long long)k.blobs_present,
           j->skipped_corrupt, j->skipped_missing, bytes, secs);
    (void)tagged;
    if (r) {
        fprintf(stderr,
                "regcache: import-registry: stopped: %s; what was imported is kept, run "
                "it again to finish\n",
                strerror(-r));
        return 1;
    }
    if (interrupted) {
        fprintf(stderr, "regcache: import-registry: interrupted; what was imported is kept, run "
                        "it again to finish\n");
        return 130;
    }
    uint64_t new_things = k.blobs_linked + k.blobs_copied + k.blob_rows_new + k.manifests_new +
                          k.tags_new + k.hosted_new;
    if (!new_things)
        printf("import-registry: nothing new: the store and the index already held all of it\n");
    else
        printf("import-registry: restart regcache (or start it) to serve what was imported: the "
               "daemon reads the index when it starts\n");
    if (skipped || j->skipped_tags) {
        fprintf(stderr,
                "regcache: import-registry: %zu skipped (see above): regcache fetches what "
                "is missing from the upstream on the next pull\n",
                skipped);
        return 3;
    }
    return 0;
}

int import_registry_main(int argc, char **argv)
{
    const char *dir = NULL, *config_path = NULL, *upstream = NULL;
    struct job j;
    memset(&j, 0, sizeof(j));
    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            config_path = argv[++i];
        else if (!strcmp(argv[i], "--upstream") && i + 1 < argc)
            upstream = argv[++i];
        else if (!strcmp(argv[i], "--hosted") && i + 1 < argc) {
            if (j.n_hosted_globs == MAX_HOSTED_GLOBS) {
                fprintf(stderr, "regcache: import-registry: at most %d --hosted\n",
                        MAX_HOSTED_GLOBS);
                return 2;
            }
            j.hosted_globs[j.n_hosted_globs++] = argv[++i];
        } else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "regcache: import-registry: unexpected argument '%s'\n", argv[i]);
            return usage();
        } else
            dir = argv[i];
    }
    if (!dir)
        return usage();
    struct config cfg;
    config_defaults(&cfg);
    char err[1024];
    if (config_path && config_load(config_path, &cfg, err, sizeof(err))) {
        fprintf(stderr, "regcache: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    j.cfg = &cfg;
    if (!cfg.n_upstreams) {
        fprintf(stderr, "regcache: import-registry: the configuration names no upstream\n");
        config_free(&cfg);
        return 1;
    }
    j.upstream = cfg.upstreams[0].name;
    if (upstream) {
        j.upstream = NULL;
        for (size_t i = 0; i < cfg.n_upstreams; i++)
            if (!strcmp(cfg.upstreams[i].name, upstream))
                j.upstream = cfg.upstreams[i].name;
        if (!j.upstream) {
            fprintf(stderr,
                    "regcache: import-registry: --upstream %s: no such upstream in %s "
                    "(configured:",
                    upstream, cfg.source ? cfg.source : "the default configuration");
            for (size_t i = 0; i < cfg.n_upstreams; i++)
                fprintf(stderr, " %s", cfg.upstreams[i].name);
            fprintf(stderr, ")\n");
            config_free(&cfg);
            return 2;
        }
    }
    j.progress = isatty(STDERR_FILENO);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int r = run(&j, dir);
    if (j.adopt)
        adopt_close(j.adopt);
    job_free(&j);
    config_free(&cfg);
    return r;
}
