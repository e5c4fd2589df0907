/* SPDX-License-Identifier: Apache-2.0 */
/* Descriptors of recently served blobs. A blob hit needs an open descriptor; opening is a
 * filesystem call that may block, so it runs on the thread pool: two hops through it per hit
 * (open, then sendfile) cost more than the transfer itself for small blobs. Here the
 * descriptor of each blob opened lately is kept for OPEN_FILE_TTL_MS, and a hit within that
 * time gets a dup() of it on the loop.
 *
 * Stored blobs never change (a file's name is the digest of its bytes), so a kept descriptor
 * always reads the right bytes. A blob the GC removes is forgotten here at once; one removed
 * by another process (regcache gc) is released within OPEN_FILE_TTL_MS, which bounds how long
 * its disk space stays held. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/impl.h"
#include "util/clock.h"

struct open_file {
    int fd;
    uint64_t size;
    uint64_t opened_ms;
};

static int close_entry(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    struct open_file *f = value;
    close(f->fd);
    free(f);
    return 0;
}

struct sweep {
    uint64_t now_ms;
    char **expired;
    size_t n;
};

static int find_expired(const char *key, void *value, void *ud)
{
    struct sweep *s = ud;
    const struct open_file *f = value;
    if (s->now_ms - f->opened_ms >= OPEN_FILE_TTL_MS && (s->expired[s->n] = strdup(key)))
        s->n++;
    return 0;
}

/* Closes the descriptors kept longer than OPEN_FILE_TTL_MS. */
static void sweep(struct cache *c)
{
    size_t n = map_count(c->open_files);
    if (!n)
        return;
    struct sweep s = {clock_mono_us() / 1000, calloc(n, sizeof(char *)), 0};
    if (!s.expired)
        return;
    map_each(c->open_files, find_expired, &s);
    for (size_t i = 0; i < s.n; i++) {
        open_files_forget(c, s.expired[i]);
        free(s.expired[i]);
    }
    free(s.expired);
}

static void on_sweep_timer(uv_timer_t *t)
{
    sweep(t->data);
}

int open_files_init(struct cache *c)
{
    return (c->open_files = map_new()) ? 0 : -ENOMEM;
}

void open_files_start(struct cache *c)
{
    uv_timer_init(c->loop, &c->open_files_timer);
    c->open_files_timer.data = c;
    uv_timer_start(&c->open_files_timer, on_sweep_timer, OPEN_FILE_TTL_MS, OPEN_FILE_TTL_MS);
    uv_unref((uv_handle_t *)&c->open_files_timer); /* never what keeps the loop running */
    c->open_files_timer_on = 1;
}

void open_files_stop(struct cache *c)
{
    if (c->open_files_timer_on) {
        c->open_files_timer_on = 0;
        uv_timer_stop(&c->open_files_timer);
        uv_close((uv_handle_t *)&c->open_files_timer, NULL);
    }
    if (c->open_files) {
        map_each(c->open_files, close_entry, NULL);
        map_free(c->open_files);
        c->open_files = NULL;
    }
}

int open_files_get(struct cache *c, const char *digest, uint64_t *size, int *fd)
{
    struct open_file *f = c->open_files ? map_get(c->open_files, digest) : NULL;
    if (!f || clock_mono_us() / 1000 - f->opened_ms >= OPEN_FILE_TTL_MS)
        return 0;
    if (fd && (*fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0)) < 0)
        return 0; /* out of descriptors: the caller opens the file the slow way */
    *size = f->size;
    return 1;
}

void open_files_put(struct cache *c, const char *digest, int fd, uint64_t size)
{
    if (!c->open_files || map_get(c->open_files, digest))
        return;
    if (map_count(c->open_files) >= OPEN_FILES_MAX) {
        sweep(c);
        if (map_count(c->open_files) >= OPEN_FILES_MAX)
            return;
    }
    struct open_file *f = calloc(1, sizeof(*f));
    if (!f)
        return;
    f->size = size;
    f->opened_ms = clock_mono_us() / 1000;
    if ((f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        free(f);
        return;
    }
    if (map_put(c->open_files, digest, f) == MAP_NOMEM)
        close_entry(digest, f, NULL);
}

void open_files_forget(struct cache *c, const char *digest)
{
    struct open_file *f = c->open_files ? map_del(c->open_files, digest) : NULL;
    if (f)
        close_entry(digest, f, NULL);
}
