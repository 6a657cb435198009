/* fuzz_otlp.c - libFuzzer target for apigw/otlp.h.
 *
 * Input: 2 bytes output capacity, 1 byte offset, 1 byte kind, 1 byte flags (bit 0: the
 * ids' bytes are mapped onto hex digits, so most spans are valid), 6 bytes of field
 * lengths (trace id, span id, parent id, name, attrs, tail), 3 doubles (start, end, the
 * offset to Unix time), then the fields' bytes back to back.
 * Invariants:
 *   - the result is > 0 (and <= cap - off), APIGW_OTLP_E_SPACE or APIGW_OTLP_E_INPUT;
 *   - nothing is written outside [off, cap): the output is an exact-size heap block (ASan)
 *     whose bytes before off are checked, and a refused span writes nothing at all;
 *   - a span is tag 0x12, a varint length, and that many bytes: the result's size, with
 *     the ids, name, kind, attrs and tail where they belong;
 *   - E_INPUT does not depend on the capacity; E_SPACE means the span needs more room;
 *   - apigw_otlp_pair, its parts made of the same fields (name, attrs, tail for both
 *     spans) and its ids NUL-terminated copies (the CLIENT span's: the span id reversed):
 *     the bytes of the two apigw_otlp_span calls it stands for, or the first error they
 *     give (the CLIENT span's input first); the parts one byte short, or the input's own
 *     bytes as parts, are E_INPUT or a valid result, never a read past them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apigw/otlp.h"
#include "require.h"

static long call(char *out, size_t off, size_t cap, const char *f[6], const size_t n[6],
                 unsigned kind, const double d[3]) {
    return apigw_otlp_span(out, off, cap, f[0], n[0], f[1], n[1], f[2], n[2], f[3], n[3], kind,
                           d[0], d[1], d[2], f[4], n[4], f[5], n[5]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char HEX[] = "0123456789abcdefABCDEF";
    if (size < 11 + 24)
        return 0;
    size_t cap = (size_t)data[0] | (size_t)data[1] << 8, off = data[2];
    unsigned kind = data[3];
    int hexify = data[4] & 1;
    double d[3];
    memcpy(d, data + 11, sizeof d);
    uint8_t *copy = malloc(size);
    REQUIRE(copy != NULL);
    memcpy(copy, data, size);
    const char *f[6];
    size_t n[6];
    uint8_t *p = copy + 35, *end = copy + size;
    for (int i = 0; i < 6; i++) {
        size_t want = data[5 + i];
        n[i] = want < (size_t)(end - p) ? want : (size_t)(end - p);
        f[i] = (const char *)p;
        if (hexify && i < 3)
            for (size_t k = 0; k < n[i]; k++)
                p[k] = (uint8_t)HEX[p[k] % 22];
        p += n[i];
    }
    char *out = malloc(cap ? cap : 1);
    REQUIRE(out != NULL);
    memset(out, 0x5a, cap);
    long r = call(out, off, cap, f, n, kind, d);
    REQUIRE(r == APIGW_OTLP_E_SPACE || r == APIGW_OTLP_E_INPUT
            || (r > 0 && off <= cap && (size_t)r <= cap - off));
    for (size_t i = 0; i < cap && (i < off || r < 0); i++)
        REQUIRE((unsigned char)out[i] == 0x5a);
    if (r > 0) {
        const unsigned char *s = (const unsigned char *)out + off;
        REQUIRE(s[0] == 0x12);
        size_t len = 0, i = 1;
        for (int shift = 0;; shift += 7) {
            REQUIRE(i < (size_t)r && shift < 64);
            len |= (size_t)(s[i] & 0x7F) << shift;
            if (!(s[i++] & 0x80))
                break;
        }
        REQUIRE(i + len == (size_t)r);
        size_t pn = n[2] ? 10 : 0;
        REQUIRE(s[i] == 0x0a && s[i + 1] == 0x10 && s[i + 18] == 0x12 && s[i + 19] == 0x08);
        REQUIRE(!pn || (s[i + 28] == 0x22 && s[i + 29] == 0x08));
        const unsigned char *q = s + i + 28 + pn;
        REQUIRE(memcmp(q, f[3], n[3]) == 0);
        q += n[3];
        REQUIRE(q[0] == 0x30 && q[1] == kind && q[2] == 0x39 && q[11] == 0x41);
        REQUIRE(memcmp(q + 20, f[4], n[4]) == 0 && memcmp(q + 20 + n[4], f[5], n[5]) == 0);
        REQUIRE(q + 20 + n[4] + n[5] == s + r);
    } else {
        size_t worst = 64 + 4096;   /* 48 + 10 fixed, a varint, fields below 256 each */
        char *big = malloc(worst);
        REQUIRE(big != NULL);
        long again = call(big, 0, worst, f, n, kind, d);
        if (r == APIGW_OTLP_E_INPUT)
            REQUIRE(again == APIGW_OTLP_E_INPUT);
        else
            REQUIRE(again > 0 && (off > cap || (size_t)again > cap - off));
        free(big);
    }
    free(out);

    /* apigw_otlp_pair on the same fields */
    char ids[4][40], *parts = malloc(6 * (4 + 256) + 1), *pp = parts;
    REQUIRE(parts != NULL);
    for (int i = 0; i < 3; i++) {
        size_t k = n[i] < 39 ? n[i] : 39;
        memcpy(ids[i], f[i], k);
        ids[i][k] = '\0';
    }
    size_t sl = strlen(ids[1]);
    for (size_t i = 0; i < sl; i++)
        ids[3][i] = ids[1][sl - 1 - i];
    ids[3][sl] = '\0';
    for (int rep = 0; rep < 2; rep++)
        for (int i = 3; i < 6; i++) {
            uint32_t len = (uint32_t)n[i];
            memcpy(pp, &len, 4);   /* (little-endian hosts: x86-64, arm64) */
            memcpy(pp + 4, f[i], n[i]);
            pp += 4 + n[i];
        }
    size_t parts_n = (size_t)(pp - parts);
    size_t big_n = 2 * (64 + 4096);
    char *pa = malloc(cap ? cap : 1), *two = malloc(big_n);
    REQUIRE(pa != NULL && two != NULL);
    long pr = apigw_otlp_pair(pa, off, cap, parts, parts_n, ids[0], ids[1], ids[2], ids[3],
                              d[0], d[1], d[0], d[1], d[2]);
    long cr = apigw_otlp_span(two, 0, 0, ids[0], strlen(ids[0]), ids[3], strlen(ids[3]),
                              ids[1], sl, f[3], n[3], 3, d[0], d[1], d[2], f[4], n[4], f[5],
                              n[5]);
    long s1 = apigw_otlp_span(two, 0, big_n, ids[0], strlen(ids[0]), ids[1], sl, ids[2],
                              strlen(ids[2]), f[3], n[3], 2, d[0], d[1], d[2], f[4], n[4], f[5],
                              n[5]);
    long s2 = s1 < 0 ? s1 : apigw_otlp_span(two, (size_t)s1, big_n, ids[0], strlen(ids[0]),
                                            ids[3], strlen(ids[3]), ids[1], sl, f[3], n[3], 3,
                                            d[0], d[1], d[2], f[4], n[4], f[5], n[5]);
    if (cr == APIGW_OTLP_E_INPUT || s1 == APIGW_OTLP_E_INPUT || s2 == APIGW_OTLP_E_INPUT)
        REQUIRE(pr == APIGW_OTLP_E_INPUT);
    else if (off > cap || (size_t)(s1 + s2) > cap - off)
        REQUIRE(pr == APIGW_OTLP_E_SPACE);
    else
        REQUIRE(pr == s1 + s2 && memcmp(pa + off, two, (size_t)pr) == 0);
    REQUIRE(apigw_otlp_pair(pa, off, cap, parts, parts_n - 1, ids[0], ids[1], ids[2], ids[3],
                            d[0], d[1], d[0], d[1], d[2]) == APIGW_OTLP_E_INPUT);
    long raw = apigw_otlp_pair(pa, off, cap, (const char *)data + 35, size - 35, ids[0],
                               ids[1], ids[2], ids[3], d[0], d[1], d[0], d[1], d[2]);
    REQUIRE(raw == APIGW_OTLP_E_SPACE || raw == APIGW_OTLP_E_INPUT
            || (raw > 0 && off <= cap && (size_t)raw <= cap - off));
    free(parts);
    free(pa);
    free(two);
    free(copy);
    return 0;
}
