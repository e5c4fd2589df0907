/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: request targets into routes (path and query from the network). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#include "registry/route.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *s = fuzz_cstring(data, size);
    if (!s)
        return 0;
    char *query = strchr(s, '?');
    if (query)
        *query++ = '\0';
    struct route r;
    route_parse(s, query, &r);
    char out[64];
    route_query_param(query, "ns", out, sizeof(out));
    route_query_param(query, "n", out, sizeof(out));
    free(s);
    return 0;
}
