/* SPDX-License-Identifier: Apache-2.0 */
/* Descriptors of recently served blobs. A blob hit needs an open descriptor; opening is a
 * filesystem call that may block, so it runs on the thread pool: two hops through it per hit
 * (open, then sendfile) cost more than the transfer itself for small blobs. Here the
 * descriptor of each blob opened lately is kept for OPEN_FILE_TTL_MS, and a hit within that
 * time takes a reference to it on the loop (held_fd: no dup(2) and close(2) per hit).
 *
 * They are kept in least-recently-used order (fd_lru.c): every operation is O(1), a hit makes
 * its blob the hottest, a new one beyond the capacity closes the coldest, and the timer closes
 * expired ones from the cold end only, so none of it grows with the number of blobs kept.
 *
 * Capacity: a quarter of the soft RLIMIT_NOFILE, at most OPEN_FILES_MAX, none under 64. The
 * other three quarters stay for client connections, upstream transfers, fills being written,
 * SQLite (a kept descriptor evicted while a response still sends it stays open until then).
 *
 * Stored blobs never change (a file's name is the digest of its bytes), so a kept descriptor
 * always reads the right bytes. A blob the GC removes is forgotten here at once; one removed
 * by another process (regcache gc) is released within 2 * OPEN_FILE_TTL_MS of its opening
 * (see fd_lru_expire), which bounds how long its disk space stays held. */
#include <errno.h>
#include <sys/resource.h>

#include "cache/impl.h"
#include "util/clock.h"
#include "util/epoch.h"

static uint64_t now_ms(void)
{
    return clock_mono_us() / 1000;
}

size_t open_files_capacity(uint64_t soft_limit)
{
    if (soft_limit < 64)
        return 0;
    uint64_t n = soft_limit / 4;
    return n > OPEN_FILES_MAX ? OPEN_FILES_MAX : (size_t)n;
}

static void on_sweep_timer(uv_timer_t *t)
{
    struct cache *c = t->data;
    if (c->open_files)
        fd_lru_expire(c->open_files, now_ms());
}

int open_files_init(struct cache *c)
{
    struct rlimit rl;
    uint64_t soft = 1024; /* the usual default, should the limit be unknown */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        soft = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    return (c->open_files = fd_lru_new(open_files_capacity(soft), OPEN_FILE_TTL_MS)) ? 0
                                                                                      : -ENOMEM;
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
    fd_lru_free(c->open_files);
    c->open_files = NULL;
}

int open_files_get(struct cache *c, const char *digest, uint64_t *size, struct held_fd **file)
{
    if (!c->open_files)
        return 0;
    if (!file)
        return fd_lru_get(c->open_files, digest, now_ms(), size) >= 0;
    return (*file = fd_lru_hold(c->open_files, digest, now_ms(), size)) != NULL;
}

void open_files_put(struct cache *c, const char *digest, struct held_fd *file, uint64_t size)
{
    if (!c->open_files || !fd_lru_capacity(c->open_files))
        return;
    uint64_t kept_size;
    uint64_t now = now_ms();
    if (fd_lru_get(c->open_files, digest, now, &kept_size) >= 0)
        return; /* kept already (and now the hottest) */
    fd_lru_put_held(c->open_files, digest, file, size, now);
}

void open_files_forget(struct cache *c, const char *digest)
{
    content_epoch_bump(); /* and what worker loops kept of it */
    if (c->open_files)
        fd_lru_forget(c->open_files, digest);
}

int cache_hot_file(struct cache *c, const char *digest, uint64_t *size, struct held_fd **file)
{
    return open_files_get(c, digest, size, file);
}

void cache_keep_file(struct cache *c, const char *digest, struct held_fd *file, uint64_t size)
{
    open_files_put(c, digest, file, size);
}
