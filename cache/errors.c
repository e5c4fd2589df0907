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
        cache__error_set(e, 502, "UNAVAILABLE", "upstream %s unreachable: %s", name,
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
    } else
        cache__error_set(e, 502, "UNAVAILABLE", "upstream %s answered HTTP %ld", name, resp->status);
}

