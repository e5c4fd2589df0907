/* SPDX-License-Identifier: Apache-2.0 */
/* Statements prepared once per batch: a write batch or a GC's deletes run the same few
 * statements for every row, so each is prepared on first use and then reset and bound again,
 * rather than parsed and planned anew per row. */
#include "db/impl.h"

#include <string.h>

sqlite3_stmt *db__stmt(struct db__stmts *c, sqlite3 *s, const char *sql)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].sql == sql || strcmp(c->e[i].sql, sql) == 0) {
            sqlite3_reset(c->e[i].st);
            sqlite3_clear_bindings(c->e[i].st);
            return c->e[i].st;
        }
    if (c->n == DB_STMTS_MAX)
        return NULL;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) != SQLITE_OK)
        return NULL;
    c->e[c->n].sql = sql;
    c->e[c->n++].st = st;
    c->prepared++;
    return st;
}

void db__stmts_done(struct db__stmts *c)
{
    for (size_t i = 0; i < c->n; i++)
        sqlite3_finalize(c->e[i].st);
    c->n = 0;
}
