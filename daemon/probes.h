/* SPDX-License-Identifier: Apache-2.0 */
/* Health probes in Kubernetes' style, and the gate that keeps requests away from a registry that
 * is not there yet (start-up) or any more (drain). Answered before authentication, whatever the
 * auth policy, for GET and HEAD:
 *
 *   /livez   200 whenever the process answers: during start-up and drain too.
 *   /readyz  200 when the mirror serves (also while the store is walked in the background
 *            after an unclean stop: what it serves meanwhile is correct); 503 while starting,
 *            during the drain after SIGTERM, while the store or the index cannot be written,
 *            and once the index failed its integrity check (run after serving starts). An
 *            upstream being down never fails it: the mirror serves what it holds through an
 *            outage, which is the point of a mirror.
 *
 * Checks, in order: ping, startup, store, index, shutdown. `?verbose` lists each one as
 * "[+]name ok" or "[-]name failed: reason", then "readyz check passed" or "readyz check
 * failed"; a failing /readyz always lists them. `?exclude=name` (repeatable) leaves a check
 * out ("[+]name excluded: ok"). Bodies are text/plain. /healthz (registry/api.c) is unchanged:
 * "ok" once the registry answers.
 *
 * The store check creates, writes, fsyncs and removes a small file in <root>/tmp on the thread
 * pool, every PROBES_CHECK_MS and whenever /readyz finds the last result older than
 * PROBES_FRESH_MS; /readyz answers from the last result and never waits on the disk. The index
 * check reads how the write queue's last batch ended (db_write_status): no statement runs.
 *
 * Until the phase is PROBES_READY, and from PROBES_DRAINING on, every other request is answered
 * 503 UNAVAILABLE with Retry-After ("starting: reconciling the store", "shutting down"), so that
 * nothing reaches a half-made cache or one being taken apart.
 *
 * The drain: the listener keeps accepting after SIGTERM (http_server_drain), so that a load
 * balancer's or kubelet's probe is told "not ready" rather than refused; each new connection
 * gets one answer (a probe's, or the 503) and is closed, and only the responses already in
 * flight are waited for.
 *
 * Loop thread. */
#ifndef REGCACHE_DAEMON_PROBES_H
#define REGCACHE_DAEMON_PROBES_H

#include <uv.h>

#include "http/http.h"

#define PROBES_CHECK_MS 5000   /* the store is written this often */
#define PROBES_FRESH_MS 1000   /* a /readyz finding an older result starts a new check */
#define PROBES_RETRY_AFTER "5" /* seconds, in the 503 of the gate */

struct store;
struct db;
struct probes;

enum probes_phase { PROBES_STARTING, PROBES_READY, PROBES_DRAINING };

/* Called when readiness changes while PROBES_READY because of a check (store or index):
 * reason says what failed, NULL when ready again. */
typedef void (*probes_change_fn)(void *ud, const char *reason);

/* Starts in PROBES_STARTING and runs the first store check. store and db stay the caller's;
 * on_change may be NULL. */
int probes_new(uv_loop_t *loop, struct store *store, struct db *db, probes_change_fn on_change,
               void *ud, struct probes **out);
void probes_set_phase(struct probes *p, enum probes_phase phase);
enum probes_phase probes_phase(const struct probes *p);
/* What start-up is doing, for the startup check and the gate's message (copied; the default
 * is "reconciling the store"). */
void probes_set_startup(struct probes *p, const char *what);
/* What runs in the background while serving (the walk of the store after an unclean stop):
 * shown on the startup check's line, which passes ("[+]startup ok: what"); NULL: nothing. */
void probes_set_background(struct probes *p, const char *what);
/* The index failed its integrity check: the index check fails with why from now on. */
void probes_set_damaged(struct probes *p, const char *why);


/* Answers /livez and /readyz, and every request while the phase is not PROBES_READY: 1 when it
 * answered, 0 when the request is the registry's. */
int probes_handle(struct probes *p, struct conn *c, struct http_request *req);

/* 1 when /readyz would answer 200 now (from the last results). */
int probes_ready(struct probes *p);

/* Stops the periodic check (at shutdown); one still on the thread pool finishes on its own. */
void probes_shutdown(struct probes *p);
/* After the loop ran (nothing of it is still queued). NULL is fine. */
void probes_free(struct probes *p);

#endif
