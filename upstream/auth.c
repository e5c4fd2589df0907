/* SPDX-License-Identifier: Apache-2.0 */
#include "upstream/auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

struct token_entry {
    char *scope;
    char *token;
    uint64_t expires_at_ms;
    uint64_t stored_seq;
};

struct token_cache {
    struct token_entry slots[TOKEN_CACHE_SLOTS];
    uint64_t seq;
};

struct token_cache *token_cache_new(void)
{
    return calloc(1, sizeof(struct token_cache));
}

static void entry_clear(struct token_entry *e)
{
    free(e->scope);
    free(e->token);
    memset(e, 0, sizeof(*e));
}

void token_cache_free(struct token_cache *tc)
{
    if (!tc)
        return;
    for (size_t i = 0; i < TOKEN_CACHE_SLOTS; i++)
        entry_clear(&tc->slots[i]);
    free(tc);
}

static struct token_entry *find(struct token_cache *tc, const char *scope)
{
    for (size_t i = 0; i < TOKEN_CACHE_SLOTS; i++)
        if (tc->slots[i].scope && strcmp(tc->slots[i].scope, scope) == 0)
            return &tc->slots[i];
    return NULL;
}

const char *token_cache_get(struct token_cache *tc, const char *scope, uint64_t now_ms)
{
    struct token_entry *e = find(tc, scope);
    if (!e)
        return NULL;
    if (now_ms >= e->expires_at_ms) {
        entry_clear(e);
        return NULL;
    }
    return e->token;
}

int token_cache_put(struct token_cache *tc, const char *scope, const char *token,
                    uint64_t expires_at_ms)
{
    struct token_entry *e = find(tc, scope);
    if (!e) {
        e = &tc->slots[0];
        for (size_t i = 0; i < TOKEN_CACHE_SLOTS; i++) {
            if (!tc->slots[i].scope) {
                e = &tc->slots[i];
                break;
            }
            if (tc->slots[i].stored_seq < e->stored_seq)
                e = &tc->slots[i];
        }
    }
    char *s = strdup(scope), *t = strdup(token);
    if (!s || !t) {
        free(s);
        free(t);
        return -ENOMEM;
    }
    entry_clear(e);
    e->scope = s;
    e->token = t;
    e->expires_at_ms = expires_at_ms;
    e->stored_seq = ++tc->seq;
    return 0;
}

void token_cache_drop(struct token_cache *tc, const char *scope)
{
    struct token_entry *e = find(tc, scope);
    if (e)
        entry_clear(e);
}

int token_parse_response(const char *body, size_t len, char **token, uint64_t *expires_in_s)
{
    char *t = malloc(TOKEN_MAX);
    if (!t)
        return -ENOMEM;
    int n = json_get_string(body, len, "token", t, TOKEN_MAX);
    if (n <= 0)
        n = json_get_string(body, len, "access_token", t, TOKEN_MAX);
    if (n <= 0) {
        free(t);
        return -EINVAL;
    }
    uint64_t exp = 0;
    if (json_get_uint(body, len, "expires_in", &exp) || exp == 0)
        exp = 60; /* the token spec's default */
    *token = t;
    *expires_in_s = exp;
    return 0;
}

uint64_t token_use_until(uint64_t now_ms, uint64_t expires_in_s)
{
    uint64_t life = expires_in_s * 1000;
    uint64_t margin = life / 4 < 10000 ? life / 4 : 10000;
    return now_ms + life - margin;
}
