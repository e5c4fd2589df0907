/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP Range header for blob GETs (RFC 9110 section 14), single byte ranges only. */
#ifndef REGCACHE_UTIL_RANGE_H
#define REGCACHE_UTIL_RANGE_H

#include <stdint.h>

enum range_result {
    RANGE_FULL = 0,          /* no usable Range: serve the whole body with 200 */
    RANGE_PARTIAL = 1,       /* serve [*first, *last] (inclusive) with 206 */
    RANGE_UNSATISFIABLE = 2, /* answer 416 with Content-Range: bytes * / size */
};

/* hdr may be NULL (no header). Accepts "bytes=a-b", "bytes=a-", "bytes=-n" with optional spaces
 * around the numbers; last is clamped to size-1. A syntactically invalid header, a unit other
 * than bytes, or several ranges give RANGE_FULL (RFC: a server may ignore Range). A valid range
 * starting at or past size, or "bytes=-0", or any range when size is 0, gives
 * RANGE_UNSATISFIABLE. */
enum range_result range_parse(const char *hdr, uint64_t size, uint64_t *first, uint64_t *last);

/* The Content-Range of a 206 (RFC 9110 section 14.4): "bytes first-last/complete" with optional
 * spaces around the numbers. 0 with the three numbers; -1 for anything else: another unit, an
 * unsatisfied-range form ("bytes * / n"), an unknown complete length ("/ *"), first > last,
 * last >= complete, a number past 2^64-1, trailing bytes. hdr may be NULL (-1). */
int content_range_parse(const char *hdr, uint64_t *first, uint64_t *last, uint64_t *complete);

#endif
