/* SPDX-License-Identifier: Apache-2.0 */
/* Request targets to registry routes: endpoints, grammar checks, the ns parameter. */
#include "check.h"
#include "registry/route.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void ok(const char *path, const char *query, enum route_kind kind, const char *name,
               const char *ref)
{
    struct route r;
    int rc = route_parse(path, query, &r);
    CHECK_EQ_INT(rc, 0);
    if (rc)
        fprintf(stderr, "  for %s: %s\n", path, r.err_message);
    CHECK_EQ_INT(r.kind, kind);
    if (name)
        CHECK_STR(r.name, name);
    if (ref)
        CHECK_STR(r.reference, ref);
}

static void bad(const char *path, int status, const char *code)
{
    struct route r;
    CHECK_EQ_INT(route_parse(path, NULL, &r), -1);
    CHECK_EQ_INT(r.err_status, status);
    CHECK_STR(r.err_code, code);
}

static int known_upstream(void *ud, const char *name)
{
    (void)ud;
    return strcmp(name, "quay.example") == 0 || strcmp(name, "docker.io") == 0;
}

/* Does the request name its upstream itself (and so never reach hosted content)? */
static int names_upstream(const char *path, const char *query)
{
    struct route r;
    if (route_parse(path, query, &r))
        return -1;
    return route_names_upstream(&r, known_upstream, NULL);
}

int main(void)
{
    ok("/v2/", NULL, ROUTE_BASE, NULL, NULL);
    ok("/v2", NULL, ROUTE_BASE, NULL, NULL);
    ok("/v2/_catalog", "n=10", ROUTE_CATALOG, NULL, NULL);
    ok("/v2/library/alpine/manifests/latest", NULL, ROUTE_MANIFEST, "library/alpine", "latest");
    ok("/v2/alpine/manifests/sha256:" D64, NULL, ROUTE_MANIFEST, "alpine", "sha256:" D64);
    ok("/v2/quay.io/org/app/manifests/1.0_rc-2", NULL, ROUTE_MANIFEST, "quay.io/org/app",
       "1.0_rc-2");
    ok("/v2/a/b/c/blobs/sha256:" D64, NULL, ROUTE_BLOB, "a/b/c", "sha256:" D64);
    ok("/v2/library/alpine/tags/list", "n=5&last=3", ROUTE_TAGS, "library/alpine", NULL);
    ok("/v2/library/alpine/blobs/uploads/", NULL, ROUTE_UPLOAD, "library/alpine", NULL);
    ok("/v2/library/alpine/blobs/uploads/abc-123", NULL, ROUTE_UPLOAD, "library/alpine", NULL);
    ok("/v2/x/referrers/sha256:" D64, NULL, ROUTE_REFERRERS, "x", NULL);
    /* a repository may itself be called manifests or blobs */
    ok("/v2/manifests/manifests/v1", NULL, ROUTE_MANIFEST, "manifests", "v1");
    ok("/v2/blobs/blobs/sha256:" D64, NULL, ROUTE_BLOB, "blobs", NULL);

    /* ns */
    struct route r;
    CHECK_EQ_INT(route_parse("/v2/library/alpine/manifests/3", "ns=docker.io", &r), 0);
    CHECK_STR(r.ns, "docker.io");
    CHECK_EQ_INT(route_parse("/v2/x/manifests/3", "a=1&ns=quay.io&b=2", &r), 0);
    CHECK_STR(r.ns, "quay.io");
    CHECK_EQ_INT(route_parse("/v2/x/manifests/3", "ns=reg%2Eexample%3A5000", &r), 0);
    CHECK_STR(r.ns, "reg.example:5000");
    CHECK_EQ_INT(route_parse("/v2/x/manifests/3", "nsx=a", &r), 0);
    CHECK_STR(r.ns, "");

    /* hostile names */
    bad("/v2/../etc/passwd/manifests/latest", 400, "NAME_INVALID");
    bad("/v2/library/../../x/manifests/latest", 400, "NAME_INVALID");
    bad("/v2/%2e%2e/x/manifests/latest", 400, "NAME_INVALID");
    bad("/v2/Library/alpine/manifests/latest", 400, "NAME_INVALID");
    bad("/v2//alpine/manifests/latest", 400, "NAME_INVALID");
    bad("/v2/alpine//x/manifests/latest", 400, "NAME_INVALID");
    /* neither a tag nor a digest: no such manifest (the spec's 404), name still known */
    bad("/v2/alpine/manifests/", 404, "MANIFEST_UNKNOWN");
    bad("/v2/alpine/manifests/.hidden", 404, "MANIFEST_UNKNOWN");
    bad("/v2/alpine/manifests/a/b", 404, "MANIFEST_UNKNOWN");
    bad("/v2/alpine/manifests/..", 404, "MANIFEST_UNKNOWN");
    bad("/v2/alpine/manifests/.INVALID_MANIFEST_NAME", 404, "MANIFEST_UNKNOWN");
    {
        struct route br;
        CHECK_EQ_INT(route_parse("/v2/team/x/manifests/-x", NULL, &br), -1);
        CHECK_EQ_INT(br.bad_reference, 1);
        CHECK_EQ_INT(br.kind, ROUTE_MANIFEST);
        CHECK_STR(br.name, "team/x");
        CHECK_EQ_INT(route_parse("/v2/team/x/manifests/sha256:XYZ", NULL, &br), -1);
        CHECK_EQ_INT(br.bad_reference, 0);
    }
    bad("/v2/alpine/blobs/sha256:XYZ", 400, "DIGEST_INVALID");
    bad("/v2/alpine/blobs/sha256:" D64 "0", 400, "DIGEST_INVALID");
    bad("/v2/alpine/blobs/sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        400, "DIGEST_INVALID");
    bad("/v2/alpine/blobs/md5:0123", 400, "DIGEST_INVALID");
    bad("/v2/alpine/blobs/../../sha256:" D64, 400, "DIGEST_INVALID");
    bad("/v2/alpine/manifests/sha256:../../x", 400, "DIGEST_INVALID");
    bad("/v2/alpine/whatever", 404, "NAME_UNKNOWN");
    bad("/v1/alpine/manifests/latest", 404, "NAME_UNKNOWN");
    bad("/", 404, "NAME_UNKNOWN");

    /* name length: 255 accepted, 256 refused */
    char path[600], name[300];
    memset(name, 'a', 255);
    name[255] = '\0';
    snprintf(path, sizeof(path), "/v2/%s/manifests/latest", name);
    ok(path, NULL, ROUTE_MANIFEST, name, "latest");
    memset(name, 'a', 256);
    name[256] = '\0';
    snprintf(path, sizeof(path), "/v2/%s/manifests/latest", name);
    bad(path, 400, "NAME_INVALID");

    /* tag length: 128 accepted, 129 refused */
    char tag[200];
    memset(tag, 't', 128);
    tag[128] = '\0';
    snprintf(path, sizeof(path), "/v2/x/manifests/%s", tag);
    ok(path, NULL, ROUTE_MANIFEST, "x", tag);
    memset(tag, 't', 129);
    tag[129] = '\0';
    snprintf(path, sizeof(path), "/v2/x/manifests/%s", tag);
    bad(path, 404, "MANIFEST_UNKNOWN");

    /* an explicit upstream: ns (any value) or a leading component naming one */
    CHECK_EQ_INT(names_upstream("/v2/team/app/manifests/v1", "ns=quay.example"), 1);
    CHECK_EQ_INT(names_upstream("/v2/team/app/manifests/v1", "ns=nowhere.example"), 1);
    CHECK_EQ_INT(names_upstream("/v2/quay.example/team/app/manifests/v1", NULL), 1);
    CHECK_EQ_INT(names_upstream("/v2/docker.io/team/app/blobs/sha256:" D64, NULL), 1);
    CHECK_EQ_INT(names_upstream("/v2/quay.example/team/app/blobs/uploads/", NULL), 1);
    /* none: the name as given (hosted patterns may claim it) */
    CHECK_EQ_INT(names_upstream("/v2/team/app/manifests/v1", NULL), 0);
    CHECK_EQ_INT(names_upstream("/v2/team/app/manifests/v1", "nsx=quay.example"), 0);
    CHECK_EQ_INT(names_upstream("/v2/quay.example/manifests/v1", NULL), 0);
    CHECK_EQ_INT(names_upstream("/v2/team/quay.example/manifests/v1", NULL), 0);
    CHECK_EQ_INT(names_upstream("/v2/alpine/manifests/v1", NULL), 0);

    char out[16];
    CHECK_EQ_INT(route_query_param("n=100&last=abc", "last", out, sizeof(out)), 3);
    CHECK_STR(out, "abc");
    CHECK_EQ_INT(route_query_param("n=100", "last", out, sizeof(out)), -1);
    CHECK_EQ_INT(route_query_param(NULL, "n", out, sizeof(out)), -1);
    CHECK_EQ_INT(route_query_param("n=%00", "n", out, sizeof(out)), -1);
    CHECK_EQ_INT(route_query_param("n=0123456789abcdefXYZ", "n", out, sizeof(out)), -1);
    CHECK_DONE();
}
