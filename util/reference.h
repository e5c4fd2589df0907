/* SPDX-License-Identifier: Apache-2.0 */
/* The distribution spec's grammar for repository names, tags and digests.
 * Everything taken from a request path is checked here before it touches disk or upstream. */
#ifndef REGCACHE_UTIL_REFERENCE_H
#define REGCACHE_UTIL_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>

#define REF_NAME_MAX 255   /* whole repository name, components joined by '/' */
#define REF_TAG_MAX 128
#define REF_DIGEST_MAX 135 /* "sha512:" + 128 hex */

/* name := component ('/' component)*, component := [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*,
 * total length 1..REF_NAME_MAX. s need not be NUL-terminated. */
bool ref_name_valid(const char *s, size_t len);

/* tag := [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */
bool ref_tag_valid(const char *s, size_t len);

/* digest := "sha256:" 64 lowercase hex | "sha512:" 128 lowercase hex */
bool ref_digest_valid(const char *s, size_t len);

/* True for a valid sha256 digest (the only algorithm the store keeps). */
bool ref_digest_is_sha256(const char *s, size_t len);

#endif
