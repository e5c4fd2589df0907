/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for cache/sources.c (the order a blob fill asks in) and the blob source series of
 * metrics/sources.c, over an upstream client built from a configuration (no request is made). */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cache/impl.h"
#include "check.h"
#include "config/config.h"
#include "metrics/metrics.h"
#include "upstream/upstream.h"
#include "util/buf.h"

static void add_source(struct config_upstream *u, const char *name, int before)
{
    struct config_blob_source *b = &u->blob_sources[u->n_blob_sources++];
    b->name = strdup(name);
    b->url = strdup("http://127.0.0.1:9");
    b->before = before;
}

int main(void)
{
    struct config cfg;
    config_defaults(&cfg);
    struct config_upstream *cu = &cfg.upstreams[0];
    add_source(cu, "a", 0);
    add_source(cu, "b", 1);
    add_source(cu, "c", 1);
    add_source(cu, "d", 0);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct upstream_client *client = NULL;
    CHECK_EQ_INT(upstream_client_new(&loop, &cfg, &client), 0);
    CHECK_EQ_INT(metrics_init(NULL, &cfg), 0);
    struct upstream *primary = upstream_get(client, 0);
    CHECK_EQ_INT(upstream_count(client), 1); /* sources are not upstreams of their own */
    CHECK_EQ_INT(upstream_source_count(primary), 4);

    /* before (as listed), the primary, after (as listed) */
    const char *want[] = {"b", "c", NULL, "a", "d"};
    int step = 0;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        CHECK(sources_left(primary, step));
        struct upstream *s = sources_next(primary, &step);
        CHECK(s != NULL);
        if (!s)
            break;
        if (want[i])
            CHECK_STR(upstream_source_name(s), want[i]);
        else
            CHECK(s == primary);
        CHECK(upstream_available(s));
    }
    CHECK(!sources_left(primary, step));
    CHECK(sources_next(primary, &step) == NULL);
    CHECK(sources_next(primary, &step) == NULL);

    /* counted per source and outcome, every series present from the start */
    struct buf text;
    buf_init(&text, 1 << 20);
    sources_report(primary, upstream_source(primary, 1), "sha256:x", METRICS_SOURCE_WRONG,
                   "sha256:y");
    CHECK_EQ_INT(metrics_expose(&text), 0);
    CHECK_EQ_INT(buf_terminate(&text), 0);
    CHECK(strstr(text.data, "regcache_blob_source_requests_total{upstream=\"docker.io\","
                            "source=\"b\",outcome=\"wrong\"} 1\n") != NULL);
    CHECK(strstr(text.data, "regcache_blob_source_requests_total{upstream=\"docker.io\","
                            "source=\"d\",outcome=\"skipped\"} 0\n") != NULL);
    buf_free(&text);

    metrics_free();
    upstream_client_shutdown(client);
    uv_run(&loop, UV_RUN_DEFAULT);
    upstream_client_free(client);
    uv_loop_close(&loop);
    config_free(&cfg);
    CHECK_DONE();
}
