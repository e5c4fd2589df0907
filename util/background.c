/* SPDX-License-Identifier: Apache-2.0 */
/* Lowering and giving back a thread's CPU priority around long background jobs. */
#include "util/background.h"

#include <errno.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int background_can_return(int from, unsigned long long rlimit_nice, int cap_sys_nice)
{
    if (cap_sys_nice)
        return 1;
    if (rlimit_nice == (unsigned long long)RLIM_INFINITY)
        return 1;
    /* RLIMIT_NICE r lets an unprivileged thread go down to niceness 20 - r */
    return rlimit_nice <= 40 && from >= 20 - (int)rlimit_nice;
}

static int has_cap_sys_nice(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2] = {{0}};
    if (syscall(SYS_capget, &h, d))
        return 0;
    return (d[CAP_SYS_NICE / 32].effective >> (CAP_SYS_NICE % 32)) & 1;
}

int background_enter(struct background *b)
{
    b->lowered = 0;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int now = getpriority(PRIO_PROCESS, (id_t)tid);
    if (now == -1 && errno)
        return -errno;
    b->nice = now;
    if (now >= BACKGROUND_NICE)
        return 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NICE, &rl))
        return -errno;
    if (!background_can_return(now, (unsigned long long)rl.rlim_cur, has_cap_sys_nice()))
        return -EPERM;
    if (setpriority(PRIO_PROCESS, (id_t)tid, BACKGROUND_NICE))
        return -errno;
    b->lowered = 1;
    return 0;
}

int background_leave(struct background *b)
{
    if (!b->lowered)
        return 0;
    b->lowered = 0;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    return setpriority(PRIO_PROCESS, (id_t)tid, b->nice) ? -errno : 0;
}
