/* SPDX-License-Identifier: Apache-2.0 */
#include "auth/token.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAC_BYTES 32
#define PAYLOAD_MAX 300

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url of n bytes; out needs 4 * ceil(n / 3) + 1 bytes. Returns the length. */
static size_t encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
    return o;
}

static int sextet(char ch)
{
    const char *p = ch ? strchr(b64url, ch) : NULL;
    return p ? (int)(p - b64url) : -1;
}

/* Decodes unpadded base64url; -1 on a bad character, length, non-canonical last character, or
 * overflow of outlen. */
static long decode(const char *in, size_t n, unsigned char *out, size_t outlen)
{
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        size_t chunk = n - i < 4 ? n - i : 4;
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            int s = k < chunk ? sextet(in[i + k]) : 0;
            if (s < 0)
                return -1;
            v = v << 6 | (uint32_t)s;
        }
        size_t bytes = chunk - 1;
        if (o + bytes > outlen)
            return -1;
        /* the bits past the last byte must be zero: one token, one spelling */
        if (bytes < 3 && (v & ((1u << (8 * (3 - bytes))) - 1)))
            return -1;
        for (size_t k = 0; k < bytes; k++)
            out[o++] = (unsigned char)(v >> (16 - 8 * k));
    }
    return (long)o;
}

static void mac_of(const struct token_key *key, const unsigned char *msg, size_t n,
                   unsigned char out[MAC_BYTES])
{
    unsigned len = MAC_BYTES;
    HMAC(EVP_sha256(), key->bytes, TOKEN_KEY_BYTES, msg, n, out, &len);
}

int token_issue(const struct token_key *key, const char *user, int64_t expires, char *out,
                size_t outlen)
{
    char payload[PAYLOAD_MAX];
    int n = snprintf(payload, sizeof(payload), "v1 %lld %s", (long long)expires, user);
    if (n < 0 || (size_t)n >= sizeof(payload))
        return -ENAMETOOLONG;
    unsigned char mac[MAC_BYTES];
    mac_of(key, (const unsigned char *)payload, (size_t)n, mac);
    size_t need = 4 * (((size_t)n + 2) / 3) + 1 + 4 * ((MAC_BYTES + 2) / 3) + 1;
    if (need > outlen)
        return -ENAMETOOLONG;
    size_t o = encode((const unsigned char *)payload, (size_t)n, out);
    out[o++] = '.';
    encode(mac, MAC_BYTES, out + o);
    return 0;
}

int token_verify(const struct token_key *key, const char *token, size_t len, int64_t now,
                 char *user, size_t userlen, int64_t *expires_out)
{
    const char *dot = memchr(token, '.', len);
    if (!dot)
        return -EINVAL;
    unsigned char payload[PAYLOAD_MAX + 1], mac[MAC_BYTES + 3], want[MAC_BYTES];
    long plen = decode(token, (size_t)(dot - token), payload, PAYLOAD_MAX);
    long mlen = decode(dot + 1, len - (size_t)(dot - token) - 1, mac, sizeof(mac));
    if (plen < 0 || mlen != MAC_BYTES)
        return -EINVAL;
    mac_of(key, payload, (size_t)plen, want);
    if (CRYPTO_memcmp(mac, want, MAC_BYTES) != 0)
        return -EINVAL;
    payload[plen] = '\0';
    if (memchr(payload, '\0', (size_t)plen) || strncmp((char *)payload, "v1 ", 3) != 0)
        return -EINVAL;
    char *end;
    long long expires = strtoll((char *)payload + 3, &end, 10);
    if (end == (char *)payload + 3 || *end != ' ')
        return -EINVAL;
    const char *holder = end + 1;
    if (strlen(holder) >= userlen)
        return -EINVAL;
    if (expires <= now)
        return -ETIMEDOUT;
    memcpy(user, holder, strlen(holder) + 1);
    if (expires_out)
        *expires_out = expires;
    return 0;
}

int token_key_load(const char *path, struct token_key *key, char *err, size_t errlen)
{
    /* never through a link planted in the store, never blocking on a FIFO */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
            close(fd);
            snprintf(err, errlen, "%s: not a regular file", path);
            return -EINVAL;
        }
        ssize_t n = read(fd, key->bytes, TOKEN_KEY_BYTES);
        int e = errno;
        close(fd);
        if (n == TOKEN_KEY_BYTES)
            return 0;
        snprintf(err, errlen, "%s: %s", path,
                 n < 0 ? strerror(e) : "too short to be a token key (delete it to make a new one)");
        return n < 0 ? -e : -EINVAL;
    }
    if (errno != ENOENT) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    if (RAND_bytes(key->bytes, TOKEN_KEY_BYTES) != 1) {
        snprintf(err, errlen, "%s: no random bytes for a new token key", path);
        return -EIO;
    }
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp); /* a leftover, or a link planted there: O_EXCL never writes through either */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    int r = fd < 0 || write(fd, key->bytes, TOKEN_KEY_BYTES) != TOKEN_KEY_BYTES || fsync(fd);
    int e = r ? (errno ? errno : EIO) : 0;
    if (fd >= 0 && close(fd) && !r) {
        r = 1;
        e = errno;
    }
    if (!r && rename(tmp, path)) {
        r = 1;
        e = errno;
    }
    if (r) {
        unlink(tmp);
        snprintf(err, errlen, "cannot write the token key %s: %s", path, strerror(e));
        return -e;
    }
    return 0;
}
