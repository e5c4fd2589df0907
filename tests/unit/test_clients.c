/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for clients/: the --mirror URL, daemon.json's merge, each client's files, and
 * writing them with backups. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "clients/clients.h"
#include "clients/impl.h"
#include "config/config.h"

static char err[1024];

static struct clients_mirror mirror(const char *url)
{
    struct clients_mirror m;
    int r = clients_mirror_parse(url, &m, err, sizeof(err));
    CHECK_EQ_INT(r, 0);
    return m;
}

static void test_mirror_url(void)
{
    struct clients_mirror m = mirror("HTTP://Mirror.LAN:5000/");
    CHECK_STR(m.url, "http://mirror.lan:5000");
    CHECK_STR(m.hostport, "mirror.lan:5000");
    CHECK_EQ_INT(m.plain_http, 1);
    m = mirror("https://[fd00::1]:8443");
    CHECK_STR(m.url, "https://[fd00::1]:8443");
    CHECK_EQ_INT(m.plain_http, 0);
    m = mirror("https://mirror");
    CHECK_STR(m.hostport, "mirror");
    static const char *const bad[] = {
        "",
        "mirror:5000",
        "http://",
        "http://:1",
        "http://a:0",
        "http://a:65536",
        "http://a:",
        "http://a:123456",
        "http://a/b",
        "http://a?b",
        "http://a#b",
        "http://u@a",
        "http://a b",
        "http://a\x01",
        "http://caf\xc3\xa9",
        "http://a..b",
        "http://-a",
        "http://a-",
        "http://a_b",
        "http://[::1",
        "http://[]",
        "http://[::1]x",
        "http://[g::1]",
        "file:///x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK_EQ_INT(clients_mirror_parse(bad[i], &m, err, sizeof(err)), -EINVAL);
        CHECK(!strncmp(err, "--mirror '", 10));
    }
    enum clients_kind k;
    CHECK_EQ_INT(clients_kind_parse("k3s", &k), 0);
    CHECK_EQ_INT(k, CLIENTS_K3S);
    CHECK_EQ_INT(clients_kind_parse("Docker", &k), -EINVAL);
}

static void test_quoting(void)
{
    struct buf b;
    buf_init(&b, 1024);
    CHECK_EQ_INT(clients__put_quoted(&b, "a\"b\\c\n\x7f"), 0);
    buf_terminate(&b);
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\u000a\\u007f\"");
    buf_free(&b);
    CHECK(clients__ascii("http://a/b"));
    CHECK(!clients__ascii("caf\xc3\xa9"));
    CHECK(!clients__ascii("a\tb"));
}

/* Merges doc; returns the output (static) or NULL with err set. */
static const char *merge(const char *doc, const char *url, int hub)
{
    static char out[8192];
    struct clients_mirror m = mirror(url);
    struct buf b;
    buf_init(&b, sizeof(out) - 1);
    err[0] = '\0';
    int r = clients__docker_merge(doc, strlen(doc), &m, hub, &b, err, sizeof(err));
    if (!r) {
        memcpy(out, b.data, b.len);
        out[b.len] = '\0';
    }
    buf_free(&b);
    return r ? NULL : out;
}

static void test_docker_merge(void)
{
    CHECK_STR(merge("", "http://m:5000", 1),
              "{\n  \"registry-mirrors\": [\n    \"http://m:5000\"\n  ],\n"
              "  \"insecure-registries\": [\n    \"m:5000\"\n  ]\n}\n");
    CHECK_STR(merge(" \n", "https://m", 1),
              "{\n  \"registry-mirrors\": [\n    \"https://m\"\n  ]\n}\n");
    CHECK_STR(merge("{}", "https://m", 0), "{}\n");
    /* other keys, their order and their text stay; ours go first / last */
    CHECK_STR(merge("{\"b\":1.5e3,\"registry-mirrors\":[\"https://x\"],\"c\":{\"d\":[null,true]},"
                    "\"e\":\"\\u00e9\"}",
                    "https://m", 1),
              "{\n  \"b\": 1.5e3,\n  \"registry-mirrors\": [\n    \"https://m\",\n    "
              "\"https://x\"\n  ],\n  \"c\": {\n    \"d\": [\n      null,\n      true\n    ]\n"
              "  },\n  \"e\": \"\\u00e9\"\n}\n");
    /* already listed, in another spelling: nothing added */
    CHECK_STR(merge("{\"registry-mirrors\":[\"https://x\",\"HTTP://M:5000/\"],"
                    "\"insecure-registries\":[\"M:5000\"]}",
                    "http://m:5000", 1),
              "{\n  \"registry-mirrors\": [\n    \"https://x\",\n    \"HTTP://M:5000/\"\n  ],\n"
              "  \"insecure-registries\": [\n    \"M:5000\"\n  ]\n}\n");
    /* the output merges to itself */
    const char *once = merge("{\"x\": [1, {\"y\": []}]}", "http://m:5000", 1);
    char copy[8192];
    snprintf(copy, sizeof(copy), "%s", once ? once : "");
    CHECK_STR(merge(copy, "http://m:5000", 1), copy);

    static const struct {
        const char *doc, *why;
    } bad[] = {
        {"[]", "1: not valid JSON: the document is not an object"},
        {"{\"a\":1,}", "1: not valid JSON: expected a string"},
        {"{\"a\":1", "1: not valid JSON: expected ',' or '}'"},
        {"{\n\"a\":\n01}", "3: not valid JSON: expected ',' or '}'"},
        {"{\"a\":1.}", "digits after '.'"},
        {"{\"a\":1e}", "digits in its exponent"},
        {"{\"a\":tru}", "expected a value"},
        {"{\"a\":\"x\ty\"}", "a control character"},
        {"{\"a\":\"\\x\"}", "a bad escape"},
        {"{\"a\":\"\\u0000\"}", "\\u0000"},
        {"{\"a\":\"x}", "a string is not closed"},
        {"{\"a\":1}x", "something follows"},
        {"{\"a\":1,\"\\u0061\":2}", "key \"a\" appears twice"},
        {"{\"registry-mirrors\":{}}", "\"registry-mirrors\" is not a list"},
        {"{\"registry-mirrors\":[\"a\",2]}", "holds something other than strings"},
        {"{\"insecure-registries\":null}", "\"insecure-registries\" is not a list"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(merge(bad[i].doc, "http://m:5000", 1) == NULL);
        CHECK_CONTAINS(err, bad[i].why);
    }
    /* nesting is bounded */
    char deep[400];
    size_t n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"a\":", 4), n += 4;
    for (int i = 0; i < 100; i++)
        deep[n++] = '[';
    for (int i = 0; i < 100; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    CHECK(merge(deep, "http://m:5000", 1) == NULL);
    CHECK_CONTAINS(err, "nested deeper than");
    /* a surrogate pair decodes (the key compares equal to its UTF-8 spelling) */
    CHECK(merge("{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}", "http://m:5000", 1) == NULL);
    CHECK_CONTAINS(err, "appears twice");
}

static void two_upstreams(struct config *cfg, const char *second, const char *url)
{
    config_defaults(cfg);
    cfg->upstreams[1].name = strdup(second);
    cfg->upstreams[1].url = strdup(url);
    cfg->n_upstreams = 2;
}

static const char *file_text(struct clients_plan *p, size_t i)
{
    if (i >= p->n_files || buf_terminate(&p->files[i].content))
        return NULL;
    return p->files[i].content.data;
}

static void test_plans(void)
{
    struct config cfg;
    struct clients_plan plan;
    struct clients_mirror m = mirror("http://m.lan:5000");
    two_upstreams(&cfg, "quay.io", "https://quay.io");

    CHECK_EQ_INT(clients_plan_build(CLIENTS_CONTAINERD, &m, &cfg, NULL, &plan, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(plan.n_files, 2);
    CHECK_STR(plan.files[0].path, "/etc/containerd/certs.d/docker.io/hosts.toml");
    CHECK_STR(plan.files[1].path, "/etc/containerd/certs.d/quay.io/hosts.toml");
    CHECK_CONTAINS(file_text(&plan, 1), "server = \"https://quay.io\"\n\n"
                                        "[host.\"http://m.lan:5000\"]\n"
                                        "  capabilities = [\"pull\", \"resolve\"]\n");
    CHECK(!strstr(file_text(&plan, 1), "skip_verify"));
    clients_plan_free(&plan);

    CHECK_EQ_INT(clients_plan_build(CLIENTS_PODMAN, &m, &cfg, NULL, &plan, err, sizeof(err)), 0);
    CHECK_EQ_INT(plan.n_files, 1);
    CHECK_STR(plan.files[0].path, "/etc/containers/registries.conf.d/50-regcache.conf");
    CHECK_CONTAINS(file_text(&plan, 0), "[[registry]]\nprefix = \"quay.io\"\n"
                                        "location = \"quay.io\"\n\n[[registry.mirror]]\n"
                                        "location = \"m.lan:5000/quay.io\"\ninsecure = true\n");
    CHECK_CONTAINS(file_text(&plan, 0), "prefix = \"docker.io\"\n"
                                        "location = \"registry-1.docker.io\"\n\n");
    clients_plan_free(&plan);

    CHECK_EQ_INT(clients_plan_build(CLIENTS_K3S, &m, &cfg, NULL, &plan, err, sizeof(err)), 0);
    CHECK_CONTAINS(file_text(&plan, 0), "mirrors:\n  \"docker.io\":\n    endpoint:\n      - "
                                        "\"http://m.lan:5000\"\n  \"quay.io\":\n");
    CHECK(!strstr(file_text(&plan, 0), "configs:"));
    clients_plan_free(&plan);

    /* an https mirror whose certificate is not checked */
    struct clients_mirror ms = mirror("https://m.lan");
    ms.skip_verify = 1;
    CHECK_EQ_INT(clients_plan_build(CLIENTS_K3S, &ms, &cfg, NULL, &plan, err, sizeof(err)), 0);
    CHECK_CONTAINS(file_text(&plan, 0),
                   "configs:\n  \"m.lan\":\n    tls:\n      insecure_skip_verify: true\n");
    clients_plan_free(&plan);
    CHECK_EQ_INT(clients_plan_build(CLIENTS_CONTAINERD, &ms, &cfg, NULL, &plan, err, sizeof(err)),
                 0);
    CHECK_CONTAINS(file_text(&plan, 0), "  skip_verify = true\n");
    clients_plan_free(&plan);
    CHECK_EQ_INT(
        clients_plan_build(CLIENTS_DOCKER, &ms, &cfg, "/nonexistent-root", &plan, err, sizeof(err)),
        0);
    CHECK_CONTAINS(file_text(&plan, 0), "\"insecure-registries\": [\n    \"m.lan\"");
    CHECK_CONTAINS(plan.notes.data, "docker pull m.lan/quay.io/REPOSITORY:TAG");
    clients_plan_free(&plan);
    config_free(&cfg);

    /* names clients cannot take for a registry host are left out, with a note */
    two_upstreams(&cfg, "internal", "http://10.0.0.1:5000");
    CHECK_EQ_INT(clients_plan_build(CLIENTS_CONTAINERD, &m, &cfg, NULL, &plan, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(plan.n_files, 1);
    CHECK_CONTAINS(plan.notes.data, "no hosts.toml for the upstream 'internal'");
    clients_plan_free(&plan);
    config_free(&cfg);
    two_upstreams(&cfg, "localhost:5001", "http://localhost:5001");
    CHECK_EQ_INT(clients_plan_build(CLIENTS_PODMAN, &m, &cfg, NULL, &plan, err, sizeof(err)), 0);
    CHECK(!strstr(file_text(&plan, 0), "localhost:5001"));
    CHECK_CONTAINS(plan.notes.data, "no entry for the upstream 'localhost:5001'");
    clients_plan_free(&plan);
    config_free(&cfg);

    /* a URL no configuration file can carry */
    two_upstreams(&cfg, "quay.io", "https://qu\xc3\xa4y.io");
    CHECK_EQ_INT(clients_plan_build(CLIENTS_K3S, &m, &cfg, NULL, &plan, err, sizeof(err)), -EINVAL);
    CHECK_CONTAINS(err, "upstream 'quay.io': its url has non-ASCII characters");
    CHECK_EQ_INT(plan.n_files, 0);
    clients_plan_free(&plan);
    config_free(&cfg);
}

static int count_backups(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".regcache-backup-") != NULL;
    closedir(d);
    return n;
}

static void test_write(void)
{
    char root[] = "/tmp/regcache-clients-XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    struct config cfg;
    struct clients_plan plan;
    struct clients_mirror m = mirror("http://m.lan:5000");
    config_defaults(&cfg);
    FILE *report = fopen("/dev/null", "w");

    /* an existing daemon.json: merged, backed up once, then left alone */
    char path[512], dir[512], cmd[1024];
    snprintf(dir, sizeof(dir), "%s/etc/docker", root);
    snprintf(path, sizeof(path), "%s/daemon.json", dir);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
    CHECK_EQ_INT(system(cmd), 0);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("{\"debug\": true}", f);
        fclose(f);
    }
    for (int round = 0; round < 2; round++) {
        CHECK_EQ_INT(clients_plan_build(CLIENTS_DOCKER, &m, &cfg, root, &plan, err, sizeof(err)),
                     0);
        CHECK_EQ_INT(clients_plan_write(&plan, root, report, err, sizeof(err)), 0);
        clients_plan_free(&plan);
        CHECK_EQ_INT(count_backups(dir), 1);
    }
    /* new files in new directories: no backup */
    CHECK_EQ_INT(clients_plan_build(CLIENTS_CONTAINERD, &m, &cfg, root, &plan, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(clients_plan_write(&plan, root, report, err, sizeof(err)), 0);
    clients_plan_free(&plan);
    snprintf(dir, sizeof(dir), "%s/etc/containerd/certs.d/docker.io", root);
    CHECK_EQ_INT(count_backups(dir), 0);
    /* a directory where a file should go: a clear error naming it */
    snprintf(dir, sizeof(dir), "%s/etc/rancher/k3s/registries.yaml", root);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_EQ_INT(clients_plan_build(CLIENTS_K3S, &m, &cfg, root, &plan, err, sizeof(err)), 0);
    CHECK(clients_plan_write(&plan, root, report, err, sizeof(err)) < 0);
    CHECK_CONTAINS(err, "registries.yaml");
    clients_plan_free(&plan);

    fclose(report);
    config_free(&cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    CHECK_EQ_INT(system(cmd), 0);
}

int main(void)
{
    test_mirror_url();
    test_quoting();
    test_docker_merge();
    test_plans();
    test_write();
    CHECK_DONE();
}
