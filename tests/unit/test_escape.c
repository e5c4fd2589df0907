/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for util/escape.c: every log field stays on its line and parses. */
#include <string.h>

#include "check.h"
#include "util/escape.h"

static char out[256];

static const char *json(const char *s, size_t len)
{
    escape_json(out, sizeof(out), s, len);
    return out;
}

static const char *text(const char *s, size_t len)
{
    escape_text(out, sizeof(out), s, len);
    return out;
}

#define J(lit) json((lit), sizeof(lit) - 1)
#define T(lit) text((lit), sizeof(lit) - 1)

int main(void)
{
    CHECK_STR(J("curl/8.5.0"), "curl/8.5.0");
    CHECK_STR(J("a\"b\\c"), "a\\\"b\\\\c");
    CHECK_STR(J("\x01\n\r\t\x7f"), "\\u0001\\u000a\\u000d\\u0009\\u007f");
    CHECK_STR(J("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xb3"),
              "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xb3");
    /* ill-formed UTF-8, one replacement per byte */
    CHECK_STR(J("\xff"), "\\ufffd");
    CHECK_STR(J("\xc3"), "\\ufffd");                                  /* truncated */
    CHECK_STR(J("\xc0\xaf"), "\\ufffd\\ufffd");                       /* overlong '/' */
    CHECK_STR(J("\xe0\x80\xaf"), "\\ufffd\\ufffd\\ufffd");            /* overlong */
    CHECK_STR(J("\xed\xa0\x80"), "\\ufffd\\ufffd\\ufffd");            /* a surrogate */
    CHECK_STR(J("\xf4\x90\x80\x80"), "\\ufffd\\ufffd\\ufffd\\ufffd"); /* past U+10FFFF */
    CHECK_STR(J("\x80x"), "\\ufffdx");
    CHECK_STR(J("a\0b"), "a\\u0000b");
    /* cut short on an escape's boundary, never inside one */
    char small[8];
    CHECK_EQ_U64(escape_json(small, sizeof(small), "ab\"cd\"", 6), 6);
    CHECK_STR(small, "ab\\\"cd");
    CHECK_EQ_U64(escape_json(small, sizeof(small), "abcde\x01", 6), 5);
    CHECK_STR(small, "abcde");
    CHECK_EQ_U64(escape_json(small, sizeof(small), "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 9), 6);

    CHECK_STR(T("Mozilla/5.0 (X11)"), "Mozilla/5.0 (X11)");
    CHECK_STR(T("a\"b\\c"), "a\\\"b\\\\c");
    CHECK_STR(T("x\ny\x01\x7f\xc3\xa9"), "x\\x0Ay\\x01\\x7F\\xC3\\xA9");
    CHECK_EQ_U64(escape_text(small, sizeof(small), "abcd\n", 5), 4);
    CHECK_STR(small, "abcd");

    CHECK_EQ_U64(utf8_sequence((const unsigned char *)"\xc3\xa9", 2), 2);
    CHECK_EQ_U64(utf8_sequence((const unsigned char *)"\xc3\xa9", 1), 0);
    CHECK_EQ_U64(utf8_sequence((const unsigned char *)"\xf0\x9f\x90\xb3", 4), 4);
    CHECK_EQ_U64(utf8_sequence((const unsigned char *)"\xc1\xbf", 2), 0);
    CHECK_DONE();
}
