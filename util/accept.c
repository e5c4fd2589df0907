/* SPDX-License-Identifier: Apache-2.0 */
#include "util/accept.h"

#include <string.h>
#include <strings.h>

/* q=0 (0, 0., 0.0, 0.00, 0.000) among the parameters in [p, end): "not acceptable". */
static int refused(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            const char *v = p + 2;
            if (v < end && *v == '0') {
                v++;
                if (v < end && *v == '.')
                    for (v++; v < end && *v == '0'; v++)
                        ;
                while (v < end && (*v == ' ' || *v == '\t'))
                    v++;
                if (v == end || *v == ';')
                    return 1;
            }
        }
        while (p < end && *p != ';')
            p++;
    }
    return 0;
}

int accept_allows(const char *accept, const char *media_type)
{
    if (!accept || !*accept)
        return 1;
    size_t mlen = strlen(media_type);
    const char *p = accept;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ';')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        size_t len = (size_t)(end - start);
        const char *params = p;
        while (*p && *p != ',')
            p++;
        if (((len == mlen && strncasecmp(start, media_type, len) == 0) ||
             (len == 3 && memcmp(start, "*/*", 3) == 0) ||
             (len == 13 && strncasecmp(start, "application/*", 13) == 0)) &&
            !refused(params, p))
            return 1;
    }
    return 0;
}
