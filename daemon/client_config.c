/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/client_config.h"

#include <stdio.h>
#include <string.h>

#include "clients/clients.h"
#include "config/config.h"

static int usage_error(const char *fmt, const char *arg)
{
    fputs("regcache client-config: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\nusage: " CLIENT_CONFIG_USAGE "\n", stderr);
    return 2;
}

static void print_notes(const struct buf *notes)
{
    const char *p = notes->data, *end = notes->data + notes->len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        fprintf(stderr, "regcache: %.*s\n", (int)len, p);
        p = nl ? nl + 1 : NULL;
    }
}

int client_config_main(int argc, char **argv)
{
    const char *client = NULL, *mirror_url = NULL, *config_path = NULL, *root = NULL;
    int write = 0, skip_verify = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--mirror") && has_value)
            mirror_url = argv[++i];
        else if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && has_value)
            config_path = argv[++i];
        else if (!strcmp(a, "--root") && has_value)
            root = argv[++i];
        else if (!strcmp(a, "--write"))
            write = 1;
        else if (!strcmp(a, "--skip-verify"))
            skip_verify = 1;
        else if (a[0] != '-' && !client)
            client = a;
        else
            return usage_error("unexpected argument '%s'", a);
    }
    enum clients_kind kind;
    if (!client)
        return usage_error("%sname a client", "");
    if (clients_kind_parse(client, &kind))
        return usage_error("unknown client '%s' (docker, containerd, podman or k3s)", client);
    if (!mirror_url)
        return usage_error("%s--mirror URL is required (e.g. http://mirror.example.org:5000)", "");
    if (root && !root[0])
        return usage_error("%s--root needs a directory", "");
    char err[2048] = "";
    struct clients_mirror mirror;
    if (clients_mirror_parse(mirror_url, &mirror, err, sizeof(err)))
        return usage_error("%s", err);
    if (skip_verify && mirror.plain_http)
        return usage_error("%s--skip-verify is for an https:// mirror", "");
    mirror.skip_verify = skip_verify;

    struct config cfg;
    config_defaults(&cfg);
    if (config_path && config_load(config_path, &cfg, err, sizeof(err))) {
        fprintf(stderr, "regcache: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    struct clients_plan plan;
    int status = 0;
    if (clients_plan_build(kind, &mirror, &cfg, root, &plan, err, sizeof(err))) {
        fprintf(stderr, "regcache: %s\n", err);
        status = 1;
    } else if (write) {
        if (clients_plan_write(&plan, root, stderr, err, sizeof(err))) {
            fprintf(stderr, "regcache: %s\n", err);
            status = 1;
        } else {
            print_notes(&plan.notes);
        }
    } else {
        for (size_t i = 0; i < plan.n_files; i++) {
            const struct clients_file *f = &plan.files[i];
            /* daemon.json is printed bare, so that it can be redirected into the file */
            if (kind != CLIENTS_DOCKER)
                printf("%s# %s%s\n", i ? "\n" : "", root ? root : "", f->path);
            fwrite(f->content.data, 1, f->content.len, stdout);
        }
        for (size_t i = 0; i < plan.n_files; i++)
            fprintf(stderr, "regcache: printed %s%s; --write puts it in place\n", root ? root : "",
                    plan.files[i].path);
        print_notes(&plan.notes);
        if (fflush(stdout)) {
            perror("regcache: stdout");
            status = 1;
        }
    }
    clients_plan_free(&plan);
    config_free(&cfg);
    return status;
}
