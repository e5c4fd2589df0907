/* SPDX-License-Identifier: Apache-2.0 */
/* The content epoch: a process-wide count of the changes that can make an answer given
 * earlier wrong now (a blob or manifest removed from the store, a tag moved or forgotten, a
 * hosted tag pushed or deleted). What a worker loop keeps of an answer is kept with the epoch
 * it was given in, and is used only while the epoch is still that one. Any thread. */
#ifndef REGCACHE_UTIL_EPOCH_H
#define REGCACHE_UTIL_EPOCH_H

#include <stdint.h>

uint64_t content_epoch(void);
void content_epoch_bump(void);

#endif
