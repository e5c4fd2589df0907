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

struct scan {
    struct db *db;
    struct store *store;
    struct map *rows; /* digest -> non-NULL while no file was seen for it */
    int verify_all;
    struct reconcile_report *r;
    struct reconcile_watch *watch; /* NULL: nobody watches */
};

static int on_file(void *ud, const char *digest, const char *path, uint64_t size)
{
    struct scan *sc = ud;
    if (sc->watch) {
        if (__atomic_load_n(&sc->watch->stop, __ATOMIC_RELAXED))
            return -ECANCELED;
        __atomic_add_fetch(&sc->watch->files, 1, __ATOMIC_RELAXED);
    }
    if (!digest) {
        log_warn("store: removing stray entry %s", path);
        sc->r->removed_stray++;
        return STORE_EACH_REMOVE; /* the store removes the entry itself, never a link's target */
    }
    sc->r->files++;
    int known = map_del(sc->rows, digest) != NULL;
    if (known && !sc->verify_all) {
        sc->r->bytes += size;
        return 0;
    }
    sc->r->verified++;
    int v = store_verify(sc->store, digest);
    if (v == -EBADMSG) {
        log_warn("store: %s does not match its name; removed", digest);
        store_remove(sc->store, digest);
        sc->r->removed_corrupt++;
        if (known) {
            char *d = (char *)digest;
            db_forget_blobs(sc->db, &d, 1, NULL);
        }
        return 0;
    }
    if (v)
        return 0;
    sc->r->bytes += size;
    if (!known) {
        db_adopt_blob(sc->db, digest, size, clock_wall_ms());
        sc->r->adopted++;
    }
    return 0;
}

static int collect(const char *key, void *value, void *ud)
{
    (void)value;
    char ***cursor = ud;
    *(*cursor)++ = (char *)key;
    return 0;
}

int reconcile(struct db *db, struct store *store, int verify_all, struct reconcile_report *r)
{
    return reconcile_watched(db, store, verify_all, NULL, r);
}

int reconcile_watched(struct db *db, struct store *store, int verify_all,
                      struct reconcile_watch *watch, struct reconcile_report *r)
{
    struct db_blob *rows = NULL;
    size_t n = 0;
    memset(r, 0, sizeof(*r));
    int rc = db_list_blobs(db, &rows, &n);
    if (rc)
        return rc;
    struct scan sc = {db, store, map_new(), verify_all, r, watch};
    if (!sc.rows) {
        free(rows);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        map_put(sc.rows, rows[i].digest, (void *)1);
    rc = store_each(store, on_file, &sc);
    /* what is left had no file */
    size_t missing = map_count(sc.rows);
    if (!rc && missing) {
        char **digests = malloc(missing * sizeof(*digests)), **cursor = digests;
        if (digests) {
            map_each(sc.rows, collect, &cursor);
            rc = db_forget_blobs(db, digests, missing, NULL);
            r->rows_dropped = missing;
            free(digests);
        }
    }
    map_free(sc.rows);
    free(rows);
    return rc;
}
