/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: daemon.json merged by client-config (an operator's file, any bytes) and the
 * --mirror URL. A merge that succeeds must give a document that merges to itself unchanged. */
#include <stdlib.h>
#include <string.h>

#include "clients/impl.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char err[512];
    struct clients_mirror m;
    char *s = fuzz_cstring(data, size);
    if (s) {
        clients_mirror_parse(s, &m, err, sizeof(err));
        free(s);
    }
    if (clients_mirror_parse("http://m.lan:5000", &m, err, sizeof(err)))
        abort();
    struct buf once, twice;
    buf_init(&once, CLIENTS_OUT_MAX);
    buf_init(&twice, CLIENTS_OUT_MAX);
    int hub = size && (data[0] & 1);
    if (clients__docker_merge((const char *)data, size, &m, hub, &once, err, sizeof(err)) == 0) {
        if (clients__docker_merge(once.data, once.len, &m, hub, &twice, err, sizeof(err)))
            abort(); /* what was written does not parse */
        if (twice.len != once.len || memcmp(twice.data, once.data, once.len))
            abort(); /* a second merge changed it */
    }
    buf_free(&once);
    buf_free(&twice);
    return 0;
}
