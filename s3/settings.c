/* SPDX-License-Identifier: Apache-2.0 */
/* struct s3_settings from the configuration's `s3` section. See s3/settings.h. */
#include "s3/settings.h"

void s3_settings_from_config(const struct config *cfg, struct s3_settings *out)
{
    *out = (struct s3_settings){.endpoint = cfg->s3_endpoint, .bucket = cfg->s3_bucket,
                                .region = cfg->s3_region, .access_key = cfg->s3_access_key,
                                .secret_key = cfg->s3_secret_key, .prefix = cfg->s3_prefix,
                                .ca_file = cfg->s3_ca_file, .part_size = cfg->s3_part_size};
}
