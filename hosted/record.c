/* SPDX-License-Identifier: Apache-2.0 */
/* What a push records in the index, for content an offline import put in the store: the same
 * rows manifest_stored (manifest.c) and a finished upload (upload.c) write, so that an imported
 * hosted repository is loaded, served, pushed over and collected like a pushed one. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "hosted/impl.h"
#include "store/store.h"
#include "util/buf.h"

void hosted_record_blob(struct db *db, const char *repo, const char *digest)
{
    db_hosted_blob(db, repo, digest, NULL, 1);
}

int hosted_record_manifest(struct db *db, struct store *store, const char *repo, const char *tag,
                           const char *digest, const char *media_type, const char *body,
                           size_t len)
{
    struct hosted_manifest_info info;
    int r = hosted__manifest_parse(body, len, &info);
    if (r)
        return r;
    /* as a PUT: what it is made of must be there (a subject need not) */
    for (size_t i = 0; i < info.n_refs && !r; i++)
        if (!ref_digest_is_sha256(info.refs[i], strlen(info.refs[i])) ||
            !store_has(store, info.refs[i]))
            r = -ENOENT;
    struct buf d;
    buf_init(&d, len + 1024);
    if (info.subject[0]) {
        const char *artifact_type = info.artifact_type[0] ? info.artifact_type : NULL;
        if (!r && (hosted__descriptor(&d, media_type, digest, len, artifact_type,
                                      info.annotations, info.annotations_len) ||
                   buf_terminate(&d)))
            r = -ENOMEM;
    }
    if (!r) {
        db_hosted_blob(db, repo, digest, media_type, 1);
        for (size_t i = 0; i < info.n_refs; i++) {
            db_hosted_blob(db, repo, info.refs[i], NULL, 1);
            db_hosted_ref(db, digest, info.refs[i]);
        }
        if (info.subject[0])
            db_hosted_referrer(db, repo, digest, info.subject, info.artifact_type, d.data);
        if (tag)
            db_hosted_tag(db, repo, tag, digest, media_type);
    }
    buf_free(&d);
    hosted__manifest_info_free(&info);
    return r;
}
