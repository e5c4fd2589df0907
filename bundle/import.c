/* SPDX-License-Identifier: Apache-2.0 */
/* regcache import: an offline bundle into the store and the index (through migrate/adopt.h,
 * which also keeps a daemon from serving the store meanwhile).
 *
 * One read of the file: every blob entry is hashed while it is written through the store's
 * verified fill (bytes that do not match their name never appear under it) or, when the store
 * has it already, hashed and dropped. Then, before anything is recorded, every image is walked
 * from the store: its manifests parse, everything they reference is stored (from this bundle or
 * an earlier one), its upstream is configured or its repository hosted here. Only when all of
 * that holds are rows and tags written; otherwise nothing is recorded and the blobs this run
 * added are removed again: a bundle is imported whole or not at all. */
#include "bundle/bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle/layout.h"
#include "bundle/progress.h"
#include "bundle/tar.h"
#include "cache/cache.h"
#include "config/config.h"
#include "migrate/adopt.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/map.h"
#include "util/parse.h"

#define IMPORT_CHUNK (1024 * 1024)
#define IMPORT_ERRORS_SHOWN 20
#define IMPORT_MAX_DEPTH 4

struct entry {
    uint64_t size;
    int added; /* stored by this run (removed again if the import fails) */
};

struct manifest_item {
    char digest[BUNDLE_DIGEST_MAX];
    const char *type;
    char *bytes;
    size_t len;
};

struct image {
    char name[1024]; /* for messages: the full name */
    struct bundle_desc top;
    char top_type[BUNDLE_MEDIA_MAX];
    int hosted;
    char upstream[256], repo[REF_NAME_MAX + 1], tag[REF_TAG_MAX + 1];
    uint64_t validated_ms;
    struct bundle_platform platforms[BUNDLE_PLATFORMS_MAX];
    size_t n_platforms;
    /* what the walk found, children before their parents */
    struct manifest_item *manifests;
    size_t n_manifests, cap_manifests;
    char (*blobs)[BUNDLE_DIGEST_MAX];
    size_t n_blobs, cap_blobs;
};

struct importer {
    const struct config *cfg;
    const char *path;
    struct adopt *adopt;
    struct store *store;
    struct map *entries; /* digest -> struct entry, every blob entry of the file */
    char **added;        /* digests stored by this run */
    size_t n_added, cap_added;
    uint64_t added_bytes, present_count, present_bytes;
    struct buf index_json;
    int has_layout;
    struct image *images;
    size_t n_images;
    unsigned errors;
    char *chunk;
    struct progress progress;
};

static void problem(struct importer *im, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reports one thing wrong with the bundle (the first IMPORT_ERRORS_SHOWN of them). */
static void problem(struct importer *im, const char *fmt, ...)
{
    if (im->errors++ >= IMPORT_ERRORS_SHOWN)
        return;
    progress_clear(&im->progress);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "regcache: import: %s: ", im->path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- pass 1: the file ---- */

static int read_all(struct importer *im, struct tar_reader *tr, const struct tar_entry *e,
                    struct buf *out, size_t max)
{
    if (e->size > max) {
        problem(im, "%s is larger than %zu bytes", e->name, max);
        return -EINVAL;
    }
    buf_init(out, max);
    long n;
    while ((n = tar_read(tr, im->chunk, IMPORT_CHUNK)) > 0)
        if (buf_append(out, im->chunk, (size_t)n))
            return -ENOMEM;
    return n < 0 ? (int)n : 0;
}

static void hex_digest(EVP_MD_CTX *md, char *out)
{
    unsigned char bin[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(md, bin, &n);
    strcpy(out, "sha256:");
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", bin[i]);
}

/* A blob the store has already: its bytes here are hashed all the same (a bundle that lies is
 * refused whatever the store holds), and dropped. 0, -EBADMSG, or a read error. */
static int verify_only(struct importer *im, struct tar_reader *tr, const char *digest)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        return -ENOMEM;
    }
    long n;
    while ((n = tar_read(tr, im->chunk, IMPORT_CHUNK)) > 0) {
        EVP_DigestUpdate(md, im->chunk, (size_t)n);
        im->progress.bytes = tr->offset;
        progress_draw(&im->progress, 0);
    }
    char got[BUNDLE_DIGEST_MAX];
    hex_digest(md, got);
    EVP_MD_CTX_free(md);
    if (n < 0)
        return (int)n;
    return strcmp(got, digest) == 0 ? 0 : -EBADMSG;
}

/* Streams a blob into the store: -EBADMSG when its bytes do not match (nothing stored). */
static int fill(struct importer *im, struct tar_reader *tr, const char *digest)
{
    struct store_fill *f;
    int rc = store_fill_begin(im->store, digest, &f);
    if (rc)
        return rc;
    long n;
    while (!rc && (n = tar_read(tr, im->chunk, IMPORT_CHUNK)) > 0) {
        rc = store_fill_write(f, im->chunk, (size_t)n);
        im->progress.bytes = tr->offset;
        progress_draw(&im->progress, 0);
    }
    if (!rc && n < 0)
        rc = (int)n;
    if (!rc)
        rc = store_fill_commit(f);
    store_fill_free(f);
    return rc;
}

static int note_added(struct importer *im, const char *digest, uint64_t size)
{
    if (im->n_added == im->cap_added) {
        size_t cap = im->cap_added ? im->cap_added * 2 : 64;
        char **v = realloc(im->added, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        im->added = v;
        im->cap_added = cap;
    }
    if (!(im->added[im->n_added] = strdup(digest)))
        return -ENOMEM;
    im->n_added++;
    im->added_bytes += size;
    return 0;
}

/* One blobs/sha256/<hex> entry. A negative return stops the import at once (the file or the
 * store failing); a corrupt blob is only counted, so that every one is named. */
static int take_blob(struct importer *im, struct tar_reader *tr, const struct tar_entry *e)
{
    const char *hex = e->name + strlen("blobs/sha256/");
    char digest[BUNDLE_DIGEST_MAX];
    snprintf(digest, sizeof(digest), "sha256:%.70s", hex);
    if (strlen(hex) != 64 || !ref_digest_is_sha256(digest, strlen(digest))) {
        problem(im, "%s is not named by a sha256 digest", e->name);
        return 0;
    }
    if (e->size > im->cfg->max_blob_bytes) {
        problem(im, "%s: %llu bytes, more than limits.max_blob_size", digest,
                (unsigned long long)e->size);
        return 0;
    }
    struct entry *known = map_get(im->entries, digest);
    int added = 0, rc;
    if (known || store_has(im->store, digest)) {
        rc = verify_only(im, tr, digest);
        if (!rc && !known) {
            im->present_count++;
            im->present_bytes += e->size;
        }
    } else {
        rc = fill(im, tr, digest);
        added = rc == 0;
    }
    if (rc == -EBADMSG) {
        problem(im, "blob %s: its bytes do not hash to its name (corrupt or altered): refused",
                digest);
        return 0;
    }
    if (rc == -ENOSPC) {
        problem(im, "blob %s: the store %s is full (or would go below cache.min_free)", digest,
                im->cfg->storage);
        return rc;
    }
    if (rc) {
        problem(im, "blob %s: %s", digest, tr->err[0] ? tr->err : strerror(-rc));
        return rc;
    }
    if (known)
        return known->size == e->size ? 0
                                      : (problem(im, "%s comes twice, with two sizes", digest), 0);
    struct entry *en = calloc(1, sizeof(*en));
    if (!en || map_put(im->entries, digest, en) == MAP_NOMEM) {
        free(en);
        return -ENOMEM;
    }
    en->size = e->size;
    en->added = added;
    return added ? note_added(im, digest, e->size) : 0;
}

static int read_file(struct importer *im, FILE *f)
{
    struct tar_reader tr;
    struct tar_entry e;
    tar_reader_init(&tr, f);
    int rc;
    while ((rc = tar_next(&tr, &e)) == 1) {
        im->progress.items++;
        im->progress.bytes = tr.offset;
        progress_draw(&im->progress, 0);
        if (e.type == '5')
            continue;
        if (e.type != '0') {
            problem(im, "%s: not a regular file (tar type '%c')", e.name, e.type);
            continue;
        }
        if (strcmp(e.name, "oci-layout") == 0) {
            struct buf b;
            char version[32] = "";
            rc = read_all(im, &tr, &e, &b, 4096);
            if (!rc &&
                json_get_string(b.data ? b.data : "", b.len, "imageLayoutVersion", version,
                                sizeof(version)) > 0 &&
                strcmp(version, "1.0.0") == 0)
                im->has_layout = 1;
            else if (!rc)
                problem(im, "oci-layout does not say imageLayoutVersion 1.0.0");
            buf_free(&b);
        } else if (strcmp(e.name, "index.json") == 0) {
            buf_free(&im->index_json);
            rc = read_all(im, &tr, &e, &im->index_json, BUNDLE_INDEX_JSON_MAX);
        } else if (strncmp(e.name, "blobs/sha256/", 13) == 0) {
            rc = take_blob(im, &tr, &e);
        } else if (strncmp(e.name, "blobs/", 6) == 0) {
            problem(im, "%s: only sha256 blobs can be stored", e.name);
        }
        /* anything else (docker save's manifest.json, repositories) is not the layout's */
        if (rc < 0) {
            if (rc == -EINVAL && tr.err[0])
                problem(im, "%s", tr.err);
            return rc;
        }
    }
    im->progress.bytes = tr.offset;
    if (rc < 0)
        problem(im, "not a readable tar file: %s", tr.err);
    return rc;
}

/* ---- the images ---- */

static void get_annotation(const char *ann, size_t alen, const char *key, char *out, size_t len)
{
    out[0] = '\0';
    if (ann && json_get_string(ann, alen, key, out, len) < 0)
        out[0] = '\0';
}

static int parse_platforms(const char *list, struct image *img)
{
    char copy[BUNDLE_PLATFORMS_MAX * 200];
    snprintf(copy, sizeof(copy), "%s", list);
    char *save = NULL;
    for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (img->n_platforms == BUNDLE_PLATFORMS_MAX ||
            bundle_platform_parse(p, &img->platforms[img->n_platforms]))
            return -EINVAL;
        img->n_platforms++;
    }
    return 0;
}

struct index_walk {
    struct importer *im;
    size_t i;
};

/* One index.json entry: which image, and where it goes here. */
static int read_image(void *ud, const char *elem, size_t len)
{
    struct index_walk *w = ud;
    struct importer *im = w->im;
    struct image *img = &im->images[w->i++];
    char why[300] = "";
    if (bundle_desc_parse(elem, len, &img->top, why, sizeof(why))) {
        problem(im, "index.json: entry %zu: %s", w->i, why);
        return 0;
    }
    const char *ann = NULL;
    size_t alen = 0;
    if (json_get_raw(elem, len, "annotations", &ann, &alen) || !alen || ann[0] != '{')
        ann = NULL;
    char kind[32], validated[32], platforms[BUNDLE_PLATFORMS_MAX * 200], full[1024];
    get_annotation(ann, alen, BUNDLE_ANN_KIND, kind, sizeof(kind));
    get_annotation(ann, alen, BUNDLE_ANN_CONTAINERD_NAME, full, sizeof(full));
    if (!full[0])
        get_annotation(ann, alen, BUNDLE_ANN_REF_NAME, full, sizeof(full));
    snprintf(img->name, sizeof(img->name), "%s", full[0] ? full : img->top.digest);
    get_annotation(ann, alen, BUNDLE_ANN_MEDIA_TYPE, img->top_type, sizeof(img->top_type));
    if (!img->top_type[0])
        snprintf(img->top_type, sizeof(img->top_type), "%s", img->top.media_type);
    if (kind[0]) {
        img->hosted = strcmp(kind, "hosted") == 0;
        if (!img->hosted && strcmp(kind, "upstream") != 0) {
            problem(im, "%s: unknown %s \"%s\"", img->name, BUNDLE_ANN_KIND, kind);
            return 0;
        }
        get_annotation(ann, alen, BUNDLE_ANN_UPSTREAM, img->upstream, sizeof(img->upstream));
        get_annotation(ann, alen, BUNDLE_ANN_REPOSITORY, img->repo, sizeof(img->repo));
        get_annotation(ann, alen, BUNDLE_ANN_TAG, img->tag, sizeof(img->tag));
    } else {
        /* a layout made elsewhere (skopeo, docker save): its full name routed as the mirror
         * routes a client's request for it */
        struct bundle_name nm;
        if (!full[0] || bundle_name_parse(im->cfg, full, &nm, why, sizeof(why))) {
            problem(im, "%s: %s", img->name,
                    full[0] ? why : "no name (" BUNDLE_ANN_CONTAINERD_NAME ")");
            return 0;
        }
        img->hosted = nm.hosted;
        snprintf(img->upstream, sizeof(img->upstream), "%s", nm.upstream);
        snprintf(img->repo, sizeof(img->repo), "%s", nm.repo);
        snprintf(img->tag, sizeof(img->tag), "%s", nm.tag);
    }
    if (!img->repo[0] || !ref_name_valid(img->repo, strlen(img->repo)) ||
        (img->tag[0] && !ref_tag_valid(img->tag, strlen(img->tag)))) {
        problem(im, "%s: no valid repository and tag in its annotations", img->name);
        return 0;
    }
    if (img->hosted && !bundle_is_hosted(im->cfg, img->repo)) {
        problem(im, "%s: a hosted image, and %s matches no `hosted` pattern of %s", img->name,
                img->repo, im->cfg->source ? im->cfg->source : "the configuration");
        return 0;
    }
    if (!img->hosted && !bundle_upstream(im->cfg, img->upstream)) {
        problem(im, "%s: a cached image of upstream \"%s\", which %s does not configure", img->name,
                img->upstream, im->cfg->source ? im->cfg->source : "the configuration");
        return 0;
    }
    get_annotation(ann, alen, BUNDLE_ANN_VALIDATED, validated, sizeof(validated));
    img->validated_ms = validated[0] ? strtoull(validated, NULL, 10) : 0;
    get_annotation(ann, alen, BUNDLE_ANN_PLATFORMS, platforms, sizeof(platforms));
    if (platforms[0] && parse_platforms(platforms, img)) {
        problem(im, "%s: %s \"%s\" is not a list of os/arch[/variant]", img->name,
                BUNDLE_ANN_PLATFORMS, platforms);
        return 0;
    }
    return 0;
}

static int count_element(void *ud, const char *elem, size_t len)
{
    (void)elem;
    (void)len;
    (*(size_t *)ud)++;
    return 0;
}

static int read_index(struct importer *im)
{
    const char *doc = im->index_json.data ? im->index_json.data : "";
    const char *list;
    size_t llen, n = 0;
    if (json_get_raw(doc, im->index_json.len, "manifests", &list, &llen) || !llen ||
        list[0] != '[' || json_each_element(list, llen, count_element, &n)) {
        problem(im, "index.json has no \"manifests\" list");
        return -EINVAL;
    }
    im->images = calloc(n ? n : 1, sizeof(*im->images));
    if (!im->images)
        return -ENOMEM;
    im->n_images = n;
    struct index_walk w = {im, 0};
    json_each_element(list, llen, read_image, &w);
    return 0;
}

/* A stored manifest's bytes (malloc'ed). */
static int read_stored(struct importer *im, const char *digest, char **out, size_t *len)
{
    int fd;
    uint64_t size;
    int rc = store_blob_open(im->store, digest, &fd, &size);
    if (rc)
        return rc;
    if (size > im->cfg->max_manifest_bytes) {
        close(fd);
        return -EFBIG;
    }
    char *b = malloc(size ? size : 1);
    uint64_t got = 0;
    while (b && got < size) {
        ssize_t n = pread(fd, b + got, size - got, (off_t)got);
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            break;
        }
        got += (uint64_t)n;
    }
    close(fd);
    if (!b)
        return -ENOMEM;
    if (rc) {
        free(b);
        return rc;
    }
    *out = b;
    *len = size;
    return 0;
}

static int add_blob(struct image *img, const char *digest)
{
    for (size_t i = 0; i < img->n_blobs; i++)
        if (strcmp(img->blobs[i], digest) == 0)
            return 0;
    if (img->n_blobs == img->cap_blobs) {
        size_t cap = img->cap_blobs ? img->cap_blobs * 2 : 16;
        void *v = realloc(img->blobs, cap * sizeof(*img->blobs));
        if (!v)
            return -ENOMEM;
        img->blobs = v;
        img->cap_blobs = cap;
    }
    snprintf(img->blobs[img->n_blobs++], BUNDLE_DIGEST_MAX, "%s", digest);
    return 0;
}

static int add_manifest(struct image *img, const char *digest, const char *type, char *bytes,
                        size_t len)
{
    if (img->n_manifests == img->cap_manifests) {
        size_t cap = img->cap_manifests ? img->cap_manifests * 2 : 8;
        void *v = realloc(img->manifests, cap * sizeof(*img->manifests));
        if (!v)
            return -ENOMEM;
        img->manifests = v;
        img->cap_manifests = cap;
    }
    struct manifest_item *m = &img->manifests[img->n_manifests++];
    snprintf(m->digest, sizeof(m->digest), "%s", digest);
    m->type = type;
    m->bytes = bytes;
    m->len = len;
    return 0;
}

static int have_manifest(const struct image *img, const char *digest)
{
    for (size_t i = 0; i < img->n_manifests; i++)
        if (strcmp(img->manifests[i].digest, digest) == 0)
            return 1;
    return 0;
}

/* A descriptor's size against what this bundle holds under its digest. */
static int size_agrees(struct importer *im, const struct image *img, const struct bundle_desc *d,
                       const char *what)
{
    const struct entry *e = map_get(im->entries, d->digest);
    if (!e || e->size == d->size)
        return 1;
    problem(im, "%s: %s %s is %llu bytes in the bundle, %llu by its descriptor", img->name, what,
            d->digest, (unsigned long long)e->size, (unsigned long long)d->size);
    return 0;
}

/* Walks a manifest from the store: everything it references must be stored. Problems are
 * reported; the return is negative only when out of memory. */
static int walk(struct importer *im, struct image *img, const struct bundle_desc *self,
                const char *parent, int depth)
{
    if (have_manifest(img, self->digest))
        return 0;
    if (depth > IMPORT_MAX_DEPTH) {
        problem(im, "%s: indexes nested deeper than %d", img->name, IMPORT_MAX_DEPTH);
        return 0;
    }
    char *bytes = NULL, why[300] = "";
    size_t len = 0;
    int rc = read_stored(im, self->digest, &bytes, &len);
    if (rc == -ENOENT) {
        problem(im, "%s: manifest %s%s%s is neither in the bundle nor in the store", img->name,
                self->digest, parent ? " of index " : "", parent ? parent : "");
        return 0;
    }
    if (rc) {
        problem(im, "%s: manifest %s: %s", img->name, self->digest,
                rc == -EFBIG ? "larger than limits.max_manifest_size" : strerror(-rc));
        return 0;
    }
    if (!size_agrees(im, img, self, "manifest")) {
        free(bytes);
        return 0;
    }
    const char *type;
    int is_index;
    struct bundle_desc *d = NULL;
    size_t n = 0;
    const char *fallback = depth == 0 ? img->top_type : self->media_type;
    if (bundle_doc_children(bytes, len, fallback, &is_index, &type, &d, &n, why, sizeof(why)) ||
        cache_check_manifest(type, bytes, len, &type, why, sizeof(why))) {
        problem(im, "%s: manifest %s: %s", img->name, self->digest, why);
        free(bytes);
        free(d);
        return 0;
    }
    int *keep = calloc(n ? n : 1, sizeof(*keep));
    if (!keep) {
        free(bytes);
        free(d);
        return -ENOMEM;
    }
    if (is_index)
        bundle_select_children(d, n, img->platforms, img->n_platforms, keep);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (is_index) {
            /* a platform left out on export stays missing; a chosen one must be there */
            if (!keep[i] && !store_has(im->store, d[i].digest))
                continue;
            rc = walk(im, img, &d[i], self->digest, depth + 1);
        } else if (d[i].foreign) {
            continue; /* never in a registry: the client fetches it elsewhere */
        } else if (!store_has(im->store, d[i].digest)) {
            problem(im, "%s: %s %s of manifest %s is neither in the bundle nor in the store",
                    img->name, i == 0 ? "config" : "layer", d[i].digest, self->digest);
        } else if (size_agrees(im, img, &d[i], i == 0 ? "config" : "layer")) {
            rc = add_blob(img, d[i].digest);
        }
    }
    free(keep);
    free(d);
    if (rc || (rc = add_manifest(img, self->digest, type, bytes, len)))
        free(bytes);
    return rc;
}

/* ---- recording ---- */

static int record_image(struct importer *im, struct image *img)
{
    struct adopt *a = im->adopt;
    char why[300] = "", path[STORE_PATH_MAX];
    int rc = 0;
    for (size_t i = 0; i < img->n_blobs && rc >= 0; i++) {
        enum adopt_how how;
        uint64_t size;
        store_blob_path(im->store, img->blobs[i], path, sizeof(path));
        rc = adopt_blob_file(a, path, img->blobs[i], &how, &size); /* stored: rows only */
        if (rc >= 0 && img->hosted)
            rc = adopt_hosted_blob(a, img->repo, img->blobs[i]);
        if (rc >= 0 && !img->hosted)
            adopt_ref(a, img->upstream, img->repo, img->blobs[i]);
        if (rc < 0)
            snprintf(why, sizeof(why), "blob %s: %s", img->blobs[i], strerror(-rc));
    }
    /* children before the index that names them */
    for (size_t i = 0; i < img->n_manifests && rc >= 0; i++) {
        const struct manifest_item *m = &img->manifests[i];
        rc = adopt_manifest(a, m->digest, m->bytes, m->len, m->type, why, sizeof(why));
        if (rc >= 0 && !img->hosted)
            adopt_ref(a, img->upstream, img->repo, m->digest);
        if (rc < 0) {
            char tmp[sizeof(why)];
            snprintf(tmp, sizeof(tmp), "%s", why[0] ? why : strerror(-rc));
            snprintf(why, sizeof(why), "manifest %s: %s", m->digest, tmp);
        }
    }
    /* hosted: the index first, then its manifests, whose own rows then say they are manifests
     * (the index's row for each of them names it as plain held content) */
    for (size_t i = img->n_manifests; img->hosted && i-- > 0 && rc >= 0;) {
        const struct manifest_item *m = &img->manifests[i];
        int top = i + 1 == img->n_manifests;
        rc = adopt_hosted_manifest(a, img->repo, top && img->tag[0] ? img->tag : NULL, m->digest);
        if (rc < 0)
            snprintf(why, sizeof(why), "manifest %s: %s", m->digest, strerror(-rc));
    }
    if (rc >= 0 && !img->hosted && img->tag[0]) {
        rc = adopt_tag(a, img->upstream, img->repo, img->tag, img->top.digest, img->validated_ms);
        if (rc < 0)
            snprintf(why, sizeof(why), "tag %s: %s", img->tag, strerror(-rc));
    }
    if (rc < 0)
        problem(im, "%s: cannot record it: %s", img->name, why);
    return rc < 0 ? rc : 0;
}

/* Rows for blobs of the file no image references (they were stored all the same). */
static int record_strays(const char *digest, void *value, void *ud)
{
    (void)value;
    struct importer *im = ud;
    char path[STORE_PATH_MAX];
    enum adopt_how how;
    uint64_t size;
    if (adopt_manifest_type(im->adopt, digest))
        return 0;
    store_blob_path(im->store, digest, path, sizeof(path));
    int rc = adopt_blob_file(im->adopt, path, digest, &how, &size);
    return rc < 0 ? rc : 0;
}

/* The import failed: the blobs this run stored go again (nothing recorded them yet). */
static void roll_back(struct importer *im)
{
    for (size_t i = 0; i < im->n_added; i++)
        store_remove(im->store, im->added[i]);
    if (im->n_added)
        fprintf(stderr,
                "regcache: import: %s: nothing imported; the %zu blobs it had stored "
                "were removed again\n",
                im->path, im->n_added);
    else
        fprintf(stderr, "regcache: import: %s: nothing imported\n", im->path);
}

static int free_entry(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    free(value);
    return 0;
}

static void importer_free(struct importer *im)
{
    for (size_t i = 0; i < im->n_images; i++) {
        struct image *img = &im->images[i];
        for (size_t j = 0; j < img->n_manifests; j++)
            free(img->manifests[j].bytes);
        free(img->manifests);
        free(img->blobs);
    }
    free(im->images);
    for (size_t i = 0; i < im->n_added; i++)
        free(im->added[i]);
    free(im->added);
    if (im->entries) {
        map_each(im->entries, free_entry, NULL);
        map_free(im->entries);
    }
    buf_free(&im->index_json);
    free(im->chunk);
}

static void usage(void)
{
    fprintf(stderr, "usage: regcache import FILE [-c FILE]\n");
}

int bundle_import_main(int argc, char **argv)
{
    const char *config_path = NULL, *path = NULL;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            config_path = argv[++i];
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr, "regcache: import: unexpected argument '%s'\n", argv[i]);
            usage();
            return 2;
        }
    }
    if (!path) {
        usage();
        return 2;
    }
    struct config cfg;
    char err[2048];
    config_defaults(&cfg);
    if (config_path && config_load(config_path, &cfg, err, sizeof(err))) {
        fprintf(stderr, "regcache: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    struct importer im;
    memset(&im, 0, sizeof(im));
    im.cfg = &cfg;
    im.path = path;
    buf_init(&im.index_json, BUNDLE_INDEX_JSON_MAX);
    int status = 1;
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st)) {
        fprintf(stderr, "regcache: import: %s: %s\n", path, strerror(errno));
        goto out;
    }
    im.entries = map_new();
    im.chunk = malloc(IMPORT_CHUNK);
    if (!im.entries || !im.chunk) {
        fprintf(stderr, "regcache: import: out of memory\n");
        goto out;
    }
    if (adopt_open(&cfg, &im.adopt, err, sizeof(err))) {
        fprintf(stderr, "regcache: import: %s\n", err);
        goto out;
    }
    im.store = adopt_store(im.adopt);
    progress_start(&im.progress, "import", "entries");
    im.progress.bytes_total = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    int rc = read_file(&im, f);
    progress_clear(&im.progress);
    if (rc == -ENOMEM)
        problem(&im, "out of memory");
    if (!rc && !im.has_layout && !im.errors)
        problem(&im, "no oci-layout: not an OCI image layout");
    if (!rc && !im.index_json.len)
        problem(&im, "no index.json");
    if (!rc && im.index_json.len && (rc = read_index(&im)) == -ENOMEM)
        problem(&im, "out of memory");
    for (size_t i = 0; !rc && i < im.n_images; i++) {
        struct image *img = &im.images[i];
        if (img->repo[0] && (rc = walk(&im, img, &img->top, NULL, 0)) == -ENOMEM)
            problem(&im, "out of memory");
    }
    if (rc || im.errors) {
        if (im.errors > IMPORT_ERRORS_SHOWN)
            fprintf(stderr, "regcache: import: %s: %u more problems not shown\n", path,
                    im.errors - IMPORT_ERRORS_SHOWN);
        roll_back(&im);
        goto out;
    }
    /* everything verified and complete: record it */
    for (size_t i = 0; !rc && i < im.n_images; i++)
        rc = record_image(&im, &im.images[i]);
    if (!rc && (rc = map_each(im.entries, record_strays, &im)))
        problem(&im, "cannot record a blob: %s", strerror(-rc));
    const struct adopt_counts *c = adopt_counts(im.adopt);
    uint64_t tags_new = c->tags_new, manifests_new = c->manifests_new;
    int close_rc = adopt_close(im.adopt);
    im.adopt = NULL;
    if (rc || close_rc) {
        fprintf(stderr,
                "regcache: import: %s: stopped part-way: what is recorded is complete "
                "and verified; run it again once the cause is fixed\n",
                path);
        goto out;
    }
    size_t hosted = 0, blobs = 0, manifests = 0;
    for (size_t i = 0; i < im.n_images; i++) {
        hosted += im.images[i].hosted;
        blobs += im.images[i].n_blobs;
        manifests += im.images[i].n_manifests;
    }
    double secs = progress_seconds(&im.progress);
    char b1[32], b2[32], b3[32];
    printf(
        "import: %s: %zu image%s (%zu cached, %zu hosted), %zu manifests and %zu blobs "
        "referenced; %zu stored (%s), %llu already stored; %llu tags and %llu manifests new to "
        "the index; %s read in %.1f s (%s/s)\n",
        path, im.n_images, im.n_images == 1 ? "" : "s", im.n_images - hosted, hosted, manifests,
        blobs, im.n_added, format_size(im.added_bytes, b1, sizeof(b1)),
        (unsigned long long)im.present_count, (unsigned long long)tags_new,
        (unsigned long long)manifests_new, format_size(im.progress.bytes, b2, sizeof(b2)), secs,
        format_size(secs > 0 ? (uint64_t)((double)im.progress.bytes / secs) : 0, b3, sizeof(b3)));
    status = 0;
out:
    if (im.adopt)
        adopt_close(im.adopt);
    if (f)
        fclose(f);
    importer_free(&im);
    config_free(&cfg);
    return status;
}
