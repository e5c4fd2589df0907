/* SPDX-License-Identifier: Apache-2.0 */
/* Forgetting in memory what another process purged. `regcache purge` and `regcache gc` change
 * the index and the store from outside the daemon, which keeps tags, manifests (their bytes
 * too) and descriptors of lately served blobs in memory: without this it would go on serving
 * what was removed. They journal what they removed in the index (db_purge); the daemon reads
 * the journal every DB_PURGE_POLL_MS on the thread pool, forgets every tag and digest it names,
 * and records in the index how far it has applied it, which the command waits for.
 *
 * A response in progress keeps its descriptor, so its bytes stay readable after the file's
 * removal; the next request for what was purged asks the upstream. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/impl.h"
#include "db/db.h"
#include "metrics/metrics.h"
#include "util/clock.h"
#include "util/log.h"

#define PURGE_ROWS_PER_POLL 10000

struct purge_poll {
    struct cache *c;
    int64_t applied, last;
    int rc;
    char **tags; /* upstream KEY_SEP repo KEY_SEP tag */
    size_t n_tags;
    char **digests;
    uint64_t bytes;
    size_t n_digests;
};

static int push(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(**v));
    if (!nv)
        return -1;
    *v = nv;
    if (!(nv[*n] = strdup(s)))
        return -1;
    (*n)++;
    return 0;
}

static void on_row(void *ud, const struct db_purge_row *row)
{
    struct purge_poll *p = ud;
    if (row->digest) {
        if (!push(&p->digests, &p->n_digests, row->digest))
            p->bytes += row->size;
        return;
    }
    char key[TAG_KEY_MAX];
    snprintf(key, sizeof(key), "%s" KEY_SEP "%s" KEY_SEP "%s", row->upstream, row->repo,
             row->tag);
    push(&p->tags, &p->n_tags, key);
}

static void poll_work(struct db *db, void *ud)
{
    struct purge_poll *p = ud;
    uint64_t now = clock_wall_ms();
    db_purge_reader(db, (long)getpid(), p->applied, now);
    p->rc = db_purges_since(db, p->applied, PURGE_ROWS_PER_POLL, on_row, p, &p->last);
}

static void free_poll(struct purge_poll *p)
{
    for (size_t i = 0; i < p->n_tags; i++)
        free(p->tags[i]);
    for (size_t i = 0; i < p->n_digests; i++)
        free(p->digests[i]);
    free(p->tags);
    free(p->digests);
    free(p);
}

static void purge_poll(struct cache *c);

static void poll_done(void *ud)
{
    struct purge_poll *p = ud;
    struct cache *c = p->c;
    c->purge_polling = 0;
    int more = 0;
    if (!c->stopping && p->rc == 0) {
        for (size_t i = 0; i < p->n_tags; i++) {
            index_purge_tag(c, p->tags[i]);
            l2_forget_tag(c, p->tags[i]); /* and its record in the S3 tier's bucket */
        }
        if (p->n_digests) {
            index_forget_digests(c, p->digests, p->n_digests);
            referrers_forget_subjects(c, p->digests, p->n_digests);
            for (size_t i = 0; i < p->n_digests; i++)
                open_files_forget(c, p->digests[i]);
            c->stored_bytes = c->stored_bytes > p->bytes ? c->stored_bytes - p->bytes : 0;
            c->stored_files =
                c->stored_files > p->n_digests ? c->stored_files - p->n_digests : 0;
        }
        metrics_purged(p->n_digests, p->bytes);
        if (p->n_tags || p->n_digests)
            log_info("purge: forgot %zu tags and %zu digests removed by another process",
                     p->n_tags, p->n_digests);
        more = p->last > c->purge_applied; /* acknowledge at once, and read on */
        c->purge_applied = p->last;
    }
    free_poll(p);
    if (more)
        purge_poll(c);
}

static void purge_poll(struct cache *c)
{
    if (c->stopping || c->purge_polling)
        return;
    struct purge_poll *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->c = c;
    p->applied = c->purge_applied;
    if (db_call(c->db, poll_work, poll_done, p)) {
        free(p);
        return;
    }
    c->purge_polling = 1;
}

static void on_purge_timer(uv_timer_t *t)
{
    purge_poll(t->data);
}

void purge_watch_init(struct cache *c)
{
    c->purge_applied = db_purge_seq(c->db); /* before the index is loaded: it holds the rest */
}

void purge_watch_start(struct cache *c)
{
    uv_timer_init(c->loop, &c->purge_timer);
    c->purge_timer.data = c;
    uv_timer_start(&c->purge_timer, on_purge_timer, 0, DB_PURGE_POLL_MS);
    uv_unref((uv_handle_t *)&c->purge_timer);
    c->purge_timer_on = 1;
}

static void forget_reader(struct db *db, void *ud)
{
    (void)ud;
    db_purge_reader(db, (long)getpid(), -1, 0);
}

static void nothing(void *ud)
{
    (void)ud;
}

void purge_watch_stop(struct cache *c)
{
    if (!c->purge_timer_on)
        return;
    c->purge_timer_on = 0;
    uv_timer_stop(&c->purge_timer);
    uv_close((uv_handle_t *)&c->purge_timer, NULL);
    db_call(c->db, forget_reader, nothing, NULL);
}
