/* SPDX-License-Identifier: Apache-2.0 */
/* stderr logging. Each call builds its whole line first and emits it with a single write(), so
 * lines from different threads do not interleave. */
#include "util/log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/escape.h"

#define LOG_LINE_MAX 4096

static atomic_int min_level = LOG_INFO;
static atomic_int format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const level_json[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
    atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
}

void log_set_format(enum log_format f)
{
    atomic_store_explicit(&format, (int)f, memory_order_relaxed);
}

enum log_format log_get_format(void)
{
    return (enum log_format)atomic_load_explicit(&format, memory_order_relaxed);
}

static void write_all(const char *line, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

/* Lines a thread holds (log_hold_line) until log_flush: at most PIPE_BUF bytes, so that each
 * write of them is whole beside other threads' writes to a pipe. */
static __thread char held[PIPE_BUF];
static __thread size_t held_len;

void log_flush(void)
{
    size_t n = held_len;
    held_len = 0;
    if (n)
        write_all(held, n);
}

void log_hold_line(const char *line, size_t len)
{
    if (held_len + len > sizeof(held))
        log_flush();
    if (len > sizeof(held)) {
        write_all(line, len);
        return;
    }
    memcpy(held + held_len, line, len);
    held_len += len;
}

void log_write_line(const char *line, size_t len)
{
    log_flush(); /* what this thread held comes first */
    write_all(line, len);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX], line[LOG_LINE_MAX + 64];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    size_t len;
    int n, saved_errno = errno; /* callers often log and then look at errno */
    int lvl = (int)level;

    if (lvl < LOG_DEBUG)
        lvl = LOG_DEBUG;
    if (lvl > LOG_ERROR)
        lvl = LOG_ERROR;
    if (lvl < atomic_load_explicit(&min_level, memory_order_relaxed))
        return;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        goto out;
    len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1; /* truncated */
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
        len--;
    msg[len] = '\0';

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    if (n < 0)
        goto out;
    if (log_get_format() == LOG_FORMAT_JSON) {
        /* {"time":"<ts>","level":"<l>","msg":"<escaped>"}: the message escaped into what is
         * left of line, less the closing "}\n */
        char head[96];
        int h = snprintf(head, sizeof(head), "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", line,
                         level_json[lvl]);
        if (h < 0 || (size_t)h >= sizeof(head))
            goto out;
        memcpy(line, head, (size_t)h);
        size_t pos = (size_t)h;
        pos += escape_json(line + pos, sizeof(line) - pos - 3, msg, len);
        memcpy(line + pos, "\"}\n", 3);
        log_write_line(line, pos + 3);
        goto out;
    }
    size_t pos = (size_t)n;
    n = snprintf(line + pos, sizeof(line) - pos, " %s ", level_names[lvl]);
    if (n < 0)
        goto out;
    pos += (size_t)n;
    /* One line per call: neutralise embedded control characters. */
    for (size_t i = 0; i < len && pos < sizeof(line) - 1; i++) {
        unsigned char c = (unsigned char)msg[i];
        line[pos++] = (char)(((c < 0x20 && c != '\t') || c == 0x7f) ? '?' : c);
    }
    line[pos++] = '\n';
    log_write_line(line, pos);
out:
    errno = saved_errno;
}
