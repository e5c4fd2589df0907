/* SPDX-License-Identifier: Apache-2.0 */
/* Who may do what: Basic credentials checked against a bcrypt htpasswd file, with anonymous
 * pulls allowed or not, and pushes limited to listed users.
 *
 * Two ways to ask for credentials (auth.scheme): `basic` challenges with Basic, and clients
 * send the password on every request; `token` challenges with Bearer, as Docker Hub does, and
 * clients fetch a token from the mirror's own endpoint (auth/token.h), anonymously or with
 * their password. Docker needs `token` to both pull anonymously and log in on one address: it
 * sends credentials only after a 401 ping, and with Basic a 401 ping stops anonymous pulls.
 *
 * bcrypt costs tens of milliseconds by design, so verification runs on threads of its own
 * (auth.verify_threads), never on libuv's pool, which serves the store, fills, the index and the
 * reload of the file; its queue is bounded (AUTH_BUSY past it). The outcome is remembered for a
 * while (per user and password, keyed by a hash of both; auth/verdicts.h), and only while the
 * user's line in the file is the one it was checked against; concurrent checks of the same
 * credentials share one verification. A client address that sent auth.max_failures wrong
 * passwords in a minute gets AUTH_THROTTLED for any login not already remembered as good, until
 * the minute is over; that answer comes AUTH_THROTTLE_DELAY_MS late, which slows a client that
 * keeps on trying to a few requests a second per connection. Unknown users are checked against a dummy hash of the file's highest
 * cost, so that a wrong name costs what a wrong password does. The file is re-read when it
 * changes and on auth_reload (SIGHUP). */
#ifndef REGCACHE_AUTH_AUTH_H
#define REGCACHE_AUTH_AUTH_H

#include <uv.h>

#include "config/config.h"

#define AUTH_CACHE_OK_MS (5 * 60 * 1000) /* a verified password is trusted this long */
#define AUTH_CACHE_BAD_MS (5 * 1000)     /* a wrong one is refused without bcrypt this long */
#define AUTH_CACHE_MAX 4096      /* verdicts remembered (failed ones are dropped first) */
#define AUTH_FAILURES_MAX 4096   /* client addresses whose wrong passwords are counted */
#define AUTH_VERIFY_QUEUE_MAX 64 /* distinct credentials being checked or waiting to be */
#define AUTH_VERIFY_THREADS_MAX 16
#define AUTH_THROTTLE_DELAY_MS 500 /* a 429 for too many wrong passwords waits this long */
#define AUTH_DELAYED_MAX 4096      /* 429s waiting; past it they are sent at once */

struct auth;

/* AUTH_ANONYMOUS_TOKEN: an anonymous caller holding a valid token (a ping then gets 200);
 * AUTH_THROTTLED: too many wrong passwords from this address lately (429, auth_retry_after);
 * AUTH_BUSY: too many logins waiting for bcrypt (503, Retry-After: 1) */
enum auth_result {
    AUTH_ANONYMOUS,
    AUTH_ANONYMOUS_TOKEN,
    AUTH_USER,
    AUTH_BAD,
    AUTH_THROTTLED,
    AUTH_BUSY
};
typedef void (*auth_cb)(void *ud, enum auth_result result, const char *user);

/* *out is NULL when the config enables no authentication. */
int auth_new(uv_loop_t *loop, const struct config *cfg, struct auth **out);
void auth_shutdown(struct auth *a);
void auth_free(struct auth *a);

int auth_anonymous_pull(const struct auth *a);
/* Does an anonymous ping get 200 (with the challenge)? With auth.ping: challenge it gets 401,
 * which Docker needs before it sends credentials; anonymous pulls still work. */
int auth_ping_open(const struct auth *a);
/* Where a request came in, for the absolute token realm URL of a Bearer challenge. */
struct auth_origin {
    const char *host; /* the Host header, NULL when absent */
    int secure;       /* HTTPS here, or X-Forwarded-Proto: https from a reverse proxy */
};

/* The "WWW-Authenticate: ...\r\n" line for a 401. scope ("repository:NAME:pull,push") is
 * added to Bearer challenges; NULL for none. */
void auth_challenge(const struct auth *a, const struct auth_origin *o, const char *scope,
                    char *out, size_t outlen);
/* auth.realm */
const char *auth_realm(const struct auth *a);
/* auth.scheme: token? */
int auth_token_mode(const struct auth *a);
/* A token for user (NULL: anonymous) into out (TOKEN_MAX bytes); its lifetime in seconds. */
int auth_issue_token(const struct auth *a, const char *user, char *out, size_t outlen,
                     int *expires_in);
/* How long a worker loop may take the Authorization header that was just found good here
 * (AUTH_USER, or an anonymous caller's) as the same caller without asking again: until a
 * token's own expiry or AUTH_PASS_MS from now, whichever comes first (wall clock, ms); 0 when
 * it may not (a token that does not verify). A change of the users file moves the content
 * epoch (util/epoch.h), which ends every such pass at once. */
#define AUTH_PASS_MS (60 * 1000)
uint64_t auth_pass_until_ms(const struct auth *a, const char *authorization, uint64_t now_ms);
/* May user push (user NULL: anonymous)? */
int auth_may_push(const struct auth *a, const char *user);

/* Checks an Authorization header value (NULL when absent) sent from client address peer:
 * Basic credentials, or in token mode a Bearer token of a user still in the file. cb may run
 * before this returns. */
void auth_check(struct auth *a, const char *authorization, const char *peer, auth_cb cb,
                void *ud);
/* Seconds for the Retry-After of an AUTH_THROTTLED answer to peer (at least 1). */
unsigned auth_retry_after(struct auth *a, const char *peer);

/* Re-reads the htpasswd file now (SIGHUP). */
void auth_reload(struct auth *a);
/* 1 while a re-read of the htpasswd file is queued or running, else 0 (NULL: 0). */
int auth_reloading(const struct auth *a);

#endif
