/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the raw-value readers of util/json.c (referrers documents from upstreams). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "util/buf.h"
#include "util/json.h"

static char seen[4][64];
static int n_seen;

static int keep(void *ud, const char *elem, size_t len)
{
    (void)ud;
    if (n_seen == 4)
        return 7; /* stops the walk: returned as is */
    snprintf(seen[n_seen++], sizeof(seen[0]), "%.*s", (int)len, elem);
    return 0;
}

static int walk(const char *s)
{
    n_seen = 0;
    return json_each_element(s, strlen(s), keep, NULL);
}

static const char *raw(const char *doc, const char *key, int *rc)
{
    static char out[128];
    const char *v = NULL;
    size_t len = 0;
    *rc = json_get_raw(doc, strlen(doc), key, &v, &len);
    snprintf(out, sizeof(out), "%.*s", *rc ? 0 : (int)len, *rc ? "" : v);
    return out;
}

int main(void)
{
    int rc;
    const char *doc = "{\"schemaVersion\":2, \"manifests\" : [ {\"a\":[1,{}]} , \"x\" ,3 ],"
                      "\"annotations\":{\"k\":\"v\"}, \"n\": null}";
    CHECK_STR(raw(doc, "manifests", &rc), "[ {\"a\":[1,{}]} , \"x\" ,3 ]");
    CHECK_EQ_INT(rc, 0);
    CHECK_STR(raw(doc, "annotations", &rc), "{\"k\":\"v\"}");
    CHECK_STR(raw(doc, "schemaVersion", &rc), "2");
    CHECK_STR(raw(doc, "n", &rc), "null");
    raw(doc, "absent", &rc);
    CHECK_EQ_INT(rc, -ENOENT);
    raw("[1]", "manifests", &rc);
    CHECK_EQ_INT(rc, -EINVAL);
    raw("{\"manifests\":[1,", "manifests", &rc);
    CHECK_EQ_INT(rc, -EINVAL);

    CHECK_EQ_INT(walk("[ {\"a\":[1,{}]} , \"x\" ,3 ]"), 0);
    CHECK_EQ_INT(n_seen, 3);
    CHECK_STR(seen[0], "{\"a\":[1,{}]}");
    CHECK_STR(seen[1], "\"x\"");
    CHECK_STR(seen[2], "3");
    CHECK_EQ_INT(walk("[]"), 0);
    CHECK_EQ_INT(n_seen, 0);
    CHECK_EQ_INT(walk(" [ ] "), 0);
    CHECK_EQ_INT(walk("[1,2,3,4,5]"), 7);
    CHECK_EQ_INT(walk("[1,]"), -EINVAL);
    CHECK_EQ_INT(walk("[1 2]"), -EINVAL);
    CHECK_EQ_INT(walk("{\"a\":1}"), -EINVAL);
    CHECK_EQ_INT(walk("[\"unterminated]"), -EINVAL);
    CHECK_EQ_INT(walk(""), -EINVAL);

    /* writing strings: plain, and safe to put in a page */
    struct buf b;
    buf_init(&b, 1024);
    CHECK_EQ_INT(json_put_string(&b, "a\"\\\n<&'>"), 0);
    CHECK_EQ_INT(json_put_string_markup_safe(&b, "a\"\\\n<img src='x'>&\x7f"), 0);
    CHECK_EQ_INT(buf_append(&b, "", 1), 0);
    CHECK_STR(b.data, "\"a\\\"\\\\\\u000a<&'>\""
                      "\"a\\\"\\\\\\u000a\\u003cimg src=\\u0027x\\u0027\\u003e\\u0026\\u007f\"");
    buf_free(&b);
    CHECK_DONE();
}
