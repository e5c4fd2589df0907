/* SPDX-License-Identifier: Apache-2.0 */
/* regcache client-config docker|containerd|podman|k3s --mirror URL [-c FILE] [--write]
 * [--root DIR] [--skip-verify]: each client's configuration for every upstream of the mirror,
 * printed, or written into place with backups (clients/clients.h). */
#ifndef REGCACHE_DAEMON_CLIENT_CONFIG_H
#define REGCACHE_DAEMON_CLIENT_CONFIG_H

#define CLIENT_CONFIG_USAGE                                                                        \
    "regcache client-config docker|containerd|podman|k3s --mirror URL [-c FILE] [--write]\n"       \
    "                [--root DIR] [--skip-verify]   client configuration for every upstream"

/* argv: the arguments after "client-config". Returns the exit status: 0, 1 (a configuration,
 * file or write error), 2 (a bad command line). */
int client_config_main(int argc, char **argv);

#endif
