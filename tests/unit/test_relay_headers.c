/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for cluster/relay_headers.c: the key a hosted repository is owned by; which of a
 * relayed answer's header lines are passed on (the registry's own, printable; never framing,
 * hop-by-hop or this replica's own); Content-Length read strictly. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "cluster/relay.h"

static int passes(const char *line)
{
    return relay_header_passes(line, strlen(line));
}

static long long length(const char *line)
{
    return (long long)relay_content_length(line, strlen(line));
}

int main(void)
{
    char key[32];
    CHECK_EQ_INT(relay_key("team/app", key, sizeof(key)), 0);
    CHECK_STR(key, "hosted/team/app");
    CHECK_EQ_INT(relay_key("a-name-that-is-far-too-long-for-it", key, sizeof(key)),
                 -ENAMETOOLONG);

    /* the registry's headers */
    CHECK(passes("Location: /v2/team/app/blobs/uploads/0f1e"));
    CHECK(passes("location: /v2/team/app/blobs/uploads/0f1e"));
    CHECK(passes("Docker-Upload-UUID: 0f1e"));
    CHECK(passes("Range: 0-1048575"));
    CHECK(passes("Docker-Content-Digest: sha256:00"));
    CHECK(passes("Content-Type: application/vnd.oci.image.manifest.v1+json"));
    CHECK(passes("WWW-Authenticate: Basic realm=\"Hosted\""));
    CHECK(passes("Link: </v2/team/app/tags/list?n=1&last=v1>; rel=\"next\""));
    CHECK(passes("Retry-After: 1"));
    CHECK(passes("Content-Range: bytes 0-9/100"));
    CHECK(passes("OCI-Subject: sha256:00"));
    CHECK(passes("Allow:\tGET, HEAD"));
    /* framing, hop-by-hop, this replica's own, and anything else */
    CHECK(!passes("Content-Length: 12"));
    CHECK(!passes("Connection: close"));
    CHECK(!passes("Transfer-Encoding: chunked"));
    CHECK(!passes("X-Request-Id: abc"));
    CHECK(!passes("X-Cache: HIT"));
    CHECK(!passes("X-Content-Type-Options: nosniff"));
    CHECK(!passes("Docker-Distribution-API-Version: registry/2.0"));
    CHECK(!passes("Set-Cookie: a=b"));
    CHECK(!passes("Locations: /x"));
    CHECK(!passes("Locatio: /x"));
    CHECK(!passes(": /x"));
    CHECK(!passes("Location"));
    CHECK(!passes(""));
    /* values that are not printable */
    CHECK(!passes("Location: /v2/x\r\nSet-Cookie: a=b"));
    CHECK(!passes("Location: /v2/\x01x"));
    CHECK(!passes("Location: /v2/\xc3\xa9"));
    CHECK(!relay_header_passes("Location: /v2/x\0y", 17));

    CHECK_EQ_INT(length("Content-Length: 0"), 0);
    CHECK_EQ_INT(length("content-length:12345"), 12345);
    CHECK_EQ_INT(length("Content-Length:  8388608 "), 8388608);
    CHECK_EQ_INT(length("Content-Length: 123456789012345678"), 123456789012345678LL);
    CHECK_EQ_INT(length("Content-Length: 1234567890123456789"), -2);
    CHECK_EQ_INT(length("Content-Length: "), -2);
    CHECK_EQ_INT(length("Content-Length: 12, 12"), -2);
    CHECK_EQ_INT(length("Content-Length: -1"), -2);
    CHECK_EQ_INT(length("Content-Length: 0x10"), -2);
    CHECK_EQ_INT(length("Content-Type: text/plain"), -1);
    CHECK_EQ_INT(length("Content-Lengths: 1"), -1);
    CHECK_DONE();
}
