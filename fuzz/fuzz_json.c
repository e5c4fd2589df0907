/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: token responses, manifest reference walks, referrers indexes and pushed
 * manifests read for their references, subject and referrers descriptor (JSON from the
 * network). */
#include <stdlib.h>
#include <string.h>

#include "hosted/impl.h"
#include "upstream/auth.h"
#include "util/json.h"

static int count(void *ud, const char *value)
{
    (void)value;
    (*(int *)ud)++;
    return 0;
}

static int walk_descriptor(void *ud, const char *elem, size_t len)
{
    char at[64];
    (*(int *)ud)++;
    json_get_string(elem, len, "artifactType", at, sizeof(at));
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *s = (const char *)data;
    char *token = NULL;
    uint64_t exp;
    if (token_parse_response(s, size, &token, &exp) == 0)
        free(token);
    int n = 0;
    json_each_string(s, size, "digest", count, &n);
    char out[128];
    json_get_string(s, size, "mediaType", out, sizeof(out));
    json_get_uint(s, size, "expires_in", &exp);
    const char *v;
    size_t vlen;
    if (json_get_raw(s, size, "manifests", &v, &vlen) == 0) {
        if (v < s || v + vlen > s + size)
            abort(); /* the raw value must lie inside the input */
        json_each_element(v, vlen, walk_descriptor, &n);
    }
    struct hosted_manifest_info info;
    if (hosted__manifest_parse(s, size, &info) == 0) {
        struct buf d;
        buf_init(&d, 1u << 20);
        /* what goes into a referrers index must itself be valid JSON (a key no member can
         * have: the walk validates without unescaping any value) */
        if (hosted__descriptor(&d, "application/vnd.oci.image.manifest.v1+json", "sha256:00",
                               size, info.artifact_type, info.annotations,
                               info.annotations_len) == 0 &&
            json_each_string(d.data, d.len, "\x01", count, &n))
            abort();
        buf_free(&d);
        hosted__manifest_info_free(&info);
    }
    return 0;
}
