/* SPDX-License-Identifier: Apache-2.0 */
#include "migrate/adopt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "db/db.h"
#include "hosted/hosted.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/map.h"
#include "util/reference.h"

#define SEP "\x1f" /* between the parts of a map key */
#define COPY_CHUNK (1u << 20)
#define KEY_MAX (2 * REF_NAME_MAX + 2 * REF_DIGEST_MAX + 16)

struct adopt {
    struct store *store;
    struct db *db;
    char db_path[STORE_PATH_MAX];
    int lock_fd;
    uint64_t now_ms;
    int s3_tier; /* the configuration has an s3 section: new content is written behind */
    /* what the index holds, kept up to date with what is queued */
    struct map *manifests;   /* digest -> strdup'ed media type */
    struct map *blob_rows;   /* digest -> &present */
    struct map *tags;        /* upstream SEP repo SEP tag -> strdup'ed digest */
    struct map *hosted_tags; /* repo SEP tag -> strdup'ed digest */
    struct map *hosted_held; /* repo SEP digest -> &present, or strdup'ed media type */
    struct adopt_counts counts;
    char *buf; /* COPY_CHUNK bytes */
};

static char present; /* the value of set-like maps' entries */

static int is_sha256(const char *digest)
{
    return digest && ref_digest_is_sha256(digest, strlen(digest));
}

static void key2(char *out, size_t len, const char *a, const char *b)
{
    snprintf(out, len, "%s" SEP "%s", a, b);
}

static void key3(char *out, size_t len, const char *a, const char *b, const char *c)
{
    snprintf(out, len, "%s" SEP "%s" SEP "%s", a, b, c);
}

/* Sets key to a copy of value (NULL: the marker); -ENOMEM. */
static int remember(struct map *m, const char *key, const char *value)
{
    char *v = value ? strdup(value) : &present;
    if (!v)
        return -ENOMEM;
    void *old = map_put(m, key, v);
    if (old == MAP_NOMEM) {
        if (v != &present)
            free(v);
        return -ENOMEM;
    }
    if (old && old != &present)
        free(old);
    return 0;
}

static void load_manifest(void *ud, const struct db_manifest_row *row)
{
    remember(((struct adopt *)ud)->manifests, row->digest, row->media_type);
}

static void load_tag(void *ud, const struct db_tag_row *row)
{
    char key[KEY_MAX];
    key3(key, sizeof(key), row->upstream, row->repo, row->tag);
    remember(((struct adopt *)ud)->tags, key, row->digest);
}

static void load_hosted_tag(void *ud, const char *repo, const char *tag, const char *digest,
                            const char *media_type)
{
    (void)media_type;
    char key[KEY_MAX];
    key2(key, sizeof(key), repo, tag);
    remember(((struct adopt *)ud)->hosted_tags, key, digest);
}

static void load_hosted_blob(void *ud, const char *repo, const char *digest, const char *media_type)
{
    char key[KEY_MAX];
    key2(key, sizeof(key), repo, digest);
    remember(((struct adopt *)ud)->hosted_held, key, media_type);
}

static int load_index(struct adopt *a)
{
    struct db_blob *rows = NULL;
    size_t n = 0;
    int r = db_list_blobs(a->db, &rows, &n);
    for (size_t i = 0; !r && i < n; i++)
        r = remember(a->blob_rows, rows[i].digest, NULL);
    free(rows);
    if (!r)
        r = db_load(a->db, load_tag, load_manifest, a);
    if (!r)
        r = db_load_hosted(a->db, load_hosted_tag, load_hosted_blob, a);
    return r;
}

static int free_value(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    if (value != &present)
        free(value);
    return 0;
}

static void free_map(struct map *m)
{
    if (!m)
        return;
    map_each(m, free_value, NULL);
    map_free(m);
}

static void adopt_free(struct adopt *a)
{
    db_close(a->db);
    store_close(a->store);
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    free_map(a->manifests);
    free_map(a->blob_rows);
    free_map(a->tags);
    free_map(a->hosted_tags);
    free_map(a->hosted_held);
    free(a->buf);
    free(a);
}

static int lock_failed(const char *storage, int r, char *err, size_t errlen)
{
    if (r == -EWOULDBLOCK)
        snprintf(err, errlen,
                 "storage %s: a regcache daemon serves it: stop it first (systemctl stop "
                 "regcache), import, then start it again (it loads the index when it starts)",
                 storage);
    else
        snprintf(err, errlen, "storage %s: cannot lock it: %s", storage, strerror(-r));
    return r;
}

int adopt_open(const struct config *cfg, struct adopt **out, char *err, size_t errlen)
{
    *out = NULL;
    struct adopt *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->lock_fd = -1;
    a->now_ms = clock_wall_ms();
    a->s3_tier = cfg->s3_endpoint != NULL;
    a->manifests = map_new();
    a->blob_rows = map_new();
    a->tags = map_new();
    a->hosted_tags = map_new();
    a->hosted_held = map_new();
    a->buf = malloc(COPY_CHUNK);
    int r = -ENOMEM;
    if (!a->manifests || !a->blob_rows || !a->tags || !a->hosted_tags || !a->hosted_held ||
        !a->buf) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* before store_open, which removes partial fills: a daemon's, were one serving */
    r = store_lock(cfg->storage, 1);
    if (r < 0 && r != -ENOENT) {
        lock_failed(cfg->storage, r, err, errlen);
        goto fail;
    }
    a->lock_fd = r;
    char why[1024];
    if ((r = store_open(cfg->storage, &a->store, why, sizeof(why)))) {
        snprintf(err, errlen, "storage %s: %s", cfg->storage, why);
        goto fail;
    }
    if (a->lock_fd < 0 && (a->lock_fd = store_lock(cfg->storage, 1)) < 0) {
        r = lock_failed(cfg->storage, a->lock_fd, err, errlen);
        goto fail;
    }
    store_set_reserve(a->store, cfg->min_free_bytes);
    if ((r = store_private_file(a->store, "regcache.db", a->db_path, sizeof(a->db_path)))) {
        snprintf(err, errlen, "the database %s: %s", a->db_path,
                 r == -ELOOP ? "is a symbolic link" : strerror(-r));
        goto fail;
    }
    if (db_open(a->db_path, &a->db)) {
        snprintf(err, errlen, "cannot open the database %s", a->db_path);
        r = -EIO;
        goto fail;
    }
    if ((r = load_index(a))) {
        snprintf(err, errlen, "cannot read the database %s", a->db_path);
        goto fail;
    }
    *out = a;
    return 0;
fail:
    adopt_free(a);
    return r < 0 ? r : -EIO;
}

int adopt_checkpoint(struct adopt *a)
{
    /* without db_attach changes wait in memory; closing writes them, synchronously */
    db_close(a->db);
    a->db = NULL;
    if (db_open(a->db_path, &a->db)) {
        fprintf(stderr, "regcache: cannot open the database %s again\n", a->db_path);
        return -EIO;
    }
    return 0;
}

int adopt_close(struct adopt *a)
{
    if (a)
        adopt_free(a);
    return 0;
}

const struct adopt_counts *adopt_counts(const struct adopt *a)
{
    return &a->counts;
}

struct store *adopt_store(struct adopt *a)
{
    return a->store;
}

struct db *adopt_db(struct adopt *a)
{
    return a->db;
}

/* The blob row for a file now stored: written once, with the import time. */
static int note_row(struct adopt *a, const char *digest, uint64_t size, const char *media_type)
{
    if (map_get(a->blob_rows, digest))
        return ADOPT_SAME;
    if (remember(a->blob_rows, digest, NULL))
        return -ENOMEM;
    db_put_blob(a->db, digest, size, media_type, a->now_ms);
    if (a->s3_tier) /* the daemon's next start writes it into the bucket */
        db_s3_pending(a->db, digest, 1, a->now_ms);
    a->counts.blob_rows_new++;
    return ADOPT_NEW;
}

static void count(struct adopt *a, enum adopt_how how, uint64_t size)
{
    switch (how) {
    case ADOPT_PRESENT:
        a->counts.blobs_present++;
        a->counts.bytes_present += size;
        break;
    case ADOPT_LINKED:
        a->counts.blobs_linked++;
        a->counts.bytes_linked += size;
        break;
    case ADOPT_COPIED:
        a->counts.blobs_copied++;
        a->counts.bytes_copied += size;
        break;
    }
}

/* Size of a stored blob, or -errno. */
static int stored_size(struct adopt *a, const char *digest, uint64_t *size)
{
    int fd;
    int r = store_blob_open(a->store, digest, &fd, size);
    if (!r)
        close(fd);
    return r;
}

/* Copies len bytes (or, with len UINT64_MAX, until the end) from fd into a new fill of digest
 * and commits it. -EPIPE when fd ends early. */
static int copy_in(struct adopt *a, int fd, uint64_t len, const char *digest, uint64_t *copied)
{
    struct store_fill *f;
    int r = store_fill_begin(a->store, digest, &f);
    if (r)
        return r;
    uint64_t done = 0;
    while (!r && done < len) {
        size_t want = len - done < COPY_CHUNK ? (size_t)(len - done) : COPY_CHUNK;
        ssize_t n = read(fd, a->buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = -errno;
        else if (n == 0)
            r = len == UINT64_MAX ? 1 : -EPIPE;
        else if (!(r = store_fill_write(f, a->buf, (size_t)n)))
            done += (uint64_t)n;
    }
    if (r == 1)
        r = 0;
    if (!r)
        r = store_fill_commit(f); /* -EBADMSG: removed, never under the digest */
    store_fill_free(f);
    *copied = done;
    return r;
}

int adopt_blob_file(struct adopt *a, const char *path, const char *digest, enum adopt_how *how,
                    uint64_t *size)
{
    if (!is_sha256(digest))
        return -EINVAL;
    *size = 0;
    if (store_has(a->store, digest)) {
        /* verified when it was stored: not read again */
        int r = stored_size(a, digest, size);
        if (r)
            return r;
        *how = ADOPT_PRESENT;
    } else {
        int r = store_link(a->store, digest, path, size);
        if (r == 0) {
            *how = ADOPT_LINKED;
        } else if (r == -EBADMSG || r == -ENOENT || r == -EINVAL || r == -ENOSPC) {
            return r;
        } else {
            /* another filesystem, or links refused (EXDEV, EPERM, EMLINK, ...): copy */
            int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0)
                return errno == ELOOP ? -EINVAL : -errno;
            struct stat st;
            r = fstat(fd, &st) ? -errno : S_ISREG(st.st_mode) ? 0 : -EINVAL;
            if (!r)
                r = copy_in(a, fd, UINT64_MAX, digest, size);
            close(fd);
            if (r)
                return r;
            *how = ADOPT_COPIED;
        }
    }
    count(a, *how, *size);
    int r = note_row(a, digest, *size, NULL);
    return r < 0 ? r : *how == ADOPT_PRESENT ? r : ADOPT_NEW;
}

/* Reads and drops len bytes of fd. */
static int skip_bytes(struct adopt *a, int fd, uint64_t len)
{
    while (len) {
        ssize_t n = read(fd, a->buf, len < COPY_CHUNK ? (size_t)len : COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EPIPE;
        len -= (uint64_t)n;
    }
    return 0;
}

int adopt_blob_fd(struct adopt *a, int fd, uint64_t size, const char *digest, enum adopt_how *how)
{
    if (!is_sha256(digest))
        return -EINVAL;
    int r;
    uint64_t got;
    if (store_has(a->store, digest)) {
        if ((r = skip_bytes(a, fd, size)))
            return r;
        *how = ADOPT_PRESENT;
    } else {
        if ((r = copy_in(a, fd, size, digest, &got)))
            return r;
        *how = ADOPT_COPIED;
    }
    count(a, *how, size);
    r = note_row(a, digest, size, NULL);
    return r < 0 ? r : *how == ADOPT_PRESENT ? r : ADOPT_NEW;
}

int adopt_manifest(struct adopt *a, const char *digest, const void *bytes, size_t len,
                   const char *media_type, char *why, size_t whylen)
{
    if (!is_sha256(digest)) {
        snprintf(why, whylen, "not a sha256 digest");
        return -EINVAL;
    }
    char actual[80];
    store_digest_of(bytes, len, actual);
    if (strcmp(actual, digest) != 0) {
        snprintf(why, whylen, "its bytes hash to %s", actual);
        return -EBADMSG;
    }
    const char *type;
    if (cache_check_manifest(media_type, bytes, len, &type, why, whylen))
        return -EINVAL;
    int is_new = 0;
    if (!store_has(a->store, digest)) {
        int r = store_put(a->store, digest, bytes, len);
        if (r) {
            snprintf(why, whylen, "cannot store it: %s", strerror(-r));
            return r;
        }
        is_new = 1; /* counted as a manifest, not among the blobs */
    }
    const char *known = map_get(a->manifests, digest);
    if (!known || strcmp(known, type) != 0) {
        if (remember(a->manifests, digest, type))
            return -ENOMEM;
        struct db_manifest_row row = {digest, type, len};
        db_put_manifest(a->db, &row);
        is_new = 1;
    }
    int r = note_row(a, digest, len, type);
    if (r < 0)
        return r;
    if (r == ADOPT_NEW || is_new) {
        a->counts.manifests_new++;
        return ADOPT_NEW;
    }
    a->counts.manifests_present++;
    return ADOPT_SAME;
}

const char *adopt_manifest_type(const struct adopt *a, const char *digest)
{
    return map_get(a->manifests, digest);
}

int adopt_tag(struct adopt *a, const char *upstream, const char *repo, const char *tag,
              const char *digest, uint64_t validated_ms)
{
    const char *type = adopt_manifest_type(a, digest);
    if (!type)
        return -ENOENT;
    char key[KEY_MAX];
    key3(key, sizeof(key), upstream, repo, tag);
    const char *was = map_get(a->tags, key);
    if (was && strcmp(was, digest) == 0) {
        a->counts.tags_present++;
        return ADOPT_SAME;
    }
    if (remember(a->tags, key, digest))
        return -ENOMEM;
    struct db_tag_row row = {upstream, repo, tag, digest, type, validated_ms};
    db_put_tag(a->db, &row);
    a->counts.tags_new++;
    return ADOPT_NEW;
}

void adopt_ref(struct adopt *a, const char *upstream, const char *repo, const char *digest)
{
    db_ref(a->db, upstream, repo, digest);
}

int adopt_hosted_blob(struct adopt *a, const char *repo, const char *digest)
{
    uint64_t size;
    if (!is_sha256(digest))
        return -EINVAL;
    int r = stored_size(a, digest, &size);
    if (r)
        return r;
    if ((r = note_row(a, digest, size, NULL)) < 0)
        return r;
    char key[KEY_MAX];
    key2(key, sizeof(key), repo, digest);
    if (map_get(a->hosted_held, key))
        return ADOPT_SAME;
    if (remember(a->hosted_held, key, NULL))
        return -ENOMEM;
    hosted_record_blob(a->db, repo, digest);
    a->counts.hosted_new++;
    return ADOPT_NEW;
}

/* The bytes of a stored manifest into a malloc'ed buffer. */
static int read_stored(struct adopt *a, const char *digest, char **out, size_t *len)
{
    int fd;
    uint64_t size;
    int r = store_blob_open(a->store, digest, &fd, &size);
    if (r)
        return r;
    char *b = malloc(size ? size : 1);
    size_t got = 0;
    while (b && !r && got < size) {
        ssize_t n = pread(fd, b + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            r = -EIO;
        else
            got += (size_t)n;
    }
    close(fd);
    if (!b)
        return -ENOMEM;
    if (r) {
        free(b);
        return r;
    }
    *out = b;
    *len = got;
    return 0;
}

int adopt_hosted_manifest(struct adopt *a, const char *repo, const char *tag, const char *digest)
{
    const char *type = adopt_manifest_type(a, digest);
    if (!type)
        return -ENOENT;
    char hkey[KEY_MAX], tkey[KEY_MAX];
    key2(hkey, sizeof(hkey), repo, digest);
    if (tag)
        key2(tkey, sizeof(tkey), repo, tag);
    const char *held = map_get(a->hosted_held, hkey);
    const char *tagged = tag ? map_get(a->hosted_tags, tkey) : NULL;
    int held_as_manifest = held && held != &present && strcmp(held, type) == 0;
    if (held_as_manifest && (!tag || (tagged && strcmp(tagged, digest) == 0))) {
        if (tag)
            a->counts.tags_present++;
        return ADOPT_SAME;
    }
    char *body;
    size_t len;
    int r = read_stored(a, digest, &body, &len);
    if (r)
        return r;
    r = hosted_record_manifest(a->db, a->store, repo, tag, digest, type, body, len);
    free(body);
    if (r)
        return r;
    if (remember(a->hosted_held, hkey, type) || (tag && remember(a->hosted_tags, tkey, digest)))
        return -ENOMEM;
    if (!held_as_manifest)
        a->counts.hosted_new++;
    if (tag) {
        if (tagged && strcmp(tagged, digest) == 0)
            a->counts.tags_present++;
        else
            a->counts.tags_new++;
    }
    return ADOPT_NEW;
}
