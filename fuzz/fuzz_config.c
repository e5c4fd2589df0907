/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: YAML configuration files. */
#include "config/config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    if (!path)
        return 0;
    struct config c;
    char err[1024];
    config_defaults(&c);
    config_load(path, &c, err, sizeof(err));
    config_free(&c);
    return 0;
}
