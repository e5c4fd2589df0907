/* SPDX-License-Identifier: Apache-2.0 */
/* Blob uploads into hosted repositories (OCI distribution spec): POST starts a session (or
 * mounts a blob the registry has, or takes a whole blob with ?digest=), PATCH appends a chunk
 * (Content-Range must continue where the upload is), GET tells how far it is, PUT ?digest=
 * commits it after the bytes hashed to the digest, DELETE cancels it. The bytes go to a
 * temporary file in the store in pieces of HOSTED_UPLOAD_FLUSH, written on the thread pool;
 * a request body is paused while HOSTED_UPLOAD_BUFFER_MAX bytes wait for the disk.
 *
 * Sessions are bounded: HOSTED_UPLOADS_MAX at once, hosted.max_uploads_per_client per user (or
 * per address for anonymous pushers), each expired after hosted.upload_timeout without a
 * request, and none holds a descriptor between requests. Bytes are taken only while they leave
 * cache.min_free free on the disk and keep hosted content under hosted.max_size: 507 else. */
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/db.h"
#include "hosted/impl.h"
#include "registry/respond.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/map.h"

/* 201 Created for a blob now at /v2/<repo>/blobs/<digest>. */
static void respond_created(struct op *o)
{
    char headers[HOSTED_KEY_MAX + 2 * REF_DIGEST_MAX + 80];
    snprintf(headers, sizeof(headers), "Location: /v2/%s/blobs/%s\r\nDocker-Content-Digest: %s\r\n",
             o->rt.name, o->digest, o->digest);
    conn_respond(o->c, 201, headers, NULL, 0, 0);
}

static struct upload *upload_find(struct hosted *h, const char *path, const char *repo,
                                  const char **uuid_out)
{
    const char *uuid = strrchr(path, '/');
    if (!uuid)
        return NULL;
    uuid++;
    *uuid_out = uuid;
    struct upload *u = map_get(h->uploads, uuid);
    return u && strcmp(u->repo, repo) == 0 ? u : NULL;
}

static void upload_headers(char *out, size_t len, const struct upload *u)
{
    snprintf(out, len,
             "Location: /v2/%s/blobs/uploads/%s\r\nDocker-Upload-UUID: %s\r\nRange: 0-%lld\r\n",
             u->repo, u->uuid, u->uuid, (long long)u->size - 1);
}

static uint64_t now_ms(void)
{
    return clock_mono_us() / 1000;
}

static void upload_drop(struct hosted *h, struct upload *u)
{
    map_del(h->uploads, u->uuid);
    h->upload_bytes -= u->size;
    store_fill_free(u->sf);
    free(u);
}

/* Before the answer to a request on an upload that goes on: its descriptor is closed until
 * the next request (on the loop: closing a file nobody fsyncs does not wait for the disk). */
static void upload_park(struct op *o)
{
    if (o->up)
        store_fill_park(o->up->sf);
}

static void work_upload_write(uv_work_t *w)
{
    struct op *o = w->data;
    o->rc = store_fill_write(o->up->sf, o->writing.data, o->writing.len);
}

static void upload_flush(struct op *o);
static void upload_finish(struct op *o);

static void upload_written(struct op *o)
{
    o->write_busy = 0;
    if (o->rc == 0) {
        o->up->size += o->writing.len;
        o->h->upload_bytes += o->writing.len;
    } else {
        o->write_failed = 1; /* the file may hold part of the piece: the session is lost */
    }
    buf_reset(&o->writing);
    if (o->rc) {
        if (o->paused && conn_alive(o->c)) {
            o->paused = 0;
            conn_body_resume(o->c); /* read the rest away */
        }
        if (o->body_ended)
            upload_finish(o);
        return;
    }
    if (o->paused && conn_alive(o->c)) {
        o->paused = 0;
        conn_body_resume(o->c);
    }
    if (o->body_ended || o->body.len >= HOSTED_UPLOAD_FLUSH)
        upload_flush(o);
}

static void upload_flush(struct op *o)
{
    if (o->write_busy)
        return;
    if (o->rc) { /* a write failed: drop the rest, answer once the body is over */
        buf_reset(&o->body);
        if (o->body_ended)
            upload_finish(o);
        return;
    }
    if (!o->body.len) {
        if (o->body_ended)
            upload_finish(o);
        return;
    }
    int room = hosted__room(o->h, o->body.len);
    if (room) { /* nothing of this piece is written: the session stays as it was */
        o->rc = room;
        buf_reset(&o->body);
        if (o->paused && conn_alive(o->c)) {
            o->paused = 0;
            conn_body_resume(o->c); /* read the rest away */
        }
        if (o->body_ended)
            upload_finish(o);
        return;
    }
    struct buf tmp = o->writing;
    o->writing = o->body;
    o->body = tmp;
    o->write_busy = 1;
    hosted__run(o, work_upload_write, upload_written);
}

static int upload_body(void *ud, const char *data, size_t len)
{
    struct op *o = ud;
    if (o->rc)
        return 0; /* refused: the rest is read away */
    if (buf_append(&o->body, data, len)) {
        o->rc = -ENOBUFS; /* the rest is read away, then 500 */
        return 0;
    }
    if (o->body.len >= HOSTED_UPLOAD_FLUSH)
        upload_flush(o);
    if (o->body.len >= HOSTED_UPLOAD_BUFFER_MAX) {
        o->paused = 1;
        return 1;
    }
    return 0;
}

static void upload_body_end(void *ud, int status)
{
    struct op *o = ud;
    o->body_ended = 1;
    o->body_status = status;
    upload_flush(o);
}

static void work_commit(uv_work_t *w)
{
    struct op *o = w->data;
    o->rc = store_fill_commit_as(o->up->sf, o->digest);
}

static void upload_committed(struct op *o)
{
    struct hosted *h = o->h;
    struct upload *u = o->up;
    o->up = NULL;
    uint64_t size = u->size;
    upload_drop(h, u);
    if (o->rc == 0) { /* stored, whether the client still waits or not */
        hosted__count(h, o->digest, size);
        db_put_blob(h->db, o->digest, size, NULL, clock_wall_ms());
        db_hosted_blob(h->db, o->rt.name, o->digest, NULL, 1);
        hosted__link(h, o->rt.name, o->digest);
        hosted__stored(h, o->digest);
    }
    if (!conn_alive(o->c))
        ;
    else if (o->rc == -EBADMSG)
        respond_error(o->c, 0, 400, "DIGEST_INVALID", "the uploaded bytes do not match the digest",
                      NULL);
    else if (o->rc)
        respond_error(o->c, 0, 500, "UNKNOWN", "cannot store the blob", NULL);
    else
        respond_created(o);
    hosted__op_free(o);
}

static const char *room_message(int rc)
{
    return rc == -EDQUOT ? "hosted content would pass hosted.max_size"
                         : "not enough free space: the push would cross cache.min_free";
}

/* The body is all on disk (or failed): answer the PATCH, or commit for a PUT / monolithic POST. */
static void upload_finish(struct op *o)
{
    if (o->up && (o->write_failed || (o->rc && o->digest[0]))) {
        /* a failed write may have left part of a piece the hash never saw; a failed commit
         * (PUT, monolithic POST) ends its session */
        upload_drop(o->h, o->up);
        o->up = NULL;
    }
    upload_park(o);
    if (o->body_status || !conn_alive(o->c)) {
        hosted__op_free(o);
        return;
    }
    if (o->rc == -ENOSPC || o->rc == -EDQUOT) {
        respond_error(o->c, 0, 507, "DENIED", room_message(o->rc), NULL);
        hosted__op_free(o);
        return;
    }
    if (o->rc) {
        /* the file no longer matches what was hashed (or the disk is full): the session ends
         * and its temporary file goes now, not when the session would expire */
        struct upload *u = o->up;
        o->up = NULL;
        upload_drop(o->h, u);
        respond_error(o->c, 0, 500, "BLOB_UPLOAD_INVALID", "cannot write the upload", NULL);
        hosted__op_free(o);
        return;
    }
    if (o->digest[0]) {
        hosted__run(o, work_commit, upload_committed);
        return;
    }
    char headers[900];
    upload_headers(headers, sizeof(headers), o->up);
    conn_respond(o->c, 202, headers, NULL, 0, 0);
    hosted__op_free(o);
}

static void start_body(struct op *o)
{
    o->up->busy = 1;
    /* a body announced too large for the disk or hosted.max_size is refused without writing
     * a byte of it, but read away first, so that the client reads the answer (a close with
     * unread bytes would reset the connection before it could); a chunked one is checked as
     * it arrives */
    if (o->req->content_length > 0)
        o->rc = hosted__room(o->h, (uint64_t)o->req->content_length);
    /* an upload's body goes to disk in pieces: its buffers are bounded by the piece size, not
     * by limits.max_manifest_size (which bounds manifests held whole) */
    o->body.max = o->writing.max;
    conn_read_body(o->c, upload_body, upload_body_end, o);
}

static void work_new_upload(uv_work_t *w)
{
    struct op *o = w->data;
    o->rc = store_fill_begin(o->h->store, "", &o->up->sf);
    if (!o->rc && !o->digest[0])
        store_fill_park(o->up->sf); /* no descriptor until its first PATCH */
}

static void upload_created(struct op *o)
{
    struct hosted *h = o->h;
    if (o->rc) {
        free(o->up);
        o->up = NULL;
        if (conn_alive(o->c))
            respond_error(o->c, 0, 500, "UNKNOWN", "cannot start an upload", NULL);
        hosted__op_free(o);
        return;
    }
    if (map_put(h->uploads, o->up->uuid, o->up) == MAP_NOMEM) {
        store_fill_free(o->up->sf);
        free(o->up);
        o->up = NULL;
        hosted__fail(o, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    if (!conn_alive(o->c)) {
        hosted__op_free(o);
        return;
    }
    if (o->digest[0]) { /* monolithic: POST ?digest= with the whole blob */
        start_body(o);
        return;
    }
    char headers[900];
    upload_headers(headers, sizeof(headers), o->up);
    conn_respond(o->c, 202, headers, NULL, 0, 0);
    hosted__op_free(o);
}

static void work_mount(uv_work_t *w)
{
    struct op *o = w->data;
    o->rc = store_has(o->h->store, o->digest) ? 0 : -ENOENT;
}

static void new_upload(struct op *o);

static void mounted_not(struct op *o)
{
    o->rc = 0;
    o->digest[0] = '\0';
    new_upload(o); /* not here: an ordinary upload session, per the spec */
}

/* A blob `from` holds is mounted when the store still has it. */
static void mounted(struct op *o)
{
    if (o->rc == 0 && conn_alive(o->c)) {
        db_hosted_blob(o->h->db, o->rt.name, o->digest, NULL, 1);
        hosted__link(o->h, o->rt.name, o->digest);
        respond_created(o);
        hosted__op_free(o);
        return;
    }
    mounted_not(o);
}

struct owner_count {
    const char *owner;
    size_t n;
};

static int count_owner(const char *k, void *v, void *ud)
{
    (void)k;
    struct owner_count *oc = ud;
    oc->n += strcmp(((struct upload *)v)->owner, oc->owner) == 0;
    return 0;
}

static void new_upload(struct op *o)
{
    struct owner_count oc = {o->owner, 0};
    map_each(o->h->uploads, count_owner, &oc);
    if (map_count(o->h->uploads) >= HOSTED_UPLOADS_MAX || oc.n >= o->h->cfg->hosted_max_uploads) {
        /* abandoned sessions expire after hosted.upload_timeout */
        char retry[64];
        snprintf(retry, sizeof(retry), "Retry-After: %llu\r\n",
                 (unsigned long long)(o->h->cfg->hosted_upload_timeout_ms + 999) / 1000);
        respond_error(o->c, 0, 429, "TOOMANYREQUESTS",
                      oc.n >= o->h->cfg->hosted_max_uploads
                          ? "too many uploads in progress for this client"
                          : "too many uploads in progress",
                      retry);
        hosted__op_free(o);
        return;
    }
    struct upload *u = calloc(1, sizeof(*u));
    unsigned char rnd[16];
    if (!u || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        free(u);
        respond_error(o->c, 0, 503, "UNAVAILABLE", "cannot start an upload", NULL);
        hosted__op_free(o);
        return;
    }
    for (int i = 0; i < 16; i++)
        sprintf(u->uuid + 2 * i, "%02x", rnd[i]);
    snprintf(u->repo, sizeof(u->repo), "%s", o->rt.name);
    snprintf(u->owner, sizeof(u->owner), "%s", o->owner);
    u->used_ms = now_ms();
    o->up = u;
    hosted__run(o, work_new_upload, upload_created);
}

static int query_digest(const char *query, char *out, size_t len)
{
    return route_query_param(query, "digest", out, len) > 0 &&
           ref_digest_is_sha256(out, strlen(out));
}

void hosted__upload(struct op *o)
{
    struct hosted *h = o->h;
    struct http_request *req = o->req;
    const char *method = req->method_name;
    const char *uuid = NULL;
    int is_post = strcmp(method, "POST") == 0;
    if (is_post) {
        char mount[100], from[REF_NAME_MAX + 1];
        if (route_query_param(req->query, "mount", mount, sizeof(mount)) > 0 &&
            ref_digest_is_sha256(mount, strlen(mount)) &&
            route_query_param(req->query, "from", from, sizeof(from)) > 0) {
            snprintf(o->digest, sizeof(o->digest), "%s", mount);
            if (ref_name_valid(from, strlen(from)) && hosted__linked(h, from, mount)) {
                hosted__run(o, work_mount, mounted);
                return;
            }
            mounted_not(o); /* `from` does not hold it (or is no hosted repository) */
            return;
        }
        if (route_query_param(req->query, "digest", o->digest, sizeof(o->digest)) > 0 &&
            !ref_digest_is_sha256(o->digest, strlen(o->digest))) {
            respond_error(o->c, 0, 400, "DIGEST_INVALID", "invalid digest", NULL);
            hosted__op_free(o);
            return;
        }
        new_upload(o);
        return;
    }
    struct upload *u = upload_find(h, req->path, o->rt.name, &uuid);
    if (!u) {
        respond_error(o->c, o->head, 404, "BLOB_UPLOAD_UNKNOWN", "upload unknown", NULL);
        hosted__op_free(o);
        return;
    }
    if (u->busy) {
        respond_error(o->c, 0, 409, "BLOB_UPLOAD_INVALID", "another request is writing this upload",
                      NULL);
        hosted__op_free(o);
        return;
    }
    u->used_ms = now_ms(); /* any request on it keeps it from expiring */
    if (req->method == HTTP_METHOD_GET) {
        char headers[900];
        upload_headers(headers, sizeof(headers), u);
        conn_respond(o->c, 204, headers, NULL, 0, 0);
        hosted__op_free(o);
        return;
    }
    if (strcmp(method, "DELETE") == 0) {
        upload_drop(h, u);
        conn_respond(o->c, 204, NULL, NULL, 0, 0);
        hosted__op_free(o);
        return;
    }
    o->up = u;
    if (strcmp(method, "PATCH") == 0) {
        unsigned long long first, last;
        if (req->content_range &&
            (sscanf(req->content_range, "%llu-%llu", &first, &last) != 2 || first != u->size)) {
            char headers[900];
            upload_headers(headers, sizeof(headers), u);
            o->up = NULL;
            conn_respond(o->c, 416, headers, NULL, 0, 0);
            hosted__op_free(o);
            return;
        }
        start_body(o);
        return;
    }
    if (strcmp(method, "PUT") == 0) {
        if (!query_digest(req->query, o->digest, sizeof(o->digest))) {
            o->up = NULL;
            respond_error(o->c, 0, 400, "DIGEST_INVALID", "PUT needs ?digest=sha256:...", NULL);
            hosted__op_free(o);
            return;
        }
        start_body(o);
        return;
    }
    o->up = NULL;
    respond_error(o->c, 0, 405, "UNSUPPORTED", "method not allowed on an upload", NULL);
    hosted__op_free(o);
}

void hosted__uploads_sweep(struct hosted *h)
{
    void **all;
    size_t n, expired = 0;
    uint64_t now = now_ms(), idle = h->cfg->hosted_upload_timeout_ms;
    if (map_values(h->uploads, &all, &n))
        return;
    for (size_t i = 0; i < n; i++) {
        struct upload *u = all[i];
        if (!u->busy && now - u->used_ms >= idle) {
            upload_drop(h, u);
            expired++;
        }
    }
    free(all);
    if (expired)
        log_info("hosted: %zu upload sessions idle for %llu ms expired, %zu left", expired,
                 (unsigned long long)idle, map_count(h->uploads));
}

static int free_upload(const char *k, void *v, void *ud)
{
    (void)k;
    (void)ud;
    struct upload *u = v;
    store_fill_free(u->sf);
    free(u);
    return 0;
}

void hosted__uploads_free(struct hosted *h)
{
    map_each(h->uploads, free_upload, NULL);
}
