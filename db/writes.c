/* SPDX-License-Identifier: Apache-2.0 */
/* The changes callers queue, each one statement. */
#include "db/impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static const struct db_write W_PUT_TAG = {
    "INSERT OR REPLACE INTO tags (upstream, repo, tag, digest, media_type,"
    " validated_ms) VALUES (?, ?, ?, ?, ?, ?)",
    5, 1};

static const struct db_write W_TAG_VALIDATED = {
    "UPDATE tags SET validated_ms = max(validated_ms, ?4)"
    " WHERE upstream = ?1 AND repo = ?2 AND tag = ?3",
    3, 1};

static const struct db_write W_DEL_TAG = {
    "DELETE FROM tags WHERE upstream = ? AND repo = ? AND tag = ?", 3, 0};

static const struct db_write W_PUT_MANIFEST = {
    "INSERT OR REPLACE INTO manifests (digest, media_type, size)"
    " VALUES (?, ?, ?)",
    2, 1};

const struct db_write db__w_put_blob = {
    "INSERT INTO blobs (digest, media_type, size, first_cached_ms,"
    " last_access_ms) VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT(digest) DO"
    " UPDATE SET last_access_ms = excluded.last_access_ms,"
    " media_type = coalesce(excluded.media_type, media_type)",
    2, 2};

const struct db_write db__w_touch = {"UPDATE blobs SET last_access_ms = max(last_access_ms, ?2)"
                                     " WHERE digest = ?1",
                                     1, 1};

const struct db_write db__w_ref = {"INSERT OR IGNORE INTO repo_blobs (upstream, repo, digest)"
                                   " VALUES (?, ?, ?)",
                                   3, 0};

const struct db_write db__w_counter = {
    "INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", 1, 1};

static const struct db_write W_HOSTED_TAG = {
    "INSERT OR REPLACE INTO hosted_tags (repo, tag, digest, media_type)"
    " VALUES (?, ?, ?, ?)",
    4, 0};

static const struct db_write W_HOSTED_UNTAG = {"DELETE FROM hosted_tags WHERE repo = ? AND tag = ?",
                                               2, 0};

/* a NULL media type keeps the one recorded: a manifest an index names stays a manifest */
static const struct db_write W_HOSTED_BLOB = {
    "INSERT INTO hosted_blobs (repo, digest, media_type) VALUES (?1, ?2, ?3)"
    " ON CONFLICT(repo, digest) DO UPDATE SET media_type = coalesce(excluded.media_type,"
    " media_type)",
    3, 0};

static const struct db_write W_HOSTED_PLAIN = {
    "INSERT OR REPLACE INTO hosted_blobs (repo, digest, media_type) VALUES (?, ?, NULL)", 2, 0};

static const struct db_write W_HOSTED_UNREF = {
    "DELETE FROM hosted_blobs WHERE repo = ? AND digest = ?", 2, 0};

static const struct db_write W_HOSTED_REF = {
    "INSERT OR IGNORE INTO hosted_refs (manifest, digest) VALUES (?, ?)", 2, 0};

static const struct db_write W_HOSTED_REFERRER = {
    "INSERT OR REPLACE INTO hosted_referrers (repo, digest, subject, artifact_type,"
    " descriptor) VALUES (?, ?, ?, ?, ?)",
    5, 0};

static const struct db_write W_HOSTED_UNREFERRER = {
    "DELETE FROM hosted_referrers WHERE repo = ? AND digest = ?", 2, 0};

static const struct db_write W_PUT_REFERRERS = {
    "INSERT OR REPLACE INTO referrers (upstream, repo, subject, document,"
    " validated_ms) VALUES (?, ?, ?, ?, ?)",
    4, 1};

static const struct db_write W_UPSTREAM_STATE = {
    "INSERT OR REPLACE INTO upstream_states (upstream, state, reason,"
    " since_ms) VALUES (?, ?, ?, ?)",
    3, 1};

void db_put_tag(struct db *d, const struct db_tag_row *row)
{
    struct op *o =
        db__op_new(&W_PUT_TAG, row->upstream, row->repo, row->tag, row->digest, row->media_type);
    if (!o)
        return;
    o->n1 = row->validated_ms;
    db__enqueue(d, o);
}

void db_tag_validated(struct db *d, const char *upstream, const char *repo, const char *tag,
                      uint64_t validated_ms)
{
    struct op *o = db__op_new(&W_TAG_VALIDATED, upstream, repo, tag, NULL, NULL);
    if (!o)
        return;
    o->n1 = validated_ms;
    db__enqueue(d, o);
}

void db_put_referrers(struct db *d, const struct db_referrers_row *row)
{
    struct op *o =
        db__op_new(&W_PUT_REFERRERS, row->upstream, row->repo, row->subject, row->document, NULL);
    if (!o)
        return;
    o->n1 = row->validated_ms;
    db__enqueue(d, o);
}

void db_set_upstream_state(struct db *d, const char *upstream, const char *state, uint64_t since_ms,
                           const char *reason)
{
    struct op *o = db__op_new(&W_UPSTREAM_STATE, upstream, state, reason, NULL, NULL);
    if (!o)
        return;
    o->n1 = since_ms;
    db__enqueue(d, o);
}

void db_hosted_tag(struct db *d, const char *repo, const char *tag, const char *digest,
                   const char *media_type)
{
    struct op *o = digest ? db__op_new(&W_HOSTED_TAG, repo, tag, digest, media_type, NULL)
                          : db__op_new(&W_HOSTED_UNTAG, repo, tag, NULL, NULL, NULL);
    if (o)
        db__enqueue(d, o);
}

void db_hosted_blob(struct db *d, const char *repo, const char *digest, const char *media_type,
                    int held)
{
    const struct db_write *w = held == DB_HOSTED_PLAIN ? &W_HOSTED_PLAIN
                               : held                   ? &W_HOSTED_BLOB
                                                        : &W_HOSTED_UNREF;
    struct op *o = db__op_new(w, repo, digest, w == &W_HOSTED_BLOB ? media_type : NULL, NULL,
                              NULL);
    if (o)
        db__enqueue(d, o);
}

void db_hosted_ref(struct db *d, const char *manifest, const char *digest)
{
    struct op *o = db__op_new(&W_HOSTED_REF, manifest, digest, NULL, NULL, NULL);
    if (o)
        db__enqueue(d, o);
}

void db_hosted_referrer(struct db *d, const char *repo, const char *digest,
                        const char *subject, const char *artifact_type, const char *descriptor)
{
    struct op *o = subject ? db__op_new(&W_HOSTED_REFERRER, repo, digest, subject,
                                        artifact_type, descriptor)
                           : db__op_new(&W_HOSTED_UNREFERRER, repo, digest, NULL, NULL, NULL);
    if (o)
        db__enqueue(d, o);
}

void db_del_tag(struct db *d, const char *upstream, const char *repo, const char *tag)
{
    struct op *o = db__op_new(&W_DEL_TAG, upstream, repo, tag, NULL, NULL);
    if (o)
        db__enqueue(d, o);
}

void db_put_manifest(struct db *d, const struct db_manifest_row *row)
{
    struct op *o = db__op_new(&W_PUT_MANIFEST, row->digest, row->media_type, NULL, NULL, NULL);
    if (!o)
        return;
    o->n1 = row->size;
    db__enqueue(d, o);
}

void db_put_blob(struct db *d, const char *digest, uint64_t size, const char *media_type,
                 uint64_t now_ms)
{
    struct op *o = db__op_new(&db__w_put_blob, digest, media_type, NULL, NULL, NULL);
    if (!o)
        return;
    o->n1 = size;
    o->n2 = now_ms; /* first_cached and last_access start equal */
    db__enqueue(d, o);
}
