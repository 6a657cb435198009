/* apigw/buckets.h - token buckets, fixed-window counters and semaphores in shared memory.
 *
 * One table of fixed-size slots lives in memory that several processes map (the caller
 * creates and maps it; these functions never allocate or make system calls on the fast
 * path).  Every function takes the table's base address, the counter key's bytes and,
 * where time matters, the caller's monotonic time in nanoseconds: the table has no clock.
 *
 * Layout (64-bit words, native byte order; _purepy/buckets.py uses the same):
 *   header, 8 words: magic, version, slots, group size g = min(8, slots), hash seed,
 *     3 reserved;
 *   then slots / g groups, each 8 fingerprint words (0 = empty; g used) followed by g
 *   slots of 8 words: lock, claim lock, kind, a, b, p1, p2, reserved.
 *     bucket  (kind 1): a = credit (token-ns), b = last update ns, p1 = calls, p2 = period
 *     counter (kind 2): a = used, b = window end ns, p1 = limit, p2 = period (0: forever)
 *     semaphore (3):    a = holders, p1 = max_count
 * With h = hash(key, seed ^ kind), a key's groups are ((h mod 2^32) * G) >> 32 and
 * ((h >> 32) * G) >> 32 (the next group if both are the same; G = slots / g), its
 * fingerprint is
 * hash(key, seed ^ kind ^ FP_SALT) (0 becomes 1).  The semantics and worst case are
 * documented in apigw_core/buckets.py.
 *
 * Concurrency: slot updates hold the slot's lock word (CAS 0 -> pid, a waiter takes over
 * a dead holder's lock); a new key's claim holds the claim word of its first group's
 * first slot first.
 *
 * Return codes: 0 (or 1 for a successful acquire), APIGW_BK_E_FULL when the key has no
 * slot and none can be evicted, APIGW_BK_E_INVAL for an argument out of range.
 * The pure-Python twin computes the same results; keep the two in step.
 */
#ifndef APIGW_BUCKETS_H
#define APIGW_BUCKETS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define APIGW_BK_MAGIC 0x31544B4257474941ULL /* "AIGWBKT1" little-endian */
#define APIGW_BK_VERSION 1
#define APIGW_BK_HEADER_WORDS 8
#define APIGW_BK_SLOT_WORDS 8
#define APIGW_BK_FP_WORDS 8
#define APIGW_BK_GROUP 8
#define APIGW_BK_TIME_MAX (1LL << 61)  /* |now|, |start|, period */
#define APIGW_BK_FULL_MAX (1LL << 62)  /* calls * period_ns; counts */

#define APIGW_BK_OK 0
#define APIGW_BK_E_FULL (-1)
#define APIGW_BK_E_INVAL (-2)

/* Bytes a table of `slots` slots needs (0 if slots is 0, over 2^32, or over 8 and not a
 * multiple of 8). */
size_t apigw_bk_bytes(uint64_t slots);
/* Writes the header into zeroed memory of apigw_bk_bytes(slots) bytes (len checked). */
int apigw_bk_init(void *mem, size_t len, uint64_t slots, uint64_t seed);
/* 0 if mem[0, len) holds a table whose header matches len, else APIGW_BK_E_INVAL. */
int apigw_bk_check(const void *mem, size_t len);

/* out[0] allowed (0/1), out[1] whole tokens remaining, out[2] ns until n would pass
 * (0 when allowed, -1 when n > calls). */
int apigw_bk_take(void *mem, const char *key, size_t key_len, int64_t calls,
                  int64_t period_ns, int64_t n, int64_t now_ns, int64_t *out);
int apigw_bk_refund(void *mem, const char *key, size_t key_len, int64_t calls,
                    int64_t period_ns, int64_t n, int64_t now_ns);
/* out[1] remaining, out[2] ns until one token (out[0] is 1). */
int apigw_bk_peek(void *mem, const char *key, size_t key_len, int64_t calls,
                  int64_t period_ns, int64_t now_ns, int64_t *out);
/* out[0] allowed, out[1] remaining, out[2] ns until the window renews (0: never). */
int apigw_bk_count(void *mem, const char *key, size_t key_len, int64_t limit,
                   int64_t period_ns, int64_t start_ns, int64_t n, int64_t now_ns,
                   int force, int64_t *out);
/* 1 acquired, 0 at max_count, or an error code. */
int apigw_bk_acquire(void *mem, const char *key, size_t key_len, int64_t max_count);
int apigw_bk_release(void *mem, const char *key, size_t key_len);

/* The same as take / peek, packed for a single cheap call from Python (the table's
 * address as an integer; 0 is refused): returns
 * remaining * 2 + allowed (peek: allowed is 1), or twice an error code; the wait of that
 * call is then apigw_bk_last_wait() (kept per thread). */
int64_t apigw_bk_take_packed(uintptr_t addr, const char *key, size_t key_len, int64_t calls,
                             int64_t period_ns, int64_t n, int64_t now_ns);
int64_t apigw_bk_peek_packed(uintptr_t addr, const char *key, size_t key_len, int64_t calls,
                             int64_t period_ns, int64_t now_ns);
int64_t apigw_bk_last_wait(void);

/* The table's key hash (exposed for tests). */
uint64_t apigw_bk_hash(const char *key, size_t key_len, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif
