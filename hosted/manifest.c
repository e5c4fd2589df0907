/* SPDX-License-Identifier: Apache-2.0 */
/* Manifests of hosted repositories: GET and HEAD by tag or digest, PUT (the digest and every
 * referenced blob checked; a subject need not exist), DELETE of a tag or of a manifest. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/db.h"
#include "hosted/impl.h"
#include "hosted/kept.h"
#include "registry/respond.h"
#include "store/store.h"
#include "util/epoch.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"
#include "util/map.h"

#define DEFAULT_MANIFEST_TYPE "application/vnd.oci.image.manifest.v1+json"

/* ---- GET, HEAD ---- */

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
    if (o->rc) {
        hosted__fail(o, 404, "MANIFEST_UNKNOWN", "manifest unknown");
        return;
    }
    if (conn_alive(o->c)) {
        o->req->outcome = "hit";
        if (o->h->answered) {
            struct hosted_answer a = {o->c,         o->req,        o->rt.name,
                                      o->rt.reference, o->digest,  o->media_type,
                                      o->body.data, o->body.len,   NULL,
                                      o->body.len};
            o->h->answered(o->h->answered_ud, &a);
        }
        respond_manifest(o->c, o->head, o->media_type, o->digest, o->body.data, o->body.len, NULL);
    }
    hosted__op_free(o);
}

/* Read from the store: kept for the next hit, under the epoch the read started in. */
static void manifest_read_done(struct op *o)
{
    if (!o->rc)
        kept_put(o->h->kept, o->digest, o->epoch, o->body.data ? o->body.data : "",
                 o->body.len);
    manifest_read(o);
}

void hosted__get_manifest(struct op *o)
{
    struct hosted *h = o->h;
    char key[HOSTED_KEY_MAX];
    const char *media_type = NULL;
    hosted__key(key, sizeof(key), o->rt.name, o->rt.reference);
    if (o->rt.by_digest) {
        media_type = map_get(h->manifests, key);
        snprintf(o->digest, sizeof(o->digest), "%s", o->rt.reference);
    } else {
        struct htag *t = map_get(h->tags, key);
        if (t) {
            media_type = t->media_type;
            snprintf(o->digest, sizeof(o->digest), "%s", t->digest);
        }
    }
    if (!media_type) {
        hosted__fail(o, 404, "MANIFEST_UNKNOWN", "manifest unknown to this registry");
        return;
    }
    if (!hosted__manifest_type(media_type, strlen(media_type))) {
        /* pushed before pushes were checked: never served under a type a browser renders */
        hosted__fail(o, 404, "MANIFEST_UNKNOWN", "stored with a type that is not a manifest's");
        return;
    }
    snprintf(o->media_type, sizeof(o->media_type), "%s", media_type);
    size_t len;
    const char *bytes = kept_get(h->kept, o->digest, content_epoch(), &len);
    if (bytes && buf_append(&o->body, bytes, len) == 0) {
        manifest_read(o); /* read before, and nothing changed since */
        return;
    }
    o->epoch = content_epoch();
    hosted__run(o, work_read_small, manifest_read_done);
}

/* ---- PUT ---- */

static void work_check_and_store(uv_work_t *w)
{
    struct op *o = w->data;
    for (size_t i = 0; i < o->n_refs; i++) {
        /* the store keeps sha256 content only: anything else can never be there */
        if (!ref_digest_is_sha256(o->refs[i], strlen(o->refs[i]))) {
            o->missing++;
            continue;
        }
        if (!store_has(o->h->store, o->refs[i]))
            o->missing++;
    }
    if (o->missing)
        return;
    o->rc = store_put(o->h->store, o->digest, o->body.data ? o->body.data : "", o->body.len);
}

/* Lists the manifest in its subject's referrers (in memory and in the index). */
static void record_referrer(struct op *o)
{
    struct buf d;
    buf_init(&d, o->body.max + 1024);
    size_t alen = o->annotations ? strlen(o->annotations) : 0;
    if (hosted__descriptor(&d, o->media_type, o->digest, o->body.len, o->artifact_type,
                           o->annotations, alen) ||
        buf_terminate(&d) ||
        hosted__referrer_set(o->h, o->rt.name, o->digest, o->subject,
                             o->artifact_type ? o->artifact_type : "", d.data))
        log_warn("hosted: %s@%s: cannot list it as a referrer of %s (out of memory)", o->rt.name,
                 o->digest, o->subject);
    else
        db_hosted_referrer(o->h->db, o->rt.name, o->digest, o->subject,
                           o->artifact_type ? o->artifact_type : "", d.data);
    buf_free(&d);
}

static void manifest_stored(struct op *o)
{
    struct hosted *h = o->h;
    if (o->missing) {
        hosted__fail(o, 400, "MANIFEST_BLOB_UNKNOWN",
                     "the manifest references blobs this registry does not have");
        return;
    }
    if (o->rc) {
        hosted__fail(o, 500, "UNKNOWN", "cannot store the manifest");
        return;
    }
    char key[HOSTED_KEY_MAX];
    hosted__key(key, sizeof(key), o->rt.name, o->digest);
    char *mt = strdup(o->media_type);
    if (mt)
        free(map_put(h->manifests, key, mt));
    db_put_blob(h->db, o->digest, o->body.len, o->media_type, clock_wall_ms());
    db_hosted_blob(h->db, o->rt.name, o->digest, o->media_type, 1);
    hosted__link(h, o->rt.name, o->digest);
    hosted__count(h, o->digest, o->body.len);
    hosted__stored(h, o->digest);
    for (size_t i = 0; i < o->n_refs; i++) {
        db_hosted_blob(h->db, o->rt.name, o->refs[i], NULL, 1);
        db_hosted_ref(h->db, o->digest, o->refs[i]);
    }
    if (o->subject[0])
        record_referrer(o);
    if (!o->rt.by_digest &&
        hosted__tag_set(h, o->rt.name, o->rt.reference, o->digest, o->media_type) == 0)
        db_hosted_tag(h->db, o->rt.name, o->rt.reference, o->digest, o->media_type);
    log_info("hosted: %s:%s = %s", o->rt.name, o->rt.reference, o->digest);
    if (conn_alive(o->c)) {
        char headers[HOSTED_KEY_MAX + 3 * REF_DIGEST_MAX + 120];
        snprintf(headers, sizeof(headers),
                 "Location: /v2/%s/manifests/%s\r\nDocker-Content-Digest: %s\r\n%s%s%s", o->rt.name,
                 o->digest, o->digest, o->subject[0] ? "OCI-Subject: " : "", o->subject,
                 o->subject[0] ? "\r\n" : "");
        conn_respond(o->c, 201, headers, NULL, 0, 0);
    }
    hosted__op_free(o);
}

static int manifest_body(void *ud, const char *data, size_t len)
{
    struct op *o = ud;
    if (buf_append(&o->body, data, len))
        o->rc = -EFBIG;
    return 0;
}

/* Takes what the checks and the referrers index need from the parsed manifest. */
static int take_info(struct op *o, struct hosted_manifest_info *info)
{
    o->refs = info->refs;
    o->n_refs = info->n_refs;
    info->refs = NULL;
    info->n_refs = 0;
    snprintf(o->subject, sizeof(o->subject), "%s", info->subject);
    if (info->artifact_type[0] && !(o->artifact_type = strdup(info->artifact_type)))
        return -ENOMEM;
    if (info->annotations_len &&
        !(o->annotations = strndup(info->annotations, info->annotations_len)))
        return -ENOMEM;
    return 0;
}

/* The media type a pushed manifest is stored and served with: its Content-Type, else its
 * mediaType member, else an OCI image manifest. Only manifest types are taken (a text/html
 * "manifest" served back would be a stored XSS), and the two must agree when both are given.
 * Returns NULL with o->media_type set, or why the push is refused. */
static const char *pick_media_type(struct op *o, const char *body, size_t len)
{
    const char *ct = o->req->content_type, *type = NULL, *inner = NULL;
    char member[HOSTED_MEDIA_TYPE_MAX];
    int n = json_get_string(body, len, "mediaType", member, sizeof(member));
    if (n >= 0 && !(inner = hosted__manifest_type(member, (size_t)n)))
        return "the manifest's mediaType is not a manifest media type";
    if (n < 0 && n != -ENOENT)
        return "the manifest's mediaType is not a manifest media type";
    if (ct && *ct && !(type = hosted__manifest_type(ct, strlen(ct))))
        return "the Content-Type is not a manifest media type";
    if (type && inner && type != inner)
        return "the manifest's mediaType differs from its Content-Type";
    snprintf(o->media_type, sizeof(o->media_type), "%s",
             type ? type : inner ? inner : DEFAULT_MANIFEST_TYPE);
    return NULL;
}

static void manifest_body_end(void *ud, int status)
{
    struct op *o = ud;
    if (status) {
        hosted__op_free(o);
        return;
    }
    if (o->rc) {
        hosted__fail(o, 413, "MANIFEST_INVALID", "manifest too large");
        return;
    }
    const char *body = o->body.data ? o->body.data : "";
    store_digest_of(body, o->body.len, o->digest);
    if (o->rt.by_digest && strcmp(o->digest, o->rt.reference) != 0) {
        hosted__fail(o, 400, "DIGEST_INVALID", "the manifest does not match its digest");
        return;
    }
    struct hosted_manifest_info info;
    int r = hosted__manifest_parse(body, o->body.len, &info);
    if (r == -EINVAL || r == -EBADMSG) {
        hosted__fail(o, 400, "MANIFEST_INVALID",
                     r == -EINVAL ? "the manifest is not a JSON object"
                                  : "a descriptor of the manifest has no valid digest");
        return;
    }
    if (r || take_info(o, &info)) {
        hosted__manifest_info_free(&info);
        hosted__fail(o, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    const char *why = pick_media_type(o, body, o->body.len);
    if (why) {
        hosted__fail(o, 400, "MANIFEST_INVALID", why);
        return;
    }
    /* what it is made of must be this repository's (pushed or mounted into it): a manifest
     * naming another repository's digest would otherwise hand out that repository's blobs */
    o->missing = 0;
    for (size_t i = 0; i < o->n_refs; i++)
        o->missing += !hosted__linked(o->h, o->rt.name, o->refs[i]);
    int room = hosted__room(o->h, o->body.len);
    if (room) {
        hosted__fail_room(o, room);
        return;
    }
    hosted__run(o, work_check_and_store, manifest_stored);
}

void hosted__put_manifest(struct op *o)
{
    conn_read_body(o->c, manifest_body, manifest_body_end, o);
}

/* ---- DELETE ---- */

void hosted__delete_manifest(struct op *o)
{
    struct hosted *h = o->h;
    char key[HOSTED_KEY_MAX];
    hosted__key(key, sizeof(key), o->rt.name, o->rt.reference);
    if (!o->rt.by_digest) {
        struct htag *t = map_del(h->tags, key);
        content_epoch_bump();
        if (!t) {
            hosted__fail(o, 404, "MANIFEST_UNKNOWN", "tag unknown");
            return;
        }
        free(t);
        db_hosted_tag(h->db, o->rt.name, o->rt.reference, NULL, NULL);
        conn_respond(o->c, 202, NULL, NULL, 0, 0);
        hosted__op_free(o);
        return;
    }
    char *mt = map_del(h->manifests, key);
    content_epoch_bump();
    if (!mt) {
        hosted__fail(o, 404, "MANIFEST_UNKNOWN", "manifest unknown");
        return;
    }
    free(mt);
    /* still held, as plain content nothing refers to: `regcache gc --hosted` collects it */
    db_hosted_blob(h->db, o->rt.name, o->rt.reference, NULL, DB_HOSTED_PLAIN);
    hosted__referrer_drop(h, o->rt.name, o->rt.reference);
    hosted__untag_digest(h, o->rt.name, o->rt.reference);
    conn_respond(o->c, 202, NULL, NULL, 0, 0);
    hosted__op_free(o);
}
