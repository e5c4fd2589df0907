/* SPDX-License-Identifier: Apache-2.0 */
/* A garbage-collection run: evicts what the policy (cache/evict.h) picks, from the index first
 * and then from the store, and records the run. Blocking: the daemon runs it on the thread pool
 * (through db_call, in turn with its index writes); `regcache gc` runs it directly, safely next
 * to a running daemon (a file being read stays readable after its removal). */
#ifndef REGCACHE_CACHE_GC_H
#define REGCACHE_CACHE_GC_H

#include <stddef.h>
#include <stdint.h>

struct db;
struct store;

struct gc_options {
    uint64_t now_ms, ttl_ms, max_size, min_free;
    int dry_run;
    const char *reason; /* "scheduled", "size", "manual" */
    char *const *pinned; /* digests never evicted now (fills in progress) */
    size_t n_pinned;
    /* journal what goes (db_purge), so that running daemons forget it: set by `regcache gc`,
     * which runs next to them */
    int journal;
    /* per-upstream caps (upstreams[].max_size, 0: none), by upstream name */
    const char *const *upstream_names;
    const uint64_t *upstream_max;
    size_t n_upstreams;
    /* also list the tags of what goes (gc_report.tag_keys), their parts joined by
     * tag_key_sep: the daemon forgets them in memory without walking its tags */
    int tag_keys;
    char tag_key_sep;
};

struct gc_report {
    size_t scanned, evicted, by_ttl, by_size, tags_forgotten;
    uint64_t evicted_bytes, kept_bytes, duration_ms;
    uint64_t evicted_ttl_bytes; /* of evicted_bytes, unused for longer than the TTL */
    size_t pinned_files;   /* stored files the run had to keep: pinned, or being filled */
    uint64_t pinned_bytes;
    char **digests; /* evicted (or, dry run, to be evicted) */
    size_t n_digests;
    size_t by_upstream_size; /* of by_size, for an upstream's own cap */
    int64_t seq; /* journal: the last row written (0: none) */
    size_t rows_read; /* index rows the run read: a run that evicts nothing reads at most one
                       * page of them, the least recently used (without upstream caps) */
    char **tag_keys; /* gc_options.tag_keys: the tags forgotten with the digests */
    size_t n_tag_keys, tag_keys_cap;
    int tag_keys_listed; /* tag_keys holds all of them (possibly none) */
};

/* Without an upstream's own cap (upstreams[].max_size), SQLite picks the victims through the
 * index on last access, a page at a time, least recently used first: the expired ones, then
 * while the rest is over the cap (to its low watermark) or free space under the floor; the
 * totals come from the index's running totals. A run that evicts nothing reads one row. With
 * such a cap, every row is read and planned in memory (evict_plan). */
int gc_run(struct db *db, struct store *store, const struct gc_options *o, struct gc_report *r);

void gc_report_free(struct gc_report *r);
/* Adds key to r->tag_keys (a db_each_tag_of callback). */
int gc_note_tag_key(void *ud, const char *key);

#endif
