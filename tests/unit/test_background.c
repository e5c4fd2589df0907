/* SPDX-License-Identifier: Apache-2.0 */
/* Lowering a thread's priority for background work only when it can be given back. */
#include "check.h"
#include "util/background.h"

#include <errno.h>
#include <stdio.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int my_nice(void)
{
    return getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}

static void drop_cap_sys_nice(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2] = {{0}};
    syscall(SYS_capget, &h, d);
    d[CAP_SYS_NICE / 32].effective &= ~(1u << (CAP_SYS_NICE % 32));
    syscall(SYS_capset, &h, d);
}

/* In a child without CAP_SYS_NICE and with RLIMIT_NICE rlim: what background_enter returns,
 * whether the niceness moved to 19 in between and came back. Exit status: 0 as expected. */
static int unprivileged(rlim_t rlim, int want_rc)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {rlim, rlim};
        if (setrlimit(RLIMIT_NICE, &rl))
            _exit(10);
        drop_cap_sys_nice();
        int before = my_nice();
        struct background b;
        int rc = background_enter(&b);
        if (rc != want_rc)
            _exit(11);
        int during = my_nice();
        if (rc == 0 && during != BACKGROUND_NICE)
            _exit(12);
        if (rc != 0 && during != before)
            _exit(13);
        if (background_leave(&b) || my_nice() != before)
            _exit(14);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

int main(void)
{
    /* the rule: CAP_SYS_NICE, an unlimited rlimit, or one reaching back to the old niceness */
    CHECK_EQ_INT(background_can_return(0, 0, 1), 1);
    CHECK_EQ_INT(background_can_return(0, RLIM_INFINITY, 0), 1);
    CHECK_EQ_INT(background_can_return(0, 0, 0), 0);
    CHECK_EQ_INT(background_can_return(0, 19, 0), 0);
    CHECK_EQ_INT(background_can_return(0, 20, 0), 1);
    CHECK_EQ_INT(background_can_return(5, 15, 0), 1);
    CHECK_EQ_INT(background_can_return(-5, 20, 0), 0);
    CHECK_EQ_INT(background_can_return(-5, 25, 0), 1);

    /* with CAP_SYS_NICE (this test runs as root): lowered and given back */
    int before = my_nice();
    struct background b;
    CHECK_EQ_INT(background_enter(&b), 0);
    CHECK_EQ_INT(b.lowered, before < BACKGROUND_NICE);
    CHECK_EQ_INT(my_nice(), BACKGROUND_NICE);
    CHECK_EQ_INT(background_leave(&b), 0);
    CHECK_EQ_INT(my_nice(), before);
    CHECK_EQ_INT(background_leave(&b), 0); /* twice: nothing more */

    if (geteuid() == 0 && before == 0) {
        /* unprivileged with no RLIMIT_NICE: it could not come back, so nothing is lowered */
        CHECK_EQ_INT(unprivileged(0, -EPERM), 0);
        /* RLIMIT_NICE 20 (systemd's LimitNICE=+0): lowered and given back, where this
         * machine's hard limit lets the child set it (10: it could not) */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NICE, &rl) == 0 && (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= 20))
            CHECK_EQ_INT(unprivileged(20, 0), 0);
        else
            fprintf(stderr, "RLIMIT_NICE's hard limit is below 20 here: the rlimit case is "
                            "checked by background_can_return only\n");
    }
    CHECK_DONE();
}
