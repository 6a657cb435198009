/* buckets.c - the shared-memory bucket table: layout, hashing, slot locks, lookup and
 * claims (buckets_ops.c: what a bucket, a counter and a semaphore do); see
 * apigw/buckets.h.
 *
 * Strategy.  Bucketised two-choice hashing over fixed 64-byte slots: a key lives in one
 * of two groups of 8 slots and is recognised by its 64-bit fingerprint (kept with the
 * group's other fingerprints in one cache line), so keys sharing a group never share
 * state.  A new key goes to the less occupied group, which keeps a group from
 * overflowing until ~70 % load.  Slots never become empty again (an eviction hands the
 * slot straight to the new key) and a group fills from its front, so a lookup stops at
 * a group's first empty slot.  All arithmetic is
 * on integers kept inside int64/uint64 by the argument ranges (APIGW_BK_*_MAX), which is
 * what lets the pure-Python twin match it bit for bit.
 *
 * Locking, per slot, by compare-and-swap (GCC/clang __atomic builtins on 64-bit words,
 * address-free and so valid across processes): the lock word goes 0 -> pid for the few
 * dozen instructions of an update; no system call is made while it is held.  A waiter
 * that spins long checks whether the holder still exists (kill(pid, 0)) and takes a dead
 * holder's lock over, so a worker killed mid-update cannot wedge a slot (its half-done
 * update of one bucket is the only damage).  A key that has no slot yet is claimed under
 * the claim word of its first group's first slot: two processes claiming the same new key
 * serialise there, and the second finds the first's slot.  A claim word is only ever
 * taken while no slot lock is held, and at most one slot lock is held at a time, so the
 * locks cannot deadlock.  Reads outside a lock (the probe, the eviction scan) are atomic
 * loads used as hints and re-checked under the lock.
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* kill, sched_yield under -std=c11 */
#endif
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "apigw/buckets.h"
#include "buckets_table.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__GNUC__)
#define unlikely(x) __builtin_expect(!!(x), 0)
#else
#define unlikely(x) (x)
#endif

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif


#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define FP_SALT 0x5BD1E9955BD1E995ULL
#define AGE_SEM (-APIGW_BK_TIME_MAX - 1) /* an idle semaphore is the first to go */
#define SPINS_BEFORE_YIELD 256
#define YIELDS_BEFORE_CHECK 64


/* ---------------------------------------------------------------- atomics, locks */

/* getpid() is a system call in current glibc: cache it, and forget it in a fork child. */
static uint64_t cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;
static void forget_pid(void) { __atomic_store_n(&cached_pid, 0, __ATOMIC_RELAXED); }
static void register_fork(void) { pthread_atfork(NULL, NULL, forget_pid); }

static uint64_t self_id(void)
{
    uint64_t id = __atomic_load_n(&cached_pid, __ATOMIC_RELAXED);
    if (unlikely(id == 0)) {
        pthread_once(&pid_once, register_fork);
        id = (uint64_t)getpid();
        __atomic_store_n(&cached_pid, id, __ATOMIC_RELAXED);
    }
    return id;
}

static int holder_dead(uint64_t pid)
{
    return pid != 0 && pid != self_id() && pid <= (uint64_t)INT32_MAX &&
           kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static void lock(uint64_t *word)
{
    uint64_t me = self_id();
    unsigned spins = 0, yields = 0;
    for (;;) {
        uint64_t cur = 0;
        if (__atomic_compare_exchange_n(word, &cur, me, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return;
        if (++spins < SPINS_BEFORE_YIELD) {
            cpu_relax();
            continue;
        }
        spins = 0;
        if (++yields % YIELDS_BEFORE_CHECK == 0 && holder_dead(cur) &&
            __atomic_compare_exchange_n(word, &cur, me, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return;
        sched_yield();
    }
}

void bk_unlock(uint64_t *word) { __atomic_store_n(word, 0, __ATOMIC_RELEASE); }

/* ---------------------------------------------------------------- hashing */

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t load_le(const unsigned char *p, size_t n)
{
    uint64_t w = 0;
    size_t k;
    for (k = 0; k < n; k++)
        w |= (uint64_t)p[k] << (8 * k);
    return w;
}

uint64_t apigw_bk_hash(const char *key, size_t key_len, uint64_t seed)
{
    const unsigned char *p = (const unsigned char *)key;
    uint64_t h = seed + P3 + (uint64_t)key_len * P1;
    size_t i = 0;
    while (i < key_len) {
        size_t take = key_len - i < 8 ? key_len - i : 8;
        uint64_t w;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (take == 8)
            memcpy(&w, p + i, 8);
        else
#endif
            w = load_le(p + i, take);
        h = rotl(h ^ (rotl(w * P2, 31) * P1), 27) * P1 + P2;
        i += take;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

/* ---------------------------------------------------------------- table */

static uint64_t group_size(uint64_t slots)
{
    return slots < APIGW_BK_GROUP ? slots : APIGW_BK_GROUP;
}

size_t apigw_bk_bytes(uint64_t slots)
{
    uint64_t g;
    if (slots == 0 || slots > (1ULL << 32) || (slots > APIGW_BK_GROUP && slots % APIGW_BK_GROUP))
        return 0;
    g = group_size(slots);
    return (size_t)(8 * (APIGW_BK_HEADER_WORDS +
                         slots / g * (APIGW_BK_FP_WORDS + g * APIGW_BK_SLOT_WORDS)));
}

int apigw_bk_init(void *mem, size_t len, uint64_t slots, uint64_t seed)
{
    uint64_t *w = mem;
    size_t need = apigw_bk_bytes(slots);
    if (need == 0 || len < need)
        return APIGW_BK_E_INVAL;
    w[1] = APIGW_BK_VERSION;
    w[2] = slots;
    w[3] = group_size(slots);
    w[4] = seed;
    __atomic_store_n(&w[0], APIGW_BK_MAGIC, __ATOMIC_RELEASE);
    return APIGW_BK_OK;
}

int apigw_bk_check(const void *mem, size_t len)
{
    const uint64_t *w = mem;
    uint64_t slots;
    if (len < 8 * APIGW_BK_HEADER_WORDS || w[0] != APIGW_BK_MAGIC ||
        w[1] != APIGW_BK_VERSION)
        return APIGW_BK_E_INVAL;
    slots = w[2];
    if (apigw_bk_bytes(slots) == 0 || len < apigw_bk_bytes(slots) || w[3] != group_size(slots))
        return APIGW_BK_E_INVAL;
    return APIGW_BK_OK;
}

void bk_open(bk_table *t, void *mem, const char *key, size_t key_len, int kind)
{
    uint64_t s, h, ngroups;
    t->w = mem;
    t->group = t->w[3];
    t->gwords = APIGW_BK_FP_WORDS + t->group * APIGW_BK_SLOT_WORDS;
    ngroups = t->w[2] / t->group;
    s = t->w[4] ^ (uint64_t)kind;
    h = apigw_bk_hash(key, key_len, s);
    t->fp = apigw_bk_hash(key, key_len, s ^ FP_SALT);
    if (t->fp == 0)
        t->fp = 1;
    /* (x * n) >> 32 maps a 32-bit x onto 0..n-1 without a division */
    t->g[0] = ((h & 0xFFFFFFFFu) * ngroups) >> 32;
    t->ngroups = ngroups == 1 ? 1 : 2;
    t->g[1] = ((h >> 32) * ngroups) >> 32;
    if (t->g[1] == t->g[0])
        t->g[1] = (t->g[0] + 1) % ngroups;
    t->slot = NULL;
}

static inline uint64_t *fps_of(const bk_table *t, int gi)
{
    return t->w + APIGW_BK_HEADER_WORDS + t->g[gi] * t->gwords;
}

static inline uint64_t *slot_of(const bk_table *t, int gi, uint64_t j)
{
    return fps_of(t, gi) + APIGW_BK_FP_WORDS + j * APIGW_BK_SLOT_WORDS;
}

/* Finds the key's slot and locks it: 1 found (t->slot locked), 0 not there.  A group
 * fills from its front and never empties, so its scan stops at the first free slot. */
int bk_find(bk_table *t)
{
    int gi;
    uint64_t j;
#if defined(__GNUC__)
    if (t->ngroups == 2) /* half the keys live in their second group: fetch both lines */
        __builtin_prefetch(fps_of(t, 1));
#endif
restart:
    for (gi = 0; gi < t->ngroups; gi++) {
        uint64_t *fps = fps_of(t, gi);
        for (j = 0; j < t->group; j++) {
            uint64_t f = __atomic_load_n(&fps[j], __ATOMIC_ACQUIRE);
            if (f == t->fp) {
                uint64_t *s = slot_of(t, gi, j);
                lock(&s[W_LOCK]);
                if (ld(&fps[j]) == t->fp) {
                    t->slot = s;
                    return 1;
                }
                bk_unlock(&s[W_LOCK]); /* evicted meanwhile: look again */
                goto restart;
            }
            if (f == 0)
                break;
        }
    }
    return 0;
}

/* Is slot s idle at `now` (have_now 0: no time known)?  1 and its age if so. */
static int idle_age(const uint64_t *s, int have_now, int64_t now, int64_t *age)
{
    uint64_t kind = ld(&s[W_KIND]);
    if (kind == KIND_SEM) {
        *age = AGE_SEM;
        return ld(&s[W_A]) == 0;
    }
    if (!have_now)
        return 0;
    if (kind == KIND_BUCKET) {
        int64_t t = lds(&s[W_B]);
        uint64_t calls = ld(&s[W_P1]), period = ld(&s[W_P2]);
        uint64_t el;
        if (now < t)
            return 0;
        el = (uint64_t)(now - t);
        if (el > period)
            el = period;
        *age = t;
        /* credit + el * calls >= full; a racy read may see a torn mix: re-checked locked */
        return calls <= (uint64_t)APIGW_BK_FULL_MAX && period <= (uint64_t)APIGW_BK_FULL_MAX &&
               ld(&s[W_A]) + el * calls >= calls * period;
    }
    if (kind == KIND_COUNTER) {
        int64_t period = lds(&s[W_P2]), end = lds(&s[W_B]);
        *age = end - period;
        return period > 0 && now >= end;
    }
    return 0;
}

static uint64_t used_of(const bk_table *t, int gi)
{
    const uint64_t *fps = fps_of(t, gi);
    uint64_t j;
    for (j = 0; j < t->group; j++)
        if (__atomic_load_n(&fps[j], __ATOMIC_ACQUIRE) == 0)
            break;
    return j;
}

/* The key's slot, locked; claimed if it had none: the first free slot of the less
 * occupied group (ties: the first), else the idle slot of both idle longest (ties:
 * first in group order).  1 new, 0 existing, or E_FULL. */
int bk_claim(bk_table *t, int kind, int have_now, int64_t now)
{
    uint64_t *claim_word = slot_of(t, 0, 0) + W_CLAIM;
    uint64_t j;
    int rc = APIGW_BK_E_FULL;
    if (bk_find(t))
        return 0;
    lock(claim_word);
    if (bk_find(t)) {
        bk_unlock(claim_word);
        return 0;
    }
    for (;;) {
        uint64_t *victim = NULL, *vfp = NULL;
        uint64_t used[2] = {0, 0};
        int64_t best = 0, age = 0;
        int gi, pick = 0, empty = 0;
        for (gi = 0; gi < t->ngroups; gi++)
            used[gi] = used_of(t, gi);
        if (t->ngroups == 2 && used[1] < used[0])
            pick = 1;
        if (used[pick] < t->group) {
            victim = slot_of(t, pick, used[pick]);
            vfp = fps_of(t, pick) + used[pick];
            empty = 1;
        } else {
            for (gi = 0; gi < t->ngroups; gi++)
                for (j = 0; j < t->group; j++) {
                    uint64_t *s = slot_of(t, gi, j);
                    if (idle_age(s, have_now, now, &age) && (victim == NULL || age < best)) {
                        victim = s;
                        vfp = fps_of(t, gi) + j;
                        best = age;
                    }
                }
        }
        if (victim == NULL)
            break; /* rc: E_FULL */
        lock(&victim[W_LOCK]);
        if (empty ? ld(vfp) == 0 : (ld(vfp) != 0 && idle_age(victim, have_now, now, &age))) {
            for (j = W_KIND; j < APIGW_BK_SLOT_WORDS; j++)
                st(&victim[j], 0);
            st(&victim[W_KIND], (uint64_t)kind);
            __atomic_store_n(vfp, t->fp, __ATOMIC_RELEASE);
            t->slot = victim;
            rc = 1;
            break;
        }
        bk_unlock(&victim[W_LOCK]); /* taken or used meanwhile: scan again */
    }
    bk_unlock(claim_word);
    return rc;
}
