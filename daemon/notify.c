/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

int notify_address(const char *value, struct sockaddr_un *sa, socklen_t *len)
{
    size_t n = value ? strlen(value) : 0;
    if (n < 2)
        return -EINVAL;
    if (value[0] != '/' && value[0] != '@')
        return -EAFNOSUPPORT; /* vsock:, or anything else this daemon does not speak */
    if (n >= sizeof(sa->sun_path))
        return -EINVAL;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, value, n);
    if (value[0] == '@') {
        sa->sun_path[0] = '\0'; /* abstract: the name is exactly the bytes after the NUL */
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

int notify_reloading_message(char *out, size_t len, uint64_t mono_us, const char *status)
{
    int n = snprintf(out, len, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s",
                     (unsigned long long)mono_us, status);
    return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

int notify_send(const char *msg)
{
    const char *where = getenv("NOTIFY_SOCKET");
    if (!where || !where[0])
        return 0;
    struct sockaddr_un sa;
    socklen_t sl;
    int r = notify_address(where, &sa, &sl);
    if (r) {
        log_debug("NOTIFY_SOCKET=%s: %s", where, strerror(-r));
        return r;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r = -errno;
        log_debug("NOTIFY_SOCKET: socket: %s", strerror(-r));
        return r;
    }
    ssize_t sent = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, sl);
    r = sent < 0 ? -errno : 1;
    close(fd);
    if (r < 0)
        log_debug("NOTIFY_SOCKET=%s: %s", where, strerror(-r));
    return r;
}

int notify_sendf(const char *fmt, ...)
{
    char msg[NOTIFY_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    return notify_send(msg);
}
