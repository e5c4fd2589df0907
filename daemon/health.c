/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/health.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/parse.h"

#define HEALTH_URL_MAX 2048
#define HEALTH_BODY_MAX (32 * 1024) /* a failing /readyz lists five checks; the rest is dropped */
#define HEALTH_REASON_MAX 1024      /* of the one line printed */
#define HEALTH_DEFAULT_TIMEOUT_MS 3000

static void usage(FILE *f)
{
    fprintf(f, "usage: regcache health [-c FILE] [--url URL] [--timeout DURATION]\n");
}

int health_url(const struct config *cfg, char *url, size_t size)
{
    char host[256];
    int port;
    if (parse_listen(cfg->listen, host, &port))
        return -EINVAL;
    const char *target = host;
    if (!strcmp(host, "0.0.0.0") || !host[0])
        target = "127.0.0.1";
    else if (!strcmp(host, "::") || !strcmp(host, "::0"))
        target = "::1";
    int v6 = strchr(target, ':') != NULL;
    int n = snprintf(url, size, "%s://%s%s%s:%d/readyz", cfg->tls_cert ? "https" : "http",
                     v6 ? "[" : "", target, v6 ? "]" : "", port);
    return n < 0 || (size_t)n >= size ? -EINVAL : 0;
}

struct body {
    char data[HEALTH_BODY_MAX + 1];
    size_t len;
};

static size_t on_body(char *ptr, size_t size, size_t n, void *ud)
{
    struct body *b = ud;
    size_t len = size * n, room = HEALTH_BODY_MAX - b->len;
    memcpy(b->data + b->len, ptr, len < room ? len : room);
    b->len += len < room ? len : room;
    return len; /* past the cap: read on, keep nothing */
}

/* Appends s to out (a reason of at most HEALTH_REASON_MAX), control characters as '?'. */
static void append(char *out, const char *s, size_t len)
{
    size_t at = strlen(out);
    for (size_t i = 0; i < len && at + 1 < HEALTH_REASON_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        out[at++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[at] = '\0';
}

/* The failed checks of a /readyz body ("[-]store failed: cannot write ...") joined by "; "; an
 * answer without any (not a probe's) leaves reason empty. */
static void failed_checks(const struct body *b, char *reason)
{
    reason[0] = '\0';
    const char *p = b->data, *end = b->data + b->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        if (line_end - p > 3 && !memcmp(p, "[-]", 3)) {
            if (reason[0])
                append(reason, "; ", 2);
            append(reason, p + 3, (size_t)(line_end - p - 3));
        }
        p = nl ? nl + 1 : end;
    }
}

/* Asks url once; prints the verdict; 0 healthy, 1 not. */
static int probe(const char *url, long timeout_ms)
{
    CURL *e = curl_easy_init();
    struct body *b = calloc(1, sizeof(*b));
    char *reason = calloc(1, HEALTH_REASON_MAX);
    char errbuf[CURL_ERROR_SIZE] = "";
    int rc = 1;
    if (!e || !b || !reason) {
        printf("unhealthy: %s: out of memory\n", url);
        goto out;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*"); /* an http_proxy in the container is not ours */
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* it talks to itself: whether it answers is the question, not who it is */
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "regcache-health/" REGCACHE_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cr = curl_easy_perform(e);
    if (cr != CURLE_OK) {
        append(reason, errbuf[0] ? errbuf : curl_easy_strerror(cr),
               strlen(errbuf[0] ? errbuf : curl_easy_strerror(cr)));
        printf("unhealthy: %s: %s\n", url, reason);
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (status == 200) {
        printf("healthy: %s answered 200\n", url);
        rc = 0;
        goto out;
    }
    failed_checks(b, reason);
    printf("unhealthy: %s answered %ld%s%s\n", url, status, reason[0] ? ": " : "", reason);
out:
    fflush(stdout);
    free(reason);
    free(b);
    if (e)
        curl_easy_cleanup(e);
    return rc;
}

/* A URL given with --url: http(s) only; one without a path asks /readyz. */
static int url_from_arg(const char *arg, char *url, size_t size)
{
    const char *rest = !strncmp(arg, "http://", 7)    ? arg + 7
                       : !strncmp(arg, "https://", 8) ? arg + 8
                                                      : NULL;
    if (!rest || !rest[0] || rest[0] == '/')
        return -EINVAL;
    int n = snprintf(url, size, "%s%s", arg, strchr(rest, '/') ? "" : "/readyz");
    return n < 0 || (size_t)n >= size ? -EINVAL : 0;
}

int health_main(int argc, char **argv)
{
    const char *path = NULL, *url_arg = NULL;
    uint64_t timeout_ms = HEALTH_DEFAULT_TIMEOUT_MS;
    for (int i = 0; i < argc; i++) {
        int has_value = i + 1 < argc;
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && has_value) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--url") && has_value) {
            url_arg = argv[++i];
        } else if (!strcmp(argv[i], "--timeout") && has_value) {
            if (parse_duration_ms(argv[++i], &timeout_ms) || !timeout_ms) {
                fprintf(stderr,
                        "regcache health: --timeout: invalid duration '%s' (use e.g. "
                        "500ms, 3s, 1m)\n",
                        argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "regcache health: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char url[HEALTH_URL_MAX];
    if (url_arg) {
        if (url_from_arg(url_arg, url, sizeof(url))) {
            fprintf(stderr, "regcache health: --url: '%s' is not an http:// or https:// URL\n",
                    url_arg);
            return 2;
        }
    } else {
        struct config cfg;
        config_defaults(&cfg);
        char err[1024];
        int r = 0;
        if (path && config_load(path, &cfg, err, sizeof(err))) {
            fprintf(stderr, "regcache: %s\n", err);
            r = 1;
        } else if (health_url(&cfg, url, sizeof(url))) {
            printf("unhealthy: cannot make a URL of listen '%s'\n", cfg.listen);
            r = 1;
        }
        config_free(&cfg);
        if (r)
            return r;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        printf("unhealthy: %s: libcurl did not initialise\n", url);
        return 1;
    }
    if (timeout_ms > 3600 * 1000)
        timeout_ms = 3600 * 1000;
    int rc = probe(url, (long)timeout_ms);
    curl_global_cleanup();
    return rc;
}
