/* SPDX-License-Identifier: Apache-2.0 */
/* What the S3 tier holds of manifests and tags, and how it is read back: the object keys
 * (manifests/sha256/<2>/<64>; tags/<upstream>/<repository>/<tag>) and the tag record, a small
 * JSON object naming the upstream, repository and tag it is for, the digest and media type of
 * the manifest the tag pointed at, and when the upstream last confirmed it (ms since the
 * epoch). A record is trusted only as far as it parses and names what it was asked for: its
 * manifest is verified against the digest before anything is served (manifests.c). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cache/impl.h"
#include "util/json.h"
#include "util/reference.h"

int l2_manifest_key(const char *digest, char *out, size_t len)
{
    char blob[128];
    int r = s3_blob_key(digest, blob, sizeof(blob)); /* checks the digest */
    if (r)
        return r;
    int n = snprintf(out, len, "manifests/%s", blob + strlen("blobs/"));
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* A name that can be one segment of a key: not empty, no '/', nothing outside the characters
 * upstream names and tags are made of. */
static int key_segment(const char *s)
{
    if (!*s || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '-' || *s == '_' || *s == ':'))
            return 0;
    return 1;
}

/* Repository paths: segments of the same characters, separated by single '/'. */
static int key_path(const char *s)
{
    char seg[256];
    while (*s) {
        size_t n = strcspn(s, "/");
        if (n == 0 || n >= sizeof(seg))
            return 0;
        memcpy(seg, s, n);
        seg[n] = '\0';
        if (!key_segment(seg))
            return 0;
        s += n;
        if (*s == '/' && !*++s)
            return 0;
    }
    return 1;
}

int l2_tag_key(const char *upstream, const char *repo, const char *tag, char *out, size_t len)
{
    if (!key_segment(upstream) || !key_path(repo) || !key_segment(tag))
        return -EINVAL;
    int n = snprintf(out, len, "tags/%s/%s/%s", upstream, repo, tag);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int l2_tag_record_format(struct buf *b, const char *upstream, const char *repo,
                         const char *tag, const char *digest, const char *media_type,
                         uint64_t confirmed_ms)
{
    if (buf_printf(b, "{\"upstream\":") || json_put_string(b, upstream) ||
        buf_printf(b, ",\"repository\":") || json_put_string(b, repo) ||
        buf_printf(b, ",\"tag\":") || json_put_string(b, tag) ||
        buf_printf(b, ",\"digest\":") || json_put_string(b, digest) ||
        buf_printf(b, ",\"mediaType\":") || json_put_string(b, media_type) ||
        buf_printf(b, ",\"confirmed\":%llu}\n", (unsigned long long)confirmed_ms))
        return -ENOMEM;
    return 0;
}

static int no_member(void *ud, const char *value)
{
    (void)ud;
    (void)value;
    return 0;
}

static int member_is(const char *body, size_t len, const char *key, const char *want,
                     char *why, size_t whylen)
{
    char got[512];
    if (json_get_string(body, len, key, got, sizeof(got)) < 0 || strcmp(got, want) != 0) {
        snprintf(why, whylen, "its %s is not %.200s", key, want);
        return 0;
    }
    return 1;
}

int l2_tag_record_parse(const char *body, size_t len, const char *upstream, const char *repo,
                        const char *tag, struct l2_tag_record *out, char *why, size_t whylen)
{
    char type[MEDIA_TYPE_MAX];
    if (json_each_string(body, len, "\x01", no_member, NULL) == -EINVAL) {
        snprintf(why, whylen, "it is not JSON");
        return -EINVAL;
    }
    if (!member_is(body, len, "upstream", upstream, why, whylen) ||
        !member_is(body, len, "repository", repo, why, whylen) ||
        !member_is(body, len, "tag", tag, why, whylen))
        return -EINVAL;
    if (json_get_string(body, len, "digest", out->digest, sizeof(out->digest)) < 0 ||
        !ref_digest_is_sha256(out->digest, strlen(out->digest))) {
        snprintf(why, whylen, "it names no sha256 digest");
        return -EINVAL;
    }
    const char *t = NULL;
    if (json_get_string(body, len, "mediaType", type, sizeof(type)) < 0 ||
        !(t = index_manifest_type(type))) {
        snprintf(why, whylen, "it names no manifest media type");
        return -EINVAL;
    }
    snprintf(out->media_type, sizeof(out->media_type), "%s", t);
    if (json_get_uint(body, len, "confirmed", &out->confirmed_ms) != 0) {
        snprintf(why, whylen, "it has no confirmed time");
        return -EINVAL;
    }
    return 0;
}
