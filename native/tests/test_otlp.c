/* test_otlp.c - apigw_otlp_span: the exact bytes of a known span (with and without a
 * parent, uppercase hex), the nanoseconds as Python computes them, the buffer's bound
 * (every cap short of the span's size, on a guarded buffer, and nothing written when
 * refused) and the bad input it refuses; apigw_otlp_pair: the two spans it stands for,
 * its bound, and parts that do not split into six. */
#include "check.h"

#include <math.h>
#include <stdint.h>

#include "apigw/otlp.h"

#define S(x) x, sizeof(x) - 1

static const char TRACE[] = "0af7651916cd43dd8448eb211c80319c";
static const char NAME[] = "\x2a\x06GET /p";          /* Span.name = "GET /p" */
static const char ATTRS[] = "\x4a\x02" "ab";           /* copied as is */
static const char TAIL[] = "\x7a\x00";                 /* an empty status */

/* What otlp.span_entry gives for span(...) below (start 1.5 s, end 2.25 s, offset
 * 1764669600 s: 1764669601500000000 ns and 1764669602249999872 ns, Python's doubles). */
static const char WANT[] =
    "\x12\x48"
    "\x0a\x10\x0a\xf7\x65\x19\x16\xcd\x43\xdd\x84\x48\xeb\x21\x1c\x80\x31\x9c"
    "\x12\x08\xb7\xad\x6b\x71\x69\x20\x33\x31"
    "\x22\x08\x00\xf0\x67\xaa\x0b\xa9\x02\xb7"
    "\x2a\x06GET /p"
    "\x30\x02"
    "\x39\x00\x6f\x56\x27\xa7\x5d\x7d\x18"
    "\x41\x00\x86\x0a\x54\xa7\x5d\x7d\x18"
    "\x4a\x02" "ab"
    "\x7a\x00";

static long span(char *out, size_t off, size_t cap, const char *parent, size_t parent_n,
                 unsigned kind, double start, double end) {
    return apigw_otlp_span(out, off, cap, S(TRACE), S("B7AD6B7169203331"), parent, parent_n,
                           S(NAME), kind, start, end, 1764669600.0, S(ATTRS), S(TAIL));
}

static uint64_t le64(const char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | (unsigned char)p[i];
    return v;
}

static void test_exact(void) {
    char out[256];
    case_begin("exact span");
    long n = span(out, 0, sizeof out, S("00f067aa0ba902b7"), 2, 1.5, 2.25);
    CHECK(n == (long)(sizeof WANT - 1));
    CHECK(n > 0 && memcmp(out, WANT, (size_t)n) == 0);
    CHECK(le64(out + 51) == 1764669601500000000u && le64(out + 60) == 1764669602249999872u);
    case_end();

    case_begin("at an offset");
    memset(out, 0x5a, sizeof out);
    n = span(out, 100, 100 + sizeof WANT - 1, S("00f067aa0ba902b7"), 2, 1.5, 2.25);
    CHECK(n == (long)(sizeof WANT - 1) && memcmp(out + 100, WANT, (size_t)n) == 0);
    CHECK(out[99] == 0x5a && (unsigned char)out[100 + n] == 0x5a);
    case_end();

    case_begin("no parent");
    n = span(out, 0, sizeof out, NULL, 0, 3, 1.5, 2.25);
    CHECK(n == (long)(sizeof WANT - 1) - 10);
    CHECK(n > 0 && out[0] == 0x12 && out[1] == 0x3e);
    CHECK(memcmp(out + 2, WANT + 2, 28) == 0);                 /* trace and span ids */
    CHECK(memcmp(out + 30, WANT + 40, 8) == 0);                /* then the name */
    CHECK(out[38] == 0x30 && out[39] == 3);
    CHECK(memcmp(out + 40, WANT + 50, (size_t)n - 40) == 0);   /* times, attrs, tail */
    case_end();

    case_begin("a long body: two-byte length");
    static char attrs[300];
    memset(attrs, 'x', sizeof attrs);
    n = apigw_otlp_span(out, 0, 0, S(TRACE), S("b7ad6b7169203331"), NULL, 0, NULL, 0, 1, 0, 0,
                        0, attrs, sizeof attrs, NULL, 0);
    CHECK(n == APIGW_OTLP_E_SPACE);
    char big[512];
    n = apigw_otlp_span(big, 0, sizeof big, S(TRACE), S("b7ad6b7169203331"), NULL, 0, NULL,
                        0, 1, 0, -0.0, 0, attrs, sizeof attrs, NULL, 0);
    CHECK(n == 3 + 48 + 300);
    CHECK(big[0] == 0x12 && (unsigned char)big[1] == (0x80 | (348 & 0x7f)) && big[2] == 348 >> 7);
    CHECK(le64(big + 3 + 31) == 0 && le64(big + 3 + 40) == 0);
    case_end();

    case_begin("the last nanosecond before 2^64");
    n = apigw_otlp_span(out, 0, sizeof out, S(TRACE), S("b7ad6b7169203331"), NULL, 0, NULL, 0,
                        1, 18446744073.70955, 0, 0, NULL, 0, NULL, 0);
    CHECK(n == 2 + 48 && le64(out + 2 + 31) == UINT64_MAX - 2047);
    case_end();
}

static void test_bound(void) {
    size_t len = sizeof WANT - 1;
    for (size_t cap = 0; cap < len; cap++) {
        case_begin("cap %zu", cap);
        guard_t g;
        unsigned char *out = guard_place(&g, NULL, cap, 0);
        CHECK(span((char *)out, 0, cap, S("00f067aa0ba902b7"), 2, 1.5, 2.25)
              == APIGW_OTLP_E_SPACE);
        for (size_t i = 0; i < cap; i++)   /* refused: nothing written */
            CHECK(out[i] == 0xA5);
        guard_free(&g);
        case_end();
    }
    case_begin("cap exact");
    guard_t g;
    unsigned char *out = guard_place(&g, NULL, len, 0);
    CHECK(span((char *)out, 0, len, S("00f067aa0ba902b7"), 2, 1.5, 2.25) == (long)len);
    CHECK(memcmp(out, WANT, len) == 0);
    guard_free(&g);
    case_end();
    case_begin("off past cap, huge field lengths");
    char buf[256];
    CHECK(span(buf, 300, 256, NULL, 0, 2, 1.5, 2.25) == APIGW_OTLP_E_SPACE);
    CHECK(span(buf, 256, 256, NULL, 0, 2, 1.5, 2.25) == APIGW_OTLP_E_SPACE);
    CHECK(apigw_otlp_span(buf, 0, sizeof buf, S(TRACE), S("b7ad6b7169203331"), NULL, 0, NAME,
                          SIZE_MAX, 2, 1, 2, 0, ATTRS, SIZE_MAX, TAIL, SIZE_MAX)
          == APIGW_OTLP_E_SPACE);
    CHECK(apigw_otlp_span(buf, 0, SIZE_MAX, S(TRACE), S("b7ad6b7169203331"), NULL, 0, NAME,
                          SIZE_MAX / 2, 2, 1, 2, 0, ATTRS, SIZE_MAX / 2, TAIL, SIZE_MAX / 2)
          == APIGW_OTLP_E_SPACE);   /* sums that would wrap (nothing is read or written) */
    case_end();
}

static void test_input(void) {
    char out[256];
    const char *P = "00f067aa0ba902b7";
    case_begin("bad ids");
    CHECK(apigw_otlp_span(out, 0, sizeof out, TRACE, 31, S("b7ad6b7169203331"), NULL, 0,
                          S(NAME), 2, 1, 2, 0, NULL, 0, NULL, 0) == APIGW_OTLP_E_INPUT);
    CHECK(apigw_otlp_span(out, 0, sizeof out, S("0af7651916cd43dd8448eb211c80319g"),
                          S("b7ad6b7169203331"), NULL, 0, S(NAME), 2, 1, 2, 0, NULL, 0, NULL,
                          0) == APIGW_OTLP_E_INPUT);
    CHECK(apigw_otlp_span(out, 0, sizeof out, S(TRACE), S("b7ad6b716920333G"), NULL, 0,
                          S(NAME), 2, 1, 2, 0, NULL, 0, NULL, 0) == APIGW_OTLP_E_INPUT);
    CHECK(apigw_otlp_span(out, 0, sizeof out, S(TRACE), S("b7ad6b71692033 1"), NULL, 0,
                          S(NAME), 2, 1, 2, 0, NULL, 0, NULL, 0) == APIGW_OTLP_E_INPUT);
    CHECK(apigw_otlp_span(out, 0, sizeof out, S(TRACE), S("b7ad6b7169203331"), P, 8, S(NAME),
                          2, 1, 2, 0, NULL, 0, NULL, 0) == APIGW_OTLP_E_INPUT);
    CHECK(apigw_otlp_span(out, 0, sizeof out, S(TRACE), S("b7ad6b7169203331"),
                          S("00f067aa0ba902b\xff"), S(NAME), 2, 1, 2, 0, NULL, 0, NULL, 0)
          == APIGW_OTLP_E_INPUT);
    case_end();
    case_begin("bad kind and times");
    CHECK(span(out, 0, sizeof out, P, 16, 128, 1.5, 2.25) == APIGW_OTLP_E_INPUT);
    CHECK(span(out, 0, sizeof out, P, 16, 127, 1.5, 2.25) > 0);
    CHECK(span(out, 0, sizeof out, P, 16, 2, NAN, 2.25) == APIGW_OTLP_E_INPUT);
    CHECK(span(out, 0, sizeof out, P, 16, 2, 1.5, INFINITY) == APIGW_OTLP_E_INPUT);
    CHECK(span(out, 0, sizeof out, P, 16, 2, -1764669601.0, 2.25) == APIGW_OTLP_E_INPUT);
    CHECK(span(out, 0, sizeof out, P, 16, 2, 1.5, 2e10) == APIGW_OTLP_E_INPUT);
    CHECK(apigw_otlp_span(out, 0, sizeof out, S(TRACE), S("b7ad6b7169203331"), NULL, 0, NULL,
                          0, 1, 18446744073.709553, 0, 0, NULL, 0, NULL, 0)
          == APIGW_OTLP_E_INPUT);                                          /* 2^64 ns */
    CHECK(apigw_otlp_span(out, 0, sizeof out, S(TRACE), S("b7ad6b7169203331"), NULL, 0, NULL,
                          0, 1, 1.0, 2.0, -1.5e-9, NULL, 0, NULL, 0) > 0);
    CHECK(apigw_otlp_span(out, 0, sizeof out, S(TRACE), S("b7ad6b7169203331"), NULL, 0, NULL,
                          0, 1, 0.0, 1.0, -1e-10, NULL, 0, NULL, 0)
          == APIGW_OTLP_E_INPUT);                                          /* -0.1 ns */
    case_end();
    case_begin("input is checked before space");
    CHECK(span(out, 0, 0, P, 16, 200, 1.5, 2.25) == APIGW_OTLP_E_INPUT);
    CHECK(span(out, 500, 10, P, 16, 2, NAN, 2.25) == APIGW_OTLP_E_INPUT);
    case_end();
}

/* parts: name, attrs, tail for the SERVER span and then the CLIENT span, each with its
 * 4-byte little-endian length */
static size_t parts(char *p) {
    const char *f[6] = {NAME, ATTRS, TAIL, NAME, ATTRS, ""};
    size_t n[6] = {sizeof NAME - 1, sizeof ATTRS - 1, sizeof TAIL - 1, sizeof NAME - 1,
                   sizeof ATTRS - 1, 0}, k = 0;
    for (int i = 0; i < 6; i++) {
        p[k] = (char)n[i];
        p[k + 1] = p[k + 2] = p[k + 3] = 0;
        memcpy(p + k + 4, f[i], n[i]);
        k += 4 + n[i];
    }
    return k;
}

static void test_pair(void) {
    char pt[128], want[512], out[512];
    size_t pn = parts(pt);
    case_begin("pair: the SERVER span and its CLIENT span");
    long a = apigw_otlp_span(want, 0, sizeof want, S(TRACE), S("b7ad6b7169203331"), NULL, 0,
                             S(NAME), 2, 1.5, 2.25, 1764669600.0, S(ATTRS), S(TAIL));
    long b = apigw_otlp_span(want, (size_t)a, sizeof want, S(TRACE), S("00f067aa0ba902b7"),
                             S("b7ad6b7169203331"), S(NAME), 3, 1.6, 2.0, 1764669600.0,
                             S(ATTRS), NULL, 0);
    long n = apigw_otlp_pair(out, 0, sizeof out, pt, pn, TRACE, "b7ad6b7169203331", "",
                             "00f067aa0ba902b7", 1.5, 2.25, 1.6, 2.0, 1764669600.0);
    CHECK(a > 0 && b > 0 && n == a + b && memcmp(out, want, (size_t)n) == 0);
    case_end();
    for (size_t cap = 0; n > 0 && cap < (size_t)n; cap += 7) {
        case_begin("pair cap %zu", cap);
        guard_t g;
        unsigned char *o = guard_place(&g, NULL, cap, 0);
        CHECK(apigw_otlp_pair((char *)o, 0, cap, pt, pn, TRACE, "b7ad6b7169203331", "",
                              "00f067aa0ba902b7", 1.5, 2.25, 1.6, 2.0, 1764669600.0)
              == APIGW_OTLP_E_SPACE);
        guard_free(&g);
        case_end();
    }
    case_begin("pair: bad parts, a bad CLIENT id with no room");
    CHECK(apigw_otlp_pair(out, 0, sizeof out, pt, pn - 1, TRACE, "b7ad6b7169203331", "",
                          "00f067aa0ba902b7", 1.5, 2.25, 1.6, 2.0, 0) == APIGW_OTLP_E_INPUT);
    pt[pn] = 'x';
    CHECK(apigw_otlp_pair(out, 0, sizeof out, pt, pn + 1, TRACE, "b7ad6b7169203331", "",
                          "00f067aa0ba902b7", 1.5, 2.25, 1.6, 2.0, 0) == APIGW_OTLP_E_INPUT);
    CHECK(apigw_otlp_pair(out, 0, sizeof out, pt, 3, TRACE, "b7ad6b7169203331", "",
                          "00f067aa0ba902b7", 1.5, 2.25, 1.6, 2.0, 0) == APIGW_OTLP_E_INPUT);
    CHECK(apigw_otlp_pair(out, 0, 0, pt, pn, TRACE, "b7ad6b7169203331", "", "00f067aa0ba902bz",
                          1.5, 2.25, 1.6, 2.0, 0) == APIGW_OTLP_E_INPUT);
    CHECK(apigw_otlp_pair(out, 0, 0, pt, pn, TRACE, "b7ad6b7169203331", "", "00f067aa0ba902b7",
                          1.5, 2.25, 1.6, 2.0, 0) == APIGW_OTLP_E_SPACE);
    case_end();
}

int main(void) {
    check_init();
    test_exact();
    test_bound();
    test_input();
    test_pair();
    return check_summary("test_otlp");
}
