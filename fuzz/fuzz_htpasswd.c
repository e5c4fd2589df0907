/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: htpasswd files. */
#include "auth/htpasswd.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    if (!path)
        return 0;
    struct htpasswd *h;
    char err[512];
    if (htpasswd_load(path, &h, err, sizeof(err)) == 0) {
        htpasswd_hash(h, "alice");
        htpasswd_free(h);
    }
    return 0;
}
