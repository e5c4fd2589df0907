/* SPDX-License-Identifier: Apache-2.0 */
/* The mirror's configuration: embedded defaults, optionally overridden by a YAML file. */
#ifndef REGCACHE_CONFIG_CONFIG_H
#define REGCACHE_CONFIG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_UPSTREAMS 32
#define CONFIG_MAX_URLS 8         /* upstreams[].urls: endpoints of one registry */
#define CONFIG_MAX_BLOB_SOURCES 8 /* upstreams[].blob_sources */
#define CONFIG_INSTANCE_ID_MAX 64 /* instance_id */

struct cidr;
struct rules;

/* upstreams[].blob_sources[]: another registry or mirror asked for blobs by digest only. */
struct config_blob_source {
    char *name;     /* in logs and metrics; defaults to the url */
    char *url;      /* base URL, as an upstream's */
    char *username; /* NULL when anonymous */
    char *password;
    char *ca_file;
    char *repository_prefix; /* NULL: the same repository name; else prefix/<repo> */
    int before;              /* order: before (1) the primary, or after (0, the default) */
};

struct config_upstream {
    char *name;     /* how clients address it: ns=<name> or /v2/<name>/... ; e.g. "docker.io" */
    char *url;      /* base URL, scheme://host[:port], no trailing slash */
    char *username; /* NULL when anonymous */
    char *password; /* NULL when anonymous; from password or read from password_file */
    char *ca_file;  /* PEM bundle trusted for this upstream's TLS instead of the system CAs */
    uint64_t max_size_bytes; /* upstreams[].max_size: its own content's cap, 0 = none */
    /* urls: every endpoint of the registry, tried in order (urls[0] is url); n_urls 0 when
     * only url was given */
    char *urls[CONFIG_MAX_URLS];
    size_t n_urls;
    struct config_blob_source blob_sources[CONFIG_MAX_BLOB_SOURCES];
    size_t n_blob_sources;
    /* upstreams[].parent: url is another regcache (a parent mirror): every request to it
     * carries ?ns=<name>, so that the parent picks its upstream of the same name */
    int parent;
};

/* ui.access: the status page is readable by whoever may pull (default), only by users who may
 * push, or not served at all. */
enum ui_access { UI_ACCESS_PULL = 0, UI_ACCESS_PUSH, UI_ACCESS_OFF };

struct config {
    char *source;  /* file the config came from, NULL for embedded defaults */
    char *listen;  /* "0.0.0.0:5000" */
    char *storage; /* directory; blobs/ and the database live here */
    char *user;    /* user: run as this user after binding the listener; NULL: stay as is */
    /* instance_id: this mirror's name in the Via header of its upstream requests (loops of
     * mirrors are refused by it); NULL: <hostname>:<listen port> */
    char *instance_id;
    /* workers: event loops serving connections; 0: auto (the CPUs the process may use, its
     * affinity and cgroup quota) */
    uint64_t workers;
    struct config_upstream upstreams[CONFIG_MAX_UPSTREAMS];
    size_t n_upstreams;
    uint64_t revalidate_after_ms;   /* cache.revalidate_after, default 30s */
    uint64_t revalidate_timeout_ms; /* cache.revalidate_timeout, default 2s */
    uint64_t ttl_ms;                /* cache.ttl, default 7d; 0 = never expire */
    uint64_t gc_interval_ms;        /* cache.gc_interval, default 24h */
    uint64_t max_size_bytes;        /* cache.max_size, default 0 = no cap */
    uint64_t min_free_bytes;        /* cache.min_free, default 0 */
    uint64_t negative_ttl_ms;       /* cache.negative_ttl, default 30s; 0 = no negative cache */
    uint64_t max_tags_per_repo;     /* cache.max_tags_per_repository, default 10000 */
    uint64_t connect_timeout_ms;    /* timeouts.connect, default 10s */
    uint64_t low_speed_time_ms;     /* timeouts.low_speed, default 30s */
    uint64_t first_byte_ms;         /* timeouts.first_byte, default 10s */
    uint64_t total_small_ms;        /* timeouts.total_small, default 60s: all but blobs */
    uint64_t client_idle_ms;        /* timeouts.client_idle, default 60s */
    uint64_t client_header_ms;      /* timeouts.client_header, default 20s */
    uint64_t shutdown_grace_ms;     /* timeouts.shutdown_grace, default 10s */
    uint64_t max_connections;       /* limits.max_connections, default 1024 */
    uint64_t min_body_rate;         /* limits.min_body_rate, bytes/s, default 1KiB; 0 = none */
    uint64_t max_manifest_bytes;    /* limits.max_manifest_size, default 4MiB */
    uint64_t max_blob_bytes;        /* limits.max_blob_size, default 64GiB */
    uint64_t max_response_memory;   /* limits.max_response_memory, default 256MiB; 0 = none */
    uint64_t reserved_connections;  /* limits.reserved_connections; 0: max_connections / 16 */
    uint64_t upstream_connections;  /* limits.upstream_connections, per upstream host, 64 */
    uint64_t max_fills;             /* limits.max_fills, blobs fetched at once per upstream, 256 */
    int log_level;                  /* log.level: debug|info|warn|error -> enum log_level */
    int log_format;                 /* log.format: text (0, default) or json (1) */
    int log_access;                 /* log.access: the access log, on (1) by default */
    int log_access_probes;          /* log.access_probes: probes and /metrics logged too (0) */
    struct cidr *trusted_proxies;   /* log.trusted_proxies: whose X-Forwarded-* is believed */
    size_t n_trusted_proxies;
    /* cors: off unless cors.allow_origins lists some */
    char **cors_origins; /* cors.allow_origins; "*" = any */
    size_t n_cors_origins;
    char **cors_headers; /* cors.allow_headers; NULL: the defaults (cors.c) */
    size_t n_cors_headers;
    char **cors_methods; /* cors.allow_methods; NULL: GET, HEAD, OPTIONS */
    size_t n_cors_methods;
    int cors_credentials;     /* cors.allow_credentials, default false */
    uint64_t cors_max_age_ms; /* cors.max_age, default 10m */
    /* auth: off unless auth.htpasswd is set */
    char *auth_htpasswd;  /* auth.htpasswd: bcrypt htpasswd file */
    char *auth_realm;     /* auth.realm, default "regcache" */
    int auth_anonymous_pull; /* auth.anonymous: pull (1, default) or none (0) */
    int auth_ping_challenge; /* auth.ping: open (0, default: 200 + challenge) or challenge (401) */
    int auth_token;          /* auth.scheme: basic (0, default) or token (1: Bearer tokens) */
    char *auth_token_realm;  /* auth.token_realm: the token endpoint URL; NULL: from Host */
    char **auth_push_users;  /* auth.push_users; none listed: every authenticated user */
    size_t n_auth_push_users;
    unsigned auth_max_failures;   /* auth.max_failures: wrong passwords per address a minute; 0 off */
    unsigned auth_verify_threads; /* auth.verify_threads: threads that run bcrypt (1..16) */
    char *tls_cert; /* tls.cert: PEM certificate chain; NULL for plain HTTP */
    char *tls_key;  /* tls.key: PEM private key */
    char **hosted; /* hosted (or hosted.repositories): repository name globs served and pushed
                    * locally */
    size_t n_hosted;
    uint64_t hosted_max_size_bytes;  /* hosted.max_size: all hosted content, default 0 = no cap */
    uint64_t hosted_upload_timeout_ms; /* hosted.upload_timeout: idle upload sessions, 10m */
    uint64_t hosted_max_uploads;       /* hosted.max_uploads_per_client, default 64 */
    /* metrics: GET /metrics on a listener of its own (metrics.listen, "host:port"; NULL:
     * none), and/or on the main listener for the peers in metrics.allow (CIDRs; none listed:
     * not served there) */
    char *metrics_listen;
    char **metrics_allow;
    size_t n_metrics_allow;
    int ui_access; /* ui.access: who may read the status page (enum ui_access) */
    struct rules *rules; /* rules: pull rules (rules/rules.h); NULL: none, every pull allowed */
    /* pin: references never evicted; prefetch: references kept warm (and pinned) */
    char **pins;
    size_t n_pins;
    char **prefetch;            /* prefetch (or prefetch.references) */
    size_t n_prefetch;
    char **prefetch_platforms;  /* prefetch.platforms "os/arch[/variant]"; none: all */
    size_t n_prefetch_platforms;
    uint64_t prefetch_schedule_ms; /* prefetch.schedule, default 6h */
    int prefetch_window_from;      /* prefetch.window, minutes of the local day; -1: none */
    int prefetch_window_to;
    uint64_t prefetch_max_pulls;   /* prefetch.max_pulls_per_window; 0: no bound */
    uint64_t prefetch_reserve;     /* prefetch.reserve of ratelimit-remaining, default 10 */
    /* s3: the shared store tier, a bucket of an S3-compatible store (s3/client.h); s3_endpoint
     * NULL: none. s3.secret_key_file fills s3_secret_key. */
    char *s3_endpoint, *s3_bucket, *s3_region, *s3_access_key, *s3_secret_key, *s3_prefix;
    char *s3_ca_file;
    uint64_t s3_part_size; /* s3.part_size, default 64MiB, 5MiB..5GiB */
    /* s3.abandoned_upload_after: multipart uploads under the prefix older than this are
     * aborted by the janitor (cache/l2_janitor.c); default 24h, at least 1s */
    uint64_t s3_abandoned_upload_after_ms;
    /* lifecycle across the replicas on the bucket (cache/l2_access.c, l2_lease.c, l2_gc.c):
     * s3.access_interval, how often at most a replica writes a blob's access marker (default
     * 1h; 0: no markers); s3.ttl, the bucket's own TTL (s3_ttl_set 0: cache.ttl's; 0: never);
     * s3.max_size, the bucket's cap (0: none); s3.gc_lease, how long the GC leader's lease
     * lasts unrenewed (default 5m, at least 1s; 0: this replica never leads) */
    uint64_t s3_access_interval_ms, s3_ttl_ms, s3_max_size_bytes, s3_gc_lease_ms;
    int s3_ttl_set;
    /* cluster: replicas sharing the misses (cluster/cluster.h); n_cluster_members 0: none.
     * Members are kept as given (normalised where used); cluster.secret_file fills
     * cluster_secret. */
    char **cluster_members;
    size_t n_cluster_members;
    char *cluster_self, *cluster_secret;
    uint64_t cluster_probe_interval_ms; /* cluster.probe_interval, default 2s */
};

#define CONFIG_WORKERS_MAX 64
/* The number of workers `workers: auto` means here: the CPUs of the process's affinity mask,
 * fewer when a cgroup CPU quota (cpu.max) allows less, at least 1 and at most
 * CONFIG_WORKERS_MAX. */
unsigned config_auto_workers(void);
/* c->workers resolved: the number given, or config_auto_workers() for auto. */
unsigned config_workers(const struct config *c);

/* Fills *c with the embedded defaults: listen 0.0.0.0:5000, storage "./regcache-data",
 * one upstream docker.io = https://registry-1.docker.io. */
void config_defaults(struct config *c);

/* Loads path over the defaults. Unknown keys, wrong types and bad values are errors. On error
 * returns -EINVAL (or -errno when the file cannot be read) and writes into err a message naming
 * file, line and key, e.g. "mirror.yml:7: cache.revalidate_after: invalid duration 'x' (use
 * e.g. 500ms, 30s, 5m, 24h, 7d)". A list given for upstreams replaces the default list. */
int config_load(const char *path, struct config *c, char *err, size_t errlen);

void config_free(struct config *c);

#endif
