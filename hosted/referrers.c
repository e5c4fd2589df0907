/* SPDX-License-Identifier: Apache-2.0 */
/* The referrers API of hosted repositories: every manifest of the repository whose subject is
 * a given digest, as an OCI image index, optionally filtered by artifactType. Kept in memory
 * (loaded from the index at start) as manifests are pushed and deleted; a subject need not be
 * in the repository. A long list is paged: the Link names the next page (?last=<digest>). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "hosted/impl.h"
#include "registry/respond.h"
#include "util/map.h"

#define REFERRERS_PAGE (1u << 20) /* an index stops growing past this (one descriptor more) */

static void referrer_free(struct hreferrer *r)
{
    if (!r)
        return;
    free(r->artifact_type);
    free(r->descriptor);
    free(r);
}

int hosted__referrer_set(struct hosted *h, const char *repo, const char *digest,
                         const char *subject, const char *artifact_type, const char *descriptor)
{
    char key[HOSTED_KEY_MAX];
    struct hreferrer *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    snprintf(r->subject, sizeof(r->subject), "%s", subject);
    r->artifact_type = strdup(artifact_type);
    r->descriptor = strdup(descriptor);
    hosted__key(key, sizeof(key), repo, digest);
    void *old = r->artifact_type && r->descriptor ? map_put(h->referrers, key, r) : MAP_NOMEM;
    if (old == MAP_NOMEM) {
        referrer_free(r);
        return -ENOMEM;
    }
    referrer_free(old);
    return 0;
}

void hosted__referrer_drop(struct hosted *h, const char *repo, const char *digest)
{
    char key[HOSTED_KEY_MAX];
    hosted__key(key, sizeof(key), repo, digest);
    struct hreferrer *r = map_del(h->referrers, key);
    if (r) {
        referrer_free(r);
        db_hosted_referrer(h->db, repo, digest, NULL, NULL, NULL);
    }
}

static int free_referrer(const char *k, void *v, void *ud)
{
    (void)k;
    (void)ud;
    referrer_free(v);
    return 0;
}

void hosted__referrers_free(struct hosted *h)
{
    map_each(h->referrers, free_referrer, NULL);
}

struct pick {
    const char *digest; /* within the map's key */
    const struct hreferrer *r;
};

struct match {
    const char *prefix, *subject, *artifact_type, *last;
    size_t plen;
    struct pick *picks;
    size_t n, cap;
};

static int collect(const char *key, void *value, void *ud)
{
    struct match *m = ud;
    const struct hreferrer *r = value;
    if (strncmp(key, m->prefix, m->plen) != 0 || strcmp(r->subject, m->subject) != 0 ||
        (m->artifact_type && strcmp(r->artifact_type, m->artifact_type) != 0) ||
        (m->last && strcmp(key + m->plen, m->last) <= 0))
        return 0;
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 16;
        struct pick *p = realloc(m->picks, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        m->picks = p;
        m->cap = cap;
    }
    m->picks[m->n++] = (struct pick){key + m->plen, r};
    return 0;
}

static int cmp_pick(const void *a, const void *b)
{
    return strcmp(((const struct pick *)a)->digest, ((const struct pick *)b)->digest);
}

void hosted__list_referrers(struct op *o)
{
    char prefix[REF_NAME_MAX + 2], filter[HOSTED_MEDIA_TYPE_MAX], last[REF_DIGEST_MAX + 1];
    snprintf(prefix, sizeof(prefix), "%s" HOSTED_SEP, o->rt.name);
    int filtered = route_artifact_type(o->req->query, filter, sizeof(filter)) > 0;
    int has_last = route_query_param(o->req->query, "last", last, sizeof(last)) > 0 &&
                   ref_digest_valid(last, strlen(last));
    struct match m = {prefix,
                      o->rt.reference,
                      filtered ? filter : NULL,
                      has_last ? last : NULL,
                      strlen(prefix),
                      NULL,
                      0,
                      0};
    static const char head[] = "{\"schemaVersion\":2,\"mediaType\":"
                               "\"application/vnd.oci.image.index.v1+json\",\"manifests\":[";
    struct buf out;
    buf_init(&out, REFERRERS_PAGE + o->h->cfg->max_manifest_bytes + (64u << 10));
    if (map_each(o->h->referrers, collect, &m)) {
        hosted__fail(o, 503, "UNAVAILABLE", "out of memory");
        goto out;
    }
    if (m.n)
        qsort(m.picks, m.n, sizeof(*m.picks), cmp_pick);
    int r = buf_append(&out, head, sizeof(head) - 1);
    const char *next = NULL;
    for (size_t i = 0; !r && i < m.n; i++) {
        const char *d = m.picks[i].r->descriptor;
        if (i && out.len + strlen(d) > REFERRERS_PAGE) {
            next = m.picks[i - 1].digest;
            break;
        }
        if (i)
            r = buf_append(&out, ",", 1);
        if (!r)
            r = buf_append(&out, d, strlen(d));
    }
    if (!r)
        r = buf_append(&out, "]}\n", 3);
    if (r) {
        hosted__fail(o, 500, "UNKNOWN", "cannot list the referrers");
        goto out;
    }
    char link[HOSTED_KEY_MAX + 3 * HOSTED_MEDIA_TYPE_MAX + 120] = "",
                                                           esc[3 * HOSTED_MEDIA_TYPE_MAX];
    if (next) {
        route_query_escape(esc, sizeof(esc), filtered ? filter : "");
        snprintf(link, sizeof(link), "Link: </v2/%s/referrers/%s?last=%s%s%s>; rel=\"next\"\r\n",
                 o->rt.name, o->rt.reference, next, filtered ? "&artifactType=" : "", esc);
    }
    if (conn_alive(o->c))
        respond_referrers(o->c, o->head, out.data, out.len, filtered, link);
    hosted__op_free(o);
out:
    free(m.picks);
    buf_free(&out);
}
