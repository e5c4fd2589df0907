/* SPDX-License-Identifier: Apache-2.0 */
/* Requests to upstream registries: libcurl's multi interface driven by the libuv loop.
 *
 * Authentication is handled here and invisible to callers: Bearer token challenges (realm,
 * service, scope; anonymous or with the configured credentials; tokens cached per upstream and
 * scope until they expire, refetched on insufficient_scope / invalid_token) and Basic.
 * Challenges are learnt only from the upstream's own origin, and a realm gets the credentials
 * only when it is http(s) without userinfo, https when the upstream is, and not on a loopback
 * or link-local address unless the upstream itself is (checked on the URL and on every
 * resolved address before connecting).
 *
 * Redirects are followed for blobs only (their digest is verified), at most 5, under the same
 * rules as realms (and never https to http), without credentials or challenges once they leave
 * the upstream's origin. A manifest, tags, referrers, probe or token answer that redirects is
 * refused. Header values with control characters or bytes outside visible ASCII, and a
 * Retry-After that is neither delay-seconds nor an HTTP-date, are ignored (never passed on).
 *
 * A request (or its token fetch) whose answer has not begun within timeouts.first_byte ends
 * with status 0 and an error, so a hung upstream costs a bounded wait; every request but a
 * blob's also ends so once timeouts.total_small has passed since it started, so a drip cannot
 * hold it. A blob body over limits.max_blob_size (announced, or counted as it arrives) is cut.
 *
 * Requests the mirror refuses itself (a realm, a redirect, a blob too large) end in on_done
 * with status 0, result -EPERM and the reason in resp->error; the outcome hook sees the
 * upstream's own status then (or nothing, when the refusal came before any answer). */
#ifndef REGCACHE_UPSTREAM_UPSTREAM_H
#define REGCACHE_UPSTREAM_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"

struct upstream_client; /* one curl multi handle for all upstreams */
struct upstream;        /* one configured upstream registry */
struct upstream_req;

enum upstream_method { UPSTREAM_GET = 0, UPSTREAM_HEAD = 1 };

struct upstream_response {
    long status;              /* 0 when no response arrived (transport error) */
    const char *content_type; /* NULL when absent; all strings valid during the callback */
    const char *digest;       /* Docker-Content-Digest */
    int64_t content_length;   /* -1 when unknown */
    const char *retry_after;
    const char *link;
    const char *error; /* transport error description, NULL when a response arrived */
    const char *content_range; /* Content-Range (of a 206), NULL when absent */
    const char *etag;          /* ETag, NULL when absent */
    const char *last_modified; /* Last-Modified, NULL when absent */
};

/* on_headers: the final response's status and headers, once, before any on_data.
 * on_data: body bytes; return 0, UPSTREAM_PAUSE (the same bytes are delivered again after
 * upstream_req_resume) or UPSTREAM_ABORT.
 * on_done: always called exactly once unless the request was cancelled; resp->status is 0 and
 * resp->error set when the transfer failed; result is 0 when the body arrived complete.
 * on_headers and on_data run inside libcurl: they must not start, resume or cancel requests.
 * on_done may. After on_done the request is freed. */
struct upstream_callbacks {
    void (*on_headers)(void *ud, const struct upstream_response *resp);
    int (*on_data)(void *ud, const char *data, size_t len);
    void (*on_done)(void *ud, const struct upstream_response *resp, int result);
};
#define UPSTREAM_PAUSE 1
#define UPSTREAM_ABORT (-1)

/* The pull budget an upstream announced in one response, as Docker Hub does:
 * `ratelimit-limit: 100;w=21600`, `ratelimit-remaining: 76;w=21600`, `docker-ratelimit-source`.
 * Numbers are -1 where the header was absent or unreadable. */
struct upstream_ratelimit {
    long status;
    int64_t limit, remaining, window_s;
    const char *source;      /* NULL when absent; strings valid during the callback */
    const char *retry_after; /* NULL when absent */
};
typedef void (*upstream_ratelimit_fn)(void *ud, struct upstream *u,
                                      const struct upstream_ratelimit *rl);

int upstream_client_new(uv_loop_t *loop, const struct config *cfg, struct upstream_client **out);
/* Cancels what is in flight (no callbacks run) and closes the loop handles; the upstreams stay
 * readable until upstream_client_free, which is for after the loop has stopped. */
void upstream_client_shutdown(struct upstream_client *c);
void upstream_client_free(struct upstream_client *c);

/* fn sees every upstream response that carries rate-limit headers or is a 429, once its
 * headers are in. It runs inside libcurl: under the same rules as on_headers. */
void upstream_client_on_ratelimit(struct upstream_client *c, upstream_ratelimit_fn fn, void *ud);

/* fn sees how every request ended, once, before its on_done: resp->status 0 (with resp->error)
 * when no answer came (connection refused or reset, timeouts.first_byte passed, a token
 * service that did not answer). Not called for a refusal before any answer (see above). Runs
 * on the loop, outside libcurl. */
typedef void (*upstream_outcome_fn)(void *ud, struct upstream *u,
                                    const struct upstream_response *resp);
void upstream_client_on_outcome(struct upstream_client *c, upstream_outcome_fn fn, void *ud);

struct upstream *upstream_get(struct upstream_client *c, size_t index);
struct upstream *upstream_find(struct upstream_client *c, const char *name);
size_t upstream_count(const struct upstream_client *c);
const char *upstream_name(const struct upstream *u);
/* True for Docker Hub, where one-component names live under library/. */
int upstream_is_docker_hub(const struct upstream *u);

/* Starts method on <url>/v2/<repo>/<what>, e.g. what = "manifests/latest". accept may be NULL.
 * query (may be NULL) is appended after '?'. Returns NULL only when out of memory. */
struct upstream_req *upstream_request(struct upstream *u, enum upstream_method method,
                                      const char *repo, const char *what, const char *query,
                                      const char *accept, const struct upstream_callbacks *cb,
                                      void *ud);
/* What upstream_request_with adds to a request. range_from > 0 asks for the bytes from there on
 * (Range: bytes=N-), with If-Range: if_range when that is not NULL (an entity tag or a
 * Last-Modified date the upstream gave; copied). The answer may still be a 200 of everything:
 * the caller checks the status and resp->content_range. */
struct upstream_req_options {
    uint64_t range_from;
    const char *if_range;
    const char *via; /* the Via chain to carry instead of upstream_client_set_via's (copied) */
};
/* upstream_request with options (opt may be NULL). */
struct upstream_req *upstream_request_with(struct upstream *u, enum upstream_method method,
                                           const char *repo, const char *what, const char *query,
                                           const char *accept,
                                           const struct upstream_req_options *opt,
                                           const struct upstream_callbacks *cb, void *ud);
/* GET <url>/v2/ without credentials: whether the upstream answers at all (a 401 is an answer).
 * Costs nothing against a pull budget. Returns NULL only when out of memory. */
struct upstream_req *upstream_probe(struct upstream *u, const struct upstream_callbacks *cb,
                                    void *ud);
void upstream_req_resume(struct upstream_req *r);

/* ---- endpoints and blob sources ----
 * An upstream's endpoints (upstreams[].urls) are tried in order, invisibly to callers: a
 * request that gets no answer at all from one (connection refused or reset, timeouts.first_byte
 * passed) goes on at the next, and that endpoint is skipped (asked last) until a probe of its
 * own finds it answering. A request fails only when every endpoint gave no answer; tokens and
 * the learnt challenge are shared by the endpoints.
 *
 * A blob source (upstreams[].blob_sources) is an upstream of its own (credentials, tokens,
 * endpoint health, repositories under its repository_prefix), reached only through its primary:
 * never listed by upstream_get, never seen by the outcome and rate-limit hooks. */
size_t upstream_source_count(const struct upstream *u);
struct upstream *upstream_source(const struct upstream *u, size_t i);
/* 1 when the source is asked before its primary (order: before). */
int upstream_source_before(const struct upstream *src);
/* The source's configured name (logs, metrics). */
const char *upstream_source_name(const struct upstream *src);
/* How many of u's endpoints are not known to be down: with two or more, a request that has not
 * been answered yet may still be answered by the next one. */
size_t upstream_endpoints_up(const struct upstream *u);
/* 0 while every endpoint of u is down (gave no answer lately, no probe has found it back). */
int upstream_available(const struct upstream *u);
/* How often something down is asked whether it is back: once per cache.revalidate_after, so
 * that a tag is current again within one revalidate_after, but within 1 s..30 s. */
uint64_t upstream_probe_interval_ms(uint64_t revalidate_after_ms);
/* Stops the request; no callback runs after this. Not from inside on_headers/on_data. */
void upstream_req_cancel(struct upstream_req *r);

/* ---- Via and parents ----
 * Every request carries Via (RFC 9110 section 7.6.3): the chain of the client request it is
 * made for, when that came through other proxies (a child mirror), then "1.1 <instance>". The
 * chain is set with upstream_client_set_via while a client request is being handled (NULL
 * after: the pointer is only borrowed), and held by each request started meanwhile; requests
 * started from a request's on_done carry that request's chain. Work that goes on later (a
 * blob fill after a disk lookup) keeps its chain (upstream_via_now) and hands it back with
 * upstream_set_via_now or upstream_req_options.via. Without an instance no Via is sent.
 *
 * An upstream configured as a parent (another regcache, upstreams[].parent) is sent
 * ?ns=<upstream name> with every request, so that it picks its upstream of that name. */
#define UPSTREAM_VIA_MAX 2304 /* the longest chain carried (HTTP_MAX_VIA and a few separators) */
int upstream_client_set_instance(struct upstream_client *c, const char *id);
void upstream_client_set_via(struct upstream_client *c, const char *chain);
/* The chain requests started now carry (NULL: none), through one of the client's upstreams. */
const char *upstream_via_now(const struct upstream *u);
void upstream_set_via_now(struct upstream *u, const char *chain);
/* 1 when u is a parent regcache (upstreams[].parent). */
int upstream_is_parent(const struct upstream *u);

/* Another module's transfer on the same curl multi (the S3 store's requests): one loop, one
 * connection cache, one set of timers. The caller owns the easy handle and sets every option
 * but CURLOPT_PRIVATE, which is this struct's. done runs once, on the loop, after the handle
 * has left the multi: with curl's result, or CURLE_ABORTED_BY_CALLBACK when the client shuts
 * down first. upstream_easy_remove takes a transfer out before its end; done is not called. */
struct upstream_easy {
    unsigned char not_ours; /* set by upstream_easy_add: not one of the client's own requests */
    void *easy;            /* CURL * */
    void (*done)(struct upstream_easy *e, int curl_result);
    struct upstream_client *client;
    struct upstream_easy *next, *prev;
};
int upstream_easy_add(struct upstream_client *c, struct upstream_easy *e);
void upstream_easy_remove(struct upstream_easy *e);
/* ---- cluster members ----
 * With a cluster section, every upstream has one peer per other member: the member asked for
 * that upstream's content (requests carry ?ns=<upstream name> and an X-Regcache-Peer header
 * signed with the cluster secret; no credentials). A peer has an endpoint of its own (down
 * when it gave no answer, until its probe finds it back) and is seen by no hook. */
/* u's peer for member (an index of cluster.members); NULL for this member itself. */
struct upstream *upstream_peer(const struct upstream *u, size_t member);
int upstream_is_peer(const struct upstream *u);
size_t upstream_peer_member(const struct upstream *u);
/* The configured upstream a peer or blob source stands for; u itself for a primary. */
struct upstream *upstream_primary(struct upstream *u);

/* The loop the client runs on. */
uv_loop_t *upstream_client_loop(const struct upstream_client *c);

#endif
