/* The index database: migration of an older schema, the maintenance queries GC relies on. */
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "db/db.h"

static char dir[128], path[256];

static void make_v1(void)
{
    sqlite3 *s;
    CHECK_EQ_INT(sqlite3_open(path, &s), SQLITE_OK);
    const char *v1 =
        "CREATE TABLE blobs (digest TEXT PRIMARY KEY, size INTEGER NOT NULL, media_type TEXT,"
        " first_cached_ms INTEGER NOT NULL, last_access_ms INTEGER NOT NULL);"
        "CREATE TABLE manifests (digest TEXT PRIMARY KEY, media_type TEXT NOT NULL,"
        " size INTEGER NOT NULL);"
        "CREATE TABLE tags (upstream TEXT NOT NULL, repo TEXT NOT NULL, tag TEXT NOT NULL,"
        " digest TEXT NOT NULL, media_type TEXT NOT NULL, validated_ms INTEGER NOT NULL,"
        " PRIMARY KEY (upstream, repo, tag));"
        "INSERT INTO blobs VALUES ('sha256:aa', 100, NULL, 1, 1);"
        "INSERT INTO manifests VALUES ('sha256:mm', 'application/vnd.oci.image.manifest.v1+json', 7);"
        "INSERT INTO tags VALUES ('docker.io', 'library/x', 'v1', 'sha256:mm',"
        " 'application/vnd.oci.image.manifest.v1+json', 5);"
        "PRAGMA user_version = 1;";
    CHECK_EQ_INT(sqlite3_exec(s, v1, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(s);
}

static int count_tags;
static void on_tag(void *ud, const struct db_tag_row *row)
{
    (void)ud;
    (void)row;
    count_tags++;
}
static void on_manifest(void *ud, const struct db_manifest_row *row)
{
    (void)ud;
    (void)row;
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/regcache-db-test-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof(path), "%s/regcache.db", dir);
    make_v1();

    struct db *d;
    CHECK_EQ_INT(db_open(path, &d), 0);
    CHECK_EQ_INT(db_load(d, on_tag, on_manifest, NULL), 0);
    CHECK_EQ_INT(count_tags, 1);
    /* the migration gave the manifest a blob row */
    struct db_blob *rows;
    size_t n;
    CHECK_EQ_INT(db_list_blobs(d, &rows, &n), 0);
    CHECK_EQ_INT(n, 2);
    free(rows);
    struct db_stats st;
    db_stats(d, &st);
    CHECK_EQ_U64(st.blobs, 2);
    CHECK_EQ_U64(st.blob_bytes, 107);
    CHECK_EQ_U64(st.tags, 1);

    /* forgetting the manifest forgets the tag pointing at it */
    char *forget[] = {"sha256:mm"};
    size_t tags = 0;
    CHECK_EQ_INT(db_forget_blobs(d, forget, 1, &tags), 0);
    CHECK_EQ_INT(tags, 1);
    db_stats(d, &st);
    CHECK_EQ_U64(st.blobs, 1);
    CHECK_EQ_U64(st.tags, 0);
    CHECK_EQ_U64(st.manifests, 0);

    struct db_gc_run run = {10, 2, 0, 1, 7, "manual"}, back[2];
    CHECK_EQ_INT(db_add_gc_run(d, &run), 0);
    CHECK_EQ_INT(db_gc_runs(d, back, 2), 1);
    CHECK_STR(back[0].reason, "manual");
    CHECK_EQ_U64(back[0].evicted_bytes, 7);
    db_close(d);

    /* reopening a current database changes nothing */
    CHECK_EQ_INT(db_open(path, &d), 0);
    db_stats(d, &st);
    CHECK_EQ_U64(st.blobs, 1);
    db_close(d);

    /* a database from a newer release is refused, not damaged */
    sqlite3 *s;
    sqlite3_open(path, &s);
    sqlite3_exec(s, "PRAGMA user_version = 99", NULL, NULL, NULL);
    sqlite3_close(s);
    CHECK(db_open(path, &d) != 0);

    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd))
        return 1;
    CHECK_DONE();
}
