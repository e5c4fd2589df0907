/* SPDX-License-Identifier: Apache-2.0 */
/* What a pushed manifest refers to (hosted/refs.c) and its referrers descriptor. */
#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "hosted/impl.h"

#define A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define C "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define S "sha256:5555555555555555555555555555555555555555555555555555555555555555"

static int parse(const char *doc, struct hosted_manifest_info *info)
{
    return hosted__manifest_parse(doc, strlen(doc), info);
}

int main(void)
{
    struct hosted_manifest_info info;

    /* an image: config and layers must exist; the config's type is the artifact type */
    CHECK_EQ_INT(parse("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/x.cfg\","
                       "\"digest\":\"" A "\",\"size\":2},\"layers\":[{\"digest\":\"" B "\"},"
                       "{\"digest\":\"" C "\",\"annotations\":{\"digest\":\"" S "\"}}]}",
                       &info),
                 0);
    CHECK_EQ_INT(info.n_refs, 3);
    if (info.n_refs == 3) {
        CHECK_STR(info.refs[0], A);
        CHECK_STR(info.refs[1], B);
        CHECK_STR(info.refs[2], C); /* not the digest-looking annotation */
    }
    CHECK_STR(info.subject, "");
    CHECK_STR(info.artifact_type, "application/x.cfg");
    CHECK(info.annotations == NULL);
    hosted__manifest_info_free(&info);

    /* an artifact: the subject is not a reference; artifactType wins; annotations kept raw */
    const char *art = "{\"artifactType\":\"application/vnd.example.sig\","
                      "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\","
                      "\"digest\":\"" A "\"},\"layers\":[],"
                      "\"subject\":{\"digest\":\"" S "\"},"
                      "\"annotations\": {\"k\":\"v\", \"n\":\"\\\"q\\\"\"} }";
    CHECK_EQ_INT(parse(art, &info), 0);
    CHECK_EQ_INT(info.n_refs, 1);
    CHECK_STR(info.subject, S);
    CHECK_STR(info.artifact_type, "application/vnd.example.sig");
    CHECK_EQ_INT(info.annotations_len, strlen("{\"k\":\"v\", \"n\":\"\\\"q\\\"\"}"));
    struct buf d;
    buf_init(&d, 4096);
    CHECK_EQ_INT(hosted__descriptor(&d, "application/vnd.oci.image.manifest.v1+json", B, 321,
                                    info.artifact_type, info.annotations, info.annotations_len),
                 0);
    buf_terminate(&d);
    CHECK_STR(d.data, "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
                      "\"digest\":\"" B "\",\"size\":321,\"artifactType\":"
                      "\"application/vnd.example.sig\",\"annotations\":{\"k\":\"v\", "
                      "\"n\":\"\\\"q\\\"\"}}");
    buf_free(&d);
    hosted__manifest_info_free(&info);

    /* an index: its entries are references; no config, so no artifact type */
    CHECK_EQ_INT(parse("{\"manifests\":[{\"digest\":\"" A "\"},{\"digest\":\"" B "\"}],"
                       "\"subject\":{\"digest\":\"" C "\"}}",
                       &info),
                 0);
    CHECK_EQ_INT(info.n_refs, 2);
    CHECK_STR(info.subject, C);
    CHECK_STR(info.artifact_type, "");
    hosted__manifest_info_free(&info);
    buf_init(&d, 4096);
    CHECK_EQ_INT(
        hosted__descriptor(&d, "application/vnd.oci.image.index.v1+json", A, 9, "", NULL, 0), 0);
    buf_terminate(&d);
    CHECK_STR(d.data, "{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"digest\":\"" A
                      "\",\"size\":9}");
    buf_free(&d);

    /* an artifact manifest's blobs */
    CHECK_EQ_INT(parse("{\"blobs\":[{\"digest\":\"" A "\"}]}", &info), 0);
    CHECK_EQ_INT(info.n_refs, 1);
    hosted__manifest_info_free(&info);

    /* refusals: not an object, malformed, descriptors without a valid digest */
    CHECK_EQ_INT(parse("[1]", &info), -EINVAL);
    CHECK_EQ_INT(parse("", &info), -EINVAL);
    CHECK_EQ_INT(parse("{\"layers\":[}", &info), -EINVAL);
    CHECK_EQ_INT(parse("{} x", &info), -EINVAL);
    CHECK_EQ_INT(parse("{\"config\":{\"size\":1}}", &info), -EBADMSG);
    CHECK_EQ_INT(parse("{\"config\":\"" A "\"}", &info), -EBADMSG);
    CHECK_EQ_INT(parse("{\"layers\":{\"digest\":\"" A "\"}}", &info), -EBADMSG);
    CHECK_EQ_INT(parse("{\"layers\":[{\"digest\":\"" A "\"},{\"digest\":\"sha256:xyz\"}]}", &info),
                 -EBADMSG);
    CHECK_EQ_INT(parse("{\"subject\":{\"digest\":\"md5:00\"}}", &info), -EBADMSG);
    CHECK_EQ_INT(parse("{\"subject\":[]}", &info), -EBADMSG);
    /* nothing to check at all is fine */
    CHECK_EQ_INT(parse(" {\"schemaVersion\":2} ", &info), 0);
    CHECK_EQ_INT(info.n_refs, 0);
    hosted__manifest_info_free(&info);

    /* only manifest media types are taken, in their canonical spelling */
#define TYPE(s) hosted__manifest_type(s, strlen(s))
    CHECK_STR(TYPE("application/vnd.oci.image.manifest.v1+json"),
              "application/vnd.oci.image.manifest.v1+json");
    CHECK_STR(TYPE("Application/VND.docker.distribution.manifest.list.v2+json; charset=utf-8"),
              "application/vnd.docker.distribution.manifest.list.v2+json");
    CHECK_STR(TYPE(" application/vnd.oci.image.index.v1+json "),
              "application/vnd.oci.image.index.v1+json");
    CHECK(TYPE("text/html") == NULL);
    CHECK(TYPE("application/json") == NULL);
    CHECK(TYPE("application/vnd.oci.image.manifest.v1+jsonx") == NULL);
    CHECK(TYPE("application/vnd.oci.image.manifest.v1") == NULL);
    CHECK(TYPE("") == NULL);
#undef TYPE

    CHECK_DONE();
}
