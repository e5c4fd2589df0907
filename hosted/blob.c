/* SPDX-License-Identifier: Apache-2.0 */
/* Blob GET and HEAD of hosted repositories: straight from the store, for the blobs the
 * repository holds. A blob served lately is answered on the loop from its kept descriptor (the
 * cache's, see hosted_use_hot_files), as a proxied hit is; only the first hit opens the file on
 * the thread pool. The repository's hold is checked first either way: a descriptor is kept per
 * digest, not per repository. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hosted/impl.h"
#include "registry/respond.h"
#include "store/store.h"

static void work_open_blob(uv_work_t *w)
{
    struct op *o = w->data;
    o->rc = store_blob_open(o->h->store, o->digest, &o->fd, &o->size);
}

static void fd_source(void *ud, uint64_t first, uint64_t end, struct body_source *src)
{
    struct op *o = ud;
    src->fd = o->file->fd;
    src->offset = first;
    src->end = end;
    src->release = held_fd_release;
    src->ctx = o->file;
    o->file = NULL; /* the response lets go of it */
}

static void blob_opened(struct op *o)
{
    if (!conn_alive(o->c) || o->rc) {
        held_fd_drop(o->file);
        o->file = NULL;
        hosted__fail(o, 404, "BLOB_UNKNOWN", "blob unknown to this registry");
        return;
    }
    o->req->outcome = "hit";
    if (o->h->answered) {
        struct hosted_answer a = {o->c, o->req, o->rt.name, o->digest, o->digest,
                                  NULL,  NULL,   0,         o->file,   o->size};
        o->h->answered(o->h->answered_ud, &a);
    }
    respond_blob(o->c, o->req, o->digest, o->size, NULL, fd_source, o);
    held_fd_drop(o->file); /* no body was sent */
    o->file = NULL;
    hosted__op_free(o);
}

static void blob_opened_cold(struct op *o)
{
    if (!o->rc) {
        if (!(o->file = held_fd_new(o->fd))) {
            close(o->fd);
            o->rc = -ENOMEM;
        }
        o->fd = -1;
    }
    if (!o->rc && o->h->hot_put)
        o->h->hot_put(o->h->hot_ud, o->digest, o->file, o->size); /* for the next hits */
    blob_opened(o);
}

void hosted__get_blob(struct op *o)
{
    if (!ref_digest_is_sha256(o->rt.reference, strlen(o->rt.reference))) {
        hosted__fail(o, 404, "BLOB_UNKNOWN", "blob unknown to this registry");
        return;
    }
    if (!hosted__linked(o->h, o->rt.name, o->rt.reference)) {
        /* in the store maybe, but not pushed to, mounted into or used by this repository */
        hosted__fail(o, 404, "BLOB_UNKNOWN", "blob unknown to this repository");
        return;
    }
    snprintf(o->digest, sizeof(o->digest), "%s", o->rt.reference);
    struct hosted *h = o->h;
    if (h->hot_get && h->hot_get(h->hot_ud, o->digest, &o->size, o->head ? NULL : &o->file)) {
        blob_opened(o); /* o->rc is 0: served lately, its descriptor is at hand */
        return;
    }
    hosted__run(o, work_open_blob, blob_opened_cold);
}
