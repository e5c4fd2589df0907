/* SPDX-License-Identifier: Apache-2.0 */
/* Untrusted bytes made safe for one log line: a JSON string's contents, or a quoted field of
 * the Combined Log Format. Both write at most outlen - 1 bytes and a NUL, never cut an escape
 * in half (a value that does not fit is cut short), and return the length written. */
#ifndef REGCACHE_UTIL_ESCAPE_H
#define REGCACHE_UTIL_ESCAPE_H

#include <stddef.h>

/* JSON string contents, without the quotes: '"' and '\' escaped, control characters as
 * \u00XX, well-formed UTF-8 kept, each byte of ill-formed UTF-8 (overlong forms, surrogates,
 * truncated sequences, stray continuation bytes) as \ufffd: the result always parses. */
size_t escape_json(char *out, size_t outlen, const char *s, size_t len);

/* A quoted log field's contents, in the style of Apache and nginx: printable ASCII as is, '"'
 * and '\' as \" and \\, every other byte (controls, DEL, non-ASCII) as \xHH. */
size_t escape_text(char *out, size_t outlen, const char *s, size_t len);

/* The length of the well-formed UTF-8 sequence at s (1..4), 0 when the bytes there are not
 * one. */
size_t utf8_sequence(const unsigned char *s, size_t len);

#endif
