/* SPDX-License-Identifier: Apache-2.0 */
/* Telling a service manager how the daemon is doing: sd_notify(3)'s datagram protocol, without
 * libsystemd. With `Type=notify` systemd passes $NOTIFY_SOCKET, an AF_UNIX datagram socket
 * ("/path", or "@name" in the abstract namespace); each message is one datagram of
 * newline-separated assignments such as "READY=1\nSTATUS=serving". Without $NOTIFY_SOCKET every
 * call does nothing.
 *
 * The daemon sends READY=1 once it serves (after the start-up reconciliation), RELOADING=1
 * with MONOTONIC_USEC= at SIGHUP and READY=1 when the reload is done, STOPPING=1 at
 * SIGTERM/SIGINT, EXTEND_TIMEOUT_USEC= while a long start-up makes progress, and STATUS= lines
 * an operator sees in `systemctl status`.
 *
 * Loop thread (the sends are non-blocking: a manager that does not read loses messages rather
 * than stalling the loop). */
#ifndef REGCACHE_DAEMON_NOTIFY_H
#define REGCACHE_DAEMON_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#define NOTIFY_MESSAGE_MAX 1024 /* one datagram; STATUS= text past it is cut */

/* Parses a $NOTIFY_SOCKET value into an address: "/path" or "@abstract" (the '@' becomes the
 * leading NUL of an abstract name). 0, -EINVAL (empty or too long) or -EAFNOSUPPORT (another
 * kind, such as "vsock:"). */
int notify_address(const char *value, struct sockaddr_un *sa, socklen_t *len);

/* RELOADING=1 with MONOTONIC_USEC=mono_us (CLOCK_MONOTONIC, as systemd's reload protocol
 * wants) and STATUS=status into out. Returns the length, or -ENOSPC. */
int notify_reloading_message(char *out, size_t len, uint64_t mono_us, const char *status);

/* Sends msg as one datagram to $NOTIFY_SOCKET. 1 when sent, 0 when there is no
 * $NOTIFY_SOCKET, -errno on failure (logged at debug level). */
int notify_send(const char *msg);
/* notify_send of a formatted message (cut at NOTIFY_MESSAGE_MAX). */
int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
