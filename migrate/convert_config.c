/* SPDX-License-Identifier: Apache-2.0 */
#include "migrate/convert_config.h"
#include <stdio.h>
int convert_config_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "not yet\n");
    return 1;
}
