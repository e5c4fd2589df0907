/* SPDX-License-Identifier: Apache-2.0 */
#include "prefetch/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/json.h"
#include "util/log.h"

#define STEP_QUEUE_MAX (64u << 10) /* progress lines are skipped while this much is unsent */

struct client {
    uv_pipe_t pipe;
    struct prefetch_control *ctl;
    struct client *next;
    char in[PREFETCH_CONTROL_LINE_MAX];
    size_t in_len;
    char *refs[PREFETCH_CONTROL_REFS_MAX];
    size_t n_refs;
    int running, done, closing;
};

struct prefetch_control {
    uv_pipe_t server;
    struct prefetch *p;
    struct client *clients;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev;
    ino_t ino;
    int open_handles;
};

char *prefetch_result_json(const struct prefetch_result *r)
{
    struct buf b;
    buf_init(&b, 16 * 1024);
    int bad = buf_printf(&b, "{\"started_ms\":%llu,\"finished_ms\":%llu,\"trigger\":",
                         (unsigned long long)r->started_ms, (unsigned long long)r->finished_ms) ||
              json_put_string(&b, r->trigger ? r->trigger : "") ||
              buf_printf(&b,
                         ",\"references\":%u,\"tags\":%u,\"heads\":%u,\"gets\":%u,\"blobs\":%u,"
                         "\"bytes\":%llu,\"errors\":%u,\"result\":",
                         r->references, r->tags, r->heads, r->gets, r->blobs,
                         (unsigned long long)r->bytes, r->errors) ||
              json_put_string(&b, r->outcome ? r->outcome : "") ||
              buf_printf(&b, ",\"stopped\":") || json_put_string(&b, r->stopped) ||
              buf_printf(&b, ",\"error\":") || json_put_string(&b, r->error) ||
              buf_printf(&b, ",\"current\":") || json_put_string(&b, r->current) ||
              buf_printf(&b, "}") || buf_terminate(&b);
    if (bad) {
        buf_free(&b);
        return NULL;
    }
    return b.data; /* the buffer's own allocation, NUL-terminated */
}

static void on_handle_closed(uv_handle_t *h)
{
    struct prefetch_control *ctl = h->data;
    if (--ctl->open_handles == 0)
        free(ctl);
}

static void on_client_closed(uv_handle_t *h)
{
    struct client *c = h->data;
    struct prefetch_control *ctl = c->ctl;
    free(c);
    if (--ctl->open_handles == 0)
        free(ctl);
}

static void client_close(struct client *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->running && !c->done)
        prefetch_forget(c->ctl->p, c);
    for (struct client **at = &c->ctl->clients; *at; at = &(*at)->next)
        if (*at == c) {
            *at = c->next;
            break;
        }
    for (size_t i = 0; i < c->n_refs; i++)
        free(c->refs[i]);
    c->n_refs = 0;
    uv_close((uv_handle_t *)&c->pipe, on_client_closed);
}

struct write_req {
    uv_write_t req;
    struct client *c;
    int last; /* close the connection once written */
    char data[];
};

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    if ((status || w->last) && !w->c->closing)
        client_close(w->c);
    free(w);
}

static void send_line(struct client *c, const char *kind, const char *text, int last)
{
    if (c->closing)
        return;
    size_t kl = strlen(kind), tl = strlen(text);
    struct write_req *w = malloc(sizeof(*w) + kl + tl + 2);
    if (!w) {
        client_close(c);
        return;
    }
    memcpy(w->data, kind, kl);
    w->data[kl] = ' ';
    memcpy(w->data + kl + 1, text, tl);
    w->data[kl + 1 + tl] = '\n';
    w->c = c;
    w->last = last;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)(kl + tl + 2));
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, on_written)) {
        free(w);
        client_close(c);
    }
}

static void send_result(struct client *c, const char *kind, const struct prefetch_result *r,
                        int last)
{
    char *json = prefetch_result_json(r);
    if (!json) {
        client_close(c);
        return;
    }
    send_line(c, kind, json, last);
    free(json);
}

static void on_step(void *ud, const struct prefetch_result *r)
{
    struct client *c = ud;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) < STEP_QUEUE_MAX)
        send_result(c, "step", r, 0);
}

static void on_done(void *ud, const struct prefetch_result *r)
{
    struct client *c = ud;
    c->done = 1;
    send_result(c, "done", r, 1);
}

static void start_run(struct client *c)
{
    char err[1024];
    if (!c->n_refs) {
        send_line(c, "error", "bad no reference given", 1);
        return;
    }
    int rc = prefetch_run(c->ctl->p, c->refs, c->n_refs, on_step, on_done, c, err, sizeof(err));
    for (size_t i = 0; i < c->n_refs; i++)
        free(c->refs[i]);
    c->n_refs = 0;
    if (rc) {
        char line[1100];
        snprintf(line, sizeof(line), "%s %s", rc == -EINVAL ? "bad" : "busy", err);
        send_line(c, "error", line, 1);
        return;
    }
    c->running = 1;
}

/* Takes the complete lines read; 1 once the request is over (answered or closed). */
static int take_lines(struct client *c)
{
    char *nl;
    while ((nl = memchr(c->in, '\n', c->in_len))) {
        size_t l = (size_t)(nl - c->in);
        if (l == 0) {
            start_run(c);
            return 1;
        }
        if (c->n_refs == PREFETCH_CONTROL_REFS_MAX) {
            send_line(c, "error", "bad too many references in one request", 1);
            return 1;
        }
        if (!(c->refs[c->n_refs] = strndup(c->in, l))) {
            client_close(c);
            return 1;
        }
        c->n_refs++;
        memmove(c->in, nl + 1, c->in_len - l - 1);
        c->in_len -= l + 1;
    }
    if (c->in_len == sizeof(c->in)) {
        send_line(c, "error", "bad a reference is too long", 1);
        return 1;
    }
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct client *c = h->data;
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof(c->in) - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct client *c = s->data;
    if (n < 0) {
        client_close(c); /* the command went away: its run goes on, unreported */
        return;
    }
    c->in_len += (size_t)n;
    if (c->running || c->done) /* anything after the request: read only to see it go away */
        c->in_len = 0;
    else if (take_lines(c))
        c->in_len = 0;
}

/* Only the daemon's own user or root. */
static int peer_allowed(uv_pipe_t *pipe)
{
    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (uv_fileno((uv_handle_t *)pipe, &fd) || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len))
        return 0;
    return cred.uid == 0 || cred.uid == getuid();
}

static void on_connection(uv_stream_t *server, int status)
{
    struct prefetch_control *ctl = server->data;
    if (status)
        return;
    struct client *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->ctl = ctl;
    uv_pipe_init(server->loop, &c->pipe, 0);
    c->pipe.data = c;
    ctl->open_handles++;
    c->next = ctl->clients;
    ctl->clients = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe)) {
        client_close(c);
        return;
    }
    if (!peer_allowed(&c->pipe)) {
        log_warn("prefetch: refused a connection to %s from another user", ctl->path);
        client_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

int prefetch_control_new(uv_loop_t *loop, const char *storage, struct prefetch *p,
                         struct prefetch_control **out)
{
    *out = NULL;
    struct prefetch_control *ctl = calloc(1, sizeof(*ctl));
    if (!ctl)
        return -ENOMEM;
    char tmp[sizeof(ctl->path)];
    int n = snprintf(ctl->path, sizeof(ctl->path), "%s/%s", storage, PREFETCH_SOCKET);
    int m = snprintf(tmp, sizeof(tmp), "%s/.%s.%ld", storage, PREFETCH_SOCKET, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(ctl->path) || m < 0 || (size_t)m >= sizeof(tmp)) {
        log_warn("prefetch: the storage path %s is too long for a UNIX socket; `regcache "
                 "prefetch` cannot reach this daemon",
                 storage);
        free(ctl);
        return -ENAMETOOLONG;
    }
    ctl->p = p;
    uv_pipe_init(loop, &ctl->server, 0);
    ctl->server.data = ctl;
    ctl->open_handles = 1;
    /* bound under a name of its own, made 0600, then moved in place: never reachable by
     * another user, even for a moment */
    unlink(tmp);
    struct stat st;
    int rc = uv_pipe_bind(&ctl->server, tmp);
    if (!rc && chmod(tmp, 0600))
        rc = -errno;
    if (!rc && rename(tmp, ctl->path))
        rc = -errno;
    if (!rc && stat(ctl->path, &st))
        rc = -errno;
    if (!rc)
        rc = uv_listen((uv_stream_t *)&ctl->server, 16, on_connection);
    if (rc) {
        log_warn("prefetch: cannot listen on %s (%s); `regcache prefetch` cannot reach this "
                 "daemon",
                 ctl->path, uv_strerror(rc));
        unlink(tmp);
        uv_close((uv_handle_t *)&ctl->server, on_handle_closed);
        return rc;
    }
    ctl->dev = st.st_dev;
    ctl->ino = st.st_ino;
    log_debug("prefetch: `regcache prefetch` is heard on %s", ctl->path);
    *out = ctl;
    return 0;
}

void prefetch_control_close(struct prefetch_control *ctl)
{
    if (!ctl)
        return;
    struct stat st;
    if (stat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
        unlink(ctl->path); /* still ours (another daemon on this store may have taken it) */
    while (ctl->clients)
        client_close(ctl->clients);
    uv_close((uv_handle_t *)&ctl->server, on_handle_closed);
}
