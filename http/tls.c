/* SPDX-License-Identifier: Apache-2.0 */
#include "http/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static int select_http1(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                        const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    /* only HTTP/1.1 is spoken: pick it when offered, otherwise let the client assume it */
    for (unsigned i = 0; i < inlen; i += 1u + in[i])
        if (in[i] == 8 && i + 9 <= inlen && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
    return SSL_TLSEXT_ERR_NOACK;
}

/* Handshakes with clients, counted by OpenSSL's info callback (on the thread of the loop
 * serving the connection: the counts are atomic), each connection once: ok when its handshake completed, failed
 * when this side sent a fatal alert before that. A client that just goes away is not counted,
 * nor anything after a completed handshake (TLS 1.3 session tickets, a close). */
static atomic_uint_fast64_t handshakes_ok, handshakes_failed;
static int counted_index = -1; /* ex_data of an SSL: non-NULL once it was counted */

static void on_info(const SSL *ssl, int where, int ret)
{
    SSL *s = (SSL *)ssl;
    if (counted_index < 0 || SSL_get_ex_data(s, counted_index))
        return;
    if (where & SSL_CB_HANDSHAKE_DONE) {
        atomic_fetch_add_explicit(&handshakes_ok, 1, memory_order_relaxed);
        SSL_set_ex_data(s, counted_index, (void *)1);
    } else if ((where & SSL_CB_ALERT) && (where & SSL_CB_WRITE) &&
               (ret >> 8) == SSL3_AL_FATAL) {
        atomic_fetch_add_explicit(&handshakes_failed, 1, memory_order_relaxed);
        SSL_set_ex_data(s, counted_index, (void *)1);
    }
}

void tls_handshakes(uint64_t *ok, uint64_t *failed)
{
    *ok = atomic_load_explicit(&handshakes_ok, memory_order_relaxed);
    *failed = atomic_load_explicit(&handshakes_failed, memory_order_relaxed);
}

struct ssl_ctx_st *tls_context_load(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    /* Released buffers keep an idle connection at a few hundred bytes; keeping them made no
     * difference measurable to small hits (bench/files.py) */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Kernel TLS when the kernel has it (the "tls" module): file bodies then go out with
     * SSL_sendfile (tls_body.c). Without it OpenSSL quietly encrypts in user space. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_ENABLE_KTLS);
    SSL_CTX_set_alpn_select_cb(ctx, select_http1, NULL);
    if (counted_index < 0)
        counted_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    SSL_CTX_set_info_callback(ctx, on_info);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "%s: cannot load the certificate chain: %s", cert,
                 ERR_reason_error_string(ERR_get_error()));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "%s: cannot load the private key: %s", key,
                 ERR_reason_error_string(ERR_get_error()));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "%s does not belong to the certificate in %s", key, cert);
        goto fail;
    }
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_context_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}
