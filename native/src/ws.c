/* ws.c - WebSocket masking and incremental UTF-8 checking; see apigw/ws.h. */
#include "apigw/ws.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define BLOCK 1024 /* bytes unmasked at a time to be checked (a multiple of 16) */
#define CONT (0x80u << 8 | 0xBFu << 16) /* lo..hi of a plain continuation byte */

/* The 16-byte pattern of `key` from `phase`: XOR with it from any multiple of 16. */
static void pattern(unsigned char pat[16], const unsigned char key[4], unsigned phase) {
    for (unsigned j = 0; j < 16; j++)
        pat[j] = key[(phase + j) & 3];
}

static void xor_pattern(const unsigned char *src, size_t n, unsigned char *dst,
                        const unsigned char pat[16]) {
    size_t i = 0;
#if defined(__SSE2__)
    __m128i k = _mm_loadu_si128((const __m128i *)(const void *)pat);
    for (; n - i >= 64; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 48));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, k));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 16), _mm_xor_si128(b, k));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 32), _mm_xor_si128(c, k));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 48), _mm_xor_si128(d, k));
    }
    for (; n - i >= 16; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, k));
    }
#else
    uint64_t k;
    memcpy(&k, pat, 8); /* byte order does not matter: the pattern is bytes */
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k;
        memcpy(dst + i, &w, 8);
    }
#endif
    for (; i < n; i++)
        dst[i] = (unsigned char)(src[i] ^ pat[i & 15]);
}

unsigned apigw_ws_mask(const unsigned char *src, size_t len, unsigned char *dst,
                       const unsigned char key[4], unsigned phase) {
    unsigned char pat[16];
    pattern(pat, key, phase);
    xor_pattern(src, len, dst, pat);
    return (unsigned)((phase + len) & 3);
}

/* The state after lead byte b (RFC 3629 §4 table), 0 when b cannot start a code point. */
static uint32_t lead_state(unsigned b) {
    if (b >= 0xC2 && b <= 0xDF)
        return 1 | CONT;
    if (b == 0xE0)
        return 2 | 0xA0u << 8 | 0xBFu << 16; /* no overlong 3-byte form */
    if (b == 0xED)
        return 2 | 0x80u << 8 | 0x9Fu << 16; /* no surrogates */
    if (b >= 0xE1 && b <= 0xEF)
        return 2 | CONT;
    if (b == 0xF0)
        return 3 | 0x90u << 8 | 0xBFu << 16; /* no overlong 4-byte form */
    if (b == 0xF4)
        return 3 | 0x80u << 8 | 0x8Fu << 16; /* nothing above U+10FFFF */
    if (b >= 0xF1 && b <= 0xF3)
        return 3 | CONT;
    return 0;
}

static int state_ok(uint32_t st) {
    unsigned need = st & 0xFF, lo = (st >> 8) & 0xFF, hi = (st >> 16) & 0xFF;
    return st == 0 || (need >= 1 && need <= 3 && lo >= 0x80 && hi <= 0xBF && lo <= hi &&
                       !(st >> 24));
}

static int ascii8(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return !(w & 0x8080808080808080ULL);
}

#if defined(__SSE2__)
/* From p + i, 16 bytes at a time while they are ASCII or well-formed 2-byte forms (the
 * common non-ASCII text: Latin, Greek, Cyrillic, ...): every continuation byte follows a
 * C2..DF lead and every such lead is followed by one.  *st is 0 or 1|CONT (a lead at the
 * end of the last block) on entry and exit.  Returns where the scalar code takes over. */
static size_t utf8_simd12(const unsigned char *p, size_t i, size_t n, uint32_t *st) {
    unsigned carry = *st != 0;
    const __m128i flip = _mm_set1_epi8((char)0x80); /* 80..BF -> 00..3F, C2..DF -> 42..5F */
    const __m128i l_lo = _mm_set1_epi8(0x41), l_hi = _mm_set1_epi8(0x60);
    const __m128i c_lo = _mm_set1_epi8(-1), c_hi = _mm_set1_epi8(0x40);
    while (n - i >= 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        unsigned high = (unsigned)_mm_movemask_epi8(b);
        if (!high && !carry) {
            i += 16;
            continue;
        }
        __m128i x = _mm_xor_si128(b, flip); /* signed compares on the flipped bytes */
        unsigned lead = (unsigned)_mm_movemask_epi8(
            _mm_and_si128(_mm_cmpgt_epi8(x, l_lo), _mm_cmpgt_epi8(l_hi, x)));
        unsigned cont = (unsigned)_mm_movemask_epi8(
            _mm_and_si128(_mm_cmpgt_epi8(x, c_lo), _mm_cmpgt_epi8(c_hi, x)));
        if (((~high & 0xFFFFu) | lead | cont) != 0xFFFFu ||
            cont != (((lead << 1) | carry) & 0xFFFFu))
            break; /* something else (or an error): the scalar code decides */
        carry = lead >> 15;
        i += 16;
    }
    *st = carry ? (1 | CONT) : 0;
    return i;
}
#endif

/* Checks n plain bytes continuing state st; the new state or -1. */
static long utf8_run(uint32_t st, const unsigned char *p, size_t n) {
    size_t i = 0;
#if defined(__SSE2__)
    size_t retry = 0; /* after a block the fast path gave up on, scalar code to here */
#endif
    for (;;) {
#if defined(__SSE2__)
        if (i >= retry && n - i >= 16 && (st == 0 || st == (1 | CONT))) {
            i = utf8_simd12(p, i, n, &st);
            retry = i + 16;
        }
#endif
        while (st) { /* inside a code point */
            if (i == n)
                return (long)st;
            unsigned b = p[i];
            if (b < ((st >> 8) & 0xFF) || b > (st >> 16))
                return APIGW_WS_UTF8_INVALID;
            i++;
            st = (st & 0xFF) == 1 ? 0 : (((st & 0xFF) - 1) | CONT);
        }
        if (i == n)
            return 0;
        unsigned b = p[i];
        if (b < 0x80) {
            i++;
            while (n - i >= 8 && ascii8(p + i))
                i += 8;
            continue;
        }
        if (b - 0xC2u < 30u) { /* 2-byte forms, the common non-ASCII case: a tight loop */
            for (;;) {
                if (n - i < 2)
                    return (long)(1 | CONT);
                if ((p[i + 1] & 0xC0) != 0x80)
                    return APIGW_WS_UTF8_INVALID;
                i += 2;
                if (i == n || (unsigned)p[i] - 0xC2u >= 30u)
                    break;
            }
            continue;
        }
        st = lead_state(b);
        if (!st)
            return APIGW_WS_UTF8_INVALID;
        i++;
    }
}

long apigw_ws_mask_utf8(uint32_t state, const unsigned char *src, size_t len,
                        unsigned char *dst, const unsigned char *vkey,
                        const unsigned char okey[4], unsigned phase, int final) {
    if (!state_ok(state))
        return APIGW_WS_UTF8_INVALID;
    unsigned char vpat[16], opat[16], tmp[BLOCK];
    if (vkey)
        pattern(vpat, vkey, phase);
    if (dst)
        pattern(opat, okey, phase);
    long st = (long)state;
    for (size_t off = 0; off < len; off += BLOCK) {
        size_t n = len - off < BLOCK ? len - off : BLOCK;
        const unsigned char *plain = src + off;
        if (vkey) {
            xor_pattern(src + off, n, tmp, vpat);
            plain = tmp;
        }
        st = utf8_run((uint32_t)st, plain, n); /* before dst is written: dst may be src */
        if (st < 0)
            return APIGW_WS_UTF8_INVALID;
        if (dst)
            xor_pattern(src + off, n, dst + off, opat);
    }
    if (final && st != 0)
        return APIGW_WS_UTF8_INVALID;
    return st;
}

long apigw_ws_utf8(uint32_t state, const unsigned char *src, size_t len,
                   const unsigned char *key, unsigned phase, int final) {
    return apigw_ws_mask_utf8(state, src, len, NULL, key, NULL, phase, final);
}
