/* stderr logging. Each call builds its whole line first and emits it with a single write(), so
 * lines from different threads do not interleave. */
#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static atomic_int min_level = LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_set_level(enum log_level level)
{
    atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    size_t len, pos;
    int n, saved_errno = errno; /* callers often log and then look at errno */
    int lvl = (int)level;

    if (lvl < LOG_DEBUG)
        lvl = LOG_DEBUG;
    if (lvl > LOG_ERROR)
        lvl = LOG_ERROR;
    if (lvl < atomic_load_explicit(&min_level, memory_order_relaxed))
        return;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                 level_names[lvl]);
    if (n < 0)
        goto out;
    pos = (size_t)n;

    va_start(ap, fmt);
    n = vsnprintf(line + pos, sizeof(line) - pos - 1, fmt, ap); /* keep room for '\n' */
    va_end(ap);
    if (n < 0)
        goto out;
    len = pos + (size_t)n;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* truncated */

    /* One line per call: drop trailing newlines, neutralise embedded control characters. */
    while (len > pos && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    for (size_t i = pos; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            line[i] = '?';
    }
    line[len++] = '\n';

    for (size_t off = 0; off < len;) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
out:
    errno = saved_errno;
}
