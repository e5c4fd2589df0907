/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: WWW-Authenticate challenges from upstream registries. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#include "upstream/challenge.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *s = fuzz_cstring(data, size);
    if (!s)
        return 0;
    struct auth_challenge ch;
    if (auth_challenge_parse(s, &ch) == 0 &&
        (strlen(ch.realm) >= sizeof(ch.realm) || strlen(ch.scope) >= sizeof(ch.scope)))
        abort();
    free(s);
    return 0;
}
