/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for util/parse.c: durations, sizes, listen addresses. */
#include <errno.h>
#include <stdint.h>

#include "check.h"
#include "util/parse.h"

static int dur(const char *s, uint64_t *v)
{
    *v = 12345; /* sentinel: must be untouched on failure */
    return parse_duration_ms(s, v);
}

static int size(const char *s, uint64_t *v)
{
    *v = 12345;
    return parse_size_bytes(s, v);
}

static void test_durations(void)
{
    static const char *const bad[] = {
        "",
        "30",
        "-5s",
        "+5s",
        " 5s",
        "5s ",
        "5 s",
        "5S",
        "5sec",
        "5ms5",
        "1.5s",
        "s",
        "ms",
        "5us",
        "5w",
        "5mss",
        "0x10s",
        "5h ",
        "\t5s",
        "00x",
        "1s1s",
        "5M",
        "5D",
        "5H",
        "5m\n",
        "18446744073709551616ms",
        "18446744073709551615s",
        "213503982335d",
        "99999999999999999999999999d",
        "1",
        "010",
    };
    uint64_t v;

    CHECK_EQ_INT(dur("0", &v), 0);
    CHECK_EQ_U64(v, 0);
    CHECK_EQ_INT(dur("0s", &v), 0);
    CHECK_EQ_U64(v, 0);
    CHECK_EQ_INT(dur("0ms", &v), 0);
    CHECK_EQ_U64(v, 0);
    CHECK_EQ_INT(dur("500ms", &v), 0);
    CHECK_EQ_U64(v, 500);
    CHECK_EQ_INT(dur("30s", &v), 0);
    CHECK_EQ_U64(v, 30000);
    CHECK_EQ_INT(dur("5m", &v), 0);
    CHECK_EQ_U64(v, 300000);
    CHECK_EQ_INT(dur("24h", &v), 0);
    CHECK_EQ_U64(v, 86400000);
    CHECK_EQ_INT(dur("7d", &v), 0);
    CHECK_EQ_U64(v, 604800000);
    CHECK_EQ_INT(dur("1ms", &v), 0);
    CHECK_EQ_U64(v, 1);
    CHECK_EQ_INT(dur("007s", &v), 0); /* leading zeros are just digits */
    CHECK_EQ_U64(v, 7000);
    /* Largest values that fit, and one past. */
    CHECK_EQ_INT(dur("18446744073709551615ms", &v), 0);
    CHECK_EQ_U64(v, UINT64_MAX);
    CHECK_EQ_INT(dur("18446744073709551s", &v), 0);
    CHECK_EQ_U64(v, 18446744073709551000ULL);
    CHECK_EQ_INT(dur("18446744073709552s", &v), -EINVAL);
    CHECK_EQ_INT(dur("213503982334d", &v), 0);
    CHECK_EQ_U64(v, 213503982334ULL * 86400000ULL);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = dur(bad[i], &v);
        CHECK_EQ_INT(rc, -EINVAL);
        CHECK_EQ_U64(v, 12345);
        if (rc != -EINVAL)
            fprintf(stderr, "  accepted duration '%s'\n", bad[i]);
    }
    CHECK_EQ_INT(parse_duration_ms(NULL, &v), -EINVAL);
}

static void test_sizes(void)
{
    static const char *const bad[] = {
        "",
        "-1",
        "+1",
        "1.5MiB",
        "1 MiB",
        "1MiB ",
        " 1",
        "1mib",
        "1kb",
        "1KIB",
        "1K",
        "1M",
        "1Ki",
        "1iB",
        "1PiB",
        "1PB",
        "MiB",
        "1b",
        "1EiB",
        "0x10",
        "1MiB1",
        "1MiBs",
        "18446744073709551616",
        "16777216TiB",
        "18446744073709552KB",
        "99999999999999999999999999999",
    };
    uint64_t v;

    CHECK_EQ_INT(size("0", &v), 0);
    CHECK_EQ_U64(v, 0);
    CHECK_EQ_INT(size("4096", &v), 0);
    CHECK_EQ_U64(v, 4096);
    CHECK_EQ_INT(size("0B", &v), 0);
    CHECK_EQ_U64(v, 0);
    CHECK_EQ_INT(size("17B", &v), 0);
    CHECK_EQ_U64(v, 17);
    CHECK_EQ_INT(size("512KiB", &v), 0);
    CHECK_EQ_U64(v, 512ULL << 10);
    CHECK_EQ_INT(size("512MiB", &v), 0);
    CHECK_EQ_U64(v, 512ULL << 20);
    CHECK_EQ_INT(size("200GiB", &v), 0);
    CHECK_EQ_U64(v, 200ULL << 30);
    CHECK_EQ_INT(size("2TiB", &v), 0);
    CHECK_EQ_U64(v, 2ULL << 40);
    CHECK_EQ_INT(size("10KB", &v), 0);
    CHECK_EQ_U64(v, 10000);
    CHECK_EQ_INT(size("10MB", &v), 0);
    CHECK_EQ_U64(v, 10000000);
    CHECK_EQ_INT(size("10GB", &v), 0);
    CHECK_EQ_U64(v, 10000000000ULL);
    CHECK_EQ_INT(size("10TB", &v), 0);
    CHECK_EQ_U64(v, 10000000000000ULL);
    CHECK_EQ_INT(size("18446744073709551615", &v), 0);
    CHECK_EQ_U64(v, UINT64_MAX);
    CHECK_EQ_INT(size("18446744073709551615B", &v), 0);
    CHECK_EQ_U64(v, UINT64_MAX);
    CHECK_EQ_INT(size("16777215TiB", &v), 0);
    CHECK_EQ_U64(v, 16777215ULL << 40);
    CHECK_EQ_INT(size("0TiB", &v), 0);
    CHECK_EQ_U64(v, 0);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = size(bad[i], &v);
        CHECK_EQ_INT(rc, -EINVAL);
        CHECK_EQ_U64(v, 12345);
        if (rc != -EINVAL)
            fprintf(stderr, "  accepted size '%s'\n", bad[i]);
    }
    CHECK_EQ_INT(parse_size_bytes(NULL, &v), -EINVAL);
}

static void test_listen(void)
{
    static const char *const bad[] = {
        "",          "5000",      "0.0.0.0",    "0.0.0.0:",
        "0.0.0.0:0", ":0",        ":65536",     ":99999999999999999999",
        ":-1",       ":+80",      ": 80",       ":80 ",
        ":80a",      "::1:5000",  "[::1]5000",  "[::1]",
        "[]:5000",   "[::1:5000", "::5000",     "a b:80",
        "[a]b]:80",  "host]:80",  "[[::1]]:80", "host:80:90",
    };
    char host[256], long_host[300];
    int port;

    CHECK_EQ_INT(parse_listen("0.0.0.0:5000", host, &port), 0);
    CHECK_STR(host, "0.0.0.0");
    CHECK_EQ_INT(port, 5000);
    CHECK_EQ_INT(parse_listen("[::]:5000", host, &port), 0);
    CHECK_STR(host, "::");
    CHECK_EQ_INT(port, 5000);
    CHECK_EQ_INT(parse_listen("[fe80::1%eth0]:443", host, &port), 0);
    CHECK_STR(host, "fe80::1%eth0");
    CHECK_EQ_INT(port, 443);
    CHECK_EQ_INT(parse_listen(":5000", host, &port), 0);
    CHECK_STR(host, "0.0.0.0");
    CHECK_EQ_INT(port, 5000);
    CHECK_EQ_INT(parse_listen("localhost:1", host, &port), 0);
    CHECK_STR(host, "localhost");
    CHECK_EQ_INT(port, 1);
    CHECK_EQ_INT(parse_listen("127.0.0.1:65535", host, &port), 0);
    CHECK_STR(host, "127.0.0.1");
    CHECK_EQ_INT(port, 65535);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse_listen(bad[i], host, &port);
        CHECK_EQ_INT(rc, -EINVAL);
        if (rc != -EINVAL)
            fprintf(stderr, "  accepted listen '%s'\n", bad[i]);
    }
    CHECK_EQ_INT(parse_listen(NULL, host, &port), -EINVAL);

    /* host of 255 characters fits the 256-byte buffer, 256 does not. */
    memset(long_host, 'a', 255);
    strcpy(long_host + 255, ":80");
    CHECK_EQ_INT(parse_listen(long_host, host, &port), 0);
    CHECK_EQ_INT(strlen(host), 255);
    memset(long_host, 'a', 256);
    strcpy(long_host + 256, ":80");
    CHECK_EQ_INT(parse_listen(long_host, host, &port), -EINVAL);
    long_host[0] = '[';
    memset(long_host + 1, 'a', 255);
    strcpy(long_host + 256, "]:80");
    CHECK_EQ_INT(parse_listen(long_host, host, &port), 0);
    CHECK_EQ_INT(strlen(host), 255);
    long_host[0] = '[';
    memset(long_host + 1, 'a', 256);
    strcpy(long_host + 257, "]:80");
    CHECK_EQ_INT(parse_listen(long_host, host, &port), -EINVAL);
}

static void test_format_size(void)
{
    char b[32];
    CHECK_STR(format_size(0, b, sizeof(b)), "0 B");
    CHECK_STR(format_size(1023, b, sizeof(b)), "1023 B");
    CHECK_STR(format_size(1536, b, sizeof(b)), "1.5 KiB");
    CHECK_STR(format_size(12897485, b, sizeof(b)), "12.3 MiB");
    CHECK_STR(format_size(4ULL << 40, b, sizeof(b)), "4.0 TiB");
    CHECK_STR(format_size(4096ULL << 40, b, sizeof(b)), "4096.0 TiB"); /* no unit past TiB */
}

int main(void)
{
    test_durations();
    test_sizes();
    test_listen();
    test_format_size();
    CHECK_DONE();
}
