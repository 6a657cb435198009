/* fuzz_buckets.c - libFuzzer target for the bucket table: random operation sequences.
 *
 * The input picks a table size (1..8, 16 or 24 slots: one to three groups, so shared
 * groups, collisions and eviction are common) and seed, then a sequence of 6-byte operations on a few keys with small
 * parameters and a clock that mostly moves forwards.  Invariants, for every operation:
 *   - results are in range (remaining <= calls/limit, wait 0 iff allowed, -1 only when
 *     n > calls, a counter's renewal > 0 iff it has a period);
 *   - wait_ns is exact: on a copy of the table, the same take is refused 1 ns before
 *     now + wait and allowed at now + wait;
 *   - semaphores follow a model exactly (a held semaphore is live, so it is never
 *     evicted: no live slot is ever overwritten);
 *   - the header never changes (apigw_bk_check stays OK).
 * ASan/UBSan catch anything outside the table or any overflow.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apigw/buckets.h"
#include "require.h"

static const char *const KEYS[] = {"a", "b", "key-c", "0123456789abcdef-d"};
static const int64_t CALLS[] = {1, 2, 3, 10, 1000, 1LL << 31};
static const int64_t PERIODS[] = {1, 7, 1000, 1000000000, 300000000000LL, 1LL << 31};
static const int64_t STEPS[] = {0, 1, 3, 100, 100000, 1000000000, -1, -100};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_take_wait(const void *mem, size_t len, const char *key, int64_t calls,
                            int64_t period, int64_t n, int64_t now, int64_t wait)
{
    void *copy = malloc(len);
    int64_t out[3];
    REQUIRE(copy != NULL);
    if (now + wait <= APIGW_BK_TIME_MAX) {
        memcpy(copy, mem, len);
        REQUIRE(apigw_bk_take(copy, key, strlen(key), calls, period, n, now + wait - 1,
                              out) == 0);
        REQUIRE(out[0] == 0);
        memcpy(copy, mem, len);
        REQUIRE(apigw_bk_take(copy, key, strlen(key), calls, period, n, now + wait, out) ==
                0);
        REQUIRE(out[0] == 1);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t slots, seed = 0;
    size_t len, i;
    void *mem;
    int64_t now = 0, out[3];
    int64_t held[4] = {0, 0, 0, 0};
    unsigned char header[64];

    if (size < 9)
        return 0;
    slots = data[0] % 11;
    slots = slots < 8 ? slots + 1 : (slots - 7) * 8; /* 1..8, 16, 24 */
    memcpy(&seed, data + 1, 8);
    data += 9;
    size -= 9;
    len = apigw_bk_bytes(slots);
    mem = calloc(1, len);
    REQUIRE(mem != NULL);
    REQUIRE(apigw_bk_init(mem, len, slots, seed) == 0);
    memcpy(header, mem, sizeof header);

    for (i = 0; i + 6 <= size; i += 6) {
        const uint8_t *op = data + i;
        int ki = op[1] & 3;
        const char *key = KEYS[ki];
        size_t klen = strlen(key);
        int64_t calls = CALLS[(op[2] >> 4) % 6], period = PERIODS[op[2] % 6];
        int64_t n = op[3] % 12, step = STEPS[op[4] & 7] * (1 + (op[4] >> 3));
        int rc;
        if (calls > APIGW_BK_FULL_MAX / period)
            calls = 1;
        now += step;
        if (now > APIGW_BK_TIME_MAX || now < -APIGW_BK_TIME_MAX)
            now = 0;
        switch (op[0] % 6) {
        case 0:
            rc = apigw_bk_take(mem, key, klen, calls, period, n, now, out);
            REQUIRE(rc == 0 || rc == APIGW_BK_E_FULL);
            if (rc == 0) {
                REQUIRE(out[1] >= 0 && out[1] <= calls - (out[0] ? n : 0));
                REQUIRE((out[2] == 0) == (out[0] == 1));
                REQUIRE((out[2] == -1) == (n > calls));
                if (out[2] > 0)
                    check_take_wait(mem, len, key, calls, period, n, now, out[2]);
            }
            break;
        case 1:
            REQUIRE(apigw_bk_refund(mem, key, klen, calls, period, n, now) == 0);
            break;
        case 2:
            REQUIRE(apigw_bk_peek(mem, key, klen, calls, period, now, out) == 0);
            REQUIRE(out[1] >= 0 && out[1] <= calls);
            REQUIRE((out[2] == 0) == (out[1] >= 1));
            if (out[2] > 0)
                check_take_wait(mem, len, key, calls, period, 1, now, out[2]);
            break;
        case 3: {
            int64_t limit = op[5] % 16, per = (op[5] & 16) ? 0 : period;
            int64_t start = STEPS[op[5] >> 5] * 1000 + now / 2;
            rc = apigw_bk_count(mem, key, klen, limit, per, start, n, now, op[3] >> 7, out);
            REQUIRE(rc == 0 || rc == APIGW_BK_E_FULL);
            if (rc == 0) {
                REQUIRE(out[1] >= 0 && out[1] <= limit);
                REQUIRE(per > 0 ? out[2] > 0 : out[2] == 0);
                REQUIRE(!out[0] || n <= limit);
            }
            break;
        }
        case 4: {
            int64_t max = op[5] % 4;
            rc = apigw_bk_acquire(mem, key, klen, max);
            REQUIRE(rc == 0 || rc == 1 || rc == APIGW_BK_E_FULL);
            if (rc == APIGW_BK_E_FULL)
                break;
            REQUIRE(rc == (held[ki] < max));
            held[ki] += rc;
            break;
        }
        default:
            REQUIRE(apigw_bk_release(mem, key, klen) == 0);
            if (held[ki] > 0)
                held[ki]--;
            break;
        }
    }
    REQUIRE(memcmp(header, mem, sizeof header) == 0 && apigw_bk_check(mem, len) == 0);
    free(mem);
    return 0;
}
