/* SPDX-License-Identifier: Apache-2.0 */
#include "bundle/bundle.h"

#include <stdio.h>

int bundle_import_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "regcache: import: not yet\n");
    return 1;
}
