/* SPDX-License-Identifier: Apache-2.0 */
/* File bodies over TLS. sendfile(2) cannot encrypt, so the bytes are read into the connection's
 * tls_buf and given to SSL_write. Reading them on the thread pool costs a round trip through
 * it (queue, wake a worker, wake the loop) per piece, which for a small hot blob costs more
 * than reading and encrypting it: so bytes already in the page cache are read on the loop with
 * preadv2(RWF_NOWAIT), which never waits for the disk (it stops short, or fails with EAGAIN,
 * at the first page not in memory). Only what is not resident goes to the thread pool.
 *
 * A small body is also joined to its response head in tls_buf, so that one SSL_write, and
 * one TLS record, carries both: a 4 KiB hit is one record and one send instead of two. Plain
 * HTTP joins them the same way: one read and one send in place of the head's send, the two
 * one-byte reads that show the file resident, and a sendfile.
 *
 * With kernel TLS (OpenSSL's SSL_OP_ENABLE_KTLS, the kernel's "tls" module loaded) the kernel
 * encrypts: resident file bytes then go out with SSL_sendfile from the loop, as sendfile does
 * for plain HTTP. Without it (the module missing, a cipher the kernel lacks) OpenSSL keeps
 * encrypting in user space and the paths above are used. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <openssl/bio.h>
#include <openssl/err.h>

#include "http/impl.h"

int tls_body_buffer(struct conn *c, size_t want)
{
    if (want > TLS_CHUNK)
        want = TLS_CHUNK;
    if (c->tls_buf && c->tls_cap >= want)
        return 0;
    /* only ever grown while empty: nothing to carry over */
    tls_body_free(c);
    if (want > TLS_JOIN_MAX) { /* a body of several records: a full-size buffer, kept */
        want = TLS_CHUNK;
        struct http_server *s = c->srv;
        if (s && s->n_tls_pool) {
            c->tls_buf = s->tls_pool[--s->n_tls_pool];
            c->tls_cap = TLS_CHUNK;
            return 0;
        }
    }
    if (!(c->tls_buf = malloc(want)))
        return -ENOMEM;
    c->tls_cap = want;
    return 0;
}

void tls_body_free(struct conn *c)
{
    struct http_server *s = c->srv;
    if (c->tls_buf && c->tls_cap == TLS_CHUNK && s && s->n_tls_pool < TLS_POOL_MAX)
        s->tls_pool[s->n_tls_pool++] = c->tls_buf; /* for the loop's next file body */
    else
        free(c->tls_buf);
    c->tls_buf = NULL;
    c->tls_cap = c->tls_len = c->tls_pos = c->tls_head = 0;
}

/* Up to count resident bytes of the body at its offset into tls_buf + at: >0 bytes read, 0
 * when the first of them is not in the page cache, or the read fails or finds the file short
 * (the thread pool's read then tells which). */
static size_t read_resident(struct conn *c, size_t at, size_t count)
{
    struct iovec v = {c->tls_buf + at, count};
    ssize_t n;
    do
        n = preadv2(c->src.fd, &v, 1, (off_t)c->src.offset, RWF_NOWAIT);
    while (n < 0 && errno == EINTR);
    return n > 0 ? (size_t)n : 0;
}

int tls_body_join_head(struct conn *c)
{
    if (c->src.readable || c->tls_len || c->out_pos || !c->out.len)
        return 0; /* a body still being written goes its own way */
    uint64_t body = c->src.end - c->src.offset;
    if (!body || c->out.len + body > TLS_JOIN_MAX)
        return 0;
    size_t head = c->out.len;
    if (tls_body_buffer(c, head + (size_t)body))
        return 0; /* the head goes alone */
    size_t n = read_resident(c, head, (size_t)body);
    if (!n)
        return 0;
    memcpy(c->tls_buf, c->out.data, head);
    c->tls_head = head;
    c->tls_len = head + n;
    c->tls_pos = 0;
    c->src.offset += n;
    c->out_pos = c->out.len; /* it goes out of tls_buf now */
    return 1;
}

size_t tls_body_read(struct conn *c, uint64_t avail)
{
    uint64_t count = avail - c->src.offset;
    if (count > TLS_CHUNK)
        count = TLS_CHUNK;
    if (tls_body_buffer(c, (size_t)count))
        return 0;
    size_t n = read_resident(c, 0, (size_t)count);
    if (n) {
        c->tls_head = 0;
        c->tls_len = n;
        c->tls_pos = 0;
        c->src.offset += n;
    }
    return n;
}

int tls_body_kernel(struct conn *c)
{
    return BIO_get_ktls_send(SSL_get_wbio(c->ssl));
}

ssize_t tls_body_sendfile(struct conn *c, off_t off, size_t count)
{
    ERR_clear_error();
    ossl_ssize_t n = SSL_sendfile(c->ssl, c->src.fd, off, count, 0);
    if (n >= 0)
        return n;
    int saved = errno;
    int e = SSL_get_error(c->ssl, (int)n);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_WRITE)
        return -EAGAIN;
    return saved ? -saved : -EIO;
}
