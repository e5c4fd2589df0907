/* SPDX-License-Identifier: Apache-2.0 */
/* The index database: migration of an older schema, the maintenance queries GC relies on, the
 * upstreams' pull limits, prefetch runs, the status page's reads, refusal of a damaged file. */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static char got_referrers[512];
static void on_referrer(void *ud, const char *repo, const char *digest, const char *subject,
                        const char *artifact_type, const char *descriptor)
{
    (void)ud;
    size_t n = strlen(got_referrers);
    snprintf(got_referrers + n, sizeof(got_referrers) - n, "%s %s %s %s %s;", repo, digest,
             subject, artifact_type, descriptor);
}

static struct db_ratelimit got_rl;
static char got_source[64];
static int n_rl;
static int on_ratelimit(void *ud, const struct db_ratelimit *rl)
{
    (void)ud;
    got_rl = *rl;
    snprintf(got_source, sizeof(got_source), "%s", rl->source ? rl->source : "(null)");
    n_rl++;
    return 0;
}

static int on_hosted_repo(void *ud, const struct db_hosted_repo_row *row)
{
    size_t n = strlen(ud);
    snprintf((char *)ud + n, 256 - n, "%s %llu %llu %llu;", row->repo,
             (unsigned long long)row->bytes, (unsigned long long)row->tags,
             (unsigned long long)row->last_access_ms);
    return 0;
}

static int on_hosted_tag(void *ud, const struct db_tag_row *row, uint64_t last_access_ms)
{
    size_t n = strlen(ud);
    snprintf((char *)ud + n, 256 - n, "%s %s %llu;", row->tag, row->digest,
             (unsigned long long)last_access_ms);
    return row->upstream != NULL; /* hosted rows name no upstream */
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

    /* prefetch runs: the last DB_PREFETCH_RUNS_KEEP kept, newest first; totals of every run */
    static struct db_prefetch_run pr, prs[DB_PREFETCH_RUNS_KEEP + 10];
    struct db_prefetch_totals pt;
    CHECK_EQ_INT(db_prefetch_runs(d, NULL, prs, 1), 0);
    CHECK_EQ_INT(db_prefetch_totals(d, &pt), 0);
    CHECK_EQ_U64(pt.runs, 0);
    for (int i = 0; i < DB_PREFETCH_RUNS_KEEP + 10; i++) {
        memset(&pr, 0, sizeof(pr));
        pr.started_ms = 1000 + (uint64_t)i;
        pr.finished_ms = 2000 + (uint64_t)i;
        snprintf(pr.trigger, sizeof(pr.trigger), "%s", i % 2 ? "command" : "scheduled");
        snprintf(pr.upstreams, sizeof(pr.upstreams), "%s", i % 2 ? "quay.io" : "docker.io,ghcr.io");
        pr.tags = 2;
        pr.heads = 1;
        pr.gets = (uint64_t)i;
        pr.bytes = 10;
        snprintf(pr.outcome, sizeof(pr.outcome), "%s", i == 59 ? "budget" : "ok");
        if (i == 59)
            snprintf(pr.stopped, sizeof(pr.stopped), "max_pulls_per_window");
        CHECK_EQ_INT(db_add_prefetch_run(d, &pr), 0);
    }
    CHECK_EQ_INT(db_prefetch_runs(d, NULL, prs, DB_PREFETCH_RUNS_KEEP + 10),
                 DB_PREFETCH_RUNS_KEEP);
    CHECK_EQ_U64(prs[0].started_ms, 1059);
    CHECK_EQ_U64(prs[DB_PREFETCH_RUNS_KEEP - 1].started_ms, 1010);
    CHECK_STR(prs[0].outcome, "budget");
    CHECK_STR(prs[0].stopped, "max_pulls_per_window");
    CHECK_STR(prs[0].trigger, "command");
    CHECK_EQ_INT(db_prefetch_runs(d, "ghcr.io", prs, 1), 1);
    CHECK_EQ_U64(prs[0].started_ms, 1058);
    CHECK_STR(prs[0].upstreams, "docker.io,ghcr.io");
    CHECK_EQ_INT(db_prefetch_runs(d, "ghcr", prs, 1), 0); /* whole names only */
    CHECK_EQ_INT(db_prefetch_totals(d, &pt), 0);
    CHECK_EQ_U64(pt.runs, DB_PREFETCH_RUNS_KEEP + 10);
    CHECK_EQ_U64(pt.since_ms, 1000);
    CHECK_EQ_U64(pt.gets, 59 * 60 / 2);
    CHECK_EQ_U64(pt.heads, 60);
    CHECK_EQ_U64(pt.bytes, 600);
    CHECK_EQ_U64(pt.stopped, 1);
    db_close(d);

    /* reopening a current database changes nothing */
    CHECK_EQ_INT(db_open(path, &d), 0);
    db_stats(d, &st);
    CHECK_EQ_U64(st.blobs, 1);
    /* pull limits: a later 429 without the limit headers keeps what was known */
    struct db_ratelimit hub = {"docker.io", 100, 76, 21600, "203.0.113.9", 1000, 0};
    db_set_ratelimit(d, &hub);
    db_close(d);
    CHECK_EQ_INT(db_open(path, &d), 0);
    struct db_ratelimit spent = {"docker.io", -1, 0, -1, NULL, 2000, 2000};
    db_set_ratelimit(d, &spent);
    db_close(d);
    CHECK_EQ_INT(db_open(path, &d), 0);
    CHECK_EQ_INT(db_each_ratelimit(d, on_ratelimit, NULL), 0);
    CHECK_EQ_INT(n_rl, 1);
    CHECK_EQ_INT(got_rl.limit, 100);
    CHECK_EQ_INT(got_rl.remaining, 0);
    CHECK_EQ_INT(got_rl.window_s, 21600);
    CHECK_STR(got_source, "203.0.113.9");
    CHECK_EQ_U64(got_rl.seen_ms, 2000);
    CHECK_EQ_U64(got_rl.last_429_ms, 2000);
    db_close(d);

    /* the status page's reads: hosted repositories with their bytes and tags, a repository's
     * tags, a blob's media type (a manifest's) or none */
    CHECK_EQ_INT(db_open(path, &d), 0);
    db_put_blob(d, "sha256:hm", 300, "application/vnd.oci.image.manifest.v1+json", 50);
    db_put_blob(d, "sha256:hl", 4000, NULL, 60);
    db_hosted_blob(d, "lan/app", "sha256:hm", "application/vnd.oci.image.manifest.v1+json", 1);
    db_hosted_blob(d, "lan/app", "sha256:hl", NULL, 1);
    db_hosted_tag(d, "lan/app", "v1", "sha256:hm", "application/vnd.oci.image.manifest.v1+json");
    db_hosted_tag(d, "lan/app", "v2", "sha256:hm", "application/vnd.oci.image.manifest.v1+json");
    db_hosted_blob(d, "lan/empty", "sha256:hl", NULL, 1);
    db_close(d);
    CHECK_EQ_INT(db_open(path, &d), 0);
    char hosted[256] = "";
    CHECK_EQ_INT(db_each_hosted_repo(d, on_hosted_repo, hosted), 0);
    CHECK_STR(hosted, "lan/app 4300 2 60;lan/empty 4000 0 60;");
    char htags[256] = "";
    CHECK_EQ_INT(db_each_hosted_tag(d, "lan/app", on_hosted_tag, htags), 0);
    CHECK_STR(htags, "v1 sha256:hm 50;v2 sha256:hm 50;");
    char mt[64];
    uint64_t size = 0, last = 0;
    CHECK_EQ_INT(db_blob_info(d, "sha256:hm", mt, sizeof(mt), &size, &last), 0);
    CHECK_STR(mt, "application/vnd.oci.image.manifest.v1+json");
    CHECK_EQ_U64(size, 300);
    CHECK_EQ_U64(last, 50);
    CHECK_EQ_INT(db_blob_info(d, "sha256:hl", mt, sizeof(mt), &size, &last), 0);
    CHECK_STR(mt, "");
    CHECK_EQ_INT(db_blob_info(d, "sha256:none", mt, sizeof(mt), &size, &last), -ENOENT);
    db_close(d);

    /* hosted referrers (schema 6): kept across a reopen, and gone once deleted */
    CHECK_EQ_INT(db_open(path, &d), 0);
    db_hosted_referrer(d, "team/a", "sha256:r1", "sha256:s", "application/x.sig", "{\"d\":1}");
    db_hosted_referrer(d, "team/a", "sha256:r2", "sha256:s", "", "{\"d\":2}");
    db_close(d);
    CHECK_EQ_INT(db_open(path, &d), 0);
    db_hosted_referrer(d, "team/a", "sha256:r1", NULL, NULL, NULL);
    db_close(d);
    CHECK_EQ_INT(db_open(path, &d), 0);
    CHECK_EQ_INT(db_load_hosted_referrers(d, on_referrer, NULL), 0);
    CHECK_STR(got_referrers, "team/a sha256:r2 sha256:s  {\"d\":2};");
    db_close(d);

    /* a database from a newer release is refused, not damaged */
    sqlite3 *s;
    sqlite3_open(path, &s);
    sqlite3_exec(s, "PRAGMA user_version = 99", NULL, NULL, NULL);
    sqlite3_close(s);
    CHECK(db_open(path, &d) != 0);

    /* a damaged file is refused and left as it is */
    unlink(path);
    CHECK_EQ_INT(db_open(path, &d), 0);
    db_close(d);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, 4096, SEEK_SET);
        for (int i = 0; i < 3 * 4096; i++)
            fputc((i * 131) & 0xff, f);
        fclose(f);
    }
    CHECK(db_open(path, &d) != 0);
    f = fopen(path, "wb");
    if (f) {
        fputs("not a database at all, not even its header", f);
        fclose(f);
    }
    CHECK(db_open(path, &d) != 0);
    f = fopen(path, "rb");
    char head[16] = "";
    CHECK(f && fread(head, 1, 15, f) == 15 && memcmp(head, "not a database ", 15) == 0);
    if (f)
        fclose(f);

    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd))
        return 1;
    CHECK_DONE();
}
