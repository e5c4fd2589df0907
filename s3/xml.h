/* SPDX-License-Identifier: Apache-2.0 */
/* The little XML an S3 store answers with (listings, errors, UploadId): flat elements without
 * attributes, found by name. Not a general XML parser: no namespaces prefixes, CDATA or
 * comments, which S3 answers do not use. Pure functions: any thread. */
#ifndef REGCACHE_S3_XML_H
#define REGCACHE_S3_XML_H

#include <stddef.h>
#include <stdint.h>

/* The content of the first <name>...</name> element in [p, end): 0 with *content and *len
 * set, or -ENOENT. */
int xml_element(const char *p, const char *end, const char *name, const char **content,
                size_t *len);
/* The first <name> element's text with the five predefined entities and character references
 * decoded, NUL-terminated in out. 0, -ENOENT, -ENAMETOOLONG (too long for out) or -EINVAL
 * (a bad reference or markup inside). */
int xml_text(const char *p, const char *end, const char *name, char *out, size_t len);
/* An ISO 8601 UTC time as S3 writes it (2026-12-03T06:00:00.000Z) in seconds since the epoch;
 * -1 when it is not one. */
int64_t xml_time(const char *s);

#endif
