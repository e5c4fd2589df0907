/* Blob uploads into hosted repositories (OCI distribution spec): POST starts a session (or
 * mounts a blob the registry has, or takes a whole blob with ?digest=), PATCH appends a chunk
 * (Content-Range must continue where the upload is), GET tells how far it is, PUT ?digest=
 * commits it after the bytes hashed to the digest, DELETE cancels it. The bytes go to a
 * temporary file in the store in pieces of HOSTED_UPLOAD_FLUSH, written on the thread pool;
 * a request body is paused while HOSTED_UPLOAD_BUFFER_MAX bytes wait for the disk. */
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

static void upload_drop(struct hosted *h, struct upload *u)
{
    map_del(h->uploads, u->uuid);
    store_fill_free(u->sf);
    free(u);
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
    if (o->rc == 0)
        o->up->size += o->writing.len;
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
    struct buf tmp = o->writing;
    o->writing = o->body;
    o->body = tmp;
    o->write_busy = 1;
    hosted__run(o, work_upload_write, upload_written);
}

static int upload_body(void *ud, const char *data, size_t len)
{
    struct op *o = ud;
    if (buf_append(&o->body, data, len)) {
        o->rc = -ENOBUFS;
        return 1;
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
    if (!conn_alive(o->c)) {
        hosted__op_free(o);
        return;
    }
    if (o->rc == -EBADMSG) {
        respond_error(o->c, 0, 400, "DIGEST_INVALID", "the uploaded bytes do not match the digest",
                      NULL);
    } else if (o->rc) {
        respond_error(o->c, 0, 500, "UNKNOWN", "cannot store the blob", NULL);
    } else {
        db_put_blob(h->db, o->digest, size, NULL, clock_wall_ms());
        db_hosted_blob(h->db, o->rt.name, o->digest, NULL, 1);
        respond_created(o);
    }
    hosted__op_free(o);
}

/* The body is all on disk (or failed): answer the PATCH, or commit for a PUT / monolithic POST. */
static void upload_finish(struct op *o)
{
    if (o->body_status || !conn_alive(o->c)) {
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
    /* an upload's body goes to disk in pieces: its buffers are bounded by the piece size, not
     * by limits.max_manifest_size (which bounds manifests held whole) */
    o->body.max = o->writing.max;
    conn_read_body(o->c, upload_body, upload_body_end, o);
}

static void work_new_upload(uv_work_t *w)
{
    struct op *o = w->data;
    o->rc = store_fill_begin(o->h->store, "", &o->up->sf);
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
    map_put(h->uploads, o->up->uuid, o->up);
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

static void mounted(struct op *o)
{
    if (o->rc == 0 && conn_alive(o->c)) {
        db_hosted_blob(o->h->db, o->rt.name, o->digest, NULL, 1);
        respond_created(o);
        hosted__op_free(o);
        return;
    }
    o->rc = 0;
    o->digest[0] = '\0';
    new_upload(o); /* not here: an ordinary upload session, per the spec */
}

static void new_upload(struct op *o)
{
    if (map_count(o->h->uploads) >= HOSTED_UPLOADS_MAX) {
        respond_error(o->c, 0, 429, "TOOMANYREQUESTS", "too many uploads in progress", NULL);
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
            hosted__run(o, work_mount, mounted);
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
