/* buckets_ops.c - what a token bucket, a fixed-window counter and a semaphore do with
 * their slot (buckets.c finds, claims and locks it); the contract is apigw/buckets.h.
 *
 * Strategy.  Every operation checks its arguments against the ranges that keep each
 * intermediate inside int64/uint64 (APIGW_BK_*_MAX), takes its slot locked, updates it
 * with integer arithmetic only and unlocks.  A bucket's credit is kept in token-
 * nanoseconds (one token = period credits, each nanosecond refills `calls`), so refill
 * is exact and wait times are exact ceilings.  _purepy/buckets.py is the same code in
 * Python; the differential tests hold the two to identical results.
 */
#include "apigw/buckets.h"
#include "buckets_table.h"

#include <stdint.h>

/* ---------------------------------------------------------------- token bucket */

static int bucket_args(int64_t calls, int64_t period, int64_t n, int64_t now)
{
    return calls >= 1 && period >= 1 && calls <= APIGW_BK_FULL_MAX / period && n >= 0 &&
           n <= APIGW_BK_FULL_MAX && now >= -APIGW_BK_TIME_MAX && now <= APIGW_BK_TIME_MAX;
}

/* Refills slot s to `now` and converts it to (calls, period); returns its credit. */
static uint64_t refresh(uint64_t *s, uint64_t calls, uint64_t period, int64_t now, int new)
{
    uint64_t full = calls * period, c;
    int64_t t;
    uint64_t ocalls = ld(&s[W_P1]), operiod = ld(&s[W_P2]);
    if (new || ocalls == 0 || operiod == 0) { /* (0: a holder died mid-claim) */
        c = full;
        t = now;
    } else {
        c = ld(&s[W_A]);
        t = lds(&s[W_B]);
        if (now > t) {
            uint64_t el = (uint64_t)(now - t), ofull = ocalls * operiod;
            if (el > operiod)
                el = operiod;
            c += el * ocalls;
            if (c > ofull)
                c = ofull;
            t = now;
        }
        if (ocalls != calls || operiod != period) { /* keep whole tokens, clamped */
            uint64_t tokens = c / operiod;
            c = tokens >= calls ? full : tokens * period;
        }
    }
    sts(&s[W_B], t);
    st(&s[W_P1], calls);
    st(&s[W_P2], period);
    return c;
}

/* ns from `now` until `deficit` credits have refilled: refill runs from the bucket's
 * last update, which is later than `now` when a slower caller's clock reading arrives
 * after a faster one's. */
static int64_t wait_for(const uint64_t *s, int64_t now, uint64_t deficit, uint64_t calls)
{
    int64_t t = lds(&s[W_B]);
    uint64_t w = (deficit + calls - 1) / calls + (t > now ? (uint64_t)(t - now) : 0);
    return w > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)w;
}

int apigw_bk_take(void *mem, const char *key, size_t key_len, int64_t calls,
                  int64_t period_ns, int64_t n, int64_t now_ns, int64_t *out)
{
    bk_table t;
    uint64_t c, need, P = (uint64_t)period_ns;
    int rc;
    if (!bucket_args(calls, period_ns, n, now_ns))
        return APIGW_BK_E_INVAL;
    bk_open(&t, mem, key, key_len, KIND_BUCKET);
    rc = bk_claim(&t, KIND_BUCKET, 1, now_ns);
    if (rc < 0)
        return rc;
    c = refresh(t.slot, (uint64_t)calls, P, now_ns, rc);
    if (n > calls) {
        out[0] = 0;
        out[2] = -1;
    } else if (c >= (need = (uint64_t)n * P)) {
        c -= need;
        out[0] = 1;
        out[2] = 0;
    } else {
        out[0] = 0;
        out[2] = wait_for(t.slot, now_ns, need - c, (uint64_t)calls);
    }
    st(&t.slot[W_A], c);
    bk_unlock(&t.slot[W_LOCK]);
    out[1] = (int64_t)(c / P);
    return APIGW_BK_OK;
}

int apigw_bk_refund(void *mem, const char *key, size_t key_len, int64_t calls,
                    int64_t period_ns, int64_t n, int64_t now_ns)
{
    bk_table t;
    uint64_t c, full = (uint64_t)calls * (uint64_t)period_ns;
    if (!bucket_args(calls, period_ns, n, now_ns))
        return APIGW_BK_E_INVAL;
    bk_open(&t, mem, key, key_len, KIND_BUCKET);
    if (!bk_find(&t))
        return APIGW_BK_OK;
    c = refresh(t.slot, (uint64_t)calls, (uint64_t)period_ns, now_ns, 0);
    c = n >= calls ? full : c + (uint64_t)n * (uint64_t)period_ns;
    st(&t.slot[W_A], c > full ? full : c);
    bk_unlock(&t.slot[W_LOCK]);
    return APIGW_BK_OK;
}

int apigw_bk_peek(void *mem, const char *key, size_t key_len, int64_t calls,
                  int64_t period_ns, int64_t now_ns, int64_t *out)
{
    bk_table t;
    uint64_t c, P = (uint64_t)period_ns;
    if (!bucket_args(calls, period_ns, 0, now_ns))
        return APIGW_BK_E_INVAL;
    bk_open(&t, mem, key, key_len, KIND_BUCKET);
    out[0] = 1;
    if (!bk_find(&t)) {
        out[1] = calls;
        out[2] = 0;
        return APIGW_BK_OK;
    }
    c = refresh(t.slot, (uint64_t)calls, P, now_ns, 0);
    st(&t.slot[W_A], c);
    out[1] = (int64_t)(c / P);
    out[2] = c >= P ? 0 : wait_for(t.slot, now_ns, P - c, (uint64_t)calls);
    bk_unlock(&t.slot[W_LOCK]);
    return APIGW_BK_OK;
}

/* ---------------------------------------------------------------- counter */

static int in_time(int64_t x) { return x >= -APIGW_BK_TIME_MAX && x <= APIGW_BK_TIME_MAX; }
static int in_count(int64_t x) { return x >= 0 && x <= APIGW_BK_FULL_MAX; }

int apigw_bk_count(void *mem, const char *key, size_t key_len, int64_t limit,
                   int64_t period_ns, int64_t start_ns, int64_t n, int64_t now_ns,
                   int force, int64_t *out)
{
    bk_table t;
    int64_t end = 0;
    uint64_t *s, a;
    int rc, allowed;
    if (!in_count(n) || !in_count(limit) || !in_time(now_ns) || !in_time(start_ns) ||
        !in_time(period_ns) || period_ns < 0)
        return APIGW_BK_E_INVAL;
    if (period_ns > 0) { /* floor((now - start) / period), also before start */
        int64_t d = now_ns - start_ns, q = d / period_ns;
        if (d % period_ns != 0 && d < 0)
            q--;
        end = start_ns + (q + 1) * period_ns;
    }
    bk_open(&t, mem, key, key_len, KIND_COUNTER);
    rc = bk_claim(&t, KIND_COUNTER, 1, now_ns);
    if (rc < 0)
        return rc;
    s = t.slot;
    if (rc == 1 || lds(&s[W_P2]) != period_ns || (period_ns > 0 && end > lds(&s[W_B]))) {
        st(&s[W_A], 0);
        sts(&s[W_B], end);
        sts(&s[W_P2], period_ns);
    }
    a = ld(&s[W_A]);
    allowed = a + (uint64_t)n <= (uint64_t)limit;
    if (allowed || force) {
        a += (uint64_t)n;
        if (a > (uint64_t)APIGW_BK_FULL_MAX)
            a = (uint64_t)APIGW_BK_FULL_MAX;
        st(&s[W_A], a);
    }
    st(&s[W_P1], (uint64_t)limit);
    out[0] = allowed;
    out[1] = a >= (uint64_t)limit ? 0 : limit - (int64_t)a;
    out[2] = period_ns > 0 ? lds(&s[W_B]) - now_ns : 0;
    bk_unlock(&s[W_LOCK]);
    return APIGW_BK_OK;
}

/* ---------------------------------------------------------------- semaphore */

int apigw_bk_acquire(void *mem, const char *key, size_t key_len, int64_t max_count)
{
    bk_table t;
    uint64_t a;
    int rc;
    if (!in_count(max_count))
        return APIGW_BK_E_INVAL;
    bk_open(&t, mem, key, key_len, KIND_SEM);
    rc = bk_claim(&t, KIND_SEM, 0, 0);
    if (rc < 0)
        return rc;
    st(&t.slot[W_P1], (uint64_t)max_count);
    a = ld(&t.slot[W_A]);
    rc = a < (uint64_t)max_count;
    if (rc)
        st(&t.slot[W_A], a + 1);
    bk_unlock(&t.slot[W_LOCK]);
    return rc;
}

int apigw_bk_release(void *mem, const char *key, size_t key_len)
{
    bk_table t;
    uint64_t a;
    bk_open(&t, mem, key, key_len, KIND_SEM);
    if (!bk_find(&t))
        return APIGW_BK_OK;
    a = ld(&t.slot[W_A]);
    if (a > 0)
        st(&t.slot[W_A], a - 1);
    bk_unlock(&t.slot[W_LOCK]);
    return APIGW_BK_OK;
}

/* ---------------------------------------------------------------- packed results */

/* The Python wrapper's entry points: one cffi call per decision, no out array, and the
 * table's address as an integer (cffi converts an int for less than a pointer).  The
 * result is remaining * 2 + allowed, or twice an error code (even, so `r & 1` alone says
 * "allowed"); the wait, needed only when
 * refused, is kept per thread for apigw_bk_last_wait(). */
static _Thread_local int64_t last_wait;

int64_t apigw_bk_take_packed(uintptr_t addr, const char *key, size_t key_len, int64_t calls,
                             int64_t period_ns, int64_t n, int64_t now_ns)
{
    int64_t out[3];
    int rc = addr == 0 ? APIGW_BK_E_INVAL
                        : apigw_bk_take((void *)addr, key, key_len, calls, period_ns, n,
                                        now_ns, out);
    if (rc < 0)
        return 2 * rc;
    last_wait = out[2];
    return out[1] * 2 + out[0];
}

int64_t apigw_bk_peek_packed(uintptr_t addr, const char *key, size_t key_len, int64_t calls,
                             int64_t period_ns, int64_t now_ns)
{
    int64_t out[3];
    int rc = addr == 0 ? APIGW_BK_E_INVAL
                        : apigw_bk_peek((void *)addr, key, key_len, calls, period_ns,
                                        now_ns, out);
    if (rc < 0)
        return 2 * rc;
    last_wait = out[2];
    return out[1] * 2 + 1;
}

int64_t apigw_bk_last_wait(void)
{
    return last_wait;
}

