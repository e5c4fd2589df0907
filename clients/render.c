/* SPDX-License-Identifier: Apache-2.0 */
/* What each client's files say, rendered from the mirror's upstreams. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clients/impl.h"

#define DOCKER_DAEMON_JSON "/etc/docker/daemon.json"
#define CONTAINERD_CERTS_D "/etc/containerd/certs.d"
#define PODMAN_DROP_IN "/etc/containers/registries.conf.d/50-regcache.conf"
#define K3S_REGISTRIES "/etc/rancher/k3s/registries.yaml"

int clients__ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < ' ' || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

int clients__put_quoted(struct buf *b, const char *s)
{
    int r = buf_append(b, "\"", 1);
    for (; !r && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            r = buf_printf(b, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            r = buf_printf(b, "\\u%04x", ch);
        else
            r = buf_append(b, s, 1);
    }
    return r ? r : buf_append(b, "\"", 1);
}

/* The same rule as the upstream client's: Docker Hub by name or by its registry's host. */
static int is_docker_hub(const struct config_upstream *u)
{
    return !strcmp(u->name, "docker.io") || strstr(u->url, "://registry-1.docker.io");
}

/* Clients take the first component of an image reference for a registry host only when it has
 * a dot or a port or is localhost (Docker's rule, which podman and containerd follow). */
static int host_like(const char *name)
{
    return strchr(name, '.') || strchr(name, ':') || !strcmp(name, "localhost");
}

/* A path component of a repository name cannot hold ':', so /v2/<name>/... cannot reach an
 * upstream named host:port; only ?ns= can. */
static int path_addressable(const char *name)
{
    return !strchr(name, ':');
}

static int note(struct clients_plan *plan, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int note(struct clients_plan *plan, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    return buf_printf(&plan->notes, "%s\n", line);
}

static struct clients_file *new_file(struct clients_plan *plan, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static struct clients_file *new_file(struct clients_plan *plan, const char *fmt, ...)
{
    if (plan->n_files >= CLIENTS_MAX_FILES)
        return NULL;
    struct clients_file *f = &plan->files[plan->n_files++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->path, sizeof(f->path), fmt, ap);
    va_end(ap);
    buf_init(&f->content, CLIENTS_OUT_MAX);
    return f;
}

/* "https://host:port/path" -> "host:port/path" */
static const char *without_scheme(const char *url)
{
    const char *p = strstr(url, "://");
    return p ? p + 3 : url;
}

static int header(struct buf *b, const struct clients_mirror *m, const char *what)
{
    return buf_printf(b, "# Written by regcache client-config: %s through the mirror %s.\n", what,
                      m->url);
}

/* ---- docker ---------------------------------------------------------------------------- */

/* Reads root/path into out; 0 with an empty out when there is no such file. */
static int read_existing(const char *root, const char *path, struct buf *out, char *err,
                         size_t errlen)
{
    char full[CLIENTS_PATH_MAX];
    snprintf(full, sizeof(full), "%s%s", root, path);
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", full, strerror(errno));
        return -errno;
    }
    int r = 0;
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            snprintf(err, errlen, "%s: %s", full, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (buf_append(out, chunk, (size_t)n)) {
            r = -EFBIG;
            snprintf(err, errlen, "%s: larger than %d bytes", full, CLIENTS_FILE_MAX);
            break;
        }
    }
    close(fd);
    return r;
}

static int render_docker(const struct clients_mirror *m, const struct config *cfg, const char *root,
                         struct clients_plan *plan, char *err, size_t errlen)
{
    const struct config_upstream *first = &cfg->upstreams[0];
    int hub_mirror = is_docker_hub(first);
    struct clients_file *f = new_file(plan, "%s", DOCKER_DAEMON_JSON);
    struct buf existing;
    buf_init(&existing, CLIENTS_FILE_MAX);
    char why[512];
    int r = read_existing(root, f->path, &existing, err, errlen);
    if (!r) {
        r = clients__docker_merge(existing.data, existing.len, m, hub_mirror, &f->content, why,
                                  sizeof(why));
        if (r)
            snprintf(err, errlen, "%s%s:%s (left as it is; fix it or move it away first)", root,
                     f->path, why);
    }
    buf_free(&existing);
    if (r)
        return r;
    if (hub_mirror) {
        r = note(plan,
                 "dockerd uses registry-mirrors for Docker Hub only: docker pull "
                 "alpine goes through %s to the upstream '%s'",
                 m->hostport, first->name);
    } else {
        r = note(plan,
                 "registry-mirrors left out: dockerd's mirror requests name no upstream, so "
                 "they reach the first one, '%s', which is not Docker Hub; list docker.io "
                 "first in the mirror's upstreams to mirror Docker Hub for dockerd",
                 first->name);
    }
    for (size_t i = 0; !r && i < cfg->n_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        if (hub_mirror && i == 0)
            continue;
        if (!path_addressable(u->name))
            r = note(plan,
                     "the upstream '%s' cannot be pulled by dockerd (a ':' in a name "
                     "is not a repository path)",
                     u->name);
        else
            r = note(plan,
                     "pull from '%s' through the mirror by naming it: docker pull "
                     "%s/%s/REPOSITORY:TAG",
                     u->name, m->hostport, u->name);
    }
    if (!r && (m->plain_http || m->skip_verify))
        r = note(plan, "insecure-registries lists %s: dockerd talks %s to it", m->hostport,
                 m->plain_http ? "plain http" : "TLS without checking its certificate");
    if (!r)
        r = note(plan, "then: systemctl reload docker (dockerd rereads registry-mirrors and "
                       "insecure-registries on SIGHUP), or systemctl restart docker");
    return r;
}

/* ---- containerd ------------------------------------------------------------------------ */

static int render_containerd(const struct clients_mirror *m, const struct config *cfg,
                             struct clients_plan *plan)
{
    int r = 0;
    for (size_t i = 0; !r && i < cfg->n_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        if (!host_like(u->name)) {
            r = note(plan,
                     "no hosts.toml for the upstream '%s': containerd reads a name "
                     "without a dot or port as a Docker Hub namespace",
                     u->name);
            continue;
        }
        /* the directory is the registry host of the image reference; containerd sends it to
         * the mirror as ?ns=, which selects the upstream of that name */
        struct clients_file *f = new_file(plan, "%s/%s/hosts.toml", CONTAINERD_CERTS_D, u->name);
        if (!f)
            return -ENOBUFS;
        struct buf *b = &f->content;
        char what[256];
        snprintf(what, sizeof(what), "pulls from %s go", u->name);
        r = header(b, m, what);
        if (!r)
            r = buf_printf(b, "server = ");
        if (!r)
            r = clients__put_quoted(b, u->url);
        if (!r)
            r = buf_printf(b, "\n\n[host.");
        if (!r)
            r = clients__put_quoted(b, m->url);
        if (!r)
            r = buf_printf(b, "]\n  capabilities = [\"pull\", \"resolve\"]\n");
        if (!r && m->skip_verify)
            r = buf_printf(b, "  skip_verify = true\n");
    }
    if (!r)
        r = note(plan,
                 "containerd's CRI (kubelet, crictl) reads these directories when its "
                 "config.toml sets config_path = \"%s\" (version 2: [plugins."
                 "\"io.containerd.grpc.v1.cri\".registry]; version 3: [plugins."
                 "\"io.containerd.cri.v1.images\".registry]); it rereads them for every "
                 "pull, a restart is needed only after changing config_path",
                 CONTAINERD_CERTS_D);
    if (!r)
        r = note(plan, "ctr and nerdctl take them with --hosts-dir %s", CONTAINERD_CERTS_D);
    return r;
}

/* ---- podman, skopeo, buildah, CRI-O ----------------------------------------------------- */

static int render_podman(const struct clients_mirror *m, const struct config *cfg,
                         struct clients_plan *plan)
{
    struct clients_file *f = new_file(plan, "%s", PODMAN_DROP_IN);
    struct buf *b = &f->content;
    int r = header(b, m, "pulls from these registries go");
    if (!r)
        r = buf_printf(b, "# A drop-in: registries.conf stays as it is; an entry here replaces "
                          "its entry of the same prefix.\n");
    for (size_t i = 0; !r && i < cfg->n_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        if (!host_like(u->name) || !path_addressable(u->name)) {
            r = note(plan, "no entry for the upstream '%s': %s", u->name,
                     !path_addressable(u->name)
                         ? "a ':' in a name is not a repository path"
                         : "a name without a dot or port is a Docker Hub namespace to podman");
            continue;
        }
        /* the mirror location's path names the upstream: /v2/<name>/<repository>, which
         * reaches it whatever its place in the list */
        char mirror_loc[CLIENTS_URL_MAX * 2];
        snprintf(mirror_loc, sizeof(mirror_loc), "%s/%s", m->hostport, u->name);
        r = buf_printf(b, "\n[[registry]]\nprefix = ");
        if (!r)
            r = clients__put_quoted(b, u->name);
        if (!r)
            r = buf_printf(b, "\nlocation = ");
        if (!r)
            r = clients__put_quoted(b, without_scheme(u->url));
        if (!r && !strncmp(u->url, "http://", 7))
            r = buf_printf(b, "\ninsecure = true");
        if (!r)
            r = buf_printf(b, "\n\n[[registry.mirror]]\nlocation = ");
        if (!r)
            r = clients__put_quoted(b, mirror_loc);
        if (!r && (m->plain_http || m->skip_verify))
            r = buf_printf(b, "\ninsecure = true");
        if (!r)
            r = buf_printf(b, "\n");
    }
    if (!r)
        r = note(plan, "podman, skopeo and buildah read the drop-in on every run; CRI-O "
                       "on systemctl reload crio");
    return r;
}

/* ---- k3s --------------------------------------------------------------------------------- */

static int render_k3s(const struct clients_mirror *m, const struct config *cfg,
                      struct clients_plan *plan)
{
    struct clients_file *f = new_file(plan, "%s", K3S_REGISTRIES);
    struct buf *b = &f->content;
    int r = header(b, m, "pulls from these registries go");
    /* k3s's containerd sends ?ns=<registry> to an endpoint: no rewrite is needed */
    if (!r)
        r = buf_printf(b, "mirrors:\n");
    size_t listed = 0;
    for (size_t i = 0; !r && i < cfg->n_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        if (!host_like(u->name)) {
            r = note(plan,
                     "no mirror for the upstream '%s': k3s reads a name without a dot or "
                     "port as a Docker Hub namespace",
                     u->name);
            continue;
        }
        listed++;
        r = buf_printf(b, "  ");
        if (!r)
            r = clients__put_quoted(b, u->name);
        if (!r)
            r = buf_printf(b, ":\n    endpoint:\n      - ");
        if (!r)
            r = clients__put_quoted(b, m->url);
        if (!r)
            r = buf_printf(b, "\n");
    }
    if (!r && !listed)
        r = buf_printf(b, "  {}\n");
    if (!r && m->skip_verify) {
        r = buf_printf(b, "configs:\n  ");
        if (!r)
            r = clients__put_quoted(b, m->hostport);
        if (!r)
            r = buf_printf(b, ":\n    tls:\n      insecure_skip_verify: true\n");
    }
    if (!r)
        r = note(plan, "k3s reads registries.yaml when it starts: systemctl restart k3s (or "
                       "k3s-agent on agents)");
    return r;
}

int clients_plan_build(enum clients_kind kind, const struct clients_mirror *m,
                       const struct config *cfg, const char *root, struct clients_plan *plan,
                       char *err, size_t errlen)
{
    memset(plan, 0, sizeof(*plan));
    buf_init(&plan->notes, 64 * 1024);
    if (errlen)
        err[0] = '\0';
    root = root ? root : "";
    if (cfg->n_upstreams == 0) {
        snprintf(err, errlen, "the mirror's configuration has no upstreams");
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        if (!clients__ascii(cfg->upstreams[i].url)) {
            snprintf(err, errlen,
                     "upstream '%s': its url has non-ASCII characters, which "
                     "client configuration files cannot carry",
                     cfg->upstreams[i].name);
            return -EINVAL;
        }
    int r = 0;
    switch (kind) {
    case CLIENTS_DOCKER:
        r = render_docker(m, cfg, root, plan, err, errlen);
        break;
    case CLIENTS_CONTAINERD:
        r = render_containerd(m, cfg, plan);
        break;
    case CLIENTS_PODMAN:
        r = render_podman(m, cfg, plan);
        break;
    case CLIENTS_K3S:
        r = render_k3s(m, cfg, plan);
        break;
    }
    if (r && !err[0])
        snprintf(err, errlen, "%s", r == -ENOMEM ? "out of memory" : "a file grew too large");
    if (r) {
        clients_plan_free(plan);
        buf_init(&plan->notes, 64 * 1024);
    }
    return r;
}

void clients_plan_free(struct clients_plan *plan)
{
    for (size_t i = 0; i < plan->n_files; i++)
        buf_free(&plan->files[i].content);
    plan->n_files = 0;
    buf_free(&plan->notes);
}
