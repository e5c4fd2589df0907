/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for config/config.c: good files, defaults, and error messages (file, line, key). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config/config.h"
#include "rules/rules.h"
#include "util/cidr.h"

static char dir[64];
static char path[128];
static char err[1024];
static struct config cfg;

static void write_file(const char *p, const char *content, size_t len)
{
    FILE *f = fopen(p, "wb");

    if (!f || fwrite(content, 1, len, f) != len || fclose(f) != 0) {
        perror(p);
        exit(1);
    }
}

static void write_str(const char *p, const char *content)
{
    write_file(p, content, strlen(content));
}

/* Writes yaml to DIR/mirror.yml and loads it over fresh defaults. */
static int load_n(const char *yaml, size_t len)
{
    write_file(path, yaml, len);
    config_free(&cfg);
    config_defaults(&cfg);
    memset(err, 'z', sizeof(err) - 1);
    err[sizeof(err) - 1] = '\0';
    return config_load(path, &cfg, err, sizeof(err));
}

static int load(const char *yaml)
{
    return load_n(yaml, strlen(yaml));
}

static void check_defaults(const struct config *c)
{
    CHECK_STR(c->listen, "0.0.0.0:5000");
    CHECK_STR(c->storage, "./regcache-data");
    CHECK_EQ_INT(c->n_upstreams, 1);
    CHECK_STR(c->upstreams[0].name, "docker.io");
    CHECK_STR(c->upstreams[0].url, "https://registry-1.docker.io");
    CHECK(c->upstreams[0].username == NULL);
    CHECK(c->upstreams[0].password == NULL);
    CHECK_EQ_U64(c->revalidate_after_ms, 30000);
    CHECK_EQ_U64(c->revalidate_timeout_ms, 2000);
    CHECK_EQ_U64(c->negative_ttl_ms, 30000);
    CHECK_EQ_U64(c->max_tags_per_repo, 10000);
    CHECK_EQ_U64(c->first_byte_ms, 10000);
    CHECK_EQ_U64(c->connect_timeout_ms, 10000);
    CHECK_EQ_U64(c->low_speed_time_ms, 30000);
    CHECK_EQ_U64(c->client_idle_ms, 60000);
    CHECK_EQ_U64(c->client_header_ms, 20000);
    CHECK_EQ_U64(c->min_body_rate, 1024);
    CHECK_EQ_U64(c->shutdown_grace_ms, 10000);
    CHECK_EQ_U64(c->max_connections, 1024);
    CHECK_EQ_U64(c->max_manifest_bytes, 4 * 1024 * 1024);
    CHECK_EQ_U64(c->max_blob_bytes, 64ULL << 30);
    CHECK_EQ_U64(c->total_small_ms, 60000);
    CHECK_EQ_U64(c->max_response_memory, 256ULL << 20);
    CHECK_EQ_U64(c->reserved_connections, 0);
    CHECK_EQ_U64(c->upstream_connections, 64);
    CHECK_EQ_U64(c->max_fills, 256);
    CHECK_EQ_INT(c->log_level, 1);
    CHECK_EQ_INT(c->auth_max_failures, 10);
    CHECK_EQ_INT(c->auth_verify_threads, 2);
}

/* An error: -EINVAL, message "<path>:<line>: <key>: ...<what>...", config left as it was. */
static void expect_error(int line_no, const char *yaml, int line, const char *key, const char *what)
{
    char prefix[256];
    int rc = load(yaml);

    if (key)
        snprintf(prefix, sizeof(prefix), "%s:%d: %s: ", path, line, key);
    else
        snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
    check_total++;
    if (rc != -EINVAL || strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, what) ||
        strchr(err, '\n')) {
        check_failed++;
        fprintf(stderr, "%s:%d: check failed: rc %d, want prefix \"%s\" and \"%s\", got \"%s\"\n",
                __FILE__, line_no, rc, prefix, what, err);
    }
    check_defaults(&cfg);
    CHECK(cfg.source == NULL);
}
#define ERR(yaml, line, key, what) expect_error(__LINE__, (yaml), (line), (key), (what))

static void test_defaults(void)
{
    struct config c;

    config_defaults(&c);
    check_defaults(&c);
    CHECK(c.source == NULL);
    config_free(&c);
    config_free(&c); /* harmless twice */
    CHECK(c.listen == NULL);
}

static void test_full(void)
{
    const char *yaml = "# full example\n"
                       "listen: '[::]:5001'\n"
                       "storage: /var/lib/regcache\n"
                       "upstreams:\n"
                       "  - name: docker.io\n"
                       "    url: https://registry-1.docker.io/\n"
                       "    username: someone\n"
                       "    password: secret\n"
                       "  - name: ghcr.io\n"
                       "    url: \"https://ghcr.io///\"\n"
                       "  - {name: 'localhost:5000', url: http://127.0.0.1:5000}\n"
                       "  - name: my_reg-1.example\n"
                       "    url: http://reg.example/prefix/\n"
                       "cache:\n"
                       "  revalidate_after: 5m\n"
                       "  revalidate_timeout: 750ms\n"
                       "timeouts:\n"
                       "  connect: 500ms\n"
                       "  first_byte: 4s\n"
                       "  low_speed: 1m\n"
                       "  client_idle: 2h\n"
                       "  client_header: 2s\n"
                       "  shutdown_grace: 0\n"
                       "limits:\n"
                       "  max_connections: 10\n"
                       "  min_body_rate: 10KiB\n"
                       "  max_manifest_size: 8MiB\n"
                       "log:\n"
                       "  level: debug\n";

    CHECK_EQ_INT(load(yaml), 0);
    CHECK_STR(err, "");
    CHECK_STR(cfg.source, path);
    CHECK_STR(cfg.listen, "[::]:5001");
    CHECK_STR(cfg.storage, "/var/lib/regcache");
    CHECK_EQ_INT(cfg.n_upstreams, 4);
    CHECK_STR(cfg.upstreams[0].name, "docker.io");
    CHECK_STR(cfg.upstreams[0].url, "https://registry-1.docker.io");
    CHECK_STR(cfg.upstreams[0].username, "someone");
    CHECK_STR(cfg.upstreams[0].password, "secret");
    CHECK_STR(cfg.upstreams[1].name, "ghcr.io");
    CHECK_STR(cfg.upstreams[1].url, "https://ghcr.io");
    CHECK(cfg.upstreams[1].username == NULL);
    CHECK(cfg.upstreams[1].password == NULL);
    CHECK_STR(cfg.upstreams[2].name, "localhost:5000");
    CHECK_STR(cfg.upstreams[2].url, "http://127.0.0.1:5000");
    CHECK_STR(cfg.upstreams[3].name, "my_reg-1.example");
    CHECK_STR(cfg.upstreams[3].url, "http://reg.example/prefix");
    CHECK(cfg.upstreams[4].name == NULL);
    CHECK_EQ_U64(cfg.revalidate_after_ms, 300000);
    CHECK_EQ_U64(cfg.revalidate_timeout_ms, 750);
    CHECK_EQ_U64(cfg.first_byte_ms, 4000);
    CHECK_EQ_U64(cfg.connect_timeout_ms, 500);
    CHECK_EQ_U64(cfg.low_speed_time_ms, 60000);
    CHECK_EQ_U64(cfg.client_idle_ms, 7200000);
    CHECK_EQ_U64(cfg.client_header_ms, 2000);
    CHECK_EQ_U64(cfg.min_body_rate, 10240);
    CHECK_EQ_U64(cfg.shutdown_grace_ms, 0);
    CHECK_EQ_U64(cfg.max_connections, 10);
    CHECK_EQ_U64(cfg.max_manifest_bytes, 8 * 1024 * 1024);
    CHECK_EQ_INT(cfg.log_level, 0);

    /* Loading a second file over the first: upstreams replaced, the rest kept. */
    write_str(path, "upstreams:\n  - name: quay.io\n    url: https://quay.io\n");
    CHECK_EQ_INT(config_load(path, &cfg, err, sizeof(err)), 0);
    CHECK_EQ_INT(cfg.n_upstreams, 1);
    CHECK_STR(cfg.upstreams[0].name, "quay.io");
    CHECK(cfg.upstreams[0].username == NULL);
    CHECK(cfg.upstreams[1].name == NULL);
    CHECK_STR(cfg.storage, "/var/lib/regcache");
    CHECK_EQ_INT(cfg.log_level, 0);
    /* And a failing load over it leaves it all alone. */
    write_str(path, "storage: x\nlog: {level: loud}\n");
    CHECK_EQ_INT(config_load(path, &cfg, err, sizeof(err)), -EINVAL);
    CHECK_STR(cfg.upstreams[0].name, "quay.io");
    CHECK_STR(cfg.storage, "/var/lib/regcache");
    CHECK_STR(cfg.source, path);
}

static void test_good_small(void)
{
    static const char *const empties[] = {
        "",      "\n\n",         "# only a comment\n",
        "---\n", "---\n...\n",   "~\n",
        "null",  "\xef\xbb\xbf", "cache:\ntimeouts: ~\nlimits: null\nlog:\n",
        "{}",    "cache: {}\n",
    };

    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        int rc = load(empties[i]);
        CHECK_EQ_INT(rc, 0);
        if (rc != 0)
            fprintf(stderr, "  empty config #%zu: %s\n", i, err);
        check_defaults(&cfg);
        CHECK_STR(cfg.source, path);
    }

    CHECK_EQ_INT(load("listen: :8080\n"), 0);
    CHECK_STR(cfg.listen, ":8080");
    CHECK_EQ_INT(load("listen: 0.0.0.0:5000 # comment\n"), 0);
    CHECK_STR(cfg.listen, "0.0.0.0:5000");

    /* Quoted numbers and sizes are fine; YAML types are not enforced beyond "scalar". */
    CHECK_EQ_INT(load("limits:\n  max_connections: '1'\n  max_manifest_size: \"1KiB\"\n"), 0);
    CHECK_EQ_U64(cfg.max_connections, 1);
    CHECK_EQ_U64(cfg.max_manifest_bytes, 1024);
    CHECK_EQ_INT(load("limits: {max_connections: 1000000, max_manifest_size: 64MiB}\n"), 0);
    CHECK_EQ_U64(cfg.max_connections, 1000000);
    CHECK_EQ_U64(cfg.max_manifest_bytes, 64 * 1024 * 1024);
    CHECK_EQ_INT(load("limits: {max_manifest_size: 67108864}\n"), 0);
    CHECK_EQ_INT(load("limits: {max_manifest_size: 1024}\n"), 0);
    CHECK_EQ_INT(load("limits: {max_manifest_size: 10KB}\n"), 0);
    CHECK_EQ_U64(cfg.max_manifest_bytes, 10000);
    CHECK_EQ_INT(load("limits: {min_body_rate: 0}\n"), 0);
    CHECK_EQ_U64(cfg.min_body_rate, 0); /* no minimum */
    CHECK_EQ_INT(load("limits: {max_blob_size: 1TiB}\ntimeouts: {total_small: 90s}\n"), 0);
    CHECK_EQ_U64(cfg.max_blob_bytes, 1ULL << 40);
    CHECK_EQ_U64(cfg.total_small_ms, 90000);
    CHECK_EQ_INT(load("limits: {max_connections: 100, reserved_connections: 10, "
                      "upstream_connections: 8, max_response_memory: 1GiB}\n"), 0);
    CHECK_EQ_U64(cfg.reserved_connections, 10);
    CHECK_EQ_U64(cfg.upstream_connections, 8);
    CHECK_EQ_U64(cfg.max_response_memory, 1ULL << 30);
    CHECK_EQ_INT(load("limits: {max_fills: 16}\n"), 0);
    CHECK_EQ_U64(cfg.max_fills, 16);
    CHECK_EQ_INT(load("limits: {max_response_memory: 0}\n"), 0);
    CHECK_EQ_U64(cfg.max_response_memory, 0); /* no cap */

    CHECK_EQ_INT(load("log: {level: info}\n"), 0);
    CHECK_EQ_INT(cfg.log_level, 1);
    CHECK_EQ_INT(load("log: {level: warn}\n"), 0);
    CHECK_EQ_INT(cfg.log_level, 2);
    CHECK_EQ_INT(load("log: {level: error}\n"), 0);
    CHECK_EQ_INT(cfg.log_level, 3);

    CHECK_EQ_INT(load("cache: {revalidate_after: 0}\ntimeouts: {connect: 1ms}\n"), 0);
    CHECK_EQ_U64(cfg.revalidate_after_ms, 0);
    CHECK_EQ_U64(cfg.connect_timeout_ms, 1);

    CHECK_EQ_INT(load("cache: {negative_ttl: 0, max_tags_per_repository: 50}\n"), 0);
    CHECK_EQ_U64(cfg.negative_ttl_ms, 0);
    CHECK_EQ_U64(cfg.max_tags_per_repo, 50);

    /* Anchors and aliases resolve like any other node. */
    CHECK_EQ_INT(load("upstreams:\n  - name: a\n    url: &u https://mirror.example/\n"
                      "  - name: b\n    url: *u\n"),
                 0);
    CHECK_EQ_INT(cfg.n_upstreams, 2);
    CHECK_STR(cfg.upstreams[1].url, "https://mirror.example");

    /* Credentials: empty password allowed when quoted, numbers are strings. */
    CHECK_EQ_INT(load("upstreams:\n  - {name: a, url: http://a, username: 123, password: ''}\n"),
                 0);
    CHECK_STR(cfg.upstreams[0].username, "123");
    CHECK_STR(cfg.upstreams[0].password, "");

    /* Windows line endings. */
    CHECK_EQ_INT(load("storage: /srv/x\r\nlog:\r\n  level: warn\r\n"), 0);
    CHECK_STR(cfg.storage, "/srv/x");
    CHECK_EQ_INT(cfg.log_level, 2);
}

/* hosted: a list of patterns, or a mapping of them and its limits. */
static void test_hosted(void)
{
    CHECK_EQ_INT(load("hosted: [team/*, search-hub]\n"), 0);
    CHECK_EQ_INT(cfg.n_hosted, 2);
    CHECK_EQ_U64(cfg.hosted_upload_timeout_ms, 10 * 60 * 1000);
    CHECK_EQ_U64(cfg.hosted_max_uploads, 64);
    CHECK_EQ_U64(cfg.hosted_max_size_bytes, 0);
    CHECK_EQ_INT(load("hosted:\n  repositories: [team/*]\n  upload_timeout: 90s\n"
                      "  max_size: 2GiB\n  max_uploads_per_client: 5\n"),
                 0);
    CHECK_EQ_INT(cfg.n_hosted, 1);
    if (cfg.n_hosted == 1)
        CHECK_STR(cfg.hosted[0], "team/*");
    CHECK_EQ_U64(cfg.hosted_upload_timeout_ms, 90000);
    CHECK_EQ_U64(cfg.hosted_max_size_bytes, 2ULL << 30);
    CHECK_EQ_U64(cfg.hosted_max_uploads, 5);
    ERR("hosted:\n  repositories: [team/*]\n  upload_timeout: 0\n", 3, "hosted.upload_timeout",
        "must be greater than 0");
    ERR("hosted:\n  max_uploads_per_client: 0\n", 2, "hosted.max_uploads_per_client",
        "out of range");
    ERR("hosted:\n  max_size: lots\n", 2, "hosted.max_size", "invalid size");
    ERR("hosted:\n  repository: [team/*]\n", 2, "hosted.repository", "unknown key");
    ERR("hosted:\n  repositories: [Team]\n", 2, "hosted.repositories", "only lowercase");
    ERR("hosted: team/*\n", 1, "hosted", "expected a list of repository patterns or a mapping");
}

static void test_ui(void)
{
    CHECK_EQ_INT(load("listen: :5000\n"), 0);
    CHECK_EQ_INT(cfg.ui_access, UI_ACCESS_PULL);
    CHECK_EQ_INT(load("ui:\n  access: push\n"), 0);
    CHECK_EQ_INT(cfg.ui_access, UI_ACCESS_PUSH);
    CHECK_EQ_INT(load("ui:\n  access: off\n"), 0);
    CHECK_EQ_INT(cfg.ui_access, UI_ACCESS_OFF);
    CHECK_EQ_INT(load("ui:\n  access: pull\n"), 0);
    CHECK_EQ_INT(cfg.ui_access, UI_ACCESS_PULL);
    CHECK_EQ_INT(load("ui:\n"), 0);
    ERR("listen: :5000\nui:\n  access: everyone\n", 3, "ui.access", "use pull, push or off");
    ERR("ui:\n  acess: pull\n", 2, "ui.acess", "unknown key");
    ERR("ui: pull\n", 1, "ui", "expected a mapping");
}

static void test_upstream_limits(void)
{
    char *yaml = malloc(8192), name[300];
    size_t n = 0;

    n += (size_t)sprintf(yaml + n, "upstreams:\n");
    for (int i = 0; i < CONFIG_MAX_UPSTREAMS; i++)
        n += (size_t)sprintf(yaml + n, "  - name: r%d.example\n    url: https://r%d.example\n", i,
                             i);
    CHECK_EQ_INT(load(yaml), 0);
    CHECK_EQ_INT(cfg.n_upstreams, CONFIG_MAX_UPSTREAMS);
    CHECK_STR(cfg.upstreams[CONFIG_MAX_UPSTREAMS - 1].name, "r31.example");
    /* The 33rd entry starts on line 2 + 2 * 32. */
    sprintf(yaml + n, "  - name: extra\n    url: https://extra\n");
    ERR(yaml, 2 + 2 * CONFIG_MAX_UPSTREAMS, "upstreams", "too many upstreams (max 32)");

    /* Names of 255 and 256 characters. */
    memset(name, 'n', 255);
    name[255] = '\0';
    sprintf(yaml, "upstreams:\n  - url: http://x\n    name: %s\n", name);
    CHECK_EQ_INT(load(yaml), 0);
    CHECK_EQ_INT(strlen(cfg.upstreams[0].name), 255);
    strcat(name, "n");
    sprintf(yaml, "upstreams:\n  - url: http://x\n    name: %s\n", name);
    ERR(yaml, 3, "upstreams[0].name", "1 to 255 characters");
    free(yaml);
}

static void test_errors(void)
{
    /* The two examples from the design notes, with their exact text. */
    ERR("# mirror\nlisten: :5000\nstorage: /x\n\n\ncache:\n  revalidate_after: abc\n", 7,
        "cache.revalidate_after", "invalid duration 'abc' (use e.g. 500ms, 30s, 5m, 24h, 7d)");
    ERR("upstreams:\n  - {name: a, url: http://a}\n  - {name: b, url: ftp://b}\n", 3,
        "upstreams[1].url", "must start with http:// or https://");

    ERR("limits:\n  max_blob_size: 0\n", 2, "limits.max_blob_size", "must be greater than 0");
    ERR("limits:\n  max_blob_size: lots\n", 2, "limits.max_blob_size", "invalid size 'lots'");
    ERR("timeouts:\n  total_small: 0\n", 2, "timeouts.total_small", "must be greater than 0");

    /* YAML syntax errors. */
    ERR("listen: [\n", 2, NULL, "YAML syntax error");
    ERR("storage: /x\nlisten: a: b\n", 2, NULL, "mapping values are not allowed");
    ERR("storage: /x\nstorage2: \"abc\n", 3, NULL, "YAML syntax error: found unexpected end");
    ERR("a:\n\tb: 1\n", 2, NULL, "YAML syntax error");
    ERR("upstreams: *nope\n", 1, NULL, "undefined alias");
    ERR("storage: /x\nlisten: \xff\xfe\n", 2, NULL, "YAML syntax error: invalid");
    ERR("storage: /x\n---\nlisten: :1\n", 2, NULL, "only one YAML document");
    CHECK_EQ_INT(load_n("storage: /x\nlisten: a\0b\n", 24), -EINVAL); /* raw NUL byte */
    CHECK_CONTAINS(err, "mirror.yml:2: YAML syntax error");
    ERR("storage: /x\n---\nlisten: [\n", 4, NULL, "YAML syntax error");

    /* Shapes. */
    ERR("- a\n- b\n", 1, NULL, "expected a mapping at the top level, got a sequence");
    ERR("just text\n", 1, NULL, "expected a mapping at the top level, got a scalar");
    ERR("listen: {a: 1}\n", 1, "listen", "expected a scalar value, got a mapping");
    ERR("storage:\n  - /x\n", 2, "storage", "expected a scalar value, got a sequence");
    ERR("cache: 5\n", 1, "cache", "expected a mapping, got a scalar");
    ERR("cache: [1]\n", 1, "cache", "expected a mapping, got a sequence");
    ERR("cache:\n  revalidate_after:\n    x: 1\n", 3, "cache.revalidate_after",
        "expected a scalar value, got a mapping");
    ERR("upstreams: docker.io\n", 1, "upstreams", "expected a sequence");
    ERR("upstreams:\n", 1, "upstreams", "expected a sequence");
    ERR("upstreams: {name: a, url: http://a}\n", 1, "upstreams", "got a mapping");
    ERR("upstreams: []\n", 1, "upstreams", "must not be empty");
    ERR("upstreams:\n  - docker.io\n", 2, "upstreams[0]", "expected a mapping");
    ERR("upstreams:\n  - {name: a, url: http://a}\n  - [x]\n", 3, "upstreams[1]", "got a sequence");
    ERR("upstreams:\n  - name: [a]\n    url: http://a\n", 2, "upstreams[0].name",
        "expected a scalar value");
    ERR("? [a]\n: b\n", 1, NULL, "keys must be scalars");
    ERR("cache:\n  ? {a: 1}\n  : b\n", 2, "cache", "keys must be scalars");
    ERR("cache:\n  \"revalidate_after\\0x\": 1s\n", 2, "cache", "key contains a NUL");

    /* Unknown and duplicate keys. */
    ERR("listen: :1\nfoo: 1\n", 2, "foo", "unknown key");
    ERR("Listen: :1\n", 1, "Listen", "unknown key");
    ERR("cache:\n  revalidate_after: 1s\n  foo: 1\n", 3, "cache.foo", "unknown key");
    ERR("timeouts:\n  connect_timeout: 1s\n", 2, "timeouts.connect_timeout", "unknown key");
    ERR("limits:\n  level: info\n", 2, "limits.level", "unknown key");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    token: x\n", 4, "upstreams[0].token",
        "unknown key");
    ERR("base: &b {connect: 1s}\ntimeouts:\n  <<: *b\n", 1, "base", "unknown key");
    ERR("listen: :1\nstorage: /a\nlisten: :2\n", 3, "listen",
        "duplicate key (first given on line 1)");
    ERR("log:\n  level: info\n  level: warn\n", 3, "log.level", "duplicate key");
    ERR("cache: {}\ncache: {}\n", 2, "cache", "duplicate key");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    name: b\n", 4, "upstreams[0].name",
        "duplicate key");
    ERR("upstreams:\n  - {name: a, url: http://a}\n  - {name: b, url: http://b}\n"
        "  - {name: a, url: http://c}\n",
        4, "upstreams[2].name", "duplicate upstream name 'a'");

    /* Required and paired keys. */
    ERR("upstreams:\n  - url: http://a\n", 2, "upstreams[0].name", "required key missing");
    ERR("upstreams:\n  - name: a\n", 2, "upstreams[0].url", "required key missing");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    username: u\n", 4, "upstreams[0].password",
        "required when username is given");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    password: p\n", 4, "upstreams[0].username",
        "required when password is given");
    ERR("upstreams:\n  - {name: a, url: http://a, username: '', password: p}\n", 2,
        "upstreams[0].username", "must not be empty");

    /* Values. */
    ERR("listen:\n", 1, "listen", "missing value");
    ERR("listen: ~\n", 1, "listen", "missing value");
    ERR("listen: 5000\n", 1, "listen", "invalid address '5000'");
    ERR("listen: ':0'\n", 1, "listen", "invalid address");
    ERR("listen: ::1:5000\n", 1, "listen", "invalid address");
    ERR("storage: ''\n", 1, "storage", "must not be empty");
    ERR("storage: null\n", 1, "storage", "missing value");
    ERR("storage: \"a\\0b\"\n", 1, "storage", "NUL");
    ERR("cache:\n  revalidate_after: 30\n", 2, "cache.revalidate_after", "invalid duration '30'");
    ERR("cache:\n  revalidate_after: -1s\n", 2, "cache.revalidate_after", "invalid duration");
    ERR("cache:\n  revalidate_after: 99999999999999999999d\n", 2, "cache.revalidate_after",
        "invalid duration");
    ERR("cache:\n  negative_ttl: 30\n", 2, "cache.negative_ttl", "invalid duration '30'");
    ERR("cache:\n  max_tags_per_repository: 0\n", 2, "cache.max_tags_per_repository",
        "out of range");
    ERR("cache:\n  max_tags_per_repository: many\n", 2, "cache.max_tags_per_repository",
        "invalid integer");
    ERR("timeouts:\n  connect: 0\n", 2, "timeouts.connect", "must be greater than 0");
    ERR("timeouts:\n  low_speed: 0s\n", 2, "timeouts.low_speed", "must be greater than 0");
    ERR("timeouts:\n  first_byte: 0s\n", 2, "timeouts.first_byte", "must be greater than 0");
    ERR("cache:\n  revalidate_timeout: 0\n", 2, "cache.revalidate_timeout",
        "must be greater than 0");
    ERR("timeouts:\n  client_idle: 0ms\n", 2, "timeouts.client_idle", "must be greater than 0");
    ERR("timeouts:\n  client_header: 0\n", 2, "timeouts.client_header", "must be greater than 0");
    ERR("limits:\n  min_body_rate: fast\n", 2, "limits.min_body_rate", "invalid size");
    ERR("timeouts:\n  shutdown_grace: soon\n", 2, "timeouts.shutdown_grace", "invalid duration");
    ERR("limits:\n  max_connections: 0\n", 2, "limits.max_connections", "out of range");
    ERR("limits:\n  max_connections: 1000001\n", 2, "limits.max_connections", "out of range");
    ERR("limits:\n  max_connections: -1\n", 2, "limits.max_connections", "invalid integer '-1'");
    ERR("limits:\n  reserved_connections: 64\n  max_connections: 64\n", 2,
        "limits.reserved_connections", "must be less than limits.max_connections (64)");
    ERR("limits:\n  reserved_connections: 2000\n", 2, "limits.reserved_connections",
        "must be less than limits.max_connections (1024)");
    ERR("limits:\n  upstream_connections: 0\n", 2, "limits.upstream_connections",
        "out of range");
    ERR("limits:\n  max_response_memory: lots\n", 2, "limits.max_response_memory",
        "invalid size");
    ERR("limits:\n  max_connections: 1e3\n", 2, "limits.max_connections", "invalid integer");
    ERR("limits:\n  max_connections: 99999999999999999999999\n", 2, "limits.max_connections",
        "invalid integer");
    ERR("limits:\n  max_connections: 10KiB\n", 2, "limits.max_connections", "invalid integer");
    ERR("limits:\n  max_manifest_size: 1023\n", 2, "limits.max_manifest_size", "out of range");
    ERR("limits:\n  max_manifest_size: 67108865\n", 2, "limits.max_manifest_size", "out of range");
    ERR("limits:\n  max_manifest_size: 1TiB\n", 2, "limits.max_manifest_size", "out of range");
    ERR("limits:\n  max_manifest_size: 4 MiB\n", 2, "limits.max_manifest_size",
        "invalid size '4 MiB'");
    ERR("log:\n  level: INFO\n", 2, "log.level", "invalid level 'INFO'");
    ERR("log:\n  level: verbose\n", 2, "log.level", "use debug, info, warn or error");
    ERR("log:\n  level: 1\n", 2, "log.level", "invalid level");

    /* Upstream names and URLs. */
    ERR("upstreams:\n  - {name: Docker.io, url: http://a}\n", 2, "upstreams[0].name",
        "must be lowercase");
    ERR("upstreams:\n  - {name: 'a/b', url: http://a}\n", 2, "upstreams[0].name", "invalid name");
    ERR("upstreams:\n  - {name: 'a b', url: http://a}\n", 2, "upstreams[0].name", "invalid name");
    ERR("upstreams:\n  - {name: '..', url: http://a}\n", 2, "upstreams[0].name",
        "must start with a letter or digit");
    ERR("upstreams:\n  - {name: '-x', url: http://a}\n", 2, "upstreams[0].name",
        "must start with a letter or digit");
    ERR("upstreams:\n  - {name: '', url: http://a}\n", 2, "upstreams[0].name", "1 to 255");
    ERR("upstreams:\n  - {name: a, url: registry-1.docker.io}\n", 2, "upstreams[0].url",
        "must start with http:// or https://");
    ERR("upstreams:\n  - {name: a, url: HTTPS://x}\n", 2, "upstreams[0].url",
        "must start with http:// or https://");
    ERR("upstreams:\n  - {name: a, url: 'https://'}\n", 2, "upstreams[0].url", "missing host");
    ERR("upstreams:\n  - {name: a, url: 'https:////'}\n", 2, "upstreams[0].url", "missing host");
    ERR("upstreams:\n  - {name: a, url: 'https:///x'}\n", 2, "upstreams[0].url", "missing host");
    ERR("upstreams:\n  - {name: a, url: 'https://a b'}\n", 2, "upstreams[0].url", "spaces");
    ERR("upstreams:\n  - {name: a, url: 'https://a?x=1'}\n", 2, "upstreams[0].url", "query");
    ERR("upstreams:\n  - {name: a, url: \"https://a\\n\"}\n", 2, "upstreams[0].url",
        "control characters");

    /* auth limits */
    ERR("auth:\n  max_failures: -1\n", 2, "auth.max_failures", "invalid value '-1' (use 0..100000)");
    ERR("auth:\n  verify_threads: 0\n", 2, "auth.verify_threads", "(use 1..16)");
    ERR("auth:\n  verify_threads: 17\n", 2, "auth.verify_threads", "(use 1..16)");
    CHECK_EQ_INT(load("auth:\n  max_failures: 0\n  verify_threads: 16\n"), 0);
    CHECK_EQ_INT(cfg.auth_max_failures, 0);
    CHECK_EQ_INT(cfg.auth_verify_threads, 16);
}

static void test_log_and_cors(void)
{
    CHECK_EQ_INT(cfg.log_format, 0);
    CHECK_EQ_INT(cfg.log_access, 1);
    CHECK_EQ_INT(cfg.n_cors_origins, 0);
    CHECK_EQ_INT(load("log:\n  level: warn\n  format: json\n  access: false\n"
                      "  access_probes: true\n  trusted_proxies: [10.0.0.0/8, '::1', fd00::/8]\n"
                      "cors:\n  allow_origins: ['https://ui.example.org', 'http://127.0.0.1:8080']\n"
                      "  allow_methods: [GET, HEAD, OPTIONS, DELETE]\n  allow_credentials: true\n"
                      "  max_age: 1h\n"),
                 0);
    CHECK_EQ_INT(cfg.log_level, 2);
    CHECK_EQ_INT(cfg.log_format, 1);
    CHECK_EQ_INT(cfg.log_access, 0);
    CHECK_EQ_INT(cfg.log_access_probes, 1);
    CHECK_EQ_U64(cfg.n_trusted_proxies, 3);
    CHECK_EQ_U64(cfg.trusted_proxies[0].bits, 104);
    CHECK_EQ_U64(cfg.trusted_proxies[1].bits, 128);
    CHECK_EQ_U64(cfg.n_cors_origins, 2);
    CHECK_STR(cfg.cors_origins[1], "http://127.0.0.1:8080");
    CHECK_EQ_U64(cfg.n_cors_methods, 4);
    CHECK(cfg.cors_headers == NULL);
    CHECK_EQ_INT(cfg.cors_credentials, 1);
    CHECK_EQ_U64(cfg.cors_max_age_ms, 3600 * 1000);
    ERR("log:\n  format: xml\n", 2, "log.format", "invalid value 'xml' (use text or json)");
    ERR("log:\n  access: maybe\n", 2, "log.access", "(use true or false)");
    ERR("log:\n  trusted_proxies: [10.0.0.1/8]\n", 2, "log.trusted_proxies",
        "'10.0.0.1/8': not an address or CIDR range");
    ERR("log:\n  trusted_proxies: 10.0.0.0/8\n", 2, "log.trusted_proxies", "expected a list");
    ERR("log:\n  colour: true\n", 2, "log.colour", "unknown key");
    ERR("log:\n  level: loud\n", 2, "log.level", "invalid level 'loud'");
    ERR("cors:\n  allow_origins: [ui.example.org]\n", 2, "cors.allow_origins",
        "an origin is scheme://host[:port]");
    ERR("cors:\n  allow_origins: ['https://ui.example.org/app']\n", 2, "cors.allow_origins",
        "with no path");
    ERR("cors:\n  allow_headers: ['X-A: b']\n", 2, "cors.allow_headers", "a header or method");
    ERR("cors:\n  max_age: 2d\n", 2, "cors.max_age", "at most 24h");
    ERR("cors:\n  origins: ['*']\n", 2, "cors.origins", "unknown key");
}

static void test_password_not_echoed(void)
{
    CHECK_EQ_INT(load("upstreams:\n  - {name: a, url: http://a, password: hunter2}\n"), -EINVAL);
    CHECK(strstr(err, "hunter2") == NULL);
}

/* password_file: relative to the config's directory, %d/ in $CREDENTIALS_DIRECTORY, one line
 * without its line end; errors name file, line and key; user: must exist. */
static void test_password_file_and_user(void)
{
    char secret[160], creds[160], cred[200];
    snprintf(secret, sizeof(secret), "%s/pw", dir);
    write_str(secret, "s3cret\r\n");
    chmod(secret, 0600);
    CHECK_EQ_INT(load("upstreams:\n  - {name: a, url: http://a, username: u,\n"
                      "     password_file: pw}\n"), 0);
    CHECK_STR(cfg.upstreams[0].password, "s3cret");
    char yaml[400];
    snprintf(yaml, sizeof(yaml), "upstreams:\n  - {name: a, url: http://a, username: u,\n"
                                 "     password_file: %s}\n", secret);
    CHECK_EQ_INT(load(yaml), 0);
    CHECK_STR(cfg.upstreams[0].password, "s3cret");

    snprintf(creds, sizeof(creds), "%s/creds", dir);
    CHECK_EQ_INT(mkdir(creds, 0700), 0);
    snprintf(cred, sizeof(cred), "%s/hub", creds);
    write_str(cred, "from-systemd");
    setenv("CREDENTIALS_DIRECTORY", creds, 1);
    CHECK_EQ_INT(load("upstreams:\n  - {name: a, url: http://a, username: u,\n"
                      "     password_file: '%d/hub'}\n"), 0);
    CHECK_STR(cfg.upstreams[0].password, "from-systemd");
    ERR("upstreams:\n  - {name: a, url: http://a, username: u,\n     password_file: '%d/../pw'}\n",
        3, "upstreams[0].password_file", "no '/'");
    unsetenv("CREDENTIALS_DIRECTORY");
    ERR("upstreams:\n  - {name: a, url: http://a, username: u,\n     password_file: '%d/hub'}\n",
        3, "upstreams[0].password_file", "$CREDENTIALS_DIRECTORY is not set");
    unlink(cred);
    rmdir(creds);

    ERR("upstreams:\n  - {name: a, url: http://a, username: u,\n     password_file: nope}\n", 3,
        "upstreams[0].password_file", "cannot read");
    ERR("upstreams:\n  - {name: a, url: http://a, username: u, password: x,\n"
        "     password_file: pw}\n", 3, "upstreams[0].password_file", "not both");
    ERR("upstreams:\n  - {name: a, url: http://a, password_file: pw}\n", 2,
        "upstreams[0].username", "required");
    write_str(secret, "\n");
    ERR("upstreams:\n  - {name: a, url: http://a, username: u, password_file: pw}\n", 2,
        "upstreams[0].password_file", "is empty");
    write_str(secret, "two\nlines\n");
    ERR("upstreams:\n  - {name: a, url: http://a, username: u, password_file: pw}\n", 2,
        "upstreams[0].password_file", "one line");
    unlink(secret);

    CHECK_EQ_INT(load("user: root\n"), 0);
    CHECK_STR(cfg.user, "root");
    ERR("\nuser: no-such-user-at-all\n", 2, "user", "no such user");
    ERR("user: ''\n", 1, "user", "must not be empty");
}

static void test_files(void)
{
    char small[16];
    struct config c;
    char bigpath[160];
    char *big;
    int rc;

    config_defaults(&c);
    snprintf(bigpath, sizeof(bigpath), "%s/does-not-exist.yml", dir);
    rc = config_load(bigpath, &c, err, sizeof(err));
    CHECK_EQ_INT(rc, -ENOENT);
    CHECK_CONTAINS(err, "does-not-exist.yml");
    CHECK_CONTAINS(err, "No such file");
    rc = config_load(dir, &c, err, sizeof(err));
    CHECK_EQ_INT(rc, -EISDIR);
    CHECK_CONTAINS(err, dir);
    check_defaults(&c);

    /* 2 MiB of comments: refused without reading forever. */
    big = malloc(2 * 1024 * 1024 + 1);
    memset(big, '#', 2 * 1024 * 1024);
    snprintf(bigpath, sizeof(bigpath), "%s/big.yml", dir);
    write_file(bigpath, big, 2 * 1024 * 1024);
    free(big);
    rc = config_load(bigpath, &c, err, sizeof(err));
    CHECK_EQ_INT(rc, -EFBIG);
    CHECK_CONTAINS(err, "too large");
    unlink(bigpath);

    /* A tiny or absent error buffer is never overrun. */
    write_str(path, "foo: 1\n");
    memset(small, 'Q', sizeof(small));
    CHECK_EQ_INT(config_load(path, &c, small, 8), -EINVAL);
    CHECK_EQ_INT(strlen(small), 7);
    CHECK_EQ_INT(small[8], 'Q');
    CHECK_EQ_INT(config_load(path, &c, NULL, 0), -EINVAL);
    CHECK_EQ_INT(config_load(path, &c, small, 0), -EINVAL);
    check_defaults(&c);

    /* A relative file name appears as given. */
    CHECK_EQ_INT(chdir(dir), 0);
    write_str("mirror.yml", "\n\n\n\n\n\ncache:\n  revalidate_after: abc\n");
    CHECK_EQ_INT(config_load("mirror.yml", &c, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "mirror.yml:8: cache.revalidate_after: invalid duration 'abc' (use e.g. "
                   "500ms, 30s, 5m, 24h, 7d)");
    write_str("mirror.yml", "upstreams:\n  - {name: x, url: https://x/}\n");
    CHECK_EQ_INT(config_load("mirror.yml", &c, err, sizeof(err)), 0);
    CHECK_STR(c.source, "mirror.yml");
    CHECK_STR(c.upstreams[0].url, "https://x");
    unlink("mirror.yml");
    CHECK_EQ_INT(chdir("/"), 0);
    config_free(&c);
}

/* metrics.listen and metrics.allow: off by default, checked with file, line and key. */
static void test_metrics(void)
{
    CHECK_EQ_INT(load("storage: /x\n"), 0);
    CHECK(cfg.metrics_listen == NULL);
    CHECK_EQ_INT(cfg.n_metrics_allow, 0);
    CHECK_EQ_INT(load("listen: 127.0.0.1:5000\nmetrics:\n  listen: 127.0.0.1:5001\n"
                      "  allow: [10.0.0.0/8, 127.0.0.1, \"fd00::/8\", \"::1\"]\n"),
                 0);
    CHECK_STR(cfg.metrics_listen, "127.0.0.1:5001");
    CHECK_EQ_INT(cfg.n_metrics_allow, 4);
    if (cfg.n_metrics_allow == 4) {
        CHECK_STR(cfg.metrics_allow[0], "10.0.0.0/8");
        CHECK_STR(cfg.metrics_allow[3], "::1");
    }
    CHECK_EQ_INT(load("metrics:\n  allow: []\n"), 0);
    CHECK_EQ_INT(cfg.n_metrics_allow, 0);
    CHECK_EQ_INT(load("metrics:\n"), 0);

    ERR("metrics:\n  allow: [10.0.0.0/8, 10.0.0.1/8]\n", 2, "metrics.allow",
        "'10.0.0.1/8': not an address or CIDR range");
    ERR("metrics:\n  allow:\n    - 300.0.0.0/8\n", 3, "metrics.allow",
        "'300.0.0.0/8': not an address or CIDR range");
    ERR("metrics:\n  allow:\n    - \"::/129\"\n", 3, "metrics.allow", "not an address or CIDR range");
    ERR("metrics:\n  allow: 10.0.0.0/8\n", 2, "metrics.allow", "expected a list");
    ERR("metrics:\n  listen: nowhere\n", 2, "metrics.listen", "invalid address 'nowhere'");
    ERR("listen: 0.0.0.0:5000\nmetrics:\n  listen: 127.0.0.1:5000\n", 3, "metrics.listen",
        "is the address of listen");
    ERR("metrics:\n  listen: 127.0.0.1:5001\nlisten: :5001\n", 3, "listen",
        "is the address of metrics.listen");
    ERR("metrics:\n  port: 5001\n", 2, "metrics.port", "unknown key");
    ERR("metrics: [a]\n", 1, "metrics", "expected a mapping, got a sequence");
    /* a different port on the same host is fine */
    CHECK_EQ_INT(load("listen: 127.0.0.1:5000\nmetrics:\n  listen: 127.0.0.1:5002\n"), 0);
}

static void test_endpoints_and_sources(void)
{
    CHECK_EQ_INT(load("upstreams:\n"
                      "  - name: docker.io\n"
                      "    urls: [http://127.0.0.1:5001/, http://127.0.0.1:5002]\n"
                      "    blob_sources:\n"
                      "      - url: http://sibling:5000\n"
                      "        order: before\n"
                      "        repository_prefix: dockerhub\n"
                      "      - name: public-mirror\n"
                      "        url: https://mirror.example\n"
                      "        username: u\n"
                      "        password: p\n"),
                 0);
    const struct config_upstream *u = &cfg.upstreams[0];
    CHECK_STR(u->url, "http://127.0.0.1:5001");
    CHECK_EQ_INT(u->n_urls, 2);
    CHECK_STR(u->urls[0], "http://127.0.0.1:5001");
    CHECK_STR(u->urls[1], "http://127.0.0.1:5002");
    CHECK_EQ_INT(u->n_blob_sources, 2);
    CHECK_STR(u->blob_sources[0].name, "http://sibling:5000");
    CHECK_STR(u->blob_sources[0].url, "http://sibling:5000");
    CHECK_EQ_INT(u->blob_sources[0].before, 1);
    CHECK_STR(u->blob_sources[0].repository_prefix, "dockerhub");
    CHECK(u->blob_sources[0].username == NULL);
    CHECK_STR(u->blob_sources[1].name, "public-mirror");
    CHECK_EQ_INT(u->blob_sources[1].before, 0);
    CHECK_STR(u->blob_sources[1].username, "u");
    CHECK_STR(u->blob_sources[1].password, "p");
    CHECK(u->blob_sources[1].repository_prefix == NULL);
    /* url alone is a one-element list */
    CHECK_EQ_INT(load("upstreams:\n  - {name: a, url: http://a}\n"), 0);
    CHECK_EQ_INT(cfg.upstreams[0].n_urls, 0);
    CHECK_STR(cfg.upstreams[0].url, "http://a");

    ERR("upstreams:\n  - name: a\n    url: http://a\n    urls: [http://b]\n", 4,
        "upstreams[0].urls", "give url or urls, not both (url is on line 3)");
    ERR("upstreams:\n  - name: a\n    urls: [http://a, ftp://b]\n", 3, "upstreams[0].urls",
        "must start with http:// or https://");
    ERR("upstreams:\n  - name: a\n    urls: []\n", 3, "upstreams[0].urls", "must not be empty");
    ERR("upstreams:\n  - name: a\n    urls: http://a\n", 3, "upstreams[0].urls",
        "expected a list of URLs");
    ERR("upstreams:\n  - name: a\n    urls: [http://a, http://a/]\n", 3, "upstreams[0].urls",
        "listed twice");
    ERR("upstreams:\n  - name: a\n    urls:\n      - http://a\n      - [x]\n", 5,
        "upstreams[0].urls", "expected a scalar");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    blob_sources:\n"
        "      - url: http://s\n        order: first\n",
        6, "upstreams[0].blob_sources[0].order", "unknown order 'first' (use before or after)");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    blob_sources:\n"
        "      - url: http://s\n      - url: s.example\n",
        6, "upstreams[0].blob_sources[1].url", "must start with http:// or https://");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    blob_sources:\n"
        "      - order: before\n",
        5, "upstreams[0].blob_sources[0].url", "required key missing");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    blob_sources:\n"
        "      - url: http://s\n        colour: red\n",
        6, "upstreams[0].blob_sources[0].colour", "unknown key");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    blob_sources:\n"
        "      - url: http://s\n        username: u\n",
        6, "upstreams[0].blob_sources[0].password", "required when username is given");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    blob_sources:\n"
        "      - url: http://s\n        repository_prefix: /x\n",
        6, "upstreams[0].blob_sources[0].repository_prefix", "not a repository name prefix");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    blob_sources:\n"
        "      - url: http://s\n      - url: http://s\n",
        6, "upstreams[0].blob_sources[1]", "duplicate blob source name 'http://s'");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    blob_sources: {url: http://s}\n", 4,
        "upstreams[0].blob_sources", "expected a list of mappings");
}

/* rules: a list, or a mapping of default, groups and list; errors name file, line and key. */
static void test_rules(void)
{
    CHECK_EQ_INT(load("rules:\n  - deny: docker.io/library/ubuntu\n  - allow: '*/library/*:3.*'\n"),
                 0);
    CHECK_EQ_INT(rules_count(cfg.rules), 2);
    CHECK_STR(rules_text(cfg.rules, 1), "deny docker.io/library/ubuntu:*");
    CHECK_EQ_INT(load("rules:\n  list:\n    - allow: docker.io/team/*\n      users: ['@ci', "
                      "anonymous]\n  default: deny\n  groups:\n    ci: [alice, bob]\n"),
                 0);
    CHECK_EQ_INT(rules_count(cfg.rules), 1);
    ERR("rules:\n  - permit: docker.io/x\n", 2, "rules[1].permit", "unknown action");
    ERR("rules:\n  default: maybe\n", 2, "rules.default", "unknown action");
    ERR("rules:\n  - deny: docker.io/lib[rary\n", 2, "rules[1].deny", "unclosed '['");
    ERR("rules:\n  - deny: ubuntu\n", 2, "rules[1].deny", "UPSTREAM/REPOSITORY");
    ERR("rules:\n  - allow: docker.io/x\n  - deny: docker.io/y:Bad tag\n", 3, "rules[2].deny",
        "only name characters");
    ERR("rules:\n  list:\n    - allow: docker.io/x\n      users: ['@ops']\n", 4,
        "rules.list[1].users", "unknown group");
    ERR("rules:\n  - allow: docker.io/x\n    deny: docker.io/y\n", 3, "rules[1].deny",
        "one action");
    ERR("rules:\n  - users: [alice]\n", 2, "rules[1]", "needs allow: or deny:");
    ERR("rules:\n  groups:\n    ci: alice\n", 3, "rules.groups.ci", "expected a list");
    ERR("rules:\n  - allow: '*/x'\n  - deny: quay.io/y\n", 3, "rules[2].deny",
        "no upstream is named 'quay.io'");
    CHECK_EQ_INT(load("rules:\n  - deny: quay.io/y\nupstreams:\n  - name: quay.io\n"
                      "    url: https://quay.io\n"), 0);
}

/* Tiers: a parent regcache as an upstream, the instance id Via names. */
static void test_parent_and_instance(void)
{
    CHECK_EQ_INT(load("upstreams:\n  - name: docker.io\n    url: http://parent:5000\n"
                      "    parent: true\n  - name: ghcr.io\n    url: http://parent:5000\n"),
                 0);
    CHECK_EQ_INT(cfg.upstreams[0].parent, 1);
    CHECK_EQ_INT(cfg.upstreams[1].parent, 0);
    CHECK(cfg.instance_id == NULL);
    CHECK_EQ_INT(load("instance_id: site-a.example:5000\n"), 0);
    CHECK_STR(cfg.instance_id, "site-a.example:5000");
    ERR("upstreams:\n  - name: a\n    url: http://a\n    parent: maybe\n", 4,
        "upstreams[0].parent", "invalid value 'maybe' (use true or false)");
    ERR("instance_id: 'a b'\n", 1, "instance_id", "invalid id 'a b'");
    ERR("instance_id: ''\n", 1, "instance_id", "invalid id ''");
    ERR("instance_id: a,b\n", 1, "instance_id", "invalid id 'a,b'");
}

/* workers: auto (the default: the CPUs the process may use) or 1..CONFIG_WORKERS_MAX. */
static void test_workers(void)
{
    CHECK_EQ_INT(load("listen: :5000\n"), 0);
    CHECK_EQ_INT((int)cfg.workers, 0);
    CHECK(config_workers(&cfg) >= 1 && config_workers(&cfg) <= CONFIG_WORKERS_MAX);
    CHECK_EQ_INT((int)config_workers(&cfg), (int)config_auto_workers());
    CHECK_EQ_INT(load("workers: 3\n"), 0);
    CHECK_EQ_INT((int)config_workers(&cfg), 3);
    CHECK_EQ_INT(load("workers: auto\n"), 0);
    CHECK_EQ_INT((int)cfg.workers, 0);
    ERR("workers: 0\n", 1, "workers", "invalid value '0' (auto, or 1 to 64 event loops)");
    ERR("workers: 65\n", 1, "workers", "invalid value '65'");
    ERR("listen: :5000\nworkers: two\n", 2, "workers", "invalid value 'two'");
}

static void test_s3(void)
{
    static const char base[] = "s3:\n  endpoint: http://127.0.0.1:7480\n  bucket: b\n"
                               "  access_key: a\n  secret_key: s\n";
    char yaml[512];
    CHECK_EQ_INT(load(base), 0);
    CHECK(cfg.s3_abandoned_upload_after_ms == 24ULL * 3600 * 1000);
    snprintf(yaml, sizeof(yaml), "%s  abandoned_upload_after: 90m\n", base);
    CHECK_EQ_INT(load(yaml), 0);
    CHECK(cfg.s3_abandoned_upload_after_ms == 90ULL * 60 * 1000);
    snprintf(yaml, sizeof(yaml), "%s  abandoned_upload_after: 500ms\n", base);
    ERR(yaml, 6, "s3.abandoned_upload_after", "at least 1s");
    snprintf(yaml, sizeof(yaml), "%s  abandoned_upload_after: soon\n", base);
    ERR(yaml, 6, "s3.abandoned_upload_after", "invalid duration 'soon'");
    CHECK(cfg.s3_access_interval_ms == 3600ULL * 1000);
    CHECK(cfg.s3_gc_lease_ms == 5ULL * 60 * 1000);
    CHECK(cfg.s3_max_size_bytes == 0 && !cfg.s3_ttl_set);
    snprintf(yaml, sizeof(yaml), "%s  access_interval: 0\n  ttl: 30d\n  max_size: 2TiB\n"
             "  gc_lease: 30s\n", base);
    CHECK_EQ_INT(load(yaml), 0);
    CHECK(cfg.s3_access_interval_ms == 0);
    CHECK(cfg.s3_ttl_set && cfg.s3_ttl_ms == 30ULL * 24 * 3600 * 1000);
    CHECK(cfg.s3_max_size_bytes == 2ULL << 40);
    CHECK(cfg.s3_gc_lease_ms == 30ULL * 1000);
    snprintf(yaml, sizeof(yaml), "%s  ttl: 0\n", base);
    CHECK_EQ_INT(load(yaml), 0);
    CHECK(cfg.s3_ttl_set && cfg.s3_ttl_ms == 0);
    snprintf(yaml, sizeof(yaml), "%s  access_interval: 200ms\n", base);
    ERR(yaml, 6, "s3.access_interval", "at least 1s");
    snprintf(yaml, sizeof(yaml), "%s  gc_lease: 0\n", base);
    CHECK_EQ_INT(load(yaml), 0);
    CHECK(cfg.s3_gc_lease_ms == 0);
    snprintf(yaml, sizeof(yaml), "%s  gc_lease: 10ms\n", base);
    ERR(yaml, 6, "s3.gc_lease", "at least 1s");
    snprintf(yaml, sizeof(yaml), "%s  max_size: lots\n", base);
    ERR(yaml, 6, "s3.max_size", "invalid size 'lots'");
    /* a bucket TTL no longer than a marker interval plus a GC period: in-use blobs could go */
    snprintf(yaml, sizeof(yaml), "%s  ttl: 2h\n", base); /* 1h + cache.gc_interval 24h */
    ERR(yaml, 1, "s3.ttl", "must be longer than s3.access_interval (3600 s) plus "
                           "cache.gc_interval (86400 s)");
    snprintf(yaml, sizeof(yaml), "cache:\n  ttl: 1d\n%s", base);
    ERR(yaml, 3, "s3", "the bucket's TTL (cache.ttl, 86400 s)");
    snprintf(yaml, sizeof(yaml), "%s  ttl: 26h\n", base);
    CHECK_EQ_INT(load(yaml), 0);
    /* no markers, no lease or no TTL: nothing to check */
    snprintf(yaml, sizeof(yaml), "%s  ttl: 2h\n  access_interval: 0\n", base);
    CHECK_EQ_INT(load(yaml), 0);
    snprintf(yaml, sizeof(yaml), "%s  ttl: 2h\n  gc_lease: 0\n", base);
    CHECK_EQ_INT(load(yaml), 0);
}

int main(void)
{
    strcpy(dir, "/tmp/regcache-test-config.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/mirror.yml", dir);

    test_defaults();
    test_full();
    test_good_small();
    test_upstream_limits();
    test_hosted();
    test_rules();
    test_ui();
    test_errors();
    test_log_and_cors();
    test_password_not_echoed();
    test_password_file_and_user();
    test_files();
    test_metrics();
    test_endpoints_and_sources();
    test_parent_and_instance();
    test_workers();
    test_s3();

    config_free(&cfg);
    unlink(path);
    rmdir(dir);
    CHECK_DONE();
}
