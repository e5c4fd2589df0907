/* libFuzzer: token responses and manifest reference walks (JSON from the network). */
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
    return 0;
}
