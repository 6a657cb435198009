/* buckets_table.h - internals shared by buckets.c (the table: layout, hashing, locks,
 * lookup and claims) and buckets_ops.c (what a bucket, a counter and a semaphore do).
 * Not part of the C API (apigw/buckets.h).
 */
#ifndef APIGW_BUCKETS_TABLE_H
#define APIGW_BUCKETS_TABLE_H

#include <stdint.h>

#include "apigw/buckets.h"

enum { W_LOCK, W_CLAIM, W_KIND, W_A, W_B, W_P1, W_P2 };
enum { KIND_BUCKET = 1, KIND_COUNTER = 2, KIND_SEM = 3 };

typedef struct {
    uint64_t *w;            /* the table's words */
    uint64_t group, gwords; /* slots per group, words per group */
    uint64_t g[2];          /* the key's candidate groups */
    int ngroups;            /* 1 when the table has a single group */
    uint64_t fp;
    uint64_t *slot;         /* the slot found / claimed (locked) */
} bk_table;

/* Every access to shared words is atomic (relaxed unless a lock orders it). */
static inline uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void st(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline int64_t lds(const uint64_t *p) { return (int64_t)ld(p); }
static inline void sts(uint64_t *p, int64_t v) { st(p, (uint64_t)v); }

/* Hashes the key and finds its candidate groups (no memory of the table is written). */
void bk_open(bk_table *t, void *mem, const char *key, size_t key_len, int kind);
/* 1 and t->slot locked if the key has a slot, else 0. */
int bk_find(bk_table *t);
/* The key's slot, locked; claimed if it had none (1 new, 0 existing), or E_FULL.
 * have_now 0: no time known (only idle semaphores may then be evicted). */
int bk_claim(bk_table *t, int kind, int have_now, int64_t now);
void bk_unlock(uint64_t *word);

#endif
