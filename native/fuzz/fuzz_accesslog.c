/* fuzz_accesslog.c - libFuzzer target for apigw/accesslog.h.
 *
 * Input: 2 bytes output capacity, 8 bytes of field lengths (request id, path, the tail,
 * five unused), 3 doubles (durations), then the fields' bytes back to back.
 * Invariants:
 *   - the result is > 0 (and <= cap), APIGW_AL_E_SPACE or APIGW_AL_E_FALLBACK;
 *   - nothing is written past cap (ASan: the output is an exact-size heap block);
 *   - a line ends in "}\n", has no raw byte below 0x20 but that newline and the tail's
 *     own (copied as given), and given the room its length needs it is written.
 */
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
    return 0;
}
