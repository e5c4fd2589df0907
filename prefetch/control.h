/* SPDX-License-Identifier: Apache-2.0 */
/* The socket `regcache prefetch` talks to: a UNIX socket in the storage directory
 * (PREFETCH_SOCKET), mode 0600, so only the daemon's own user (and root) can connect; a peer
 * of another uid is refused as well (SO_PEERCRED). One run per connection:
 *
 *   client:  one reference per line, then an empty line
 *   daemon:  "step {json}\n" as the run goes (what it is fetching and the figures so far),
 *            then "done {json}\n" with the run's result (the figures of its record), or
 *            "error bad|busy MESSAGE\n" (a reference that does not parse; too many runs waiting)
 *
 * The run is prefetch_run's: the same budget rules as a scheduled one, trigger "command".
 * A client that goes away leaves its run to finish unreported. Loop thread only. */
#ifndef REGCACHE_PREFETCH_CONTROL_H
#define REGCACHE_PREFETCH_CONTROL_H

#include <uv.h>

#include "prefetch/prefetch.h"

#define PREFETCH_SOCKET "prefetch.sock"
#define PREFETCH_CONTROL_REFS_MAX 256 /* references in one request */
#define PREFETCH_CONTROL_LINE_MAX 2048

struct prefetch_control;

/* Listens on storage/PREFETCH_SOCKET (replacing a socket left there). 0, or a negative errno
 * after logging why (the daemon serves on without it). */
int prefetch_control_new(uv_loop_t *loop, const char *storage, struct prefetch *p,
                         struct prefetch_control **out);
/* Stops listening, drops the connections (their runs go on unreported) and removes the socket
 * when it is still this daemon's. Before prefetch_stop; frees c once its handles are closed. */
void prefetch_control_close(struct prefetch_control *c);

/* A result as the protocol's JSON (malloc'ed, NUL-terminated), or NULL. */
char *prefetch_result_json(const struct prefetch_result *r);

#endif
