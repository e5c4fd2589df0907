/* libFuzzer: token responses, manifest reference walks and referrers indexes (JSON from the
 * network). */
#include <stdlib.h>
#include <string.h>

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
    return 0;
}
