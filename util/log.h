/* SPDX-License-Identifier: Apache-2.0 */
/* Logging to stderr: one line per event. As text, a UTC timestamp, the level and the message;
 * as JSON, one object per line: {"time":"...Z","level":"info","msg":"..."}, every string
 * escaped so that each line parses whatever the message holds. */
#ifndef REGCACHE_UTIL_LOG_H
#define REGCACHE_UTIL_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };

void log_set_level(enum log_level level);
void log_set_format(enum log_format format);
enum log_format log_get_format(void);
/* Writes line (len bytes, ending in '\n') to stderr with one write(), as log_msg does. */
void log_write_line(const char *line, size_t len);
/* Holds line for this thread's next log_flush (or the next line written, or the holding space
 * full), so that lines made in one turn of an event loop go out in one write(). */
void log_hold_line(const char *line, size_t len);
void log_flush(void);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
