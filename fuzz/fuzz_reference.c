/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the spec's grammar for names, tags and digests. */
#include <stdlib.h>
#include <string.h>

#include "util/reference.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *s = (const char *)data;
    if (ref_name_valid(s, size) && (size == 0 || size > REF_NAME_MAX || memchr(s, '.', size) == s))
        abort(); /* a valid name is 1..255 bytes and never starts with '.' */
    if (ref_tag_valid(s, size) && (size == 0 || size > REF_TAG_MAX))
        abort();
    if (ref_digest_is_sha256(s, size) && size != 71)
        abort();
    ref_digest_valid(s, size);
    return 0;
}
