/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for prefetch/schedule.c: spread, windows, the budget window. */
#include <stdint.h>

#include "check.h"
#include "prefetch/schedule.h"

static void test_spread(void)
{
    CHECK_EQ_U64(schedule_spread("library/alpine:3.20", 1000),
                 schedule_spread("library/alpine:3.20", 1000)); /* deterministic */
    CHECK(schedule_spread("library/alpine:3.20", 1000) < 1000);
    CHECK_EQ_U64(schedule_spread("x", 0), 0);
    /* different references land apart (for these two, at least) */
    CHECK(schedule_spread("library/alpine:3.20", 3600000) !=
          schedule_spread("library/postgres:16*", 3600000));
}

static void test_windows(void)
{
    struct prefetch_window none = {-1, -1}, night = {60, 300}, over = {1380, 120};
    CHECK(schedule_in_window(&none, 720));
    CHECK(schedule_in_window(&night, 60));
    CHECK(schedule_in_window(&night, 299));
    CHECK(!schedule_in_window(&night, 300));
    CHECK(!schedule_in_window(&night, 59));
    CHECK(schedule_in_window(&over, 1439));
    CHECK(schedule_in_window(&over, 0));
    CHECK(!schedule_in_window(&over, 120));
    /* inside: due as it is; outside: the next opening plus a spread within half the window */
    CHECK_EQ_U64(schedule_next(&night, 1000000, 90, 0, "r"), 1000000);
    uint64_t due = 10000000; /* at 12:00:30 local */
    uint64_t next = schedule_next(&night, due, 720, 30, "r");
    uint64_t opening = due + (uint64_t)(1440 - 720 + 60) * 60000 - 30000;
    CHECK(next >= opening && next < opening + 120 * 60000);
}

static void test_budget_window(void)
{
    struct prefetch_window none = {-1, -1}, night = {60, 300};
    CHECK_EQ_U64(schedule_budget_window(&none, 1000, 12345, 0, 0), 12000);
    /* 02:30:15.250 with a window from 01:00: opened 90 min 15.25 s ago, whatever the ms */
    uint64_t now = 100000000250ULL;
    uint64_t w = schedule_budget_window(&night, 0, now, 150, 15);
    CHECK_EQ_U64(w, now - 90 * 60000 - 15000 - 250);
    CHECK_EQ_U64(schedule_budget_window(&night, 0, now + 500, 150, 15), w);
}

int main(void)
{
    test_spread();
    test_windows();
    test_budget_window();
    CHECK_DONE();
}
