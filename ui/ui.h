/* SPDX-License-Identifier: Apache-2.0 */
/* The status page: a self-contained HTML page (ui/page/, embedded at build time) at / and under
 * /ui/, and the JSON it reads under /ui/api/:
 *
 *   GET /ui/api/summary          hit ratio, bytes served from the cache and fetched upstream,
 *                                disk use, each upstream's state, pull budget and last
 *                                prefetch run, GC runs, prefetch runs
 *   GET /ui/api/repositories     cached and hosted repositories, filtered (q), sorted (sort:
 *                                name, bytes, last; order: asc, desc) and paged (offset, limit)
 *   GET /ui/api/repository       one repository's tags (upstream=NAME or hosted=1, name=REPO;
 *                                offset, limit), each with its digest, media type, platforms
 *                                (an index's), size and last pull and validation, and why it
 *                                is pinned (null: it is not)
 *   GET /ui/api/manifest         one stored manifest (digest=): an image's config and layers,
 *                                or an index's platforms
 *
 * It reads only the cache: the index on the db thread (db_call), manifests from the store on
 * that thread too, in-memory figures on the loop. A page view never causes an upstream
 * request. Every answer carries nosniff (REGISTRY_COMMON_HEADERS); the page its own strict
 * Content-Security-Policy (script and style from its own files only). Access (ui.access) is
 * decided by the caller (registry/api.c) before ui_handle. Loop thread only. */
#ifndef REGCACHE_UI_UI_H
#define REGCACHE_UI_UI_H

#include <uv.h>

#include "config/config.h"
#include "http/http.h"

struct ui;
struct db;
struct store;
struct upstream_client;

#define UI_PAGE_MAX 500        /* rows in one page of repositories or tags */
#define UI_BODY_MAX (8u << 20) /* one API answer at most */

/* *out stays NULL (and 0 is returned) when cfg->ui_access is off. */
int ui_new(uv_loop_t *loop, const struct config *cfg, struct db *db, struct store *store,
           struct upstream_client *up, struct ui **out);
void ui_free(struct ui *ui);

/* Is path the page's (/, /favicon.ico, /ui, or under /ui/)? ui may be NULL (then 0). */
int ui_path(const struct ui *ui, const char *path);

/* ui.access: push (only users who may push read it, when auth is on)? */
int ui_for_pushers(const struct ui *ui);

/* Answers a request for which ui_path said 1, once the caller may read it. */
void ui_handle(struct ui *ui, struct conn *c, struct http_request *req);

#endif
