/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/probes.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "registry/respond.h"
#include "store/store.h"
#include "util/log.h"

#define REASON_MAX (STORE_PATH_MAX + 256)
#define BODY_MAX (5 * REASON_MAX)
#define EXCLUDE_MAX 8
#define PROBE_HEADERS "Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n"

enum check_id { CHECK_PING, CHECK_STARTUP, CHECK_STORE, CHECK_INDEX, CHECK_SHUTDOWN, N_CHECKS };
static const char *const check_names[N_CHECKS] = {"ping", "startup", "store", "index", "shutdown"};

struct probes {
    uv_loop_t *loop;
    struct store *store;
    struct db *db;
    probes_change_fn on_change;
    void *ud;
    enum probes_phase phase;
    char startup[256];
    char background[256]; /* "": nothing runs in the background */
    char damaged[256];    /* "": the index passed its integrity check (or it has not run) */
    uv_timer_t timer;
    int timer_open;
    /* the store check on the thread pool: work_* are written there, read in after_check */
    uv_work_t work;
    int checking;
    int work_rc;
    char work_path[STORE_PATH_MAX];
    /* its last result (loop) */
    int store_rc;
    char store_path[STORE_PATH_MAX];
    uint64_t checked_at; /* uv_now of the last result; 0: none yet */
    int failing;         /* which check made the mirror not ready last time we looked, or -1 */
};

struct check_result {
    int failed;
    char reason[REASON_MAX];
};

/* Reasons are one line of text: control characters (from a path, say) become '?'. */
static void one_line(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

/* Fills r[] from what is known now; never touches the disk or the database. */
static void evaluate(const struct probes *p, struct check_result r[N_CHECKS])
{
    memset(r, 0, sizeof(struct check_result) * N_CHECKS);
    if (p->phase == PROBES_STARTING) {
        r[CHECK_STARTUP].failed = 1;
        snprintf(r[CHECK_STARTUP].reason, REASON_MAX, "%s", p->startup);
    }
    if (p->store_rc) {
        r[CHECK_STORE].failed = 1;
        snprintf(r[CHECK_STORE].reason, REASON_MAX, "cannot write %s: %s", p->store_path,
                 strerror(-p->store_rc));
    }
    if (p->damaged[0]) {
        r[CHECK_INDEX].failed = 1;
        snprintf(r[CHECK_INDEX].reason, REASON_MAX, "damaged: %s", p->damaged);
    } else if (p->db && db_write_status(p->db, r[CHECK_INDEX].reason, REASON_MAX)) {
        r[CHECK_INDEX].failed = 1;
    }
    if (!r[CHECK_STARTUP].failed && p->background[0])
        snprintf(r[CHECK_STARTUP].reason, REASON_MAX, "%s", p->background);
    if (p->phase == PROBES_DRAINING) {
        r[CHECK_SHUTDOWN].failed = 1;
        snprintf(r[CHECK_SHUTDOWN].reason, REASON_MAX,
                 "draining after a stop signal: finishing the responses in flight");
    }
    for (int i = 0; i < N_CHECKS; i++)
        one_line(r[i].reason);
}

/* Logs (and reports while ready) a change of the store and index checks. */
static void note_change(struct probes *p)
{
    struct check_result r[N_CHECKS];
    evaluate(p, r);
    int failing = r[CHECK_STORE].failed ? CHECK_STORE : r[CHECK_INDEX].failed ? CHECK_INDEX : -1;
    if (failing == p->failing)
        return;
    p->failing = failing;
    if (failing >= 0) {
        log_warn("readyz: not ready: %s failed: %s", check_names[failing], r[failing].reason);
    } else {
        log_info("readyz: the store and the index take writes again");
    }
    if (p->on_change && p->phase == PROBES_READY) {
        char reason[REASON_MAX + 32];
        if (failing >= 0)
            snprintf(reason, sizeof(reason), "%s: %s", check_names[failing], r[failing].reason);
        p->on_change(p->ud, failing >= 0 ? reason : NULL);
    }
}

/* ---- the store check ---- */

static void work_check(uv_work_t *w)
{
    struct probes *p = w->data;
    p->work_rc = store_check_writable(p->store, p->work_path, sizeof(p->work_path));
}

static void after_check(uv_work_t *w, int status)
{
    struct probes *p = w->data;
    p->checking = 0;
    if (status)
        return; /* cancelled */
    p->store_rc = p->work_rc;
    memcpy(p->store_path, p->work_path, sizeof(p->store_path));
    p->checked_at = uv_now(p->loop);
    if (!p->checked_at)
        p->checked_at = 1;
    note_change(p);
}

static void check_store(struct probes *p)
{
    if (p->checking || !p->store)
        return;
    p->checking = 1;
    p->work.data = p;
    if (uv_queue_work(p->loop, &p->work, work_check, after_check))
        p->checking = 0;
}

static void on_timer(uv_timer_t *t)
{
    struct probes *p = t->data;
    check_store(p);
    note_change(p); /* the index check */
}

int probes_new(uv_loop_t *loop, struct store *store, struct db *db, probes_change_fn on_change,
               void *ud, struct probes **out)
{
    struct probes *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->loop = loop;
    p->store = store;
    p->db = db;
    p->on_change = on_change;
    p->ud = ud;
    p->phase = PROBES_STARTING;
    p->failing = -1;
    snprintf(p->startup, sizeof(p->startup), "reconciling the store");
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->timer_open = 1;
    uv_timer_start(&p->timer, on_timer, PROBES_CHECK_MS, PROBES_CHECK_MS);
    check_store(p);
    *out = p;
    return 0;
}

void probes_set_phase(struct probes *p, enum probes_phase phase)
{
    p->phase = phase;
}

enum probes_phase probes_phase(const struct probes *p)
{
    return p->phase;
}

void probes_set_background(struct probes *p, const char *what)
{
    snprintf(p->background, sizeof(p->background), "%s", what ? what : "");
}

void probes_set_damaged(struct probes *p, const char *why)
{
    snprintf(p->damaged, sizeof(p->damaged), "%s", why && *why ? why : "quick_check failed");
    note_change(p);
}

void probes_set_startup(struct probes *p, const char *what)
{
    snprintf(p->startup, sizeof(p->startup), "%s", what);
}

int probes_ready(struct probes *p)
{
    struct check_result r[N_CHECKS];
    evaluate(p, r);
    for (int i = 0; i < N_CHECKS; i++)
        if (r[i].failed)
            return 0;
    return 1;
}

/* ---- answers ---- */

struct query {
    int verbose;
    size_t n_exclude;
    char exclude[EXCLUDE_MAX][32];
};

/* verbose (with or without a value) and exclude=NAME; names are kept only when made of the
 * characters check names use, so that nothing else is ever echoed. */
static void parse_query(const char *q, struct query *out)
{
    memset(out, 0, sizeof(*out));
    while (q && *q) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        if (klen == 7 && memcmp(q, "verbose", 7) == 0) {
            out->verbose = 1;
        } else if (klen == 7 && memcmp(q, "exclude", 7) == 0 && eq) {
            size_t vlen = len - klen - 1;
            const char *v = eq + 1;
            if (vlen && vlen < sizeof(out->exclude[0]) && out->n_exclude < EXCLUDE_MAX &&
                strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-_") >= vlen) {
                memcpy(out->exclude[out->n_exclude], v, vlen);
                out->exclude[out->n_exclude++][vlen] = '\0';
            }
        }
        q = end ? end + 1 : NULL;
    }
}

struct body {
    char data[BODY_MAX];
    size_t len;
};

static void add(struct body *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct body *b, const char *fmt, ...)
{
    if (b->len >= sizeof(b->data) - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, sizeof(b->data) - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len += (size_t)n < sizeof(b->data) - b->len ? (size_t)n : sizeof(b->data) - b->len - 1;
}

/* One probe's answer: checks [0, n) of r, in Kubernetes' format. */
static void answer(struct conn *c, int head, const char *probe, const struct check_result *r, int n,
                   const struct query *q)
{
    struct body *b = malloc(sizeof(*b));
    if (!b) {
        respond_error(c, head, 503, "UNAVAILABLE", "out of memory", NULL);
        return;
    }
    b->len = 0;
    int failed = 0, used[EXCLUDE_MAX] = {0};
    for (int i = 0; i < n; i++) {
        int excluded = 0;
        for (size_t k = 0; k < q->n_exclude && k < EXCLUDE_MAX; k++)
            if (strcmp(q->exclude[k], check_names[i]) == 0)
                excluded = used[k] = 1;
        if (excluded)
            add(b, "[+]%s excluded: ok\n", check_names[i]);
        else if (r[i].failed)
            add(b, "[-]%s failed: %s\n", check_names[i], r[i].reason);
        else if (r[i].reason[0])
            add(b, "[+]%s ok: %s\n", check_names[i], r[i].reason);
        else
            add(b, "[+]%s ok\n", check_names[i]);
        failed |= r[i].failed && !excluded;
    }
    for (size_t k = 0; k < q->n_exclude; k++)
        if (!used[k])
            add(b, "warn: some health checks cannot be excluded: no matches for \"%s\"\n",
                q->exclude[k]);
    if (!failed && !q->verbose) {
        b->len = 0;
        add(b, "ok\n");
    } else {
        add(b, "%s check %s\n", probe, failed ? "failed" : "passed");
    }
    conn_respond(c, failed ? 503 : 200, PROBE_HEADERS, b->data, b->len, head);
    free(b);
}

int probes_handle(struct probes *p, struct conn *c, struct http_request *req)
{
    int head = req->method == HTTP_METHOD_HEAD;
    int livez = strcmp(req->path, "/livez") == 0, readyz = strcmp(req->path, "/readyz") == 0;
    if (livez || readyz) {
        if (req->method == HTTP_METHOD_OTHER) {
            respond_error(c, 0, 405, "UNSUPPORTED", "probes answer GET and HEAD",
                          "Allow: GET, HEAD\r\n");
            return 1;
        }
        struct query q;
        parse_query(req->query, &q);
        struct check_result *r = malloc(sizeof(*r) * N_CHECKS);
        if (!r) {
            respond_error(c, head, 503, "UNAVAILABLE", "out of memory", NULL);
            return 1;
        }
        if (readyz) {
            if (!p->checking && uv_now(p->loop) - p->checked_at >= PROBES_FRESH_MS)
                check_store(p); /* for the next probe: this one gets the last result */
            evaluate(p, r);
            answer(c, head, "readyz", r, N_CHECKS, &q);
        } else {
            memset(r, 0, sizeof(*r)); /* ping: answering is the check */
            answer(c, head, "livez", r, 1, &q);
        }
        free(r);
        return 1;
    }
    if (p->phase == PROBES_READY)
        return 0;
    char msg[sizeof(p->startup) + 16];
    snprintf(msg, sizeof(msg), "%s%s", p->phase == PROBES_STARTING ? "starting: " : "",
             p->phase == PROBES_STARTING ? p->startup : "shutting down");
    respond_error(c, head, 503, "UNAVAILABLE", msg, "Retry-After: " PROBES_RETRY_AFTER "\r\n");
    return 1;
}

void probes_shutdown(struct probes *p)
{
    if (!p || !p->timer_open)
        return;
    p->timer_open = 0;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, NULL);
}

void probes_free(struct probes *p)
{
    free(p);
}
