/* SPDX-License-Identifier: Apache-2.0 */
/* The S3 client's settings as the configuration's `s3` section gives them: one place for the
 * daemon's tier (cache/l2.c) and `regcache s3-sync`. */
#ifndef REGCACHE_S3_SETTINGS_H
#define REGCACHE_S3_SETTINGS_H

#include "config/config.h"
#include "s3/client.h"

/* Fills *out from cfg's s3_* fields (pointers into cfg: valid while cfg is). */
void s3_settings_from_config(const struct config *cfg, struct s3_settings *out);

#endif
