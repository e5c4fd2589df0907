/* SPDX-License-Identifier: Apache-2.0 */
#include "registry/via.h"

#include <string.h>
#include <strings.h>

#define PROTOCOL_MAX 32   /* "HTTP/1.1", "1.1", "2" */
#define RECEIVED_BY_MAX 255 /* a host[:port] or a pseudonym */

/* A byte of a token, or of a host, port or IPv6 literal (received-by). */
static int token_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~:[]/", ch));
}

static int ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* The end of one entry of s: the comma outside comments after it, or the NUL. */
static const char *entry_end(const char *s)
{
    int depth = 0;
    for (; *s; s++) {
        if (depth && *s == '\\' && s[1])
            s++; /* a quoted-pair inside a comment */
        else if (*s == '(')
            depth++;
        else if (*s == ')' && depth)
            depth--;
        else if (*s == ',' && !depth)
            break;
    }
    return s;
}

/* One token of [s, end) after blanks: its start and length (0 when none or not a token). */
static const char *next_token(const char *s, const char *end, size_t *len)
{
    while (s < end && ows(*s))
        s++;
    const char *t = s;
    while (s < end && token_char(*s))
        s++;
    *len = (size_t)(s - t);
    if (s < end && !ows(*s) && *s != '(')
        *len = 0; /* a byte no token has */
    return t;
}

enum via_verdict via_check(const char *via, int too_long, const char *self, char *chain,
                           size_t *hops)
{
    size_t n = 0, len = 0;
    chain[0] = '\0';
    *hops = 0;
    if (too_long) {
        *hops = VIA_MAX_HOPS + 1;
        return VIA_TOO_MANY;
    }
    for (const char *s = via; s && *s;) {
        const char *end = entry_end(s);
        size_t plen, rlen;
        const char *proto = next_token(s, end, &plen);
        const char *by = next_token(proto + plen, end, &rlen);
        const char *after = by + rlen;
        while (after < end && ows(*after))
            after++;
        int blank = plen == 0 && proto == end;
        int well_formed = plen && plen <= PROTOCOL_MAX && rlen && rlen <= RECEIVED_BY_MAX &&
                          (after == end || *after == '(');
        if (!blank) {
            n++;
            if (well_formed && self && strlen(self) == rlen && !strncasecmp(by, self, rlen)) {
                *hops = n;
                return VIA_LOOP;
            }
            if (well_formed && n <= VIA_MAX_HOPS &&
                len + plen + rlen + 4 < VIA_CHAIN_MAX) {
                if (len) {
                    memcpy(chain + len, ", ", 2);
                    len += 2;
                }
                memcpy(chain + len, proto, plen);
                len += plen;
                chain[len++] = ' ';
                memcpy(chain + len, by, rlen);
                len += rlen;
                chain[len] = '\0';
            }
        }
        s = *end ? end + 1 : end;
    }
    *hops = n;
    return n > VIA_MAX_HOPS ? VIA_TOO_MANY : VIA_OK;
}
