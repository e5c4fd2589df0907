/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for offline bundles' pure parts: the tar writer and reader (round trip, base-256
 * sizes, pax and GNU long names, damaged headers) and bundle/layout.c (documents, platforms,
 * which children an export takes, how names route). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle/layout.h"
#include "bundle/tar.h"
#include "check.h"
#include "config/config.h"

static void test_tar_round_trip(void)
{
    FILE *f = tmpfile();
    CHECK(f != NULL);
    CHECK_EQ_INT(tar_write_header(f, "oci-layout", 3, '0'), 0);
    fwrite("abc", 1, 3, f);
    CHECK_EQ_INT(tar_write_pad(f, 3), 0);
    CHECK_EQ_INT(tar_write_header(f, "blobs/", 0, '5'), 0);
    CHECK_EQ_INT(tar_write_header(f, "empty", 0, '0'), 0);
    char name[120];
    memset(name, 'n', 101);
    name[101] = '\0';
    CHECK_EQ_INT(tar_write_header(f, name, 1, '0'), -ENAMETOOLONG);
    CHECK_EQ_INT(tar_write_end(f), 0);
    rewind(f);
    struct tar_reader r;
    struct tar_entry e;
    char buf[16];
    tar_reader_init(&r, f);
    CHECK_EQ_INT(tar_next(&r, &e), 1);
    CHECK_STR(e.name, "oci-layout");
    CHECK_EQ_U64(e.size, 3);
    CHECK_EQ_INT(tar_read(&r, buf, 2), 2);
    CHECK_EQ_INT(tar_next(&r, &e), 1); /* the unread byte and the padding are skipped */
    CHECK_STR(e.name, "blobs/");
    CHECK_EQ_INT(e.type, '5');
    CHECK_EQ_INT(tar_next(&r, &e), 1);
    CHECK_STR(e.name, "empty");
    CHECK_EQ_INT(tar_read(&r, buf, sizeof(buf)), 0);
    CHECK_EQ_INT(tar_next(&r, &e), 0);
    fclose(f);
}

/* A header as another tar would write it: name, size field and type given. */
static void raw_header(unsigned char *h, const char *name, const unsigned char *size12, char type)
{
    memset(h, 0, 512);
    snprintf((char *)h, 100, "%s", name);
    memcpy(h + 100, "0000644", 8);
    memcpy(h + 124, size12, 12);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
}

static void test_tar_others(void)
{
    /* a base-256 size past 8 GiB */
    FILE *f = tmpfile();
    unsigned char h[512];
    CHECK_EQ_INT(tar_write_header(f, "big", 10ULL << 30, '0'), 0);
    rewind(f);
    CHECK_EQ_INT((int)fread(h, 1, 512, f), 512);
    CHECK_EQ_INT(h[124], 0x80);
    rewind(f);
    struct tar_reader r;
    struct tar_entry e;
    tar_reader_init(&r, f);
    CHECK_EQ_INT(tar_next(&r, &e), 1);
    CHECK_EQ_U64(e.size, 10ULL << 30);
    CHECK_EQ_INT(tar_read(&r, h, 16), -EINVAL); /* the archive ends inside the entry */
    fclose(f);

    /* a pax header naming a long path, then the file */
    f = tmpfile();
    char path[300], rec[400];
    memset(path, 'p', 250);
    path[250] = '\0';
    int n = snprintf(rec, sizeof(rec), "xxx path=%s\n", path);
    snprintf(rec, sizeof(rec), "%d path=%s\n", n, path);
    unsigned char size[12];
    snprintf((char *)size, 12, "%011o", (unsigned)strlen(rec));
    raw_header(h, "PaxHeaders/x", size, 'x');
    fwrite(h, 1, 512, f);
    char block[512] = {0};
    memcpy(block, rec, strlen(rec));
    fwrite(block, 1, 512, f);
    snprintf((char *)size, 12, "%011o", 2u);
    raw_header(h, "short", size, '0');
    fwrite(h, 1, 512, f);
    memset(block, 0, sizeof(block));
    memcpy(block, "hi", 2);
    fwrite(block, 1, 512, f);
    /* a GNU long name */
    snprintf((char *)size, 12, "%011o", 260u);
    raw_header(h, "././@LongLink", size, 'L');
    fwrite(h, 1, 512, f);
    memset(block, 'g', 260);
    fwrite(block, 1, 512, f);
    snprintf((char *)size, 12, "%011o", 0u);
    raw_header(h, "cut", size, '0');
    fwrite(h, 1, 512, f);
    /* a damaged header */
    raw_header(h, "bad", size, '0');
    h[0] ^= 1;
    fwrite(h, 1, 512, f);
    rewind(f);
    tar_reader_init(&r, f);
    CHECK_EQ_INT(tar_next(&r, &e), 1);
    CHECK_STR(e.name, path);
    CHECK_EQ_U64(e.size, 2);
    char two[3] = "";
    CHECK_EQ_INT(tar_read(&r, two, 2), 2);
    CHECK(memcmp(two, "hi", 2) == 0);
    CHECK_EQ_INT(tar_next(&r, &e), 1);
    CHECK_EQ_INT((int)strlen(e.name), 260);
    CHECK_EQ_INT(tar_next(&r, &e), -EINVAL);
    CHECK_CONTAINS(r.err, "checksum");
    fclose(f);
}

static void test_documents(void)
{
    const char *index =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
        "\"manifests\":["
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:"
        "1111111111111111111111111111111111111111111111111111111111111111\",\"size\":10,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:"
        "2222222222222222222222222222222222222222222222222222222222222222\",\"size\":11,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:"
        "3333333333333333333333333333333333333333333333333333333333333333\",\"size\":12,"
        "\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"},\"annotations\":{"
        "\"vnd.docker.reference.type\":\"attestation-manifest\",\"vnd.docker.reference.digest\":"
        "\"sha256:2222222222222222222222222222222222222222222222222222222222222222\"}}]}";
    struct bundle_desc *d;
    size_t n;
    int is_index;
    const char *type;
    char err[300];
    CHECK_EQ_INT(
        bundle_doc_children(index, strlen(index), NULL, &is_index, &type, &d, &n, err, sizeof(err)),
        0);
    CHECK(is_index);
    CHECK_EQ_INT(n, 3);
    CHECK_STR(d[1].platform.variant, "v8");
    CHECK(d[2].attestation);
    struct bundle_platform want[2];
    int keep[3];
    CHECK_EQ_INT(bundle_platform_parse("linux/arm64", &want[0]), 0);
    bundle_select_children(d, n, want, 1, keep);
    CHECK(!keep[0] && keep[1] && keep[2]); /* arm64's attestation comes along */
    CHECK_EQ_INT(bundle_platform_parse("linux/amd64", &want[0]), 0);
    bundle_select_children(d, n, want, 1, keep);
    CHECK(keep[0] && !keep[1] && !keep[2]);
    bundle_select_children(d, n, want, 0, keep);
    CHECK(keep[0] && keep[1] && keep[2]);
    CHECK_EQ_INT(bundle_platform_parse("linux/arm64/v8", &want[1]), 0);
    struct bundle_platform plain = {"linux", "arm64", ""};
    CHECK(bundle_platform_matches(&want[1], 1, &plain));
    CHECK_EQ_INT(bundle_platform_parse("linux", &want[1]), -EINVAL);
    CHECK_EQ_INT(bundle_platform_parse("linux/AMD64", &want[1]), -EINVAL);
    free(d);

    const char *manifest =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+"
        "json\",\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:"
        "4444444444444444444444444444444444444444444444444444444444444444\",\"size\":5},"
        "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\","
        "\"digest\":\"sha256:5555555555555555555555555555555555555555555555555555555555555555\","
        "\"size\":6}]}";
    CHECK_EQ_INT(bundle_doc_children(manifest, strlen(manifest), NULL, &is_index, &type, &d, &n,
                                     err, sizeof(err)),
                 0);
    CHECK(!is_index);
    CHECK_EQ_INT(n, 2);
    CHECK(!d[0].foreign && d[1].foreign);
    CHECK_STR(bundle_oci_type(type), MEDIA_BUNDLE_OCI_MANIFEST);
    free(d);
    const char *bad = "{\"schemaVersion\":2,\"config\":{\"digest\":\"md5:x\",\"size\":1}}";
    CHECK_EQ_INT(
        bundle_doc_children(bad, strlen(bad), NULL, &is_index, &type, &d, &n, err, sizeof(err)),
        -EINVAL);
    CHECK_CONTAINS(err, "sha256");
}

static void test_names(void)
{
    struct config cfg;
    config_defaults(&cfg);
    char *hosted[] = {"team/*"};
    cfg.hosted = hosted;
    cfg.n_hosted = 1;
    struct bundle_name nm;
    char err[300], full[600];
    CHECK_EQ_INT(bundle_name_parse(&cfg, "alpine:3.19", &nm, err, sizeof(err)), 0);
    CHECK_STR(nm.upstream, "docker.io");
    CHECK_STR(nm.repo, "library/alpine");
    CHECK_STR(nm.path_name, "alpine");
    bundle_name_full(&nm, "mirror:5000", full, sizeof(full));
    CHECK_STR(full, "docker.io/library/alpine:3.19");
    CHECK_EQ_INT(bundle_name_parse(&cfg, "docker.io/library/alpine", &nm, err, sizeof(err)), 0);
    CHECK_STR(nm.repo, "library/alpine");
    CHECK_STR(nm.tag, "latest");
    CHECK_EQ_INT(bundle_name_parse(&cfg, "team/app:1", &nm, err, sizeof(err)), 0);
    CHECK(nm.hosted);
    bundle_name_full(&nm, "mirror:5000", full, sizeof(full));
    CHECK_STR(full, "mirror:5000/team/app:1");
    CHECK_EQ_INT(
        bundle_name_parse(&cfg,
                          "docker.io/team/app@sha256:"
                          "6666666666666666666666666666666666666666666666666666666666666666",
                          &nm, err, sizeof(err)),
        0);
    CHECK(!nm.hosted); /* an upstream named explicitly never reaches a hosted repository */
    CHECK_STR(nm.tag, "");
    CHECK_EQ_INT(nm.digest[0], 's');
    CHECK_EQ_INT(bundle_name_parse(&cfg, "Alpine:1", &nm, err, sizeof(err)), -EINVAL);
    CHECK_EQ_INT(bundle_name_parse(&cfg, "alpine@sha256:12", &nm, err, sizeof(err)), -EINVAL);
    cfg.hosted = NULL;
    cfg.n_hosted = 0;
    config_free(&cfg);
}

int main(void)
{
    test_tar_round_trip();
    test_tar_others();
    test_documents();
    test_names();
    CHECK_DONE();
}
