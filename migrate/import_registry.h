/* SPDX-License-Identifier: Apache-2.0 */
/* `regcache import-registry DIR [-c FILE] [--upstream NAME] [--hosted GLOB]...`: adopts the
 * filesystem storage of a registry:2 (or registry:3, the CNCF distribution registry) in place:
 * every blob verified by its hash and hard-linked into the store (copied when on another
 * filesystem), its manifests and tags indexed as cached content of one upstream or, for
 * repositories matching --hosted, as hosted repositories. Idempotent and resumable; refuses to
 * run while a daemon serves the store (migrate/adopt.h). */
#ifndef REGCACHE_MIGRATE_IMPORT_REGISTRY_H
#define REGCACHE_MIGRATE_IMPORT_REGISTRY_H

/* argv: what follows the command's name. Exit status: 0 done, 3 done but something was skipped
 * (corrupt or missing blobs, unreadable manifests), 1 failed, 2 usage, 130 interrupted (run it
 * again to finish). */
int import_registry_main(int argc, char **argv);

#endif
