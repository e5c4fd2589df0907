/* SPDX-License-Identifier: Apache-2.0 */
/* regcache health [-c FILE] [--url URL] [--timeout DURATION]: asks a running mirror's /readyz
 * and says in one line whether it serves, for a container's HEALTHCHECK (no curl needed in the
 * image).
 *
 * The URL is the configuration's own listener seen from the same host: a wildcard address
 * (0.0.0.0, :port) becomes 127.0.0.1, [::] becomes [::1], a specific address or name is used
 * as it is; https when tls.cert is set. Without -c the embedded defaults stand
 * (http://127.0.0.1:5000/readyz). --url asks that URL instead (a URL with no path gets
 * /readyz). The certificate is not checked: the command asks whether the process answers, not
 * who it is. Proxies from the environment are never used.
 *
 * /readyz, not /livez: a container is healthy when it serves, and /readyz is 503 while the
 * store is reconciled at start, while the store or index cannot be written, and during the
 * drain after SIGTERM; it stays 200 through an upstream outage (daemon/probes.h).
 *
 * Prints "healthy: URL answered 200" or "unhealthy: URL ..." with the reason (the failed
 * checks of /readyz, the status, or why nothing answered) on standard output. Returns 0 when
 * healthy, 1 when not or when the configuration cannot be loaded, 2 on a usage error. */
#ifndef REGCACHE_DAEMON_HEALTH_H
#define REGCACHE_DAEMON_HEALTH_H

#include "config/config.h"

/* The probe URL for cfg's listener (see above) into url; 0, or -EINVAL when listen cannot be
 * parsed or the URL does not fit. */
int health_url(const struct config *cfg, char *url, size_t size);

/* argv: the arguments after "health". */
int health_main(int argc, char **argv);

#endif
