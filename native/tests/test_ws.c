/* test_ws.c - unit tests of apigw/ws.h: masking at every phase and alignment, and UTF-8
 * checking of RFC 3629 edge cases split at every point, plain, masked and fused.
 * Inputs sit at the end of guarded pages, so a read or write past them crashes. */
#include "check.h"

#include <stdint.h>

#include "apigw/ws.h"

static const unsigned char KEY[4] = {0x37, 0xfa, 0x21, 0x3d};
static const unsigned char KEY2[4] = {0x01, 0x80, 0xff, 0x5a};

static void test_mask(void) {
    unsigned char src[3000], want[3000];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (unsigned char)(i * 7 + 3);
    size_t lens[] = {0, 1, 3, 4, 15, 16, 17, 63, 64, 65, 1023, 1024, 1025, 2999};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        for (unsigned phase = 0; phase < 4; phase++) {
            for (size_t off = 0; off < 3 && off + lens[li] <= sizeof src; off++) {
                size_t n = lens[li];
                case_begin("mask len %zu phase %u off %zu", n, phase, off);
                guard_t gs, gd;
                unsigned char *s = guard_place(&gs, src + off, n, 1);
                unsigned char *d = guard_place(&gd, NULL, n, 0);
                for (size_t i = 0; i < n; i++)
                    want[i] = (unsigned char)(src[off + i] ^ KEY[(phase + i) & 3]);
                CHECK(apigw_ws_mask(s, n, d, KEY, phase) == ((phase + n) & 3));
                CHECK(n == 0 || memcmp(d, want, n) == 0);
                apigw_ws_mask(d, n, d, KEY, phase); /* in place: its own inverse */
                CHECK(n == 0 || memcmp(d, src + off, n) == 0);
                guard_free(&gs);
                guard_free(&gd);
                case_end();
            }
        }
    }
}

struct utf8_case {
    const char *bytes;
    size_t len;
    int valid;
};

#define U(s, v) {s, sizeof(s) - 1, v}
static const struct utf8_case CASES[] = {
    U("", 1), U("plain ascii text, long enough for the word loop", 1),
    U("\xc2\x80", 1), U("\xc1\xbf", 0), U("\xc0\x80", 0), U("\xdf\xbf", 1),
    U("\xe0\xa0\x80", 1), U("\xe0\x9f\xbf", 0), U("\xef\xbf\xbf", 1),
    U("\xed\x9f\xbf", 1), U("\xed\xa0\x80", 0), U("\xed\xbf\xbf", 0),
    U("\xf0\x90\x80\x80", 1), U("\xf0\x8f\xbf\xbf", 0), U("\xf4\x8f\xbf\xbf", 1),
    U("\xf4\x90\x80\x80", 0), U("\xf5\x80\x80\x80", 0), U("\xff", 0), U("\x80", 0),
    U("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3", 0), U("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9x", 1),
    U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 1), /* Autobahn 6.2 */
    U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited", 0), /* 6.3 */
    U("\xe2\x82", 0), U("a\xf0\x9f\x98", 0), U("\xf0\x9f\x98\x80", 1),
};

static void test_utf8(void) {
    for (size_t ci = 0; ci < sizeof CASES / sizeof CASES[0]; ci++) {
        const struct utf8_case *c = &CASES[ci];
        const unsigned char *raw = (const unsigned char *)c->bytes;
        for (size_t cut = 0; cut <= c->len; cut++) {
            for (unsigned phase = 0; phase < 4; phase++) {
                case_begin("utf8 case %zu cut %zu phase %u", ci, cut, phase);
                unsigned char m[64], out[64], want[64];
                apigw_ws_mask(raw, c->len, m, KEY, phase);
                for (size_t i = 0; i < c->len; i++)
                    want[i] = (unsigned char)(m[i] ^ KEY2[(phase + i) & 3]);
                guard_t g1, g2;
                unsigned char *a = guard_place(&g1, raw, cut, 1);
                unsigned char *b = guard_place(&g2, raw + cut, c->len - cut, 1);
                long s1 = apigw_ws_utf8(0, a, cut, NULL, 0, 0);
                long s2 = s1 < 0 ? s1 : apigw_ws_utf8((uint32_t)s1, b, c->len - cut, NULL,
                                                      0, 1);
                CHECK((s2 == 0) == c->valid);
                guard_free(&g1);
                guard_free(&g2);
                /* masked, and fused with re-keying */
                unsigned phase2 = (unsigned)((phase + cut) & 3);
                long m1 = apigw_ws_utf8(0, m, cut, KEY, phase, 0);
                long m2 = m1 < 0 ? m1 : apigw_ws_utf8((uint32_t)m1, m + cut, c->len - cut,
                                                      KEY, phase2, 1);
                CHECK(m1 == s1 && m2 == s2);
                long f1 = apigw_ws_mask_utf8(0, m, cut, out, KEY, KEY2, phase, 0);
                long f2 = f1 < 0 ? f1 : apigw_ws_mask_utf8((uint32_t)f1, m + cut,
                                                           c->len - cut, out + cut, KEY,
                                                           KEY2, phase2, 1);
                CHECK(f1 == s1 && f2 == s2);
                CHECK(f2 != 0 || c->len == 0 || memcmp(out, want, c->len) == 0);
                case_end();
            }
        }
    }
}

static void test_states(void) {
    case_begin("states");
    /* a 4-byte lead leaves 3 continuation bytes to come, the next in 90..BF */
    CHECK_EQ_LONG(apigw_ws_utf8(0, (const unsigned char *)"\xf0", 1, NULL, 0, 0),
                  3 | 0x90L << 8 | 0xBFL << 16);
    CHECK_EQ_LONG(apigw_ws_utf8(0, (const unsigned char *)"\xf0", 1, NULL, 0, 1),
                  APIGW_WS_UTF8_INVALID);
    /* states never produced are refused */
    CHECK_EQ_LONG(apigw_ws_utf8(7, (const unsigned char *)"a", 1, NULL, 0, 0),
                  APIGW_WS_UTF8_INVALID);
    CHECK_EQ_LONG(apigw_ws_utf8(1 | 0x80u << 8 | 0xC0u << 16, (const unsigned char *)"\x80",
                                1, NULL, 0, 0),
                  APIGW_WS_UTF8_INVALID);
    case_end();
}

static void test_long_text(void) {
    /* crossing the 1 KiB blocks: a code point cut by a block edge, at every phase */
    static unsigned char text[5000], m[5000];
    for (unsigned phase = 0; phase < 4; phase++) {
        for (size_t shift = 0; shift < 4; shift++) {
            case_begin("long text phase %u shift %zu", phase, shift);
            size_t n = 0;
            for (size_t i = 0; i < shift; i++)
                text[n++] = 'a';
            while (n + 4 <= sizeof text) {
                memcpy(text + n, "\xe2\x82\xac", 3); /* U+20AC */
                n += 3;
                if (n % 7 == 0)
                    text[n++] = 'x';
            }
            apigw_ws_mask(text, n, m, KEY, phase);
            CHECK_EQ_LONG(apigw_ws_utf8(0, text, n, NULL, 0, 1), 0);
            CHECK_EQ_LONG(apigw_ws_utf8(0, m, n, KEY, phase, 1), 0);
            m[n / 2] ^= 0x40; /* one broken continuation or lead */
            CHECK(apigw_ws_utf8(0, m, n, KEY, phase, 1) == APIGW_WS_UTF8_INVALID ||
                  (text[n / 2] & 0x80) == 0);
            case_end();
        }
    }
}

int main(void) {
    check_init();
    test_mask();
    test_utf8();
    test_states();
    test_long_text();
    return check_summary("test_ws");
}
