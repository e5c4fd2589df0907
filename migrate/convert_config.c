/* SPDX-License-Identifier: Apache-2.0 */
/* registry:2's configuration (distribution's configuration.md) read as a YAML tree; each key
 * either has a counterpart in mirror.yml or gets a warning that names its line and says what
 * to do instead. The output is written only when the whole input was read. */
#include "migrate/convert_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "util/buf.h"

#define INPUT_MAX (1u << 20) /* a configuration file is small; /dev/zero is not one */
#define OUTPUT_MAX (64u << 10)
#define VALUE_MAX 4096

/* What is carried over, as found (NULL: absent). Pointers into the YAML document. */
struct carried {
    const char *remoteurl, *username, *password, *ttl;
    const char *addr, *cert, *key, *htpasswd, *realm, *rootdirectory;
    const char *log_level, *log_format, *drain;
    int access_log_off;
    unsigned long rootdirectory_line;
};

struct conv {
    const char *path;
    yaml_document_t doc;
    struct carried c;
    size_t warnings;
};

static unsigned long line_of(const yaml_node_t *n)
{
    return (unsigned long)n->start_mark.line + 1;
}

static void warn(struct conv *x, const yaml_node_t *key, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void warn(struct conv *x, const yaml_node_t *key, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "regcache: %s:%lu: %s: ", x->path, line_of(key), name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    x->warnings++;
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* What registry:2 keys regcache cannot carry over, and what to do instead. A prefix ending in
 * '.' stands for its whole section. */
static const struct {
    const char *key, *advice;
} advice[] = {
    {"storage.s3", "regcache stores on a local filesystem only: copy the bucket's "
                   "docker/registry/v2 tree to a local directory (aws s3 sync, rclone) and run "
                   "`regcache import-registry` on it, or let regcache fill from the upstream"},
    {"storage.azure", "regcache stores on a local filesystem only: copy the container's "
                      "docker/registry/v2 tree to a local directory and run `regcache "
                      "import-registry` on it, or let regcache fill from the upstream"},
    {"storage.gcs", "regcache stores on a local filesystem only: copy the bucket's "
                    "docker/registry/v2 tree to a local directory (gsutil rsync) and run "
                    "`regcache import-registry` on it, or let regcache fill from the upstream"},
    {"storage.swift", "regcache stores on a local filesystem only: copy the tree to a local "
                      "directory and run `regcache import-registry` on it"},
    {"storage.oss", "regcache stores on a local filesystem only: copy the tree to a local "
                    "directory and run `regcache import-registry` on it"},
    {"storage.inmemory", "regcache stores on a local filesystem (storage:)"},
    {"storage.delete", "not needed: regcache evicts cached content by cache.ttl, cache.max_size "
                       "and cache.min_free (`regcache gc`), and hosted repositories always "
                       "accept DELETE from push users"},
    {"storage.cache", "not needed: regcache keeps its index in memory and in SQLite in the "
                      "storage directory"},
    {"storage.redirect", "no counterpart: regcache serves blobs itself"},
    {"storage.maintenance", "no counterpart: abandoned hosted uploads expire after "
                            "hosted.upload_timeout; there is no read-only mode"},
    {"storage.tag", "no counterpart: not needed"},
    {"storage.filesystem.maxthreads", "not needed: regcache's disk work runs on its own thread "
                                      "pool"},
    {"http.host", "not needed: regcache's Location headers are relative; with auth.scheme "
                  "token behind a reverse proxy set auth.token_realm to this host's /v2/token"},
    {"http.prefix", "no counterpart: regcache serves /v2/ at the root; map a prefix in a "
                    "reverse proxy"},
    {"http.secret", "not needed: regcache keeps no upload state in clients' hands"},
    {"http.relativeurls", "not needed: regcache's Location headers are always relative"},
    {"http.net", "regcache listens on TCP only (listen: host:port)"},
    {"http.headers", "regcache sets its own security headers (X-Content-Type-Options: "
                     "nosniff); add others in a reverse proxy"},
    {"http.debug", "use metrics.listen for Prometheus metrics (/metrics) and /livez, /readyz "
                   "on the main listener for probes"},
    {"http.http2", "no counterpart: regcache speaks HTTP/1.1 (a reverse proxy can offer h2)"},
    {"http.h2c", "no counterpart: regcache speaks HTTP/1.1"},
    {"http.tls.clientcas", "no counterpart: regcache does not check client certificates; use "
                           "auth.htpasswd, or a reverse proxy that does"},
    {"http.tls.letsencrypt", "no counterpart: obtain the certificate with certbot or a "
                             "reverse proxy and set tls.cert and tls.key (SIGHUP reloads them)"},
    {"http.tls.minimumtls", "not needed: regcache speaks TLS 1.2 and 1.3 only"},
    {"http.tls.cipherSuites", "no counterpart: regcache uses OpenSSL's defaults"},
    {"http.tls.ciphersuites", "no counterpart: regcache uses OpenSSL's defaults"},
    {"auth.token", "regcache issues its own tokens (auth.scheme: token) for its htpasswd users; "
                   "an external token service is not supported: move the users into "
                   "auth.htpasswd (`regcache passwd FILE USER`)"},
    {"auth.silly", "no counterpart: use auth.htpasswd"},
    {"auth.htpasswd.", "regcache reads auth.htpasswd (path) and auth.realm only"},
    {"redis", "not needed: regcache keeps its index in memory and in SQLite"},
    {"notifications", "no counterpart: regcache sends no webhooks; follow its access log "
                      "(log.format: json) or scrape its metrics"},
    {"middleware", "no counterpart (a CDN redirect middleware): regcache serves blobs itself"},
    {"health", "use /livez and /readyz (probes) and the metrics instead"},
    {"log.fields", "no counterpart: regcache's log lines carry fixed fields"},
    {"log.hooks", "no counterpart: ship regcache's log (stderr, journald) with your log agent"},
    {"log.accesslog.", "regcache reads log.accesslog.disabled only (log.access)"},
    {"log.reportcaller", "no counterpart"},
    {"reporting", "no counterpart: regcache reports nowhere; use the metrics"},
    {"validation", "not needed: regcache checks every manifest itself (media types, JSON "
                   "shape, digests) and serves manifest types only"},
    {"compatibility", "not needed: regcache never serves schema 1 manifests"},
    {"proxy.", "regcache reads proxy.remoteurl, username, password and ttl"},
    {"catalog", "no counterpart: regcache's _catalog pages with n and last"},
};

static const char *advice_for(const char *key)
{
    for (size_t i = 0; i < sizeof(advice) / sizeof(advice[0]); i++) {
        size_t n = strlen(advice[i].key);
        if (advice[i].key[n - 1] == '.' ? !strncmp(key, advice[i].key, n)
                                        : !strcmp(key, advice[i].key))
            return advice[i].advice;
    }
    return NULL;
}

/* Keys read as values: their scalar into c. NULL when key is not one of them. */
static const char **slot_for(struct carried *c, const char *key)
{
    static const struct {
        const char *key;
        size_t off;
    } slots[] = {
        {"proxy.remoteurl", offsetof(struct carried, remoteurl)},
        {"proxy.username", offsetof(struct carried, username)},
        {"proxy.password", offsetof(struct carried, password)},
        {"proxy.ttl", offsetof(struct carried, ttl)},
        {"http.addr", offsetof(struct carried, addr)},
        {"http.tls.certificate", offsetof(struct carried, cert)},
        {"http.tls.key", offsetof(struct carried, key)},
        {"http.draintimeout", offsetof(struct carried, drain)},
        {"auth.htpasswd.path", offsetof(struct carried, htpasswd)},
        {"auth.htpasswd.realm", offsetof(struct carried, realm)},
        {"storage.filesystem.rootdirectory", offsetof(struct carried, rootdirectory)},
        {"log.level", offsetof(struct carried, log_level)},
        {"loglevel", offsetof(struct carried, log_level)},
        {"log.formatter", offsetof(struct carried, log_format)},
    };
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++)
        if (!strcmp(key, slots[i].key))
            return (const char **)((char *)c + slots[i].off);
    return NULL;
}

/* Sections whose keys are looked at one by one. */
static int descend(const char *key)
{
    static const char *const sections[] = {"storage", "storage.filesystem", "http", "http.tls",
                                           "auth",    "auth.htpasswd",      "log",  "log.accesslog",
                                           "proxy"};
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
        if (!strcmp(key, sections[i]))
            return 1;
    return 0;
}

static void walk(struct conv *x, yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&x->doc, p->value);
        const char *name = scalar(k);
        if (!name)
            continue;
        char key[512];
        snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "", name);
        if (!prefix[0] && !strcmp(key, "version"))
            continue;
        const char **slot = slot_for(&x->c, key);
        if (slot) {
            if (!scalar(v) || !*scalar(v))
                warn(x, k, key, "not a plain value: left out");
            else
                *slot = scalar(v);
            if (!strcmp(key, "storage.filesystem.rootdirectory"))
                x->c.rootdirectory_line = line_of(k);
            continue;
        }
        if (!strcmp(key, "log.accesslog.disabled")) {
            x->c.access_log_off = scalar(v) && !strcmp(scalar(v), "true");
            continue;
        }
        if (descend(key) && v && v->type == YAML_MAPPING_NODE) {
            walk(x, v, key);
            continue;
        }
        const char *a = advice_for(key);
        warn(x, k, key, "not carried over: %s",
             a ? a : "unknown to regcache convert-config: left out");
    }
}

/* ---- output ---- */

/* A YAML double-quoted scalar. */
static int put_quoted(struct buf *b, const char *s)
{
    int r = buf_append(b, "\"", 1);
    for (; !r && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            r = buf_printf(b, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            r = buf_printf(b, "\\x%02x", ch);
        else
            r = buf_append(b, s, 1);
    }
    return r ? r : buf_append(b, "\"", 1);
}

static int put_key(struct buf *b, const char *indent, const char *key, const char *value)
{
    int r = buf_printf(b, "%s%s: ", indent, key);
    if (!r)
        r = put_quoted(b, value);
    return r ? r : buf_append(b, "\n", 1);
}

/* A Go duration (72h, 1h30m, 90s, 500ms) in milliseconds; -1 when it is not one. */
static int64_t go_duration_ms(const char *s)
{
    if (!strcmp(s, "0"))
        return 0;
    double total = 0;
    const char *p = s;
    if (!*p)
        return -1;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v < 0)
            return -1;
        p = end;
        double unit;
        if (!strncmp(p, "ns", 2))
            unit = 1e-6, p += 2;
        else if (!strncmp(p, "us", 2))
            unit = 1e-3, p += 2;
        else if (!strncmp(p, "\xc2\xb5s", 3))
            unit = 1e-3, p += 3;
        else if (!strncmp(p, "ms", 2))
            unit = 1, p += 2;
        else if (*p == 's')
            unit = 1000, p++;
        else if (*p == 'm')
            unit = 60e3, p++;
        else if (*p == 'h')
            unit = 3600e3, p++;
        else
            return -1;
        total += v * unit;
    }
    return total > 9e15 ? -1 : (int64_t)(total + 0.5);
}

/* regcache's spelling of a duration: the largest of h, m, s, ms that divides it. */
static void duration_text(int64_t ms, char *out, size_t len)
{
    if (ms == 0)
        snprintf(out, len, "0");
    else if (ms % 3600000 == 0)
        snprintf(out, len, "%lldh", (long long)(ms / 3600000));
    else if (ms % 60000 == 0)
        snprintf(out, len, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(out, len, "%llds", (long long)(ms / 1000));
    else
        snprintf(out, len, "%lldms", (long long)ms);
}

/* An upstream's name from its URL's host: Docker Hub's hosts are docker.io. */
static void upstream_name(const char *url, char *out, size_t len)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t n = strcspn(h, "/?#");
    const char *at = memchr(h, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    snprintf(out, len, "%.*s", (int)n, h);
    if (!strcmp(out, "registry-1.docker.io") || !strcmp(out, "index.docker.io") ||
        !strcmp(out, "registry.hub.docker.com") || !strcmp(out, "docker.io"))
        snprintf(out, len, "docker.io");
}

/* The URL as regcache takes it: scheme://host[:port], no path, no trailing slash. */
static int upstream_url(struct conv *x, const char *url, char *out, size_t len)
{
    const char *h = strstr(url, "://");
    if (!h || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
        fprintf(stderr, "regcache: %s: proxy.remoteurl: '%s' is not an http:// or https:// URL\n",
                x->path, url);
        return -EINVAL;
    }
    size_t n = (size_t)(h + 3 - url) + strcspn(h + 3, "/?#");
    snprintf(out, len, "%.*s", (int)n, url);
    if (url[n] && strcmp(url + n, "/")) {
        fprintf(stderr,
                "regcache: %s: proxy.remoteurl: the path '%s' is dropped (regcache "
                "talks to /v2/ at the registry's root)\n",
                x->path, url + n);
        x->warnings++;
    }
    return 0;
}

/* Where the new store goes: next to the old root (so that, on the same filesystem, the import
 * hard-links instead of copying), never the old root itself (its layout differs). */
static void storage_dir(const char *root, char *out, size_t len)
{
    char parent[VALUE_MAX];
    snprintf(parent, sizeof(parent), "%s", root);
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(out, len, "regcache-data");
    else if (slash == parent)
        snprintf(out, len, "/regcache");
    else {
        *slash = '\0';
        snprintf(out, len, "%s/regcache", parent);
    }
}

static int emit(struct conv *x, struct buf *b)
{
    struct carried *c = &x->c;
    int r = buf_printf(b,
                       "# regcache configuration converted from %s by regcache "
                       "convert-config.\n"
                       "# Check it with: regcache check-config -c mirror.yml\n",
                       x->path);
    if (!r)
        r = put_key(b, "", "listen", c->addr ? c->addr : "0.0.0.0:5000");
    char storage[VALUE_MAX];
    storage_dir(c->rootdirectory ? c->rootdirectory : "/var/lib/registry", storage,
                sizeof(storage));
    if (!r && c->rootdirectory)
        r = buf_printf(b,
                       "# registry:2 kept its data in %s; regcache's store has another "
                       "layout. Fill this new\n# directory from the old one with:\n"
                       "#   regcache import-registry %s -c mirror.yml\n",
                       c->rootdirectory, c->rootdirectory);
    if (!r)
        r = put_key(b, "", "storage", storage);
    if (!r && c->remoteurl) {
        char name[512], url[VALUE_MAX];
        if ((r = upstream_url(x, c->remoteurl, url, sizeof(url))))
            return r;
        upstream_name(url, name, sizeof(name));
        r = buf_printf(b, "upstreams:\n");
        if (!r)
            r = put_key(b, "  - ", "name", name);
        if (!r)
            r = put_key(b, "    ", "url", url);
        if (!r && c->username && c->password)
            r = put_key(b, "    ", "username", c->username) ||
                put_key(b, "    ", "password", c->password);
    }
    if (!r && c->ttl) {
        int64_t ms = go_duration_ms(c->ttl);
        char d[64];
        if (ms < 0) {
            fprintf(stderr, "regcache: %s: proxy.ttl: '%s' is not a duration: left out\n", x->path,
                    c->ttl);
            x->warnings++;
        } else {
            duration_text(ms, d, sizeof(d));
            r = buf_printf(b, "cache:\n") || put_key(b, "  ", "ttl", d);
        }
    }
    if (!r && c->drain) {
        int64_t ms = go_duration_ms(c->drain);
        char d[64];
        if (ms >= 0) {
            duration_text(ms, d, sizeof(d));
            r = buf_printf(b, "timeouts:\n") || put_key(b, "  ", "shutdown_grace", d);
        }
    }
    if (!r && (c->cert || c->key))
        r = buf_printf(b, "tls:\n") || (c->cert && put_key(b, "  ", "cert", c->cert)) ||
            (c->key && put_key(b, "  ", "key", c->key));
    if (!r && c->htpasswd) {
        r = buf_printf(b, "auth:\n") || put_key(b, "  ", "htpasswd", c->htpasswd);
        if (!r && c->realm)
            r = put_key(b, "  ", "realm", c->realm);
        if (!r)
            r = buf_printf(b, "  # registry:2 asked every client to log in: so does this\n"
                              "  anonymous: none\n");
    }
    const char *fmt = NULL;
    if (c->log_format)
        fmt = !strcmp(c->log_format, "text") ? "text" : "json";
    if (!r && (c->log_level || fmt || c->access_log_off)) {
        r = buf_printf(b, "log:\n");
        if (!r && c->log_level)
            r = put_key(b, "  ", "level",
                        !strcmp(c->log_level, "warning") ? "warn"
                        : !strcmp(c->log_level, "fatal") || !strcmp(c->log_level, "panic")
                            ? "error"
                            : c->log_level);
        if (!r && fmt)
            r = put_key(b, "  ", "format", fmt);
        if (!r && c->access_log_off)
            r = buf_printf(b, "  access: false\n");
    }
    return r ? -ENOMEM : 0;
}

/* ---- the command ---- */

static int read_input(const char *path, unsigned char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 4096, n = 0;
    unsigned char *b = malloc(cap);
    int r = b ? 0 : -ENOMEM;
    while (!r) {
        if (n == cap) {
            unsigned char *nb = cap >= INPUT_MAX ? NULL : realloc(b, cap * 2);
            if (!nb) {
                r = cap >= INPUT_MAX ? -EFBIG : -ENOMEM;
                break;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t got = read(fd, b + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            r = -errno;
        else if (got == 0)
            break;
        else
            n += (size_t)got;
    }
    close(fd);
    if (r) {
        free(b);
        return r;
    }
    *out = b;
    *len = n;
    return 0;
}

static int write_output(const char *path, const struct buf *b)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid());
    /* it may hold the upstream's password: 0600 */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    int r = 0;
    while (!r && off < b->len) {
        ssize_t n = write(fd, b->data + off, b->len - off);
        if (n < 0 && errno != EINTR)
            r = -errno;
        else if (n > 0)
            off += (size_t)n;
    }
    if (!r && fsync(fd))
        r = -errno;
    if (close(fd) && !r)
        r = -errno;
    if (!r && rename(tmp, path))
        r = -errno;
    if (r)
        unlink(tmp);
    return r;
}

int convert_config_main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            out = argv[++i];
        else if (argv[i][0] != '-' && !in)
            in = argv[i];
        else {
            fprintf(stderr, "usage: regcache convert-config config.yml [-o mirror.yml]\n");
            return 2;
        }
    }
    if (!in) {
        fprintf(stderr, "usage: regcache convert-config config.yml [-o mirror.yml]\n");
        return 2;
    }
    struct conv x;
    memset(&x, 0, sizeof(x));
    x.path = in;
    unsigned char *text = NULL;
    size_t len = 0;
    int r = read_input(in, &text, &len);
    if (r) {
        fprintf(stderr, "regcache: %s: %s\n", in,
                r == -EFBIG ? "larger than 1 MiB: not a configuration file" : strerror(-r));
        return 1;
    }
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, text, len);
    if (!yaml_parser_load(&parser, &x.doc)) {
        fprintf(stderr, "regcache: %s:%lu: YAML syntax error: %s\n", in,
                (unsigned long)parser.problem_mark.line + 1,
                parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        free(text);
        return 1;
    }
    yaml_parser_delete(&parser);
    yaml_node_t *root = yaml_document_get_root_node(&x.doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        fprintf(stderr, "regcache: %s: not a registry configuration (no mapping at the top)\n", in);
        yaml_document_delete(&x.doc);
        free(text);
        return 1;
    }
    walk(&x, root, "");
    if (!x.c.remoteurl)
        fprintf(stderr,
                "regcache: %s: no proxy.remoteurl: this registry:2 is not a proxy "
                "cache; its repositories are your own images: list them under hosted: "
                "in mirror.yml and import them with `regcache import-registry DIR "
                "--hosted GLOB`\n",
                in);
    struct buf b;
    buf_init(&b, OUTPUT_MAX);
    r = emit(&x, &b);
    if (!r && x.c.rootdirectory) {
        char storage[VALUE_MAX];
        storage_dir(x.c.rootdirectory, storage, sizeof(storage));
        fprintf(stderr,
                "regcache: %s:%lu: storage.filesystem.rootdirectory: regcache's store "
                "has another layout: the new storage is %s; with regcache and "
                "registry:2 stopped, run `regcache import-registry %s -c %s` to "
                "adopt the old content (hard links on the same filesystem)\n",
                in, x.c.rootdirectory_line, storage, x.c.rootdirectory, out ? out : "mirror.yml");
    }
    if (!r) {
        if (out)
            r = write_output(out, &b);
        else if (fwrite(b.data, 1, b.len, stdout) != b.len)
            r = -EIO;
        if (r)
            fprintf(stderr, "regcache: %s: %s\n", out ? out : "standard output", strerror(-r));
    } else if (r == -ENOMEM) {
        fprintf(stderr, "regcache: out of memory\n");
    }
    if (!r && out)
        fprintf(stderr,
                "regcache: wrote %s (%zu warning%s above); check it with `regcache "
                "check-config -c %s`\n",
                out, x.warnings, x.warnings == 1 ? "" : "s", out);
    buf_free(&b);
    yaml_document_delete(&x.doc);
    free(text);
    return r ? 1 : 0;
}
