/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: Bearer tokens as clients send them, checked against a fixed key; and a round trip
 * of the input as a holder's name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#include "auth/token.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const struct token_key key = {{1, 2, 3, 4, 5, 6, 7, 8, 9}};
    char user[256], tok[TOKEN_MAX];
    char *s = fuzz_cstring(data, size);
    if (!s)
        return 0;
    int r = token_verify(&key, s, strlen(s), 1000, user, sizeof(user), NULL);
    if (r == 0 && strlen(user) >= sizeof(user))
        abort();
    if (strlen(s) < 256 && !strchr(s, ' ') && token_issue(&key, s, 2000, tok, sizeof(tok)) == 0) {
        if (token_verify(&key, tok, strlen(tok), 1000, user, sizeof(user), NULL) || strcmp(user, s))
            abort(); /* the contract: what is issued verifies, naming the same holder */
    }
    free(s);
    return 0;
}
