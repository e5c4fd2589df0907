/* SPDX-License-Identifier: Apache-2.0 */
/* Just enough JSON for the mirror: reading top-level members of an object (token responses)
 * and writing strings safely. */
#ifndef REGCACHE_UTIL_JSON_H
#define REGCACHE_UTIL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Finds top-level member key of the JSON object in [s, s+len) whose value is a string and copies
 * it (unescaped; \uXXXX outside ASCII is rejected) into out. Returns the length, -ENOENT when
 * absent or not a string, -ENOBUFS when it does not fit, -EINVAL on malformed JSON. */
int json_get_string(const char *s, size_t len, const char *key, char *out, size_t outlen);

/* Same for a non-negative integer member. */
int json_get_uint(const char *s, size_t len, const char *key, uint64_t *out);

/* Validates the whole document and calls fn for every string member named key, at any depth
 * (e.g. every "digest" of a manifest). fn's non-zero return stops the walk and is returned;
 * -EINVAL for malformed JSON. */
int json_each_string(const char *s, size_t len, const char *key,
                     int (*fn)(void *ud, const char *value), void *ud);

/* The raw text of top-level member key's value (any type), within [s, s+len). Returns 0,
 * -ENOENT when absent, -EINVAL on malformed JSON. */
int json_get_raw(const char *s, size_t len, const char *key, const char **value,
                 size_t *value_len);

/* Calls fn with the raw text of each element of the JSON array in [s, s+len). fn's non-zero
 * return stops the walk and is returned; -EINVAL when it is not a well-formed array. */
int json_each_element(const char *s, size_t len,
                      int (*fn)(void *ud, const char *elem, size_t elem_len), void *ud);

/* Appends s as a JSON string literal (with quotes), escaping as needed. */
int json_put_string(struct buf *b, const char *s);
/* As json_put_string, with '<', '>', '&', '\'' and DEL escaped too (\u00XX), so that no value
 * can close a tag or start one even where the JSON is read as something else (a page). */
int json_put_string_markup_safe(struct buf *b, const char *s);

#endif
