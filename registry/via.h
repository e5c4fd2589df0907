/* SPDX-License-Identifier: Apache-2.0 */
/* Via (RFC 9110 section 7.6.3): the proxies a request passed through, one entry each,
 * "[protocol-name/]protocol-version received-by [(comment)]", separated by commas. A request
 * whose Via names this mirror (its instance id as received-by) has come back through it: a loop
 * of mirrors (a parent whose upstream is its own child, a mirror whose upstream is itself). One
 * that passed more than VIA_MAX_HOPS proxies is refused too, as a loop this mirror is not part
 * of yet would be. Pure: no I/O. */
#ifndef REGCACHE_REGISTRY_VIA_H
#define REGCACHE_REGISTRY_VIA_H

#include <stddef.h>

#define VIA_MAX_HOPS 8
/* The chain forwarded is never longer than what came (HTTP_MAX_VIA) and a separator per hop. */
#define VIA_CHAIN_MAX (2048 + 2 * VIA_MAX_HOPS + 1)

enum via_verdict { VIA_OK = 0, VIA_LOOP, VIA_TOO_MANY };

/* Reads a request's Via (NULL when it had none; too_long: its Via lines were longer than the
 * front keeps, which is refused as too many hops). self is this mirror's instance id. Writes
 * into chain (VIA_CHAIN_MAX bytes) the entries to forward, "version received-by" each with
 * comments dropped (a malformed entry is counted but not forwarded), "" when none, and into
 * *hops how many entries came. */
enum via_verdict via_check(const char *via, int too_long, const char *self, char *chain,
                           size_t *hops);

#endif
