/* SPDX-License-Identifier: Apache-2.0 */
#include "auth/htpasswd.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "util/map.h"

struct htpasswd {
    struct map *users; /* user -> strdup'ed hash */
    int max_cost;      /* the highest cost of a loaded hash, 0 when none */
};

static int is_bcrypt(const char *hash)
{
    return (strncmp(hash, "$2y$", 4) == 0 || strncmp(hash, "$2b$", 4) == 0 ||
            strncmp(hash, "$2a$", 4) == 0) &&
           strlen(hash) == 60;
}

int htpasswd_cost(const char *hash)
{
    if (!is_bcrypt(hash) || hash[4] < '0' || hash[4] > '9' || hash[5] < '0' || hash[5] > '9' ||
        hash[6] != '$')
        return -1;
    return (hash[4] - '0') * 10 + (hash[5] - '0');
}

int htpasswd_user_valid(const char *user)
{
    size_t n = strlen(user);
    if (n == 0 || n > HTPASSWD_USER_MAX)
        return 0;
    for (const char *p = user; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == ':' || *p == 0x7f)
            return 0;
    return 1;
}

static int read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st)) {
        int r = -errno;
        close(fd);
        return r;
    }
    if (st.st_size > HTPASSWD_MAX_BYTES) {
        close(fd);
        return -EFBIG;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

static int free_hash(const char *key, void *value, void *ud)
{
    (void)key;
    (void)ud;
    free(value);
    return 0;
}

void htpasswd_free(struct htpasswd *h)
{
    if (!h)
        return;
    map_each(h->users, free_hash, NULL);
    map_free(h->users);
    free(h);
}

int htpasswd_load(const char *path, struct htpasswd **out, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int r = read_file(path, &text, &len);
    if (r) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-r));
        return r;
    }
    struct htpasswd *h = calloc(1, sizeof(*h));
    if (!h || !(h->users = map_new())) {
        free(h);
        free(text);
        return -ENOMEM;
    }
    unsigned line = 0, weak_line = 0, n_weak = 0;
    int weak_cost = 0;
    char weak_user[HTPASSWD_USER_MAX + 1] = "";
    r = 0;
    for (char *p = text, *end; p && *p; p = end) {
        end = strchr(p, '\n');
        if (end)
            *end++ = '\0';
        line++;
        size_t n = strlen(p);
        if (n && p[n - 1] == '\r')
            p[--n] = '\0';
        if (!n || p[0] == '#')
            continue;
        char *colon = strchr(p, ':');
        if (!colon) {
            snprintf(err, errlen, "%s:%u: expected user:hash", path, line);
            r = -EINVAL;
            break;
        }
        *colon = '\0';
        const char *user = p, *hash = colon + 1;
        if (!htpasswd_user_valid(user)) {
            snprintf(err, errlen, "%s:%u: invalid user name", path, line);
            r = -EINVAL;
            break;
        }
        if (!is_bcrypt(hash)) {
            log_warn("%s:%u: user '%s' skipped: only bcrypt hashes ($2y$, $2b$, $2a$) are "
                     "accepted (create one with: regcache passwd %s %s)",
                     path, line, user, path, user);
            continue;
        }
        int cost = htpasswd_cost(hash);
        if (cost < 4 || cost > 31) {
            log_warn("%s:%u: user '%s' skipped: bcrypt cost %d is out of range (4..31)", path,
                     line, user, cost);
            continue;
        }
        if (cost < HTPASSWD_BCRYPT_COST && !n_weak++) {
            weak_line = line;
            weak_cost = cost;
            snprintf(weak_user, sizeof(weak_user), "%s", user);
        }
        if (cost > h->max_cost)
            h->max_cost = cost;
        char *copy = strdup(hash);
        if (!copy) {
            r = -ENOMEM;
            break;
        }
        void *old = map_put(h->users, user, copy);
        if (old == MAP_NOMEM) {
            free(copy);
            r = -ENOMEM;
            break;
        }
        free(old); /* a later line for the same user wins */
    }
    free(text);
    if (r) {
        htpasswd_free(h);
        return r;
    }
    if (n_weak)
        log_warn("%s:%u: user '%s' has a bcrypt hash of cost %d, under %d (%u such users in "
                 "the file): cheap to guess offline; renew it with: regcache passwd %s %s",
                 path, weak_line, weak_user, weak_cost, HTPASSWD_BCRYPT_COST, n_weak, path,
                 weak_user);
    *out = h;
    return 0;
}

size_t htpasswd_count(const struct htpasswd *h)
{
    return map_count(h->users);
}

const char *htpasswd_hash(const struct htpasswd *h, const char *user)
{
    return map_get(h->users, user);
}

int htpasswd_dummy_cost(const struct htpasswd *h)
{
    if (!h || !h->max_cost)
        return HTPASSWD_BCRYPT_COST;
    return h->max_cost > HTPASSWD_COST_MAX ? HTPASSWD_COST_MAX : h->max_cost;
}

int htpasswd_make_dummy(int cost, char *out, size_t outlen)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (cost < 4 || cost > 31 || outlen < 61)
        return -EINVAL;
    if (!crypt_gensalt_rn("$2y$", (unsigned long)cost, NULL, 0, setting, sizeof(setting)) ||
        strlen(setting) != 29)
        return -EINVAL;
    /* the setting ("$2y$NN$" and 22 salt characters) and 31 characters of a digest that bcrypt
     * never outputs for it in practice */
    snprintf(out, outlen, "%s%s", setting, "...............................");
    return 0;
}

int htpasswd_verify(const char *hash, const char *password)
{
    struct crypt_data data;
    memset(&data, 0, sizeof(data));
    if (!is_bcrypt(hash))
        return 0;
    const char *out = crypt_rn(password, hash, &data, sizeof(data));
    if (!out || out[0] == '*')
        return 0;
    size_t n = strlen(hash);
    if (strlen(out) != n)
        return 0;
    unsigned char diff = 0; /* compare in constant time */
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(out[i] ^ hash[i]);
    return diff == 0;
}

int htpasswd_make_hash(const char *password, char *out, size_t outlen)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data data;
    memset(&data, 0, sizeof(data));
    if (!crypt_gensalt_rn("$2y$", HTPASSWD_BCRYPT_COST, NULL, 0, setting, sizeof(setting)))
        return -errno ? -errno : -EINVAL;
    const char *h = crypt_rn(password, setting, &data, sizeof(data));
    if (!h || h[0] == '*' || strlen(h) + 1 > outlen)
        return -EINVAL;
    memcpy(out, h, strlen(h) + 1);
    return 0;
}

int htpasswd_set(const char *path, const char *user, const char *hash)
{
    char *text = NULL, tmp[4096];
    size_t len = 0;
    int r = read_file(path, &text, &len);
    if (r && r != -ENOENT)
        return r;
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(text);
        return -errno;
    }
    fchmod(fileno(f), 0640);
    int replaced = 0;
    size_t ulen = strlen(user);
    for (char *p = text, *end; p && *p; p = end) {
        end = strchr(p, '\n');
        if (end)
            *end++ = '\0';
        if (strncmp(p, user, ulen) == 0 && p[ulen] == ':') {
            if (!replaced)
                fprintf(f, "%s:%s\n", user, hash);
            replaced = 1;
            continue;
        }
        fprintf(f, "%s\n", p);
    }
    if (!replaced)
        fprintf(f, "%s:%s\n", user, hash);
    free(text);
    if (fflush(f) || fsync(fileno(f))) {
        r = -errno;
        fclose(f);
        unlink(tmp);
        return r;
    }
    fclose(f);
    if (rename(tmp, path)) {
        r = -errno;
        unlink(tmp);
        return r;
    }
    return 0;
}
