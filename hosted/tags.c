/* SPDX-License-Identifier: Apache-2.0 */
/* Tags of hosted repositories: the in-memory map, tags/list with n/last pagination, and the
 * untagging that follows a manifest's deletion. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "hosted/impl.h"
#include "registry/respond.h"
#include "util/epoch.h"
#include "util/json.h"
#include "util/map.h"

#define TAG_LIST_MAX (8u << 20) /* bytes of one tags/list answer */

int hosted__tag_set(struct hosted *h, const char *repo, const char *tag, const char *digest,
                    const char *media_type)
{
    char key[HOSTED_KEY_MAX];
    struct htag *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    snprintf(t->digest, sizeof(t->digest), "%s", digest);
    snprintf(t->media_type, sizeof(t->media_type), "%s", media_type);
    hosted__key(key, sizeof(key), repo, tag);
    content_epoch_bump(); /* what worker loops kept of the tag goes */
    void *old = map_put(h->tags, key, t);
    if (old == MAP_NOMEM) {
        free(t);
        return -ENOMEM;
    }
    free(old);
    return 0;
}

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

void hosted__list_tags(struct op *o)
{
    char prefix[REF_NAME_MAX + 2], n_s[32], last[REF_TAG_MAX + 1];
    snprintf(prefix, sizeof(prefix), "%s" HOSTED_SEP, o->rt.name);
    struct tag_list l = {prefix, strlen(prefix), NULL, 0, 0};
    if (map_each(o->h->tags, collect_tag, &l)) {
        free(l.tags);
        hosted__fail(o, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    if (!l.n) {
        free(l.tags);
        hosted__fail(o, 404, "NAME_UNKNOWN", "repository has no tags");
        return;
    }
    qsort(l.tags, l.n, sizeof(*l.tags), cmp_str);
    size_t limit =
        route_query_param(o->req->query, "n", n_s, sizeof(n_s)) > 0 ? strtoul(n_s, NULL, 10) : 0;
    int has_last = route_query_param(o->req->query, "last", last, sizeof(last)) > 0;
    struct buf out;
    buf_init(&out, TAG_LIST_MAX);
    int r = buf_append(&out, "{\"name\":", 8);
    if (!r)
        r = json_put_string(&out, o->rt.name);
    if (!r)
        r = buf_append(&out, ",\"tags\":[", 9);
    size_t written = 0;
    const char *more = NULL;
    for (size_t i = 0; !r && i < l.n; i++) {
        if (has_last && strcmp(l.tags[i], last) <= 0)
            continue;
        if (limit && written == limit) {
            more = l.tags[i - 1];
            break;
        }
        if (written++)
            r = buf_append(&out, ",", 1);
        if (!r)
            r = json_put_string(&out, l.tags[i]);
    }
    if (!r)
        r = buf_append(&out, "]}\n", 3);
    if (r) {
        buf_free(&out);
        free(l.tags);
        hosted__fail(o, 500, "UNKNOWN", "the tag list is too long: ask for fewer with ?n=");
        return;
    }
    char link[REF_NAME_MAX + REF_TAG_MAX + 80] = "";
    if (more)
        snprintf(link, sizeof(link), "Link: </v2/%s/tags/list?n=%zu&last=%s>; rel=\"next\"\r\n",
                 o->rt.name, limit, more);
    char headers[sizeof(link) + 40];
    snprintf(headers, sizeof(headers), "Content-Type: application/json\r\n%s", link);
    conn_respond(o->c, 200, headers, out.data, out.len, o->head);
    buf_free(&out);
    free(l.tags);
    hosted__op_free(o);
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

void hosted__untag_digest(struct hosted *h, const char *repo, const char *digest)
{
    char prefix[REF_NAME_MAX + 2];
    snprintf(prefix, sizeof(prefix), "%s" HOSTED_SEP, repo);
    struct untag u = {prefix, digest, strlen(prefix), NULL, 0};
    map_each(h->tags, find_tags_of, &u);
    for (size_t i = 0; i < u.n; i++) {
        if (!u.keys[i])
            continue;
        free(map_del(h->tags, u.keys[i]));
        content_epoch_bump();
        db_hosted_tag(h->db, repo, u.keys[i] + u.plen, NULL, NULL);
        free(u.keys[i]);
    }
    free(u.keys);
}
