/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: Via header values as a request brings them (joined lines), read for loops and
 * hops. The chain forwarded must fit its buffer, hold only well-formed entries, and never
 * name this mirror. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#include "registry/via.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *s = fuzz_cstring(data, size);
    if (!s)
        return 0;
    char chain[VIA_CHAIN_MAX];
    size_t hops;
    enum via_verdict v = via_check(s, 0, "self.example:5000", chain, &hops);
    if (strlen(chain) >= VIA_CHAIN_MAX || strlen(chain) > size + 2 * VIA_MAX_HOPS)
        abort();
    if (v == VIA_OK && (hops > VIA_MAX_HOPS || strstr(chain, " self.example:5000,") ||
                        strchr(chain, '(')))
        abort();
    if (v == VIA_TOO_MANY && hops <= VIA_MAX_HOPS)
        abort();
    free(s);
    return 0;
}
