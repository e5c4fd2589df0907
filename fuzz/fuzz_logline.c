/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: untrusted bytes into a log line (JSON and text escaping) and an X-Forwarded-For
 * chain into a client address. The contracts: an escaped JSON string is well-formed UTF-8 with
 * no control byte, quote or lone backslash; an escaped text field is printable ASCII with no
 * bare quote; a forwarded client is an address. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#include "util/cidr.h"
#include "util/escape.h"

static void check_json(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"')
            abort();
        if (c == '\\') {
            if (i + 1 >= n || !strchr("\"\\u", s[i + 1]))
                abort();
            i += s[i + 1] == 'u' ? 6 : 2;
            continue;
        }
        size_t k = utf8_sequence((const unsigned char *)s + i, n - i);
        if (!k)
            abort();
        i += k;
    }
}

static void check_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f)
            abort();
        if (c == '\\')
            i++; /* the escaped character */
        else if (c == '"')
            abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    size_t outlen = 1 + (size ? data[0] : 0) * 4; /* small outputs test the cut too */
    char *out = malloc(outlen);
    if (!out)
        return 0;
    size_t n = escape_json(out, outlen, (const char *)data, size);
    if (n >= outlen || out[n] != '\0' || strlen(out) != n)
        abort();
    check_json(out, n);
    n = escape_text(out, outlen, (const char *)data, size);
    if (n >= outlen || out[n] != '\0')
        abort();
    check_text(out, n);
    free(out);

    char *s = fuzz_cstring(data, size);
    if (!s)
        return 0;
    struct cidr trusted[2];
    cidr_parse("10.0.0.0/8", &trusted[0]);
    cidr_parse("fd00::/8", &trusted[1]);
    char client[CIDR_TEXT_MAX];
    struct ip_addr ip;
    if (cidr_forwarded_client(s, trusted, 2, client, sizeof(client)) == 0 &&
        ip_parse(client, strlen(client), &ip))
        abort();
    struct cidr c;
    if (cidr_parse(s, &c) == 0 && c.bits > 128)
        abort();
    free(s);
    return 0;
}
