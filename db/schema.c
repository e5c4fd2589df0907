/* SPDX-License-Identifier: Apache-2.0 */
/* Opening the index: the integrity check, WAL, and the schema migrations. */
#include "db/impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

/* Schema migrations, applied in order; migrations[i] takes user_version i to i + 1. */
static const char *const migrations[] = {
    /* 1: the index of issue-free pulls */
    "CREATE TABLE IF NOT EXISTS blobs ("
    "  digest TEXT PRIMARY KEY, size INTEGER NOT NULL, media_type TEXT,"
    "  first_cached_ms INTEGER NOT NULL, last_access_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS manifests ("
    "  digest TEXT PRIMARY KEY, media_type TEXT NOT NULL, size INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tags ("
    "  upstream TEXT NOT NULL, repo TEXT NOT NULL, tag TEXT NOT NULL,"
    "  digest TEXT NOT NULL, media_type TEXT NOT NULL, validated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (upstream, repo, tag));",
    /* 2: lifecycle: which repository referenced which blob, GC history, counters */
    "CREATE TABLE IF NOT EXISTS repo_blobs ("
    "  upstream TEXT NOT NULL, repo TEXT NOT NULL, digest TEXT NOT NULL,"
    "  PRIMARY KEY (upstream, repo, digest)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS repo_blobs_by_digest ON repo_blobs (digest);"
    "CREATE INDEX IF NOT EXISTS blobs_by_access ON blobs (last_access_ms);"
    "CREATE INDEX IF NOT EXISTS tags_by_digest ON tags (digest);"
    "CREATE TABLE IF NOT EXISTS gc_runs ("
    "  started_ms INTEGER NOT NULL, duration_ms INTEGER NOT NULL, dry_run INTEGER NOT NULL,"
    "  evicted_count INTEGER NOT NULL, evicted_bytes INTEGER NOT NULL, reason TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    /* manifests are files in the store like any blob: give them blob rows too */
    "INSERT OR IGNORE INTO blobs (digest, size, media_type, first_cached_ms, last_access_ms)"
    "  SELECT digest, size, media_type, CAST(strftime('%s','now') AS INTEGER) * 1000,"
    "         CAST(strftime('%s','now') AS INTEGER) * 1000 FROM manifests;",
    /* 3: hosted repositories: their tags and the content they hold (never evicted by GC) */
    "CREATE TABLE IF NOT EXISTS hosted_tags ("
    "  repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL,"
    "  PRIMARY KEY (repo, tag));"
    "CREATE TABLE IF NOT EXISTS hosted_blobs ("
    "  repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT,"
    "  PRIMARY KEY (repo, digest)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS hosted_blobs_by_digest ON hosted_blobs (digest);"
    "CREATE TABLE IF NOT EXISTS hosted_refs ("
    "  manifest TEXT NOT NULL, digest TEXT NOT NULL,"
    "  PRIMARY KEY (manifest, digest)) WITHOUT ROWID;",
    /* 4: the pull budget each upstream last announced (NULL: never said) */
    "CREATE TABLE IF NOT EXISTS ratelimits ("
    "  upstream TEXT PRIMARY KEY, lim INTEGER, remaining INTEGER, window_s INTEGER,"
    "  source TEXT, seen_ms INTEGER NOT NULL, last_429_ms INTEGER);",
    /* 5: each upstream's health as the mirror last saw it; the referrers of a proxied subject,
     * kept like a tag: the image index answered and when it was last validated */
    "CREATE TABLE IF NOT EXISTS upstream_states ("
    "  upstream TEXT PRIMARY KEY, state TEXT NOT NULL, since_ms INTEGER NOT NULL,"
    "  reason TEXT);"
    "CREATE TABLE IF NOT EXISTS referrers ("
    "  upstream TEXT NOT NULL, repo TEXT NOT NULL, subject TEXT NOT NULL,"
    "  document TEXT NOT NULL, validated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (upstream, repo, subject));"
    "CREATE INDEX IF NOT EXISTS referrers_by_subject ON referrers (subject);",
    /* 6: hosted manifests that name a subject, with their descriptor in a referrers index */
    "CREATE TABLE IF NOT EXISTS hosted_referrers ("
    "  repo TEXT NOT NULL, digest TEXT NOT NULL, subject TEXT NOT NULL,"
    "  artifact_type TEXT NOT NULL, descriptor TEXT NOT NULL,"
    "  PRIMARY KEY (repo, digest)) WITHOUT ROWID;",
    /* 7: the purge journal: what `regcache purge` (or `regcache gc`) removed, read by every
     * running daemon to forget it in memory, and how far each daemon has read it */
    "CREATE TABLE IF NOT EXISTS purges ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL,"
    "  upstream TEXT, repo TEXT, tag TEXT, digest TEXT, size INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS purge_readers ("
    "  pid INTEGER PRIMARY KEY, seq INTEGER NOT NULL, seen_ms INTEGER NOT NULL);",
    /* 8: prefetch runs (the last DB_PREFETCH_RUNS_KEEP) and their totals since the first */
    "CREATE TABLE IF NOT EXISTS prefetch_runs ("
    "  started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL, trigger TEXT NOT NULL,"
    "  upstreams TEXT NOT NULL, refs INTEGER NOT NULL, tags INTEGER NOT NULL,"
    "  heads INTEGER NOT NULL, gets INTEGER NOT NULL, blobs INTEGER NOT NULL,"
    "  bytes INTEGER NOT NULL, errors INTEGER NOT NULL, outcome TEXT NOT NULL,"
    "  stopped TEXT NOT NULL, error TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS prefetch_totals ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1), since_ms INTEGER NOT NULL,"
    "  runs INTEGER NOT NULL, tags INTEGER NOT NULL, heads INTEGER NOT NULL,"
    "  gets INTEGER NOT NULL, blobs INTEGER NOT NULL, bytes INTEGER NOT NULL,"
    "  errors INTEGER NOT NULL, stopped INTEGER NOT NULL);",
    /* 9: blobs stored locally and not yet written into the S3 tier's bucket (cache/l2.c) */
    ("CREATE TABLE IF NOT EXISTS s3_pending ("
     "  digest TEXT PRIMARY KEY, queued_ms INTEGER NOT NULL) WITHOUT ROWID;"),
    /* 10: how many blob rows there are and their bytes, kept by triggers, so that start-up and
     * the GC know the totals without reading every row */
    "CREATE TABLE IF NOT EXISTS blob_totals ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1), files INTEGER NOT NULL, bytes INTEGER NOT NULL);"
    "INSERT OR REPLACE INTO blob_totals (id, files, bytes)"
    "  SELECT 1, count(*), coalesce(sum(size), 0) FROM blobs;"
    "CREATE TRIGGER IF NOT EXISTS blob_totals_insert AFTER INSERT ON blobs BEGIN"
    "  UPDATE blob_totals SET files = files + 1, bytes = bytes + NEW.size WHERE id = 1; END;"
    "CREATE TRIGGER IF NOT EXISTS blob_totals_delete AFTER DELETE ON blobs BEGIN"
    "  UPDATE blob_totals SET files = files - 1, bytes = bytes - OLD.size WHERE id = 1; END;"
    "CREATE TRIGGER IF NOT EXISTS blob_totals_size AFTER UPDATE OF size ON blobs BEGIN"
    "  UPDATE blob_totals SET bytes = bytes - OLD.size + NEW.size WHERE id = 1; END;",
    /* 11: per repository, the stored blobs it references, their bytes and the newest access
     * recorded for one of them, kept by triggers (so that `ls` and `stats` read a row per
     * repository, not a row per reference). A reference counts while both it and its blob row
     * exist, whichever came first; last_access_ms only grows. */
    "CREATE TABLE IF NOT EXISTS repo_totals ("
    "  upstream TEXT NOT NULL, repo TEXT NOT NULL, blobs INTEGER NOT NULL,"
    "  bytes INTEGER NOT NULL, last_access_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (upstream, repo)) WITHOUT ROWID;"
    "INSERT OR REPLACE INTO repo_totals (upstream, repo, blobs, bytes, last_access_ms)"
    "  SELECT rb.upstream, rb.repo, count(b.digest), coalesce(sum(b.size), 0),"
    "  coalesce(max(b.last_access_ms), 0) FROM repo_blobs rb"
    "  LEFT JOIN blobs b ON b.digest = rb.digest GROUP BY rb.upstream, rb.repo;"
    "CREATE TRIGGER IF NOT EXISTS repo_totals_ref AFTER INSERT ON repo_blobs BEGIN"
    "  INSERT OR IGNORE INTO repo_totals VALUES (NEW.upstream, NEW.repo, 0, 0, 0);"
    "  UPDATE repo_totals SET blobs = blobs + 1, bytes = bytes + b.size,"
    "    last_access_ms = max(repo_totals.last_access_ms, b.at)"
    "    FROM (SELECT size, last_access_ms AS at FROM blobs WHERE digest = NEW.digest) AS b"
    "    WHERE upstream = NEW.upstream AND repo = NEW.repo; END;"
    "CREATE TRIGGER IF NOT EXISTS repo_totals_unref AFTER DELETE ON repo_blobs BEGIN"
    "  UPDATE repo_totals SET blobs = blobs - 1, bytes = bytes - b.size"
    "    FROM (SELECT size FROM blobs WHERE digest = OLD.digest) AS b"
    "    WHERE upstream = OLD.upstream AND repo = OLD.repo;"
    "  DELETE FROM repo_totals WHERE upstream = OLD.upstream AND repo = OLD.repo"
    "    AND NOT EXISTS (SELECT 1 FROM repo_blobs"
    "    WHERE upstream = OLD.upstream AND repo = OLD.repo); END;"
    "CREATE TRIGGER IF NOT EXISTS repo_totals_blob AFTER INSERT ON blobs BEGIN"
    "  UPDATE repo_totals SET blobs = blobs + 1, bytes = bytes + NEW.size,"
    "    last_access_ms = max(last_access_ms, NEW.last_access_ms)"
    "    WHERE (upstream, repo) IN (SELECT upstream, repo FROM repo_blobs"
    "    WHERE digest = NEW.digest); END;"
    "CREATE TRIGGER IF NOT EXISTS repo_totals_unblob AFTER DELETE ON blobs BEGIN"
    "  UPDATE repo_totals SET blobs = blobs - 1, bytes = bytes - OLD.size"
    "    WHERE (upstream, repo) IN (SELECT upstream, repo FROM repo_blobs"
    "    WHERE digest = OLD.digest); END;"
    "CREATE TRIGGER IF NOT EXISTS repo_totals_size AFTER UPDATE OF size ON blobs BEGIN"
    "  UPDATE repo_totals SET bytes = bytes - OLD.size + NEW.size"
    "    WHERE (upstream, repo) IN (SELECT upstream, repo FROM repo_blobs"
    "    WHERE digest = NEW.digest); END;"
    "CREATE TRIGGER IF NOT EXISTS repo_totals_access AFTER UPDATE OF last_access_ms ON blobs"
    "  WHEN NEW.last_access_ms > OLD.last_access_ms BEGIN"
    "  UPDATE repo_totals SET last_access_ms = max(last_access_ms, NEW.last_access_ms)"
    "    WHERE (upstream, repo) IN (SELECT upstream, repo FROM repo_blobs"
    "    WHERE digest = NEW.digest); END;",
};

#define N_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

int db__exec(sqlite3 *s, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(s, sql, NULL, NULL, &err) != SQLITE_OK) {
        log_error("database: %s", err ? err : "error");
        sqlite3_free(err);
        return -EIO;
    }
    return 0;
}

static int migrate(sqlite3 *s)
{
    sqlite3_stmt *st;
    int version = 0;
    if (sqlite3_prepare_v2(s, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    if (version > N_MIGRATIONS) {
        log_error("database schema version %d is newer than this regcache understands (%d)",
                  version, N_MIGRATIONS);
        return -EPROTO;
    }
    for (; version < N_MIGRATIONS; version++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", version + 1);
        if (db__exec(s, "BEGIN IMMEDIATE") || db__exec(s, migrations[version]) || db__exec(s, bump) ||
            db__exec(s, "COMMIT")) {
            db__exec(s, "ROLLBACK");
            return -EIO;
        }
        if (version > 0)
            log_info("database migrated to schema version %d", version + 1);
    }
    return 0;
}

/* Why the index cannot be used, in words an operator can act on. */
static void open_failed(sqlite3 *s, const char *path, int rc, const char *why)
{
    if (!rc)
        rc = s ? sqlite3_errcode(s) & 0xff : SQLITE_CANTOPEN;
    if (!why)
        why = s ? sqlite3_errmsg(s) : "cannot open";
    if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT)
        log_error("database %s is damaged (%s); not using it. Moving it aside starts an empty "
                  "index: the store's files are re-hashed and adopted, cached tags are fetched "
                  "again, hosted tags are lost",
                  path, why);
    else if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        log_error("database %s is locked by another process (waited %d s): %s", path,
                  DB_BUSY_TIMEOUT_MS / 1000, why);
    else
        log_error("database %s: %s", path, why);
}

/* PRAGMA quick_check: SQLITE_OK when the file is intact, else an error code (the database's
 * own, or SQLITE_CORRUPT with the first problem found in why). */
static int check_intact(sqlite3 *s, char *why, size_t len)
{
    sqlite3_stmt *st;
    why[0] = '\0';
    int rc = sqlite3_prepare_v2(s, "PRAGMA quick_check", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *res = (const char *)sqlite3_column_text(st, 0);
        rc = res && strcmp(res, "ok") == 0 ? SQLITE_OK : SQLITE_CORRUPT;
        if (rc) {
            if (res && strncmp(res, "*** ", 4) == 0 && strchr(res, '\n'))
                res = strchr(res, '\n') + 1; /* past "*** in database main ***" */
            snprintf(why, len, "quick_check: %.*s", (int)strcspn(res ? res : "", "\n"),
                     res ? res : "");
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int db_check_intact(struct db *d, char *why, size_t len)
{
    /* on a connection of its own: the check is one long step, which would hold the shared
     * connection's mutex for its whole length */
    sqlite3 *s = NULL;
    why[0] = '\0';
    int rc = sqlite3_open_v2(d->path, &s, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(s, DB_BUSY_TIMEOUT_MS);
        rc = check_intact(s, why, len);
    }
    sqlite3_close(s);
    if (rc == SQLITE_OK)
        return 0;
    if (!why[0])
        snprintf(why, len, "quick_check: %s", sqlite3_errstr(rc));
    return -EIO;
}

void db__free(struct db *d)
{
    sqlite3_close(d->sql);
    map_free(d->touches);
    map_free(d->refs);
    map_free(d->counters);
    map_free(d->ratelimits);
    free(d->path);
    free(d);
}

static int open_db(const char *path, int check, struct db **out)
{
    struct db *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->queue_tail = &d->queue;
    d->kept_tail = &d->kept;
    d->touches = map_new();
    d->refs = map_new();
    d->counters = map_new();
    d->ratelimits = map_new();
    d->path = strdup(path);
    if (!d->touches || !d->refs || !d->counters || !d->ratelimits || !d->path) {
        db__free(d);
        return -ENOMEM;
    }
    if (sqlite3_open_v2(path, &d->sql,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        open_failed(d->sql, path, 0, NULL);
        db__free(d);
        return -EIO;
    }
    sqlite3_busy_timeout(d->sql, DB_BUSY_TIMEOUT_MS);
    char why[512];
    int rc = check ? check_intact(d->sql, why, sizeof(why)) : SQLITE_OK;
    if (rc != SQLITE_OK) {
        open_failed(d->sql, path, rc & 0xff, why[0] ? why : NULL);
        db__free(d);
        return -EIO;
    }
    if (sqlite3_exec(d->sql, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(d->sql, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        open_failed(d->sql, path, 0, NULL);
        db__free(d);
        return -EIO;
    }
    if (migrate(d->sql)) {
        open_failed(d->sql, path, 0, "cannot bring the schema up to date");
        db__free(d);
        return -EIO;
    }
    *out = d;
    return 0;
}

int db_open(const char *path, struct db **out)
{
    return open_db(path, 1, out);
}

int db_open_unchecked(const char *path, struct db **out)
{
    return open_db(path, 0, out);
}
