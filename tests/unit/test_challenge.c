/* Unit tests for upstream/challenge.c. */
#include <errno.h>
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

int main(void)
{
    test_good();
    test_lengths();
    test_bad();
    CHECK_DONE();
}
