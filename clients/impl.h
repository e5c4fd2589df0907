/* SPDX-License-Identifier: Apache-2.0 */
/* Shared inside clients/: quoting for the formats written, and daemon.json's merge. */
#ifndef REGCACHE_CLIENTS_IMPL_H
#define REGCACHE_CLIENTS_IMPL_H

#include <stddef.h>

#include "clients/clients.h"
#include "util/buf.h"

/* Appends s as a double-quoted string that JSON, TOML basic strings and YAML double-quoted
 * scalars all read back as s: '"' and '\' escaped, control characters and DEL as \u00XX.
 * Bytes from 0x80 up are copied (callers pass only ASCII, clients__ascii). */
int clients__put_quoted(struct buf *b, const char *s);

/* 1 when s is printable ASCII only (what every value written here must be). */
int clients__ascii(const char *s);

/* Merges the mirror into a daemon.json document [doc, doc+len) (len 0: no file yet) and writes
 * the whole document, every other key kept in its place, into out: registry-mirrors gets
 * m->url first unless listed (only with hub_mirror), insecure-registries gets m->hostport
 * unless listed (for plain http or skip_verify). A document that is not a JSON object, or whose
 * registry-mirrors or insecure-registries is not a list of strings, is refused: -EINVAL with
 * err saying "LINE: what" (the caller adds the file name). */
int clients__docker_merge(const char *doc, size_t len, const struct clients_mirror *m,
                          int hub_mirror, struct buf *out, char *err, size_t errlen);

#endif
