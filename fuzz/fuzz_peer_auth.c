/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: X-Regcache-Peer values as a member receives them; a value is accepted only when
 * it is exactly what the claimed sender signs for the same request. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#include "cluster/peer_auth.h"

#define SECRET "fuzzing-cluster-secret"
#define TARGET "/v2/library/alpine/manifests/latest"
#define NOW 1780000000

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static struct members *m;
    if (!m) {
        const char *urls[] = {"http://127.0.0.1:5001", "http://127.0.0.1:5002"};
        char why[128];
        if (members_new(urls, 2, urls[0], &m, why, sizeof(why)))
            abort();
    }
    char *s = fuzz_cstring(data, size);
    if (!s)
        return 0;
    size_t sender;
    char why[128];
    if (peer_auth_verify(SECRET, strlen(SECRET), m, s, "GET", TARGET, NOW, &sender, why,
                         sizeof(why)) == 0) {
        /* the contract: what verifies is what the sender signs (a time within the skew) */
        char want[PEER_AUTH_VALUE_MAX];
        long long ts = 0;
        const char *p = strchr(s + 3, ' ');
        if (!p || sender >= members_count(m))
            abort();
        ts = strtoll(p + 1, NULL, 10);
        if (peer_auth_sign(SECRET, strlen(SECRET), members_url(m, sender), "GET", TARGET, ts,
                           want, sizeof(want)) ||
            strcmp(want, s))
            abort();
    }
    free(s);
    return 0;
}
