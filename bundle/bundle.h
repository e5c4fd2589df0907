/* SPDX-License-Identifier: Apache-2.0 */
/* Offline bundles: `regcache export` writes images, as clients name them through the mirror,
 * into one tar file (an OCI image layout, bundle/layout.h); `regcache import` stores such a
 * file into a mirror that cannot reach the upstreams, where its tags are then served.
 *
 * export asks the running mirror over HTTP, as any client does, for everything it writes:
 * what the cache lacks is fetched from the upstream and cached on the way, access times and
 * counters move as for a pull, and export needs no access to the store's directory. Every
 * manifest and blob is hashed against its digest before the file is complete.
 *
 * import reads the file once: each blob is written through the store's verified streaming
 * fill, so bytes that do not hash to their name are never stored; then the manifests are
 * walked from the store and the tags recorded in the index (cached tags of their upstream, or
 * hosted tags). Anything corrupt or missing fails the whole import, and what it had added to
 * the store is removed again. */
#ifndef REGCACHE_BUNDLE_BUNDLE_H
#define REGCACHE_BUNDLE_BUNDLE_H

/* `regcache export REF... -o FILE [-c FILE] [--platform os/arch[/variant]]...
 *  [--since OLD] [--mirror URL]`: argv[0] is "export". Returns the exit status. */
int bundle_export_main(int argc, char **argv);

/* `regcache import FILE [-c FILE]`: argv[0] is "import". Returns the exit status. */
int bundle_import_main(int argc, char **argv);

#endif
