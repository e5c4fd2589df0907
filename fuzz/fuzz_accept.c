/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: Accept lists against a media type (manifest negotiation). The input is
 * "<accept>\n<media type>". */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#include "util/accept.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *s = fuzz_cstring(data, size);
    if (!s)
        return 0;
    char *mt = strchr(s, '\n');
    if (mt)
        *mt++ = '\0';
    else
        mt = "application/vnd.oci.image.manifest.v1+json";
    int r = accept_allows(s, mt);
    if (r != 0 && r != 1)
        abort();
    if (accept_allows(s, mt) != r)
        abort(); /* no state */
    /* a plain media type (no list or parameter syntax, no edge blanks) always takes itself,
     * also appended to any list */
    size_t mlen = strlen(mt);
    if (mlen && !strpbrk(mt, ",; \t")) {
        if (!accept_allows(mt, mt))
            abort();
        char *joined = malloc(strlen(s) + mlen + 3);
        if (joined) {
            sprintf(joined, "%s, %s", s, mt);
            if (!accept_allows(joined, mt))
                abort();
            free(joined);
        }
    }
    free(s);
    return 0;
}
