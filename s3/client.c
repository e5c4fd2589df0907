/* SPDX-License-Identifier: Apache-2.0 */
/* S3 requests on the upstream client's curl multi: signing, headers, bodies from memory or a
 * file, answers parsed (status, error XML, listings). See s3/client.h. */
#include "s3/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "metrics/metrics.h"
#include "s3/sigv4.h"
#include "s3/xml.h"
#include "upstream/upstream.h"
#include "util/buf.h"
#include "util/log.h"

#define S3_XML_MAX (4u << 20) /* a listing page or an error body */
#define S3_URL_MAX 4096
#define S3_KEY_MAX 1024
/* A request fails (-ETIMEDOUT) when connecting takes longer than S3_CONNECT_MS, or when no
 * byte moves for S3_STALL_S seconds (S3_STALL_BODY_S for a request that sends a body, which
 * the store may take a while to answer once it has it all): a store that accepts connections
 * and never answers costs a fill that long, then it asks the upstream. */
#define S3_CONNECT_MS 5000L
#define S3_STALL_S 10L
#define S3_STALL_BODY_S 30L

/* sha256 of the empty string: the payload hash of every request without a body */
static const char EMPTY_SHA256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct s3_client {
    struct upstream_client *uc;
    char *endpoint, *host, *bucket, *region, *access_key, *secret_key, *prefix, *ca_file;
    uint64_t part_size;
    struct s3_op *ops;         /* in flight */
    struct s3_upload *uploads; /* in progress */
};

enum op_kind { OP_GET, OP_HEAD, OP_PUT, OP_DELETE, OP_LIST, OP_UPLOADS, OP_CREATE, OP_PART,
               OP_COMPLETE, OP_ABORT };

struct s3_op {
    struct upstream_easy ue;
    struct s3_client *c;
    enum op_kind kind;
    CURL *easy;
    struct curl_slist *headers;
    /* the body sent: memory, or a file range */
    const char *mem;
    size_t mem_len, mem_off;
    int fd;
    uint64_t file_off, file_len, file_sent;
    /* the answer */
    long status;
    int64_t length, mtime;
    char etag[130], content_range[128], content_type[128];
    struct buf xml; /* answers other than a successful GET's body */
    int paused;
    s3_data_fn on_data;
    s3_done_fn done;
    s3_object_fn each;
    s3_multipart_fn each_multipart;
    void *ud;
    char errbuf[CURL_ERROR_SIZE];
    struct s3_op *next, *prev;
};

/* ---- settings ---- */

static int dup_or(char **dst, const char *s, const char *dflt)
{
    *dst = strdup(s ? s : dflt);
    return *dst ? 0 : -ENOMEM;
}

int s3_client_new(struct upstream_client *uc, const struct s3_settings *s, struct s3_client **out,
                  char *why, size_t whylen)
{
    *out = NULL;
    const char *ep = s->endpoint;
    size_t scheme = ep && !strncmp(ep, "http://", 7) ? 7 : ep && !strncmp(ep, "https://", 8) ? 8 : 0;
    if (!scheme || !ep[scheme] || strchr(ep + scheme, '/') || strchr(ep + scheme, '@')) {
        snprintf(why, whylen, "endpoint must be http(s)://host[:port] without a path");
        return -EINVAL;
    }
    if (!s->bucket || !*s->bucket || strlen(s->bucket) > 63 || strchr(s->bucket, '/')) {
        snprintf(why, whylen, "bucket must be a bucket name (1 to 63 characters, no '/')");
        return -EINVAL;
    }
    if (!s->access_key || !*s->access_key || !s->secret_key || !*s->secret_key) {
        snprintf(why, whylen, "an access key and a secret key are needed");
        return -EINVAL;
    }
    if (s->part_size && s->part_size < S3_PART_MIN) {
        snprintf(why, whylen, "part_size must be at least 5 MiB");
        return -EINVAL;
    }
    struct s3_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->uc = uc;
    c->part_size = s->part_size ? s->part_size : S3_PART_DEFAULT;
    if (dup_or(&c->endpoint, ep, "") || dup_or(&c->host, ep + scheme, "") ||
        dup_or(&c->bucket, s->bucket, "") || dup_or(&c->region, s->region, "us-east-1") ||
        dup_or(&c->access_key, s->access_key, "") || dup_or(&c->secret_key, s->secret_key, "") ||
        dup_or(&c->prefix, s->prefix, "") ||
        (s->ca_file && dup_or(&c->ca_file, s->ca_file, ""))) {
        s3_client_free(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

uint64_t s3_part_size(const struct s3_client *c)
{
    return c->part_size;
}

int s3_blob_key(const char *digest, char *out, size_t len)
{
    if (strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71)
        return -EINVAL;
    for (const char *p = digest + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return -EINVAL;
    int n = snprintf(out, len, "blobs/sha256/%.2s/%s", digest + 7, digest + 7);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* ---- answers ---- */

static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
    struct s3_op *op = ud;
    size_t len = size * n;
    if (len >= 5 && !strncmp(line, "HTTP/", 5)) { /* a new response: forget the last one's */
        op->length = -1;
        op->mtime = -1;
        op->etag[0] = op->content_range[0] = op->content_type[0] = '\0';
        return len;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return len;
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t vlen = (size_t)(end - v);
    char val[256];
    if (vlen >= sizeof(val))
        return len;
    memcpy(val, v, vlen);
    val[vlen] = '\0';
    if (nlen == 4 && !strncasecmp(line, "ETag", 4) && vlen < sizeof(op->etag))
        memcpy(op->etag, val, vlen + 1);
    else if (nlen == 14 && !strncasecmp(line, "Content-Length", 14))
        op->length = strtoll(val, NULL, 10);
    else if (nlen == 13 && !strncasecmp(line, "Content-Range", 13) &&
             vlen < sizeof(op->content_range))
        memcpy(op->content_range, val, vlen + 1);
    else if (nlen == 12 && !strncasecmp(line, "Content-Type", 12) &&
             vlen < sizeof(op->content_type))
        memcpy(op->content_type, val, vlen + 1);
    else if (nlen == 13 && !strncasecmp(line, "Last-Modified", 13)) {
        time_t t = curl_getdate(val, NULL);
        op->mtime = t < 0 ? -1 : (int64_t)t;
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    struct s3_op *op = ud;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(op->easy, CURLINFO_RESPONSE_CODE, &status);
    if (op->kind == OP_GET && (status == 200 || status == 206) && op->on_data) {
        int rc = op->on_data(op->ud, data, len);
        if (rc != S3_PAUSE && rc >= 0)
            metrics_s3_bytes(0, len);
        if (rc == S3_PAUSE) {
            op->paused = 1;
            return CURL_WRITEFUNC_PAUSE;
        }
        return rc < 0 ? 0 : len;
    }
    return buf_append(&op->xml, data, len) ? 0 : len;
}

static size_t on_read(char *dst, size_t size, size_t n, void *ud)
{
    struct s3_op *op = ud;
    size_t want = size * n;
    if (op->mem) {
        size_t left = op->mem_len - op->mem_off;
        size_t k = left < want ? left : want;
        memcpy(dst, op->mem + op->mem_off, k);
        op->mem_off += k;
        if (op->kind == OP_PUT)
            metrics_s3_bytes(1, k);
        return k;
    }
    uint64_t left = op->file_len - op->file_sent;
    size_t k = left < want ? (size_t)left : want;
    if (!k)
        return 0;
    ssize_t got = pread(op->fd, dst, k, (off_t)(op->file_off + op->file_sent));
    if (got <= 0)
        return CURL_READFUNC_ABORT; /* the file shrank or failed: the PUT is cut, nothing stored */
    op->file_sent += (uint64_t)got;
    metrics_s3_bytes(1, (uint64_t)got);
    return (size_t)got;
}

/* -errno for an HTTP status and the store's error code */
static int status_result(long status, const char *code)
{
    if (status >= 200 && status < 300)
        return 0;
    if (status == 404)
        return -ENOENT;
    if (status == 412)
        return -EEXIST;
    if (!strcmp(code, "XAmzContentSHA256Mismatch") || !strcmp(code, "BadDigest") ||
        !strcmp(code, "InvalidDigest"))
        return -EBADMSG;
    if (status == 401 || status == 403)
        return -EACCES;
    return -EIO;
}

static void op_unlink(struct s3_op *op)
{
    struct s3_client *c = op->c;
    if (op->prev)
        op->prev->next = op->next;
    else if (c->ops == op)
        c->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->next = op->prev = NULL;
}

static void op_free(struct s3_op *op)
{
    op_unlink(op);
    if (op->easy)
        curl_easy_cleanup(op->easy);
    curl_slist_free_all(op->headers);
    buf_free(&op->xml);
    free(op);
}

/* Calls the listing's callbacks for every entry; token: where the next page starts ("" when
 * this was the last). -EIO for a page that says more follow without a usable token (a
 * listing taken as complete then would hide the rest). */
static int parse_listing(struct s3_op *op, char *token, size_t tlen)
{
    const char *p = op->xml.data, *end = op->xml.data + op->xml.len;
    const char *blk;
    size_t blen;
    size_t plen = strlen(op->c->prefix);
    char key[S3_KEY_MAX + 1], num[32], when[64], id[512];
    const char *tag = op->kind == OP_LIST ? "Contents" : "Upload";
    while (xml_element(p, end, tag, &blk, &blen) == 0) {
        const char *be = blk + blen;
        if (xml_text(blk, be, "Key", key, sizeof(key)) == 0 && !strncmp(key, op->c->prefix, plen)) {
            if (op->kind == OP_LIST) {
                struct s3_object o = {.key = key + plen, .size = 0, .mtime = -1};
                if (xml_text(blk, be, "Size", num, sizeof(num)) == 0)
                    o.size = strtoull(num, NULL, 10);
                if (xml_text(blk, be, "LastModified", when, sizeof(when)) == 0)
                    o.mtime = xml_time(when);
                if (op->each)
                    op->each(op->ud, &o);
            } else if (xml_text(blk, be, "UploadId", id, sizeof(id)) == 0) {
                struct s3_multipart m = {.key = key + plen, .upload_id = id, .initiated = -1};
                if (xml_text(blk, be, "Initiated", when, sizeof(when)) == 0)
                    m.initiated = xml_time(when);
                if (op->each_multipart)
                    op->each_multipart(op->ud, &m);
            }
        }
        p = be;
    }
    token[0] = '\0';
    char truncated[8];
    if (op->kind == OP_LIST &&
        xml_text(op->xml.data, end, "IsTruncated", truncated, sizeof(truncated)) == 0 &&
        !strcmp(truncated, "true") &&
        (xml_text(op->xml.data, end, "NextContinuationToken", token, tlen) != 0 || !token[0])) {
        token[0] = '\0';
        return -EIO;
    }
    return 0;
}

static void count_request(const struct s3_op *op, const struct s3_reply *r)
{
    static const enum metrics_s3_op by_kind[] = {
        [OP_GET] = METRICS_S3_GET, [OP_HEAD] = METRICS_S3_HEAD, [OP_PUT] = METRICS_S3_PUT,
        [OP_DELETE] = METRICS_S3_DELETE, [OP_LIST] = METRICS_S3_LIST,
        [OP_UPLOADS] = METRICS_S3_LIST_UPLOADS, [OP_CREATE] = METRICS_S3_CREATE_UPLOAD,
        [OP_PART] = METRICS_S3_PUT_PART, [OP_COMPLETE] = METRICS_S3_COMPLETE_UPLOAD,
        [OP_ABORT] = METRICS_S3_ABORT_UPLOAD};
    enum metrics_s3_result res = METRICS_S3_ERROR;
    switch (r->result) {
    case 0: res = METRICS_S3_OK; break;
    case -ENOENT: res = METRICS_S3_NOT_FOUND; break;
    case -EEXIST: res = METRICS_S3_EXISTS; break;
    case -EBADMSG: res = METRICS_S3_BAD_DIGEST; break;
    case -EACCES: res = METRICS_S3_DENIED; break;
    case -ETIMEDOUT: res = METRICS_S3_TIMEOUT; break;
    case -EHOSTUNREACH: res = METRICS_S3_UNREACHABLE; break;
    default: res = METRICS_S3_ERROR; break;
    }
    metrics_s3_request(by_kind[op->kind], res);
}

static void op_done(struct upstream_easy *ue, int curl_result)
{
    struct s3_op *op = (struct s3_op *)ue;
    char code[128] = "", message[1024] = "", token[1024] = "";
    char etag[sizeof(op->etag)], content_range[sizeof(op->content_range)];
    memcpy(etag, op->etag, sizeof(etag)); /* op is gone when done runs */
    memcpy(content_range, op->content_range, sizeof(content_range));
    char content_type[sizeof(op->content_type)];
    memcpy(content_type, op->content_type, sizeof(content_type));
    struct s3_reply r = {.length = op->length, .mtime = op->mtime, .etag = etag,
                         .content_range = content_range, .content_type = content_type,
                         .code = code, .message = message};
    curl_easy_getinfo(op->easy, CURLINFO_RESPONSE_CODE, &r.status);
    if (curl_result != CURLE_OK) {
        /* no whole answer: cut, refused, timed out, or stopped by this side */
        r.result = curl_result == CURLE_ABORTED_BY_CALLBACK ? -ECANCELED
                   : curl_result == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
                   : curl_result == CURLE_WRITE_ERROR       ? -ECONNABORTED
                   : curl_result == CURLE_READ_ERROR        ? -EIO
                                                            : -EHOSTUNREACH;
        snprintf(message, sizeof(message), "%s",
                 op->errbuf[0] ? op->errbuf : curl_easy_strerror((CURLcode)curl_result));
    } else {
        if (op->xml.len && r.status >= 300) {
            const char *end = op->xml.data + op->xml.len;
            xml_text(op->xml.data, end, "Code", code, sizeof(code));
            xml_text(op->xml.data, end, "Message", message, sizeof(message));
        }
        r.result = status_result(r.status, code);
        if (r.result && !message[0])
            snprintf(message, sizeof(message), "the store answered %ld%s%s", r.status,
                     code[0] ? " " : "", code);
        if (!r.result && (op->kind == OP_LIST || op->kind == OP_UPLOADS)) {
            if (parse_listing(op, token, sizeof(token))) {
                r.result = -EIO;
                snprintf(message, sizeof(message), "the store said the listing goes on but "
                                                   "sent no usable continuation token");
            } else {
                snprintf(message, sizeof(message), "%s", token);
            }
        } else if (!r.result && op->kind == OP_CREATE) {
            if (xml_text(op->xml.data, op->xml.data + op->xml.len, "UploadId", message,
                         sizeof(message))) {
                r.result = -EIO;
                snprintf(message, sizeof(message), "the store sent no UploadId");
            }
        } else if (!r.result && op->kind == OP_COMPLETE && op->xml.len &&
                   xml_text(op->xml.data, op->xml.data + op->xml.len, "Code", code,
                            sizeof(code)) == 0) {
            /* CompleteMultipartUpload may fail with a 200 whose body is an error */
            xml_text(op->xml.data, op->xml.data + op->xml.len, "Message", message,
                     sizeof(message));
            r.result = status_result(500, code);
        }
    }
    count_request(op, &r);
    s3_done_fn done = op->done;
    void *ud = op->ud;
    op_free(op);
    if (done)
        done(ud, &r);
}

/* ---- requests ---- */

static int add_header(struct s3_op *op, const char *name, const char *value)
{
    char line[2048];
    snprintf(line, sizeof(line), "%s: %s", name, value);
    struct curl_slist *n = curl_slist_append(op->headers, line);
    if (!n)
        return -ENOMEM;
    op->headers = n;
    return 0;
}

/* Builds, signs and starts op: method on key (the prefix added; NULL: the bucket itself) with
 * query pairs and extra headers; payload_sha256 is the body's hash. */
static int op_start(struct s3_op *op, const char *method, const char *key,
                    const struct sigv4_pair *query, size_t n_query, const struct sigv4_pair *hdrs,
                    size_t n_hdrs, const char *payload_sha256, uint64_t body_len)
{
    struct s3_client *c = op->c;
    char path[S3_KEY_MAX + 128], epath[3 * sizeof(path)], url[S3_URL_MAX];
    int n = key ? snprintf(path, sizeof(path), "/%s/%s%s", c->bucket, c->prefix, key)
                : snprintf(path, sizeof(path), "/%s", c->bucket);
    if (n < 0 || (size_t)n >= sizeof(path) || sigv4_uri_encode(path, 1, epath, sizeof(epath)))
        return -ENAMETOOLONG;
    n = snprintf(url, sizeof(url), "%s%s", c->endpoint, epath);
    for (size_t i = 0; i < n_query && n > 0 && (size_t)n < sizeof(url); i++) {
        char en[256], ev[1024];
        if (sigv4_uri_encode(query[i].name, 0, en, sizeof(en)) ||
            sigv4_uri_encode(query[i].value ? query[i].value : "", 0, ev, sizeof(ev)))
            return -ENAMETOOLONG;
        n += snprintf(url + n, sizeof(url) - (size_t)n, "%c%s=%s", i ? '&' : '?', en, ev);
    }
    if (n < 0 || (size_t)n >= sizeof(url))
        return -ENAMETOOLONG;
    struct sigv4_pair all[SIGV4_MAX_PAIRS];
    size_t na = 0;
    all[na++] = (struct sigv4_pair){"x-amz-content-sha256", payload_sha256};
    for (size_t i = 0; i < n_hdrs && na < SIGV4_MAX_PAIRS; i++)
        all[na++] = hdrs[i];
    struct sigv4_request sr = {.method = method, .host = c->host, .path = path,
                               .query = query, .n_query = n_query, .headers = all,
                               .n_headers = na, .payload_sha256 = payload_sha256,
                               .time = (int64_t)time(NULL), .region = c->region,
                               .service = "s3", .access_key = c->access_key,
                               .secret_key = c->secret_key};
    struct sigv4_signed sig;
    int rc = sigv4_sign(&sr, &sig);
    if (rc)
        return rc;
    for (size_t i = 0; i < na; i++)
        if (add_header(op, all[i].name, all[i].value))
            return -ENOMEM;
    if (add_header(op, "x-amz-date", sig.amz_date) ||
        add_header(op, "Authorization", sig.authorization) || add_header(op, "Expect", ""))
        return -ENOMEM;
    if (!(op->easy = curl_easy_init()))
        return -ENOMEM;
    CURL *e = op->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, op->headers);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, op);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, op);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, op->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, S3_CONNECT_MS);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, body_len ? S3_STALL_BODY_S : S3_STALL_S);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (c->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (!strcmp(method, "HEAD")) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(method, "PUT")) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, op);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_len);
    } else if (!strcmp(method, "POST")) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, op);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    op->ue.easy = e;
    if ((rc = upstream_easy_add(c->uc, &op->ue)))
        return rc;
    op->prev = NULL;
    op->next = c->ops;
    if (c->ops)
        c->ops->prev = op;
    c->ops = op;
    return 0;
}

static struct s3_op *op_new(struct s3_client *c, enum op_kind kind, s3_done_fn done, void *ud)
{
    struct s3_op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->c = c;
    op->kind = kind;
    op->fd = -1;
    op->length = op->mtime = -1;
    op->done = done;
    op->ud = ud;
    op->ue.done = op_done;
    buf_init(&op->xml, S3_XML_MAX);
    return op;
}

/* op_start's failure: the op goes, the caller gets NULL */
static struct s3_op *started(struct s3_op *op, int rc)
{
    if (!rc)
        return op;
    log_warn("s3: a request could not be started: %s", strerror(-rc));
    op_free(op);
    return NULL;
}

struct s3_op *s3_get(struct s3_client *c, const char *key, uint64_t from, uint64_t to,
                     s3_data_fn on_data, s3_done_fn done, void *ud)
{
    struct s3_op *op = op_new(c, OP_GET, done, ud);
    if (!op)
        return NULL;
    op->on_data = on_data;
    char range[64];
    struct sigv4_pair h[1];
    size_t nh = 0;
    if (from || to != UINT64_MAX) {
        if (to == UINT64_MAX)
            snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", from);
        else
            snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, from, to);
        h[nh++] = (struct sigv4_pair){"range", range};
    }
    return started(op, op_start(op, "GET", key, NULL, 0, h, nh, EMPTY_SHA256, 0));
}

struct s3_op *s3_head(struct s3_client *c, const char *key, s3_done_fn done, void *ud)
{
    struct s3_op *op = op_new(c, OP_HEAD, done, ud);
    return op ? started(op, op_start(op, "HEAD", key, NULL, 0, NULL, 0, EMPTY_SHA256, 0)) : NULL;
}

struct s3_op *s3_delete(struct s3_client *c, const char *key, s3_done_fn done, void *ud)
{
    struct s3_op *op = op_new(c, OP_DELETE, done, ud);
    return op ? started(op, op_start(op, "DELETE", key, NULL, 0, NULL, 0, EMPTY_SHA256, 0))
              : NULL;
}

struct s3_op *s3_put(struct s3_client *c, const char *key, const void *data, size_t len,
                     const char *sha256_hex, int if_none_match, const char *content_type,
                     s3_done_fn done, void *ud)
{
    struct s3_op *op = op_new(c, OP_PUT, done, ud);
    if (!op)
        return NULL;
    op->mem = data ? data : "";
    op->mem_len = len;
    struct sigv4_pair h[2];
    size_t nh = 0;
    if (if_none_match)
        h[nh++] = (struct sigv4_pair){"if-none-match", "*"};
    if (content_type)
        h[nh++] = (struct sigv4_pair){"content-type", content_type};
    return started(op, op_start(op, "PUT", key, NULL, 0, h, nh, sha256_hex, len));
}

struct s3_op *s3_put_if_match(struct s3_client *c, const char *key, const void *data, size_t len,
                              const char *sha256_hex, const char *etag, s3_done_fn done,
                              void *ud)
{
    struct s3_op *op = op_new(c, OP_PUT, done, ud);
    if (!op)
        return NULL;
    op->mem = data ? data : "";
    op->mem_len = len;
    char unquoted[256];
    size_t n = strlen(etag);
    if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"')
        snprintf(unquoted, sizeof(unquoted), "%.*s", (int)(n - 2), etag + 1);
    else
        snprintf(unquoted, sizeof(unquoted), "%s", etag);
    struct sigv4_pair h[2] = {{"content-type", "application/octet-stream"},
                              {"if-match", unquoted}};
    return started(op, op_start(op, "PUT", key, NULL, 0, h, 2, sha256_hex, len));
}

struct s3_op *s3_list(struct s3_client *c, const char *prefix, const char *token,
                      unsigned max_keys, s3_object_fn each, s3_done_fn done, void *ud)
{
    struct s3_op *op = op_new(c, OP_LIST, done, ud);
    if (!op)
        return NULL;
    op->each = each;
    char full[S3_KEY_MAX + 1], mk[16];
    snprintf(full, sizeof(full), "%s%s", c->prefix, prefix ? prefix : "");
    snprintf(mk, sizeof(mk), "%u", max_keys < 1 || max_keys > 1000 ? 1000 : max_keys);
    struct sigv4_pair q[4];
    size_t nq = 0;
    if (token && *token)
        q[nq++] = (struct sigv4_pair){"continuation-token", token};
    q[nq++] = (struct sigv4_pair){"list-type", "2"};
    q[nq++] = (struct sigv4_pair){"max-keys", mk};
    q[nq++] = (struct sigv4_pair){"prefix", full};
    return started(op, op_start(op, "GET", NULL, q, nq, NULL, 0, EMPTY_SHA256, 0));
}

struct s3_op *s3_list_multiparts(struct s3_client *c, const char *prefix, s3_multipart_fn each,
                                 s3_done_fn done, void *ud)
{
    struct s3_op *op = op_new(c, OP_UPLOADS, done, ud);
    if (!op)
        return NULL;
    op->each_multipart = each;
    char full[S3_KEY_MAX + 1];
    snprintf(full, sizeof(full), "%s%s", c->prefix, prefix ? prefix : "");
    struct sigv4_pair q[2] = {{"prefix", full}, {"uploads", ""}};
    return started(op, op_start(op, "GET", NULL, q, 2, NULL, 0, EMPTY_SHA256, 0));
}

struct s3_op *s3_abort_multipart(struct s3_client *c, const char *key, const char *upload_id,
                                 s3_done_fn done, void *ud)
{
    struct s3_op *op = op_new(c, OP_ABORT, done, ud);
    if (!op)
        return NULL;
    struct sigv4_pair q[1] = {{"uploadId", upload_id}};
    return started(op, op_start(op, "DELETE", key, q, 1, NULL, 0, EMPTY_SHA256, 0));
}

void s3_resume(struct s3_op *op)
{
    if (op->paused) {
        op->paused = 0;
        curl_easy_pause(op->easy, CURLPAUSE_CONT);
    }
}

void s3_cancel(struct s3_op *op)
{
    upstream_easy_remove(&op->ue);
    op_free(op);
}

/* ---- a file's upload ---- */

struct s3_upload {
    struct s3_client *c;
    char key[S3_KEY_MAX + 1], digest_hex[65], content_type[128], upload_id[512];
    int fd;
    uint64_t size, part_size;
    unsigned n_parts, part;    /* part: the one being hashed or sent, 1-based */
    char (*etags)[130];        /* per part */
    char part_sha[65];         /* the part being sent */
    EVP_MD_CTX *whole;         /* every part, in order */
    uv_work_t work;
    int hashing, hash_failed, orphan; /* orphan: cancelled while hashing */
    struct s3_op *op;
    struct buf complete_xml;
    s3_done_fn done;
    void *ud;
    struct s3_upload *next, *prev;
};

static void upload_free(struct s3_upload *u)
{
    struct s3_client *c = u->c;
    if (u->prev)
        u->prev->next = u->next;
    else if (c && c->uploads == u)
        c->uploads = u->next;
    if (u->next)
        u->next->prev = u->prev;
    if (u->fd >= 0)
        close(u->fd);
    EVP_MD_CTX_free(u->whole);
    free(u->etags);
    buf_free(&u->complete_xml);
    free(u);
}

static void upload_finish(struct s3_upload *u, const struct s3_reply *r)
{
    s3_done_fn done = u->done;
    void *ud = u->ud;
    upload_free(u);
    if (done)
        done(ud, r);
}

static void upload_fail(struct s3_upload *u, int result, long status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void on_aborted(void *ud, const struct s3_reply *r);

struct failed_upload {
    struct s3_reply r;
    char message[1024], code[128];
    s3_done_fn done;
    void *ud;
};

/* Fails u; a multipart upload begun is aborted first (the caller hears after the abort). */
static void upload_fail(struct s3_upload *u, int result, long status, const char *fmt, ...)
{
    struct failed_upload *f = calloc(1, sizeof(*f));
    va_list ap;
    va_start(ap, fmt);
    if (f)
        vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
    struct s3_reply r = {.status = status, .result = result, .code = "", .length = -1,
                         .mtime = -1, .etag = "", .content_range = "", .content_type = "",
                         .message = f ? f->message : "out of memory"};
    if (f && u->upload_id[0]) {
        f->r = r;
        f->r.message = f->message;
        f->r.code = f->code;
        f->done = u->done;
        f->ud = u->ud;
        struct s3_op *op = s3_abort_multipart(u->c, u->key, u->upload_id, on_aborted, f);
        u->done = NULL;
        if (op) {
            upload_free(u);
            return;
        }
        u->done = f->done;
    }
    upload_finish(u, &r);
    free(f);
}

static void on_aborted(void *ud, const struct s3_reply *r)
{
    struct failed_upload *f = ud;
    if (r->result && r->result != -ENOENT)
        log_warn("s3: aborting an upload failed (%s); the janitor will", r->message);
    if (f->done)
        f->done(f->ud, &f->r);
    free(f);
}

static void on_single_put(void *ud, const struct s3_reply *r)
{
    struct s3_upload *u = ud;
    u->op = NULL;
    upload_finish(u, r);
}

static void send_part(struct s3_upload *u);
static void hash_part(struct s3_upload *u);

static void on_completed(void *ud, const struct s3_reply *r)
{
    struct s3_upload *u = ud;
    u->op = NULL;
    if (r->result) {
        upload_fail(u, r->result, r->status, "completing the upload: %s", r->message);
        return;
    }
    u->upload_id[0] = '\0'; /* done: nothing to abort */
    upload_finish(u, r);
}

static void complete(struct s3_upload *u)
{
    buf_reset(&u->complete_xml);
    int bad = buf_printf(&u->complete_xml, "<CompleteMultipartUpload>");
    for (unsigned i = 0; i < u->n_parts && !bad; i++)
        bad = buf_printf(&u->complete_xml, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>",
                         i + 1, u->etags[i]);
    if (!bad)
        bad = buf_printf(&u->complete_xml, "</CompleteMultipartUpload>");
    if (bad) {
        upload_fail(u, -ENOMEM, 0, "out of memory");
        return;
    }
    unsigned char md[32];
    char hex[65];
    EVP_Digest(u->complete_xml.data, u->complete_xml.len, md, NULL, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    struct s3_op *op = op_new(u->c, OP_COMPLETE, on_completed, u);
    if (!op) {
        upload_fail(u, -ENOMEM, 0, "out of memory");
        return;
    }
    op->mem = u->complete_xml.data;
    op->mem_len = u->complete_xml.len;
    struct sigv4_pair q[1] = {{"uploadId", u->upload_id}};
    struct sigv4_pair h[1] = {{"content-type", "application/xml"}};
    u->op = started(op, op_start(op, "POST", u->key, q, 1, h, 1, hex, u->complete_xml.len));
    if (!u->op)
        upload_fail(u, -EIO, 0, "the completion could not be sent");
}

static void on_part_sent(void *ud, const struct s3_reply *r)
{
    struct s3_upload *u = ud;
    u->op = NULL;
    if (r->result) {
        upload_fail(u, r->result, r->status, "part %u: %s", u->part, r->message);
        return;
    }
    if (!r->etag[0]) {
        upload_fail(u, -EIO, r->status, "part %u: the store sent no ETag", u->part);
        return;
    }
    snprintf(u->etags[u->part - 1], sizeof(u->etags[0]), "%s", r->etag);
    if (u->part < u->n_parts) {
        u->part++;
        hash_part(u);
        return;
    }
    /* every part is stored: the upload is completed only for the bytes the key names */
    unsigned char md[32];
    char hex[65];
    EVP_DigestFinal_ex(u->whole, md, NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (strcmp(hex, u->digest_hex) != 0) {
        upload_fail(u, -EBADMSG, 0, "the file hashed to sha256:%s, not sha256:%s", hex,
                    u->digest_hex);
        return;
    }
    complete(u);
}

static uint64_t part_len(const struct s3_upload *u, unsigned part)
{
    uint64_t off = (uint64_t)(part - 1) * u->part_size;
    return u->size - off < u->part_size ? u->size - off : u->part_size;
}

static void send_part(struct s3_upload *u)
{
    struct s3_op *op = op_new(u->c, OP_PART, on_part_sent, u);
    if (!op) {
        upload_fail(u, -ENOMEM, 0, "out of memory");
        return;
    }
    op->fd = u->fd;
    op->file_off = (uint64_t)(u->part - 1) * u->part_size;
    op->file_len = part_len(u, u->part);
    char num[16];
    snprintf(num, sizeof(num), "%u", u->part);
    struct sigv4_pair q[2] = {{"partNumber", num}, {"uploadId", u->upload_id}};
    u->op = started(op, op_start(op, "PUT", u->key, q, 2, NULL, 0, u->part_sha, op->file_len));
    if (!u->op)
        upload_fail(u, -EIO, 0, "part %u could not be sent", u->part);
}

/* thread pool: the part's SHA-256 and the whole file's, read in order */
static void hash_work(uv_work_t *w)
{
    struct s3_upload *u = w->data;
    EVP_MD_CTX *part = EVP_MD_CTX_new();
    uint64_t off = (uint64_t)(u->part - 1) * u->part_size, left = part_len(u, u->part);
    static __thread char chunk[1 << 16];
    u->hash_failed = !part || !EVP_DigestInit_ex(part, EVP_sha256(), NULL);
    while (!u->hash_failed && left) {
        size_t want = left < sizeof(chunk) ? (size_t)left : sizeof(chunk);
        ssize_t got = pread(u->fd, chunk, want, (off_t)off);
        if (got <= 0) {
            u->hash_failed = 1;
            break;
        }
        EVP_DigestUpdate(part, chunk, (size_t)got);
        EVP_DigestUpdate(u->whole, chunk, (size_t)got);
        off += (uint64_t)got;
        left -= (uint64_t)got;
    }
    unsigned char md[32];
    if (!u->hash_failed) {
        EVP_DigestFinal_ex(part, md, NULL);
        for (int i = 0; i < 32; i++)
            snprintf(u->part_sha + 2 * i, 3, "%02x", md[i]);
    }
    EVP_MD_CTX_free(part);
}

static void hash_done(uv_work_t *w, int status)
{
    struct s3_upload *u = w->data;
    u->hashing = 0;
    if (u->orphan || status == UV_ECANCELED) {
        u->c = NULL;
        upload_free(u);
        return;
    }
    if (u->hash_failed) {
        upload_fail(u, -EIO, 0, "reading part %u of the file failed", u->part);
        return;
    }
    send_part(u);
}

static void hash_part(struct s3_upload *u)
{
    u->work.data = u;
    u->hashing = 1;
    if (uv_queue_work(upstream_client_loop(u->c->uc), &u->work, hash_work, hash_done)) {
        u->hashing = 0;
        upload_fail(u, -EIO, 0, "the thread pool refused the work");
    }
}

static void on_created(void *ud, const struct s3_reply *r)
{
    struct s3_upload *u = ud;
    u->op = NULL;
    if (r->result) {
        upload_fail(u, r->result, r->status, "starting a multipart upload: %s", r->message);
        return;
    }
    snprintf(u->upload_id, sizeof(u->upload_id), "%s", r->message);
    u->part = 1;
    hash_part(u);
}

static void on_exists_checked(void *ud, const struct s3_reply *r)
{
    struct s3_upload *u = ud;
    u->op = NULL;
    if (r->result == 0) { /* stored already: as a 412 of a single PUT says */
        struct s3_reply e = *r;
        e.result = -EEXIST;
        e.message = "stored already";
        upload_finish(u, &e);
        return;
    }
    if (r->result != -ENOENT) {
        upload_fail(u, r->result, r->status, "asking for the object: %s", r->message);
        return;
    }
    struct s3_op *op = op_new(u->c, OP_CREATE, on_created, u);
    if (!op) {
        upload_fail(u, -ENOMEM, 0, "out of memory");
        return;
    }
    struct sigv4_pair q[1] = {{"uploads", ""}};
    struct sigv4_pair h[1] = {
        {"content-type", u->content_type[0] ? u->content_type : "application/octet-stream"}};
    u->op = started(op, op_start(op, "POST", u->key, q, 1, h, 1, EMPTY_SHA256, 0));
    if (!u->op)
        upload_fail(u, -EIO, 0, "the upload could not be started");
}

struct s3_upload *s3_put_file(struct s3_client *c, const char *key, const char *path,
                              const char *sha256_hex, const char *content_type, s3_done_fn done,
                              void *ud)
{
    if (strlen(key) > S3_KEY_MAX || strlen(sha256_hex) != 64)
        return NULL;
    struct s3_upload *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->c = c;
    u->fd = -1;
    u->done = done;
    u->ud = ud;
    u->part_size = c->part_size;
    snprintf(u->key, sizeof(u->key), "%s", key);
    snprintf(u->digest_hex, sizeof(u->digest_hex), "%s", sha256_hex);
    snprintf(u->content_type, sizeof(u->content_type), "%s", content_type ? content_type : "");
    buf_init(&u->complete_xml, 1u << 20);
    struct stat st;
    if ((u->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(u->fd, &st) < 0) {
        log_warn("s3: %s: %s", path, strerror(errno));
        upload_free(u);
        return NULL;
    }
    u->size = (uint64_t)st.st_size;
    u->next = c->uploads;
    if (c->uploads)
        c->uploads->prev = u;
    c->uploads = u;
    if (u->size <= u->part_size) {
        struct s3_op *op = op_new(c, OP_PUT, on_single_put, u);
        if (op) {
            op->fd = u->fd;
            op->file_len = u->size;
            struct sigv4_pair h[2] = {{"if-none-match", "*"}, {"content-type", u->content_type}};
            op = started(op, op_start(op, "PUT", key, NULL, 0, h, u->content_type[0] ? 2 : 1,
                                      sha256_hex, u->size));
        }
        if (!(u->op = op)) {
            upload_free(u);
            return NULL;
        }
        return u;
    }
    u->n_parts = (unsigned)((u->size + u->part_size - 1) / u->part_size);
    if (u->n_parts > S3_PARTS_MAX) {
        log_warn("s3: %s: %" PRIu64 " bytes need more than %u parts", path, u->size, S3_PARTS_MAX);
        upload_free(u);
        return NULL;
    }
    u->etags = calloc(u->n_parts, sizeof(*u->etags));
    u->whole = EVP_MD_CTX_new();
    if (!u->etags || !u->whole || !EVP_DigestInit_ex(u->whole, EVP_sha256(), NULL) ||
        !(u->op = s3_head(c, key, on_exists_checked, u))) {
        upload_free(u);
        return NULL;
    }
    return u;
}

void s3_upload_cancel(struct s3_upload *u)
{
    if (u->op) {
        s3_cancel(u->op);
        u->op = NULL;
    }
    if (u->upload_id[0]) /* the parts stored so far go; nobody hears of it */
        s3_abort_multipart(u->c, u->key, u->upload_id, NULL, NULL);
    if (u->hashing) {
        u->orphan = 1;
        u->done = NULL;
        if (u->prev)
            u->prev->next = u->next;
        else if (u->c->uploads == u)
            u->c->uploads = u->next;
        if (u->next)
            u->next->prev = u->prev;
        u->next = u->prev = NULL;
        u->c = NULL;
        return; /* hash_done frees it */
    }
    upload_free(u);
}

void s3_client_free(struct s3_client *c)
{
    if (!c)
        return;
    while (c->uploads) {
        struct s3_upload *u = c->uploads;
        u->upload_id[0] = '\0'; /* no new requests now: the janitor aborts it later */
        s3_upload_cancel(u);
    }
    while (c->ops)
        s3_cancel(c->ops);
    free(c->endpoint);
    free(c->host);
    free(c->bucket);
    free(c->region);
    free(c->access_key);
    free(c->secret_key);
    free(c->prefix);
    free(c->ca_file);
    free(c);
}
