/* SPDX-License-Identifier: Apache-2.0 */
#include "registry/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/token.h"
#include "cluster/cluster.h"
#include "cluster/peer_auth.h"
#include "cluster/relay.h"
#include "cache/cache.h"
#include "hosted/hosted.h"
#include "metrics/metrics.h"
#include "registry/catalog.h"
#include "registry/impl.h"
#include "registry/cors.h"
#include "registry/respond.h"
#include "registry/route.h"
#include "registry/worker.h"
#include "registry/via.h"
#include "rules/rules.h"
#include "ui/ui.h"
#include "upstream/upstream.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/shared.h"

/* The user a member's own request (X-Regcache-Peer, verified, no X-Regcache-Relay) is handled
 * as: it may pull, never push, and its misses are answered by this replica itself (told by the
 * pointer). A request a member relays for a client (X-Regcache-Relay, signed with it) is
 * handled as the user it names, by this replica itself (cluster/relay.h). */
static const char PEER_USER[] = "cluster-peer";

/* One request waiting for the cache. */
struct pending {
    struct registry *r;
    struct upstream *u;
    char repo[REPO_MAX];
    struct conn *conn;
    struct http_request *req;
    int head;
    char ns[256];
    char name[REF_NAME_MAX + 1]; /* the repository as the client named it */
    char digest[REF_DIGEST_MAX + 1];
    char reference[REF_DIGEST_MAX + 1]; /* a manifest's tag or digest, as asked */
    int manifest; /* waiting for the upstream to confirm a manifest (else a blob) by digest */
};

struct registry *registry_new(struct cache *cache, struct upstream_client *up,
                              struct auth *auth, struct hosted *hosted)
{
    struct registry *r = calloc(1, sizeof(*r));
    if (r) {
        r->cache = cache;
        r->up = up;
        r->auth = auth;
        r->hosted = hosted;
    }
    return r;
}

void registry_set_ui(struct registry *r, struct ui *ui)
{
    r->ui = ui;
}

void registry_set_cors(struct registry *r, struct cors *cors)
{
    r->cors = cors;
}

void registry_set_cluster(struct registry *r, struct cluster *cl)
{
    r->cluster = cl;
}

void registry_set_rules(struct registry *r, const struct rules *rules)
{
    r->rules = rules;
}

void registry_set_instance(struct registry *r, const char *id)
{
    snprintf(r->instance, sizeof(r->instance), "%s", id ? id : "");
}

void registry_free(struct registry *r)
{
    if (r)
        registry_free_workers(r);
    free(r);
}

void registry_write_error(struct conn *c, int status, void *ud)
{
    (void)ud;
    const char *msg = status == 408   ? "request not received in time"
                      : status == 414 ? "request target too long"
                      : status == 431 ? "request header fields too large"
                      : status == 503 ? "the mirror is busy: too many requests waiting or "
                                        "too many response bytes held for slow clients"
                                      : "malformed HTTP request";
    const char *code = status == 503 ? "UNAVAILABLE" : "UNSUPPORTED";
    respond_error(c, 0, status, code, msg, status == 503 ? "Retry-After: 1\r\n" : NULL);
}

static void ns_header(char *out, size_t len, const char *ns)
{
    if (ns[0])
        snprintf(out, len, "OCI-Namespace: %s\r\n", ns);
    else
        out[0] = '\0';
}

static struct pending *pending_new(struct conn *c, struct http_request *req, const char *ns)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->conn = c;
    p->req = req;
    p->head = req->method == HTTP_METHOD_HEAD;
    snprintf(p->ns, sizeof(p->ns), "%s", ns);
    conn_ref(c);
    return p;
}

/* Ends a pending request; returns 0 when the client has gone and nothing should be sent. */
static int pending_alive(struct pending *p)
{
    if (conn_alive(p->conn))
        return 1;
    conn_unref(p->conn);
    free(p);
    return 0;
}

static void pending_done(struct pending *p)
{
    conn_unref(p->conn);
    free(p);
}

static void respond_cache_error(struct pending *p, const struct cache_error *e)
{
    char extra[400] = "", nsh[300];
    ns_header(nsh, sizeof(nsh), p->ns);
    if (e->retry_after[0])
        snprintf(extra, sizeof(extra), "Retry-After: %s\r\n", e->retry_after);
    strncat(extra, nsh, sizeof(extra) - strlen(extra) - 1);
    respond_error(p->conn, p->head, e->status, e->code, e->message, extra);
}

/* ---- manifests ---- */

static void on_manifest(void *ud, const struct manifest_answer *a)
{
    struct pending *p = ud;
    if (!pending_alive(p))
        return;
    p->req->outcome = cache_outcome_name(a->outcome);
    if (a->err.status) {
        respond_cache_error(p, &a->err);
    } else {
        char nsh[300];
        ns_header(nsh, sizeof(nsh), p->ns);
        /* before the answer: once it is out, the request is gone */
        if (a->outcome == OUTCOME_HIT)
            registry__teach_manifest(p->r, p->conn, p->req, p->u, p->repo, p->reference,
                                     a->digest, a->media_type, a->body, a->size);
        respond_manifest(p->conn, p->head, a->media_type, a->digest, a->body, a->size, nsh);
        cache_note_access(p->r->cache, p->u, p->repo, a->digest, a->outcome);
        cache_note_manifest(p->r->cache, p->u, p->repo, a->body, a->size);
    }
    pending_done(p);
}

/* ---- blobs ---- */

static void wake_conn(void *ud)
{
    conn_wake(ud);
}

/* The body of a blob answer: the stored file, or the fill in progress. */
struct blob_body {
    const struct blob_answer *a;
    struct conn *c;
};

static void blob_source(void *ud, uint64_t first, uint64_t end, struct body_source *src)
{
    struct blob_body *b = ud;
    if (b->a->fill) {
        cache_fill_source(b->a->fill, first, end, wake_conn, b->c, src);
    } else { /* the response takes the answer's reference */
        src->fd = b->a->file->fd;
        src->offset = first;
        src->end = end;
        src->release = held_fd_release;
        src->ctx = b->a->file;
    }
}

static void on_blob(void *ud, const struct blob_answer *a)
{
    struct pending *p = ud;
    if (!conn_alive(p->conn)) {
        held_fd_drop(a->file);
        if (a->fill)
            cache_fill_release(a->fill);
        pending_alive(p);
        return;
    }
    p->req->outcome = cache_outcome_name(a->outcome);
    if (a->err.status) {
        respond_cache_error(p, &a->err);
        pending_done(p);
        return;
    }
    char nsh[300];
    ns_header(nsh, sizeof(nsh), p->ns);
    if (a->outcome != OUTCOME_MISS) { /* a HEAD of an uncached blob touches nothing cached */
        cache_note_access(p->r->cache, p->u, p->repo, p->digest, a->outcome);
        cache_blob_served(p->r->cache, p->digest);
    }
    if (a->outcome == OUTCOME_HIT && !a->fill)
        registry__teach_blob(p->r, p->conn, p->req, p->u, p->repo, p->digest, a->file, a->size);
    struct blob_body b = {a, p->conn};
    if (!respond_blob(p->conn, p->req, p->digest, a->size, nsh, blob_source, &b)) {
        held_fd_drop(a->file);
        if (a->fill)
            cache_fill_release(a->fill);
    }
    pending_done(p);
}

/* ---- tags ---- */

static void tags_query(const char *query, char *out, size_t len);

/* The upstream's pagination link, as the client must follow it: the upstream names its own
 * path for the repository (org/app where the client asked for quay.io/org/app, or
 * library/alpine for alpine), so only its n and last are kept, on the client's path. */
static void client_link(const struct pending *p, const char *upstream_link, char *out,
                        size_t len)
{
    out[0] = '\0';
    const char *open = strchr(upstream_link, '<'), *close = open ? strchr(open, '>') : NULL;
    const char *q = open ? memchr(open, '?', (size_t)(close ? close - open : 0)) : NULL;
    if (!q)
        return;
    char query[600], kept[400];
    snprintf(query, sizeof(query), "%.*s", (int)(close - q - 1), q + 1);
    tags_query(query, kept, sizeof(kept));
    if (!kept[0])
        return;
    int ns_ok = p->ns[0] && strspn(p->ns, "abcdefghijklmnopqrstuvwxyz0123456789.-:") ==
                                strlen(p->ns);
    snprintf(out, len, "Link: </v2/%s/tags/list?%s%s%s>; rel=\"next\"\r\n", p->name, kept,
             ns_ok ? "&ns=" : "", ns_ok ? p->ns : "");
}

static void on_tags(void *ud, const struct tags_answer *a)
{
    struct pending *p = ud;
    if (!pending_alive(p))
        return;
    p->req->outcome = cache_outcome_name(a->outcome);
    if (a->err.status) {
        respond_cache_error(p, &a->err);
    } else {
        char headers[1600], nsh[300], link[1200] = "";
        ns_header(nsh, sizeof(nsh), p->ns);
        if (a->link)
            client_link(p, a->link, link, sizeof(link));
        snprintf(headers, sizeof(headers), "Content-Type: application/json\r\n%s%s", link, nsh);
        conn_respond_shared(p->conn, 200, headers, a->shared, p->head);
    }
    pending_done(p);
}

/* ---- referrers ---- */

static void on_referrers(void *ud, const struct referrers_answer *a)
{
    struct pending *p = ud;
    if (!pending_alive(p))
        return;
    p->req->outcome = cache_outcome_name(a->outcome);
    if (a->err.status) {
        respond_cache_error(p, &a->err);
    } else {
        char nsh[300];
        ns_header(nsh, sizeof(nsh), p->ns);
        respond_referrers(p->conn, p->head, a->body, a->len, a->filtered, nsh);
    }
    pending_done(p);
}

/* ---- pull rules ---- */

/* 1 when the rules let the pull go on; otherwise answers 403 DENIED naming the deciding rule.
 * upstream NULL: a hosted repository. tag NULL: a digest reference (known: repo is known to
 * reference it) or a listing. */
static int rules_let(struct registry *r, struct conn *c, struct http_request *req,
                     const char *upstream, const char *repo, const char *tag, int known)
{
    struct rules_verdict v;
    char msg[RULES_TEXT_MAX + 64];
    if (!r->rules)
        return 1;
    rules_judge(r->rules, req->user[0] ? req->user : NULL, upstream, repo, tag, known, &v);
    if (v.allow)
        return 1;
    if (v.rule)
        snprintf(msg, sizeof(msg), "denied by rule %zu (%s)", v.rule, rules_text(r->rules, v.rule));
    else
        snprintf(msg, sizeof(msg), "denied by the default rule (rules.default: deny)");
    req->outcome = "denied";
    metrics_rule_denied(v.rule);
    respond_error(c, req->method == HTTP_METHOD_HEAD, 403, "DENIED", msg, NULL);
    return 0;
}

/* The upstream answered whether the repository has the digest the request names. */
static void on_confirmed(void *ud, const struct blob_answer *a)
{
    struct pending *p = ud;
    if (!pending_alive(p))
        return;
    if (a->err.status) {
        p->req->outcome = "miss";
        respond_cache_error(p, &a->err);
        pending_done(p);
    } else if (p->manifest) {
        cache_manifest(p->r->cache, p->u, p->repo, p->digest, p->req->accept, p->head,
                       on_manifest, p);
    } else {
        cache_blob(p->r->cache, p->u, p->repo, p->digest, p->head, on_blob, p);
    }
}

struct listing {
    struct registry *r;
    const char *user;
    struct catalog *names;
};

/* A cached repository's name in the catalog: upstream/ prefixed unless from the first. */
static int list_cached(void *ud, const char *name)
{
    struct listing *l = ud;
    struct upstream *u = upstream_get(l->r->up, 0);
    const char *repo = name, *slash = strchr(name, '/');
    if (slash) {
        char first[REF_NAME_MAX + 1];
        snprintf(first, sizeof(first), "%.*s", (int)(slash - name), name);
        struct upstream *named = upstream_find(l->r->up, first);
        if (named) {
            u = named;
            repo = slash + 1;
        }
    }
    if (l->r->rules && !rules_listable(l->r->rules, l->user, upstream_name(u), repo))
        return 0;
    return catalog_add(l->names, name);
}

static int list_hosted(void *ud, const char *name)
{
    struct listing *l = ud;
    if (l->r->rules && !rules_listable(l->r->rules, l->user, NULL, name))
        return 0;
    return catalog_add(l->names, name);
}

/* ---- routing ---- */

/* Picks the upstream: the ns parameter, else a leading name component naming an upstream, else
 * the first upstream; applies Docker Hub's library/ convention. */
struct upstream *registry__pick_upstream(struct registry *r, const struct route *rt, char *repo,
                                        size_t repolen)
{
    struct upstream *u = NULL;
    const char *name = rt->name;
    if (rt->ns[0]) {
        u = upstream_find(r->up, rt->ns);
        if (!u)
            return NULL;
    } else {
        const char *slash = strchr(name, '/');
        if (slash) {
            char first[REF_NAME_MAX + 1];
            memcpy(first, name, (size_t)(slash - name));
            first[slash - name] = '\0';
            u = upstream_find(r->up, first);
            if (u)
                name = slash + 1;
        }
        if (!u)
            u = upstream_get(r->up, 0);
    }
    if (upstream_is_docker_hub(u) && !strchr(name, '/'))
        snprintf(repo, repolen, "library/%s", name);
    else
        snprintf(repo, repolen, "%s", name);
    return u;
}


static int is_upstream(void *ud, const char *name)
{
    return upstream_find(ud, name) != NULL;
}

/* A hosted repository's request: its name matches a hosted pattern and it names no upstream
 * itself (an explicit ?ns= or upstream prefix never reaches hosted content). */
int registry__for_hosted(const struct registry *r, const struct route *rt)
{
    return rt->name[0] && hosted_match(r->hosted, rt->name) &&
           !route_names_upstream(rt, is_upstream, r->up);
}

static void handle(struct registry *r, struct conn *c, struct http_request *req,
                   const char *user, int has_token, int relayed);

struct auth_wait {
    struct registry *r;
    struct conn *conn;
    struct http_request *req;
};

/* The WWW-Authenticate line for a 401 answering req; a Bearer challenge names the scope the
 * request needs. rt is the request's route, NULL when it did not parse. */
static void challenge_for(const struct registry *r, const struct http_request *req,
                          const struct route *rt, char *out, size_t len)
{
    struct auth_origin o = {.host = req->host, .secure = req->secure};
    char scope[REF_NAME_MAX + 64];
    const char *sc = NULL;
    if (rt && rt->kind == ROUTE_CATALOG) {
        sc = "registry:catalog:*";
    } else if (rt && rt->kind != ROUTE_BASE) {
        int write = req->method == HTTP_METHOD_OTHER || rt->kind == ROUTE_UPLOAD;
        snprintf(scope, sizeof(scope), "repository:%s:%s", rt->name,
                 write ? "pull,push" : "pull");
        sc = scope;
    }
    auth_challenge(r->auth, &o, sc, out, len);
}

/* The status page's 401 challenge: Basic, which a browser answers, whatever auth.scheme. */
static void ui_challenge(const struct registry *r, char *out, size_t len)
{
    snprintf(out, len, "WWW-Authenticate: Basic realm=\"%s\"\r\n", auth_realm(r->auth));
}

/* The status page, for a caller ui.access lets read it. */
static void ui_request(struct registry *r, struct conn *c, struct http_request *req,
                       const char *user)
{
    int head = req->method == HTTP_METHOD_HEAD;
    int push = r->auth && ui_for_pushers(r->ui);
    char challenge[600];
    if (r->auth && !user && (push || !auth_anonymous_pull(r->auth))) {
        ui_challenge(r, challenge, sizeof(challenge));
        respond_error(c, head, 401, "UNAUTHORIZED", "authentication required", challenge);
        return;
    }
    if (push && !auth_may_push(r->auth, user)) {
        respond_error(c, head, 403, "DENIED", "the status page is for users who may push", NULL);
        return;
    }
    ui_handle(r->ui, c, req);
}

/* Checks req's credentials, then calls cb with the outcome (on the loop; the connection is
 * held until then). */
static void check_credentials(struct registry *r, struct conn *c, struct http_request *req,
                              auth_cb cb)
{
    struct auth_wait *w = calloc(1, sizeof(*w));
    if (!w) {
        respond_error(c, req->method == HTTP_METHOD_HEAD, 503, "UNAVAILABLE", "out of memory",
                      NULL);
        return;
    }
    w->r = r;
    w->conn = c;
    w->req = req;
    conn_ref(c);
    auth_check(r->auth, req->authorization, req->client, cb, w);
}

/* Answers a login that was not checked: 429 for an address with too many wrong passwords
 * lately, 503 while too many logins wait for bcrypt. 0 when result is neither. */
static int respond_not_checked(struct registry *r, struct conn *c, int head,
                               const char *client, enum auth_result result)
{
    char retry[64];
    if (result == AUTH_THROTTLED) {
        snprintf(retry, sizeof(retry), "Retry-After: %u\r\n",
                 auth_retry_after(r->auth, client));
        respond_error(c, head, 429, "TOOMANYREQUESTS",
                      "too many wrong passwords from this address; try again later", retry);
        return 1;
    }
    if (result == AUTH_BUSY) {
        respond_error(c, head, 503, "UNAVAILABLE", "too many logins being checked",
                      "Retry-After: 1\r\n");
        return 1;
    }
    return 0;
}

static void on_auth(void *ud, enum auth_result result, const char *user)
{
    struct auth_wait *w = ud;
    if (conn_alive(w->conn) &&
        !respond_not_checked(w->r, w->conn, w->req->method == HTTP_METHOD_HEAD, w->req->client,
                             result)) {
        if (result == AUTH_BAD) {
            char challenge[1024];
            struct route rt;
            int parsed = route_parse(w->req->path, w->req->query, &rt) == 0;
            if (ui_path(w->r->ui, w->req->path))
                ui_challenge(w->r, challenge, sizeof(challenge));
            else
                challenge_for(w->r, w->req, parsed ? &rt : NULL, challenge, sizeof(challenge));
            respond_error(w->conn, w->req->method == HTTP_METHOD_HEAD, 401, "UNAUTHORIZED",
                          auth_token_mode(w->r->auth) && w->req->authorization &&
                                  strncasecmp(w->req->authorization, "Bearer", 6) == 0
                              ? "the token is invalid or has expired"
                              : "wrong user name or password",
                          challenge);
        } else {
            handle(w->r, w->conn, w->req, user, result == AUTH_ANONYMOUS_TOKEN, 0);
        }
    }
    conn_unref(w->conn);
    free(w);
}

/* ---- the token endpoint (auth.scheme: token) ----
 * GET /v2/token?service=..&scope=.. with Basic credentials, or none for an anonymous token.
 * The token names its holder; what the holder may do is decided per request, by the same
 * policy that applies to Basic credentials. */

static void on_token_auth(void *ud, enum auth_result result, const char *user)
{
    struct auth_wait *w = ud;
    struct conn *c = w->conn;
    struct registry *r = w->r;
    int head = w->req->method == HTTP_METHOD_HEAD;
    char basic[512];
    snprintf(basic, sizeof(basic), "WWW-Authenticate: Basic realm=\"%s\"\r\n",
             auth_realm(r->auth));
    if (!conn_alive(c) || respond_not_checked(r, c, head, w->req->client, result)) {
    } else if (result == AUTH_BAD) {
        respond_error(c, head, 401, "UNAUTHORIZED", "wrong user name or password", basic);
    } else if (result == AUTH_ANONYMOUS && !auth_anonymous_pull(r->auth)) {
        respond_error(c, head, 401, "UNAUTHORIZED", "authentication required", basic);
    } else {
        char token[TOKEN_MAX], issued[32];
        int expires_in = 0;
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(issued, sizeof(issued), "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (auth_issue_token(r->auth, user, token, sizeof(token), &expires_in)) {
            respond_error(c, head, 500, "UNKNOWN", "cannot issue a token", NULL);
        } else {
            char body[2 * TOKEN_MAX + 160];
            int n = snprintf(body, sizeof(body),
                             "{\"token\":\"%s\",\"access_token\":\"%s\",\"expires_in\":%d,"
                             "\"issued_at\":\"%s\"}\n",
                             token, token, expires_in, issued);
            conn_respond(c, 200, "Content-Type: application/json\r\nCache-Control: no-store\r\n",
                         body, (size_t)n, head);
        }
    }
    conn_unref(c);
    free(w);
}

static void token_endpoint(struct registry *r, struct conn *c, struct http_request *req)
{
    int head = req->method == HTTP_METHOD_HEAD;
    if (req->method == HTTP_METHOD_OTHER) {
        /* no OAuth2 POST form: clients fall back to GET (the distribution token spec) */
        respond_error(c, head, 405, "UNSUPPORTED", "the token endpoint answers GET",
                      "Allow: GET, HEAD\r\n");
        return;
    }
    check_credentials(r, c, req, on_token_auth);
}

/* A request that came back through this mirror (its Via names it), or through too many
 * proxies, is answered 508 at once, before auth (a looping request carries the credentials of
 * the mirror that sent it), and never goes upstream again. 1 when refused. */
static int refuse_loop(struct registry *r, struct conn *c, struct http_request *req)
{
    char chain[VIA_CHAIN_MAX], msg[CONFIG_INSTANCE_ID_MAX + 200];
    size_t hops;
    if (!r->instance[0] || (!req->via && !req->via_too_long))
        return 0;
    enum via_verdict v = via_check(req->via, req->via_too_long, r->instance, chain, &hops);
    if (v == VIA_OK)
        return 0;
    if (v == VIA_LOOP)
        snprintf(msg, sizeof(msg),
                 "request loop: the request already passed through this mirror (%s, Via entry "
                 "%zu); an upstream url leads back to it",
                 r->instance, hops);
    else
        snprintf(msg, sizeof(msg),
                 "request loop: the request passed through more than %d proxies (Via)",
                 VIA_MAX_HOPS);
    struct route rt;
    req->handler = route_handler_name(route_parse(req->path, req->query, &rt) == 0 ? &rt : NULL);
    req->outcome = "loop";
    metrics_http_started(req);
    respond_error(c, req->method == HTTP_METHOD_HEAD, 508, "UNAVAILABLE", msg, NULL);
    return 1;
}

void registry_handle(struct conn *c, struct http_request *req, void *ud)
{
    struct registry *r = ud;
    if (cors_handle(r->cors, c, req))
        return; /* a preflight: answered before auth, as browsers send it without credentials */
    if (strcmp(req->path, "/healthz") == 0) {
        /* liveness for monitors, whatever the auth policy */
        conn_respond(c, 200, "Content-Type: text/plain\r\n", "ok\n", 3,
                     req->method == HTTP_METHOD_HEAD);
        return;
    }
    if (refuse_loop(r, c, req))
        return;
    if (req->peer) {
        char sender[300], why[300];
        const char *target = req->target ? req->target : req->path;
        char claimed[PEER_AUTH_USER_MAX + 1], nonce[PEER_AUTH_NONCE_HEX + 1];
        char receiver[MEMBERS_URL_MAX + 1];
        int claim = req->relay ? peer_auth_relay_user(req->relay, nonce, receiver,
                                                      sizeof(receiver), claimed, sizeof(claimed))
                               : -1;
        if (req->relay && claim < 0)
            snprintf(why, sizeof(why), "malformed relay header");
        if ((req->relay && claim < 0) ||
            cluster_verify(r->cluster, req->peer, req->method_name, target, req->relay, sender,
                           sizeof(sender), why, sizeof(why)) ||
            (claim >= 0 &&
             cluster_relay_admit(r->cluster, sender, receiver, nonce, why, sizeof(why)))) {
            log_warn("cluster: refused a peer request from %s for %s: %s", req->client, target,
                     why);
            metrics_cluster_peer_request(1);
            respond_error(c, req->method == HTTP_METHOD_HEAD, 403, "DENIED",
                          "cluster peer authentication failed", NULL);
            return;
        }
        metrics_cluster_peer_request(0);
        if (claim >= 0) { /* relayed for a client: as the user the member authenticated */
            snprintf(req->user, sizeof(req->user), "%s", claim ? claimed : "");
            handle(r, c, req, claim ? req->user : NULL, 0, 1);
            return;
        }
        handle(r, c, req, PEER_USER, 0, 0);
        return;
    }
    if (!r->auth) {
        handle(r, c, req, NULL, 0, 0);
        return;
    }
    if (auth_token_mode(r->auth) && strcmp(req->path, "/v2/token") == 0) {
        token_endpoint(r, c, req);
        return;
    }
    check_credentials(r, c, req, on_auth);
}

static void tags_query(const char *query, char *out, size_t len)
{
    char n[32], last[300];
    out[0] = '\0';
    int has_n = route_query_param(query, "n", n, sizeof(n)) > 0;
    int has_last = route_query_param(query, "last", last, sizeof(last)) > 0;
    if (has_n && strspn(n, "0123456789") == strlen(n))
        snprintf(out, len, "n=%s", n);
    if (has_last && ref_tag_valid(last, strlen(last)))
        snprintf(out + strlen(out), len - strlen(out), "%slast=%s", out[0] ? "&" : "", last);
}

/* _catalog: the cached and the hosted repositories, n and last honoured, and a Link to the
 * next page when more remain. */
static void catalog(struct registry *r, struct conn *c, struct http_request *req)
{
    int head = req->method == HTTP_METHOD_HEAD;
    char n[32], last[CATALOG_NAME_MAX], next[CATALOG_NAME_MAX];
    size_t limit = 0;
    if (route_query_param(req->query, "n", n, sizeof(n)) > 0 &&
        strspn(n, "0123456789") == strlen(n) && strlen(n) < 10)
        limit = strtoul(n, NULL, 10);
    int has_last = route_query_param(req->query, "last", last, sizeof(last)) > 0;
    struct catalog names = {0};
    struct listing listing = {r, req->user[0] ? req->user : NULL, &names};
    struct buf out;
    buf_init(&out, 64u << 20);
    if (cache_catalog(r->cache, list_cached, &listing) ||
        hosted_repositories(r->hosted, list_hosted, &listing) ||
        catalog_page(&names, limit, has_last ? last : NULL, &out, next, sizeof(next))) {
        respond_error(c, head, 500, "UNKNOWN", "cannot list repositories", NULL);
    } else {
        char headers[3 * CATALOG_NAME_MAX + 120] = "Content-Type: application/json\r\n";
        char esc[3 * CATALOG_NAME_MAX];
        if (next[0]) {
            route_query_escape(esc, sizeof(esc), next);
            snprintf(headers + strlen(headers), sizeof(headers) - strlen(headers),
                     "Link: </v2/_catalog?n=%zu&last=%s>; rel=\"next\"\r\n", limit, esc);
        }
        /* sent from memory of its own, counted against limits.max_response_memory */
        struct shared_body *b = shared_body_adopt(out.data, out.len);
        out.data = NULL;
        if (b)
            conn_respond_shared(c, 200, headers, b, head);
        else
            respond_error(c, head, 503, "UNAVAILABLE", "out of memory", NULL);
        shared_body_unref(b);
    }
    catalog_free(&names);
    buf_free(&out);
}

/* The request once its caller is known: user is NULL for an anonymous caller, who may hold an
 * anonymous token. relayed: a member relayed it for user (only a hosted repository's). */
static void handle(struct registry *r, struct conn *c, struct http_request *req, const char *user,
                   int has_token, int relayed)
{
    struct route rt;
    int head = req->method == HTTP_METHOD_HEAD;
    int parsed = route_parse(req->path, req->query, &rt);
    int write = req->method == HTTP_METHOD_OTHER || (parsed == 0 && rt.kind == ROUTE_UPLOAD);
    char challenge[1024] = ""; /* built only for the answers that carry it */
    int ping = parsed == 0 && rt.kind == ROUTE_BASE;
    req->handler = route_handler_name(parsed == 0 ? &rt : NULL);
    metrics_http_started(req);
    if (user && user != req->user)
        snprintf(req->user, sizeof(req->user), "%s", user);
    if (relayed && !((parsed == 0 || rt.bad_reference) && rt.kind != ROUTE_BASE &&
                     rt.kind != ROUTE_CATALOG && registry__for_hosted(r, &rt))) {
        respond_error(c, head, 403, "DENIED",
                      "only requests for hosted repositories are relayed between members", NULL);
        return;
    }
    if (ui_path(r->ui, req->path)) {
        ui_request(r, c, req, user);
        return;
    }
    if (r->auth && !user &&
        (write || !auth_anonymous_pull(r->auth) || (ping && !has_token && !auth_ping_open(r->auth)))) {
        challenge_for(r, req, parsed ? NULL : &rt, challenge, sizeof(challenge));
        respond_error(c, head, 401, "UNAUTHORIZED", "authentication required", challenge);
        return;
    }
    if (write && user == PEER_USER) {
        respond_error(c, head, 403, "DENIED", "a cluster peer may not push", NULL);
        return;
    }
    if (write && r->auth && !auth_may_push(r->auth, user)) {
        challenge_for(r, req, parsed ? NULL : &rt, challenge, sizeof(challenge));
        respond_error(c, head, 403, "DENIED", "this user may not push", challenge);
        return;
    }
    if (parsed == 0 && rt.kind != ROUTE_BASE && rt.kind != ROUTE_CATALOG &&
        registry__for_hosted(r, &rt)) {
        /* pulls of hosted content pass the rules too (as upstream "*"); pushes have their own
         * auth, and a hosted blob is read only through a repository that holds it */
        if (!write && !rules_let(r, c, req, NULL, rt.name,
                                 rt.kind == ROUTE_MANIFEST && !rt.by_digest ? rt.reference : NULL,
                                 1))
            return;
        /* in a cluster, the repository's requests all go to the one member that holds it;
         * what a member sent is answered here (never relayed again) */
        int holder = relayed || user == PEER_USER ? -1 : relay_holder(r->cluster, rt.name);
        if (holder >= 0) {
            relay_request(r->cluster, r->up, c, req, (size_t)holder, user);
            return;
        }
        hosted_handle(r->hosted, c, req, &rt, user); /* never upstream */
        return;
    }
    if (parsed && rt.bad_reference && registry__for_hosted(r, &rt)) {
        /* no such manifest (404), and none can be pushed under that reference */
        if (strcmp(req->method_name, "PUT") == 0)
            respond_error(c, 0, 400, "MANIFEST_INVALID",
                          "the reference is neither a valid tag nor a digest", NULL);
        else
            respond_error(c, head, rt.err_status, rt.err_code, rt.err_message, NULL);
        return;
    }
    if (write) {
        respond_error(c, head, 405, "UNSUPPORTED",
                      "this repository is a read-only mirror: push and delete are not supported",
                      "Allow: GET, HEAD\r\n");
        return;
    }
    if (parsed) {
        respond_error(c, head, rt.err_status, rt.err_code, rt.err_message, NULL);
        return;
    }
    if (rt.kind == ROUTE_BASE) {
        char headers[1200];
        if (r->auth && !auth_token_mode(r->auth)) /* Basic: the ping always announces it */
            challenge_for(r, req, &rt, challenge, sizeof(challenge));
        snprintf(headers, sizeof(headers), "Content-Type: application/json\r\n%s", challenge);
        conn_respond(c, 200, headers, "{}\n", 3, head);
        return;
    }
    if (rt.kind == ROUTE_CATALOG) {
        catalog(r, c, req);
        return;
    }
    char repo[REPO_MAX];
    struct upstream *u = registry__pick_upstream(r, &rt, repo, sizeof(repo));
    if (u)
        req->upstream = upstream_name(u);
    if (!u) {
        respond_error(c, head, 404, "NAME_UNKNOWN", "no upstream is configured for this ns",
                      NULL);
        return;
    }
    int digest_ref = rt.kind == ROUTE_BLOB || (rt.kind == ROUTE_MANIFEST && rt.by_digest);
    int known = !digest_ref || cache_known(r->cache, u, repo, rt.reference);
    if (!rules_let(r, c, req, upstream_name(u), repo,
                   rt.kind == ROUTE_MANIFEST && !rt.by_digest ? rt.reference : NULL, known))
        return;
    struct pending *p = pending_new(c, req, rt.ns);
    if (p) {
        p->r = r;
        p->u = u;
        snprintf(p->repo, sizeof(p->repo), "%s", repo);
        snprintf(p->name, sizeof(p->name), "%s", rt.name);
        snprintf(p->reference, sizeof(p->reference), "%s", rt.reference);
    }
    if (!p) {
        respond_error(c, head, 503, "UNAVAILABLE", "out of memory", NULL);
        return;
    }
    /* whatever goes upstream for it carries the proxies it came through (Via) */
    char chain[VIA_CHAIN_MAX];
    size_t hops;
    via_check(req->via, 0, NULL, chain, &hops);
    upstream_client_set_via(r->up, chain);
    switch (rt.kind) {
    case ROUTE_MANIFEST:
        if (rt.by_digest && strncmp(rt.reference, "sha256:", 7) != 0) {
            respond_error(c, head, 400, "DIGEST_INVALID", "only sha256 manifests are cached",
                          NULL);
            pending_done(p);
            break;
        }
        if (!known) { /* cached bytes only for a repository known to reference them */
            p->manifest = 1;
            snprintf(p->digest, sizeof(p->digest), "%s", rt.reference);
            cache_confirm(r->cache, u, repo, 1, rt.reference, on_confirmed, p);
            break;
        }
        if (user == PEER_USER)
            cache_manifest_direct(r->cache, u, repo, rt.reference, req->accept, head,
                                  on_manifest, p);
        else
            cache_manifest(r->cache, u, repo, rt.reference, req->accept, head, on_manifest, p);
        break;
    case ROUTE_BLOB:
        if (strncmp(rt.reference, "sha256:", 7) != 0) {
            respond_error(c, head, 400, "DIGEST_INVALID", "only sha256 blobs are cached", NULL);
            pending_done(p);
            break;
        }
        snprintf(p->digest, sizeof(p->digest), "%s", rt.reference);
        if (!known) {
            cache_confirm(r->cache, u, repo, 0, rt.reference, on_confirmed, p);
            break;
        }
        if (user == PEER_USER)
            cache_blob_direct(r->cache, u, repo, rt.reference, head, on_blob, p);
        else
            cache_blob(r->cache, u, repo, rt.reference, head, on_blob, p);
        break;
    case ROUTE_REFERRERS: {
        char at[256];
        int has_at = route_artifact_type(req->query, at, sizeof(at)) > 0;
        cache_referrers(r->cache, u, repo, rt.reference, has_at ? at : NULL, on_referrers, p);
        break;
    }
    case ROUTE_TAGS: {
        char q[400];
        tags_query(req->query, q, sizeof(q));
        cache_tags(r->cache, u, repo, q[0] ? q : NULL, on_tags, p);
        break;
    }
    default:
        respond_error(c, head, 404, "NAME_UNKNOWN", "unknown endpoint", NULL);
        pending_done(p);
    }
    upstream_client_set_via(r->up, NULL);
}
