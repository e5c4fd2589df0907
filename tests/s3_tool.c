/* SPDX-License-Identifier: Apache-2.0 */
/* s3/client.c on the command line, for the tests against radosgw (test_s3_client.py): one
 * request (or one file's upload), on a libuv loop and the upstream client's curl multi as in
 * the daemon.
 *
 *   s3_tool put-file KEY FILE SHA256_HEX      a file's upload (multipart above S3_PART_SIZE)
 *   s3_tool put KEY SHA256_HEX [nomatch]      stdin as one PUT; nomatch: no If-None-Match
 *   s3_tool get KEY OUT [FROM [TO]]           the object (or a range) into OUT
 *   s3_tool head KEY | delete KEY
 *   s3_tool list PREFIX [MAX_KEYS]            every page: "key size mtime" lines, then "pages N"
 *   s3_tool uploads PREFIX                    "key upload_id initiated" lines
 *   s3_tool abort KEY UPLOAD_ID
 *   s3_tool cancel-file KEY FILE SHA256_HEX MS  an upload cancelled after MS milliseconds
 *
 * Settings from S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION, S3_PREFIX and
 * S3_PART_SIZE. Prints "status N result NAME code CODE length L etag E" then the message; exits
 * 0 on success, 3 for -EEXIST, 4 for -ENOENT, 5 for -EBADMSG, 1 otherwise, 2 on bad arguments. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config/config.h"
#include "s3/client.h"
#include "upstream/upstream.h"

static int exit_code = 1;
static struct s3_client *s3;
static const char *list_prefix;
static unsigned list_max;
static int pages;
static FILE *out;

static const char *result_name(int r)
{
    switch (r) {
    case 0: return "ok";
    case -EEXIST: return "exists";
    case -ENOENT: return "missing";
    case -EBADMSG: return "mismatch";
    case -EACCES: return "denied";
    case -ECANCELED: return "cancelled";
    default: return strerror(-r);
    }
}

static void report(const struct s3_reply *r)
{
    printf("status %ld result %s code %s length %" PRId64 " etag %s\n%s\n", r->status,
           result_name(r->result), r->code[0] ? r->code : "-", r->length,
           r->etag[0] ? r->etag : "-", r->message);
    exit_code = r->result == 0 ? 0 : r->result == -EEXIST ? 3 : r->result == -ENOENT ? 4
              : r->result == -EBADMSG ? 5 : 1;
}

static void on_done(void *ud, const struct s3_reply *r)
{
    (void)ud;
    report(r);
}

static int on_data(void *ud, const char *data, size_t len)
{
    (void)ud;
    return fwrite(data, 1, len, out) == len ? 0 : -1;
}

static void on_object(void *ud, const struct s3_object *o)
{
    (void)ud;
    printf("%s %" PRIu64 " %" PRId64 "\n", o->key, o->size, o->mtime);
}

static void on_multipart(void *ud, const struct s3_multipart *m)
{
    (void)ud;
    printf("%s %s %" PRId64 "\n", m->key, m->upload_id, m->initiated);
}

static void on_page(void *ud, const struct s3_reply *r)
{
    (void)ud;
    pages++;
    if (r->result || !r->message[0]) {
        printf("pages %d\n", pages);
        report(r);
        return;
    }
    char token[1024];
    snprintf(token, sizeof(token), "%s", r->message);
    if (!s3_list(s3, list_prefix, token, list_max, on_object, on_page, NULL)) {
        fprintf(stderr, "s3_tool: the next page could not be asked\n");
        exit_code = 1;
    }
}

static struct s3_upload *cancel_me;
static void on_cancel_timer(uv_timer_t *t)
{
    s3_upload_cancel(cancel_me);
    printf("cancelled\n");
    exit_code = 0;
    uv_close((uv_handle_t *)t, NULL);
}

static char *read_stdin(size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t got;
    while (b && (got = fread(b + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
        }
    }
    *len = n;
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: s3_tool put-file|put|get|head|delete|list|uploads|abort|"
                        "cancel-file ARGS (see the source)\n");
        return 2;
    }
    const char *cmd = argv[1];
    uv_loop_t *loop = uv_default_loop();
    struct config cfg;
    config_defaults(&cfg);
    struct upstream_client *uc;
    if (upstream_client_new(loop, &cfg, &uc)) {
        fprintf(stderr, "s3_tool: no upstream client\n");
        return 1;
    }
    const char *ps = getenv("S3_PART_SIZE");
    struct s3_settings st = {.endpoint = getenv("S3_ENDPOINT"), .bucket = getenv("S3_BUCKET"),
                             .region = getenv("S3_REGION"), .access_key = getenv("S3_ACCESS_KEY"),
                             .secret_key = getenv("S3_SECRET_KEY"), .prefix = getenv("S3_PREFIX"),
                             .part_size = ps ? strtoull(ps, NULL, 10) : 0};
    char why[256];
    int code = 2, started = 0;
    char *body = NULL;
    uv_timer_t timer;
    if (s3_client_new(uc, &st, &s3, why, sizeof(why))) {
        fprintf(stderr, "s3_tool: %s\n", why);
        goto out;
    }
    code = 1;
    if (!strcmp(cmd, "put-file") && argc == 5) {
        started = s3_put_file(s3, argv[2], argv[3], argv[4], NULL, on_done, NULL) != NULL;
    } else if (!strcmp(cmd, "cancel-file") && argc == 6) {
        cancel_me = s3_put_file(s3, argv[2], argv[3], argv[4], NULL, on_done, NULL);
        started = cancel_me != NULL;
        uv_timer_init(loop, &timer);
        uv_timer_start(&timer, on_cancel_timer, strtoull(argv[5], NULL, 10), 0);
    } else if (!strcmp(cmd, "put") && (argc == 4 || argc == 5)) {
        size_t len = 0;
        body = read_stdin(&len);
        started = body && s3_put(s3, argv[2], body, len, argv[3], argc == 4,
                                 "application/octet-stream", on_done, NULL);
    } else if (!strcmp(cmd, "get") && argc >= 4 && argc <= 6) {
        if (!(out = fopen(argv[3], "wb")))
            goto out;
        uint64_t from = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
        uint64_t to = argc > 5 ? strtoull(argv[5], NULL, 10) : UINT64_MAX;
        started = s3_get(s3, argv[2], from, to, on_data, on_done, NULL) != NULL;
    } else if (!strcmp(cmd, "head") && argc == 3) {
        started = s3_head(s3, argv[2], on_done, NULL) != NULL;
    } else if (!strcmp(cmd, "delete") && argc == 3) {
        started = s3_delete(s3, argv[2], on_done, NULL) != NULL;
    } else if (!strcmp(cmd, "list") && (argc == 3 || argc == 4)) {
        list_prefix = argv[2];
        list_max = argc == 4 ? (unsigned)atoi(argv[3]) : 1000;
        started = s3_list(s3, list_prefix, NULL, list_max, on_object, on_page, NULL) != NULL;
    } else if (!strcmp(cmd, "uploads") && argc == 3) {
        started = s3_list_multiparts(s3, argv[2], on_multipart, on_done, NULL) != NULL;
    } else if (!strcmp(cmd, "abort") && argc == 4) {
        started = s3_abort_multipart(s3, argv[2], argv[3], on_done, NULL) != NULL;
    } else {
        fprintf(stderr, "s3_tool: bad arguments\n");
        code = 2;
        goto out;
    }
    if (!started) {
        fprintf(stderr, "s3_tool: the request could not be started\n");
        goto out;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    code = exit_code;
out:
    s3_client_free(s3);
    upstream_client_shutdown(uc);
    uv_run(loop, UV_RUN_DEFAULT);
    upstream_client_free(uc);
    config_free(&cfg);
    free(body);
    if (out)
        fclose(out);
    uv_loop_close(loop);
    return code;
}
