/* SPDX-License-Identifier: Apache-2.0 */
/* Client configuration for a mirror: what docker, containerd, podman (and skopeo, buildah,
 * CRI-O) and k3s need so that their pulls from every configured upstream go through regcache,
 * rendered from the mirror's own config, and written into place with backups.
 *
 * Each client addresses an upstream the way regcache routes it (registry/route.c): containerd
 * and k3s (containerd inside) send ?ns=<registry host>, podman's mirror location carries the
 * upstream name as a path prefix (/v2/<upstream>/<repo>), dockerd mirrors only Docker Hub and
 * names no upstream at all, so its requests reach the first upstream. */
#ifndef REGCACHE_CLIENTS_CLIENTS_H
#define REGCACHE_CLIENTS_CLIENTS_H

#include <stddef.h>
#include <stdio.h>

#include "config/config.h"
#include "util/buf.h"

#define CLIENTS_URL_MAX 512            /* the mirror's URL, and every host[:port] taken from one */
#define CLIENTS_PATH_MAX 4096          /* a file's path on the target system, root included */
#define CLIENTS_FILE_MAX (1024 * 1024) /* the most we read of an existing file */
/* the most we write: daemon.json re-indented can grow past what was read */
#define CLIENTS_OUT_MAX (4 * CLIENTS_FILE_MAX)
#define CLIENTS_MAX_FILES (CONFIG_MAX_UPSTREAMS + 1)

enum clients_kind { CLIENTS_DOCKER, CLIENTS_CONTAINERD, CLIENTS_PODMAN, CLIENTS_K3S };

/* "docker", "containerd", "podman" or "k3s" -> *kind; -EINVAL for any other name. */
int clients_kind_parse(const char *name, enum clients_kind *kind);

struct clients_mirror {
    char url[CLIENTS_URL_MAX];      /* scheme://host[:port], lowercase scheme, no trailing '/' */
    char hostport[CLIENTS_URL_MAX]; /* host[:port]: how clients name the mirror as a registry */
    int plain_http;                 /* http:// */
    int skip_verify;                /* https:// whose certificate clients cannot verify */
};

/* Validates a --mirror value: http:// or https://, a host name, IPv4 or [IPv6] address, an
 * optional port, nothing after it but one '/' (registries answer at /v2/ of the host). On error
 * writes a message naming the value into err and returns -EINVAL. */
int clients_mirror_parse(const char *url, struct clients_mirror *m, char *err, size_t errlen);

struct clients_file {
    char path[CLIENTS_PATH_MAX]; /* on the target system, e.g. /etc/docker/daemon.json */
    struct buf content;
};

struct clients_plan {
    struct clients_file files[CLIENTS_MAX_FILES];
    size_t n_files;
    struct buf notes; /* what the operator has to know or do next: lines for stderr */
};

/* Renders kind's files for every upstream of cfg, reached through m. root ("" or NULL: /) is
 * where existing files are read from: docker's daemon.json is merged into, every other key of
 * it kept. On error (an existing daemon.json that does not parse, a value no client can take)
 * writes a message naming the file or upstream into err and returns -EINVAL; the plan is
 * then empty but must still be freed. */
int clients_plan_build(enum clients_kind kind, const struct clients_mirror *m,
                       const struct config *cfg, const char *root, struct clients_plan *plan,
                       char *err, size_t errlen);
void clients_plan_free(struct clients_plan *plan);

/* Writes every file of plan under root ("" or NULL: /), creating directories as needed. A file
 * whose content is already the planned one is left alone; a file that is replaced is first
 * kept next to itself as FILE.regcache-backup-<UTC time>; each file is replaced atomically
 * (a temporary file renamed over it). Says what it did with each file on report. Returns 0, or
 * -errno with err naming the file that could not be written (files before it stay written). */
int clients_plan_write(const struct clients_plan *plan, const char *root, FILE *report, char *err,
                       size_t errlen);

#endif
