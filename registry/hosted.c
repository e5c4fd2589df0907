#include "registry/hosted.h"

#include <errno.h>
#include <fnmatch.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "db/db.h"
#include "registry/errors.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"
#include "util/map.h"
#include "util/range.h"

#define UPLOAD_FLUSH (256u << 10) /* write a push to disk in pieces of this size */
#define UPLOAD_BUFFER_MAX (1u << 20)
#define MAX_UPLOADS 1024
#define SEP "\x1f"

struct htag {
    char digest[80];
    char media_type[256];
};

struct upload {
    char uuid[33];
    char repo[REF_NAME_MAX + 1];
    struct store_fill *sf;
    uint64_t size; /* bytes on disk */
    int busy;      /* a request is writing to it */
};

struct hosted {
    uv_loop_t *loop;
    const struct config *cfg;
    struct store *store;
    struct db *db;
    struct map *tags;      /* repo SEP tag -> struct htag */
    struct map *manifests; /* repo SEP digest -> strdup'ed media type */
    struct map *uploads;   /* uuid -> struct upload */
};

/* One request in progress. */
struct op {
    struct hosted *h;
    struct conn *c;
    struct http_request *req;
    struct route rt;
    int head;
    struct upload *up;   /* uploads */
    struct buf body;     /* manifest PUT: the body; uploads: bytes waiting for the disk */
    struct buf writing;  /* uploads: bytes being written */
    int write_busy, body_ended, body_status, paused;
    int rc;
    char digest[80];     /* upload PUT: the digest claimed */
    char media_type[256];
    /* blob GET */
    int fd;
    uint64_t size;
    char **refs;
    size_t n_refs, missing;
    uv_work_t work;
    void (*then)(struct op *o);
};

static void key2(char *out, size_t len, const char *a, const char *b)
{
    snprintf(out, len, "%s" SEP "%s", a, b);
}

static void respond_error(struct conn *c, int head, int status, const char *code, const char *msg)
{
    struct buf b;
    buf_init(&b, 4096);
    registry_error_body(&b, code, msg);
    conn_respond(c, status, "Content-Type: application/json\r\n", b.data, b.len, head);
    buf_free(&b);
}

/* 201 Created for content now at /v2/<repo>/<kind>/<digest>. */
static void respond_created(struct op *o, const char *kind)
{
    char headers[900];
    snprintf(headers, sizeof(headers), "Location: /v2/%s/%s/%s\r\nDocker-Content-Digest: %s\r\n",
             o->rt.name, kind, o->digest, o->digest);
    conn_respond(o->c, 201, headers, NULL, 0, 0);
}

static struct op *op_new(struct hosted *h, struct conn *c, struct http_request *req,
                         const struct route *rt)
{
    struct op *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->h = h;
    o->c = c;
    o->req = req;
    o->rt = *rt;
    o->head = req->method == HTTP_METHOD_HEAD;
    o->fd = -1;
    buf_init(&o->body, h->cfg->max_manifest_bytes);
    buf_init(&o->writing, UPLOAD_BUFFER_MAX + (64u << 10));
    conn_ref(c);
    return o;
}

static void op_free(struct op *o)
{
    if (o->up)
        o->up->busy = 0;
    for (size_t i = 0; i < o->n_refs; i++)
        free(o->refs[i]);
    free(o->refs);
    buf_free(&o->body);
    buf_free(&o->writing);
    conn_unref(o->c);
    free(o);
}

static void after_work(uv_work_t *w, int status)
{
    struct op *o = w->data;
    if (status)
        o->rc = -ECANCELED;
    o->then(o);
}

static void run(struct op *o, void (*work)(uv_work_t *), void (*then)(struct op *o))
{
    o->then = then;
    o->work.data = o;
    if (uv_queue_work(o->h->loop, &o->work, work, after_work)) {
        o->rc = -EIO;
        then(o);
    }
}

/* ---- set-up ---- */

static void load_tag(void *ud, const char *repo, const char *tag, const char *digest,
                     const char *media_type)
{
    struct hosted *h = ud;
    char key[600];
    struct htag *t = calloc(1, sizeof(*t));
    if (!t)
        return;
    snprintf(t->digest, sizeof(t->digest), "%s", digest);
    snprintf(t->media_type, sizeof(t->media_type), "%s", media_type);
    key2(key, sizeof(key), repo, tag);
    free(map_put(h->tags, key, t));
}

static void load_blob(void *ud, const char *repo, const char *digest, const char *media_type)
{
    struct hosted *h = ud;
    char key[600];
    if (!media_type)
        return; /* plain blobs need no index: the store has them */
    key2(key, sizeof(key), repo, digest);
    free(map_put(h->manifests, key, strdup(media_type)));
}

int hosted_new(uv_loop_t *loop, const struct config *cfg, struct store *store, struct db *db,
               struct hosted **out)
{
    *out = NULL;
    if (!cfg->n_hosted)
        return 0;
    struct hosted *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->loop = loop;
    h->cfg = cfg;
    h->store = store;
    h->db = db;
    h->tags = map_new();
    h->manifests = map_new();
    h->uploads = map_new();
    if (!h->tags || !h->manifests || !h->uploads ||
        db_load_hosted(db, load_tag, load_blob, h)) {
        hosted_free(h);
        return -ENOMEM;
    }
    log_info("hosted: %zu patterns, %zu tags", cfg->n_hosted, map_count(h->tags));
    *out = h;
    return 0;
}

static int free_value(const char *k, void *v, void *ud)
{
    (void)k;
    (void)ud;
    free(v);
    return 0;
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

void hosted_free(struct hosted *h)
{
    if (!h)
        return;
    if (h->tags)
        map_each(h->tags, free_value, NULL);
    if (h->manifests)
        map_each(h->manifests, free_value, NULL);
    if (h->uploads)
        map_each(h->uploads, free_upload, NULL);
    map_free(h->tags);
    map_free(h->manifests);
    map_free(h->uploads);
    free(h);
}

int hosted_match(const struct hosted *h, const char *name)
{
    if (!h)
        return 0;
    for (size_t i = 0; i < h->cfg->n_hosted; i++)
        if (fnmatch(h->cfg->hosted[i], name, 0) == 0)
            return 1;
    return 0;
}

/* ---- reading manifests and blobs ---- */

static void work_read_small(uv_work_t *w)
{
    struct op *o = w->data;
    int fd;
    uint64_t size;
    o->rc = store_blob_open(o->h->store, o->digest, &fd, &size);
    if (o->rc)
        return;
    if (size > o->body.max) {
        o->rc = -EFBIG;
    } else if (buf_append(&o->body, "", 0) == 0) {
        char tmp[65536];
        uint64_t got = 0;
        while (got < size) {
            ssize_t n = pread(fd, tmp, sizeof(tmp), (off_t)got);
            if (n <= 0 || buf_append(&o->body, tmp, (size_t)n)) {
                o->rc = -EIO;
                break;
            }
            got += (uint64_t)n;
        }
    }
    close(fd);
}

static void manifest_read(struct op *o)
{
    if (conn_alive(o->c)) {
        if (o->rc) {
            respond_error(o->c, o->head, 404, "MANIFEST_UNKNOWN", "manifest unknown");
        } else {
            char headers[700];
            snprintf(headers, sizeof(headers),
                     "Content-Type: %s\r\nDocker-Content-Digest: %s\r\nETag: \"%s\"\r\n",
                     o->media_type, o->digest, o->digest);
            o->req->outcome = "hit";
            conn_respond(o->c, 200, headers, o->body.data, o->body.len, o->head);
        }
    }
    op_free(o);
}

static void get_manifest(struct hosted *h, struct op *o)
{
    char key[600];
    const char *media_type = NULL;
    if (o->rt.by_digest) {
        key2(key, sizeof(key), o->rt.name, o->rt.reference);
        media_type = map_get(h->manifests, key);
        snprintf(o->digest, sizeof(o->digest), "%s", o->rt.reference);
    } else {
        key2(key, sizeof(key), o->rt.name, o->rt.reference);
        struct htag *t = map_get(h->tags, key);
        if (t) {
            media_type = t->media_type;
            snprintf(o->digest, sizeof(o->digest), "%s", t->digest);
        }
    }
    if (!media_type) {
        respond_error(o->c, o->head, 404, "MANIFEST_UNKNOWN", "manifest unknown to this registry");
        op_free(o);
        return;
    }
    snprintf(o->media_type, sizeof(o->media_type), "%s", media_type);
    run(o, work_read_small, manifest_read);
}

static void work_open_blob(uv_work_t *w)
{
    struct op *o = w->data;
    o->rc = store_blob_open(o->h->store, o->digest, &o->fd, &o->size);
}

static void blob_opened(struct op *o)
{
    struct conn *c = o->c;
    if (!conn_alive(c) || o->rc) {
        if (o->fd >= 0)
            close(o->fd);
        if (conn_alive(c))
            respond_error(c, o->head, 404, "BLOB_UNKNOWN", "blob unknown to this registry");
        op_free(o);
        return;
    }
    char headers[700];
    int n = snprintf(headers, sizeof(headers),
                     "Content-Type: application/octet-stream\r\nDocker-Content-Digest: %s\r\n"
                     "ETag: \"%s\"\r\nAccept-Ranges: bytes\r\n",
                     o->digest, o->digest);
    o->req->outcome = "hit";
    if (o->head) {
        close(o->fd);
        conn_respond(c, 200, headers, NULL, o->size, 1);
        op_free(o);
        return;
    }
    uint64_t first = 0, last = o->size ? o->size - 1 : 0;
    enum range_result rr = range_parse(o->req->range, o->size, &first, &last);
    if (rr == RANGE_UNSATISFIABLE) {
        close(o->fd);
        respond_error(c, 0, 416, "BLOB_UNKNOWN", "requested range not satisfiable");
        op_free(o);
        return;
    }
    int status = 200;
    if (rr == RANGE_PARTIAL) {
        status = 206;
        snprintf(headers + n, sizeof(headers) - (size_t)n,
                 "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)first,
                 (unsigned long long)last, (unsigned long long)o->size);
    } else {
        first = 0;
        last = o->size ? o->size - 1 : 0;
    }
    struct body_source src = {0};
    src.fd = o->fd;
    src.offset = first;
    src.end = o->size ? last + 1 : 0;
    conn_respond_stream(c, status, headers, &src);
    op_free(o);
}

/* ---- manifest PUT ---- */

static int collect_ref(void *ud, const char *value)
{
    struct op *o = ud;
    if (!ref_digest_is_sha256(value, strlen(value)))
        return 0;
    char **refs = realloc(o->refs, (o->n_refs + 1) * sizeof(*refs));
    if (!refs)
        return -ENOMEM;
    o->refs = refs;
    if (!(o->refs[o->n_refs] = strdup(value)))
        return -ENOMEM;
    o->n_refs++;
    return 0;
}

static void work_check_and_store(uv_work_t *w)
{
    struct op *o = w->data;
    char path[STORE_PATH_MAX];
    o->missing = 0;
    for (size_t i = 0; i < o->n_refs; i++) {
        store_blob_path(o->h->store, o->refs[i], path, sizeof(path));
        if (access(path, F_OK))
            o->missing++;
    }
    if (o->missing)
        return;
    o->rc = store_put(o->h->store, o->digest, o->body.data ? o->body.data : "", o->body.len);
}

static void manifest_stored(struct op *o)
{
    struct hosted *h = o->h;
    if (o->missing) {
        if (conn_alive(o->c))
            respond_error(o->c, 0, 400, "MANIFEST_BLOB_UNKNOWN",
                          "the manifest references blobs this registry does not have");
        op_free(o);
        return;
    }
    if (o->rc) {
        if (conn_alive(o->c))
            respond_error(o->c, 0, 500, "UNKNOWN", "cannot store the manifest");
        op_free(o);
        return;
    }
    char key[600];
    key2(key, sizeof(key), o->rt.name, o->digest);
    free(map_put(h->manifests, key, strdup(o->media_type)));
    db_put_blob(h->db, o->digest, o->body.len, o->media_type, clock_wall_ms());
    db_hosted_blob(h->db, o->rt.name, o->digest, o->media_type, 1);
    for (size_t i = 0; i < o->n_refs; i++) {
        db_hosted_blob(h->db, o->rt.name, o->refs[i], NULL, 1);
        db_hosted_ref(h->db, o->digest, o->refs[i]);
    }
    if (!o->rt.by_digest) {
        struct htag *t = calloc(1, sizeof(*t));
        if (t) {
            snprintf(t->digest, sizeof(t->digest), "%s", o->digest);
            snprintf(t->media_type, sizeof(t->media_type), "%s", o->media_type);
            key2(key, sizeof(key), o->rt.name, o->rt.reference);
            free(map_put(h->tags, key, t));
            db_hosted_tag(h->db, o->rt.name, o->rt.reference, o->digest, o->media_type);
        }
    }
    log_info("hosted: %s:%s = %s", o->rt.name, o->rt.reference, o->digest);
    if (conn_alive(o->c))
        respond_created(o, "manifests");
    op_free(o);
}

static int manifest_body(void *ud, const char *data, size_t len)
{
    struct op *o = ud;
    if (buf_append(&o->body, data, len))
        o->rc = -EFBIG;
    return 0;
}

static void manifest_body_end(void *ud, int status)
{
    struct op *o = ud;
    if (status) {
        op_free(o);
        return;
    }
    if (o->rc) {
        respond_error(o->c, 0, 413, "MANIFEST_INVALID", "manifest too large");
        op_free(o);
        return;
    }
    const char *body = o->body.data ? o->body.data : "";
    store_digest_of(body, o->body.len, o->digest);
    if (o->rt.by_digest && strcmp(o->digest, o->rt.reference) != 0) {
        respond_error(o->c, 0, 400, "DIGEST_INVALID", "the manifest does not match its digest");
        op_free(o);
        return;
    }
    if (json_each_string(body, o->body.len, "digest", collect_ref, o)) {
        respond_error(o->c, 0, 400, "MANIFEST_INVALID", "the manifest is not valid JSON");
        op_free(o);
        return;
    }
    const char *ct = o->req->content_type;
    if (ct && *ct)
        snprintf(o->media_type, sizeof(o->media_type), "%.*s", (int)strcspn(ct, ";"), ct);
    else if (json_get_string(body, o->body.len, "mediaType", o->media_type,
                             sizeof(o->media_type)) <= 0)
        snprintf(o->media_type, sizeof(o->media_type), "application/vnd.oci.image.manifest.v1+json");
    run(o, work_check_and_store, manifest_stored);
}

/* ---- uploads ---- */

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
    if (o->body_ended || o->body.len >= UPLOAD_FLUSH)
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
    run(o, work_upload_write, upload_written);
}

static int upload_body(void *ud, const char *data, size_t len)
{
    struct op *o = ud;
    if (buf_append(&o->body, data, len)) {
        o->rc = -ENOBUFS;
        return 1;
    }
    if (o->body.len >= UPLOAD_FLUSH)
        upload_flush(o);
    if (o->body.len >= UPLOAD_BUFFER_MAX) {
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
        op_free(o);
        return;
    }
    if (o->rc == -EBADMSG) {
        respond_error(o->c, 0, 400, "DIGEST_INVALID", "the uploaded bytes do not match the digest");
    } else if (o->rc) {
        respond_error(o->c, 0, 500, "UNKNOWN", "cannot store the blob");
    } else {
        db_put_blob(h->db, o->digest, size, NULL, clock_wall_ms());
        db_hosted_blob(h->db, o->rt.name, o->digest, NULL, 1);
        respond_created(o, "blobs");
    }
    op_free(o);
}

/* The body is all on disk (or failed): answer the PATCH, or commit for a PUT / monolithic POST. */
static void upload_finish(struct op *o)
{
    if (o->body_status || !conn_alive(o->c)) {
        op_free(o);
        return;
    }
    if (o->rc) {
        respond_error(o->c, 0, 500, "BLOB_UPLOAD_INVALID", "cannot write the upload");
        op_free(o);
        return;
    }
    if (o->digest[0]) {
        run(o, work_commit, upload_committed);
        return;
    }
    char headers[900];
    upload_headers(headers, sizeof(headers), o->up);
    conn_respond(o->c, 202, headers, NULL, 0, 0);
    op_free(o);
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
            respond_error(o->c, 0, 500, "UNKNOWN", "cannot start an upload");
        op_free(o);
        return;
    }
    map_put(h->uploads, o->up->uuid, o->up);
    if (!conn_alive(o->c)) {
        op_free(o);
        return;
    }
    if (o->digest[0]) { /* monolithic: POST ?digest= with the whole blob */
        start_body(o);
        return;
    }
    char headers[900];
    upload_headers(headers, sizeof(headers), o->up);
    conn_respond(o->c, 202, headers, NULL, 0, 0);
    op_free(o);
}

static void work_mount(uv_work_t *w)
{
    struct op *o = w->data;
    char path[STORE_PATH_MAX];
    store_blob_path(o->h->store, o->digest, path, sizeof(path));
    o->rc = access(path, F_OK) ? -ENOENT : 0;
}

static void new_upload(struct op *o);

static void mounted(struct op *o)
{
    if (o->rc == 0 && conn_alive(o->c)) {
        db_hosted_blob(o->h->db, o->rt.name, o->digest, NULL, 1);
        respond_created(o, "blobs");
        op_free(o);
        return;
    }
    o->rc = 0;
    o->digest[0] = '\0';
    new_upload(o); /* not here: an ordinary upload session, per the spec */
}

static void new_upload(struct op *o)
{
    if (map_count(o->h->uploads) >= MAX_UPLOADS) {
        respond_error(o->c, 0, 429, "TOOMANYREQUESTS", "too many uploads in progress");
        op_free(o);
        return;
    }
    struct upload *u = calloc(1, sizeof(*u));
    unsigned char rnd[16];
    if (!u || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        free(u);
        respond_error(o->c, 0, 503, "UNAVAILABLE", "cannot start an upload");
        op_free(o);
        return;
    }
    for (int i = 0; i < 16; i++)
        sprintf(u->uuid + 2 * i, "%02x", rnd[i]);
    snprintf(u->repo, sizeof(u->repo), "%s", o->rt.name);
    o->up = u;
    run(o, work_new_upload, upload_created);
}

static int query_digest(const char *query, char *out, size_t len)
{
    return route_query_param(query, "digest", out, len) > 0 && ref_digest_is_sha256(out, strlen(out));
}

static void handle_upload(struct hosted *h, struct op *o)
{
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
            run(o, work_mount, mounted);
            return;
        }
        if (route_query_param(req->query, "digest", o->digest, sizeof(o->digest)) > 0 &&
            !ref_digest_is_sha256(o->digest, strlen(o->digest))) {
            respond_error(o->c, 0, 400, "DIGEST_INVALID", "invalid digest");
            op_free(o);
            return;
        }
        new_upload(o);
        return;
    }
    struct upload *u = upload_find(h, req->path, o->rt.name, &uuid);
    if (!u) {
        respond_error(o->c, o->head, 404, "BLOB_UPLOAD_UNKNOWN", "upload unknown");
        op_free(o);
        return;
    }
    if (u->busy) {
        respond_error(o->c, 0, 409, "BLOB_UPLOAD_INVALID", "another request is writing this upload");
        op_free(o);
        return;
    }
    if (req->method == HTTP_METHOD_GET) {
        char headers[900];
        upload_headers(headers, sizeof(headers), u);
        conn_respond(o->c, 204, headers, NULL, 0, 0);
        op_free(o);
        return;
    }
    if (strcmp(method, "DELETE") == 0) {
        upload_drop(h, u);
        conn_respond(o->c, 204, NULL, NULL, 0, 0);
        op_free(o);
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
            op_free(o);
            return;
        }
        start_body(o);
        return;
    }
    if (strcmp(method, "PUT") == 0) {
        if (!query_digest(req->query, o->digest, sizeof(o->digest))) {
            o->up = NULL;
            respond_error(o->c, 0, 400, "DIGEST_INVALID", "PUT needs ?digest=sha256:...");
            op_free(o);
            return;
        }
        start_body(o);
        return;
    }
    o->up = NULL;
    respond_error(o->c, 0, 405, "UNSUPPORTED", "method not allowed on an upload");
    op_free(o);
}

/* ---- tags and deletes ---- */

struct tag_list {
    const char *prefix;
    size_t plen;
    char **tags;
    size_t n, cap;
};

static int collect_tag(const char *key, void *value, void *ud)
{
    (void)value;
    struct tag_list *l = ud;
    if (strncmp(key, l->prefix, l->plen) != 0)
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        char **t = realloc(l->tags, cap * sizeof(*t));
        if (!t)
            return -ENOMEM;
        l->tags = t;
        l->cap = cap;
    }
    l->tags[l->n++] = (char *)key + l->plen;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_tags(struct hosted *h, struct op *o)
{
    char prefix[300], n_s[32], last[REF_TAG_MAX + 1];
    snprintf(prefix, sizeof(prefix), "%s" SEP, o->rt.name);
    struct tag_list l = {prefix, strlen(prefix), NULL, 0, 0};
    map_each(h->tags, collect_tag, &l);
    if (!l.n) {
        free(l.tags);
        respond_error(o->c, o->head, 404, "NAME_UNKNOWN", "repository has no tags");
        op_free(o);
        return;
    }
    qsort(l.tags, l.n, sizeof(*l.tags), cmp_str);
    size_t limit = route_query_param(o->req->query, "n", n_s, sizeof(n_s)) > 0
                       ? strtoul(n_s, NULL, 10)
                       : 0;
    int has_last = route_query_param(o->req->query, "last", last, sizeof(last)) > 0;
    struct buf out;
    buf_init(&out, 8u << 20);
    buf_append(&out, "{\"name\":", 8);
    json_put_string(&out, o->rt.name);
    buf_append(&out, ",\"tags\":[", 9);
    size_t written = 0;
    const char *more = NULL;
    for (size_t i = 0; i < l.n; i++) {
        if (has_last && strcmp(l.tags[i], last) <= 0)
            continue;
        if (limit && written == limit) {
            more = l.tags[i - 1];
            break;
        }
        if (written++)
            buf_append(&out, ",", 1);
        json_put_string(&out, l.tags[i]);
    }
    buf_append(&out, "]}\n", 3);
    char headers[700] = "Content-Type: application/json\r\n";
    if (more)
        snprintf(headers + strlen(headers), sizeof(headers) - strlen(headers),
                 "Link: </v2/%s/tags/list?n=%zu&last=%s>; rel=\"next\"\r\n", o->rt.name, limit,
                 more);
    conn_respond(o->c, 200, headers, out.data, out.len, o->head);
    buf_free(&out);
    free(l.tags);
    op_free(o);
}

struct untag {
    const char *prefix, *digest;
    size_t plen;
    char **keys;
    size_t n;
};

static int find_tags_of(const char *key, void *value, void *ud)
{
    struct untag *u = ud;
    struct htag *t = value;
    if (strncmp(key, u->prefix, u->plen) == 0 && strcmp(t->digest, u->digest) == 0) {
        char **k = realloc(u->keys, (u->n + 1) * sizeof(*k));
        if (!k)
            return -ENOMEM;
        u->keys = k;
        u->keys[u->n++] = strdup(key);
    }
    return 0;
}

static void delete_manifest(struct hosted *h, struct op *o)
{
    char key[600];
    key2(key, sizeof(key), o->rt.name, o->rt.reference);
    if (!o->rt.by_digest) {
        struct htag *t = map_del(h->tags, key);
        if (!t) {
            respond_error(o->c, 0, 404, "MANIFEST_UNKNOWN", "tag unknown");
        } else {
            free(t);
            db_hosted_tag(h->db, o->rt.name, o->rt.reference, NULL, NULL);
            conn_respond(o->c, 202, NULL, NULL, 0, 0);
        }
        op_free(o);
        return;
    }
    char *mt = map_del(h->manifests, key);
    if (!mt) {
        respond_error(o->c, 0, 404, "MANIFEST_UNKNOWN", "manifest unknown");
        op_free(o);
        return;
    }
    free(mt);
    /* still held, as plain content nothing refers to: `regcache gc --hosted` collects it */
    db_hosted_blob(h->db, o->rt.name, o->rt.reference, NULL, 1);
    char prefix[300];
    snprintf(prefix, sizeof(prefix), "%s" SEP, o->rt.name);
    struct untag u = {prefix, o->rt.reference, strlen(prefix), NULL, 0};
    map_each(h->tags, find_tags_of, &u);
    for (size_t i = 0; i < u.n; i++) {
        if (!u.keys[i])
            continue;
        free(map_del(h->tags, u.keys[i]));
        db_hosted_tag(h->db, o->rt.name, u.keys[i] + u.plen, NULL, NULL);
        free(u.keys[i]);
    }
    free(u.keys);
    conn_respond(o->c, 202, NULL, NULL, 0, 0);
    op_free(o);
}

/* ---- dispatch ---- */

void hosted_handle(struct hosted *h, struct conn *c, struct http_request *req,
                   const struct route *rt)
{
    struct op *o = op_new(h, c, req, rt);
    if (!o) {
        respond_error(c, 0, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    const char *m = req->method_name;
    int read = req->method == HTTP_METHOD_GET || req->method == HTTP_METHOD_HEAD;
    switch (rt->kind) {
    case ROUTE_UPLOAD:
        handle_upload(h, o);
        return;
    case ROUTE_MANIFEST:
        if (read)
            get_manifest(h, o);
        else if (strcmp(m, "PUT") == 0)
            conn_read_body(c, manifest_body, manifest_body_end, o);
        else if (strcmp(m, "DELETE") == 0)
            delete_manifest(h, o);
        else
            break;
        return;
    case ROUTE_BLOB:
        if (!read)
            break;
        snprintf(o->digest, sizeof(o->digest), "%s", rt->reference);
        run(o, work_open_blob, blob_opened);
        return;
    case ROUTE_TAGS:
        if (!read)
            break;
        list_tags(h, o);
        return;
    default:
        break;
    }
    respond_error(c, o->head, 405, "UNSUPPORTED", "method not supported here");
    op_free(o);
}
