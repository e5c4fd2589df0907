/* SPDX-License-Identifier: Apache-2.0 */
/* Wall-clock and monotonic time in milliseconds. */
#ifndef REGCACHE_UTIL_CLOCK_H
#define REGCACHE_UTIL_CLOCK_H

#include <stdint.h>

uint64_t clock_wall_ms(void);
uint64_t clock_mono_us(void);

#endif
