/* test_buckets.c - unit tests of the shared-memory bucket table (apigw/buckets.h).
 *
 * Strategy: the table lives in a guarded mapping (check.h: the page after it is
 * PROT_NONE), so any slot index past the end crashes.  Semantics are checked with time
 * passed in; atomicity with threads and with forked processes on a MAP_SHARED mapping
 * (a frozen clock: the totals admitted must be exact); a lock left by a dead process is
 * taken over.  The hash vectors come from the pure-Python twin (_purepy/buckets.py), so
 * the two cannot drift apart unnoticed.
 */
#include "check.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>

#include "apigw/buckets.h"

#define S 1000000000LL

static void *new_table(guard_t *g, uint64_t slots, uint64_t seed)
{
    size_t n = apigw_bk_bytes(slots);
    unsigned char *mem;
    /* guard_place fills with 0xA5: zero it, as the kernel does for a new shm file */
    mem = guard_place(g, NULL, n, 0);
    memset(mem, 0, n);
    CHECK(apigw_bk_init(mem, n, slots, seed) == APIGW_BK_OK);
    CHECK(apigw_bk_check(mem, n) == APIGW_BK_OK);
    return mem;
}

static void test_layout(void)
{
    guard_t g;
    void *t;
    unsigned char junk[128] = {0};
    case_begin("layout and header checks");
    CHECK_EQ_LONG(apigw_bk_bytes(0), 0);
    CHECK_EQ_LONG(apigw_bk_bytes(1), 8 * (8 + 8 + 8));
    CHECK_EQ_LONG(apigw_bk_bytes(16), 8 * (8 + 2 * (8 + 64)));
    CHECK_EQ_LONG(apigw_bk_bytes(12), 0); /* over 8: a multiple of 8 */
    CHECK_EQ_LONG(apigw_bk_bytes((1ULL << 32) + 1), 0);
    t = new_table(&g, 3, 7);
    CHECK(apigw_bk_check(t, apigw_bk_bytes(3) - 1) == APIGW_BK_E_INVAL);
    CHECK(apigw_bk_check(junk, sizeof junk) == APIGW_BK_E_INVAL);
    CHECK(apigw_bk_init(junk, sizeof junk, 2, 0) == APIGW_BK_E_INVAL); /* too short */
    guard_free(&g);
    case_end();
}

static void test_hash_vectors(void)
{
    case_begin("hash matches the twin");
    CHECK(apigw_bk_hash("", 0, 0) == 0xd8a310150df90781ULL);
    CHECK(apigw_bk_hash("a", 1, 1) == 0x43957330207c3afcULL);
    CHECK(apigw_bk_hash("0123456789abcdef", 16, 0x1234) == 0x595d1821dc5a0affULL);
    CHECK(apigw_bk_hash("key-with-23-bytes-long!", 23, UINT64_MAX) == 0x1e5b706e5100c84fULL);
    case_end();
}

static void test_bucket(void)
{
    guard_t g;
    void *t = new_table(&g, 64, 1);
    int64_t out[3];
    int i;
    case_begin("token bucket: full, exact wait, no lock-out, refund, peek");
    for (i = 0; i < 10; i++) {
        CHECK(apigw_bk_take(t, "k", 1, 10, 60 * S, 1, 0, out) == 0);
        CHECK_EQ_LONG(out[0], 1);
        CHECK_EQ_LONG(out[1], 9 - i);
    }
    CHECK(apigw_bk_take(t, "k", 1, 10, 60 * S, 1, 0, out) == 0);
    CHECK_EQ_LONG(out[0], 0);
    CHECK_EQ_LONG(out[2], 6 * S);
    CHECK(apigw_bk_take(t, "k", 1, 10, 60 * S, 1, 6 * S - 1, out) == 0);
    CHECK_EQ_LONG(out[0], 0);
    CHECK_EQ_LONG(out[2], 1);
    CHECK(apigw_bk_take(t, "k", 1, 10, 60 * S, 1, 6 * S, out) == 0);
    CHECK_EQ_LONG(out[0], 1);
    CHECK(apigw_bk_take(t, "k", 1, 10, 60 * S, 11, 6 * S, out) == 0);
    CHECK_EQ_LONG(out[0], 0);
    CHECK_EQ_LONG(out[2], -1);
    CHECK(apigw_bk_refund(t, "k", 1, 10, 60 * S, 3, 6 * S) == 0);
    CHECK(apigw_bk_peek(t, "k", 1, 10, 60 * S, 6 * S, out) == 0);
    CHECK_EQ_LONG(out[1], 3);
    CHECK(apigw_bk_peek(t, "none", 4, 10, 60 * S, 0, out) == 0);
    CHECK_EQ_LONG(out[1], 10);
    CHECK(apigw_bk_peek(t, "k", 1, 10, 60 * S, 1000 * S, out) == 0);
    CHECK_EQ_LONG(out[1], 10);
    guard_free(&g);
    case_end();
}

static void test_packed(void)
{
    guard_t g;
    void *t = new_table(&g, 8, 9);
    case_begin("packed results: remaining * 2 + allowed, the wait per thread");
    CHECK_EQ_LONG(apigw_bk_take_packed((uintptr_t)t, "k", 1, 3, 3000, 2, 0), 1 * 2 + 1);
    CHECK_EQ_LONG(apigw_bk_last_wait(), 0);
    CHECK_EQ_LONG(apigw_bk_take_packed((uintptr_t)t, "k", 1, 3, 3000, 2, 0), 1 * 2 + 0);
    CHECK_EQ_LONG(apigw_bk_last_wait(), 1000);
    CHECK_EQ_LONG(apigw_bk_peek_packed((uintptr_t)t, "k", 1, 3, 3000, 500), 1 * 2 + 1);
    CHECK_EQ_LONG(apigw_bk_take_packed((uintptr_t)t, "k", 1, 0, 3000, 2, 0), 2 * APIGW_BK_E_INVAL);
    CHECK_EQ_LONG(apigw_bk_take_packed(0, "k", 1, 3, 3000, 2, 0), 2 * APIGW_BK_E_INVAL);
    guard_free(&g);
    case_end();
}

static void test_worst_case(void)
{
    guard_t g;
    void *t = new_table(&g, 8, 2);
    int64_t out[3], now;
    long got = 0;
    case_begin("at most 2*calls-1 in the first period after idle");
    for (now = 5 * S; now < 5 * S + 10 * S; now += S / 1000)
        for (;;) {
            CHECK(apigw_bk_take(t, "w", 1, 10, 10 * S, 1, now, out) == 0);
            if (!out[0])
                break;
            got++;
        }
    CHECK_EQ_LONG(got, 19);
    guard_free(&g);
    case_end();
}

static void test_counter_and_semaphore(void)
{
    guard_t g;
    void *t = new_table(&g, 64, 3);
    int64_t out[3];
    case_begin("counter windows, force, period 0; semaphore");
    CHECK(apigw_bk_count(t, "q", 1, 3, 10, 100, 2, 99, 0, out) == 0);
    CHECK(out[0] == 1 && out[1] == 1 && out[2] == 1);
    CHECK(apigw_bk_count(t, "q", 1, 3, 10, 100, 2, 99, 0, out) == 0);
    CHECK(out[0] == 0 && out[1] == 1);
    CHECK(apigw_bk_count(t, "q", 1, 3, 10, 100, 2, 99, 1, out) == 0);
    CHECK(out[0] == 0 && out[1] == 0);
    CHECK(apigw_bk_count(t, "q", 1, 3, 10, 100, 3, 100, 0, out) == 0);
    CHECK(out[0] == 1 && out[1] == 0 && out[2] == 10);
    CHECK(apigw_bk_count(t, "z", 1, 1, 0, 0, 1, 0, 0, out) == 0);
    CHECK(apigw_bk_count(t, "z", 1, 1, 0, 0, 1, APIGW_BK_TIME_MAX, 0, out) == 0);
    CHECK(out[0] == 0 && out[2] == 0);
    CHECK(apigw_bk_acquire(t, "s", 1, 2) == 1);
    CHECK(apigw_bk_acquire(t, "s", 1, 2) == 1);
    CHECK(apigw_bk_acquire(t, "s", 1, 2) == 0);
    CHECK(apigw_bk_release(t, "s", 1) == 0);
    CHECK(apigw_bk_acquire(t, "s", 1, 2) == 1);
    CHECK(apigw_bk_release(t, "never", 5) == 0);
    guard_free(&g);
    case_end();
}

static void test_ranges(void)
{
    guard_t g;
    void *t = new_table(&g, 4, 4);
    int64_t out[3];
    case_begin("arguments out of range are refused, nothing written");
    CHECK(apigw_bk_take(t, "k", 1, 0, S, 1, 0, out) == APIGW_BK_E_INVAL);
    CHECK(apigw_bk_take(t, "k", 1, 1, 0, 1, 0, out) == APIGW_BK_E_INVAL);
    CHECK(apigw_bk_take(t, "k", 1, 1LL << 40, 1LL << 40, 1, 0, out) == APIGW_BK_E_INVAL);
    CHECK(apigw_bk_take(t, "k", 1, 1, S, -1, 0, out) == APIGW_BK_E_INVAL);
    CHECK(apigw_bk_take(t, "k", 1, 1, S, 1, APIGW_BK_TIME_MAX + 1, out) == APIGW_BK_E_INVAL);
    CHECK(apigw_bk_take(t, "k", 1, 1LL << 31, 1LL << 31, 1LL << 62, -APIGW_BK_TIME_MAX,
                        out) == 0); /* the extremes themselves are fine */
    CHECK(apigw_bk_count(t, "k", 1, 1, -1, 0, 1, 0, 0, out) == APIGW_BK_E_INVAL);
    CHECK(apigw_bk_count(t, "k", 1, APIGW_BK_FULL_MAX + 1, 1, 0, 1, 0, 0, out) ==
          APIGW_BK_E_INVAL);
    CHECK(apigw_bk_count(t, "k", 1, APIGW_BK_FULL_MAX, APIGW_BK_TIME_MAX, -APIGW_BK_TIME_MAX,
                         APIGW_BK_FULL_MAX, APIGW_BK_TIME_MAX, 1, out) == 0);
    CHECK(apigw_bk_acquire(t, "k", 1, -1) == APIGW_BK_E_INVAL);
    guard_free(&g);
    case_end();
}

static void test_eviction(void)
{
    guard_t g;
    void *t = new_table(&g, 2, 5);
    int64_t out[3];
    case_begin("a full table evicts the idle slot, never a live one");
    CHECK(apigw_bk_take(t, "a", 1, 2, S, 2, 0, out) == 0);
    CHECK(apigw_bk_take(t, "b", 1, 2, S, 1, 0, out) == 0);
    CHECK(apigw_bk_take(t, "c", 1, 2, S, 1, S / 4, out) == APIGW_BK_E_FULL);
    CHECK(apigw_bk_take(t, "c", 1, 2, S, 1, 6 * S / 10, out) == 0);
    CHECK(out[0] == 1 && out[1] == 1);
    CHECK(apigw_bk_take(t, "a", 1, 2, S, 2, 6 * S / 10, out) == 0);
    CHECK_EQ_LONG(out[0], 0); /* a kept its state */
    CHECK(apigw_bk_acquire(t, "s", 1, 1) == APIGW_BK_E_FULL); /* no time: no eviction */
    guard_free(&g);
    case_end();
}

/* ---------------------------------------------------------------- concurrency */

typedef struct {
    void *table;
    long got, got_new;
} worker_arg;

#define HAMMER 20000
#define NEW_KEYS 200

static void hammer(worker_arg *a)
{
    int64_t out[3];
    char key[16];
    int i;
    for (i = 0; i < HAMMER; i++) {
        if (apigw_bk_take(a->table, "hot", 3, 30000, S, 1, 0, out) == 0 && out[0])
            a->got++;
    }
    for (i = 0; i < NEW_KEYS; i++) { /* fresh keys claimed by all at once */
        int n = snprintf(key, sizeof key, "new-%d", i);
        if (apigw_bk_take(a->table, key, (size_t)n, 1, S, 1, 0, out) == 0 && out[0])
            a->got_new++;
    }
}

static void *thread_main(void *p)
{
    hammer(p);
    return NULL;
}

static void test_threads(void)
{
    guard_t g;
    void *t = new_table(&g, 512, 6);
    pthread_t th[4];
    worker_arg args[4];
    long got = 0, got_new = 0;
    int i;
    case_begin("4 threads on one frozen bucket admit exactly calls");
    for (i = 0; i < 4; i++) {
        args[i].table = t;
        args[i].got = args[i].got_new = 0;
        CHECK(pthread_create(&th[i], NULL, thread_main, &args[i]) == 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        got += args[i].got;
        got_new += args[i].got_new;
    }
    CHECK_EQ_LONG(got, 30000);
    CHECK_EQ_LONG(got_new, NEW_KEYS);
    guard_free(&g);
    case_end();
}

static void test_processes(void)
{
    size_t n = apigw_bk_bytes(512);
    void *t = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    long *got = mmap(NULL, 8 * sizeof(long), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t pids[4];
    int i, status;
    case_begin("4 processes on one shared mapping admit exactly calls");
    CHECK(t != MAP_FAILED && got != MAP_FAILED);
    CHECK(apigw_bk_init(t, n, 512, 7) == 0);
    for (i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            worker_arg a = {t, 0, 0};
            hammer(&a);
            got[2 * i] = a.got;
            got[2 * i + 1] = a.got_new;
            _exit(0);
        }
        CHECK(pids[i] > 0);
    }
    for (i = 0; i < 4; i++) {
        CHECK(waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0);
    }
    CHECK_EQ_LONG(got[0] + got[2] + got[4] + got[6], 30000);
    CHECK_EQ_LONG(got[1] + got[3] + got[5] + got[7], NEW_KEYS);
    munmap(t, n);
    munmap(got, 8 * sizeof(long));
    case_end();
}

static void test_dead_holder(void)
{
    guard_t g;
    uint64_t *t = new_table(&g, 1, 8);
    int64_t out[3];
    pid_t pid;
    int status;
    case_begin("a lock left by a dead process is taken over");
    CHECK(apigw_bk_take(t, "k", 1, 5, S, 1, 0, out) == 0);
    pid = fork();
    if (pid == 0)
        _exit(0);
    CHECK(waitpid(pid, &status, 0) == pid);
    /* slot 0's lock word (after the group's fingerprints): held by the dead */
    t[APIGW_BK_HEADER_WORDS + APIGW_BK_FP_WORDS] = (uint64_t)pid;
    CHECK(apigw_bk_take(t, "k", 1, 5, S, 1, 0, out) == 0);
    CHECK(out[0] == 1 && out[1] == 3);
    CHECK(t[APIGW_BK_HEADER_WORDS + APIGW_BK_FP_WORDS] == 0);
    guard_free(&g);
    case_end();
}

int main(void)
{
    check_init();
    test_layout();
    test_hash_vectors();
    test_bucket();
    test_packed();
    test_worst_case();
    test_counter_and_semaphore();
    test_ranges();
    test_eviction();
    test_threads();
    test_processes();
    test_dead_holder();
    return check_summary("test_buckets");
}
