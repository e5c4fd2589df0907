/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP Accept lists matched against one media type (manifest negotiation). */
#ifndef REGCACHE_UTIL_ACCEPT_H
#define REGCACHE_UTIL_ACCEPT_H

/* 1 when accept (a comma-separated list, repeated headers already joined with ", ") takes
 * media_type: listed (case-insensitively, parameters aside) or covered by a wildcard (any type,
 * or any application type), and not with q=0. A missing or empty list takes everything. */
int accept_allows(const char *accept, const char *media_type);

#endif
