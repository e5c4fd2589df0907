/* SPDX-License-Identifier: Apache-2.0 */
/* s3/sigv4.c on the command line, for the tests against radosgw (test_s3_signing.py):
 *
 *   s3_sign sign|presign METHOD HOST PATH PAYLOAD_SHA256|EXPIRES [q:NAME=VALUE]... [h:NAME:VALUE]...
 *
 * Keys, region and time come from S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION and S3_TIME (epoch
 * seconds; now when unset). sign prints the headers to add, one "Name: value" per line;
 * presign prints the path and query. Exits 2 on bad arguments, 1 when signing fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "s3/sigv4.h"

int main(int argc, char **argv)
{
    if (argc < 6 || (strcmp(argv[1], "sign") && strcmp(argv[1], "presign"))) {
        fprintf(stderr, "usage: s3_sign sign|presign METHOD HOST PATH SHA256|EXPIRES "
                        "[q:NAME=VALUE]... [h:NAME:VALUE]...\n");
        return 2;
    }
    struct sigv4_pair q[SIGV4_MAX_PAIRS], h[SIGV4_MAX_PAIRS];
    size_t nq = 0, nh = 0;
    for (int i = 6; i < argc; i++) {
        char *a = argv[i], *sep;
        if (!strncmp(a, "q:", 2) && nq < SIGV4_MAX_PAIRS) {
            q[nq].name = a + 2;
            q[nq].value = "";
            if ((sep = strchr(a + 2, '='))) {
                *sep = '\0';
                q[nq].value = sep + 1;
            }
            nq++;
        } else if (!strncmp(a, "h:", 2) && (sep = strchr(a + 2, ':')) && nh < SIGV4_MAX_PAIRS) {
            *sep = '\0';
            h[nh++] = (struct sigv4_pair){a + 2, sep + 1};
        } else {
            fprintf(stderr, "s3_sign: bad argument %s\n", a);
            return 2;
        }
    }
    const char *t = getenv("S3_TIME"), *region = getenv("S3_REGION");
    struct sigv4_request r = {
        .method = argv[2], .host = argv[3], .path = argv[4], .query = q, .n_query = nq,
        .headers = h, .n_headers = nh, .payload_sha256 = argv[5],
        .time = t ? strtoll(t, NULL, 10) : (int64_t)time(NULL),
        .region = region ? region : "us-east-1", .service = "s3",
        .access_key = getenv("S3_ACCESS_KEY"), .secret_key = getenv("S3_SECRET_KEY")};
    if (!strcmp(argv[1], "presign")) {
        char url[8192];
        int e = sigv4_presign(&r, (unsigned)strtoul(argv[5], NULL, 10), url, sizeof(url));
        if (e) {
            fprintf(stderr, "s3_sign: %s\n", strerror(-e));
            return 1;
        }
        printf("%s\n", url);
        return 0;
    }
    struct sigv4_signed s;
    int e = sigv4_sign(&r, &s);
    if (e) {
        fprintf(stderr, "s3_sign: %s\n", strerror(-e));
        return 1;
    }
    printf("x-amz-date: %s\nAuthorization: %s\n", s.amz_date, s.authorization);
    return 0;
}
