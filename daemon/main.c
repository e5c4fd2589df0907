/* SPDX-License-Identifier: Apache-2.0 */
/* regcache: a pull-through caching mirror for container registries. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bundle/bundle.h"
#include "config/config.h"
#include "daemon/admin.h"
#include "daemon/health.h"
#include "daemon/client_config.h"
#include "daemon/serve.h"
#include "migrate/convert_config.h"
#include "migrate/import_registry.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: regcache serve [-c FILE]          run the mirror in the foreground\n"
               "       regcache check-config -c FILE     validate a configuration file\n"
               "       regcache gc [-c FILE] [--dry-run] evict what the cache policy says\n"
               "       regcache gc --hosted [-c FILE] [--dry-run]  collect unreferenced hosted blobs\n"
               "       regcache verify [-c FILE]         re-hash every blob, remove corrupt ones\n"
               "       regcache stats [-c FILE] [--json] what the cache holds and how it does\n"
               "       regcache ls [-c FILE]             cached repositories and tags\n"
               "       regcache purge REF|UPSTREAM/REPOSITORY|DIGEST [--dry-run] [-c FILE]\n"
               "                                         remove an image, a repository or a digest\n"
               "       regcache prefetch REF... [-c FILE] warm references now, through the daemon\n"
               "       regcache s3-sync [-c FILE] [--dry-run] [--jobs N]\n"
               "                                         copy the store's blobs into the s3 bucket\n"
               "       regcache health [-c FILE] [--url URL] [--timeout 3s]\n"
               "                                         exit 0 when the mirror's /readyz is 200\n"
               "       regcache passwd FILE USER         set USER's password in an htpasswd file\n"
               "       regcache export REF... -o FILE [-c FILE] [--platform PLATFORM]...\n"
               "                [--since OLD.tar] [--mirror URL]  images into an offline bundle\n"
               "       regcache import FILE [-c FILE]    store an offline bundle's images\n"
               "       regcache import-registry DIR [-c FILE] [--upstream NAME] [--hosted GLOB]...\n"
               "                                         adopt a registry:2 storage directory\n"
               "       regcache convert-config FILE [-o OUT]  a registry:2 config.yml as mirror.yml\n"
               "       " CLIENT_CONFIG_USAGE "\n"
               "       regcache --version\n");
}

/* Loads -c FILE over the defaults; without -c (when allowed) the defaults stand. */
static int load_config(int argc, char **argv, int need_file, struct config *cfg,
                       const char *flag, int *flag_set)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            path = argv[++i];
        else if (flag && strcmp(argv[i], flag) == 0)
            *flag_set = 1;
        else {
            fprintf(stderr, "regcache: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    config_defaults(cfg);
    if (!path) {
        if (need_file) {
            usage(stderr);
            return 2;
        }
        return 0;
    }
    char err[1024];
    if (config_load(path, cfg, err, sizeof(err))) {
        fprintf(stderr, "regcache: %s\n", err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct config cfg;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("regcache %s\n", REGCACHE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0) {
        int r = load_config(argc - 2, argv + 2, 0, &cfg, NULL, NULL);
        if (r) {
            config_free(&cfg);
            return r;
        }
        r = serve(&cfg);
        config_free(&cfg);
        return r;
    }
    if (strcmp(cmd, "check-config") == 0) {
        int r = load_config(argc - 2, argv + 2, 1, &cfg, NULL, NULL);
        if (!r) {
            printf("%s: OK (listen %s, storage %s, %zu upstream%s)\n", cfg.source, cfg.listen,
                   cfg.storage, cfg.n_upstreams, cfg.n_upstreams == 1 ? "" : "s");
        }
        config_free(&cfg);
        return r;
    }
    if (strcmp(cmd, "export") == 0)
        return bundle_export_main(argc - 1, argv + 1);
    if (strcmp(cmd, "import") == 0)
        return bundle_import_main(argc - 1, argv + 1);
    if (strcmp(cmd, "health") == 0)
        return health_main(argc - 2, argv + 2);
    if (strcmp(cmd, "client-config") == 0)
        return client_config_main(argc - 2, argv + 2);
    if (strcmp(cmd, "passwd") == 0) {
        if (argc != 4) {
            usage(stderr);
            return 2;
        }
        return admin_passwd(argv[2], argv[3]);
    }
    if (strcmp(cmd, "purge") == 0)
        return purge_main(argc - 2, argv + 2);
    if (strcmp(cmd, "prefetch") == 0)
        return prefetch_main(argc - 2, argv + 2);
    if (strcmp(cmd, "s3-sync") == 0)
        return s3_sync_main(argc - 2, argv + 2);
    if (strcmp(cmd, "import-registry") == 0)
        return import_registry_main(argc - 2, argv + 2);
    if (strcmp(cmd, "convert-config") == 0)
        return convert_config_main(argc - 2, argv + 2);
    static const struct {
        const char *name, *flag;
    } admin[] = {{"gc", "--dry-run"}, {"verify", NULL}, {"stats", "--json"}, {"ls", NULL}};
    /* gc --hosted: taken out before the common option parsing */
    int hosted = 0;
    if (strcmp(cmd, "gc") == 0)
        for (int i = 2; i < argc; i++)
            if (strcmp(argv[i], "--hosted") == 0) {
                hosted = 1;
                for (int j = i; j + 1 < argc; j++)
                    argv[j] = argv[j + 1];
                argc--;
                break;
            }
    for (size_t i = 0; i < sizeof(admin) / sizeof(admin[0]); i++) {
        if (strcmp(cmd, admin[i].name) != 0)
            continue;
        int flag = 0;
        int r = load_config(argc - 2, argv + 2, 0, &cfg, admin[i].flag, &flag);
        if (!r) {
            switch (i) {
            case 0: r = admin_gc(&cfg, flag, hosted); break;
            case 1: r = admin_verify(&cfg); break;
            case 2: r = admin_stats(&cfg, flag); break;
            default: r = admin_ls(&cfg); break;
            }
        }
        config_free(&cfg);
        return r;
    }
    fprintf(stderr, "regcache: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
