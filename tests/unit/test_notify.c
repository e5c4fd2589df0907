/* SPDX-License-Identifier: Apache-2.0 */
/* The service-manager notifications: $NOTIFY_SOCKET's address forms, the reload message, and
 * one datagram per message arriving on a real AF_UNIX socket (a path and an abstract name). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "daemon/notify.h"

static void test_address(void)
{
    struct sockaddr_un sa;
    socklen_t len = 0;
    CHECK_EQ_INT(notify_address("/run/systemd/notify", &sa, &len), 0);
    CHECK_EQ_INT(sa.sun_family, AF_UNIX);
    CHECK_STR(sa.sun_path, "/run/systemd/notify");
    CHECK_EQ_INT(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);

    CHECK_EQ_INT(notify_address("@regcache/notify", &sa, &len), 0);
    CHECK_EQ_INT(sa.sun_path[0], '\0');
    CHECK(memcmp(sa.sun_path + 1, "regcache/notify", 15) == 0);
    /* an abstract name is exactly its bytes: no trailing NUL counted */
    CHECK_EQ_INT(len, offsetof(struct sockaddr_un, sun_path) + 16);

    CHECK_EQ_INT(notify_address("vsock:2:1234", &sa, &len), -EAFNOSUPPORT);
    CHECK_EQ_INT(notify_address("relative/path", &sa, &len), -EAFNOSUPPORT);
    CHECK_EQ_INT(notify_address("", &sa, &len), -EINVAL);
    CHECK_EQ_INT(notify_address("@", &sa, &len), -EINVAL);
    CHECK_EQ_INT(notify_address(NULL, &sa, &len), -EINVAL);
    char longer[200];
    memset(longer, 'a', sizeof(longer) - 1);
    longer[0] = '/';
    longer[sizeof(longer) - 1] = '\0';
    CHECK_EQ_INT(notify_address(longer, &sa, &len), -EINVAL);
}

static void test_reloading_message(void)
{
    char msg[128];
    int n = notify_reloading_message(msg, sizeof(msg), 123456789, "reloading");
    CHECK_STR(msg, "RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=reloading");
    CHECK_EQ_INT(n, strlen(msg));
    char small[16];
    CHECK_EQ_INT(notify_reloading_message(small, sizeof(small), 1, "x"), -ENOSPC);
}

/* A datagram socket bound at name (abstract when it starts with '@'), and $NOTIFY_SOCKET. */
static int listen_at(const char *name)
{
    struct sockaddr_un sa;
    socklen_t len;
    if (notify_address(name, &sa, &len))
        return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len)) {
        perror("bind");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setenv("NOTIFY_SOCKET", name, 1);
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char buf[NOTIFY_MESSAGE_MAX + 1];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    CHECK(n >= 0);
    buf[n < 0 ? 0 : n] = '\0';
    CHECK_STR(buf, want);
}

static void test_send(void)
{
    unsetenv("NOTIFY_SOCKET");
    CHECK_EQ_INT(notify_send("READY=1"), 0); /* nobody to tell: nothing done */

    char path[108];
    snprintf(path, sizeof(path), "/tmp/regcache-test-notify-%ld.sock", (long)getpid());
    unlink(path);
    int fd = listen_at(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK_EQ_INT(notify_send("READY=1\nSTATUS=serving"), 1);
        CHECK_EQ_INT(notify_sendf("STOPPING=1\nSTATUS=%s %d", "finishing", 3), 1);
        expect_datagram(fd, "READY=1\nSTATUS=serving"); /* one datagram each, in order */
        expect_datagram(fd, "STOPPING=1\nSTATUS=finishing 3");
        close(fd);
        unlink(path);
        /* the socket went away: a failure, reported, not a crash or a block */
        CHECK(notify_send("READY=1") < 0);
    }

    char abstract[64];
    snprintf(abstract, sizeof(abstract), "@regcache-test-notify-%ld", (long)getpid());
    fd = listen_at(abstract);
    CHECK(fd >= 0);
    if (fd >= 0) {
        char msg[128];
        CHECK(notify_reloading_message(msg, sizeof(msg), 42, "reloading") > 0);
        CHECK_EQ_INT(notify_send(msg), 1);
        expect_datagram(fd, "RELOADING=1\nMONOTONIC_USEC=42\nSTATUS=reloading");
        close(fd);
    }

    setenv("NOTIFY_SOCKET", "vsock:2:1", 1);
    CHECK_EQ_INT(notify_send("READY=1"), -EAFNOSUPPORT);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    test_address();
    test_reloading_message();
    test_send();
    CHECK_DONE();
}
