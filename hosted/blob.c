/* SPDX-License-Identifier: Apache-2.0 */
/* Blob GET and HEAD of hosted repositories: straight from the store, for the blobs the
 * repository holds. */
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
    src->fd = o->fd;
    src->offset = first;
    src->end = end;
    o->fd = -1; /* the response closes it */
}

static void blob_opened(struct op *o)
{
    if (!conn_alive(o->c) || o->rc) {
        if (o->fd >= 0)
            close(o->fd);
        hosted__fail(o, 404, "BLOB_UNKNOWN", "blob unknown to this registry");
        return;
    }
    o->req->outcome = "hit";
    respond_blob(o->c, o->req, o->digest, o->size, NULL, fd_source, o);
    if (o->fd >= 0) /* no body was sent */
        close(o->fd);
    hosted__op_free(o);
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
    hosted__run(o, work_open_blob, blob_opened);
}
