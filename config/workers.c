/* SPDX-License-Identifier: Apache-2.0 */
/* What `workers: auto` means on this machine: one event loop per CPU the process may run on.
 * That is the affinity mask (taskset, systemd's CPUAffinity=, a container's cpuset), lowered to
 * the cgroup v2 CPU quota (cpu.max "quota period", systemd's CPUQuota=, docker --cpus) rounded
 * up: more loops than the quota allows only take turns on the same CPU time. */
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"

/* The quota of the cgroup this process is in, in CPUs rounded up; 0 when there is none (or no
 * cgroup v2 to read). Only the process's own cgroup is read: a parent's quota, which systemd
 * does not use for a service's CPUQuota=, is left alone. */
static unsigned quota_cpus(void)
{
    char path[512] = "/sys/fs/cgroup", line[512];
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return 0;
    int found = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "0::", 3) == 0) { /* the cgroup v2 hierarchy */
            line[strcspn(line, "\n")] = '\0';
            if (strlen(line + 3) + sizeof("/sys/fs/cgroup/cpu.max") < sizeof(path)) {
                strcat(path, strcmp(line + 3, "/") ? line + 3 : "");
                found = 1;
            }
        }
    }
    fclose(f);
    if (!found)
        return 0;
    strcat(path, "/cpu.max");
    if (!(f = fopen(path, "re")))
        return 0;
    char quota[32] = "";
    unsigned long long period = 0;
    int n = fscanf(f, "%31s %llu", quota, &period);
    fclose(f);
    unsigned long long q;
    if (n != 2 || !period || strcmp(quota, "max") == 0 || sscanf(quota, "%llu", &q) != 1 || !q)
        return 0;
    return (unsigned)((q + period - 1) / period);
}

unsigned config_auto_workers(void)
{
    cpu_set_t set;
    unsigned n = 1;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        n = (unsigned)CPU_COUNT(&set);
    unsigned quota = quota_cpus();
    if (quota && quota < n)
        n = quota;
    return n > CONFIG_WORKERS_MAX ? CONFIG_WORKERS_MAX : n;
}

unsigned config_workers(const struct config *c)
{
    return c->workers ? (unsigned)c->workers : config_auto_workers();
}
