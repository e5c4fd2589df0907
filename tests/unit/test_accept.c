/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for util/accept.c. */
#include "check.h"
#include "util/accept.h"

#define DOCKER "application/vnd.docker.distribution.manifest.v2+json"
#define OCI "application/vnd.oci.image.manifest.v1+json"

int main(void)
{
    CHECK_EQ_INT(accept_allows(NULL, DOCKER), 1);
    CHECK_EQ_INT(accept_allows("", DOCKER), 1);
    CHECK_EQ_INT(accept_allows(DOCKER, DOCKER), 1);
    CHECK_EQ_INT(accept_allows(OCI, DOCKER), 0);
    CHECK_EQ_INT(accept_allows(OCI ", " DOCKER, DOCKER), 1);
    CHECK_EQ_INT(accept_allows(OCI "," DOCKER ";q=0.5", DOCKER), 1);
    CHECK_EQ_INT(accept_allows(" \t" DOCKER " \t, x/y", DOCKER), 1);
    CHECK_EQ_INT(accept_allows("APPLICATION/VND.DOCKER.DISTRIBUTION.MANIFEST.V2+JSON", DOCKER), 1);
    CHECK_EQ_INT(accept_allows("*/*", DOCKER), 1);
    CHECK_EQ_INT(accept_allows("text/html, application/*;q=0.1", DOCKER), 1);
    CHECK_EQ_INT(accept_allows("text/*", DOCKER), 0);
    CHECK_EQ_INT(accept_allows(DOCKER "x", DOCKER), 0);
    CHECK_EQ_INT(accept_allows(",,,", DOCKER), 0);
    /* q=0 means "not acceptable" */
    CHECK_EQ_INT(accept_allows(DOCKER ";q=0", DOCKER), 0);
    CHECK_EQ_INT(accept_allows(DOCKER "; q=0.000 ", DOCKER), 0);
    CHECK_EQ_INT(accept_allows(DOCKER ";v=1;Q=0.", DOCKER), 0);
    CHECK_EQ_INT(accept_allows(DOCKER ";q=0.001", DOCKER), 1);
    CHECK_EQ_INT(accept_allows(DOCKER ";q=0x", DOCKER), 1);
    CHECK_EQ_INT(accept_allows("*/*;q=0", DOCKER), 0);
    CHECK_EQ_INT(accept_allows("*/*;q=0, " DOCKER, DOCKER), 1);
    CHECK_DONE();
}
