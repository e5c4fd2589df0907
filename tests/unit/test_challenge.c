/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for upstream/challenge.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "check.h"
#include "upstream/challenge.h"

static struct auth_challenge ch;

static int parse(const char *v)
{
    memset(&ch, 'x', sizeof(ch)); /* garbage in, so leftovers show up */
    return auth_challenge_parse(v, &ch);
}

static void check_cleared(void)
{
    CHECK_EQ_INT(ch.scheme, AUTH_SCHEME_NONE);
    CHECK_STR(ch.realm, "");
    CHECK_STR(ch.service, "");
    CHECK_STR(ch.scope, "");
    CHECK_STR(ch.error, "");
}

#define BAD(v)                                                                                     \
    do {                                                                                           \
        CHECK_EQ_INT(parse(v), -EINVAL);                                                           \
        check_cleared();                                                                           \
    } while (0)

static void test_good(void)
{
    CHECK_EQ_INT(
        parse("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\""
              ",scope=\"repository:library/alpine:pull\""),
        0);
    CHECK_EQ_INT(ch.scheme, AUTH_SCHEME_BEARER);
    CHECK_STR(ch.realm, "https://auth.docker.io/token");
    CHECK_STR(ch.service, "registry.docker.io");
    CHECK_STR(ch.scope, "repository:library/alpine:pull");
    CHECK_STR(ch.error, "");

    CHECK_EQ_INT(parse("Basic realm=\"Registry Realm\""), 0);
    CHECK_EQ_INT(ch.scheme, AUTH_SCHEME_BASIC);
    CHECK_STR(ch.realm, "Registry Realm");
    CHECK_STR(ch.service, "");

    /* Basic without realm is accepted (only Bearer needs one). */
    CHECK_EQ_INT(parse("Basic"), 0);
    CHECK_EQ_INT(ch.scheme, AUTH_SCHEME_BASIC);
    CHECK_STR(ch.realm, "");
    CHECK_EQ_INT(parse("basic charset=\"UTF-8\""), 0);
    CHECK_EQ_INT(ch.scheme, AUTH_SCHEME_BASIC);

    /* Mixed-case scheme and parameter names. */
    CHECK_EQ_INT(parse("bEaReR ReAlM=\"r\", SERVICE=s"), 0);
    CHECK_EQ_INT(ch.scheme, AUTH_SCHEME_BEARER);
    CHECK_STR(ch.realm, "r");
    CHECK_STR(ch.service, "s");
    CHECK_EQ_INT(parse("BASIC realm=x"), 0);
    CHECK_EQ_INT(ch.scheme, AUTH_SCHEME_BASIC);

    /* Escaped quotes and backslashes in quoted strings. */
    CHECK_EQ_INT(parse("Bearer realm=\"a\\\"b\\\\c\\d\",scope=\"x\\,y\""), 0);
    CHECK_STR(ch.realm, "a\"b\\cd");
    CHECK_STR(ch.scope, "x,y");
    CHECK_EQ_INT(parse("Bearer realm=\"a,b=c\",service=\"\""), 0);
    CHECK_STR(ch.realm, "a,b=c");
    CHECK_STR(ch.service, "");

    /* error="insufficient_scope", as sent with a 401 for a token that lacks push. */
    CHECK_EQ_INT(parse("Bearer realm=\"https://auth.example/token\",service=\"reg\","
                       "scope=\"repository:a/b:pull,push\",error=\"insufficient_scope\""),
                 0);
    CHECK_STR(ch.error, "insufficient_scope");
    CHECK_STR(ch.scope, "repository:a/b:pull,push");
    CHECK_EQ_INT(parse("Bearer error=invalid_token, realm=\"r\""), 0);
    CHECK_STR(ch.error, "invalid_token");
    CHECK_STR(ch.realm, "r");

    /* Whitespace: around '=', around commas, leading, trailing, tabs, empty list elements. */
    CHECK_EQ_INT(parse("  Bearer   realm = \"r\" ,\tservice\t=\ts ,, scope=x ,  "), 0);
    CHECK_STR(ch.realm, "r");
    CHECK_STR(ch.service, "s");
    CHECK_STR(ch.scope, "x");

    /* Token values and unknown parameters (ignored, including long ones). */
    CHECK_EQ_INT(parse("Bearer realm=r,foo=bar,baz=\"q\\\"uoted\",service=s"), 0);
    CHECK_STR(ch.realm, "r");
    CHECK_STR(ch.service, "s");

    /* A second challenge after a comma ends the first. */
    CHECK_EQ_INT(parse("Bearer realm=\"r\", Basic realm=\"b\""), 0);
    CHECK_EQ_INT(ch.scheme, AUTH_SCHEME_BEARER);
    CHECK_STR(ch.realm, "r");
    CHECK_EQ_INT(parse("Basic realm=\"b\", Bearer realm=\"r\""), 0);
    CHECK_EQ_INT(ch.scheme, AUTH_SCHEME_BASIC);
    CHECK_STR(ch.realm, "b");

    /* obs-text (UTF-8 bytes) inside quotes. */
    CHECK_EQ_INT(parse("Basic realm=\"caf\xc3\xa9\""), 0);
    CHECK_STR(ch.realm, "caf\xc3\xa9");
}

static void test_lengths(void)
{
    char *v = malloc(4096), *big;
    size_t n;
    if (!v) {
        CHECK(v != NULL);
        return;
    }

    /* realm[1024] holds 1023 characters. */
    n = (size_t)sprintf(v, "Bearer realm=\"");
    memset(v + n, 'r', 1023);
    strcpy(v + n + 1023, "\"");
    CHECK_EQ_INT(parse(v), 0);
    CHECK_EQ_INT(strlen(ch.realm), 1023);
    memset(v + n, 'r', 1024);
    strcpy(v + n + 1024, "\"");
    BAD(v);
    /* An escape counts as one character. */
    memset(v + n, 'r', 1022);
    strcpy(v + n + 1022, "\\\"\"");
    CHECK_EQ_INT(parse(v), 0);
    CHECK_EQ_INT(strlen(ch.realm), 1023);

    /* service[256], scope[512], error[64], as tokens. */
    n = (size_t)sprintf(v, "Bearer realm=r,service=");
    memset(v + n, 's', 255);
    v[n + 255] = '\0';
    CHECK_EQ_INT(parse(v), 0);
    CHECK_EQ_INT(strlen(ch.service), 255);
    strcat(v, "s");
    BAD(v);
    n = (size_t)sprintf(v, "Bearer realm=r,scope=");
    memset(v + n, 's', 511);
    v[n + 511] = '\0';
    CHECK_EQ_INT(parse(v), 0);
    CHECK_EQ_INT(strlen(ch.scope), 511);
    strcat(v, "s");
    BAD(v);
    n = (size_t)sprintf(v, "Bearer realm=r,error=");
    memset(v + n, 'e', 63);
    v[n + 63] = '\0';
    CHECK_EQ_INT(parse(v), 0);
    CHECK_EQ_INT(strlen(ch.error), 63);
    strcat(v, "e");
    BAD(v);

    /* Unknown parameters have no length limit. */
    big = malloc(20000);
    n = (size_t)sprintf(big, "Bearer realm=r,junk=\"");
    memset(big + n, 'j', 10000);
    strcpy(big + n + 10000, "\",service=s");
    CHECK_EQ_INT(parse(big), 0);
    CHECK_STR(ch.service, "s");
    free(big);
    free(v);
}

static void test_bad(void)
{
    BAD(NULL);
    BAD("");
    BAD("   ");
    BAD("Negotiate abc");
    BAD("Digest realm=\"r\"");
    BAD("Bearerx realm=\"r\"");
    BAD("Bear realm=\"r\"");
    BAD("Bearer");               /* no realm */
    BAD("Bearer service=\"s\""); /* no realm */
    BAD("Bearer realm=\"\"");    /* empty realm is no realm */
    BAD("Bearer error=\"insufficient_scope\"");
    BAD("Bearer,realm=\"r\"");
    BAD("Bearer realm=\"r");     /* unterminated */
    BAD("Bearer realm=\"r\\");   /* backslash at the end */
    BAD("Bearer realm=\"r\\\""); /* escaped closing quote */
    BAD("Bearer realm=");
    BAD("Bearer realm= ,service=s");
    BAD("Bearer realm");
    BAD("Bearer =\"r\"");
    BAD("Bearer realm=\"r\"x");    /* garbage after the quoted string */
    BAD("Bearer realm=\"r\" x=y"); /* missing comma */
    BAD("Bearer realm=r s");
    BAD("Bearer realm=\"r\";service=s");
    BAD("Bearer realm=https://x/y"); /* '/' and ':' are not token characters */
    BAD("Bearer realm=\"a\nb\"");    /* control characters */
    BAD("Bearer realm=\"a\\\x01\"");
    BAD("Bearer realm=\"a\x7f\"");
    BAD("Bearer realm=\"r\",realm=\"s\""); /* duplicate parameter */
    BAD("Bearer realm=\"r\",REALM=\"s\"");
    BAD("Bearer realm=r,,service=s,service=t");
    BAD("Bearer abc=="); /* token68 form */
    BAD("Bearer abc");
    BAD("\"Bearer\" realm=r");
    BAD("Basic realm=\"r\",=x");
}

static void test_header_values(void)
{
    CHECK(header_value_ok("application/vnd.oci.image.manifest.v1+json", 42));
    CHECK(header_value_ok("a\tb c", 5));
    CHECK(header_value_ok("", 0));
    CHECK(!header_value_ok("text/html\rX-Injected: 1", 23));
    CHECK(!header_value_ok("a\nb", 3));
    CHECK(!header_value_ok("a\0b", 3));
    CHECK(!header_value_ok("a\x1b[0m", 6));
    CHECK(!header_value_ok("a\x7f", 2));
    CHECK(!header_value_ok("caf\xc3\xa9", 5));
}

static void test_retry_after(void)
{
    CHECK(retry_after_ok("0"));
    CHECK(retry_after_ok("120"));
    CHECK(retry_after_ok("4294967295"));
    CHECK(retry_after_ok("Sun, 06 Nov 1994 08:49:37 GMT"));
    CHECK(retry_after_ok("Sunday, 06-Nov-94 08:49:37 GMT"));
    CHECK(retry_after_ok("Sun Nov  6 08:49:37 1994"));
    CHECK(retry_after_ok("Sun Nov 16 08:49:37 1994"));
    CHECK(!retry_after_ok(""));
    CHECK(!retry_after_ok("soon"));
    CHECK(!retry_after_ok("-1"));
    CHECK(!retry_after_ok("1.5"));
    CHECK(!retry_after_ok(" 5"));
    CHECK(!retry_after_ok("12345678901"));
    CHECK(!retry_after_ok("5\rSet-Cookie: x=1"));
    CHECK(!retry_after_ok("Sun, 06 Nov 1994 08:49:37 UTC"));
    CHECK(!retry_after_ok("Sun, 32 Nov 1994 08:49:37 GMT"));
    CHECK(!retry_after_ok("Sun, 06 Nox 1994 08:49:37 GMT"));
    CHECK(!retry_after_ok("Sun, 06 Nov 1994 25:49:37 GMT"));
    CHECK(!retry_after_ok("Sun, 06 Nov 1994 08:49:37 GMT "));
    CHECK(!retry_after_ok("Sonntag, 06-Nov-94 08:49:37 GMT"));
    CHECK(!retry_after_ok("Sun Nov  0 08:49:37 1994"));
}

static int class_of4(const char *ip)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    CHECK_EQ_INT(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return addr_class((const struct sockaddr *)&a);
}

static int class_of6(const char *ip)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    CHECK_EQ_INT(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    return addr_class((const struct sockaddr *)&a);
}

static void test_addresses(void)
{
    CHECK_EQ_INT(class_of4("127.0.0.1"), ADDR_LOOPBACK);
    CHECK_EQ_INT(class_of4("127.255.0.9"), ADDR_LOOPBACK);
    CHECK_EQ_INT(class_of4("0.0.0.0"), ADDR_LOOPBACK);
    CHECK_EQ_INT(class_of4("169.254.169.254"), ADDR_LINK_LOCAL);
    CHECK_EQ_INT(class_of4("10.0.0.1"), 0);
    CHECK_EQ_INT(class_of4("192.168.1.1"), 0);
    CHECK_EQ_INT(class_of4("8.8.8.8"), 0);
    CHECK_EQ_INT(class_of6("::1"), ADDR_LOOPBACK);
    CHECK_EQ_INT(class_of6("::"), ADDR_LOOPBACK);
    CHECK_EQ_INT(class_of6("::ffff:127.0.0.1"), ADDR_LOOPBACK);
    CHECK_EQ_INT(class_of6("::ffff:169.254.1.2"), ADDR_LINK_LOCAL);
    CHECK_EQ_INT(class_of6("fe80::1"), ADDR_LINK_LOCAL);
    CHECK_EQ_INT(class_of6("febf::1"), ADDR_LINK_LOCAL);
    CHECK_EQ_INT(class_of6("fec0::1"), 0);
    CHECK_EQ_INT(class_of6("2001:db8::1"), 0);

    CHECK_EQ_INT(host_class("127.0.0.1"), ADDR_LOOPBACK);
    CHECK_EQ_INT(host_class("[::1]"), ADDR_LOOPBACK);
    CHECK_EQ_INT(host_class("[fe80::1%25eth0]"), ADDR_LINK_LOCAL);
    CHECK_EQ_INT(host_class("localhost"), ADDR_LOOPBACK);
    CHECK_EQ_INT(host_class("LOCALHOST."), ADDR_LOOPBACK);
    CHECK_EQ_INT(host_class("app.localhost"), ADDR_LOOPBACK);
    CHECK_EQ_INT(host_class("169.254.169.254"), ADDR_LINK_LOCAL);
    CHECK_EQ_INT(host_class("auth.docker.io"), 0);
    CHECK_EQ_INT(host_class("notlocalhost"), 0);
}

static int check_url(const char *url, const char *from, int allowed, const char *want_why)
{
    char why[128] = "";
    int rc = target_url_check(url, from, allowed, why, sizeof(why));
    if (want_why)
        CHECK_CONTAINS(why, want_why);
    return rc;
}

static void test_targets(void)
{
    const char *hub = "https://registry-1.docker.io";
    CHECK_EQ_INT(check_url("https://auth.docker.io/token", hub, 0, NULL), 0);
    CHECK_EQ_INT(check_url("https://cdn.example/b?sig=1", "https://r.example/v2/x", 0, NULL), 0);
    CHECK_EQ_INT(check_url("http://auth.example/token", "http://r.example", 0, NULL), 0);
    CHECK_EQ_INT(check_url("http://auth.docker.io/token", hub, 0, "plain http"), -EINVAL);
    CHECK_EQ_INT(check_url("HTTP://auth.docker.io/token", hub, 0, "plain http"), -EINVAL);
    CHECK_EQ_INT(check_url("ftp://x.example/token", "http://r.example", 0, "not an http"), -EINVAL);
    CHECK_EQ_INT(check_url("file:///etc/passwd", "http://r.example", 0, NULL), -EINVAL);
    CHECK_EQ_INT(check_url("https://u:p@auth.example/t", hub, 0, "user name"), -EINVAL);
    CHECK_EQ_INT(check_url("https://u@auth.example/t", hub, 0, "user name"), -EINVAL);
    CHECK_EQ_INT(check_url("https://127.0.0.1:5000/t", hub, 0, "loopback"), -EINVAL);
    CHECK_EQ_INT(check_url("https://localhost/t", hub, 0, "loopback"), -EINVAL);
    CHECK_EQ_INT(check_url("https://[::1]/t", hub, 0, "loopback"), -EINVAL);
    CHECK_EQ_INT(check_url("http://169.254.169.254/latest", "http://r.example", 0, "link-local"),
                 -EINVAL);
    /* the upstream's own class is allowed: a registry on loopback with its realm there */
    CHECK_EQ_INT(
        check_url("http://127.0.0.1:5001/token", "http://127.0.0.1:5000", ADDR_LOOPBACK, NULL), 0);
    CHECK_EQ_INT(
        check_url("http://169.254.1.1/token", "http://127.0.0.1:5000", ADDR_LOOPBACK, "link-local"),
        -EINVAL);
    CHECK_EQ_INT(check_url("not a url", hub, 0, NULL), -EINVAL);

    CHECK(url_same_origin("https://r.example/v2/a", "https://r.example"));
    CHECK(url_same_origin("https://r.example:443/v2/a", "https://R.example"));
    CHECK(!url_same_origin("https://r.example:444/v2/a", "https://r.example"));
    CHECK(!url_same_origin("http://r.example/v2/a", "https://r.example"));
    CHECK(!url_same_origin("https://cdn.r.example/b", "https://r.example"));
    CHECK(!url_same_origin("nonsense", "https://r.example"));
}

int main(void)
{
    test_good();
    test_lengths();
    test_bad();
    test_header_values();
    test_retry_after();
    test_addresses();
    test_targets();
    CHECK_DONE();
}
