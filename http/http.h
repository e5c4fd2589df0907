/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP/1.1 front: a libuv listener and connections parsed with llhttp.
 *
 * Connections are driven with uv_poll on the raw socket so that file bodies can go from the page
 * cache to the socket with sendfile(2). sendfile runs on libuv's thread pool so that a page-cache
 * miss never stalls the loop; the loop only waits for the socket to become writable. Requests on
 * one connection are answered in order (keep-alive and pipelining); a connection does not read
 * the next request until the current response is complete, which bounds its memory. */
#ifndef REGCACHE_HTTP_HTTP_H
#define REGCACHE_HTTP_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_MAX_URL 4096
#define HTTP_MAX_HEADER_BYTES 16384 /* all header lines of one request together */
#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_ACCEPT 4096
/* longer values of these headers are treated as absent */
#define HTTP_MAX_USER_AGENT 512
#define HTTP_MAX_REFERER 1024
#define HTTP_MAX_ORIGIN 255
#define HTTP_MAX_FORWARDED_FOR 1024 /* every X-Forwarded-For line joined */
#define HTTP_MAX_VIA 2048           /* every Via line joined */
#define HTTP_REQUEST_ID_MAX 64      /* an X-Request-Id kept from a trusted proxy */
#define HTTP_RESPONSE_HEADERS_MAX 1024

struct http_server;
struct conn;
struct ssl_ctx_st;
struct shared_body;
struct cidr;

enum http_method_kind { HTTP_METHOD_GET, HTTP_METHOD_HEAD, HTTP_METHOD_OTHER };

struct http_request {
    enum http_method_kind method;
    const char *method_name;
    const char *target; /* as sent: path and query */
    const char *path;   /* target up to '?' */
    const char *query;  /* after '?', NULL when absent */
    const char *accept; /* every Accept header joined with ", "; NULL when none */
    const char *range;  /* NULL when absent */
    const char *authorization;
    const char *host; /* the Host header, NULL when absent */
    /* came over TLS, or a proxy in front says so (X-Forwarded-Proto: https) */
    int secure;
    int forwarded_https; /* X-Forwarded-Proto: https was sent */
    const char *content_type;  /* NULL when absent */
    const char *content_range; /* NULL when absent */
    int has_body;
    int64_t content_length; /* -1: chunked */
    const char *outcome; /* set by the handler for the access log: hit, miss, fill, stale */
    /* set by the handler for metrics and the access log (static strings or owned by the
     * request's handler until the response is done): */
    const char *handler;  /* what was asked: "base", "manifest", "blob", "tags", ... */
    const char *upstream; /* the upstream it went to (its configured name), NULL: none */
    char user[64];        /* the authenticated user, "" when anonymous */
    /* as sent, NULL when absent or too long (HTTP_MAX_*): */
    const char *user_agent, *referer;
    const char *forwarded_for; /* every X-Forwarded-For joined; believed only via client */
    const char *forwarded_id;  /* X-Request-Id as sent */
    const char *via;           /* every Via joined with ", " (RFC 9110 7.6.3) */
    int via_too_long;          /* Via lines past HTTP_MAX_VIA came (via is NULL then) */
    const char *origin;        /* Origin */
    const char *cors_method;   /* Access-Control-Request-Method (a CORS preflight) */
    const char *peer;          /* X-Regcache-Peer: a cluster member's request */
    const char *relay;         /* X-Regcache-Relay: whom a member relays the request for */
    /* set by the front before the handler runs: */
    char client[64]; /* the client: the TCP peer, or the X-Forwarded-For client when the peer
                      * is a trusted proxy (http_server_opts.trusted_proxies) */
    char request_id[HTTP_REQUEST_ID_MAX + 1]; /* sent back as X-Request-Id */
    /* "Name: value\r\n" lines the front adds to this request's response, set by the handler
     * before it answers (CORS); "" when none */
    char response_headers[HTTP_RESPONSE_HEADERS_MAX];
};

/* What the front knows of a response once it is done (or abandoned). */
struct http_response_info {
    int status;           /* 0 when no response was started */
    uint64_t body_bytes;  /* body bytes sent */
    uint64_t duration_us; /* from the first byte of the request to the last of the response */
    const char *peer;     /* the TCP peer's address */
    const char *note;     /* NULL: complete; else "aborted" or "client gone" */
};
/* Called once per request the handler was given, when its response is complete or abandoned. */
typedef void (*http_response_hook)(void *ud, const struct http_request *req,
                                   const struct http_response_info *info);

/* A file streamed as a response body: bytes [offset, end) of fd. readable (optional) says how
 * far a file still being written may be read now, and sets *failed when it never will be
 * complete; a source with readable is woken with conn_wake. release runs once when the response
 * no longer needs the source; without release the connection closes fd itself. */
struct body_source {
    int fd;
    uint64_t offset, end;
    uint64_t (*readable)(void *ctx, int *failed);
    void (*release)(void *ctx);
    void *ctx;
};

typedef void (*http_handler)(struct conn *c, struct http_request *req, void *ud);
/* Writes an error response for a request the front rejected itself (400, 414, 431, 503). */
typedef void (*http_error_writer)(struct conn *c, int status, void *ud);

struct http_server_opts {
    const char *listen; /* "host:port" */
    http_handler handler;
    http_error_writer error_writer;
    void *ud;
    const char *common_headers; /* "Name: value\r\n" lines added to every response */
    /* One "Name: value\r\n" line added to every response whose own headers do not name that
     * header (a page with a policy of its own sets it); NULL: none. */
    const char *default_header;
    uint64_t max_connections;
    uint64_t idle_timeout_ms;
    /* A request head must be complete this long after its first byte (or after the connection
     * was accepted): 408, then close. 0: no deadline. */
    uint64_t header_timeout_ms;
    /* A request body must arrive at this many bytes per second on average, after a grace of
     * header_timeout_ms (time the handler keeps it paused does not count): 408, then close.
     * 0: no minimum. */
    uint64_t min_body_rate;
    /* Response bodies held in memory for clients (copies, and each shared body once) may add up
     * to this many bytes; a response that would go past it is answered 503 by error_writer
     * instead (bodies under 16 KiB always go). 0: no limit. */
    uint64_t max_response_memory;
    /* At most this many requests may wait for their answer at once (a miss waiting on an
     * upstream); past it the one waiting longest is answered 503 and closed, so that the
     * remaining max_connections - max_waiting slots stay free for hits and probes. 0: no
     * limit. */
    uint64_t max_waiting;
    http_response_hook on_response; /* optional; gets ud */
    /* The access log, one line per request on stderr: off, the Combined Log Format with
     * extra fields, or JSON; probes and /metrics only with access_log_probes. */
    enum http_access_log { HTTP_ACCESS_OFF, HTTP_ACCESS_TEXT, HTTP_ACCESS_JSON } access_log;
    int access_log_probes;
    /* peers whose X-Forwarded-For and X-Request-Id are believed */
    const struct cidr *trusted_proxies;
    size_t n_trusted_proxies;
};

int http_server_start(uv_loop_t *loop, const struct http_server_opts *opts,
                      struct http_server **out);
/* Serves HTTPS with ctx from now on (new connections; open ones keep theirs); NULL for plain
 * HTTP. The server takes ownership of ctx and frees the one it replaces. */
void http_server_set_tls(struct http_server *s, struct ssl_ctx_st *ctx);

/* The port actually bound (useful with port 0). */
int http_server_port(const struct http_server *s);
/* Starts a graceful stop: idle connections close now, busy ones after their current response,
 * and every response from now on closes its connection. The listener keeps accepting (each new
 * connection gets one answer, then is closed), so that a readiness probe can still be told "not
 * ready" while in-flight responses finish; the handler decides what a new request gets.
 * http_server_close_all stops accepting. */
void http_server_drain(struct http_server *s);
size_t http_server_connections(const struct http_server *s);
/* The event loops serving s's listener, and the connections open on loop i (each lives on
 * the loop it was given at accept: the one with the fewest then). */
unsigned http_server_loops(const struct http_server *s);
size_t http_server_loop_connections(const struct http_server *s, unsigned i);
/* Connections refused at accept since start (max_connections reached). */
uint64_t http_server_refused(const struct http_server *s);
/* Connections with a request in progress: what a graceful stop waits for. */
size_t http_server_busy(const struct http_server *s);
/* Bytes of response bodies held in memory now (see max_response_memory). */
uint64_t http_server_buffered(const struct http_server *s);
/* Stops accepting and closes every connection now. */
void http_server_close_all(struct http_server *s);
/* Frees once every connection has closed (call after the loop ran the close callbacks); with
 * workers, waits for their threads to end first. */
void http_server_free(struct http_server *s);

/* ---- more loops on the same listener ----
 * n - 1 more event loops, each on a thread of its own, accept connections on the listener of
 * the first one (whichever loop is free takes the next connection, one at a time) and serve
 * them with handler. A request that handler does not answer itself goes to the first loop with
 * http_hand_over: the connection moves there (its socket, TLS state and unparsed bytes), the
 * first loop's handler answers it, and once the answer is out and nothing else holds the
 * connection it goes back to the loop that accepted it. max_connections, the refused count,
 * http_server_connections and http_server_busy count every loop; drain, TLS and close_all
 * reach them all. The error writer and on_response of the first loop's opts run on every loop:
 * they must be safe on any thread. */
struct http_workers_opts {
    unsigned n; /* loops in all, the first included; 1: none added */
    http_handler handler;
    /* On worker i's thread (1 <= i < n), before it accepts: the ud of its handler (NULL to
     * give up starting); and after its loop has closed its last connection. */
    void *(*start)(void *ctx, unsigned i, uv_loop_t *loop);
    void (*stop)(void *ctx, unsigned i, void *ud);
    void *ctx;
};
int http_server_start_workers(struct http_server *s, const struct http_workers_opts *o);
/* From a worker's handler, instead of an answer: the first loop's handler answers the request
 * (the caller must not touch c or req afterwards). On the first loop it just calls it. */
void http_hand_over(struct conn *c);
/* The server is draining (a graceful stop): what the first loop's handler answers then. */
int conn_draining(const struct conn *c);
/* The loop serving the connection now: 0 for the first, i for worker i. */
unsigned conn_loop_index(const struct conn *c);
/* The loop that accepted it, where it goes back once a request handed over is answered. */
unsigned conn_home_index(const struct conn *c);

/* ---- answering a request (each request gets exactly one of these) ---- */

/* Sends status, the given extra header lines ("Name: value\r\n", may be NULL) and body; with
 * head_only only the headers (Content-Length still says len). */
void conn_respond(struct conn *c, int status, const char *headers, const void *body, size_t len,
                  int head_only);
/* As conn_respond, the body being b: the connection holds a reference until the response is
 * out, and sends from b's memory (no copy). */
void conn_respond_shared(struct conn *c, int status, const char *headers, struct shared_body *b,
                         int head_only);
/* Sends status and headers, then streams src (Content-Length = src->end - src->offset). The
 * connection owns src from here. */
void conn_respond_stream(struct conn *c, int status, const char *headers,
                         const struct body_source *src);
/* A body handed over as it arrives (a response relayed from another server). drained runs on
 * the loop, never inside conn_feed, when what was fed has gone out and more is wanted (at most
 * once per conn_feed that answered 1, and again when the socket next drains). release runs
 * once, when the connection no longer needs the feed: complete 1 after the last byte went out,
 * 0 when the client went away (nothing more may be fed then); not after conn_feed_fail. */
struct body_feed {
    void (*drained)(void *ctx);
    void (*release)(void *ctx, int complete);
    void *ctx;
};
#define HTTP_FEED_WINDOW (1u << 20) /* bytes fed and not yet sent before conn_feed says wait */
/* Sends status and headers, Content-Length: length, then the bytes conn_feed hands over. The
 * connection holds feed from here (release runs even when the response could not start). */
void conn_respond_feed(struct conn *c, int status, const char *headers, uint64_t length,
                       const struct body_feed *feed);
/* Queues len more body bytes (never more than the length announced; never sends or closes
 * from inside): 0 to go on, 1 when HTTP_FEED_WINDOW bytes wait (feed more after drained), -1
 * when the connection no longer takes any. */
int conn_feed(struct conn *c, const void *data, size_t len);
/* The body will not be complete: the connection closes, so the client sees the response cut
 * short, never a shorter success. */
void conn_feed_fail(struct conn *c);

/* Reads the request body before answering. on_data gets each piece (valid during the call;
 * copy it) and returns 0 to go on or 1 to pause until conn_body_resume; on_end gets 0 once the
 * body is complete, or a negative errno when the connection went away (then nothing more may be
 * sent). A body that is not read makes the connection close after the answer. */
void conn_read_body(struct conn *c, int (*on_data)(void *ud, const char *data, size_t len),
                    void (*on_end)(void *ud, int status), void *ud);
void conn_body_resume(struct conn *c);

/* More bytes are readable in the streaming source. */
void conn_wake(struct conn *c);

/* A handler that answers later holds a reference; after the client went away conn_alive is 0
 * and the handler only drops its reference. A client that hangs up while its request waits
 * for an answer is noticed at once: its socket and its slot are given back then, not when the
 * handler lets go. */
void conn_ref(struct conn *c);
void conn_unref(struct conn *c);
int conn_alive(const struct conn *c);
/* The client's address as text ("-" when unknown): the TCP peer, never a forwarded header. */
const char *conn_peer(const struct conn *c);

#endif
