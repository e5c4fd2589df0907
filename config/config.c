/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration: embedded defaults, overridden by a YAML file read with libyaml's document API.
 * Every error names the file, the 1-based line and the dotted key it is about. */
#include "config/config.h"
#include "rules/rules.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "cluster/members.h"
#include "cluster/peer_auth.h"
#include "util/cidr.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/reference.h"

#define CONFIG_FILE_MAX (1024 * 1024) /* a config file is a few hundred bytes */
#define KEY_MAX 160                   /* dotted key in messages; longer ones are cut */
#define UPSTREAM_NAME_MAX 255
#define MAX_CONNECTIONS_MAX 1000000
#define MANIFEST_MIN (1ULL << 10)
#define MANIFEST_MAX (64ULL << 20)
#define SECRET_FILE_MAX 4096 /* a password file holds one line */

struct ctx {
    const char *path;
    const char *buf; /* file contents, for locating reader errors */
    size_t len;
    unsigned mode; /* the file's permission bits */
    yaml_document_t *doc;
    char *err;
    size_t errlen;
    unsigned long rule_lines[RULES_MAX]; /* where each rule was given, for later checks */
    char rule_keys[RULES_MAX][48];
};

/* config_defaults cannot report failure, and without memory at startup nothing else works. */
static char *must_strdup(const char *s)
{
    char *d = strdup(s);

    if (!d) {
        fputs("regcache: out of memory\n", stderr);
        abort();
    }
    return d;
}

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    c->listen = must_strdup("0.0.0.0:5000");
    c->storage = must_strdup("./regcache-data");
    c->upstreams[0].name = must_strdup("docker.io");
    c->upstreams[0].url = must_strdup("https://registry-1.docker.io");
    c->n_upstreams = 1;
    c->revalidate_after_ms = 30 * 1000;
    c->revalidate_timeout_ms = 2 * 1000;
    c->ttl_ms = 7ULL * 24 * 3600 * 1000;
    c->gc_interval_ms = 24ULL * 3600 * 1000;
    c->max_size_bytes = 0;
    c->min_free_bytes = 0;
    c->negative_ttl_ms = 30 * 1000;
    c->max_tags_per_repo = 10000;
    c->connect_timeout_ms = 10 * 1000;
    c->low_speed_time_ms = 30 * 1000;
    c->first_byte_ms = 10 * 1000;
    c->total_small_ms = 60 * 1000;
    c->client_idle_ms = 60 * 1000;
    c->client_header_ms = 20 * 1000;
    c->shutdown_grace_ms = 10 * 1000;
    c->max_connections = 1024;
    c->min_body_rate = 1024;
    c->max_manifest_bytes = 4ULL << 20;
    c->max_blob_bytes = 64ULL << 30;
    c->max_response_memory = 256ULL << 20;
    c->reserved_connections = 0;
    c->upstream_connections = 64;
    c->max_fills = 256;
    c->log_level = LOG_INFO;
    c->log_access = 1;
    c->cors_max_age_ms = 10 * 60 * 1000;
    c->auth_realm = strdup("regcache");
    c->auth_anonymous_pull = 1;
    c->hosted_upload_timeout_ms = 10 * 60 * 1000;
    c->hosted_max_uploads = 64;
    c->auth_max_failures = 10;
    c->auth_verify_threads = 2;
    c->prefetch_schedule_ms = 6ULL * 3600 * 1000;
    c->s3_abandoned_upload_after_ms = 24ULL * 3600 * 1000;
    c->s3_access_interval_ms = 3600ULL * 1000;
    c->s3_gc_lease_ms = 5ULL * 60 * 1000;
    c->prefetch_window_from = c->prefetch_window_to = -1;
    c->prefetch_reserve = 10;
}

static void free_secret(char *s)
{
    if (s)
        explicit_bzero(s, strlen(s));
    free(s);
}

static void blob_source_free(struct config_blob_source *b)
{
    free(b->name);
    free(b->url);
    free(b->username);
    free_secret(b->password);
    free(b->ca_file);
    free(b->repository_prefix);
    memset(b, 0, sizeof(*b));
}

static void upstream_free(struct config_upstream *u)
{
    free(u->name);
    free(u->url);
    free(u->username);
    free_secret(u->password);
    free(u->ca_file);
    for (size_t i = 0; i < u->n_urls && i < CONFIG_MAX_URLS; i++)
        free(u->urls[i]);
    for (size_t i = 0; i < u->n_blob_sources && i < CONFIG_MAX_BLOB_SOURCES; i++)
        blob_source_free(&u->blob_sources[i]);
    memset(u, 0, sizeof(*u));
}

static void str_list_free(char ***list, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

void config_free(struct config *c)
{
    if (!c)
        return;
    free(c->source);
    free(c->listen);
    free(c->storage);
    free(c->user);
    free(c->instance_id);
    for (size_t i = 0; i < c->n_upstreams && i < CONFIG_MAX_UPSTREAMS; i++)
        upstream_free(&c->upstreams[i]);
    free(c->auth_htpasswd);
    free(c->auth_realm);
    free(c->auth_token_realm);
    free(c->tls_cert);
    free(c->tls_key);
    for (size_t i = 0; i < c->n_auth_push_users; i++)
        free(c->auth_push_users[i]);
    free(c->auth_push_users);
    for (size_t i = 0; i < c->n_hosted; i++)
        free(c->hosted[i]);
    free(c->hosted);
    free(c->metrics_listen);
    free(c->s3_endpoint);
    free(c->s3_bucket);
    free(c->s3_region);
    free(c->s3_access_key);
    free(c->s3_secret_key);
    free(c->s3_prefix);
    free(c->s3_ca_file);
    str_list_free(&c->cluster_members, &c->n_cluster_members);
    free(c->cluster_self);
    free(c->cluster_secret);
    rules_free(c->rules);
    c->rules = NULL;
    str_list_free(&c->metrics_allow, &c->n_metrics_allow);
    free(c->trusted_proxies);
    str_list_free(&c->cors_origins, &c->n_cors_origins);
    str_list_free(&c->cors_headers, &c->n_cors_headers);
    str_list_free(&c->cors_methods, &c->n_cors_methods);
    str_list_free(&c->pins, &c->n_pins);
    str_list_free(&c->prefetch, &c->n_prefetch);
    str_list_free(&c->prefetch_platforms, &c->n_prefetch_platforms);
    memset(c, 0, sizeof(*c)); /* a second config_free is harmless */
}

/* strdup that keeps NULL as NULL; *ok turns false when memory runs out. */
static char *dup_or_null(const char *s, bool *ok)
{
    char *d;

    if (!s)
        return NULL;
    d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

/* Deep copy, so that a failed load leaves the caller's config untouched. */
/* *dst (which holds a copy of the src pointer) gets its own copy of src's list. */
static int str_list_copy(char ***dst, size_t *n, char *const *src, size_t count)
{
    *dst = NULL;
    *n = 0;
    if (!src)
        return 0;
    *dst = calloc(count ? count : 1, sizeof(char *));
    if (!*dst)
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (!((*dst)[i] = strdup(src[i])))
            return -1;
        *n = i + 1;
    }
    return 0;
}

static int config_copy(struct config *dst, const struct config *src)
{
    bool ok = true;

    *dst = *src;
    dst->source = dup_or_null(src->source, &ok);
    dst->listen = dup_or_null(src->listen, &ok);
    dst->storage = dup_or_null(src->storage, &ok);
    dst->user = dup_or_null(src->user, &ok);
    dst->instance_id = dup_or_null(src->instance_id, &ok);
    for (size_t i = 0; i < src->n_upstreams && i < CONFIG_MAX_UPSTREAMS; i++) {
        const struct config_upstream *u = &src->upstreams[i];
        dst->upstreams[i].name = dup_or_null(u->name, &ok);
        dst->upstreams[i].url = dup_or_null(u->url, &ok);
        dst->upstreams[i].username = dup_or_null(u->username, &ok);
        dst->upstreams[i].password = dup_or_null(u->password, &ok);
        dst->upstreams[i].ca_file = dup_or_null(u->ca_file, &ok);
        for (size_t j = 0; j < u->n_urls && j < CONFIG_MAX_URLS; j++)
            dst->upstreams[i].urls[j] = dup_or_null(u->urls[j], &ok);
        for (size_t j = 0; j < u->n_blob_sources && j < CONFIG_MAX_BLOB_SOURCES; j++) {
            const struct config_blob_source *b = &u->blob_sources[j];
            struct config_blob_source *d = &dst->upstreams[i].blob_sources[j];
            d->name = dup_or_null(b->name, &ok);
            d->url = dup_or_null(b->url, &ok);
            d->username = dup_or_null(b->username, &ok);
            d->password = dup_or_null(b->password, &ok);
            d->ca_file = dup_or_null(b->ca_file, &ok);
            d->repository_prefix = dup_or_null(b->repository_prefix, &ok);
        }
    }
    dst->auth_htpasswd = dup_or_null(src->auth_htpasswd, &ok);
    dst->tls_cert = dup_or_null(src->tls_cert, &ok);
    dst->tls_key = dup_or_null(src->tls_key, &ok);
    dst->auth_realm = dup_or_null(src->auth_realm, &ok);
    dst->auth_token_realm = dup_or_null(src->auth_token_realm, &ok);
    dst->auth_push_users = NULL;
    dst->n_auth_push_users = 0;
    if (src->n_auth_push_users) {
        dst->auth_push_users = calloc(src->n_auth_push_users, sizeof(char *));
        if (!dst->auth_push_users)
            ok = false;
        for (size_t i = 0; ok && i < src->n_auth_push_users; i++) {
            dst->auth_push_users[i] = dup_or_null(src->auth_push_users[i], &ok);
            dst->n_auth_push_users = i + 1;
        }
    }
    dst->rules = NULL; /* rules come only from a file, loaded over the defaults */
    dst->hosted = NULL;
    dst->n_hosted = 0;
    if (src->n_hosted) {
        dst->hosted = calloc(src->n_hosted, sizeof(char *));
        if (!dst->hosted)
            ok = false;
        for (size_t i = 0; ok && i < src->n_hosted; i++) {
            dst->hosted[i] = dup_or_null(src->hosted[i], &ok);
            dst->n_hosted = i + 1;
        }
    }
    dst->metrics_listen = dup_or_null(src->metrics_listen, &ok);
    dst->s3_endpoint = dup_or_null(src->s3_endpoint, &ok);
    dst->s3_bucket = dup_or_null(src->s3_bucket, &ok);
    dst->s3_region = dup_or_null(src->s3_region, &ok);
    dst->s3_access_key = dup_or_null(src->s3_access_key, &ok);
    dst->s3_secret_key = dup_or_null(src->s3_secret_key, &ok);
    dst->s3_prefix = dup_or_null(src->s3_prefix, &ok);
    dst->s3_ca_file = dup_or_null(src->s3_ca_file, &ok);
    dst->cluster_self = dup_or_null(src->cluster_self, &ok);
    dst->cluster_secret = dup_or_null(src->cluster_secret, &ok);
    dst->trusted_proxies = NULL;
    if (src->n_trusted_proxies) {
        dst->trusted_proxies = malloc(src->n_trusted_proxies * sizeof(struct cidr));
        if (dst->trusted_proxies)
            memcpy(dst->trusted_proxies, src->trusted_proxies,
                   src->n_trusted_proxies * sizeof(struct cidr));
        else
            ok = false, dst->n_trusted_proxies = 0;
    }
    if (str_list_copy(&dst->metrics_allow, &dst->n_metrics_allow, src->metrics_allow,
                      src->n_metrics_allow) ||
        str_list_copy(&dst->cors_origins, &dst->n_cors_origins, src->cors_origins,
                      src->n_cors_origins) ||
        str_list_copy(&dst->cors_headers, &dst->n_cors_headers, src->cors_headers,
                      src->n_cors_headers) ||
        str_list_copy(&dst->cors_methods, &dst->n_cors_methods, src->cors_methods,
                      src->n_cors_methods) ||
        str_list_copy(&dst->pins, &dst->n_pins, src->pins, src->n_pins) ||
        str_list_copy(&dst->cluster_members, &dst->n_cluster_members, src->cluster_members,
                      src->n_cluster_members) ||
        str_list_copy(&dst->prefetch, &dst->n_prefetch, src->prefetch, src->n_prefetch) ||
        str_list_copy(&dst->prefetch_platforms, &dst->n_prefetch_platforms,
                      src->prefetch_platforms, src->n_prefetch_platforms))
        ok = false;
    if (!ok) {
        config_free(dst);
        return -ENOMEM;
    }
    return 0;
}

/* ---- error messages ---- */

static void vappendf(struct ctx *x, const char *fmt, va_list ap)
{
    size_t used = strnlen(x->err, x->errlen);

    if (used + 1 < x->errlen)
        vsnprintf(x->err + used, x->errlen - used, fmt, ap);
}

static void appendf(struct ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(struct ctx *x, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vappendf(x, fmt, ap);
    va_end(ap);
}

/* "file:line: key: message"; line 0 and key NULL are left out. Returns rc. */
static int fail_rc(struct ctx *x, int rc, unsigned long line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail_rc(struct ctx *x, int rc, unsigned long line, const char *key, const char *fmt, ...)
{
    va_list ap;

    if (!x->err || x->errlen == 0)
        return rc;
    x->err[0] = '\0';
    appendf(x, "%s:", x->path);
    if (line > 0)
        appendf(x, "%lu:", line);
    appendf(x, " ");
    if (key)
        appendf(x, "%s: ", key);
    va_start(ap, fmt);
    vappendf(x, fmt, ap);
    va_end(ap);
    return rc;
}

#define fail(x, line, key, ...) fail_rc((x), -EINVAL, (line), (key), __VA_ARGS__)

static unsigned long line_of(const yaml_node_t *n)
{
    return (unsigned long)n->start_mark.line + 1; /* marks are 0-based */
}

static bool is_null(const yaml_node_t *n)
{
    const char *v;

    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    v = (const char *)n->data.scalar.value;
    return !strcmp(v, "") || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

static const char *kind_of(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a sequence";
    default:
        return is_null(n) ? "an empty value" : "a scalar";
    }
}

/* The node's text, refusing non-scalars, nulls and embedded NULs. */
static int get_scalar(struct ctx *x, const yaml_node_t *n, const char *key, const char **out)
{
    const char *v;

    if (n->type != YAML_SCALAR_NODE)
        return fail(x, line_of(n), key, "expected a scalar value, got %s", kind_of(n));
    v = (const char *)n->data.scalar.value;
    if (is_null(n))
        return fail(x, line_of(n), key, "missing value");
    if (strlen(v) != n->data.scalar.length)
        return fail(x, line_of(n), key, "value contains a NUL character");
    *out = v;
    return 0;
}

/* Replaces *dst with a copy of s. */
static int set_str(struct ctx *x, char **dst, const char *s)
{
    char *d = strdup(s);

    if (!d)
        return fail_rc(x, -ENOMEM, 0, NULL, "out of memory");
    free(*dst);
    *dst = d;
    return 0;
}

/* ---- mappings ---- */

struct pair {
    yaml_node_t *key;
    yaml_node_t *value;
    const char *name;
};

/* Resolves pairs[i] of mapping m, checking that its key is a unique scalar. prefix is the
 * dotted path of m ("" at the top); the key's dotted path goes to dotted. */
static int get_pair(struct ctx *x, yaml_node_t *m, yaml_node_pair_t *p, const char *prefix,
                    struct pair *out, char *dotted, size_t dotted_len)
{
    out->key = yaml_document_get_node(x->doc, p->key);
    out->value = yaml_document_get_node(x->doc, p->value);
    if (!out->key || !out->value)
        return fail(x, line_of(m), prefix[0] ? prefix : NULL, "malformed mapping");
    if (out->key->type != YAML_SCALAR_NODE)
        return fail(x, line_of(out->key), prefix[0] ? prefix : NULL, "keys must be scalars, got %s",
                    kind_of(out->key));
    out->name = (const char *)out->key->data.scalar.value;
    if (strlen(out->name) != out->key->data.scalar.length)
        return fail(x, line_of(out->key), prefix[0] ? prefix : NULL,
                    "key contains a NUL character");
    snprintf(dotted, dotted_len, "%s%s%s", prefix, prefix[0] ? "." : "", out->name);

    for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, q->key);
        if (k && k->type == YAML_SCALAR_NODE &&
            k->data.scalar.length == out->key->data.scalar.length &&
            !memcmp(k->data.scalar.value, out->key->data.scalar.value, k->data.scalar.length))
            return fail(x, line_of(out->key), dotted, "duplicate key (first given on line %lu)",
                        line_of(k));
    }
    return 0;
}

/* ---- cache, timeouts, limits, log ---- */

enum field_kind {
    F_DURATION,
    F_DURATION_POSITIVE,
    F_COUNT,
    F_SIZE,
    F_DISK_SIZE,
    F_DISK_SIZE_POSITIVE,
    F_LEVEL
};

struct field {
    const char *section;
    const char *name;
    enum field_kind kind;
    size_t offset;
};

static const struct field fields[] = {
    {"cache", "revalidate_after", F_DURATION, offsetof(struct config, revalidate_after_ms)},
    {"cache", "revalidate_timeout", F_DURATION_POSITIVE,
     offsetof(struct config, revalidate_timeout_ms)},
    {"cache", "ttl", F_DURATION, offsetof(struct config, ttl_ms)},
    {"cache", "gc_interval", F_DURATION_POSITIVE, offsetof(struct config, gc_interval_ms)},
    {"cache", "max_size", F_DISK_SIZE, offsetof(struct config, max_size_bytes)},
    {"cache", "min_free", F_DISK_SIZE, offsetof(struct config, min_free_bytes)},
    {"cache", "negative_ttl", F_DURATION, offsetof(struct config, negative_ttl_ms)},
    {"cache", "max_tags_per_repository", F_COUNT, offsetof(struct config, max_tags_per_repo)},
    {"timeouts", "connect", F_DURATION_POSITIVE, offsetof(struct config, connect_timeout_ms)},
    {"timeouts", "low_speed", F_DURATION_POSITIVE, offsetof(struct config, low_speed_time_ms)},
    {"timeouts", "first_byte", F_DURATION_POSITIVE, offsetof(struct config, first_byte_ms)},
    {"timeouts", "total_small", F_DURATION_POSITIVE, offsetof(struct config, total_small_ms)},
    {"timeouts", "client_idle", F_DURATION_POSITIVE, offsetof(struct config, client_idle_ms)},
    {"timeouts", "client_header", F_DURATION_POSITIVE, offsetof(struct config, client_header_ms)},
    {"timeouts", "shutdown_grace", F_DURATION, offsetof(struct config, shutdown_grace_ms)},
    {"limits", "max_connections", F_COUNT, offsetof(struct config, max_connections)},
    {"limits", "min_body_rate", F_DISK_SIZE, offsetof(struct config, min_body_rate)},
    {"limits", "max_manifest_size", F_SIZE, offsetof(struct config, max_manifest_bytes)},
    {"limits", "max_blob_size", F_DISK_SIZE_POSITIVE, offsetof(struct config, max_blob_bytes)},
    {"limits", "max_response_memory", F_DISK_SIZE, offsetof(struct config, max_response_memory)},
    {"limits", "reserved_connections", F_COUNT, offsetof(struct config, reserved_connections)},
    {"limits", "upstream_connections", F_COUNT, offsetof(struct config, upstream_connections)},
    {"limits", "max_fills", F_COUNT, offsetof(struct config, max_fills)},
    {"log", "level", F_LEVEL, offsetof(struct config, log_level)},
    /* hosted, when a mapping (apply_hosted): beside its repositories list */
    {"hosted", "max_size", F_DISK_SIZE, offsetof(struct config, hosted_max_size_bytes)},
    {"hosted", "upload_timeout", F_DURATION_POSITIVE,
     offsetof(struct config, hosted_upload_timeout_ms)},
    {"hosted", "max_uploads_per_client", F_COUNT, offsetof(struct config, hosted_max_uploads)},
};
#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

/* The plain field section.name, or NULL when there is none. */
static const struct field *find_field(const char *section, const char *name)
{
    for (size_t i = 0; i < N_FIELDS; i++)
        if (!strcmp(fields[i].section, section) && !strcmp(fields[i].name, name))
            return &fields[i];
    return NULL;
}

static bool is_section(const char *name)
{
    for (size_t i = 0; i < N_FIELDS; i++) {
        if (!strcmp(fields[i].section, name))
            return true;
    }
    return false;
}

/* Plain decimal digits only: no sign, no spaces, no unit. */
static int parse_count(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static int set_field(struct ctx *x, struct config *c, const struct field *f, yaml_node_t *val,
                     const char *key)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    uint64_t *u64 = (uint64_t *)(void *)((char *)c + f->offset);
    unsigned long line = line_of(val);
    const char *s = NULL;
    uint64_t v;
    int rc = get_scalar(x, val, key, &s);

    if (rc < 0)
        return rc;
    switch (f->kind) {
    case F_DURATION:
    case F_DURATION_POSITIVE:
        if (parse_duration_ms(s, &v) < 0)
            return fail(x, line, key, "invalid duration '%s' (use e.g. 500ms, 30s, 5m, 24h, 7d)",
                        s);
        if (f->kind == F_DURATION_POSITIVE && v == 0)
            return fail(x, line, key, "must be greater than 0");
        *u64 = v;
        return 0;
    case F_COUNT:
        if (parse_count(s, &v) < 0)
            return fail(x, line, key, "invalid integer '%s'", s);
        if (v < 1 || v > MAX_CONNECTIONS_MAX)
            return fail(x, line, key, "%s is out of range (1..%d)", s, MAX_CONNECTIONS_MAX);
        *u64 = v;
        return 0;
    case F_SIZE:
        if (parse_size_bytes(s, &v) < 0)
            return fail(x, line, key, "invalid size '%s' (use e.g. 512KiB, 4MiB)", s);
        if (v < MANIFEST_MIN || v > MANIFEST_MAX)
            return fail(x, line, key, "%s is out of range (1KiB..64MiB)", s);
        *u64 = v;
        return 0;
    case F_DISK_SIZE:
        if (parse_size_bytes(s, &v) < 0)
            return fail(x, line, key, "invalid size '%s' (use e.g. 0, 512MiB, 200GiB)", s);
        *u64 = v;
        return 0;
    case F_DISK_SIZE_POSITIVE:
        if (parse_size_bytes(s, &v) < 0)
            return fail(x, line, key, "invalid size '%s' (use e.g. 512MiB, 200GiB)", s);
        if (v == 0)
            return fail(x, line, key, "must be greater than 0");
        *u64 = v;
        return 0;
    case F_LEVEL:
        for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
            if (!strcmp(s, levels[i])) {
                *(int *)(void *)((char *)c + f->offset) = (int)i;
                return 0;
            }
        }
        return fail(x, line, key, "invalid level '%s' (use debug, info, warn or error)", s);
    }
    return fail(x, line, key, "internal error: unknown field kind");
}

static int apply_section(struct ctx *x, struct config *c, const char *section, yaml_node_t *m)
{
    char key[KEY_MAX];
    unsigned long reserved_line = 0;

    if (is_null(m))
        return 0; /* "cache:" with everything under it commented out */
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), section, "expected a mapping, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        int rc = get_pair(x, m, p, section, &kv, key, sizeof(key));

        if (rc < 0)
            return rc;
        const struct field *f = find_field(section, kv.name);
        if (!f)
            return fail(x, line_of(kv.key), key, "unknown key");
        rc = set_field(x, c, f, kv.value, key);
        if (rc < 0)
            return rc;
        if (f->offset == offsetof(struct config, reserved_connections))
            reserved_line = line_of(kv.value);
    }
    /* the reserve is a part of max_connections (given in either order) */
    if (reserved_line && c->reserved_connections >= c->max_connections)
        return fail(x, reserved_line, "limits.reserved_connections",
                    "%llu must be less than limits.max_connections (%llu)",
                    (unsigned long long)c->reserved_connections,
                    (unsigned long long)c->max_connections);
    return 0;
}

/* ---- upstreams ---- */

/* A warning in the same "file:line: key: message" form as the errors; loading goes on. */
static void warn_at(struct ctx *x, unsigned long line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void warn_at(struct ctx *x, unsigned long line, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_warn("%s:%lu: %s: %s", x->path, line, key, msg);
}

/* A name that is not host-like (no dot, no port, not localhost) is also the first component
 * of Docker Hub repositories: /v2/<name>/app would route here, never to docker.io/<name>/app. */
static void warn_if_shadowing(struct ctx *x, const yaml_node_t *n, const char *key, const char *s)
{
    if (strchr(s, '.') || strchr(s, ':') || !strcmp(s, "localhost"))
        return;
    warn_at(x, line_of(n), key,
            "'%s' has no dot and no port, so it is also a Docker Hub namespace: "
            "/v2/%s/<repo> routes to this upstream, never to docker.io/%s/<repo>; "
            "name it like a host (e.g. %s.example.org) to keep both reachable",
            s, s, s, s);
}

static int check_upstream_name(struct ctx *x, const yaml_node_t *n, const char *key, const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > UPSTREAM_NAME_MAX)
        return fail(x, line_of(n), key, "must be 1 to %d characters long", UPSTREAM_NAME_MAX);
    for (const char *p = s; *p; p++) {
        if (*p >= 'A' && *p <= 'Z')
            return fail(x, line_of(n), key, "invalid name '%s': must be lowercase", s);
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr(".-:_", *p)))
            return fail(x, line_of(n), key,
                        "invalid name '%s' (use a-z, 0-9, '.', '-', ':' and '_')", s);
    }
    /* Host-like, and never "." or ".." or something that looks like an option. */
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return fail(x, line_of(n), key, "invalid name '%s': must start with a letter or digit", s);
    return 0;
}

/* Validates url and stores a copy without trailing slashes in *dst. */
static int set_upstream_url(struct ctx *x, const yaml_node_t *n, const char *key, const char *s,
                            char **dst)
{
    size_t len = strlen(s), host;

    if (!strncmp(s, "http://", 7))
        host = 7;
    else if (!strncmp(s, "https://", 8))
        host = 8;
    else
        return fail(x, line_of(n), key, "must start with http:// or https://");
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= ' ' || ch == 0x7f)
            return fail(x, line_of(n), key, "must not contain spaces or control characters");
        if (ch == '?' || ch == '#')
            return fail(x, line_of(n), key, "must not contain a query or fragment");
    }
    while (len > host && s[len - 1] == '/')
        len--;
    if (len == host || s[host] == '/')
        return fail(x, line_of(n), key, "missing host in '%s'", s);
    free(*dst);
    *dst = strndup(s, len);
    if (!*dst)
        return fail_rc(x, -ENOMEM, 0, NULL, "out of memory");
    return 0;
}

/* Where password_file points: "%d/NAME" is NAME in $CREDENTIALS_DIRECTORY (systemd's
 * LoadCredential=), a relative path is relative to the directory of the config file, an
 * absolute one is used as it is. */
static int secret_path(struct ctx *x, const yaml_node_t *n, const char *key, const char *spec,
                       char *out, size_t len)
{
    size_t need;
    if (!strncmp(spec, "%d/", 3)) {
        const char *dir = getenv("CREDENTIALS_DIRECTORY"), *name = spec + 3;
        if (!dir || !*dir)
            return fail(x, line_of(n), key,
                        "'%s' names a systemd credential, but $CREDENTIALS_DIRECTORY is not set "
                        "(LoadCredential= in the service's unit sets it)",
                        spec);
        if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
            return fail(x, line_of(n), key, "'%s': a credential name has no '/'", spec);
        need = (size_t)snprintf(out, len, "%s/%s", dir, name);
    } else if (spec[0] == '/') {
        need = (size_t)snprintf(out, len, "%s", spec);
    } else {
        const char *slash = strrchr(x->path, '/');
        int dirlen = slash ? (int)(slash - x->path) : 1;
        need = (size_t)snprintf(out, len, "%.*s/%s", dirlen, slash ? x->path : ".", spec);
    }
    if (need >= len)
        return fail(x, line_of(n), key, "path too long");
    return 0;
}

/* Reads a password from a file named by key: its one line, without the line end. Warns when
 * every user may read it. */
static int read_secret(struct ctx *x, const yaml_node_t *n, const char *key, const char *spec,
                       char **dst)
{
    char path[4096], buf[SECRET_FILE_MAX + 1];
    struct stat st;
    ssize_t got = 0;
    int rc = secret_path(x, n, key, spec, path, sizeof(path));
    if (rc < 0)
        return rc;
    int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return fail(x, line_of(n), key, "cannot read '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(x, line_of(n), key, "'%s' is not a regular file", path);
    }
    if (st.st_mode & S_IROTH)
        log_warn("%s:%lu: %s: %s can be read by all users (mode %04o): chmod 0600 it", x->path,
                 line_of(n), key, path, (unsigned)(st.st_mode & 07777));
    for (;;) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - (size_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : 0;
            break;
        }
        got += r;
        if ((size_t)got == sizeof(buf) - 1) {
            char extra;
            if (read(fd, &extra, 1) > 0)
                rc = -EFBIG;
            break;
        }
    }
    close(fd);
    buf[got] = '\0';
    if (rc == -EFBIG)
        rc = fail(x, line_of(n), key, "'%s' is larger than %d bytes", path, SECRET_FILE_MAX);
    else if (rc < 0)
        rc = fail(x, line_of(n), key, "cannot read '%s': %s", path, strerror(-rc));
    if (rc == 0) {
        size_t l = (size_t)got;
        if (l && buf[l - 1] == '\n')
            buf[--l] = '\0';
        if (l && buf[l - 1] == '\r')
            buf[--l] = '\0';
        if (!l)
            rc = fail(x, line_of(n), key, "'%s' is empty", path);
        else if (strlen(buf) != l || strpbrk(buf, "\r\n"))
            rc = fail(x, line_of(n), key,
                      "'%s' must hold the password alone on one line (no NUL, no line breaks)",
                      path);
        else
            rc = set_str(x, dst, buf);
    }
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

/* ---- upstreams: credentials, endpoints, blob sources ---- */

/* Where an upstream's or a blob source's credentials go, and the lines they were given on. */
struct creds {
    char **username, **password, **ca_file;
    unsigned long *user_line, *pass_line, *inline_pass_line;
};

/* username, password, password_file or ca_file (kv.name) with value s. */
static int set_credential(struct ctx *x, const struct pair *kv, const char *key, const char *s,
                          struct creds *cr)
{
    if (!*s && strcmp(kv->name, "password"))
        return fail(x, line_of(kv->value), key, "must not be empty");
    if (!strcmp(kv->name, "username")) {
        *cr->user_line = line_of(kv->key);
        return set_str(x, cr->username, s);
    }
    if (!strcmp(kv->name, "ca_file")) {
        if (access(s, R_OK))
            return fail(x, line_of(kv->value), key, "cannot read '%s': %s", s, strerror(errno));
        return set_str(x, cr->ca_file, s);
    }
    if (*cr->pass_line)
        return fail(x, line_of(kv->key), key,
                    "give password or password_file, not both (the other is on line %lu)",
                    *cr->pass_line);
    *cr->pass_line = line_of(kv->key);
    if (!strcmp(kv->name, "password_file"))
        return read_secret(x, kv->value, key, s, cr->password);
    *cr->inline_pass_line = *cr->pass_line;
    return set_str(x, cr->password, s);
}

/* Both of username and password (or password_file), or neither. */
static int check_pair(struct ctx *x, const char *prefix, unsigned long user_line,
                      unsigned long pass_line)
{
    char key[KEY_MAX];
    if (user_line && !pass_line) {
        snprintf(key, sizeof(key), "%s.password", prefix);
        return fail(x, user_line, key, "required when username is given");
    }
    if (pass_line && !user_line) {
        snprintf(key, sizeof(key), "%s.username", prefix);
        return fail(x, pass_line, key, "required when password is given");
    }
    return 0;
}

/* upstreams[].urls: a list of 1 to CONFIG_MAX_URLS endpoint URLs. */
static int parse_urls(struct ctx *x, yaml_node_t *seq, const char *key, struct config_upstream *u)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail(x, line_of(seq), key, "expected a list of URLs, got %s", kind_of(seq));
    size_t count = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (count == 0)
        return fail(x, line_of(seq), key, "must not be empty");
    if (count > CONFIG_MAX_URLS)
        return fail(x, line_of(seq), key, "too many URLs (max %d)", CONFIG_MAX_URLS);
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = yaml_document_get_node(x->doc, seq->data.sequence.items.start[i]);
        const char *s = NULL;
        if (!item)
            return fail(x, line_of(seq), key, "malformed list");
        int rc = get_scalar(x, item, key, &s);
        if (rc == 0)
            rc = set_upstream_url(x, item, key, s, &u->urls[i]);
        if (rc < 0)
            return rc;
        u->n_urls = i + 1;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(u->urls[j], u->urls[i]))
                return fail(x, line_of(item), key, "'%s' is listed twice", u->urls[i]);
    }
    return 0;
}

/* One upstreams[].blob_sources[] mapping. */
static int parse_blob_source(struct ctx *x, yaml_node_t *m, const char *prefix,
                             struct config_blob_source *b)
{
    unsigned long user_line = 0, pass_line = 0, inline_pass_line = 0;
    char key[KEY_MAX];
    const char *s = NULL;
    int rc;

    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), prefix, "expected a mapping with url, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;

        rc = get_pair(x, m, p, prefix, &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (strcmp(kv.name, "name") && strcmp(kv.name, "url") && strcmp(kv.name, "username") &&
            strcmp(kv.name, "password") && strcmp(kv.name, "password_file") &&
            strcmp(kv.name, "ca_file") && strcmp(kv.name, "order") &&
            strcmp(kv.name, "repository_prefix"))
            return fail(x, line_of(kv.key), key, "unknown key");
        rc = get_scalar(x, kv.value, key, &s);
        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "name")) {
            rc = check_upstream_name(x, kv.value, key, s);
            if (rc == 0)
                rc = set_str(x, &b->name, s);
        } else if (!strcmp(kv.name, "url")) {
            rc = set_upstream_url(x, kv.value, key, s, &b->url);
        } else if (!strcmp(kv.name, "order")) {
            if (strcmp(s, "before") && strcmp(s, "after"))
                return fail(x, line_of(kv.value), key, "unknown order '%s' (use before or after)",
                            s);
            b->before = !strcmp(s, "before");
        } else if (!strcmp(kv.name, "repository_prefix")) {
            size_t n = strlen(s);
            if (!n || s[0] == '/' || s[n - 1] == '/' || strstr(s, "//") ||
                strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-/") != n)
                return fail(x, line_of(kv.value), key,
                            "'%s' is not a repository name prefix (lowercase path components, "
                            "no leading or trailing '/')",
                            s);
            rc = set_str(x, &b->repository_prefix, s);
        } else {
            struct creds cr = {&b->username, &b->password, &b->ca_file,
                               &user_line,   &pass_line,   &inline_pass_line};
            rc = set_credential(x, &kv, key, s, &cr);
        }
        if (rc < 0)
            return rc;
    }
    if (!b->url) {
        snprintf(key, sizeof(key), "%s.url", prefix);
        return fail(x, line_of(m), key, "required key missing");
    }
    rc = check_pair(x, prefix, user_line, pass_line);
    if (rc < 0)
        return rc;
    if (!b->name && !(b->name = strdup(b->url)))
        return fail_rc(x, -ENOMEM, 0, NULL, "out of memory");
    return 0;
}

/* upstreams[].blob_sources: a list of up to CONFIG_MAX_BLOB_SOURCES mappings. */
static int parse_blob_sources(struct ctx *x, yaml_node_t *seq, const char *key,
                              struct config_upstream *u)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail(x, line_of(seq), key, "expected a list of mappings, got %s", kind_of(seq));
    size_t count = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (count > CONFIG_MAX_BLOB_SOURCES)
        return fail(x, line_of(seq), key, "too many blob sources (max %d)",
                    CONFIG_MAX_BLOB_SOURCES);
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = yaml_document_get_node(x->doc, seq->data.sequence.items.start[i]);
        char prefix[KEY_MAX];
        if (!item)
            return fail(x, line_of(seq), key, "malformed list");
        snprintf(prefix, sizeof(prefix), "%s[%zu]", key, i);
        u->n_blob_sources = i + 1; /* a half-filled entry is freed too */
        int rc = parse_blob_source(x, item, prefix, &u->blob_sources[i]);
        if (rc < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(u->blob_sources[j].name, u->blob_sources[i].name))
                return fail(x, line_of(item), prefix, "duplicate blob source name '%s'",
                            u->blob_sources[i].name);
    }
    return 0;
}

static int get_bool(struct ctx *x, yaml_node_t *v, const char *key, int *out);

/* Parses upstreams[idx] into ups[idx]; names must differ from ups[0..idx-1]. */
static int parse_upstream(struct ctx *x, yaml_node_t *m, size_t idx, struct config_upstream *ups)
{
    struct config_upstream *u = &ups[idx];
    unsigned long user_line = 0, pass_line = 0, inline_pass_line = 0, url_line = 0, urls_line = 0;
    char prefix[32], key[KEY_MAX];
    const char *s = NULL;
    int rc;

    snprintf(prefix, sizeof(prefix), "upstreams[%zu]", idx);
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), prefix, "expected a mapping with name and url, got %s",
                    kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;

        rc = get_pair(x, m, p, prefix, &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "urls") || !strcmp(kv.name, "blob_sources")) {
            if (kv.name[0] == 'u')
                urls_line = line_of(kv.key);
            rc = kv.name[0] == 'u' ? parse_urls(x, kv.value, key, u)
                                   : parse_blob_sources(x, kv.value, key, u);
            if (rc < 0)
                return rc;
            continue;
        }
        if (!strcmp(kv.name, "parent")) {
            rc = get_bool(x, kv.value, key, &u->parent);
            if (rc < 0)
                return rc;
            continue;
        }
        if (strcmp(kv.name, "name") && strcmp(kv.name, "url") && strcmp(kv.name, "username") &&
            strcmp(kv.name, "password") && strcmp(kv.name, "password_file") &&
            strcmp(kv.name, "ca_file") && strcmp(kv.name, "max_size"))
            return fail(x, line_of(kv.key), key, "unknown key");
        rc = get_scalar(x, kv.value, key, &s);
        if (rc < 0)
            return rc;

        if (!strcmp(kv.name, "name")) {
            rc = check_upstream_name(x, kv.value, key, s);
            if (rc < 0)
                return rc;
            for (size_t i = 0; i < idx; i++) {
                if (!strcmp(ups[i].name, s))
                    return fail(x, line_of(kv.value), key, "duplicate upstream name '%s'", s);
            }
            warn_if_shadowing(x, kv.value, key, s);
            rc = set_str(x, &u->name, s);
        } else if (!strcmp(kv.name, "url")) {
            url_line = line_of(kv.key);
            rc = set_upstream_url(x, kv.value, key, s, &u->url);
        } else if (!strcmp(kv.name, "max_size")) {
            if (parse_size_bytes(s, &u->max_size_bytes) < 0)
                return fail(x, line_of(kv.value), key,
                            "invalid size '%s' (use e.g. 0, 512MiB, 200GiB)", s);
        } else {
            struct creds cr = {&u->username, &u->password, &u->ca_file,
                               &user_line,   &pass_line,   &inline_pass_line};
            rc = set_credential(x, &kv, key, s, &cr);
        }
        if (rc < 0)
            return rc;
    }
    if (url_line && urls_line) {
        snprintf(key, sizeof(key), "%s.urls", prefix);
        return fail(x, urls_line, key, "give url or urls, not both (url is on line %lu)", url_line);
    }
    if (urls_line && !(u->url = strdup(u->urls[0])))
        return fail_rc(x, -ENOMEM, 0, NULL, "out of memory");

    if (!u->name) {
        snprintf(key, sizeof(key), "%s.name", prefix);
        return fail(x, line_of(m), key, "required key missing");
    }
    if (!u->url) {
        snprintf(key, sizeof(key), "%s.url", prefix);
        return fail(x, line_of(m), key, "required key missing");
    }
    rc = check_pair(x, prefix, user_line, pass_line);
    if (rc < 0)
        return rc;
    if (inline_pass_line && (x->mode & S_IROTH))
        log_warn("%s:%lu: %s.password: this file can be read by all users (mode %04o): keep the "
                 "password in password_file (or chmod 0600 %s)",
                 x->path, inline_pass_line, prefix, x->mode, x->path);
    return 0;
}

static int apply_upstreams(struct ctx *x, struct config *c, yaml_node_t *seq)
{
    struct config_upstream ups[CONFIG_MAX_UPSTREAMS];
    size_t n = 0, count;
    int rc = 0;

    if (seq->type != YAML_SEQUENCE_NODE)
        return fail(x, line_of(seq), "upstreams", "expected a sequence of mappings, got %s",
                    kind_of(seq));
    count = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (count == 0)
        return fail(x, line_of(seq), "upstreams", "must not be empty");

    memset(ups, 0, sizeof(ups));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = yaml_document_get_node(x->doc, seq->data.sequence.items.start[i]);

        if (!item) {
            rc = fail(x, line_of(seq), "upstreams", "malformed sequence");
            goto out;
        }
        if (i >= CONFIG_MAX_UPSTREAMS) {
            rc = fail(x, line_of(item), "upstreams", "too many upstreams (max %d)",
                      CONFIG_MAX_UPSTREAMS);
            goto out;
        }
        n = i + 1; /* a half-filled entry is freed too */
        rc = parse_upstream(x, item, i, ups);
        if (rc < 0)
            goto out;
    }

    /* The file's list replaces the current one as a whole. */
    for (size_t i = 0; i < c->n_upstreams && i < CONFIG_MAX_UPSTREAMS; i++)
        upstream_free(&c->upstreams[i]);
    memcpy(c->upstreams, ups, sizeof(ups));
    c->n_upstreams = n;
    n = 0;
out:
    for (size_t i = 0; i < n; i++)
        upstream_free(&ups[i]);
    return rc;
}

/* ---- top level ---- */

/* Replaces *list with the strings of a YAML sequence; check() may refuse an item. */
static int set_str_list(struct ctx *x, yaml_node_t *seq, const char *key, char ***list,
                        size_t *n, const char *(*check)(const char *s))
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail(x, line_of(seq), key, "expected a list, got %s", kind_of(seq));
    for (size_t i = 0; i < *n; i++)
        free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
    size_t count = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (count > 10000)
        return fail(x, line_of(seq), key, "too many items");
    *list = calloc(count ? count : 1, sizeof(char *));
    if (!*list)
        return fail_rc(x, -ENOMEM, 0, NULL, "out of memory");
    for (yaml_node_item_t *it = seq->data.sequence.items.start;
         it < seq->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(x->doc, *it);
        const char *s = NULL, *why;
        if (!item)
            return fail(x, line_of(seq), key, "malformed list");
        int rc = get_scalar(x, item, key, &s);
        if (rc < 0)
            return rc;
        if ((why = check(s)))
            return fail(x, line_of(item), key, "'%s': %s", s, why);
        rc = set_str(x, &(*list)[*n], s);
        if (rc < 0)
            return rc;
        (*n)++;
    }
    return 0;
}

static const char *check_user(const char *s)
{
    return !*s || strchr(s, ':') ? "invalid user name" : NULL;
}

static const char *check_glob(const char *s)
{
    if (!*s || strlen(s) > 255)
        return "a repository name pattern must have 1..255 characters";
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("._-/*?[]", *p)))
            return "only lowercase names, '/', and the globs * ? [] are allowed";
    return NULL;
}

/* hosted: a list of repository patterns, or a mapping of repositories (that list) and the
 * hosted.* limits. */
static int apply_hosted(struct ctx *x, struct config *c, yaml_node_t *m)
{
    char key[KEY_MAX];

    if (m->type == YAML_SEQUENCE_NODE)
        return set_str_list(x, m, "hosted", &c->hosted, &c->n_hosted, check_glob);
    if (is_null(m))
        return 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "hosted",
                    "expected a list of repository patterns or a mapping, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        int rc = get_pair(x, m, p, "hosted", &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "repositories")) {
            rc = set_str_list(x, kv.value, key, &c->hosted, &c->n_hosted, check_glob);
        } else {
            const struct field *f = find_field("hosted", kv.name);
            if (!f)
                return fail(x, line_of(kv.key), key, "unknown key");
            rc = set_field(x, c, f, kv.value, key);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- rules: pull rules (rules/rules.h) ----
 * A list of rules, or a mapping of default (allow|deny), groups (name: [users]) and list. A rule
 * is a mapping of allow: or deny: PATTERN, and optionally users: [...]. */

#define RULE_USERS_MAX 1000

/* The scalars of list seq (at most RULE_USERS_MAX) into out; 0 or a negative errno. */
static int rule_names(struct ctx *x, yaml_node_t *seq, const char *key, const char **out,
                      size_t *n)
{
    *n = 0;
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail(x, line_of(seq), key, "expected a list of user names, got %s", kind_of(seq));
    for (yaml_node_item_t *it = seq->data.sequence.items.start;
         it < seq->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(x->doc, *it);
        if (!item)
            return fail(x, line_of(seq), key, "malformed list");
        if (*n == RULE_USERS_MAX)
            return fail(x, line_of(item), key, "too many users");
        int rc = get_scalar(x, item, key, &out[*n]);
        if (rc < 0)
            return rc;
        (*n)++;
    }
    return 0;
}

static int apply_rule(struct ctx *x, struct rules *r, yaml_node_t *m, const char *prefix)
{
    char key[KEY_MAX];
    const char *pattern = NULL, *users[RULE_USERS_MAX], *why;
    size_t n_users = 0;
    int allow = -1;
    unsigned long line = line_of(m), users_line = 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line, prefix, "expected a mapping (allow: or deny: PATTERN), got %s",
                    kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        int rc = get_pair(x, m, p, prefix, &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "users")) {
            users_line = line_of(kv.value);
            rc = rule_names(x, kv.value, key, users, &n_users);
        } else if (!strcmp(kv.name, "allow") || !strcmp(kv.name, "deny")) {
            if (allow >= 0)
                return fail(x, line_of(kv.key), key, "a rule has one action: allow or deny");
            allow = !strcmp(kv.name, "allow");
            line = line_of(kv.value);
            rc = get_scalar(x, kv.value, key, &pattern);
        } else {
            return fail(x, line_of(kv.key), key, "unknown action (a rule is allow: or deny: "
                        "UPSTREAM/REPOSITORY[:TAG], and optionally users:)");
        }
        if (rc < 0)
            return rc;
    }
    if (allow < 0)
        return fail(x, line_of(m), prefix, "a rule needs allow: or deny: PATTERN");
    if ((why = rules_add(r, allow, pattern, users, n_users))) {
        int user_fault = strstr(why, "user") || strstr(why, "group");
        snprintf(key, sizeof(key), "%s.%s", prefix, user_fault ? "users" : allow ? "allow" : "deny");
        return fail(x, user_fault && users_line ? users_line : line, key, "%s", why);
    }
    x->rule_lines[rules_count(r) - 1] = line;
    snprintf(x->rule_keys[rules_count(r) - 1], sizeof(x->rule_keys[0]), "%s.%s", prefix,
             allow ? "allow" : "deny");
    return 0;
}

/* Once every key is read: each rule's upstream is one the file (or the defaults) configures. */
static int check_rule_upstreams(struct ctx *x, const struct config *c)
{
    for (size_t i = 1; i <= rules_count(c->rules); i++) {
        const char *u = rules_upstream(c->rules, i);
        size_t j = 0;
        while (u && j < c->n_upstreams && strcmp(c->upstreams[j].name, u))
            j++;
        if (u && j == c->n_upstreams)
            return fail(x, x->rule_lines[i - 1], x->rule_keys[i - 1],
                        "no upstream is named '%s' (or use *)", u);
    }
    return 0;
}

static int apply_rule_list(struct ctx *x, struct rules *r, yaml_node_t *seq, const char *key)
{
    char prefix[KEY_MAX];
    size_t i = 0;
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail(x, line_of(seq), key, "expected a list of rules, got %s", kind_of(seq));
    for (yaml_node_item_t *it = seq->data.sequence.items.start;
         it < seq->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(x->doc, *it);
        snprintf(prefix, sizeof(prefix), "%s[%zu]", key, ++i);
        if (!item)
            return fail(x, line_of(seq), prefix, "malformed rule");
        int rc = apply_rule(x, r, item, prefix);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int apply_rule_groups(struct ctx *x, struct rules *r, yaml_node_t *m)
{
    char key[KEY_MAX];
    const char *users[RULE_USERS_MAX], *why;
    size_t n = 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "rules.groups", "expected a mapping of groups, got %s",
                    kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        int rc = get_pair(x, m, p, "rules.groups", &kv, key, sizeof(key));
        if (rc < 0 || (rc = rule_names(x, kv.value, key, users, &n)) < 0)
            return rc;
        if ((why = rules_add_group(r, kv.name, users, n)))
            return fail(x, line_of(kv.key), key, "%s", why);
    }
    return 0;
}

static int apply_rules(struct ctx *x, struct config *c, yaml_node_t *m)
{
    char key[KEY_MAX];
    const char *s = NULL;
    if (!c->rules && !(c->rules = rules_new()))
        return fail_rc(x, -ENOMEM, 0, NULL, "out of memory");
    if (m->type == YAML_SEQUENCE_NODE)
        return apply_rule_list(x, c->rules, m, "rules");
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "rules", "expected a list of rules or a mapping, got %s",
                    kind_of(m));
    /* groups first, wherever they are written: rules name them */
    for (int pass = 0; pass < 2; pass++)
        for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
             p++) {
            struct pair kv;
            int rc = get_pair(x, m, p, "rules", &kv, key, sizeof(key));
            if (rc < 0)
                return rc;
            int groups = !strcmp(kv.name, "groups");
            if (groups != (pass == 0))
                continue;
            if (groups) {
                rc = apply_rule_groups(x, c->rules, kv.value);
            } else if (!strcmp(kv.name, "list")) {
                rc = apply_rule_list(x, c->rules, kv.value, key);
            } else if (!strcmp(kv.name, "default")) {
                if ((rc = get_scalar(x, kv.value, key, &s)) < 0)
                    return rc;
                if (strcmp(s, "allow") && strcmp(s, "deny"))
                    return fail(x, line_of(kv.value), key, "unknown action '%s' (allow or deny)",
                                s);
                rules_set_default(c->rules, !strcmp(s, "allow"));
            } else {
                return fail(x, line_of(kv.key), key, "unknown key");
            }
            if (rc < 0)
                return rc;
        }
    return 0;
}

static int apply_auth(struct ctx *x, struct config *c, yaml_node_t *m)
{
    char key[KEY_MAX];
    const char *s = NULL;

    if (is_null(m))
        return 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "auth", "expected a mapping, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        int rc = get_pair(x, m, p, "auth", &kv, key, sizeof(key));

        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "push_users")) {
            rc = set_str_list(x, kv.value, key, &c->auth_push_users, &c->n_auth_push_users,
                              check_user);
            if (rc < 0)
                return rc;
            continue;
        }
        rc = get_scalar(x, kv.value, key, &s);
        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "htpasswd")) {
            if (!*s)
                return fail(x, line_of(kv.value), key, "must not be empty");
            if (access(s, R_OK))
                return fail(x, line_of(kv.value), key, "cannot read '%s': %s", s,
                            strerror(errno));
            rc = set_str(x, &c->auth_htpasswd, s);
        } else if (!strcmp(kv.name, "realm")) {
            if (!*s || strchr(s, '"') || strchr(s, '\\'))
                return fail(x, line_of(kv.value), key,
                            "must be non-empty, without quotes or backslashes");
            rc = set_str(x, &c->auth_realm, s);
        } else if (!strcmp(kv.name, "scheme")) {
            if (!strcmp(s, "basic"))
                c->auth_token = 0;
            else if (!strcmp(s, "token"))
                c->auth_token = 1;
            else
                return fail(x, line_of(kv.value), key,
                            "invalid value '%s' (use basic or token)", s);
        } else if (!strcmp(kv.name, "token_realm")) {
            if ((strncmp(s, "http://", 7) && strncmp(s, "https://", 8)) || strchr(s, '"') ||
                strpbrk(s, " \t\\"))
                return fail(x, line_of(kv.value), key,
                            "must be an absolute http:// or https:// URL without quotes or "
                            "spaces");
            rc = set_str(x, &c->auth_token_realm, s);
        } else if (!strcmp(kv.name, "ping")) {
            if (!strcmp(s, "open"))
                c->auth_ping_challenge = 0;
            else if (!strcmp(s, "challenge"))
                c->auth_ping_challenge = 1;
            else
                return fail(x, line_of(kv.value), key,
                            "invalid value '%s' (use open or challenge)", s);
        } else if (!strcmp(kv.name, "max_failures") || !strcmp(kv.name, "verify_threads")) {
            int threads = kv.name[0] == 'v';
            uint64_t v;
            unsigned lo = threads ? 1 : 0, hi = threads ? 16 : 100000;
            if (parse_count(s, &v) < 0 || v < lo || v > hi)
                return fail(x, line_of(kv.value), key, "invalid value '%s' (use %u..%u)", s, lo,
                            hi);
            if (threads)
                c->auth_verify_threads = (unsigned)v;
            else
                c->auth_max_failures = (unsigned)v;
        } else if (!strcmp(kv.name, "anonymous")) {
            if (!strcmp(s, "pull"))
                c->auth_anonymous_pull = 1;
            else if (!strcmp(s, "none"))
                c->auth_anonymous_pull = 0;
            else
                return fail(x, line_of(kv.value), key, "invalid value '%s' (use pull or none)",
                            s);
        } else {
            return fail(x, line_of(kv.key), key, "unknown key");
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int apply_tls(struct ctx *x, struct config *c, yaml_node_t *m)
{
    char key[KEY_MAX];
    const char *s = NULL;
    unsigned long cert_line = 0, key_line = 0;

    if (is_null(m))
        return 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "tls", "expected a mapping, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        int rc = get_pair(x, m, p, "tls", &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        int is_cert = !strcmp(kv.name, "cert");
        if (!is_cert && strcmp(kv.name, "key"))
            return fail(x, line_of(kv.key), key, "unknown key");
        rc = get_scalar(x, kv.value, key, &s);
        if (rc < 0)
            return rc;
        if (!*s || access(s, R_OK))
            return fail(x, line_of(kv.value), key, "cannot read '%s': %s", s,
                        *s ? strerror(errno) : "empty path");
        struct stat st;
        if (!is_cert && stat(s, &st) == 0 && (st.st_mode & S_IROTH))
            log_warn("%s:%lu: %s: the private key %s can be read by all users (mode %04o): "
                     "chmod 0600 it",
                     x->path, line_of(kv.value), key, s, (unsigned)(st.st_mode & 07777));
        rc = set_str(x, is_cert ? &c->tls_cert : &c->tls_key, s);
        if (rc < 0)
            return rc;
        if (is_cert)
            cert_line = line_of(kv.key);
        else
            key_line = line_of(kv.key);
    }
    if (cert_line && !key_line)
        return fail(x, cert_line, "tls.key", "required when tls.cert is given");
    if (key_line && !cert_line)
        return fail(x, key_line, "tls.cert", "required when tls.key is given");
    return 0;
}

static const char *check_cidr(const char *s)
{
    struct cidr c;
    return cidr_parse(s, &c) ? "not an address or CIDR range (e.g. 10.0.0.0/8, fd00::/8, "
                               "127.0.0.1), or host bits set past the prefix"
                             : NULL;
}

/* Two listen addresses that cannot both be bound: the same port, on the same host or with
 * either on every address. */
static int same_socket(const char *a, const char *b)
{
    char ha[256], hb[256];
    int pa, pb;
    if (!a || !b || parse_listen(a, ha, &pa) || parse_listen(b, hb, &pb) || pa != pb)
        return 0;
    const char *any[] = {"", "0.0.0.0", "::", "[::]", "*"};
    for (size_t i = 0; i < sizeof(any) / sizeof(any[0]); i++)
        if (!strcmp(ha, any[i]) || !strcmp(hb, any[i]))
            return 1;
    return !strcmp(ha, hb);
}

/* metrics: listen (an address of its own) and allow (who may read it on the main one). */
static int apply_metrics(struct ctx *x, struct config *c, yaml_node_t *m)
{
    char key[KEY_MAX];
    const char *s = NULL;

    if (is_null(m))
        return 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "metrics", "expected a mapping, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        int rc = get_pair(x, m, p, "metrics", &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "allow")) {
            rc = set_str_list(x, kv.value, key, &c->metrics_allow, &c->n_metrics_allow,
                              check_cidr);
        } else if (!strcmp(kv.name, "listen")) {
            char host[256];
            int port;
            rc = get_scalar(x, kv.value, key, &s);
            if (rc < 0)
                return rc;
            if (parse_listen(s, host, &port) < 0)
                return fail(x, line_of(kv.value), key,
                            "invalid address '%s' (use host:port, [v6addr]:port or :port)", s);
            if (same_socket(s, c->listen))
                return fail(x, line_of(kv.value), key,
                            "'%s' is the address of listen (%s): give metrics a port of its own, "
                            "or use metrics.allow to serve it on the main listener",
                            s, c->listen);
            rc = set_str(x, &c->metrics_listen, s);
        } else {
            return fail(x, line_of(kv.key), key, "unknown key");
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* s3: endpoint, bucket, region, access_key, secret_key or secret_key_file, prefix, ca_file,
 * part_size, abandoned_upload_after, access_interval, ttl, max_size, gc_lease. */
static int apply_s3(struct ctx *x, struct config *c, yaml_node_t *m)
{
    char key[KEY_MAX];
    const char *s = NULL;
    unsigned long secret_line = 0;

    if (is_null(m))
        return 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "s3", "expected a mapping, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        int rc = get_pair(x, m, p, "s3", &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (strcmp(kv.name, "part_size") && strcmp(kv.name, "endpoint") &&
            strcmp(kv.name, "bucket") && strcmp(kv.name, "region") &&
            strcmp(kv.name, "access_key") && strcmp(kv.name, "secret_key") &&
            strcmp(kv.name, "secret_key_file") && strcmp(kv.name, "prefix") &&
            strcmp(kv.name, "ca_file") && strcmp(kv.name, "abandoned_upload_after") &&
            strcmp(kv.name, "access_interval") && strcmp(kv.name, "ttl") &&
            strcmp(kv.name, "max_size") && strcmp(kv.name, "gc_lease"))
            return fail(x, line_of(kv.key), key, "unknown key");
        if ((rc = get_scalar(x, kv.value, key, &s)) < 0)
            return rc;
        if (!strcmp(kv.name, "part_size")) {
            uint64_t v;
            if (parse_size_bytes(s, &v) < 0)
                return fail(x, line_of(kv.value), key, "invalid size '%s' (use e.g. 64MiB)", s);
            if (v < (5ULL << 20) || v > (5ULL << 30))
                return fail(x, line_of(kv.value), key, "%s is out of range (5MiB..5GiB)", s);
            c->s3_part_size = v;
            continue;
        }
        if (!strcmp(kv.name, "abandoned_upload_after")) {
            uint64_t v;
            if (parse_duration_ms(s, &v) < 0 || v < 1000)
                return fail(x, line_of(kv.value), key,
                            "invalid duration '%s' (use e.g. 30m, 24h, 7d; at least 1s)", s);
            c->s3_abandoned_upload_after_ms = v;
            continue;
        }
        if (!strcmp(kv.name, "access_interval") || !strcmp(kv.name, "ttl")) {
            uint64_t v;
            if (parse_duration_ms(s, &v) < 0 || (v && v < 1000))
                return fail(x, line_of(kv.value), key,
                            "invalid duration '%s' (use e.g. 30m, 1h, 7d; 0 for none; at "
                            "least 1s)", s);
            if (!strcmp(kv.name, "ttl")) {
                c->s3_ttl_ms = v;
                c->s3_ttl_set = 1;
            } else {
                c->s3_access_interval_ms = v;
            }
            continue;
        }
        if (!strcmp(kv.name, "gc_lease")) {
            uint64_t v;
            if (parse_duration_ms(s, &v) < 0 || (v && v < 1000))
                return fail(x, line_of(kv.value), key,
                            "invalid duration '%s' (use e.g. 30s, 5m; 0: never lead; at least "
                            "1s)", s);
            c->s3_gc_lease_ms = v;
            continue;
        }
        if (!strcmp(kv.name, "max_size")) {
            uint64_t v;
            if (parse_size_bytes(s, &v) < 0)
                return fail(x, line_of(kv.value), key, "invalid size '%s' (use e.g. 500GiB; 0 "
                                                       "for none)", s);
            c->s3_max_size_bytes = v;
            continue;
        }
        if (!strcmp(kv.name, "endpoint")) {
            size_t scheme = !strncmp(s, "http://", 7) ? 7 : !strncmp(s, "https://", 8) ? 8 : 0;
            if (!scheme || !s[scheme] || strchr(s + scheme, '/') || strchr(s + scheme, '@'))
                return fail(x, line_of(kv.value), key,
                            "'%s' is not http(s)://host[:port] (path-style requests: no path, "
                            "no user)", s);
            rc = set_str(x, &c->s3_endpoint, s);
        } else if (!strcmp(kv.name, "bucket")) {
            if (!*s || strlen(s) > 63 || strchr(s, '/'))
                return fail(x, line_of(kv.value), key,
                            "'%s' is not a bucket name (1 to 63 characters, no '/')", s);
            rc = set_str(x, &c->s3_bucket, s);
        } else if (!strcmp(kv.name, "region")) {
            rc = set_str(x, &c->s3_region, s);
        } else if (!strcmp(kv.name, "access_key")) {
            rc = set_str(x, &c->s3_access_key, s);
        } else if (!strcmp(kv.name, "secret_key") || !strcmp(kv.name, "secret_key_file")) {
            if (secret_line)
                return fail(x, line_of(kv.key), key,
                            "give secret_key or secret_key_file, not both (the other is on "
                            "line %lu)", secret_line);
            secret_line = line_of(kv.key);
            rc = !strcmp(kv.name, "secret_key") ? set_str(x, &c->s3_secret_key, s)
                                                : read_secret(x, kv.value, key, s,
                                                              &c->s3_secret_key);
        } else if (!strcmp(kv.name, "prefix")) {
            if (s[0] == '/')
                return fail(x, line_of(kv.value), key, "'%s': a key prefix does not begin with "
                                                       "'/'", s);
            rc = set_str(x, &c->s3_prefix, s);
        } else {
            rc = set_str(x, &c->s3_ca_file, s);
        }
        if (rc < 0)
            return rc;
    }
    static const char *const needed[] = {"endpoint", "bucket", "access_key", "secret_key"};
    char *const have[] = {c->s3_endpoint, c->s3_bucket, c->s3_access_key, c->s3_secret_key};
    for (size_t i = 0; i < 4; i++)
        if (!have[i])
            return fail(x, line_of(m), "s3", "%s is missing%s", needed[i],
                        i == 3 ? " (give secret_key or secret_key_file)" : "");
    return 0;
}

static const char *check_member(const char *s)
{
    char norm[MEMBERS_URL_MAX];
    return members_normalise(s, norm, sizeof(norm)) ? "not http(s)://host[:port]" : NULL;
}

/* cluster: members, self, secret | secret_file, probe_interval. The members are checked as a
 * set (self among them, no duplicates) once the section is read. */
static int apply_cluster(struct ctx *x, struct config *c, yaml_node_t *m)
{
    char key[KEY_MAX];
    const char *s = NULL;
    unsigned long secret_line = 0, members_line = 0;

    if (is_null(m))
        return 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "cluster", "expected a mapping, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        int rc = get_pair(x, m, p, "cluster", &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "members")) {
            members_line = line_of(kv.value);
            if ((rc = set_str_list(x, kv.value, key, &c->cluster_members, &c->n_cluster_members,
                                   check_member)) < 0)
                return rc;
            if (c->n_cluster_members > MEMBERS_MAX)
                return fail(x, line_of(kv.value), key, "at most %d members", MEMBERS_MAX);
            continue;
        }
        if (strcmp(kv.name, "self") && strcmp(kv.name, "secret") &&
            strcmp(kv.name, "secret_file") && strcmp(kv.name, "probe_interval"))
            return fail(x, line_of(kv.key), key, "unknown key");
        if ((rc = get_scalar(x, kv.value, key, &s)) < 0)
            return rc;
        if (!strcmp(kv.name, "self")) {
            if (check_member(s))
                return fail(x, line_of(kv.value), key, "'%s' is not http(s)://host[:port]", s);
            rc = set_str(x, &c->cluster_self, s);
        } else if (!strcmp(kv.name, "probe_interval")) {
            uint64_t v;
            if (parse_duration_ms(s, &v) < 0 || v < 100 || v > 60000)
                return fail(x, line_of(kv.value), key,
                            "invalid duration '%s' (100ms to 60s, e.g. 2s)", s);
            c->cluster_probe_interval_ms = v;
        } else {
            if (secret_line)
                return fail(x, line_of(kv.key), key,
                            "give secret or secret_file, not both (the other is on line %lu)",
                            secret_line);
            secret_line = line_of(kv.key);
            rc = !strcmp(kv.name, "secret")
                     ? set_str(x, &c->cluster_secret, s)
                     : read_secret(x, kv.value, key, s, &c->cluster_secret);
            if (rc == 0 && !peer_auth_secret_ok(c->cluster_secret, strlen(c->cluster_secret)))
                return fail(x, line_of(kv.value), key, "the secret must be at least %d bytes",
                            PEER_AUTH_MIN_SECRET);
        }
        if (rc < 0)
            return rc;
    }
    if (!c->n_cluster_members)
        return fail(x, line_of(m), "cluster", "members is missing (the URL of every replica, "
                                              "this one included)");
    if (!c->cluster_self)
        return fail(x, line_of(m), "cluster", "self is missing (this replica's URL, as members "
                                              "lists it)");
    if (!c->cluster_secret)
        return fail(x, line_of(m), "cluster", "secret is missing (give secret or secret_file)");
    struct members *set;
    char why[300];
    if (members_new((const char *const *)c->cluster_members, c->n_cluster_members,
                    c->cluster_self, &set, why, sizeof(why)))
        return fail(x, members_line ? members_line : line_of(m), "cluster.members", "%s", why);
    members_free(set);
    return 0;
}

static int get_bool(struct ctx *x, yaml_node_t *v, const char *key, int *out)
{
    const char *s = NULL;
    int rc = get_scalar(x, v, key, &s);
    if (rc < 0)
        return rc;
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
        *out = 1;
    else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
        *out = 0;
    else
        return fail(x, line_of(v), key, "invalid value '%s' (use true or false)", s);
    return 0;
}

/* log: level, format, access, access_probes, trusted_proxies */
static int apply_log(struct ctx *x, struct config *c, yaml_node_t *m)
{
    char key[KEY_MAX];
    if (is_null(m))
        return 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "log", "expected a mapping, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        const char *s = NULL;
        int rc = get_pair(x, m, p, "log", &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "level")) {
            rc = set_field(x, c, find_field("log", "level"), kv.value, key);
        } else if (!strcmp(kv.name, "format")) {
            rc = get_scalar(x, kv.value, key, &s);
            if (rc < 0)
                return rc;
            if (!strcmp(s, "text"))
                c->log_format = 0;
            else if (!strcmp(s, "json"))
                c->log_format = 1;
            else
                return fail(x, line_of(kv.value), key, "invalid value '%s' (use text or json)",
                            s);
        } else if (!strcmp(kv.name, "access")) {
            rc = get_bool(x, kv.value, key, &c->log_access);
        } else if (!strcmp(kv.name, "access_probes")) {
            rc = get_bool(x, kv.value, key, &c->log_access_probes);
        } else if (!strcmp(kv.name, "trusted_proxies")) {
            char **list = NULL;
            size_t n = 0;
            rc = set_str_list(x, kv.value, key, &list, &n, check_cidr);
            if (rc == 0) {
                free(c->trusted_proxies);
                c->trusted_proxies = calloc(n ? n : 1, sizeof(struct cidr));
                c->n_trusted_proxies = c->trusted_proxies ? n : 0;
                for (size_t i = 0; c->trusted_proxies && i < n; i++)
                    cidr_parse(list[i], &c->trusted_proxies[i]);
                if (!c->trusted_proxies)
                    rc = fail_rc(x, -ENOMEM, 0, NULL, "out of memory");
            }
            str_list_free(&list, &n);
        } else {
            return fail(x, line_of(kv.key), key, "unknown key");
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ui: the status page */
static int apply_ui(struct ctx *x, struct config *c, yaml_node_t *m)
{
    char key[KEY_MAX];
    const char *s = NULL;

    if (is_null(m))
        return 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "ui", "expected a mapping, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        int rc = get_pair(x, m, p, "ui", &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (strcmp(kv.name, "access"))
            return fail(x, line_of(kv.key), key, "unknown key");
        rc = get_scalar(x, kv.value, key, &s);
        if (rc < 0)
            return rc;
        if (!strcmp(s, "pull"))
            c->ui_access = UI_ACCESS_PULL;
        else if (!strcmp(s, "push"))
            c->ui_access = UI_ACCESS_PUSH;
        else if (!strcmp(s, "off"))
            c->ui_access = UI_ACCESS_OFF;
        else
            return fail(x, line_of(kv.value), key, "invalid value '%s' (use pull, push or off)",
                        s);
    }
    return 0;
}

static const char *check_origin(const char *s)
{
    if (!strcmp(s, "*"))
        return NULL;
    if (strncmp(s, "http://", 7) && strncmp(s, "https://", 8))
        return "an origin is scheme://host[:port] (e.g. https://ui.example.org), or *";
    const char *host = strstr(s, "://") + 3;
    if (!*host || strlen(s) > 255 || strchr(host, '/'))
        return "an origin is scheme://host[:port], with no path (e.g. https://ui.example.org)";
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || strchr("\"\\,;", *p))
            return "an origin has no spaces, quotes, commas or control characters";
    return NULL;
}

static const char *check_token(const char *s)
{
    if (!*s || strlen(s) > 64 ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") !=
            strlen(s))
        return "a header or method name has 1..64 letters, digits, '-', '_' or '.'";
    return NULL;
}

/* cors: allow_origins, allow_headers, allow_methods, allow_credentials, max_age */
static int apply_cors(struct ctx *x, struct config *c, yaml_node_t *m)
{
    char key[KEY_MAX];
    unsigned long cred_line = 0;
    if (is_null(m))
        return 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "cors", "expected a mapping, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        const char *s = NULL;
        int rc = get_pair(x, m, p, "cors", &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "allow_origins")) {
            rc = set_str_list(x, kv.value, key, &c->cors_origins, &c->n_cors_origins,
                              check_origin);
        } else if (!strcmp(kv.name, "allow_headers")) {
            rc = set_str_list(x, kv.value, key, &c->cors_headers, &c->n_cors_headers,
                              check_token);
        } else if (!strcmp(kv.name, "allow_methods")) {
            rc = set_str_list(x, kv.value, key, &c->cors_methods, &c->n_cors_methods,
                              check_token);
        } else if (!strcmp(kv.name, "allow_credentials")) {
            rc = get_bool(x, kv.value, key, &c->cors_credentials);
            cred_line = line_of(kv.value);
        } else if (!strcmp(kv.name, "max_age")) {
            uint64_t v;
            rc = get_scalar(x, kv.value, key, &s);
            if (rc < 0)
                return rc;
            if (parse_duration_ms(s, &v) < 0 || v > 24ULL * 3600 * 1000)
                return fail(x, line_of(kv.value), key,
                            "invalid duration '%s' (use e.g. 0, 10m, 2h; at most 24h)", s);
            c->cors_max_age_ms = v;
        } else {
            return fail(x, line_of(kv.key), key, "unknown key");
        }
        if (rc < 0)
            return rc;
    }
    if (cred_line && c->cors_credentials) {
        for (size_t i = 0; i < c->n_cors_origins; i++)
            if (!strcmp(c->cors_origins[i], "*"))
                warn_at(x, cred_line, "cors.allow_credentials",
                        "with allow_origins '*' every origin is echoed and may send "
                        "credentials: list the UI's origin instead");
    }
    return 0;
}

/* ---- pin and prefetch ---- */

/* A reference as pin and prefetch take it: [upstream/]repository followed by :tag (globs
 * * ? [] allowed), @sha256:<hex>, or nothing (latest). How it routes is decided at start. */
static const char *check_pin_ref(const char *s)
{
    if (!*s || strlen(s) > 512)
        return "a reference has 1..512 characters";
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._-/:@*?[]", *p)))
            return "a reference is [upstream/]repository[:tag or tag glob][@sha256:digest]";
    const char *at = strchr(s, '@');
    if (at && !ref_digest_is_sha256(at + 1, strlen(at + 1)))
        return "the digest after '@' is not sha256:<64 lowercase hex>";
    return NULL;
}

static const char *check_platform(const char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || !slash[1] || strlen(s) > 128 || strchr(s, ' '))
        return "a platform is os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8";
    return NULL;
}

/* "HH:MM-HH:MM" of the local day into minutes; the end may be before the start (over
 * midnight). */
static int parse_window(const char *s, int *from, int *to)
{
    unsigned h1, m1, h2, m2;
    char tail;
    if (sscanf(s, "%2u:%2u-%2u:%2u%c", &h1, &m1, &h2, &m2, &tail) != 4 || h1 > 24 || h2 > 24 ||
        m1 > 59 || m2 > 59 || (h1 == 24 && m1) || (h2 == 24 && m2))
        return -EINVAL;
    *from = (int)(h1 * 60 + m1);
    *to = (int)(h2 * 60 + m2);
    return *from == *to ? -EINVAL : 0;
}

static int get_u64(struct ctx *x, yaml_node_t *v, const char *key, uint64_t *out)
{
    const char *s = NULL;
    int rc = get_scalar(x, v, key, &s);
    if (rc < 0)
        return rc;
    if (parse_count(s, out) < 0 || *out > 1000000000)
        return fail(x, line_of(v), key, "invalid count '%s' (use 0..1000000000)", s);
    return 0;
}

/* prefetch: a list of references, or a mapping of references and how they are fetched. */
static int apply_prefetch(struct ctx *x, struct config *c, yaml_node_t *m)
{
    char key[KEY_MAX];
    if (m->type == YAML_SEQUENCE_NODE)
        return set_str_list(x, m, "prefetch", &c->prefetch, &c->n_prefetch, check_pin_ref);
    if (is_null(m))
        return 0;
    if (m->type != YAML_MAPPING_NODE)
        return fail(x, line_of(m), "prefetch",
                    "expected a list of references or a mapping, got %s", kind_of(m));
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        struct pair kv;
        const char *s = NULL;
        int rc = get_pair(x, m, p, "prefetch", &kv, key, sizeof(key));
        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "references")) {
            rc = set_str_list(x, kv.value, key, &c->prefetch, &c->n_prefetch, check_pin_ref);
        } else if (!strcmp(kv.name, "platforms")) {
            if (kv.value->type == YAML_SCALAR_NODE) {
                rc = get_scalar(x, kv.value, key, &s);
                if (rc < 0)
                    return rc;
                if (strcmp(s, "all"))
                    return fail(x, line_of(kv.value), key,
                                "invalid value '%s' (use all, or a list such as [linux/amd64])",
                                s);
                str_list_free(&c->prefetch_platforms, &c->n_prefetch_platforms);
            } else {
                rc = set_str_list(x, kv.value, key, &c->prefetch_platforms,
                                  &c->n_prefetch_platforms, check_platform);
            }
        } else if (!strcmp(kv.name, "schedule")) {
            uint64_t v;
            rc = get_scalar(x, kv.value, key, &s);
            if (rc < 0)
                return rc;
            if (parse_duration_ms(s, &v) < 0 || v < 1000)
                return fail(x, line_of(kv.value), key,
                            "invalid duration '%s' (use e.g. 30m, 6h, 1d; at least 1s)", s);
            c->prefetch_schedule_ms = v;
        } else if (!strcmp(kv.name, "window")) {
            rc = get_scalar(x, kv.value, key, &s);
            if (rc < 0)
                return rc;
            if (parse_window(s, &c->prefetch_window_from, &c->prefetch_window_to) < 0)
                return fail(x, line_of(kv.value), key,
                            "invalid window '%s' (use local hours, e.g. \"01:00-05:00\")", s);
        } else if (!strcmp(kv.name, "max_pulls_per_window")) {
            rc = get_u64(x, kv.value, key, &c->prefetch_max_pulls);
        } else if (!strcmp(kv.name, "reserve")) {
            rc = get_u64(x, kv.value, key, &c->prefetch_reserve);
        } else {
            return fail(x, line_of(kv.key), key, "unknown key");
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The bucket GC sees a blob served all the time as last served up to a marker interval and a
 * GC period ago (a marker is written at most once per interval): a TTL that short would evict
 * what is in use. */
static int check_s3_lifecycle(struct ctx *x, const struct config *c, unsigned long line)
{
    uint64_t ttl = c->s3_ttl_set ? c->s3_ttl_ms : c->ttl_ms;
    if (!c->s3_gc_lease_ms || !c->s3_access_interval_ms || !ttl ||
        ttl > c->s3_access_interval_ms + c->gc_interval_ms)
        return 0;
    return fail(x, line, c->s3_ttl_set ? "s3.ttl" : "s3",
                "the bucket's TTL (%s, %llu s) must be longer than s3.access_interval (%llu s) "
                "plus cache.gc_interval (%llu s), or a blob in use could look unused",
                c->s3_ttl_set ? "s3.ttl" : "cache.ttl", (unsigned long long)(ttl / 1000),
                (unsigned long long)(c->s3_access_interval_ms / 1000),
                (unsigned long long)(c->gc_interval_ms / 1000));
}

static int apply_root(struct ctx *x, struct config *c, yaml_node_t *root)
{
    unsigned long s3_line = 0;
    char key[KEY_MAX];

    if (is_null(root))
        return 0;
    if (root->type != YAML_MAPPING_NODE)
        return fail(x, line_of(root), NULL, "expected a mapping at the top level, got %s",
                    kind_of(root));
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        struct pair kv;
        const char *s = NULL;
        int rc = get_pair(x, root, p, "", &kv, key, sizeof(key));

        if (rc < 0)
            return rc;
        if (!strcmp(kv.name, "listen")) {
            char host[256];
            int port;
            rc = get_scalar(x, kv.value, key, &s);
            if (rc < 0)
                return rc;
            if (parse_listen(s, host, &port) < 0)
                return fail(x, line_of(kv.value), key,
                            "invalid address '%s' (use host:port, [v6addr]:port or :port)", s);
            if (same_socket(s, c->metrics_listen))
                return fail(x, line_of(kv.value), key, "'%s' is the address of metrics.listen (%s)",
                            s, c->metrics_listen);
            rc = set_str(x, &c->listen, s);
        } else if (!strcmp(kv.name, "storage")) {
            rc = get_scalar(x, kv.value, key, &s);
            if (rc < 0)
                return rc;
            if (!*s)
                return fail(x, line_of(kv.value), key, "must not be empty");
            rc = set_str(x, &c->storage, s);
        } else if (!strcmp(kv.name, "user")) {
            rc = get_scalar(x, kv.value, key, &s);
            if (rc < 0)
                return rc;
            if (!*s)
                return fail(x, line_of(kv.value), key, "must not be empty");
            errno = 0;
            if (!getpwnam(s))
                return fail(x, line_of(kv.value), key, "no such user '%s'%s%s", s,
                            errno ? ": " : "", errno ? strerror(errno) : "");
            rc = set_str(x, &c->user, s);
        } else if (!strcmp(kv.name, "instance_id")) {
            rc = get_scalar(x, kv.value, key, &s);
            if (rc < 0)
                return rc;
            if (!*s || strlen(s) > CONFIG_INSTANCE_ID_MAX ||
                strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:") !=
                    strlen(s))
                return fail(x, line_of(kv.value), key,
                            "invalid id '%s' (1 to %d of A-Z, a-z, 0-9, '.', '-', '_' and ':')",
                            s, CONFIG_INSTANCE_ID_MAX);
            rc = set_str(x, &c->instance_id, s);
        } else if (!strcmp(kv.name, "workers")) {
            uint64_t n;
            rc = get_scalar(x, kv.value, key, &s);
            if (rc < 0)
                return rc;
            if (!strcmp(s, "auto"))
                c->workers = 0;
            else if (parse_count(s, &n) < 0 || n < 1 || n > CONFIG_WORKERS_MAX)
                return fail(x, line_of(kv.value), key,
                            "invalid value '%s' (auto, or 1 to %d event loops)", s,
                            CONFIG_WORKERS_MAX);
            else
                c->workers = n;
        } else if (!strcmp(kv.name, "upstreams")) {
            rc = apply_upstreams(x, c, kv.value);
        } else if (!strcmp(kv.name, "auth")) {
            rc = apply_auth(x, c, kv.value);
        } else if (!strcmp(kv.name, "tls")) {
            rc = apply_tls(x, c, kv.value);
        } else if (!strcmp(kv.name, "hosted")) {
            rc = apply_hosted(x, c, kv.value);
        } else if (!strcmp(kv.name, "rules")) {
            rc = apply_rules(x, c, kv.value);
        } else if (!strcmp(kv.name, "metrics")) {
            rc = apply_metrics(x, c, kv.value);
        } else if (!strcmp(kv.name, "s3")) {
            s3_line = line_of(kv.key);
            rc = apply_s3(x, c, kv.value);
        } else if (!strcmp(kv.name, "cluster")) {
            rc = apply_cluster(x, c, kv.value);
        } else if (!strcmp(kv.name, "ui")) {
            rc = apply_ui(x, c, kv.value);
        } else if (!strcmp(kv.name, "log")) {
            rc = apply_log(x, c, kv.value);
        } else if (!strcmp(kv.name, "cors")) {
            rc = apply_cors(x, c, kv.value);
        } else if (!strcmp(kv.name, "pin")) {
            rc = is_null(kv.value) ? 0
                                   : set_str_list(x, kv.value, key, &c->pins, &c->n_pins,
                                                  check_pin_ref);
        } else if (!strcmp(kv.name, "prefetch")) {
            rc = apply_prefetch(x, c, kv.value);
        } else if (is_section(kv.name)) {
            rc = apply_section(x, c, kv.name, kv.value);
        } else {
            rc = fail(x, line_of(kv.key), key, "unknown key");
        }
        if (rc < 0)
            return rc;
    }
    return s3_line ? check_s3_lifecycle(x, c, s3_line) : 0;
}

static int yaml_error(struct ctx *x, const yaml_parser_t *parser)
{
    unsigned long line;

    if (parser->error == YAML_MEMORY_ERROR)
        return fail_rc(x, -ENOMEM, 0, NULL, "out of memory while parsing YAML");
    if (parser->error == YAML_READER_ERROR) {
        /* Reader errors (bad encoding) only carry a byte offset. */
        size_t off = parser->problem_offset < x->len ? parser->problem_offset : x->len;
        line = 1;
        for (size_t i = 0; x->buf && i < off; i++)
            line += x->buf[i] == '\n';
    } else {
        line = (unsigned long)parser->problem_mark.line + 1;
    }
    fail(x, line, NULL, "YAML syntax error: %s", parser->problem ? parser->problem : "unknown");
    if (parser->context)
        appendf(x, " (%s on line %lu)", parser->context,
                (unsigned long)parser->context_mark.line + 1);
    return -EINVAL;
}

/* Reads the whole file; the size cap also protects against pointing at /dev/zero. */
static int read_file(struct ctx *x, char **out, size_t *out_len)
{
    struct stat st;
    size_t len = 0, cap = 4096;
    char *buf = NULL;
    int fd, rc = 0;

    fd = open(x->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        return fail_rc(x, rc, 0, NULL, "cannot open: %s", strerror(-rc));
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        fail_rc(x, rc, 0, NULL, "cannot stat: %s", strerror(-rc));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = fail_rc(x, -EISDIR, 0, NULL, "is a directory");
        goto out;
    }
    x->mode = (unsigned)(st.st_mode & 07777);
    buf = malloc(cap);
    if (!buf) {
        rc = fail_rc(x, -ENOMEM, 0, NULL, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t r;
        if (len == cap) {
            char *nb;
            if (cap > CONFIG_FILE_MAX) {
                rc = fail_rc(x, -EFBIG, 0, NULL, "file too large (max %d bytes)", CONFIG_FILE_MAX);
                goto out;
            }
            nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = fail_rc(x, -ENOMEM, 0, NULL, "out of memory");
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
        r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            fail_rc(x, rc, 0, NULL, "cannot read: %s", strerror(-rc));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len > CONFIG_FILE_MAX) {
        rc = fail_rc(x, -EFBIG, 0, NULL, "file too large (max %d bytes)", CONFIG_FILE_MAX);
        goto out;
    }
    *out = buf;
    *out_len = len;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

int config_load(const char *path, struct config *c, char *err, size_t errlen)
{
    struct ctx x = {.path = path, .err = err, .errlen = errlen};
    struct config n;
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    yaml_node_t *root;
    bool have_parser = false, have_doc = false;
    char *buf = NULL;
    size_t len = 0;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    rc = read_file(&x, &buf, &len);
    if (rc < 0)
        return rc;
    x.buf = buf;
    x.len = len;

    /* Work on a copy: on any error the caller's config stays as it was. */
    rc = config_copy(&n, c);
    if (rc < 0) {
        free(buf);
        return fail_rc(&x, rc, 0, NULL, "out of memory");
    }
    rc = set_str(&x, &n.source, path);
    if (rc < 0)
        goto out;

    if (!yaml_parser_initialize(&parser)) {
        rc = fail_rc(&x, -ENOMEM, 0, NULL, "out of memory");
        goto out;
    }
    have_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) { /* frees doc itself on failure */
        rc = yaml_error(&x, &parser);
        goto out;
    }
    have_doc = true;
    x.doc = &doc;

    root = yaml_document_get_root_node(&doc);
    if (root) {
        rc = apply_root(&x, &n, root);
        if (rc == 0)
            rc = check_rule_upstreams(&x, &n);
        if (rc < 0)
            goto out;
        /* Anything after the first document is an error, including syntax errors. */
        if (!yaml_parser_load(&parser, &extra)) {
            rc = yaml_error(&x, &parser);
            goto out;
        }
        if (yaml_document_get_root_node(&extra))
            rc = fail(&x, (unsigned long)extra.start_mark.line + 1, NULL,
                      "only one YAML document is allowed");
        yaml_document_delete(&extra);
    }
out:
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    free(buf);
    if (rc < 0) {
        config_free(&n);
        return rc;
    }
    config_free(c);
    *c = n;
    return 0;
}
