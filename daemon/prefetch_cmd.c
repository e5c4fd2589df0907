/* SPDX-License-Identifier: Apache-2.0 */
/* `regcache prefetch REF... [-c FILE]`: asks the running daemon (prefetch/control.h) to run
 * prefetch once for the references, shows its progress on a terminal and its result. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bundle/progress.h"
#include "cache/pins.h"
#include "config/config.h"
#include "daemon/admin.h"
#include "prefetch/control.h"
#include "util/json.h"
#include "util/parse.h"

#define CURRENT_SHOWN 60 /* characters of the reference being fetched, on the progress line */

static void usage(void)
{
    fprintf(stderr, "usage: regcache prefetch REF... [-c FILE]\n");
}

struct figures {
    uint64_t references, tags, heads, gets, blobs, bytes, errors;
    char result[16], stopped[256], error[400], current[800];
};

static void parse_figures(const char *s, size_t len, struct figures *f)
{
    const char *keys[] = {"references", "tags", "heads", "gets", "blobs", "bytes", "errors"};
    uint64_t *vals[] = {&f->references, &f->tags,  &f->heads, &f->gets,
                        &f->blobs,      &f->bytes, &f->errors};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (json_get_uint(s, len, keys[i], vals[i]))
            *vals[i] = 0;
    if (json_get_string(s, len, "result", f->result, sizeof(f->result)) < 0)
        f->result[0] = '\0';
    if (json_get_string(s, len, "stopped", f->stopped, sizeof(f->stopped)) < 0)
        f->stopped[0] = '\0';
    if (json_get_string(s, len, "error", f->error, sizeof(f->error)) < 0)
        f->error[0] = '\0';
    if (json_get_string(s, len, "current", f->current, sizeof(f->current)) < 0)
        f->current[0] = '\0';
}

static int connect_daemon(const char *storage, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", storage, PREFETCH_SOCKET);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "the storage path %s is too long for the daemon's socket", storage);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        snprintf(err, errlen, "no daemon is running on %s (%s: %s)", storage, sa.sun_path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *s, size_t len)
{
    while (len) {
        ssize_t w = send(fd, s, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads the daemon's answer; the command's exit status. */
static int follow(FILE *in)
{
    struct progress pg;
    char what[CURRENT_SHOWN + 16];
    progress_start(&pg, "prefetch", "blobs");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int status = -1;
    while (status < 0 && (len = getline(&line, &cap, in)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        struct figures f;
        if (!strncmp(line, "step ", 5)) {
            parse_figures(line + 5, (size_t)len - 5, &f);
            snprintf(what, sizeof(what), "prefetch %.*s", CURRENT_SHOWN, f.current);
            pg.what = what;
            pg.items = f.blobs;
            pg.bytes = f.bytes;
            progress_draw(&pg, 0);
        } else if (!strncmp(line, "done ", 5)) {
            parse_figures(line + 5, (size_t)len - 5, &f);
            progress_clear(&pg);
            char b[32];
            printf("prefetch (command): %llu references, %llu tags checked, %llu HEADs, "
                   "%llu GETs, %llu blobs (%s), %llu errors; %s%s%s\n",
                   (unsigned long long)f.references, (unsigned long long)f.tags,
                   (unsigned long long)f.heads, (unsigned long long)f.gets,
                   (unsigned long long)f.blobs, format_size(f.bytes, b, sizeof(b)),
                   (unsigned long long)f.errors, f.result, f.stopped[0] ? ": stopped, " : "",
                   f.stopped);
            if (f.error[0])
                printf("first error: %s\n", f.error);
            status = strcmp(f.result, "ok") == 0 && !f.errors ? 0 : 1;
        } else if (!strncmp(line, "error bad ", 10)) {
            progress_clear(&pg);
            fprintf(stderr, "regcache: prefetch: %s\n", line + 10);
            status = 2;
        } else if (!strncmp(line, "error ", 6)) {
            progress_clear(&pg);
            fprintf(stderr, "regcache: prefetch: %s\n",
                    !strncmp(line + 6, "busy ", 5) ? line + 11 : line + 6);
            status = 1;
        }
    }
    free(line);
    if (status < 0) {
        progress_clear(&pg);
        fprintf(stderr, "regcache: prefetch: the daemon closed the connection before the run "
                        "ended\n");
        status = 1;
    }
    return status;
}

int prefetch_main(int argc, char **argv)
{
    const char *path = NULL;
    char **refs = calloc(argc ? (size_t)argc : 1, sizeof(char *));
    size_t n = 0;
    if (!refs)
        return 1;
    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            path = argv[++i];
        else if (argv[i][0] != '-')
            refs[n++] = argv[i];
        else {
            fprintf(stderr, "regcache: unexpected argument '%s'\n", argv[i]);
            usage();
            free(refs);
            return 2;
        }
    }
    if (!n || n > PREFETCH_CONTROL_REFS_MAX) {
        if (n)
            fprintf(stderr, "regcache: prefetch: at most %d references at once\n",
                    PREFETCH_CONTROL_REFS_MAX);
        usage();
        free(refs);
        return 2;
    }
    char err[1024];
    struct config cfg;
    config_defaults(&cfg);
    if (path && config_load(path, &cfg, err, sizeof(err))) {
        fprintf(stderr, "regcache: %s\n", err);
        config_free(&cfg);
        free(refs);
        return 2;
    }
    int status = 2;
    struct pin_ref ref;
    for (size_t i = 0; i < n; i++) /* the daemon checks them too; a clear message before */
        if (strlen(refs[i]) >= PREFETCH_CONTROL_LINE_MAX || strchr(refs[i], '\n') ||
            pins_parse_ref(&cfg, refs[i], 1, &ref, err, sizeof(err))) {
            if (strlen(refs[i]) >= PREFETCH_CONTROL_LINE_MAX || strchr(refs[i], '\n'))
                snprintf(err, sizeof(err), "'%.60s...': not a reference", refs[i]);
            fprintf(stderr, "regcache: prefetch: %s\n", err);
            goto out;
        }
    int fd = connect_daemon(cfg.storage, err, sizeof(err));
    if (fd < 0) {
        fprintf(stderr, "regcache: prefetch: %s\n", err);
        goto out;
    }
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++)
        bad = send_all(fd, refs[i], strlen(refs[i])) || send_all(fd, "\n", 1);
    if (bad || send_all(fd, "\n", 1)) {
        fprintf(stderr, "regcache: prefetch: cannot send the request: %s\n", strerror(errno));
        close(fd);
        status = 1;
        goto out;
    }
    FILE *in = fdopen(fd, "r");
    if (!in) {
        close(fd);
        status = 1;
        goto out;
    }
    status = follow(in);
    fclose(in);
out:
    config_free(&cfg);
    free(refs);
    return status;
}
