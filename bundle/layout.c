/* SPDX-License-Identifier: Apache-2.0 */
#include "bundle/layout.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/json.h"

static const char *const manifest_types[] = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
};

const char *bundle_manifest_type(const char *media_type)
{
    if (!media_type)
        return NULL;
    size_t len = strcspn(media_type, ";");
    while (len && (media_type[len - 1] == ' ' || media_type[len - 1] == '\t'))
        len--;
    for (size_t i = 0; i < sizeof(manifest_types) / sizeof(manifest_types[0]); i++)
        if (strlen(manifest_types[i]) == len &&
            strncasecmp(manifest_types[i], media_type, len) == 0)
            return manifest_types[i];
    return NULL;
}

int bundle_type_is_index(const char *media_type)
{
    const char *t = bundle_manifest_type(media_type);
    return t && (t == manifest_types[0] || t == manifest_types[1]);
}

const char *bundle_oci_type(const char *media_type)
{
    return bundle_type_is_index(media_type) ? manifest_types[0] : manifest_types[2];
}

static int get_string(const char *s, size_t len, const char *key, char *out, size_t outlen)
{
    int r = json_get_string(s, len, key, out, outlen);
    if (r < 0)
        out[0] = '\0';
    return r;
}

static int parse_platform(const char *s, size_t len, struct bundle_platform *p)
{
    if (get_string(s, len, "os", p->os, sizeof(p->os)) <= 0 ||
        get_string(s, len, "architecture", p->arch, sizeof(p->arch)) <= 0)
        return -EINVAL;
    get_string(s, len, "variant", p->variant, sizeof(p->variant));
    return 0;
}

int bundle_desc_parse(const char *elem, size_t len, struct bundle_desc *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof(*d));
    get_string(elem, len, "mediaType", d->media_type, sizeof(d->media_type));
    int r = json_get_string(elem, len, "digest", d->digest, sizeof(d->digest));
    if (r <= 0 || !ref_digest_is_sha256(d->digest, strlen(d->digest))) {
        snprintf(err, errlen, "a descriptor without a sha256 digest%s%.80s", r > 0 ? ": " : "",
                 r > 0 ? d->digest : "");
        return -EINVAL;
    }
    if (json_get_uint(elem, len, "size", &d->size)) {
        snprintf(err, errlen, "descriptor %s has no size", d->digest);
        return -EINVAL;
    }
    const char *v;
    size_t vlen;
    if (json_get_raw(elem, len, "platform", &v, &vlen) == 0 && vlen && v[0] == '{')
        d->has_platform = parse_platform(v, vlen, &d->platform) == 0;
    if (json_get_raw(elem, len, "annotations", &v, &vlen) == 0 && vlen && v[0] == '{') {
        char type[64];
        if (get_string(v, vlen, "vnd.docker.reference.type", type, sizeof(type)) > 0 &&
            strcmp(type, "attestation-manifest") == 0) {
            d->attestation = 1;
            get_string(v, vlen, "vnd.docker.reference.digest", d->attests, sizeof(d->attests));
        }
    }
    d->foreign = strstr(d->media_type, ".foreign.") != NULL ||
                 strstr(d->media_type, ".nondistributable.") != NULL;
    return 0;
}

struct desc_list {
    struct bundle_desc *v;
    size_t n, cap;
    char *err;
    size_t errlen;
};

static int add_desc(struct desc_list *l, const char *elem, size_t len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct bundle_desc *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    int r = bundle_desc_parse(elem, len, &l->v[l->n], l->err, l->errlen);
    if (r)
        return r;
    l->n++;
    return 0;
}

static int each_desc(void *ud, const char *elem, size_t len)
{
    return add_desc(ud, elem, len);
}

int bundle_doc_children(const char *doc, size_t len, const char *fallback_type, int *is_index,
                        const char **media_type, struct bundle_desc **out, size_t *n, char *err,
                        size_t errlen)
{
    *out = NULL;
    *n = 0;
    char declared[BUNDLE_MEDIA_MAX] = "";
    uint64_t version = 0;
    if (json_get_uint(doc, len, "schemaVersion", &version) || version != 2) {
        snprintf(err, errlen, "not a manifest of schemaVersion 2");
        return -EINVAL;
    }
    int dr = json_get_string(doc, len, "mediaType", declared, sizeof(declared));
    const char *v;
    size_t vlen;
    int has_manifests = json_get_raw(doc, len, "manifests", &v, &vlen) == 0 && vlen && v[0] == '[';
    const char *t = bundle_manifest_type(dr > 0 ? declared : fallback_type);
    if (dr > 0 && !t) {
        snprintf(err, errlen, "its mediaType %.100s is not a manifest's", declared);
        return -EINVAL;
    }
    if (!t)
        t = has_manifests ? manifest_types[0] : manifest_types[2];
    *media_type = t;
    *is_index = bundle_type_is_index(t);
    struct desc_list l = {NULL, 0, 0, err, errlen};
    int r;
    if (*is_index) {
        if (!has_manifests) {
            snprintf(err, errlen, "an index without \"manifests\"");
            return -EINVAL;
        }
        r = json_each_element(v, vlen, each_desc, &l);
    } else {
        if (json_get_raw(doc, len, "config", &v, &vlen) || !vlen || v[0] != '{') {
            snprintf(err, errlen, "an image manifest without \"config\"");
            return -EINVAL;
        }
        r = add_desc(&l, v, vlen);
        if (!r && json_get_raw(doc, len, "layers", &v, &vlen) == 0 && vlen && v[0] == '[')
            r = json_each_element(v, vlen, each_desc, &l);
    }
    if (r) {
        if (r == -EINVAL && !err[0])
            snprintf(err, errlen, "malformed JSON");
        free(l.v);
        return r == -ENOMEM ? r : -EINVAL;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

static int component_ok(const char *s, size_t len)
{
    if (len == 0 || len >= 64)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '-' || s[i] == '.'))
            return 0;
    return 1;
}

int bundle_platform_parse(const char *s, struct bundle_platform *p)
{
    memset(p, 0, sizeof(*p));
    const char *a = strchr(s, '/');
    if (!a)
        return -EINVAL;
    const char *b = strchr(a + 1, '/');
    size_t oslen = (size_t)(a - s), archlen = b ? (size_t)(b - a - 1) : strlen(a + 1);
    size_t varlen = b ? strlen(b + 1) : 0;
    if (!component_ok(s, oslen) || !component_ok(a + 1, archlen) ||
        (b && !component_ok(b + 1, varlen)))
        return -EINVAL;
    memcpy(p->os, s, oslen);
    memcpy(p->arch, a + 1, archlen);
    if (b)
        memcpy(p->variant, b + 1, varlen);
    return 0;
}

void bundle_platform_format(const struct bundle_platform *p, char *out, size_t len)
{
    snprintf(out, len, "%s/%s%s%s", p->os, p->arch, p->variant[0] ? "/" : "", p->variant);
}

static int variant_is_default(const char *arch, const char *variant)
{
    return !variant[0] || (strcmp(arch, "arm64") == 0 && strcmp(variant, "v8") == 0);
}

int bundle_platform_matches(const struct bundle_platform *want, size_t n,
                            const struct bundle_platform *have)
{
    for (size_t i = 0; i < n; i++) {
        const struct bundle_platform *w = &want[i];
        if (strcmp(w->os, have->os) != 0 || strcmp(w->arch, have->arch) != 0)
            continue;
        if (!w->variant[0] || strcmp(w->variant, have->variant) == 0 ||
            (variant_is_default(w->arch, w->variant) &&
             variant_is_default(have->arch, have->variant)))
            return 1;
    }
    return 0;
}

void bundle_select_children(const struct bundle_desc *d, size_t nd,
                            const struct bundle_platform *want, size_t n, int *keep)
{
    for (size_t i = 0; i < nd; i++)
        keep[i] =
            n == 0 || (!d[i].attestation &&
                       (!d[i].has_platform || bundle_platform_matches(want, n, &d[i].platform)));
    for (size_t i = 0; n && i < nd; i++) {
        if (!d[i].attestation)
            continue;
        for (size_t j = 0; j < nd && !keep[i]; j++)
            keep[i] = !d[j].attestation && keep[j] && strcmp(d[j].digest, d[i].attests) == 0;
    }
}

/* ---- names ---- */

const struct config_upstream *bundle_upstream(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0)
            return &cfg->upstreams[i];
    return NULL;
}

int bundle_upstream_is_docker_hub(const struct config_upstream *u)
{
    return strcmp(u->name, "docker.io") == 0 || strstr(u->url, "://registry-1.docker.io") != NULL;
}

int bundle_is_hosted(const struct config *cfg, const char *repo)
{
    for (size_t i = 0; i < cfg->n_hosted; i++)
        if (fnmatch(cfg->hosted[i], repo, 0) == 0)
            return 1;
    return 0;
}

int bundle_name_parse(const struct config *cfg, const char *ref, struct bundle_name *out, char *err,
                      size_t errlen)
{
    memset(out, 0, sizeof(*out));
    char name[REF_NAME_MAX + 1];
    const char *at = strchr(ref, '@');
    size_t nlen = at ? (size_t)(at - ref) : strlen(ref);
    if (at) {
        if (!ref_digest_is_sha256(at + 1, strlen(at + 1))) {
            snprintf(err, errlen, "%s: not a sha256 digest after '@'", ref);
            return -EINVAL;
        }
        snprintf(out->digest, sizeof(out->digest), "%s", at + 1);
    }
    /* a tag is after the last ':' that follows the last '/' (a host may have a port) */
    const char *slash = memrchr(ref, '/', nlen), *colon = memrchr(ref, ':', nlen);
    if (colon && (!slash || colon > slash)) {
        size_t tlen = nlen - (size_t)(colon + 1 - ref);
        if (tlen > REF_TAG_MAX || !ref_tag_valid(colon + 1, tlen)) {
            snprintf(err, errlen, "%s: invalid tag", ref);
            return -EINVAL;
        }
        memcpy(out->tag, colon + 1, tlen);
        out->tag[tlen] = '\0';
        nlen = (size_t)(colon - ref);
    } else if (!at) {
        snprintf(out->tag, sizeof(out->tag), "latest");
    }
    if (nlen == 0 || nlen > REF_NAME_MAX || !ref_name_valid(ref, nlen)) {
        snprintf(err, errlen, "%s: invalid repository name", ref);
        return -EINVAL;
    }
    memcpy(name, ref, nlen);
    name[nlen] = '\0';
    snprintf(out->path_name, sizeof(out->path_name), "%s", name);
    /* as registry/api.c routes a request: an upstream named by the first component, else a
     * hosted pattern, else the first upstream */
    const struct config_upstream *u = NULL;
    const char *rest = name;
    char *s = strchr(name, '/');
    if (s) {
        *s = '\0';
        u = bundle_upstream(cfg, name);
        *s = '/';
        if (u)
            rest = s + 1;
    }
    if (!u && bundle_is_hosted(cfg, name)) {
        out->hosted = 1;
        snprintf(out->repo, sizeof(out->repo), "%s", name);
        return 0;
    }
    if (!u && cfg->n_upstreams)
        u = &cfg->upstreams[0];
    if (!u) {
        snprintf(err, errlen, "%s: no upstream is configured", ref);
        return -EINVAL;
    }
    snprintf(out->upstream, sizeof(out->upstream), "%s", u->name);
    if (bundle_upstream_is_docker_hub(u) && !strchr(rest, '/'))
        snprintf(out->repo, sizeof(out->repo), "library/%s", rest);
    else
        snprintf(out->repo, sizeof(out->repo), "%s", rest);
    return 0;
}

void bundle_name_full(const struct bundle_name *n, const char *host, char *out, size_t len)
{
    snprintf(out, len, "%s/%s%s%s%s%s", n->hosted ? host : n->upstream, n->repo,
             n->tag[0] ? ":" : "", n->tag, n->digest[0] ? "@" : "", n->digest);
}
