/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: Range headers against blob sizes; Content-Range answers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#include "util/range.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    uint64_t blob = 0;
    if (size >= 8) {
        memcpy(&blob, data, 8);
        data += 8;
        size -= 8;
    }
    char *s = fuzz_cstring(data, size);
    if (!s)
        return 0;
    uint64_t first = 0, last = 0;
    enum range_result r = range_parse(s, blob, &first, &last);
    if (r == RANGE_PARTIAL && (first > last || last >= blob))
        abort(); /* the contract: a partial range lies inside the blob */
    uint64_t n = 0;
    if (content_range_parse(s, &first, &last, &n) == 0 && (first > last || last >= n))
        abort(); /* the contract: an accepted Content-Range lies inside its complete length */
    free(s);
    return 0;
}
