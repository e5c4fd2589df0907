/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for s3/xml.c: elements found by exact name (not a longer one sharing its start),
 * empty and self-closed elements, entities and character references decoded, bad references
 * and markup refused, buffers that are too small, S3's times. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "s3/xml.h"

static const char LISTING[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<Name>b</Name><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>"
    "<Contents><Key>blobs/a&amp;b</Key><LastModified>2026-12-03T06:00:01.123Z</LastModified>"
    "<Size>42</Size></Contents>"
    "<Contents><Key>blobs/&#x41;&#66;&lt;</Key><Size>0</Size></Contents>"
    "<NextContinuationToken>tok/en=</NextContinuationToken></ListBucketResult>";

static int text(const char *doc, const char *name, char *out, size_t len)
{
    return xml_text(doc, doc + strlen(doc), name, out, len);
}

int main(void)
{
    char out[64];
    const char *end = LISTING + strlen(LISTING), *c;
    size_t n;
    CHECK_EQ_INT(xml_element(LISTING, end, "Contents", &c, &n), 0);
    CHECK_EQ_INT(xml_text(c, c + n, "Key", out, sizeof(out)), 0);
    CHECK_STR(out, "blobs/a&b");
    CHECK_EQ_INT(xml_text(c, c + n, "Size", out, sizeof(out)), 0);
    CHECK_STR(out, "42");
    CHECK_EQ_INT(xml_text(c, c + n, "LastModified", out, sizeof(out)), 0);
    CHECK_EQ_U64((unsigned long long)xml_time(out), 1796277601ULL);
    /* the second block, after the first */
    CHECK_EQ_INT(xml_element(c + n, end, "Contents", &c, &n), 0);
    CHECK_EQ_INT(xml_text(c, c + n, "Key", out, sizeof(out)), 0);
    CHECK_STR(out, "blobs/AB<");
    CHECK_EQ_INT(xml_text(c, c + n, "LastModified", out, sizeof(out)), -ENOENT);
    CHECK_EQ_INT(xml_element(c + n, end, "Contents", &c, &n), -ENOENT);
    CHECK_EQ_INT(text(LISTING, "NextContinuationToken", out, sizeof(out)), 0);
    CHECK_STR(out, "tok/en=");
    /* Key is not KeyCount's start; Name is not NextContinuationToken's end */
    CHECK_EQ_INT(text("<KeyCount>2</KeyCount><Key>k</Key>", "Key", out, sizeof(out)), 0);
    CHECK_STR(out, "k");
    CHECK_EQ_INT(text("<KeyCount>2</KeyCount>", "Key", out, sizeof(out)), -ENOENT);
    /* empty and self-closed */
    CHECK_EQ_INT(text("<Prefix></Prefix>", "Prefix", out, sizeof(out)), 0);
    CHECK_STR(out, "");
    CHECK_EQ_INT(text("<Prefix/>", "Prefix", out, sizeof(out)), 0);
    CHECK_STR(out, "");
    CHECK_EQ_INT(text("<Code a=\"1\">NoSuchKey</Code>", "Code", out, sizeof(out)), 0);
    CHECK_STR(out, "NoSuchKey");
    /* unterminated, bad references, markup inside */
    CHECK_EQ_INT(text("<Code>NoSuchKey", "Code", out, sizeof(out)), -ENOENT);
    CHECK_EQ_INT(text("<Code>a&bogus;</Code>", "Code", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(text("<Code>a&#0;</Code>", "Code", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(text("<Code>a&#xD800;</Code>", "Code", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(text("<Code>a&#-1;</Code>", "Code", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(text("<Code>a&amp</Code>", "Code", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(text("<Code><b>x</b></Code>", "Code", out, sizeof(out)), -EINVAL);
    CHECK_EQ_INT(text("<Code>&#x20AC;</Code>", "Code", out, sizeof(out)), 0);
    CHECK_STR(out, "\xe2\x82\xac");
    /* too long for the buffer: refused, never cut */
    CHECK_EQ_INT(text("<Code>abcdef</Code>", "Code", out, 6), -ENAMETOOLONG);
    CHECK_EQ_INT(text("<Code>abcde</Code>", "Code", out, 6), 0);
    CHECK_STR(out, "abcde");
    /* times */
    CHECK_EQ_U64((unsigned long long)xml_time("1970-01-01T00:00:10Z"), 10ULL);
    CHECK_EQ_INT((int)xml_time("2026-12-03T06:00:01+01:00"), -1);
    CHECK_EQ_INT((int)xml_time("2026-13-03T06:00:01Z"), -1);
    CHECK_EQ_INT((int)xml_time("yesterday"), -1);
    CHECK_DONE();
}
