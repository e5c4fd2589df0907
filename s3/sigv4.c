/* SPDX-License-Identifier: Apache-2.0 */
/* AWS Signature Version 4: canonical request, string to sign, signing key (sigv4.h). */
#include "s3/sigv4.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#define CANON_MAX 8192
#define ALGORITHM "AWS4-HMAC-SHA256"

/* A bounded string being built; overflow is remembered and reported once at the end. */
struct text {
    char *p;
    size_t len, cap;
    int overflow;
};

static void text_init(struct text *t, char *buf, size_t cap)
{
    t->p = buf;
    t->len = 0;
    t->cap = cap;
    t->overflow = cap == 0;
    if (cap)
        buf[0] = '\0';
}

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->overflow || t->len + n + 1 > t->cap) {
        t->overflow = 1;
        return;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void text_str(struct text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

static int unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static void text_encode(struct text *t, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (unreserved(*c) || (keep_slash && *c == '/')) {
            text_add(t, (const char *)c, 1);
        } else {
            char e[3] = {'%', hex[*c >> 4], hex[*c & 15]};
            text_add(t, e, 3);
        }
    }
}

int sigv4_uri_encode(const char *in, int keep_slash, char *out, size_t len)
{
    struct text t;
    text_init(&t, out, len);
    text_encode(&t, in, keep_slash);
    return t.overflow ? -ENAMETOOLONG : 0;
}

static void hex_of(const unsigned char *b, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void hmac(const void *key, size_t keylen, const char *msg, size_t msglen,
                 unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, msglen, out, &len);
}

/* ---- canonical query and headers ---- */

struct encoded_pair {
    char name[256], value[1024];
};

static int pair_cmp(const void *a, const void *b)
{
    const struct encoded_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static int encode_query(const struct sigv4_pair *q, size_t n, struct encoded_pair *out)
{
    for (size_t i = 0; i < n; i++) {
        if (!q[i].name || !q[i].name[0])
            return -EINVAL;
        if (sigv4_uri_encode(q[i].name, 0, out[i].name, sizeof(out[i].name)) ||
            sigv4_uri_encode(q[i].value ? q[i].value : "", 0, out[i].value,
                             sizeof(out[i].value)))
            return -ENAMETOOLONG;
    }
    qsort(out, n, sizeof(*out), pair_cmp);
    return 0;
}

static void add_query(struct text *t, const struct encoded_pair *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            text_str(t, "&");
        text_str(t, p[i].name);
        text_str(t, "=");
        text_str(t, p[i].value);
    }
}

/* Lower-cased name; value trimmed, inner runs of spaces and tabs collapsed to one space. */
static int canon_header(const char *name, const char *value, struct encoded_pair *out)
{
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(out->name))
        return n ? -ENAMETOOLONG : -EINVAL;
    for (size_t i = 0; i <= n; i++)
        out->name[i] = (char)tolower((unsigned char)name[i]);
    size_t o = 0;
    int space = 0;
    const char *v = value ? value : "";
    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = 1;
            continue;
        }
        if (o + 3 >= sizeof(out->value))
            return -ENAMETOOLONG;
        if (space)
            out->value[o++] = ' ';
        space = 0;
        out->value[o++] = *v;
    }
    out->value[o] = '\0';
    return 0;
}

/* The canonical headers of r (host, r's headers, x-amz-date when amz_date is not NULL),
 * sorted; *n their number. */
static int canon_headers(const struct sigv4_request *r, const char *amz_date,
                         struct encoded_pair *h, size_t *n)
{
    size_t k = 0;
    int e;
    if ((e = canon_header("host", r->host, &h[k++])))
        return e;
    for (size_t i = 0; i < r->n_headers; i++)
        if (!r->headers[i].name || (e = canon_header(r->headers[i].name, r->headers[i].value,
                                                     &h[k++])))
            return r->headers[i].name ? e : -EINVAL;
    if (amz_date && (e = canon_header("x-amz-date", amz_date, &h[k++])))
        return e;
    qsort(h, k, sizeof(*h), pair_cmp);
    for (size_t i = 1; i < k; i++)
        if (!strcmp(h[i].name, h[i - 1].name))
            return -EINVAL;
    *n = k;
    return 0;
}

static void add_signed_names(struct text *t, const struct encoded_pair *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            text_str(t, ";");
        text_str(t, h[i].name);
    }
}

static int valid(const struct sigv4_request *r)
{
    return r && r->method && r->method[0] && r->host && r->host[0] && r->path &&
           r->path[0] == '/' && r->region && r->region[0] && r->service && r->service[0] &&
           r->access_key && r->access_key[0] && r->secret_key &&
           r->n_query <= SIGV4_MAX_PAIRS && r->n_headers + 2 <= SIGV4_MAX_PAIRS &&
           (r->n_query == 0 || r->query) && (r->n_headers == 0 || r->headers);
}

static void amz_date_of(int64_t when, char out[SIGV4_AMZ_DATE_LEN + 1])
{
    time_t t = (time_t)when;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, SIGV4_AMZ_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

/* The signature (hex) of a canonical request made at amz_date. */
static void sign_canonical(const struct sigv4_request *r, const char *amz_date,
                           const char *canonical, size_t canonical_len, char sig[65])
{
    unsigned char h[32], k[32];
    char hexd[65], date[9], sts[512], key[256];
    SHA256((const unsigned char *)canonical, canonical_len, h);
    hex_of(h, 32, hexd);
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    int n = snprintf(sts, sizeof(sts), ALGORITHM "\n%s\n%s/%s/%s/aws4_request\n%s", amz_date,
                     date, r->region, r->service, hexd);
    int kn = snprintf(key, sizeof(key), "AWS4%s", r->secret_key);
    hmac(key, (size_t)kn, date, 8, k);
    hmac(k, 32, r->region, strlen(r->region), k);
    hmac(k, 32, r->service, strlen(r->service), k);
    hmac(k, 32, "aws4_request", 12, k);
    hmac(k, 32, sts, (size_t)n, h);
    hex_of(h, 32, sig);
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(k, sizeof(k));
}

/* The canonical request into t: query q (already encoded and sorted), headers h. */
static void canonical_request(struct text *t, const struct sigv4_request *r,
                              const struct encoded_pair *q, size_t nq,
                              const struct encoded_pair *h, size_t nh, const char *payload)
{
    text_str(t, r->method);
    text_str(t, "\n");
    text_encode(t, r->path, 1);
    text_str(t, "\n");
    add_query(t, q, nq);
    text_str(t, "\n");
    for (size_t i = 0; i < nh; i++) {
        text_str(t, h[i].name);
        text_str(t, ":");
        text_str(t, h[i].value);
        text_str(t, "\n");
    }
    text_str(t, "\n");
    add_signed_names(t, h, nh);
    text_str(t, "\n");
    text_str(t, payload);
}

static int credential_scope_ok(const struct sigv4_request *r)
{
    return strlen(r->region) < 64 && strlen(r->service) < 64 && strlen(r->access_key) < 128 &&
           strlen(r->secret_key) < 200;
}

int sigv4_sign(const struct sigv4_request *r, struct sigv4_signed *out)
{
    if (!valid(r) || !out || !r->payload_sha256)
        return -EINVAL;
    if (!credential_scope_ok(r))
        return -ENAMETOOLONG;
    static __thread struct encoded_pair q[SIGV4_MAX_PAIRS], h[SIGV4_MAX_PAIRS];
    static __thread char canon[CANON_MAX];
    size_t nh;
    int e;
    amz_date_of(r->time, out->amz_date);
    if ((e = encode_query(r->query, r->n_query, q)) ||
        (e = canon_headers(r, out->amz_date, h, &nh)))
        return e;
    struct text t;
    text_init(&t, canon, sizeof(canon));
    canonical_request(&t, r, q, r->n_query, h, nh, r->payload_sha256);
    if (t.overflow)
        return -ENAMETOOLONG;
    sign_canonical(r, out->amz_date, t.p, t.len, out->signature);

    struct text a;
    text_init(&a, out->authorization, sizeof(out->authorization));
    char scope[256];
    snprintf(scope, sizeof(scope), "%.8s/%s/%s/aws4_request", out->amz_date, r->region,
             r->service);
    text_str(&a, ALGORITHM " Credential=");
    text_str(&a, r->access_key);
    text_str(&a, "/");
    text_str(&a, scope);
    text_str(&a, ", SignedHeaders=");
    add_signed_names(&a, h, nh);
    text_str(&a, ", Signature=");
    text_str(&a, out->signature);
    return a.overflow ? -ENAMETOOLONG : 0;
}

int sigv4_presign(const struct sigv4_request *r, unsigned expires_s, char *out, size_t len)
{
    if (!valid(r) || !out || expires_s < 1 || expires_s > 604800 ||
        r->n_query + 6 > SIGV4_MAX_PAIRS)
        return -EINVAL;
    if (!credential_scope_ok(r))
        return -ENAMETOOLONG;
    static __thread struct encoded_pair q[SIGV4_MAX_PAIRS], h[SIGV4_MAX_PAIRS];
    static __thread char canon[CANON_MAX];
    char amz_date[SIGV4_AMZ_DATE_LEN + 1], credential[512], expires[16], names[1024];
    size_t nh;
    int e;
    amz_date_of(r->time, amz_date);
    if ((e = canon_headers(r, NULL, h, &nh)))
        return e;
    struct text nt;
    text_init(&nt, names, sizeof(names));
    add_signed_names(&nt, h, nh);
    if (nt.overflow)
        return -ENAMETOOLONG;
    snprintf(credential, sizeof(credential), "%s/%.8s/%s/%s/aws4_request", r->access_key,
             amz_date, r->region, r->service);
    snprintf(expires, sizeof(expires), "%u", expires_s);

    struct sigv4_pair all[SIGV4_MAX_PAIRS];
    size_t n = 0;
    for (size_t i = 0; i < r->n_query; i++)
        all[n++] = r->query[i];
    all[n++] = (struct sigv4_pair){"X-Amz-Algorithm", ALGORITHM};
    all[n++] = (struct sigv4_pair){"X-Amz-Credential", credential};
    all[n++] = (struct sigv4_pair){"X-Amz-Date", amz_date};
    all[n++] = (struct sigv4_pair){"X-Amz-Expires", expires};
    all[n++] = (struct sigv4_pair){"X-Amz-SignedHeaders", names};
    if ((e = encode_query(all, n, q)))
        return e;
    struct text t;
    text_init(&t, canon, sizeof(canon));
    canonical_request(&t, r, q, n, h, nh, SIGV4_UNSIGNED_PAYLOAD);
    if (t.overflow)
        return -ENAMETOOLONG;
    char sig[65];
    sign_canonical(r, amz_date, t.p, t.len, sig);

    struct text o;
    text_init(&o, out, len);
    text_encode(&o, r->path, 1);
    text_str(&o, "?");
    add_query(&o, q, n);
    text_str(&o, "&X-Amz-Signature=");
    text_str(&o, sig);
    return o.overflow ? -ENAMETOOLONG : 0;
}
