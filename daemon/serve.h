/* SPDX-License-Identifier: Apache-2.0 */
/* `regcache serve`: wires the modules together and runs the event loop until a signal. */
#ifndef REGCACHE_DAEMON_SERVE_H
#define REGCACHE_DAEMON_SERVE_H

#include "config/config.h"

/* Returns the process exit status. */
int serve(const struct config *cfg);

#endif
