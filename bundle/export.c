/* SPDX-License-Identifier: Apache-2.0 */
/* regcache export: images fetched from the running mirror over HTTP into an OCI layout tar.
 *
 * Two passes: the manifests first (each written as soon as it verified), which tells every
 * blob and its size, so the blobs' progress has a total; then the blobs, streamed from the
 * mirror into the file and hashed on the way. The file is written under a temporary name and
 * renamed into place only when everything verified. */
#include "bundle/bundle.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle/layout.h"
#include "bundle/progress.h"
#include "bundle/tar.h"
#include "config/config.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/map.h"
#include "util/parse.h"

#define EXPORT_MAX_REFS 4096
#define EXPORT_ERROR_BODY_MAX 2048

#define ACCEPT_MANIFESTS                                                                           \
    "Accept: application/vnd.oci.image.index.v1+json, "                                            \
    "application/vnd.docker.distribution.manifest.list.v2+json, "                                  \
    "application/vnd.oci.image.manifest.v1+json, "                                                 \
    "application/vnd.docker.distribution.manifest.v2+json"

struct pending_blob {
    char digest[BUNDLE_DIGEST_MAX];
    uint64_t size;
    char path_name[REF_NAME_MAX + 1]; /* the repository it is fetched through */
};

struct exporter {
    const struct config *cfg;
    CURL *curl;
    char base[1024]; /* the mirror's URL, no trailing slash */
    char host[300];  /* host[:port] of the mirror, for hosted images' full names */
    const char *out_path;
    char tmp_path[4096];
    FILE *out;
    struct map *written;  /* digests in the file */
    struct map *left_out; /* digests the --since bundle holds */
    struct map *queued;   /* blobs to fetch, by digest */
    struct pending_blob *blobs;
    size_t n_blobs, cap_blobs;
    struct bundle_platform platforms[BUNDLE_PLATFORMS_MAX];
    size_t n_platforms;
    struct buf index; /* index.json's "manifests" entries */
    uint64_t images, manifests, blob_count, blobs_written, bytes_written;
    uint64_t left_out_count, left_out_bytes; /* manifests and blobs the --since bundle holds */
    struct progress progress;
};

/* ---- HTTP to the mirror ---- */

struct response {
    long status;
    char content_type[BUNDLE_MEDIA_MAX];
    char digest[BUNDLE_DIGEST_MAX];
    char x_cache[16];
    struct buf body; /* small answers (manifests, errors) */
    /* a blob streamed into the bundle */
    struct exporter *ex;
    EVP_MD_CTX *md;
    uint64_t streamed;
    int write_error;
};

static void header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    if (len <= nlen + 1 || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
        return;
    const char *v = line + nlen + 1;
    size_t vlen = len - nlen - 1;
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    if (vlen >= outlen)
        vlen = outlen - 1;
    memcpy(out, v, vlen);
    out[vlen] = '\0';
}

static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
    struct response *r = ud;
    size_t len = size * n;
    if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* a new response (after a 100 or a redirect): forget the last one's headers */
        r->content_type[0] = r->digest[0] = r->x_cache[0] = '\0';
    }
    header_value(line, len, "Content-Type", r->content_type, sizeof(r->content_type));
    header_value(line, len, "Docker-Content-Digest", r->digest, sizeof(r->digest));
    header_value(line, len, "X-Cache", r->x_cache, sizeof(r->x_cache));
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    struct response *r = ud;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(r->ex->curl, CURLINFO_RESPONSE_CODE, &status);
    if (!r->md || status != 200) {
        if (buf_append(&r->body, data, len))
            return 0; /* larger than allowed: the transfer fails */
        return len;
    }
    r->streamed += len;
    EVP_DigestUpdate(r->md, data, len);
    if (fwrite(data, 1, len, r->ex->out) != len) {
        r->write_error = errno ? errno : EIO;
        return 0;
    }
    r->ex->progress.bytes += len;
    progress_draw(&r->ex->progress, 0);
    return len;
}

/* GET path from the mirror. 0 with r filled (any status), or -EIO with why in err. */
static int mirror_get(struct exporter *ex, const char *path, int manifest, struct response *r,
                      char *err, size_t errlen)
{
    char url[2048];
    snprintf(url, sizeof(url), "%s%s", ex->base, path);
    struct curl_slist *headers = NULL;
    if (manifest)
        headers = curl_slist_append(headers, ACCEPT_MANIFESTS);
    curl_easy_setopt(ex->curl, CURLOPT_URL, url);
    curl_easy_setopt(ex->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(ex->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(ex->curl, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(ex->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(ex->curl, CURLOPT_WRITEDATA, r);
    CURLcode rc = curl_easy_perform(ex->curl);
    curl_slist_free_all(headers);
    curl_easy_getinfo(ex->curl, CURLINFO_RESPONSE_CODE, &r->status);
    if (rc != CURLE_OK) {
        if (r->write_error)
            snprintf(err, errlen, "cannot write %s: %s", ex->tmp_path, strerror(r->write_error));
        else if (rc == CURLE_WRITE_ERROR)
            snprintf(err, errlen, "%s: the answer is larger than %zu bytes", path, r->body.max);
        else
            snprintf(err, errlen, "the mirror at %s: %s", ex->host, curl_easy_strerror(rc));
        return -EIO;
    }
    return 0;
}

/* "404 MANIFEST_UNKNOWN: manifest unknown" from a registry error body. */
static void describe_error(const struct response *r, char *out, size_t len)
{
    char code[64] = "", message[256] = "";
    const char *errors;
    size_t elen;
    const char *body = r->body.data ? r->body.data : "";
    if (json_get_raw(body, r->body.len, "errors", &errors, &elen) == 0 && elen > 2 &&
        errors[0] == '[') {
        const char *first = errors + 1;
        while (first < errors + elen && *first != '{')
            first++;
        size_t flen = (size_t)(errors + elen - first);
        json_get_string(first, flen, "code", code, sizeof(code));
        json_get_string(first, flen, "message", message, sizeof(message));
    }
    snprintf(out, len, "the mirror answered %ld%s%s%s%s", r->status, code[0] ? " " : "", code,
             message[0] ? ": " : "", message);
}

static void response_init(struct response *r, struct exporter *ex, size_t max)
{
    memset(r, 0, sizeof(*r));
    r->ex = ex;
    buf_init(&r->body, max);
}

/* ---- the file ---- */

static int write_entry(struct exporter *ex, const char *name, const void *data, size_t len)
{
    int rc = tar_write_header(ex->out, name, len, '0');
    if (!rc && len && fwrite(data, 1, len, ex->out) != len)
        rc = errno ? -errno : -EIO;
    if (!rc)
        rc = tar_write_pad(ex->out, len);
    return rc;
}

static void blob_name(const char *digest, char *out, size_t len)
{
    snprintf(out, len, "blobs/sha256/%s", digest + 7);
}

static int mark(struct map *m, const char *digest)
{
    return map_put(m, digest, (void *)1) == MAP_NOMEM ? -ENOMEM : 0;
}

/* Writes a verified manifest unless the file or the --since bundle has it. */
static int put_manifest(struct exporter *ex, const char *digest, const char *body, size_t len,
                        char *err, size_t errlen)
{
    if (map_get(ex->written, digest))
        return 0;
    ex->manifests++;
    if (map_get(ex->left_out, digest)) {
        ex->left_out_count++;
        ex->left_out_bytes += len;
        return mark(ex->written, digest);
    }
    char name[128];
    blob_name(digest, name, sizeof(name));
    int rc = write_entry(ex, name, body, len);
    if (rc) {
        snprintf(err, errlen, "cannot write %s: %s", ex->tmp_path, strerror(-rc));
        return rc;
    }
    ex->bytes_written += len;
    return mark(ex->written, digest);
}

static int queue_blob(struct exporter *ex, const struct bundle_desc *d, const char *path_name)
{
    if (map_get(ex->queued, d->digest))
        return 0;
    if (ex->n_blobs == ex->cap_blobs) {
        size_t cap = ex->cap_blobs ? ex->cap_blobs * 2 : 64;
        struct pending_blob *v = realloc(ex->blobs, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        ex->blobs = v;
        ex->cap_blobs = cap;
    }
    struct pending_blob *b = &ex->blobs[ex->n_blobs++];
    snprintf(b->digest, sizeof(b->digest), "%s", d->digest);
    b->size = d->size;
    snprintf(b->path_name, sizeof(b->path_name), "%s", path_name);
    return mark(ex->queued, d->digest);
}

/* ---- pass 1: manifests ---- */

/* GET a manifest (by tag or digest), checked: its bytes hash to the digest asked for (or the
 * one the mirror names), it is a manifest. *body is r->body. */
static int fetch_manifest(struct exporter *ex, const char *ref_text, const char *path_name,
                          const char *reference, struct response *r, char *digest, char *err,
                          size_t errlen)
{
    char path[1024], why[512];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", path_name, reference);
    if (mirror_get(ex, path, 1, r, why, sizeof(why))) {
        snprintf(err, errlen, "%s: %s", ref_text, why);
        return -EIO;
    }
    if (r->status != 200) {
        describe_error(r, why, sizeof(why));
        if (strchr(reference, ':'))
            snprintf(err, errlen, "%s: manifest %s: %s", ref_text, reference, why);
        else
            snprintf(err, errlen, "%s: %s", ref_text, why);
        return -EIO;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(r->body.data ? r->body.data : "", r->body.len, md, &n, EVP_sha256(), NULL);
    strcpy(digest, "sha256:");
    for (unsigned i = 0; i < n; i++)
        snprintf(digest + 7 + 2 * i, 3, "%02x", md[i]);
    const char *expected = strchr(reference, ':') ? reference : r->digest;
    if (expected[0] && strcmp(expected, digest) != 0) {
        snprintf(err, errlen, "%s: the manifest the mirror sent for %s hashes to %s, not %s",
                 ref_text, reference, digest, expected);
        return -EBADMSG;
    }
    return 0;
}

static int walk(struct exporter *ex, const char *ref_text, const char *path_name,
                const char *digest, const char *media_type, const char *body, size_t len, int depth,
                char *err, size_t errlen);

/* A child manifest of an index, by digest. */
static int walk_child(struct exporter *ex, const char *ref_text, const char *path_name,
                      const struct bundle_desc *d, int depth, char *err, size_t errlen)
{
    struct response r;
    char digest[BUNDLE_DIGEST_MAX];
    response_init(&r, ex, ex->cfg->max_manifest_bytes);
    int rc = fetch_manifest(ex, ref_text, path_name, d->digest, &r, digest, err, errlen);
    if (!rc && r.body.len != d->size) {
        snprintf(err, errlen, "%s: manifest %s is %zu bytes, its index says %llu", ref_text,
                 d->digest, r.body.len, (unsigned long long)d->size);
        rc = -EBADMSG;
    }
    if (!rc)
        rc = walk(ex, ref_text, path_name, digest, d->media_type, r.body.data ? r.body.data : "",
                  r.body.len, depth + 1, err, errlen);
    buf_free(&r.body);
    return rc;
}

static void list_platforms(const struct bundle_desc *d, size_t n, char *out, size_t len)
{
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!d[i].has_platform || d[i].attestation)
            continue;
        char p[200];
        bundle_platform_format(&d[i].platform, p, sizeof(p));
        snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? ", " : "", p);
    }
}

/* Writes a verified manifest and queues what it references; an index's chosen children are
 * fetched and walked in turn. */
static int walk(struct exporter *ex, const char *ref_text, const char *path_name,
                const char *digest, const char *media_type, const char *body, size_t len, int depth,
                char *err, size_t errlen)
{
    struct bundle_desc *d = NULL;
    size_t n = 0;
    int is_index;
    const char *type;
    char why[300] = "";
    if (depth > 4) {
        snprintf(err, errlen, "%s: indexes nested deeper than 4", ref_text);
        return -EINVAL;
    }
    int rc = bundle_doc_children(body, len, media_type, &is_index, &type, &d, &n, why, sizeof(why));
    if (rc) {
        snprintf(err, errlen, "%s: manifest %s: %s", ref_text, digest, why);
        return rc;
    }
    if ((rc = put_manifest(ex, digest, body, len, err, errlen)))
        goto out;
    if (!is_index) {
        for (size_t i = 0; i < n && !rc; i++)
            if (!d[i].foreign) /* never in a registry: the client fetches them elsewhere */
                rc = queue_blob(ex, &d[i], path_name);
        if (rc)
            snprintf(err, errlen, "out of memory");
        goto out;
    }
    int *keep = calloc(n ? n : 1, sizeof(*keep));
    if (!keep) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    bundle_select_children(d, n, ex->platforms, ex->n_platforms, keep);
    size_t kept = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (!keep[i])
            continue;
        kept++;
        if (!bundle_manifest_type(d[i].media_type)) {
            snprintf(err, errlen, "%s: index %s names %s of media type %.100s, not a manifest",
                     ref_text, digest, d[i].digest, d[i].media_type);
            rc = -EINVAL;
            break;
        }
        rc = walk_child(ex, ref_text, path_name, &d[i], depth, err, errlen);
    }
    free(keep);
    if (!rc && kept == 0 && depth == 0) {
        char have[1024], want[512] = "";
        list_platforms(d, n, have, sizeof(have));
        for (size_t i = 0; i < ex->n_platforms; i++) {
            char p[200];
            bundle_platform_format(&ex->platforms[i], p, sizeof(p));
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%s", i ? ", " : "", p);
        }
        snprintf(err, errlen, "%s: no manifest for %s (the index has %s)", ref_text, want,
                 have[0] ? have : "no platforms");
        rc = -ENOENT;
    }
out:
    free(d);
    return rc;
}

static int ann(struct buf *b, int *first, const char *key, const char *value)
{
    int rc = buf_printf(b, "%s", *first ? "" : ",") || json_put_string(b, key) ||
             buf_printf(b, ":") || json_put_string(b, value);
    *first = 0;
    return rc ? -ENOMEM : 0;
}

static int index_entry(struct exporter *ex, const struct bundle_name *nm, const char *digest,
                       const char *media_type, size_t size, int stale)
{
    char full[1024], validated[32], platforms[BUNDLE_PLATFORMS_MAX * 200] = "";
    bundle_name_full(nm, ex->host, full, sizeof(full));
    snprintf(validated, sizeof(validated), "%llu", (unsigned long long)clock_wall_ms());
    for (size_t i = 0; i < ex->n_platforms; i++) {
        char p[200];
        bundle_platform_format(&ex->platforms[i], p, sizeof(p));
        snprintf(platforms + strlen(platforms), sizeof(platforms) - strlen(platforms), "%s%s",
                 i ? "," : "", p);
    }
    struct buf *b = &ex->index;
    int first = 1;
    int rc = buf_printf(b, "%s{\"mediaType\":", ex->images ? "," : "") ||
             json_put_string(b, bundle_oci_type(media_type)) ||
             buf_printf(b, ",\"digest\":\"%s\",\"size\":%zu,\"annotations\":{", digest, size);
    rc = rc || ann(b, &first, BUNDLE_ANN_REF_NAME, full) ||
         ann(b, &first, BUNDLE_ANN_CONTAINERD_NAME, full) ||
         ann(b, &first, BUNDLE_ANN_KIND, nm->hosted ? "hosted" : "upstream") ||
         (!nm->hosted && ann(b, &first, BUNDLE_ANN_UPSTREAM, nm->upstream)) ||
         ann(b, &first, BUNDLE_ANN_REPOSITORY, nm->repo) ||
         (nm->tag[0] && ann(b, &first, BUNDLE_ANN_TAG, nm->tag)) ||
         ann(b, &first, BUNDLE_ANN_MEDIA_TYPE, media_type) ||
         (bundle_type_is_index(media_type) && platforms[0] &&
          ann(b, &first, BUNDLE_ANN_PLATFORMS, platforms)) ||
         (!stale && !nm->hosted && nm->tag[0] && ann(b, &first, BUNDLE_ANN_VALIDATED, validated)) ||
         buf_printf(b, "}}");
    return rc ? -ENOMEM : 0;
}

static int export_image(struct exporter *ex, const char *ref_text, char *err, size_t errlen)
{
    struct bundle_name nm;
    if (bundle_name_parse(ex->cfg, ref_text, &nm, err, errlen))
        return -EINVAL;
    /* a hosted image has no upstream to fetch a left-out platform from: it goes whole */
    size_t n_platforms = ex->n_platforms;
    if (nm.hosted && n_platforms) {
        fprintf(stderr, "regcache: export: %s is hosted: every platform is exported\n", ref_text);
        ex->n_platforms = 0;
    }
    struct response r;
    char digest[BUNDLE_DIGEST_MAX];
    response_init(&r, ex, ex->cfg->max_manifest_bytes);
    const char *reference = nm.digest[0] ? nm.digest : nm.tag;
    int rc = fetch_manifest(ex, ref_text, nm.path_name, reference, &r, digest, err, errlen);
    const char *type = NULL;
    if (!rc) {
        char why[300] = "";
        type = bundle_manifest_type(r.content_type);
        const char *body = r.body.data ? r.body.data : "";
        struct bundle_desc *d = NULL;
        size_t n;
        int is_index;
        if (bundle_doc_children(body, r.body.len, type, &is_index, &type, &d, &n, why,
                                sizeof(why))) {
            snprintf(err, errlen, "%s: manifest %s: %s", ref_text, digest, why);
            rc = -EINVAL;
        }
        free(d);
    }
    if (!rc)
        rc = walk(ex, ref_text, nm.path_name, digest, type, r.body.data ? r.body.data : "",
                  r.body.len, 0, err, errlen);
    if (!rc &&
        (rc = index_entry(ex, &nm, digest, type, r.body.len, strcasecmp(r.x_cache, "stale") == 0)))
        snprintf(err, errlen, "out of memory");
    if (!rc)
        ex->images++;
    ex->n_platforms = n_platforms;
    buf_free(&r.body);
    return rc;
}

/* ---- pass 2: blobs ---- */

static int export_blob(struct exporter *ex, const struct pending_blob *b, char *err, size_t errlen)
{
    char name[128], path[1024], why[512];
    blob_name(b->digest, name, sizeof(name));
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", b->path_name, b->digest);
    int rc = tar_write_header(ex->out, name, b->size, '0');
    if (rc) {
        snprintf(err, errlen, "cannot write %s: %s", ex->tmp_path, strerror(-rc));
        return rc;
    }
    struct response r;
    response_init(&r, ex, EXPORT_ERROR_BODY_MAX);
    r.md = EVP_MD_CTX_new();
    if (!r.md || !EVP_DigestInit_ex(r.md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(r.md);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = mirror_get(ex, path, 0, &r, why, sizeof(why));
    if (rc) {
        snprintf(err, errlen, "blob %s: %s", b->digest, why);
    } else if (r.status != 200) {
        describe_error(&r, why, sizeof(why));
        snprintf(err, errlen, "blob %s (through %s): %s", b->digest, b->path_name, why);
        rc = -EIO;
    } else {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        char got[BUNDLE_DIGEST_MAX] = "sha256:";
        EVP_DigestFinal_ex(r.md, md, &n);
        for (unsigned i = 0; i < n; i++)
            snprintf(got + 7 + 2 * i, 3, "%02x", md[i]);
        if (r.streamed != b->size) {
            snprintf(err, errlen, "blob %s: the mirror sent %llu bytes, its manifest says %llu",
                     b->digest, (unsigned long long)r.streamed, (unsigned long long)b->size);
            rc = -EBADMSG;
        } else if (strcmp(got, b->digest) != 0) {
            snprintf(err, errlen, "blob %s: the bytes the mirror sent hash to %s", b->digest, got);
            rc = -EBADMSG;
        } else if ((rc = tar_write_pad(ex->out, b->size))) {
            snprintf(err, errlen, "cannot write %s: %s", ex->tmp_path, strerror(-rc));
        }
    }
    EVP_MD_CTX_free(r.md);
    buf_free(&r.body);
    if (!rc) {
        ex->blobs_written++;
        ex->bytes_written += b->size;
    }
    return rc;
}

/* ---- --since ---- */

static int read_since(struct exporter *ex, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "--since %s: %s", path, strerror(errno));
        return -errno;
    }
    struct tar_reader r;
    struct tar_entry e;
    tar_reader_init(&r, f);
    int rc, n = 0;
    while ((rc = tar_next(&r, &e)) == 1) {
        const char *hex = e.name + 13;
        char digest[BUNDLE_DIGEST_MAX];
        if (e.type != '0' || strncmp(e.name, "blobs/sha256/", 13) != 0 || strlen(hex) != 64)
            continue;
        snprintf(digest, sizeof(digest), "sha256:%s", hex);
        if (!ref_digest_is_sha256(digest, strlen(digest)))
            continue;
        if (mark(ex->left_out, digest)) {
            rc = -ENOMEM;
            snprintf(r.err, sizeof(r.err), "out of memory");
            break;
        }
        n++;
    }
    fclose(f);
    if (rc < 0) {
        snprintf(err, errlen, "--since %s: %s", path, r.err);
        return rc;
    }
    if (n == 0) {
        snprintf(err, errlen, "--since %s: not a bundle (no blobs/sha256/ entries)", path);
        return -EINVAL;
    }
    return 0;
}

/* ---- the command ---- */

/* The mirror's URL from cfg->listen: loopback in place of a wildcard address. */
static void default_mirror(const struct config *cfg, char *out, size_t len)
{
    const char *listen = cfg->listen ? cfg->listen : "127.0.0.1:5000";
    const char *colon = strrchr(listen, ':');
    const char *port = colon ? colon + 1 : "5000";
    char host[256];
    size_t hlen = colon ? (size_t)(colon - listen) : strlen(listen);
    if (hlen >= sizeof(host))
        hlen = sizeof(host) - 1;
    memcpy(host, listen, hlen);
    host[hlen] = '\0';
    if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    else if (strcmp(host, "[::]") == 0 || strcmp(host, "::") == 0)
        snprintf(host, sizeof(host), "[::1]");
    snprintf(out, len, "%s://%s:%s", cfg->tls_cert ? "https" : "http", host, port);
}

/* host[:port] of a URL, without userinfo. */
static void url_host(const char *url, char *out, size_t len)
{
    const char *s = strstr(url, "://");
    s = s ? s + 3 : url;
    size_t n = strcspn(s, "/");
    const char *at = memchr(s, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - s);
        s = at + 1;
    }
    snprintf(out, len, "%.*s", (int)n, s);
}

static void usage(void)
{
    fprintf(stderr, "usage: regcache export REF... -o FILE [-c FILE] "
                    "[--platform PLATFORM]... [--since OLD.tar] [--mirror URL]\n");
}

static void exporter_free(struct exporter *ex)
{
    if (ex->curl)
        curl_easy_cleanup(ex->curl);
    map_free(ex->written);
    map_free(ex->left_out);
    map_free(ex->queued);
    free(ex->blobs);
    buf_free(&ex->index);
}

static int finish_file(struct exporter *ex, char *err, size_t errlen)
{
    struct buf doc;
    buf_init(&doc, BUNDLE_INDEX_JSON_MAX);
    int rc = buf_printf(&doc, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[",
                        MEDIA_BUNDLE_OCI_INDEX) ||
                     buf_append(&doc, ex->index.data ? ex->index.data : "", ex->index.len) ||
                     buf_printf(&doc, "]}\n")
                 ? -ENOMEM
                 : 0;
    if (rc)
        snprintf(err, errlen, "index.json larger than %d bytes", BUNDLE_INDEX_JSON_MAX);
    if (!rc &&
        ((rc = write_entry(ex, "index.json", doc.data, doc.len)) || (rc = tar_write_end(ex->out))))
        snprintf(err, errlen, "cannot write %s: %s", ex->tmp_path, strerror(-rc));
    buf_free(&doc);
    if (!rc && (fflush(ex->out) || fsync(fileno(ex->out)))) {
        rc = -errno;
        snprintf(err, errlen, "cannot write %s: %s", ex->tmp_path, strerror(errno));
    }
    return rc;
}

int bundle_export_main(int argc, char **argv)
{
    const char *refs[EXPORT_MAX_REFS], *config_path = NULL, *since = NULL, *mirror = NULL;
    size_t n_refs = 0;
    struct exporter ex;
    memset(&ex, 0, sizeof(ex));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has_value)
            ex.out_path = argv[++i];
        else if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && has_value)
            config_path = argv[++i];
        else if (!strcmp(a, "--since") && has_value)
            since = argv[++i];
        else if (!strcmp(a, "--mirror") && has_value)
            mirror = argv[++i];
        else if (!strcmp(a, "--platform") && has_value) {
            if (ex.n_platforms == BUNDLE_PLATFORMS_MAX) {
                fprintf(stderr, "regcache: export: at most %d --platform\n", BUNDLE_PLATFORMS_MAX);
                return 2;
            }
            if (bundle_platform_parse(argv[++i], &ex.platforms[ex.n_platforms])) {
                fprintf(stderr,
                        "regcache: export: --platform %s: not os/arch[/variant] "
                        "(e.g. linux/amd64, linux/arm64/v8)\n",
                        argv[i]);
                return 2;
            }
            ex.n_platforms++;
        } else if (a[0] == '-') {
            fprintf(stderr, "regcache: export: unexpected argument '%s'\n", a);
            usage();
            return 2;
        } else if (n_refs == EXPORT_MAX_REFS) {
            fprintf(stderr, "regcache: export: at most %d images at once\n", EXPORT_MAX_REFS);
            return 2;
        } else {
            refs[n_refs++] = a;
        }
    }
    if (!n_refs || !ex.out_path) {
        usage();
        return 2;
    }
    struct config cfg;
    char err[2048] = "";
    config_defaults(&cfg);
    if (config_path && config_load(config_path, &cfg, err, sizeof(err))) {
        fprintf(stderr, "regcache: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    ex.cfg = &cfg;
    /* every name is checked before anything is fetched */
    for (size_t i = 0; i < n_refs; i++) {
        struct bundle_name nm;
        if (bundle_name_parse(&cfg, refs[i], &nm, err, sizeof(err))) {
            fprintf(stderr, "regcache: export: %s\n", err);
            config_free(&cfg);
            return 2;
        }
    }
    int status = 1, rc = 0;
    if (mirror)
        snprintf(ex.base, sizeof(ex.base), "%s", mirror);
    else
        default_mirror(&cfg, ex.base, sizeof(ex.base));
    size_t blen = strlen(ex.base);
    while (blen && ex.base[blen - 1] == '/')
        ex.base[--blen] = '\0';
    url_host(ex.base, ex.host, sizeof(ex.host));
    buf_init(&ex.index, BUNDLE_INDEX_JSON_MAX);
    ex.written = map_new();
    ex.left_out = map_new();
    ex.queued = map_new();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) || !(ex.curl = curl_easy_init()) || !ex.written ||
        !ex.left_out || !ex.queued) {
        fprintf(stderr, "regcache: export: out of memory\n");
        goto out;
    }
    curl_easy_setopt(ex.curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(ex.curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    /* a miss streams from the upstream through the mirror: only a stall is an error */
    curl_easy_setopt(ex.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(ex.curl, CURLOPT_LOW_SPEED_TIME, 120L);
    curl_easy_setopt(ex.curl, CURLOPT_USERAGENT, "regcache-export/" REGCACHE_VERSION);
    curl_easy_setopt(ex.curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (!mirror && cfg.tls_cert) {
        /* our own listener on loopback, by the address in our own config: its certificate
         * names the mirror's public name, not 127.0.0.1 (everything fetched is verified by
         * digest regardless) */
        curl_easy_setopt(ex.curl, CURLOPT_SSL_VERIFYHOST, 0L);
        curl_easy_setopt(ex.curl, CURLOPT_SSL_VERIFYPEER, 0L);
    }
    if (since && read_since(&ex, since, err, sizeof(err))) {
        fprintf(stderr, "regcache: export: %s\n", err);
        goto out;
    }
    /* the file appears under its name only when complete */
    char dir_copy[4096], base_copy[4096];
    snprintf(dir_copy, sizeof(dir_copy), "%s", ex.out_path);
    snprintf(base_copy, sizeof(base_copy), "%s", ex.out_path);
    snprintf(ex.tmp_path, sizeof(ex.tmp_path), "%s/.%s.XXXXXX", dirname(dir_copy),
             basename(base_copy));
    int fd = mkstemp(ex.tmp_path);
    if (fd < 0 || !(ex.out = fdopen(fd, "wb"))) {
        fprintf(stderr, "regcache: export: cannot create %s: %s\n", ex.tmp_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        ex.tmp_path[0] = '\0';
        goto out;
    }
    fchmod(fd, 0644); /* mkstemp's 0600: a bundle is meant to be carried and read */
    setvbuf(ex.out, NULL, _IOFBF, 1024 * 1024);
    static const char layout_doc[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
    if ((rc = write_entry(&ex, "oci-layout", layout_doc, strlen(layout_doc))) ||
        (rc = tar_write_header(ex.out, "blobs/", 0, '5')) ||
        (rc = tar_write_header(ex.out, "blobs/sha256/", 0, '5'))) {
        fprintf(stderr, "regcache: export: cannot write %s: %s\n", ex.tmp_path, strerror(-rc));
        goto out;
    }
    progress_start(&ex.progress, "export", "manifests");
    for (size_t i = 0; i < n_refs; i++) {
        if ((rc = export_image(&ex, refs[i], err, sizeof(err)))) {
            progress_clear(&ex.progress);
            fprintf(stderr, "regcache: export: %s\n", err);
            goto out;
        }
        ex.progress.items = ex.manifests;
        progress_draw(&ex.progress, 0);
    }
    /* pass 2: what the --since bundle holds is left out */
    ex.progress.unit = "blobs";
    ex.progress.items = 0;
    for (size_t i = 0; i < ex.n_blobs; i++) {
        if (!map_get(ex.left_out, ex.blobs[i].digest) && !map_get(ex.written, ex.blobs[i].digest)) {
            ex.progress.items_total++;
            ex.progress.bytes_total += ex.blobs[i].size;
        }
    }
    ex.progress.bytes = 0;
    progress_draw(&ex.progress, 1);
    for (size_t i = 0; i < ex.n_blobs; i++) {
        const struct pending_blob *b = &ex.blobs[i];
        if (map_get(ex.written, b->digest))
            continue; /* a config that is also a manifest's bytes: already there */
        ex.blob_count++;
        if (map_get(ex.left_out, b->digest)) {
            ex.left_out_count++;
            ex.left_out_bytes += b->size;
            continue;
        }
        if ((rc = export_blob(&ex, b, err, sizeof(err))) || (rc = mark(ex.written, b->digest))) {
            progress_clear(&ex.progress);
            fprintf(stderr, "regcache: export: %s\n", rc == -ENOMEM ? "out of memory" : err);
            goto out;
        }
        ex.progress.items++;
        progress_draw(&ex.progress, 0);
    }
    progress_clear(&ex.progress);
    if ((rc = finish_file(&ex, err, sizeof(err)))) {
        fprintf(stderr, "regcache: export: %s\n", err);
        goto out;
    }
    if (fclose(ex.out) != 0) {
        ex.out = NULL;
        fprintf(stderr, "regcache: export: cannot write %s: %s\n", ex.tmp_path, strerror(errno));
        goto out;
    }
    ex.out = NULL;
    if (rename(ex.tmp_path, ex.out_path)) {
        fprintf(stderr, "regcache: export: cannot rename %s to %s: %s\n", ex.tmp_path, ex.out_path,
                strerror(errno));
        goto out;
    }
    ex.tmp_path[0] = '\0';
    double secs = progress_seconds(&ex.progress);
    char b1[32], b2[32], b3[32];
    printf("export: %s: %llu image%s, %llu manifests, %llu blobs; %s written in %.1f s (%s/s)",
           ex.out_path, (unsigned long long)ex.images, ex.images == 1 ? "" : "s",
           (unsigned long long)ex.manifests, (unsigned long long)ex.blob_count,
           format_size(ex.bytes_written, b1, sizeof(b1)), secs,
           format_size(secs > 0 ? (uint64_t)((double)ex.bytes_written / secs) : 0, b2, sizeof(b2)));
    if (since)
        printf("; %llu manifests and blobs left out (%s, in %s)",
               (unsigned long long)ex.left_out_count,
               format_size(ex.left_out_bytes, b3, sizeof(b3)), since);
    printf("\n");
    status = 0;
out:
    if (ex.out)
        fclose(ex.out);
    if (ex.tmp_path[0])
        unlink(ex.tmp_path);
    exporter_free(&ex);
    curl_global_cleanup();
    config_free(&cfg);
    return status;
}
