/* fuzz_ws.c - libFuzzer target for apigw/ws.h: masking and UTF-8 checking.
 *
 * Input: 1 byte start phase, 4 bytes key, 2 bytes split point, then the payload.
 * Invariants:
 *   - apigw_ws_mask equals the byte-by-byte definition and is its own inverse;
 *   - the payload checked in two pieces (cut at the split point) plain, masked and fused
 *     gives the same states, and the end result equals an independent whole-buffer
 *     decoder (code point values: no overlong forms, surrogates, > U+10FFFF);
 *   - the fused pass writes the re-keyed payload when it is valid.
 * ASan/UBSan catch any read or write outside the buffers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apigw/ws.h"
#include "require.h"

/* 1 when p[0, n) is UTF-8 (RFC 3629), by decoding code point values. */
static int reference_valid(const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned b = p[i];
        size_t len;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            len = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            len = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t j = 1; j < len; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 7)
        return 0;
    unsigned phase = data[0] & 3;
    const unsigned char *key = data + 1;
    size_t n = size - 7;
    size_t cut = n ? ((size_t)data[5] << 8 | data[6]) % (n + 1) : 0;
    const unsigned char *plain = data + 7;
    static const unsigned char okey[4] = {0xA5, 0x00, 0x5A, 0xFF};

    unsigned char *m = malloc(n + 1), *back = malloc(n + 1), *out = malloc(n + 1);
    REQUIRE(m && back && out);
    REQUIRE(apigw_ws_mask(plain, n, m, key, phase) == ((phase + n) & 3));
    for (size_t i = 0; i < n; i++)
        REQUIRE(m[i] == (plain[i] ^ key[(phase + i) & 3]));
    apigw_ws_mask(m, n, back, key, phase);
    REQUIRE(n == 0 || memcmp(back, plain, n) == 0);

    unsigned ph2 = (unsigned)((phase + cut) & 3);
    long s1 = apigw_ws_utf8(0, plain, cut, NULL, 0, 0);
    long s2 = s1 < 0 ? s1 : apigw_ws_utf8((uint32_t)s1, plain + cut, n - cut, NULL, 0, 1);
    long m1 = apigw_ws_utf8(0, m, cut, key, phase, 0);
    long m2 = m1 < 0 ? m1 : apigw_ws_utf8((uint32_t)m1, m + cut, n - cut, key, ph2, 1);
    long f1 = apigw_ws_mask_utf8(0, m, cut, out, key, okey, phase, 0);
    long f2 = f1 < 0 ? f1 : apigw_ws_mask_utf8((uint32_t)f1, m + cut, n - cut, out + cut,
                                               key, okey, ph2, 1);
    REQUIRE(s1 == m1 && s1 == f1 && s2 == m2 && s2 == f2);
    REQUIRE(s2 == 0 || s2 == APIGW_WS_UTF8_INVALID);
    REQUIRE((s2 == 0) == reference_valid(plain, n));
    if (s2 == 0)
        for (size_t i = 0; i < n; i++)
            REQUIRE(out[i] == (m[i] ^ okey[(phase + i) & 3]));
    free(m);
    free(back);
    free(out);
    return 0;
}
