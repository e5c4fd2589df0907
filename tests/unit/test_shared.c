/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for util/shared.c: refcounted bodies and the index of live ones. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "util/shared.h"

int main(void)
{
    struct shared_index *ix = NULL;

    /* a copy is its own memory; the last unref frees it */
    char text[] = "manifest bytes";
    struct shared_body *a = shared_body_copy(text, strlen(text));
    CHECK(a != NULL);
    text[0] = 'X';
    CHECK_EQ_INT(a->len, 14);
    CHECK(memcmp(a->data, "manifest bytes", 14) == 0);
    CHECK(shared_body_ref(a) == a);
    CHECK_EQ_INT(a->refs, 2);
    shared_body_unref(a);

    /* indexed: found while referenced, gone (and the index with it) after the last unref */
    shared_index_put(&ix, "sha256:aa", a);
    CHECK(ix != NULL);
    struct shared_body *again = shared_index_get(&ix, "sha256:aa");
    CHECK(again == a);
    CHECK(shared_index_get(&ix, "sha256:bb") == NULL);
    shared_body_unref(again);
    shared_body_unref(a);
    CHECK(ix == NULL);
    CHECK(shared_index_get(&ix, "sha256:aa") == NULL);

    /* a newer body of the same name replaces the older one, which still frees cleanly */
    char *owned = malloc(3);
    memcpy(owned, "one", 3);
    struct shared_body *old = shared_body_adopt(owned, 3);
    struct shared_body *young = shared_body_copy("two", 3);
    shared_index_put(&ix, "k", old);
    shared_index_put(&ix, "k", young);
    struct shared_body *got = shared_index_get(&ix, "k");
    CHECK(got == young);
    shared_body_unref(got);
    shared_body_unref(old);
    CHECK(ix != NULL);
    got = shared_index_get(&ix, "k");
    CHECK(got == young);
    shared_body_unref(got);
    shared_body_unref(young);
    CHECK(ix == NULL);

    /* empty bodies are fine */
    struct shared_body *empty = shared_body_adopt(NULL, 0);
    CHECK(empty != NULL && empty->len == 0 && empty->data[0] == '\0');
    shared_body_unref(empty);
    shared_body_unref(NULL);
    CHECK_DONE();
}
