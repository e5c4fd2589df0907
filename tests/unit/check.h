/* SPDX-License-Identifier: Apache-2.0 */
/* Minimal assertions for unit tests. A failing check prints file:line and the test carries on;
 * CHECK_DONE() at the end of main() makes the process exit 1 if anything failed. */
#ifndef REGCACHE_TESTS_CHECK_H
#define REGCACHE_TESTS_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static unsigned check_total, check_failed;

#define CHECK_FAIL_(...)                                                                           \
    do {                                                                                           \
        check_failed++;                                                                            \
        fprintf(stderr, "%s:%d: check failed: ", __FILE__, __LINE__);                              \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        check_total++;                                                                             \
        if (!(cond))                                                                               \
            CHECK_FAIL_("%s", #cond);                                                              \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        check_total++;                                                                             \
        if (a_ != b_)                                                                              \
            CHECK_FAIL_("%s == %s (%lld vs %lld)", #a, #b, a_, b_);                                \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                                         \
    do {                                                                                           \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                           \
        check_total++;                                                                             \
        if (a_ != b_)                                                                              \
            CHECK_FAIL_("%s == %s (%" PRIu64 " vs %" PRIu64 ")", #a, #b, a_, b_);                  \
    } while (0)

/* Either may be NULL; two NULLs are equal. */
#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        check_total++;                                                                             \
        if ((a_ == NULL || b_ == NULL) ? a_ != b_ : strcmp(a_, b_) != 0)                           \
            CHECK_FAIL_("%s == %s (\"%s\" vs \"%s\")", #a, #b, a_ ? a_ : "(null)",                 \
                        b_ ? b_ : "(null)");                                                       \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        check_total++;                                                                             \
        if (!h_ || !strstr(h_, n_))                                                                \
            CHECK_FAIL_("\"%s\" contains \"%s\"", h_ ? h_ : "(null)", n_);                         \
    } while (0)

#define CHECK_DONE()                                                                               \
    do {                                                                                           \
        fprintf(stderr, "%s: %u checks, %u failed\n", __FILE__, check_total, check_failed);        \
        return check_failed ? 1 : 0;                                                               \
    } while (0)

#endif
