/* SPDX-License-Identifier: Apache-2.0 */
/* _catalog pages: sorted, each name once, n and last, the next page's cursor. */
#include "check.h"
#include "registry/catalog.h"

static void page(struct catalog *c, size_t n, const char *last, const char *want,
                 const char *want_next)
{
    struct buf out;
    char next[64];
    buf_init(&out, 4096);
    CHECK_EQ_INT(catalog_page(c, n, last, &out, next, sizeof(next)), 0);
    buf_terminate(&out);
    CHECK_STR(out.data, want);
    CHECK_STR(next, want_next);
    buf_free(&out);
}

int main(void)
{
    struct catalog c = {0};
    page(&c, 0, NULL, "{\"repositories\":[]}\n", "");
    page(&c, 2, NULL, "{\"repositories\":[]}\n", "");
    page(&c, 1, "a", "{\"repositories\":[]}\n", ""); /* no names: nothing sorted, no NULL use */
    catalog_free(&c);
    page(&c, 0, NULL, "{\"repositories\":[]}\n", "");
    const char *names[] = {"team/b", "library/a", "quay.io/x", "team/b", "library/a", "z"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        CHECK_EQ_INT(catalog_add(&c, names[i]), 0);
    page(&c, 0, NULL, "{\"repositories\":[\"library/a\",\"quay.io/x\",\"team/b\",\"z\"]}\n", "");
    page(&c, 2, NULL, "{\"repositories\":[\"library/a\",\"quay.io/x\"]}\n", "quay.io/x");
    page(&c, 2, "quay.io/x", "{\"repositories\":[\"team/b\",\"z\"]}\n", "");
    page(&c, 1, "quay.io/x", "{\"repositories\":[\"team/b\"]}\n", "team/b");
    page(&c, 3, "library/a", "{\"repositories\":[\"quay.io/x\",\"team/b\",\"z\"]}\n", "");
    page(&c, 4, NULL, "{\"repositories\":[\"library/a\",\"quay.io/x\",\"team/b\",\"z\"]}\n", "");
    page(&c, 0, "z", "{\"repositories\":[]}\n", "");
    page(&c, 0, "a", "{\"repositories\":[\"library/a\",\"quay.io/x\",\"team/b\",\"z\"]}\n", "");
    /* duplicates after the page's end do not make a next page */
    struct catalog d = {0};
    catalog_add(&d, "x");
    catalog_add(&d, "x");
    page(&d, 1, NULL, "{\"repositories\":[\"x\"]}\n", "");
    catalog_free(&d);
    catalog_free(&c);
    CHECK_DONE();
}
