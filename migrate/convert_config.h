/* SPDX-License-Identifier: Apache-2.0 */
/* `regcache convert-config config.yml [-o mirror.yml]`: turns a registry:2 (distribution)
 * configuration into a regcache configuration: what has a counterpart is carried over, every
 * other key is named on stderr (file, line, key) with what to do instead. */
#ifndef REGCACHE_MIGRATE_CONVERT_CONFIG_H
#define REGCACHE_MIGRATE_CONVERT_CONFIG_H

/* argv: what follows the command's name. 0 converted (warnings or not), 1 failed (unreadable
 * or not YAML; nothing written), 2 usage. */
int convert_config_main(int argc, char **argv);

#endif
