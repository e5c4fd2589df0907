/* SPDX-License-Identifier: Apache-2.0 */
/* What of a relayed answer's headers is passed on, and the key a hosted repository is owned
 * by (relay.h). Pure: any thread. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cluster/relay.h"

int relay_key(const char *name, char *out, size_t len)
{
    int n = snprintf(out, len, "hosted/%s", name);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* The registry's headers a hosted repository's answer may carry. Content-Length, Connection,
 * Transfer-Encoding, X-Request-Id, X-Cache and the headers every answer of this replica
 * carries anyway are not among them. */
static const char *const passed[] = {
    "Location",         "Docker-Upload-UUID",  "Range",         "Docker-Content-Digest",
    "Content-Type",     "WWW-Authenticate",    "Link",          "Retry-After",
    "Allow",            "Content-Range",       "Accept-Ranges", "ETag",
    "Last-Modified",    "Cache-Control",       "OCI-Subject",   "OCI-Filters-Applied",
};

/* The length of line's header name when it is "Name: value" with a printable value, else 0. */
static size_t name_len(const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)line[i];
        if ((ch < 0x20 && ch != '\t') || ch > 0x7e)
            return 0;
    }
    return (size_t)(colon - line);
}

int relay_header_passes(const char *line, size_t len)
{
    size_t n = name_len(line, len);
    if (!n)
        return 0;
    for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++)
        if (strlen(passed[i]) == n && strncasecmp(line, passed[i], n) == 0)
            return 1;
    return 0;
}

int64_t relay_content_length(const char *line, size_t len)
{
    static const char name[] = "Content-Length";
    size_t n = name_len(line, len);
    if (n != sizeof(name) - 1 || strncasecmp(line, name, n) != 0)
        return -1;
    size_t i = n + 1;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    while (len > i && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (i == len || len - i > 18)
        return -2;
    int64_t v = 0;
    for (; i < len; i++) {
        if (line[i] < '0' || line[i] > '9')
            return -2;
        v = v * 10 + (line[i] - '0');
    }
    return v;
}
