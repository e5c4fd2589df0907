/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for util/range.c. */
#include <stdint.h>

#include "check.h"
#include "util/range.h"

#define SENTINEL 777

static uint64_t first, last;

static enum range_result rp(const char *hdr, uint64_t size)
{
    first = last = SENTINEL;
    return range_parse(hdr, size, &first, &last);
}

#define PARTIAL(hdr, size, f, l)                                                                   \
    do {                                                                                           \
        CHECK_EQ_INT(rp((hdr), (size)), RANGE_PARTIAL);                                            \
        CHECK_EQ_U64(first, (f));                                                                  \
        CHECK_EQ_U64(last, (l));                                                                   \
    } while (0)
static uint64_t complete;

static int cr(const char *hdr)
{
    first = last = complete = SENTINEL;
    return content_range_parse(hdr, &first, &last, &complete);
}

#define CR_OK(hdr, f, l, n)                                                                        \
    do {                                                                                           \
        CHECK_EQ_INT(cr(hdr), 0);                                                                  \
        CHECK_EQ_U64(first, (f));                                                                  \
        CHECK_EQ_U64(last, (l));                                                                   \
        CHECK_EQ_U64(complete, (n));                                                               \
    } while (0)
#define CR_BAD(hdr)                                                                                \
    do {                                                                                           \
        CHECK_EQ_INT(cr(hdr), -1);                                                                 \
        CHECK_EQ_U64(first, SENTINEL);                                                             \
    } while (0)

static void content_ranges(void)
{
    CR_OK("bytes 0-9/10", 0, 9, 10);
    CR_OK("bytes 31457280-67108863/67108864", 31457280, 67108863, 67108864);
    CR_OK("BYTES 5-5/6", 5, 5, 6);
    CR_OK("bytes  1 - 2 / 3", 1, 2, 3);
    CR_OK("bytes 0-18446744073709551614/18446744073709551615", 0, UINT64_MAX - 1, UINT64_MAX);
    CR_OK("bytes 007-8/09", 7, 8, 9);
    CR_BAD(NULL);
    CR_BAD("");
    CR_BAD("bytes");
    CR_BAD("bytes=0-9/10");   /* a request's form */
    CR_BAD("bytes0-9/10");
    CR_BAD("items 0-9/10");
    CR_BAD("bytes */10");     /* the 416 form */
    CR_BAD("bytes 0-9/*");    /* length unknown */
    CR_BAD("bytes 5-4/10");   /* first > last */
    CR_BAD("bytes 0-10/10");  /* last past the end */
    CR_BAD("bytes 0-0/0");
    CR_BAD("bytes 0-9/10x");
    CR_BAD("bytes 0-9/10, 11-12/13");
    CR_BAD("bytes 0-9");
    CR_BAD("bytes -9/10");
    CR_BAD("bytes 0-/10");
    CR_BAD("bytes +1-9/10");
    CR_BAD("bytes 0-9/18446744073709551616"); /* past 2^64-1 */
    CR_BAD("bytes 0-99999999999999999999999/1");
    CR_BAD("bytes 0-9/10\r\n");
}

#define FULL(hdr, size) CHECK_EQ_INT(rp((hdr), (size)), RANGE_FULL)
#define UNSAT(hdr, size) CHECK_EQ_INT(rp((hdr), (size)), RANGE_UNSATISFIABLE)

int main(void)
{
    PARTIAL("bytes=0-0", 10, 0, 0);
    PARTIAL("bytes=0-9", 10, 0, 9);
    PARTIAL("bytes=0-", 10, 0, 9);
    PARTIAL("bytes=9-", 10, 9, 9);
    PARTIAL("bytes=2-5", 10, 2, 5);
    PARTIAL("bytes=5-5", 10, 5, 5);
    PARTIAL("bytes=0-100", 10, 0, 9);                       /* last clamped */
    PARTIAL("bytes=3-1000000000000000000000000", 10, 3, 9); /* huge last clamped */
    PARTIAL("bytes=0-18446744073709551615", 10, 0, 9);
    PARTIAL("bytes=-5", 3, 0, 2); /* suffix longer than the body: all of it */
    PARTIAL("bytes=-3", 10, 7, 9);
    PARTIAL("bytes=-1", 10, 9, 9);
    PARTIAL("bytes=-10", 10, 0, 9);
    PARTIAL("bytes=-99999999999999999999999", 10, 0, 9);
    PARTIAL("bytes=0-0", 1, 0, 0);
    PARTIAL("bytes=-1", 1, 0, 0);
    PARTIAL("bytes=007-008", 10, 7, 8); /* leading zeros */
    PARTIAL("bytes= 1 - 2 ", 10, 1, 2); /* optional spaces around numbers */
    PARTIAL("bytes=\t1\t-\t2\t", 10, 1, 2);
    PARTIAL("bytes= -3", 10, 7, 9);
    PARTIAL("bytes=4- ", 10, 4, 9);
    PARTIAL("Bytes=1-2", 10, 1, 2); /* range units are case-insensitive */
    PARTIAL("BYTES=1-2", 10, 1, 2);
    PARTIAL("bytes=18446744073709551614-", UINT64_MAX, 18446744073709551614ULL,
            18446744073709551614ULL);
    PARTIAL("bytes=-1", UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 1);

    /* Starts at or past the end, suffix of 0, or empty body. */
    UNSAT("bytes=5-", 5);
    UNSAT("bytes=5-10", 5);
    UNSAT("bytes=10-20", 5);
    UNSAT("bytes=-0", 5);
    UNSAT("bytes=-000", 5);
    UNSAT("bytes=0-0", 0);
    UNSAT("bytes=0-", 0);
    UNSAT("bytes=-5", 0);
    UNSAT("bytes=99999999999999999999999-", 10);
    UNSAT("bytes=18446744073709551615-18446744073709551615", 10);
    UNSAT("bytes=99999999999999999999998-99999999999999999999999", 10);
    UNSAT("bytes=18446744073709551615-", UINT64_MAX);

    /* Ignored: absent, invalid, other units, several ranges. */
    FULL(NULL, 10);
    FULL(NULL, 0);
    FULL("", 10);
    FULL("bytes=3-1", 10);
    FULL("bytes=3-1", 0); /* invalid wins over empty body */
    FULL("bytes=99999999999999999999999-99999999999999999999998", 10); /* both saturate */
    FULL("bytes=18446744073709551616-18446744073709551615", 10);
    FULL("bytes=0-1,3-4", 10);
    FULL("bytes=0-1, 3-4", 10);
    FULL("bytes=0-1,", 10);
    FULL("bytes=,0-1", 10);
    FULL("bytes=-", 10);
    FULL("bytes=", 10);
    FULL("bytes", 10);
    FULL("bytes 0-1", 10);
    FULL("bytes=1", 10);
    FULL("bytes=--1", 10);
    FULL("bytes=1--2", 10);
    FULL("bytes=-1-2", 10);
    FULL("bytes=+1-2", 10);
    FULL("bytes=1-+2", 10);
    FULL("bytes=0x1-2", 10);
    FULL("bytes=1 2-3", 10);
    FULL("bytes=a-b", 10);
    FULL("bytes=1-2x", 10);
    FULL("bytes=1.0-2", 10);
    FULL("items=0-1", 10);
    FULL("bytesx=0-1", 10);
    FULL("byte=0-1", 10);
    FULL("=0-1", 10);
    FULL("bytes=1-2\r\n", 10);
    CHECK_EQ_U64(first, SENTINEL); /* outputs untouched when not PARTIAL */
    CHECK_EQ_U64(last, SENTINEL);
    UNSAT("bytes=5-", 5);
    CHECK_EQ_U64(first, SENTINEL);
    CHECK_EQ_U64(last, SENTINEL);

    content_ranges();
    CHECK_DONE();
}
