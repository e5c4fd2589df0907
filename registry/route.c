/* SPDX-License-Identifier: Apache-2.0 */
#include "registry/route.h"

#include <string.h>

static int fail(struct route *r, int status, const char *code, const char *message)
{
    r->err_status = status;
    r->err_code = code;
    r->err_message = message;
    return -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int route_query_param(const char *query, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    const char *p = query;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t n = 0;
            for (size_t i = klen + 1; i < len; i++) {
                char ch = p[i];
                if (ch == '%' && i + 2 < len + 1 && hexval(p[i + 1]) >= 0 &&
                    hexval(p[i + 2]) >= 0) {
                    ch = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
                    i += 2;
                } else if (ch == '+') {
                    ch = ' ';
                }
                if (n + 1 >= outlen || ch == '\0')
                    return -1;
                out[n++] = ch;
            }
            out[n] = '\0';
            return (int)n;
        }
        p = end ? end + 1 : NULL;
    }
    return -1;
}

int route_artifact_type(const char *query, char *out, size_t outlen)
{
    int n = route_query_param(query, "artifactType", out, outlen);
    for (int i = 0; i < n; i++)
        if (out[i] == ' ')
            out[i] = '+';
    return n;
}

void route_query_escape(char *out, size_t outlen, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    if (!outlen)
        return;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || strchr("-._~/", ch);
        if (n + (plain ? 1 : 3) >= outlen)
            break;
        if (plain) {
            out[n++] = (char)ch;
        } else {
            out[n++] = '%';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    out[n] = '\0';
}

/* Finds the last occurrence of needle in [s, s+len). */
static const char *find_last(const char *s, size_t len, const char *needle)
{
    size_t nlen = strlen(needle);
    if (len < nlen)
        return NULL;
    for (size_t i = len - nlen + 1; i-- > 0;)
        if (memcmp(s + i, needle, nlen) == 0)
            return s + i;
    return NULL;
}

static int set_name(struct route *r, const char *s, size_t len)
{
    if (len == 0 || len > REF_NAME_MAX || !ref_name_valid(s, len))
        return fail(r, 400, "NAME_INVALID", "invalid repository name");
    memcpy(r->name, s, len);
    r->name[len] = '\0';
    return 0;
}

static int set_digest(struct route *r, const char *s, size_t len)
{
    if (len > REF_DIGEST_MAX || !ref_digest_valid(s, len))
        return fail(r, 400, "DIGEST_INVALID", "invalid digest");
    memcpy(r->reference, s, len);
    r->reference[len] = '\0';
    r->by_digest = 1;
    return 0;
}

int route_parse(const char *path, const char *query, struct route *r)
{
    memset(r, 0, sizeof(*r));
    if (query && strstr(query, "ns=") &&
        route_query_param(query, "ns", r->ns, sizeof(r->ns)) < 0)
        r->ns[0] = '\0';
    if (strcmp(path, "/v2") == 0 || strcmp(path, "/v2/") == 0) {
        r->kind = ROUTE_BASE;
        return 0;
    }
    if (strncmp(path, "/v2/", 4) != 0)
        return fail(r, 404, "NAME_UNKNOWN", "not a registry API path");
    const char *rest = path + 4;
    size_t len = strlen(rest);
    if (strcmp(rest, "_catalog") == 0) {
        r->kind = ROUTE_CATALOG;
        return 0;
    }
    const char *m;
    if (len > 10 && strcmp(rest + len - 10, "/tags/list") == 0) {
        r->kind = ROUTE_TAGS;
        return set_name(r, rest, len - 10);
    }
    if ((m = find_last(rest, len, "/blobs/uploads"))) {
        const char *after = m + 14;
        if (*after == '\0' || *after == '/') {
            r->kind = ROUTE_UPLOAD;
            r->upload_id = after[0] == '/' && after[1] != '\0';
            return set_name(r, rest, (size_t)(m - rest));
        }
    }
    if ((m = find_last(rest, len, "/manifests/"))) {
        const char *ref = m + 11;
        size_t rlen = strlen(ref);
        r->kind = ROUTE_MANIFEST;
        if (set_name(r, rest, (size_t)(m - rest)))
            return -1;
        if (memchr(ref, ':', rlen))
            return set_digest(r, ref, rlen);
        if (rlen > REF_TAG_MAX || !ref_tag_valid(ref, rlen)) {
            /* no such manifest can exist (the spec: 404); a PUT to it is MANIFEST_INVALID */
            r->bad_reference = 1;
            return fail(r, 404, "MANIFEST_UNKNOWN", "manifest unknown: not a valid tag or digest");
        }
        memcpy(r->reference, ref, rlen);
        r->reference[rlen] = '\0';
        return 0;
    }
    if ((m = find_last(rest, len, "/blobs/"))) {
        r->kind = ROUTE_BLOB;
        if (set_name(r, rest, (size_t)(m - rest)))
            return -1;
        return set_digest(r, m + 7, strlen(m + 7));
    }
    if ((m = find_last(rest, len, "/referrers/"))) {
        r->kind = ROUTE_REFERRERS;
        if (set_name(r, rest, (size_t)(m - rest)))
            return -1;
        return set_digest(r, m + 11, strlen(m + 11));
    }
    return fail(r, 404, "NAME_UNKNOWN", "unknown registry API endpoint");
}

int route_names_upstream(const struct route *rt, int (*is_upstream)(void *ud, const char *name),
                         void *ud)
{
    if (rt->ns[0])
        return 1;
    const char *slash = strchr(rt->name, '/');
    if (!slash)
        return 0;
    char first[REF_NAME_MAX + 1];
    memcpy(first, rt->name, (size_t)(slash - rt->name));
    first[slash - rt->name] = '\0';
    return is_upstream(ud, first) != 0;
}

const char *route_handler_name(const struct route *rt)
{
    if (!rt)
        return NULL;
    switch (rt->kind) {
    case ROUTE_BASE: return "base";
    case ROUTE_CATALOG: return "catalog";
    case ROUTE_MANIFEST: return "manifest";
    case ROUTE_BLOB: return "blob";
    case ROUTE_TAGS: return "tags";
    case ROUTE_UPLOAD: return rt->upload_id ? "blob_upload_chunk" : "blob_upload";
    case ROUTE_REFERRERS: return "referrers";
    }
    return NULL;
}
