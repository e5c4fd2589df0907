/* SPDX-License-Identifier: Apache-2.0 */
/* Hand-written matchers for the distribution spec's name, tag and digest grammar. */
#include "util/reference.h"

#include <string.h>

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Consumes one or more [a-z0-9] at s[*i]; false when there is none. */
static bool alnum_run(const char *s, size_t len, size_t *i)
{
    size_t start = *i;

    while (*i < len && is_lower_alnum(s[*i]))
        (*i)++;
    return *i > start;
}

/* component := [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)* */
static bool component(const char *s, size_t len, size_t *i)
{
    if (!alnum_run(s, len, i))
        return false;
    while (*i < len && s[*i] != '/') {
        char c = s[*i];
        if (c == '.') {
            (*i)++;
        } else if (c == '_') {
            (*i)++;
            if (*i < len && s[*i] == '_')
                (*i)++;
        } else if (c == '-') {
            while (*i < len && s[*i] == '-')
                (*i)++;
        } else {
            return false;
        }
        if (!alnum_run(s, len, i))
            return false;
    }
    return true;
}

bool ref_name_valid(const char *s, size_t len)
{
    size_t i = 0;

    if (!s || len == 0 || len > REF_NAME_MAX)
        return false;
    for (;;) {
        if (!component(s, len, &i))
            return false;
        if (i == len)
            return true;
        i++; /* the '/' that stopped the component */
    }
}

bool ref_tag_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > REF_TAG_MAX)
        return false;
    if (!is_alnum(s[0]) && s[0] != '_')
        return false;
    for (size_t i = 1; i < len; i++) {
        if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    }
    return true;
}

static bool digest_with(const char *s, size_t len, const char *algo, size_t hex_len)
{
    size_t alen = strlen(algo);

    if (!s || len != alen + 1 + hex_len || memcmp(s, algo, alen) != 0 || s[alen] != ':')
        return false;
    for (size_t i = alen + 1; i < len; i++) {
        if (!is_lower_hex(s[i]))
            return false;
    }
    return true;
}

bool ref_digest_is_sha256(const char *s, size_t len)
{
    return digest_with(s, len, "sha256", 64);
}

bool ref_digest_valid(const char *s, size_t len)
{
    return digest_with(s, len, "sha256", 64) || digest_with(s, len, "sha512", 128);
}
