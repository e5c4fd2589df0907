/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing of human-written quantities used by the config: durations and sizes. */
#ifndef REGCACHE_UTIL_PARSE_H
#define REGCACHE_UTIL_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Parses "0", "500ms", "30s", "5m", "24h", "7d" (one integer and one unit; "0" needs no unit)
 * into milliseconds. Returns 0, or -EINVAL on anything else (empty, negative, unknown unit,
 * overflow, trailing garbage). */
int parse_duration_ms(const char *s, uint64_t *out_ms);

/* Parses "0", "4096", "512KiB", "512MiB", "200GiB", "2TiB" and the decimal forms "10KB", "10MB",
 * "10GB", "10TB" (also "B" suffix) into bytes. Returns 0 or -EINVAL (also on overflow). */
int parse_size_bytes(const char *s, uint64_t *out_bytes);

/* The other way, for people: "512 B", "1.5 KiB", "12.3 MiB" ... "4.0 TiB" (one decimal past
 * bytes). Writes into buf and returns it. */
const char *format_size(uint64_t bytes, char *buf, size_t len);

/* Splits "host:port", "[v6addr]:port" or ":port" (host then "0.0.0.0") into host and port.
 * host must hold at least 256 bytes. Returns 0 or -EINVAL (no port, port not 1..65535,
 * host too long). */
int parse_listen(const char *s, char *host, int *port);

#endif
