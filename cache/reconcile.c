/* SPDX-License-Identifier: Apache-2.0 */
#include "cache/reconcile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/map.h"

struct found {
    char *digest;
    uint64_t size;
};

struct reconcile_job {
    int verify_all;
    struct reconcile_watch *watch; /* NULL: nobody watches */
    struct store *store;
    struct map *rows; /* digest -> non-NULL while no file was seen for it */
    /* what the walk found, for reconcile_apply: files to adopt, rows of corrupt files */
    struct found *adopt;
    size_t n_adopt, cap_adopt;
    char **corrupt;
    size_t n_corrupt, cap_corrupt;
    struct reconcile_report r;
};

int reconcile_new(int verify_all, struct reconcile_watch *watch, struct reconcile_job **out)
{
    struct reconcile_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->rows = map_new())) {
        free(j);
        return -ENOMEM;
    }
    j->verify_all = verify_all;
    j->watch = watch;
    *out = j;
    return 0;
}

static int note_row(void *ud, const char *digest)
{
    struct reconcile_job *j = ud;
    return map_put(j->rows, digest, (void *)1) == MAP_NOMEM ? -ENOMEM : 0;
}

int reconcile_rows(struct reconcile_job *j, struct db *db)
{
    return db_each_blob_digest(db, note_row, j);
}

static int push_adopt(struct reconcile_job *j, const char *digest, uint64_t size)
{
    if (j->n_adopt == j->cap_adopt) {
        size_t cap = j->cap_adopt ? j->cap_adopt * 2 : 64;
        struct found *f = realloc(j->adopt, cap * sizeof(*f));
        if (!f)
            return -ENOMEM;
        j->adopt = f;
        j->cap_adopt = cap;
    }
    if (!(j->adopt[j->n_adopt].digest = strdup(digest)))
        return -ENOMEM;
    j->adopt[j->n_adopt++].size = size;
    return 0;
}

static int push_corrupt(struct reconcile_job *j, const char *digest)
{
    if (j->n_corrupt == j->cap_corrupt) {
        size_t cap = j->cap_corrupt ? j->cap_corrupt * 2 : 16;
        char **c = realloc(j->corrupt, cap * sizeof(*c));
        if (!c)
            return -ENOMEM;
        j->corrupt = c;
        j->cap_corrupt = cap;
    }
    if (!(j->corrupt[j->n_corrupt] = strdup(digest)))
        return -ENOMEM;
    j->n_corrupt++;
    return 0;
}

static int on_file(void *ud, const char *digest, const char *path, uint64_t size)
{
    struct reconcile_job *j = ud;
    if (j->watch) {
        if (__atomic_load_n(&j->watch->stop, __ATOMIC_RELAXED))
            return -ECANCELED;
        __atomic_add_fetch(&j->watch->files, 1, __ATOMIC_RELAXED);
    }
    if (!digest) {
        log_warn("store: removing stray entry %s", path);
        j->r.removed_stray++;
        return STORE_EACH_REMOVE; /* the store removes the entry itself, never a link's target */
    }
    j->r.files++;
    int known = map_del(j->rows, digest) != NULL;
    if (known && !j->verify_all) {
        j->r.bytes += size;
        return 0;
    }
    j->r.verified++;
    int v = store_verify(j->store, digest);
    if (v == -EBADMSG) {
        log_warn("store: %s does not match its name; removed", digest);
        store_remove(j->store, digest);
        j->r.removed_corrupt++;
        return known ? push_corrupt(j, digest) : 0;
    }
    if (v)
        return 0;
    j->r.bytes += size;
    return known ? 0 : push_adopt(j, digest, size);
}

int reconcile_walk(struct reconcile_job *j, struct store *store)
{
    j->store = store;
    return store_each(store, on_file, j);
}

static int collect(const char *key, void *value, void *ud)
{
    (void)value;
    char ***cursor = ud;
    *(*cursor)++ = (char *)key;
    return 0;
}

int reconcile_apply(struct reconcile_job *j, struct db *db, struct store *store)
{
    int rc = 0, w;
    if (j->n_corrupt && (rc = db_forget_blobs(db, j->corrupt, j->n_corrupt, NULL)))
        j->r.unwritten += j->n_corrupt;
    /* what is left had no file; the store is asked again, since a blob may have been stored
     * after the walk passed its place (the daemon serves while it walks) */
    size_t missing = map_count(j->rows), gone = 0;
    if (missing) {
        char **digests = malloc(missing * sizeof(*digests)), **cursor = digests;
        if (!digests)
            return -ENOMEM;
        map_each(j->rows, collect, &cursor);
        for (size_t i = 0; i < missing; i++)
            if (store_has(store, digests[i]) == 0)
                digests[gone++] = digests[i];
        if (gone && (w = db_forget_blobs(db, digests, gone, NULL))) {
            j->r.unwritten += gone;
            rc = rc ? rc : w;
        } else {
            j->r.rows_dropped = gone;
        }
        free(digests);
    }
    if (j->n_adopt) {
        /* one removed since (by a GC run) is not adopted */
        char **digests = malloc(j->n_adopt * sizeof(*digests));
        uint64_t *sizes = malloc(j->n_adopt * sizeof(*sizes));
        size_t n = 0;
        if (!digests || !sizes) {
            free(digests);
            free(sizes);
            return -ENOMEM;
        }
        for (size_t i = 0; i < j->n_adopt; i++)
            if (store_has(store, j->adopt[i].digest) == 1) {
                digests[n] = j->adopt[i].digest;
                sizes[n++] = j->adopt[i].size;
            }
        if (n && (w = db_adopt_blobs(db, digests, sizes, n, clock_wall_ms()))) {
            j->r.unwritten += n;
            rc = rc ? rc : w;
        } else {
            j->r.adopted = n;
        }
        free(digests);
        free(sizes);
    }
    return rc;
}

const struct reconcile_report *reconcile_report_of(const struct reconcile_job *j)
{
    return &j->r;
}

void reconcile_free(struct reconcile_job *j)
{
    if (!j)
        return;
    map_free(j->rows);
    for (size_t i = 0; i < j->n_adopt; i++)
        free(j->adopt[i].digest);
    free(j->adopt);
    for (size_t i = 0; i < j->n_corrupt; i++)
        free(j->corrupt[i]);
    free(j->corrupt);
    free(j);
}

int reconcile(struct db *db, struct store *store, int verify_all, struct reconcile_report *r)
{
    return reconcile_watched(db, store, verify_all, NULL, r);
}

int reconcile_watched(struct db *db, struct store *store, int verify_all,
                      struct reconcile_watch *watch, struct reconcile_report *r)
{
    struct reconcile_job *j;
    memset(r, 0, sizeof(*r));
    int rc = reconcile_new(verify_all, watch, &j);
    if (rc)
        return rc;
    if (!(rc = reconcile_rows(j, db)) && !(rc = reconcile_walk(j, store)))
        rc = reconcile_apply(j, db, store);
    *r = j->r;
    reconcile_free(j);
    return rc;
}
