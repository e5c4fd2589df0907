/* SPDX-License-Identifier: Apache-2.0 */
/* TLS for the HTTP front (OpenSSL): TLS 1.2 and 1.3 only, a PEM certificate chain and key. */
#ifndef REGCACHE_HTTP_TLS_H
#define REGCACHE_HTTP_TLS_H

#include <stddef.h>
#include <stdint.h>

struct ssl_ctx_st;

/* Loads cert (chain allowed) and key into a new server context; NULL with err set on failure. */
struct ssl_ctx_st *tls_context_load(const char *cert, const char *key, char *err, size_t errlen);
void tls_context_free(struct ssl_ctx_st *ctx);
/* Handshakes with clients since start: completed, and refused with a fatal alert. */
void tls_handshakes(uint64_t *ok, uint64_t *failed);

#endif
