/* SPDX-License-Identifier: Apache-2.0 */
/* Refusals to pass on to a client: the spec's error codes for what the upstream answered. */
#include <stdarg.h>
#include <stdio.h>

#include "cache/impl.h"

void cache__error_set(struct cache_error *e, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    e->status = status;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

void cache__error_from_upstream(struct cache_error *e, const struct upstream *u,
                         const struct upstream_response *resp, const char *unknown_code)
{
    const char *name = upstream_name(u);
    e->retry_after[0] = '\0';
    if (resp->status == 0)
        cache__error_set(e, 503, "UNAVAILABLE", "upstream %s unreachable: %s", name,
                  resp->error ? resp->error : "error");
    else if (resp->status == 404)
        cache__error_set(e, 404, unknown_code, "not found upstream (%s)", name);
    else if (resp->status == 401 || resp->status == 403)
        cache__error_set(e, 404, unknown_code, "upstream %s denied access (HTTP %ld)", name,
                  resp->status);
    else if (resp->status == 429) {
        cache__error_set(e, 429, "TOOMANYREQUESTS", "upstream %s rate limit reached", name);
        snprintf(e->retry_after, sizeof(e->retry_after), "%s",
                 resp->retry_after ? resp->retry_after : "60");
    } else if (resp->status == 508) {
        /* a mirror further on refused a request that came back through it */
        cache__error_set(e, 508, "UNAVAILABLE",
                         "upstream %s refused a request loop (508 Loop Detected): its upstreams "
                         "lead back to this mirror",
                         name);
    } else if (resp->status >= 500) {
        /* unavailable for now (a parent mirror draining, or one whose own upstream is down):
         * never "not found"; its Retry-After is passed on */
        cache__error_set(e, 503, "UNAVAILABLE", "upstream %s answered HTTP %ld", name,
                         resp->status);
        if (resp->retry_after)
            snprintf(e->retry_after, sizeof(e->retry_after), "%s", resp->retry_after);
    } else
        cache__error_set(e, 502, "UNAVAILABLE", "upstream %s answered HTTP %ld", name, resp->status);
}

