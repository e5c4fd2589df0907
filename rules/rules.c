/* SPDX-License-Identifier: Apache-2.0 */
#include "rules/rules.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 255

struct group {
    char *name;
    char **users;
    size_t n_users;
};

struct rule {
    int allow;
    char *upstream; /* NULL: any */
    char *repo;
    char *tag; /* NULL: any ("*") */
    char **users;
    size_t n_users; /* 0: everyone */
    char text[RULES_TEXT_MAX];
};

struct rules {
    struct rule *list;
    size_t n, cap;
    struct group *groups;
    size_t n_groups;
    int default_allow;
};

struct rules *rules_new(void)
{
    struct rules *r = calloc(1, sizeof(*r));
    if (r)
        r->default_allow = 1;
    return r;
}

static void strs_free(char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

void rules_free(struct rules *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->list[i].upstream);
        free(r->list[i].repo);
        free(r->list[i].tag);
        strs_free(r->list[i].users, r->list[i].n_users);
    }
    free(r->list);
    for (size_t i = 0; i < r->n_groups; i++) {
        free(r->groups[i].name);
        strs_free(r->groups[i].users, r->groups[i].n_users);
    }
    free(r->groups);
    free(r);
}

void rules_set_default(struct rules *r, int allow)
{
    r->default_allow = allow;
}

size_t rules_count(const struct rules *r)
{
    return r ? r->n : 0;
}

const char *rules_upstream(const struct rules *r, size_t i)
{
    return i >= 1 && i <= r->n ? r->list[i - 1].upstream : NULL;
}

const char *rules_text(const struct rules *r, size_t i)
{
    return i >= 1 && i <= r->n ? r->list[i - 1].text : "default";
}

static const struct group *group_find(const struct rules *r, const char *name)
{
    for (size_t i = 0; i < r->n_groups; i++)
        if (!strcmp(r->groups[i].name, name))
            return &r->groups[i];
    return NULL;
}

/* A glob fnmatch(3) takes as meant: characters of names, * ? and closed [...] classes. */
static const char *check_glob(const char *s, const char *extra, const char *what)
{
    if (!*s || strlen(s) > NAME_MAX_LEN)
        return what;
    for (const char *p = s; *p; p++) {
        if (*p == '[') {
            const char *close = strchr(p + 1 + (p[1] == '!' || p[1] == ']'), ']');
            if (!close)
                return "unclosed '[' in a glob";
            p = close;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("._-*?", *p) ||
              strchr(extra, *p)))
            return "only name characters and the globs * ? [] are allowed";
    }
    return NULL;
}

static const char *check_user(const struct rules *r, const char *u)
{
    if (!*u || strlen(u) > NAME_MAX_LEN || strchr(u, ':'))
        return "invalid user name";
    if (u[0] == '@' && !group_find(r, u + 1))
        return "unknown group (define it under rules.groups)";
    return NULL;
}

static char **strs_dup(const char *const *s, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; out && i < n; i++)
        if (!(out[i] = strdup(s[i]))) {
            strs_free(out, i);
            return NULL;
        }
    return out;
}

const char *rules_add_group(struct rules *r, const char *name, const char *const *users,
                            size_t n_users)
{
    if (!*name || strlen(name) > NAME_MAX_LEN || strchr(name, '@') || strchr(name, ':'))
        return "invalid group name";
    if (group_find(r, name))
        return "group defined twice";
    for (size_t i = 0; i < n_users; i++)
        if (!*users[i] || users[i][0] == '@' || strchr(users[i], ':'))
            return "a group lists user names (or anonymous)";
    struct group *g = realloc(r->groups, (r->n_groups + 1) * sizeof(*g));
    if (!g)
        return "out of memory";
    r->groups = g;
    g = &r->groups[r->n_groups];
    if (!(g->name = strdup(name)) || !(g->users = strs_dup(users, n_users))) {
        free(g->name);
        return "out of memory";
    }
    g->n_users = n_users;
    r->n_groups++;
    return NULL;
}

const char *rules_add(struct rules *r, int allow, const char *pattern, const char *const *users,
                      size_t n_users)
{
    char up[NAME_MAX_LEN + 1], repo[NAME_MAX_LEN + 1], tag[NAME_MAX_LEN + 1] = "*";
    const char *slash = strchr(pattern, '/'), *colon, *why;
    if (r->n >= RULES_MAX)
        return "too many rules";
    if (!slash || slash == pattern || (size_t)(slash - pattern) > NAME_MAX_LEN)
        return "expected UPSTREAM/REPOSITORY[:TAG] (UPSTREAM may be *)";
    snprintf(up, sizeof(up), "%.*s", (int)(slash - pattern), pattern);
    colon = strchr(slash + 1, ':');
    size_t rlen = colon ? (size_t)(colon - slash - 1) : strlen(slash + 1);
    if (rlen > NAME_MAX_LEN || (colon && strlen(colon + 1) > NAME_MAX_LEN))
        return "the pattern is too long";
    snprintf(repo, sizeof(repo), "%.*s", (int)rlen, slash + 1);
    if (colon)
        snprintf(tag, sizeof(tag), "%s", colon + 1);
    if (strcmp(up, "*") && strpbrk(up, "*?["))
        return "the upstream is a name or *, not a glob";
    if ((why = check_glob(up, ":", "invalid upstream name")) ||
        (why = check_glob(repo, "/", "expected a repository glob after UPSTREAM/")) ||
        (why = check_glob(tag, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "expected a tag glob after ':'")))
        return why;
    for (size_t i = 0; i < n_users; i++)
        if ((why = check_user(r, users[i])))
            return why;
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 8;
        struct rule *l = realloc(r->list, cap * sizeof(*l));
        if (!l)
            return "out of memory";
        r->list = l;
        r->cap = cap;
    }
    struct rule *x = &r->list[r->n];
    memset(x, 0, sizeof(*x));
    x->allow = allow;
    int ok = (x->upstream = strcmp(up, "*") ? strdup(up) : NULL, !strcmp(up, "*") || x->upstream);
    ok = ok && (x->repo = strdup(repo));
    ok = ok && (strcmp(tag, "*") == 0 || (x->tag = strdup(tag)));
    ok = ok && (x->users = strs_dup(users, n_users));
    if (!ok) {
        free(x->upstream);
        free(x->repo);
        free(x->tag);
        return "out of memory";
    }
    x->n_users = n_users;
    snprintf(x->text, sizeof(x->text), "%s %s/%s:%s", allow ? "allow" : "deny", up, repo, tag);
    r->n++;
    return NULL;
}

static int user_in(const char *const *list, size_t n, const char *user)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], user))
            return 1;
    return 0;
}

static int user_matches(const struct rules *r, const struct rule *x, const char *user)
{
    if (!x->n_users)
        return 1;
    const char *who = user ? user : "anonymous";
    for (size_t i = 0; i < x->n_users; i++) {
        const char *s = x->users[i];
        if (s[0] == '@') {
            const struct group *g = group_find(r, s + 1);
            if (g && user_in((const char *const *)g->users, g->n_users, who))
                return 1;
        } else if (!strcmp(s, who) && (user || !strcmp(s, "anonymous"))) {
            return 1;
        }
    }
    return 0;
}

void rules_judge(const struct rules *r, const char *user, const char *upstream, const char *repo,
                 const char *tag, int known, struct rules_verdict *v)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct rule *x = &r->list[i];
        if (x->upstream && (!upstream || strcmp(x->upstream, upstream)))
            continue;
        if (fnmatch(x->repo, repo, 0) || !user_matches(r, x, user))
            continue;
        if (x->tag && !tag && !(x->allow && known))
            continue; /* a digest is not a tag; an allowed tag's content is known */
        if (x->tag && tag && fnmatch(x->tag, tag, 0))
            continue;
        v->allow = x->allow;
        v->rule = i + 1;
        return;
    }
    v->allow = r->default_allow;
    v->rule = 0;
}

int rules_listable(const struct rules *r, const char *user, const char *upstream,
                   const char *repo)
{
    struct rules_verdict v;
    rules_judge(r, user, upstream, repo, NULL, 1, &v);
    return v.allow;
}
