/* SPDX-License-Identifier: Apache-2.0 */
/* The status page's files, embedded at build time by ui/embed.py from ui/page/. */
#ifndef REGCACHE_UI_ASSETS_H
#define REGCACHE_UI_ASSETS_H

#include <stddef.h>

struct ui_asset {
    const char *name; /* its file name in ui/page/ */
    const char *content_type;
    const char *hash; /* the first 12 hex digits of its sha256 */
    const unsigned char *data;
    size_t len;
};

extern const struct ui_asset ui_assets[];
extern const size_t ui_n_assets;

#endif
