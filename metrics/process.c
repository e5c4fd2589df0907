/* SPDX-License-Identifier: Apache-2.0 */
/* The standard process_* figures, from /proc/self: a few small reads, cheap enough for a
 * scrape. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "metrics/impl.h"
#include "util/clock.h"

/* Fields of /proc/self/stat after the command name (which may hold spaces and parentheses):
 * out[0] is field 3 (state). */
static int read_stat(unsigned long long *fields, size_t n)
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len <= 0)
        return -1;
    buf[len] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p++;
    for (size_t i = 0; i < n; i++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return -1;
        if (i == 0) { /* the state letter */
            fields[i] = 0;
            p++;
            continue;
        }
        char *end;
        fields[i] = strtoull(p, &end, 10);
        if (end == p)
            return -1;
        p = end;
    }
    return 0;
}

/* field numbers (1-based, proc(5)) and their index in read_stat's out */
#define STAT_AT(field) ((field)-3)
#define STAT_UTIME 14
#define STAT_STIME 15
#define STAT_STARTTIME 22
#define STAT_VSIZE 23
#define STAT_RSS 24
#define STAT_FIELDS (STAT_AT(STAT_RSS) + 1)

void metrics__process(struct metrics_process *out)
{
    memset(out, 0, sizeof(*out));
    unsigned long long f[STAT_FIELDS];
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (read_stat(f, STAT_FIELDS) == 0) {
        if (tick > 0)
            out->cpu_us = (f[STAT_AT(STAT_UTIME)] + f[STAT_AT(STAT_STIME)]) * 1000000ull /
                          (unsigned long long)tick;
        out->vsize_bytes = f[STAT_AT(STAT_VSIZE)];
        if (page > 0)
            out->rss_bytes = f[STAT_AT(STAT_RSS)] * (unsigned long long)page;
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        uint64_t n = 0;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        out->open_fds = n ? n - 1 : 0; /* less the one opendir itself holds */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out->max_fds = rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
}

uint64_t metrics__process_start_ms(void)
{
    unsigned long long f[STAT_FIELDS];
    long tick = sysconf(_SC_CLK_TCK);
    if (tick <= 0 || read_stat(f, STAT_FIELDS))
        return 0;
    FILE *fp = fopen("/proc/stat", "re");
    if (!fp)
        return 0;
    char line[256];
    unsigned long long btime = 0;
    while (fgets(line, sizeof(line), fp))
        if (sscanf(line, "btime %llu", &btime) == 1)
            break;
    fclose(fp);
    if (!btime)
        return 0;
    return btime * 1000ull + f[STAT_AT(STAT_STARTTIME)] * 1000ull / (unsigned long long)tick;
}
