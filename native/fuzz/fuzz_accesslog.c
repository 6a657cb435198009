/* fuzz_accesslog.c - libFuzzer target for apigw/accesslog.h.
 *
 * Input: 2 bytes output capacity, 8 bytes of field lengths (request id, path, the tail,
 * five unused), 3 doubles (durations), then the fields' bytes back to back.
 * Invariants:
 *   - the result is > 0 (and <= cap), APIGW_AL_E_SPACE or APIGW_AL_E_FALLBACK;
 *   - nothing is written past cap (ASan: the output is an exact-size heap block);
 *   - a line ends in "}\n", has no raw byte below 0x20 but that newline and the tail's
 *     own (copied as given), and given the room its length needs it is written;
 *   - apigw_al_put with the first duration's magnitude as the start: a valid result, the
 *     offset advanced by exactly it (unchanged otherwise), and the line apigw_al_line
 *     writes given the second's text the batch then holds.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apigw/accesslog.h"
#include "require.h"

static long call(char *out, size_t cap, const char *f[8], const size_t n[8],
                 const double d[3]) {
    return apigw_al_line(out, 0, cap, "2026-12-02T10:00:00", 19, 1764669600.5, f[0], n[0], "ab", 2, f[1],
                         n[1], 200, 1, -3, d[0], d[1], d[2], f[2], n[2]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 + 8 + 24)
        return 0;
    size_t cap = (size_t)data[0] | (size_t)data[1] << 8;
    const char *f[8];
    size_t n[8];
    double d[3];
    memcpy(d, data + 10, sizeof d);
    const uint8_t *p = data + 34, *end = data + size;
    for (int i = 0; i < 8; i++) {
        size_t want = data[2 + i];
        n[i] = want < (size_t)(end - p) ? want : (size_t)(end - p);
        f[i] = (const char *)p;
        p += n[i];
    }
    char *out = malloc(cap ? cap : 1);
    REQUIRE(out != NULL);
    long r = call(out, cap, f, n, d);
    REQUIRE(r == APIGW_AL_E_SPACE || r == APIGW_AL_E_FALLBACK || (r > 0 && (size_t)r <= cap));
    if (r > 0) {
        REQUIRE(r >= 2 && out[r - 1] == '\n' && out[r - 2] == '}');
        /* before the tail (the caller's, copied): no raw control byte */
        for (long i = 0; i < r - 2 - (long)n[2]; i++)
            REQUIRE((unsigned char)out[i] >= 0x20);
    } else if (r == APIGW_AL_E_SPACE) {
        /* the line's worst case is bounded: 6 bytes per input byte plus the frame */
        size_t worst = 1024;
        for (int i = 0; i < 8; i++)
            worst += 6 * n[i];
        char *big = malloc(worst);
        REQUIRE(big != NULL);
        long again = call(big, worst, f, n, d);
        REQUIRE(again > 0 && (size_t)again > cap);
        free(big);
    }
    free(out);

    /* apigw_al_put: the tail NUL-terminated (its NULs dropped), start = |d[0]| */
    char *rest = malloc(n[2] + 1), *a = malloc(cap ? cap : 1), *b2 = malloc(cap ? cap : 1);
    REQUIRE(rest != NULL && a != NULL && b2 != NULL);
    size_t k = 0;
    for (size_t i = 0; i < n[2]; i++)
        if (f[2][i])
            rest[k++] = f[2][i];
    rest[k] = '\0';
    double start = fabs(d[0]);
    apigw_al_batch b = {a, cap / 3, cap, -1, {0}};
    long p_r = apigw_al_put(&b, start, f[0], n[0], "ab", f[1], n[1], 200, 1, -3, d[0], d[1],
                            d[2], rest);
    REQUIRE(p_r == APIGW_AL_E_SPACE || p_r == APIGW_AL_E_FALLBACK || p_r > 0);
    if (p_r > 0) {
        REQUIRE(b.off == cap / 3 + (size_t)p_r && b.off <= cap);
        long l_r = apigw_al_line(b2, cap / 3, cap, b.sec_text, 19, start, f[0], n[0], "ab", 2,
                                 f[1], n[1], 200, 1, -3, d[0], d[1], d[2], rest, k);
        REQUIRE(l_r == p_r && memcmp(a + cap / 3, b2 + cap / 3, (size_t)p_r) == 0);
    } else
        REQUIRE(b.off == cap / 3);
    free(rest);
    free(a);
    free(b2);
    return 0;
}
