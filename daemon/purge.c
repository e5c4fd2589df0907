/* SPDX-License-Identifier: Apache-2.0 */
/* `regcache purge`: the command around cache/purge.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cache/pins.h"
#include "cache/purge.h"
#include "config/config.h"
#include "daemon/admin.h"
#include "util/clock.h"
#include "util/parse.h"

#define PURGE_WAIT_MS 10000 /* for running daemons to stop serving what went */
#define PURGE_LAGGING_MAX 8

/* A digest the pin or prefetch lists reach is never purged. */
static int purge_pinned(void *ud, const char *digest)
{
    return ud && pin_set_reason(ud, digest) != NULL;
}

void admin_wait_daemons(struct db *db, int64_t seq)
{
    long pids[PURGE_LAGGING_MAX];
    size_t n = purge_wait(db, seq, PURGE_WAIT_MS, pids, PURGE_LAGGING_MAX);
    for (size_t i = 0; i < n && i < PURGE_LAGGING_MAX; i++)
        fprintf(stderr,
                "regcache: warning: the daemon with pid %ld has not confirmed within %d s; it "
                "forgets what went when it next reads the index\n",
                pids[i], PURGE_WAIT_MS / 1000);
}

static void usage(void)
{
    fprintf(stderr, "usage: regcache purge REF|UPSTREAM/REPOSITORY|DIGEST [--dry-run] [-c FILE]\n");
}

int purge_main(int argc, char **argv)
{
    const char *path = NULL, *target = NULL;
    int dry_run = 0;
    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--dry-run"))
            dry_run = 1;
        else if (argv[i][0] != '-' && !target)
            target = argv[i];
        else {
            fprintf(stderr, "regcache: unexpected argument '%s'\n", argv[i]);
            usage();
            return 2;
        }
    }
    if (!target) {
        usage();
        return 2;
    }
    char err[1024];
    struct purge_target t;
    if (purge_parse(target, &t, err, sizeof(err))) {
        fprintf(stderr, "regcache: purge: %s\n", err);
        return 2;
    }
    struct config cfg;
    config_defaults(&cfg);
    if (path && config_load(path, &cfg, err, sizeof(err))) {
        fprintf(stderr, "regcache: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    struct admin_handles h;
    if (admin_open(&cfg, &h)) {
        config_free(&cfg);
        return 1;
    }
    struct pin_set *pinned;
    if (admin_pins(&cfg, &h, &pinned)) {
        admin_close(&h);
        config_free(&cfg);
        return 1;
    }
    struct purge_options o = {&t, dry_run, clock_wall_ms(), purge_pinned, pinned};
    struct purge_report r;
    int rc = purge_run(h.db, h.store, &o, &r, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "regcache: purge: %s\n", err);
        pin_set_free(pinned);
        admin_close(&h);
        config_free(&cfg);
        return 1;
    }
    const char *verb = dry_run ? "would remove" : "removed";
    char b[32];
    for (size_t i = 0; i < r.n_tags; i++)
        printf("%s tag %s\n", verb, r.tags[i]);
    for (size_t i = 0; i < r.n_files; i++)
        printf("%s %s %s (%s)\n", verb, r.files[i].manifest ? "manifest" : "blob",
               r.files[i].digest, format_size(r.files[i].size, b, sizeof(b)));
    for (size_t i = 0; i < r.kept_pinned; i++)
        printf("kept %s (pinned)\n", r.pinned[i]);
    printf("purge%s: %s %zu tag%s and %zu file%s, %s %s; %zu shared with other cached content "
           "kept\n",
           dry_run ? " --dry-run" : "", verb, r.n_tags, r.n_tags == 1 ? "" : "s", r.n_files,
           r.n_files == 1 ? "" : "s", format_size(r.bytes, b, sizeof(b)),
           dry_run ? "would be freed" : "freed", r.kept_shared);
    if (!dry_run && r.seq)
        admin_wait_daemons(h.db, r.seq);
    purge_report_free(&r);
    pin_set_free(pinned);
    admin_close(&h);
    config_free(&cfg);
    return 0;
}
