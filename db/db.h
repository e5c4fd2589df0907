/* The mirror's index in SQLite (WAL): which tags point at which manifests, each manifest's
 * media type, and the blobs the store holds.
 *
 * The event loop never runs a statement: changes are queued in memory and written in one
 * transaction on libuv's thread pool, one batch at a time. The index is read once, at start-up,
 * by db_load (the cache keeps it in memory). */
#ifndef REGCACHE_DB_DB_H
#define REGCACHE_DB_DB_H

#include <stdint.h>
#include <uv.h>

#define DB_SCHEMA_VERSION 1

struct db;

int db_open(const char *path, struct db **out);
/* Writes what is still queued (synchronously) and closes. */
void db_close(struct db *d);

struct db_tag_row {
    const char *upstream, *repo, *tag, *digest, *media_type;
    uint64_t validated_ms;
};
struct db_manifest_row {
    const char *digest, *media_type;
    uint64_t size;
};
int db_load(struct db *d, void (*tag)(void *ud, const struct db_tag_row *row),
            void (*manifest)(void *ud, const struct db_manifest_row *row), void *ud);

/* From here on changes are written asynchronously on loop's thread pool. */
void db_attach(struct db *d, uv_loop_t *loop);

void db_put_tag(struct db *d, const struct db_tag_row *row);
void db_del_tag(struct db *d, const char *upstream, const char *repo, const char *tag);
void db_put_manifest(struct db *d, const struct db_manifest_row *row);
void db_put_blob(struct db *d, const char *digest, uint64_t size, uint64_t now_ms);

#endif
