/* SPDX-License-Identifier: Apache-2.0 */
/* What a pushed manifest refers to, read from its JSON: the content that must already be in the
 * registry (config, layers, index entries, artifact blobs) and the subject, which need not be. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hosted/impl.h"
#include "util/json.h"

static int add_ref(struct hosted_manifest_info *info, const char *digest)
{
    char **refs = realloc(info->refs, (info->n_refs + 1) * sizeof(*refs));
    if (!refs)
        return -ENOMEM;
    info->refs = refs;
    if (!(refs[info->n_refs] = strdup(digest)))
        return -ENOMEM;
    info->n_refs++;
    return 0;
}

/* The digest of descriptor object [s, s+len) into out: -EBADMSG when absent or invalid. */
static int descriptor_digest(const char *s, size_t len, char *out, size_t outlen)
{
    int n = json_get_string(s, len, "digest", out, outlen);
    if (n == -ENOBUFS || n == -ENOENT || (n >= 0 && !ref_digest_valid(out, (size_t)n)))
        return -EBADMSG;
    return n < 0 ? n : 0;
}

static int add_descriptor(void *ud, const char *s, size_t len)
{
    char digest[REF_DIGEST_MAX + 1];
    int r = descriptor_digest(s, len, digest, sizeof(digest));
    return r ? r : add_ref(ud, digest);
}

/* Every descriptor of array member key (absent: none). */
static int add_descriptors(struct hosted_manifest_info *info, const char *body, size_t len,
                           const char *key)
{
    const char *v;
    size_t vlen;
    int r = json_get_raw(body, len, key, &v, &vlen);
    if (r == -ENOENT)
        return 0;
    if (r)
        return r;
    if (*v != '[')
        return -EBADMSG;
    return json_each_element(v, vlen, add_descriptor, info);
}

static int no_member(void *ud, const char *value)
{
    (void)ud;
    (void)value;
    return 0;
}

int hosted__manifest_parse(const char *body, size_t len, struct hosted_manifest_info *info)
{
    memset(info, 0, sizeof(*info));
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", body[i]))
        i++;
    /* the whole document is valid JSON: a key no member can have checks it without a match */
    if (i == len || body[i] != '{' || json_each_string(body, len, "\x01", no_member, NULL))
        return -EINVAL;
    const char *v;
    size_t vlen;
    int r = json_get_raw(body, len, "config", &v, &vlen);
    char config_type[HOSTED_MEDIA_TYPE_MAX] = "";
    if (r == 0) {
        if (*v != '{')
            r = -EBADMSG;
        else
            r = add_descriptor(info, v, vlen);
        if (!r && json_get_string(v, vlen, "mediaType", config_type, sizeof(config_type)) < 0)
            config_type[0] = '\0';
    } else if (r == -ENOENT) {
        r = 0;
    }
    if (!r)
        r = add_descriptors(info, body, len, "layers");
    if (!r)
        r = add_descriptors(info, body, len, "manifests");
    if (!r)
        r = add_descriptors(info, body, len, "blobs");
    if (!r && (r = json_get_raw(body, len, "subject", &v, &vlen)) == 0)
        r = *v == '{' ? descriptor_digest(v, vlen, info->subject, sizeof(info->subject)) : -EBADMSG;
    else if (r == -ENOENT)
        r = 0;
    if (r) {
        hosted__manifest_info_free(info);
        return r;
    }
    if (json_get_string(body, len, "artifactType", info->artifact_type,
                        sizeof(info->artifact_type)) <= 0)
        snprintf(info->artifact_type, sizeof(info->artifact_type), "%s", config_type);
    if (json_get_raw(body, len, "annotations", &v, &vlen) == 0 && *v == '{') {
        info->annotations = v;
        info->annotations_len = vlen;
    }
    return 0;
}

void hosted__manifest_info_free(struct hosted_manifest_info *info)
{
    for (size_t i = 0; i < info->n_refs; i++)
        free(info->refs[i]);
    free(info->refs);
    info->refs = NULL;
    info->n_refs = 0;
}

int hosted__descriptor(struct buf *out, const char *media_type, const char *digest, uint64_t size,
                       const char *artifact_type, const char *annotations, size_t annotations_len)
{
    int r = buf_append(out, "{\"mediaType\":", 13);
    if (!r)
        r = json_put_string(out, media_type);
    if (!r)
        r = buf_append(out, ",\"digest\":", 10);
    if (!r)
        r = json_put_string(out, digest);
    if (!r)
        r = buf_printf(out, ",\"size\":%llu", (unsigned long long)size);
    if (!r && artifact_type && *artifact_type) {
        r = buf_append(out, ",\"artifactType\":", 16);
        if (!r)
            r = json_put_string(out, artifact_type);
    }
    if (!r && annotations && annotations_len) {
        r = buf_append(out, ",\"annotations\":", 15);
        if (!r)
            r = buf_append(out, annotations, annotations_len);
    }
    return r ? r : buf_append(out, "}", 1);
}

const char *hosted__manifest_type(const char *s, size_t len)
{
    static const char *const types[] = {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.artifact.manifest.v1+json",
    };
    const char *semi = memchr(s, ';', len);
    if (semi)
        len = (size_t)(semi - s);
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strlen(types[i]) == len && strncasecmp(types[i], s, len) == 0)
            return types[i];
    return NULL;
}
