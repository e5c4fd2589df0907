/* SPDX-License-Identifier: Apache-2.0 */
#include "cache/pins.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "util/map.h"

#define PIN_CLOSE_MAX 100000 /* manifests one closure reads at most */

struct pins {
    struct pin_ref *refs;
    size_t n;
};

struct pinned {
    const struct pin_ref *ref;
    int expanded;
};

struct pin_set {
    struct map *digests; /* digest -> struct pinned */
    char **queue;        /* manifests still to read (keys owned by the map's copies) */
    size_t n_queue, cap_queue;
};

static int has_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

int pins_parse_ref(const struct config *cfg, const char *text, int prefetch,
                   struct pin_ref *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->text = text;
    out->prefetch = prefetch;
    snprintf(out->reason, sizeof(out->reason), "%s: %s", prefetch ? "prefetch" : "pin", text);
    /* a tag glob is checked here and parsed in place of a plain tag */
    char plain[600], glob[REF_TAG_MAX * 2 + 1] = "";
    snprintf(plain, sizeof(plain), "%s", text);
    char *at = strchr(plain, '@'), *slash = strrchr(plain, '/');
    char *colon = strrchr(plain, ':');
    if (at && colon > at)
        colon = memrchr(plain, ':', (size_t)(at - plain));
    if (colon && (!slash || colon > slash) && has_glob(colon + 1)) {
        size_t tlen = at ? (size_t)(at - colon - 1) : strlen(colon + 1);
        if (tlen >= sizeof(glob) || at) {
            snprintf(err, errlen, "%s: a tag glob names no digest and has at most %d characters",
                     text, REF_TAG_MAX);
            return -EINVAL;
        }
        memcpy(glob, colon + 1, tlen);
        glob[tlen] = '\0';
        for (const char *p = glob; *p; p++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-*?[]",
                        *p)) {
                snprintf(err, errlen, "%s: invalid tag glob", text);
                return -EINVAL;
            }
        snprintf(colon + 1, sizeof(plain) - (size_t)(colon + 1 - plain), "glob");
    }
    struct bundle_name n;
    if (bundle_name_parse(cfg, plain, &n, err, errlen))
        return -EINVAL;
    if (n.hosted) {
        snprintf(err, errlen, "%s: a hosted repository (hosted content is never evicted)", text);
        return -EINVAL;
    }
    snprintf(out->upstream, sizeof(out->upstream), "%s", n.upstream);
    snprintf(out->repo, sizeof(out->repo), "%s", n.repo);
    if (n.digest[0])
        snprintf(out->digest, sizeof(out->digest), "%s", n.digest);
    else if (glob[0]) {
        snprintf(out->tag, sizeof(out->tag), "%s", glob);
        out->glob = 1;
    } else
        snprintf(out->tag, sizeof(out->tag), "%s", n.tag);
    if (prefetch) {
        if (cfg->n_prefetch_platforms > BUNDLE_PLATFORMS_MAX) {
            snprintf(err, errlen, "prefetch.platforms: at most %d platforms",
                     BUNDLE_PLATFORMS_MAX);
            return -EINVAL;
        }
        for (size_t i = 0; i < cfg->n_prefetch_platforms; i++)
            if (bundle_platform_parse(cfg->prefetch_platforms[i], &out->platforms[i])) {
                snprintf(err, errlen, "prefetch.platforms: '%s': not os/architecture[/variant]",
                         cfg->prefetch_platforms[i]);
                return -EINVAL;
            }
        out->n_platforms = cfg->n_prefetch_platforms;
    }
    return 0;
}

int pins_new(const struct config *cfg, struct pins **out, char *err, size_t errlen)
{
    struct pins *p = calloc(1, sizeof(*p));
    size_t total = cfg->n_pins + cfg->n_prefetch;
    if (!p || !(p->refs = calloc(total ? total : 1, sizeof(*p->refs)))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < total; i++) {
        int prefetch = i >= cfg->n_pins;
        const char *text = prefetch ? cfg->prefetch[i - cfg->n_pins] : cfg->pins[i];
        char why[700];
        if (pins_parse_ref(cfg, text, prefetch, &p->refs[p->n], why, sizeof(why))) {
            snprintf(err, errlen, "%s: %s", prefetch ? "prefetch" : "pin", why);
            pins_free(p);
            return -EINVAL;
        }
        p->n++;
    }
    *out = p;
    return 0;
}

void pins_free(struct pins *p)
{
    if (!p)
        return;
    free(p->refs);
    free(p);
}

size_t pins_count(const struct pins *p)
{
    return p ? p->n : 0;
}

const struct pin_ref *pins_ref(const struct pins *p, size_t i)
{
    return p && i < p->n ? &p->refs[i] : NULL;
}

int pin_ref_matches_tag(const struct pin_ref *r, const char *upstream, const char *repo,
                        const char *tag)
{
    if (!r->tag[0] || strcmp(r->upstream, upstream) || strcmp(r->repo, repo))
        return 0;
    return r->glob ? fnmatch(r->tag, tag, 0) == 0 : strcmp(r->tag, tag) == 0;
}

struct pin_set *pin_set_new(void)
{
    struct pin_set *s = calloc(1, sizeof(*s));
    if (s && !(s->digests = map_new())) {
        free(s);
        return NULL;
    }
    return s;
}

static int free_entry(const char *key, void *value, void *ud)
{
    (void)key, (void)ud;
    free(value);
    return 0;
}

void pin_set_free(struct pin_set *s)
{
    if (!s)
        return;
    map_each(s->digests, free_entry, NULL);
    map_free(s->digests);
    for (size_t i = 0; i < s->n_queue; i++)
        free(s->queue[i]);
    free(s->queue);
    free(s);
}

/* Adds digest for r; manifest: its children are to be read. */
static int add(struct pin_set *s, const struct pin_ref *r, const char *digest, int manifest)
{
    if (map_get(s->digests, digest))
        return 0;
    struct pinned *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->ref = r;
    e->expanded = !manifest;
    if (map_put(s->digests, digest, e) == MAP_NOMEM) {
        free(e);
        return -ENOMEM;
    }
    if (!manifest)
        return 0;
    if (s->n_queue == s->cap_queue) {
        size_t cap = s->cap_queue ? s->cap_queue * 2 : 16;
        char **q = realloc(s->queue, cap * sizeof(*q));
        if (!q)
            return -ENOMEM;
        s->queue = q;
        s->cap_queue = cap;
    }
    if (!(s->queue[s->n_queue] = strdup(digest)))
        return -ENOMEM;
    s->n_queue++;
    return 0;
}

int pin_set_add(struct pin_set *s, const struct pin_ref *r, const char *digest)
{
    return add(s, r, digest, 1);
}

int pins_add_tag(const struct pins *p, struct pin_set *s, const char *upstream,
                 const char *repo, const char *tag, const char *digest)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (pin_ref_matches_tag(&p->refs[i], upstream, repo, tag)) {
            int rc = add(s, &p->refs[i], digest, 1);
            if (rc)
                return rc;
        }
    return 0;
}

int pins_add_digests(const struct pins *p, struct pin_set *s)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (p->refs[i].digest[0]) {
            int rc = add(s, &p->refs[i], p->refs[i].digest, 1);
            if (rc)
                return rc;
        }
    return 0;
}

/* The stored manifest digest, read whole; -ENOENT when not stored (or too large to be one). */
static int read_manifest(struct store *store, const char *digest, uint64_t max, char **out,
                         size_t *len)
{
    int fd;
    uint64_t size;
    int rc = store_blob_open(store, digest, &fd, &size);
    if (rc)
        return rc;
    char *b = size <= max ? malloc(size ? size : 1) : NULL;
    size_t got = 0;
    while (b && got < size) {
        ssize_t r = pread(fd, b + got, size - got, (off_t)got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!b || got != size) {
        free(b);
        return -ENOENT;
    }
    *out = b;
    *len = got;
    return 0;
}

static int expand(struct pin_set *s, struct store *store, uint64_t max, const char *digest)
{
    struct pinned *e = map_get(s->digests, digest);
    if (!e || e->expanded)
        return 0;
    e->expanded = 1;
    char *doc = NULL, why[256];
    size_t len = 0, n = 0;
    if (read_manifest(store, digest, max, &doc, &len))
        return 0;
    struct bundle_desc *d = NULL;
    const char *type = NULL;
    int is_index = 0, rc = 0;
    if (bundle_doc_children(doc, len, NULL, &is_index, &type, &d, &n, why, sizeof(why))) {
        free(doc);
        return 0; /* not a manifest the mirror reads: nothing more is reached */
    }
    free(doc);
    int *keep = calloc(n ? n : 1, sizeof(int));
    if (!keep) {
        free(d);
        return -ENOMEM;
    }
    if (is_index)
        bundle_select_children(d, n, e->ref->platforms, e->ref->n_platforms, keep);
    for (size_t i = 0; i < n && !rc; i++)
        if (!is_index || keep[i])
            rc = add(s, e->ref, d[i].digest, is_index);
    free(keep);
    free(d);
    return rc;
}

int pin_set_close(struct pin_set *s, struct store *store, uint64_t max_manifest)
{
    int rc = 0;
    for (size_t done = 0; s->n_queue && !rc; done++) {
        char *digest = s->queue[--s->n_queue];
        if (done < PIN_CLOSE_MAX)
            rc = expand(s, store, max_manifest, digest);
        free(digest);
    }
    return rc;
}

const char *pin_set_reason(const struct pin_set *s, const char *digest)
{
    const struct pinned *e = s ? map_get(s->digests, digest) : NULL;
    return e ? e->ref->reason : NULL;
}

size_t pin_set_count(const struct pin_set *s)
{
    return s ? map_count(s->digests) : 0;
}

struct each_ctx {
    int (*fn)(void *ud, const char *digest, const char *reason);
    void *ud;
};

static int each_one(const char *key, void *value, void *ud)
{
    struct each_ctx *x = ud;
    const struct pinned *e = value;
    return x->fn(x->ud, key, e->ref->reason);
}

int pin_set_each(const struct pin_set *s,
                 int (*fn)(void *ud, const char *digest, const char *reason), void *ud)
{
    struct each_ctx x = {fn, ud};
    return s ? map_each(s->digests, each_one, &x) : 0;
}
