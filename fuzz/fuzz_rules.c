/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: pull rules from untrusted text. Each line is a rule ("+" allow or "-" deny, then
 * the pattern) or, starting with "?", a request "user upstream repo tag|@"; a refused rule is
 * never counted, and a verdict always names a rule that exists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rules.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct rules *r = rules_new();
    const char *users[] = {"alice", "@ci", "anonymous"}, *group[] = {"alice", "anonymous"};
    rules_add_group(r, "ci", group, 2);
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '+' || line[0] == '-') {
            size_t before = rules_count(r);
            const char *why = rules_add(r, line[0] == '+', line + 1, users, (size_t)(line[1] & 3));
            if (rules_count(r) != before + (why == NULL))
                abort();
        } else if (line[0] == '?') {
            char user[64], up[64], repo[300], tag[200];
            if (sscanf(line + 1, "%63s %63s %299s %199s", user, up, repo, tag) != 4)
                continue;
            struct rules_verdict v;
            rules_judge(r, strcmp(user, "-") ? user : NULL, strcmp(up, "-") ? up : NULL, repo,
                        strcmp(tag, "@") ? tag : NULL, tag[0] == '@', &v);
            if (v.rule > rules_count(r) || (v.rule && !rules_text(r, v.rule)[0]))
                abort();
        }
    }
    rules_free(r);
    free(text);
    return 0;
}
