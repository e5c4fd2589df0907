/* SPDX-License-Identifier: Apache-2.0 */
/* regcache s3-sync: copies the local store's blobs into the configured S3 bucket, under the
 * same keys (blobs/sha256/<2>/<64>), so that a node's store seeds the shared tier. The bucket
 * is listed first; only what it lacks is sent, a few files at a time, each PUT carrying the
 * blob's digest (a local file whose bytes no longer match its name is refused by the store and
 * reported, never stored) and If-None-Match (a blob another writer stored meanwhile counts as
 * there). Exits 0 when the bucket holds every blob, 1 otherwise, 2 on bad arguments. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config/config.h"
#include "s3/client.h"
#include "s3/settings.h"
#include "store/store.h"
#include "upstream/upstream.h"
#include "util/map.h"

#define SYNC_JOBS_DEFAULT 4
#define SYNC_JOBS_MAX 32

struct local_blob {
    char digest[72];
    uint64_t size;
};

struct sync {
    struct store *store;
    struct s3_client *s3;
    struct map *in_bucket; /* keys listed */
    struct local_blob *blobs;
    size_t n_blobs, cap, next, running, jobs;
    uint64_t listed, present, stored, stored_bytes, failed;
    int list_failed, dry_run;
};

static void usage(void)
{
    fprintf(stderr, "usage: regcache s3-sync [-c FILE] [--dry-run] [--jobs N]\n");
}

static int collect(void *ud, const char *digest, const char *path, uint64_t size)
{
    (void)path;
    struct sync *s = ud;
    if (!digest || strncmp(digest, "sha256:", 7) != 0)
        return 0;
    if (s->n_blobs == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        struct local_blob *b = realloc(s->blobs, cap * sizeof(*b));
        if (!b)
            return -ENOMEM;
        s->blobs = b;
        s->cap = cap;
    }
    snprintf(s->blobs[s->n_blobs].digest, sizeof(s->blobs[0].digest), "%s", digest);
    s->blobs[s->n_blobs++].size = size;
    return 0;
}

static void start_more(struct sync *s);

struct put {
    struct sync *s;
    struct local_blob *b;
};

static void on_put(void *ud, const struct s3_reply *r)
{
    struct put *p = ud;
    struct sync *s = p->s;
    s->running--;
    if (r->result == 0) {
        s->stored++;
        s->stored_bytes += p->b->size;
    } else if (r->result == -EEXIST) {
        s->present++;
    } else {
        s->failed++;
        fprintf(stderr, "regcache: s3-sync: %s: %s%s\n", p->b->digest, r->message,
                r->result == -EBADMSG ? " (the local file does not match its digest: run "
                                        "regcache verify)"
                                      : "");
    }
    free(p);
    start_more(s);
}

static void start_more(struct sync *s)
{
    while (s->running < s->jobs && s->next < s->n_blobs) {
        struct local_blob *b = &s->blobs[s->next++];
        char key[128], path[STORE_PATH_MAX];
        if (s3_blob_key(b->digest, key, sizeof(key)))
            continue;
        if (map_get(s->in_bucket, key)) {
            s->present++;
            continue;
        }
        if (s->dry_run) {
            printf("would store %s (%" PRIu64 " bytes)\n", b->digest, b->size);
            s->stored++;
            s->stored_bytes += b->size;
            continue;
        }
        store_blob_path(s->store, b->digest, path, sizeof(path));
        struct put *p = calloc(1, sizeof(*p));
        if (!p) {
            s->failed++;
            continue;
        }
        *p = (struct put){s, b};
        if (!s3_put_file(s->s3, key, path, b->digest + 7, "application/octet-stream", on_put,
                         p)) {
            fprintf(stderr, "regcache: s3-sync: %s: the upload could not be started\n",
                    b->digest);
            free(p);
            s->failed++;
            continue;
        }
        s->running++;
    }
}

static void on_object(void *ud, const struct s3_object *o)
{
    struct sync *s = ud;
    s->listed++;
    if (map_put(s->in_bucket, o->key, (void *)1) == MAP_NOMEM)
        s->list_failed = 1;
}

static void on_page(void *ud, const struct s3_reply *r)
{
    struct sync *s = ud;
    if (r->result) {
        fprintf(stderr, "regcache: s3-sync: listing the bucket: %s\n", r->message);
        s->list_failed = 1;
        return;
    }
    if (r->message[0]) {
        char token[1024];
        snprintf(token, sizeof(token), "%s", r->message);
        if (!s3_list(s->s3, "blobs/sha256/", token, 1000, on_object, on_page, s))
            s->list_failed = 1;
        return;
    }
    start_more(s); /* the whole listing is in: send what the bucket lacks */
}

int s3_sync_main(int argc, char **argv)
{
    const char *path = NULL;
    struct sync s = {.jobs = SYNC_JOBS_DEFAULT};
    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--dry-run")) {
            s.dry_run = 1;
        } else if (!strcmp(argv[i], "--jobs") && i + 1 < argc) {
            char *end;
            unsigned long n = strtoul(argv[++i], &end, 10);
            if (*end || n < 1 || n > SYNC_JOBS_MAX) {
                fprintf(stderr, "regcache: s3-sync: --jobs takes 1..%d\n", SYNC_JOBS_MAX);
                return 2;
            }
            s.jobs = n;
        } else {
            fprintf(stderr, "regcache: unexpected argument '%s'\n", argv[i]);
            usage();
            return 2;
        }
    }
    char err[1024];
    struct config cfg;
    config_defaults(&cfg);
    if (path && config_load(path, &cfg, err, sizeof(err))) {
        fprintf(stderr, "regcache: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    if (!cfg.s3_endpoint) {
        fprintf(stderr, "regcache: s3-sync: %s has no s3 section (endpoint, bucket, "
                        "access_key, secret_key)\n", path ? path : "the default configuration");
        config_free(&cfg);
        return 1;
    }
    int rc = 1;
    uv_loop_t loop;
    struct upstream_client *uc = NULL;
    uv_loop_init(&loop);
    if (store_open(cfg.storage, &s.store, err, sizeof(err))) {
        fprintf(stderr, "regcache: %s\n", err);
        goto out;
    }
    if (!(s.in_bucket = map_new()) || store_each(s.store, collect, &s) < 0) {
        fprintf(stderr, "regcache: s3-sync: reading the store %s failed\n", cfg.storage);
        goto out;
    }
    if (upstream_client_new(&loop, &cfg, &uc)) {
        fprintf(stderr, "regcache: s3-sync: out of memory\n");
        goto out;
    }
    struct s3_settings st;
    s3_settings_from_config(&cfg, &st);
    if (s3_client_new(uc, &st, &s.s3, err, sizeof(err))) {
        fprintf(stderr, "regcache: s3-sync: %s\n", err);
        goto out;
    }
    if (!s3_list(s.s3, "blobs/sha256/", NULL, 1000, on_object, on_page, &s)) {
        fprintf(stderr, "regcache: s3-sync: the listing could not be asked\n");
        goto out;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (s.list_failed)
        goto out;
    printf("s3-sync: %zu blobs in %s, %" PRIu64 " objects listed in %s; %" PRIu64
           " already there, %" PRIu64 " %s (%" PRIu64 " bytes), %" PRIu64 " failed\n",
           s.n_blobs, cfg.storage, s.listed, cfg.s3_bucket, s.present, s.stored,
           s.dry_run ? "to store" : "stored", s.stored_bytes, s.failed);
    rc = s.failed ? 1 : 0;
out:
    s3_client_free(s.s3);
    if (uc) {
        upstream_client_shutdown(uc);
        uv_run(&loop, UV_RUN_DEFAULT);
        upstream_client_free(uc);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    map_free(s.in_bucket);
    free(s.blobs);
    store_close(s.store);
    config_free(&cfg);
    return rc;
}
