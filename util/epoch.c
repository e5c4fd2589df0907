/* SPDX-License-Identifier: Apache-2.0 */
#include "util/epoch.h"

#include <stdatomic.h>

static atomic_uint_fast64_t epoch = 1;

uint64_t content_epoch(void)
{
    return atomic_load_explicit(&epoch, memory_order_acquire);
}

void content_epoch_bump(void)
{
    atomic_fetch_add_explicit(&epoch, 1, memory_order_acq_rel);
}
